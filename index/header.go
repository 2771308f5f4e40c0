package index

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"
)

// FormatVersion is the index format this build writes and reads. Format 2
// added the undo tables of durability epochs (see Seal); an index of
// format 1 is upgraded when it is opened.
const FormatVersion = 3

// Hash names accepted in Header.Hash.
const (
	HashBLAKE3    = "blake3"
	HashSHA512256 = "sha512-256"
)

// Header is the per-filesystem record fixed at creation: changing the hash
// or the chunker parameters later would break deduplication against the
// chunks already stored.
type Header struct {
	// FormatVersion is the index format version; set by Open at creation.
	FormatVersion int
	// FSID identifies the filesystem: 128 random bits as 32 lower-case hex
	// characters, made by Open at creation when empty.
	FSID string
	// Hash names the chunk id hash: HashBLAKE3 or HashSHA512256.
	Hash string
	// Polynomial is the chunker's polynomial (opaque to index).
	Polynomial uint64
	// MinSize, AvgSize and MaxSize are the chunker's size bounds in bytes:
	// 0 < MinSize <= AvgSize <= MaxSize.
	MinSize, AvgSize, MaxSize uint32
	// Created is when the filesystem was made; set by Open when zero.
	Created time.Time
}

// Header keys in the header table.
const (
	hkFormatVersion = "format_version"
	hkFSID          = "fsid"
	hkHash          = "hash"
	hkPolynomial    = "polynomial"
	hkMinSize       = "min_size"
	hkAvgSize       = "avg_size"
	hkMaxSize       = "max_size"
	hkCreated       = "created"
)

func (h Header) isZero() bool {
	return h.FormatVersion == 0 && h.FSID == "" && h.Hash == "" && h.Polynomial == 0 &&
		h.MinSize == 0 && h.AvgSize == 0 && h.MaxSize == 0 && h.Created.IsZero()
}

// validate checks the fields a caller chooses. FormatVersion, FSID and
// Created may be zero (Open fills them in). Its errors wrap no sentinel: the
// caller says whether a bad header is an invalid option or a corrupt file.
func (h Header) validate() error {
	switch h.Hash {
	case HashBLAKE3, HashSHA512256:
	default:
		return fmt.Errorf("header: hash %q: want %q or %q", h.Hash, HashBLAKE3, HashSHA512256)
	}
	if h.MinSize == 0 || h.MinSize > h.AvgSize || h.AvgSize > h.MaxSize {
		return fmt.Errorf("header: chunk sizes min %d avg %d max %d: want 0 < min <= avg <= max",
			h.MinSize, h.AvgSize, h.MaxSize)
	}
	if h.FSID != "" && !validFSID(h.FSID) {
		return fmt.Errorf("header: fsid %q: want 32 lower-case hex characters", h.FSID)
	}
	if h.FormatVersion < 0 || h.FormatVersion > FormatVersion {
		return fmt.Errorf("header: format version %d: this build reads up to %d", h.FormatVersion, FormatVersion)
	}
	return nil
}

func validFSID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func newFSID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("fsid: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// completeHeader fills in what Open decides at creation.
func completeHeader(h Header, now time.Time) (Header, error) {
	if err := h.validate(); err != nil {
		return h, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	h.FormatVersion = FormatVersion
	if h.FSID == "" {
		id, err := newFSID()
		if err != nil {
			return h, err
		}
		h.FSID = id
	}
	if h.Created.IsZero() {
		h.Created = now
	}
	h.Created = h.Created.UTC().Round(0)
	return h, nil
}

// encodeHeader returns the header table's rows.
func encodeHeader(h Header) map[string]string {
	return map[string]string{
		hkFormatVersion: strconv.Itoa(h.FormatVersion),
		hkFSID:          h.FSID,
		hkHash:          h.Hash,
		hkPolynomial:    strconv.FormatUint(h.Polynomial, 10),
		hkMinSize:       strconv.FormatUint(uint64(h.MinSize), 10),
		hkAvgSize:       strconv.FormatUint(uint64(h.AvgSize), 10),
		hkMaxSize:       strconv.FormatUint(uint64(h.MaxSize), 10),
		hkCreated:       h.Created.UTC().Format(time.RFC3339Nano),
	}
}

// decodeHeader parses the header table's rows, which come from a file and
// are not trusted. A format version newer than this build wraps ErrVersion;
// anything else malformed wraps ErrCorrupt. Unknown keys are ignored, so a
// later version may add some without a format bump.
func decodeHeader(kv map[string]string) (Header, error) {
	var h Header
	get := func(k string) (string, error) {
		v, ok := kv[k]
		if !ok {
			return "", fmt.Errorf("header: missing %q: %w", k, ErrCorrupt)
		}
		return v, nil
	}
	bad := func(k, v string) error {
		return fmt.Errorf("header: %s = %q: %w", k, v, ErrCorrupt)
	}
	v, err := get(hkFormatVersion)
	if err != nil {
		return h, err
	}
	fv, err := strconv.ParseInt(v, 10, 32)
	if err != nil || fv < 1 {
		return h, bad(hkFormatVersion, v)
	}
	if fv > FormatVersion {
		return h, fmt.Errorf("header: format version %d, this build reads up to %d: %w", fv, FormatVersion, ErrVersion)
	}
	h.FormatVersion = int(fv)
	if h.FSID, err = get(hkFSID); err != nil {
		return h, err
	}
	if !validFSID(h.FSID) {
		return h, bad(hkFSID, h.FSID)
	}
	if h.Hash, err = get(hkHash); err != nil {
		return h, err
	}
	if v, err = get(hkPolynomial); err != nil {
		return h, err
	}
	if h.Polynomial, err = strconv.ParseUint(v, 10, 64); err != nil {
		return h, bad(hkPolynomial, v)
	}
	for _, f := range []struct {
		k string
		p *uint32
	}{{hkMinSize, &h.MinSize}, {hkAvgSize, &h.AvgSize}, {hkMaxSize, &h.MaxSize}} {
		if v, err = get(f.k); err != nil {
			return h, err
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return h, bad(f.k, v)
		}
		*f.p = uint32(n)
	}
	if v, err = get(hkCreated); err != nil {
		return h, err
	}
	if h.Created, err = time.Parse(time.RFC3339Nano, v); err != nil {
		return h, bad(hkCreated, v)
	}
	h.Created = h.Created.UTC()
	if err := h.validate(); err != nil {
		return h, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return h, nil
}
