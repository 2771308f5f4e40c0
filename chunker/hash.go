package chunker

import (
	"crypto/sha512"
	"fmt"

	"github.com/zeebo/blake3"
)

// HashFunc computes a chunk's id from its bytes. It must be safe for
// concurrent use.
type HashFunc func(data []byte) [32]byte

// Names of the chunk id hashes, as stored in config and the index header.
const (
	// HashBLAKE3 is BLAKE3-256, the default: several times faster than
	// SHA-512/256.
	HashBLAKE3 = "blake3"
	// HashSHA512_256 is SHA-512/256, the chunk id casync and desync use, for
	// filesystems whose stores must stay readable by them.
	HashSHA512_256 = "sha512-256"
)

// Hasher returns the HashFunc called name (HashBLAKE3 or HashSHA512_256).
func Hasher(name string) (HashFunc, error) {
	switch name {
	case HashBLAKE3:
		return blake3.Sum256, nil
	case HashSHA512_256:
		return sha512.Sum512_256, nil
	}
	return nil, fmt.Errorf("chunker: unknown hash %q (want %q or %q)", name, HashBLAKE3, HashSHA512_256)
}
