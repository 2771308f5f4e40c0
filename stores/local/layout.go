package local

import (
	"fmt"
	"strings"
)

// The layouts of a store's chunk files (Options.Layout).
const (
	// LayoutDualstore is dualstore's own layout, the default:
	// `<root>/<4 hex>/<64 hex id>.chunk`, raw or zstd-compressed (a file is
	// a zstd frame exactly when it starts with the magic number).
	LayoutDualstore = "dualstore"
	// LayoutCasync is the layout desync (v0.9.6) and casync read and write
	// for a local store: `<root>/<4 hex>/<64 hex id>.cacnk`, always a zstd
	// frame, even when that is not smaller, named by the SHA512/256 of the
	// uncompressed bytes (the filesystem's hash must be sha512-256, see
	// Config.RequiredHash).
	LayoutCasync = "casync"
)

const (
	// casyncExt ends every chunk file name in the casync layout
	// (desync's CompressedChunkExt).
	casyncExt = ".cacnk"
	// desyncTmpPrefix starts the temp files desync writes into a store
	// (its LocalStore.StoreChunk, `desync prune` removes them). Our
	// sweep leaves them alone: desync may be writing into the store
	// (a writable chunk-server, `desync chop -s`) while we sweep. Our own
	// temp files never start with it (the token after tmpPrefix is hex).
	desyncTmpPrefix = ".tmp-cacnk"
	// casyncHash is the chunk hash the casync layout needs: desync names
	// chunks by the SHA512/256 of their bytes (its default digest).
	casyncHash = "sha512-256"
)

// validLayout checks a layout name; "" is the default.
func validLayout(layout string) error {
	switch layout {
	case "", LayoutDualstore, LayoutCasync:
		return nil
	}
	return fmt.Errorf("local store: layout %q: want %s or %s", layout, LayoutDualstore, LayoutCasync)
}

// casyncMetaName refuses, in the casync layout, a meta object name whose
// file desync would take for one of its own: desync's verify and prune
// walk the whole store root, _meta included, and treat every file named
// `<64 hex>.cacnk` as a chunk (prune would fail on it, verify report it)
// and prune deletes every file named `.tmp-cacnk…`. The index backup's
// names (`index/…/….ltx`) are never such names.
func casyncMetaName(name string) error {
	base := name[strings.LastIndexByte(name, '/')+1:]
	if strings.HasSuffix(base, casyncExt) || strings.HasPrefix(base, desyncTmpPrefix) {
		return fmt.Errorf("meta name %q: a casync store's tools would take its file for a chunk or a temp file (no name may end in %s or start with %s)", name, casyncExt, desyncTmpPrefix)
	}
	return nil
}

// Shared reports whether other tools (desync, casync) use the store too:
// in the casync layout they do (see stores.Sharer).
func (l *Local) Shared() bool { return l.casync }
