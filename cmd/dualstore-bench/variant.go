package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

type variantKind int

const (
	kindDisk variantKind = iota
	kindLoopback
	kindDualstore
	// kindDesync is the peer baseline: desync make to a local store and
	// desync extract from it, not a filesystem.
	kindDesync
)

// A variant is one of the filesystems compared: the plain disk, the FUSE
// floor, and dualstore in several configurations; or desync, the peer
// baseline of the casync primary.
type variant struct {
	key   string
	label string
	kind  variantKind
	// writeToBoth and verifyBoth are dualstore's dual options.
	writeToBoth, verifyBoth bool
	// sync is the local stores' sync key ("": the default, auto).
	sync string
	// noBackup turns the index backup off (index_backup.enabled: false).
	noBackup bool
	// data, if set, is the only data set the variant runs on, and
	// writeOnly limits it to the first copy: a variant that answers one
	// question costs a fraction of a full one.
	data      string
	writeOnly bool
	// writeCold limits the variant to the first copy and the cold read.
	writeCold bool
	// hash is the chunker's hash ("": the default) and casync puts the
	// primary on a local store in the casync layout (zstd, SHA-512/256
	// ids), the safety tier left at its default.
	hash   string
	casync bool
	// baseline is the variant whose values, in the same run, the table
	// gives this one's ratio to (besides the ratio to (b)).
	baseline string
}

var variants = []variant{
	{key: "disk", label: "(a) plain disk", kind: kindDisk},
	{key: "loopback", label: "(b) go-fuse loopback", kind: kindLoopback},
	{key: "dualstore-one", label: "(c) dualstore, one store", kind: kindDualstore},
	{key: "dualstore-both", label: "(d) dualstore, both tiers", kind: kindDualstore, writeToBoth: true},
	{key: "dualstore-verify", label: "(e) both tiers + verify_both", kind: kindDualstore, writeToBoth: true, verifyBoth: true},
	// (d) with the local stores forced to fsync each chunk file, the mode
	// a store on FUSE, 9p or SMB resolves to, against (d)'s syncfs on this
	// disk: what the fallback costs where it is not needed.
	{key: "dualstore-fsync", label: "(f) both tiers, sync: fsync", kind: kindDualstore, writeToBoth: true,
		sync: "fsync", data: "random", writeOnly: true, baseline: "dualstore-both"},
	// (d) without the index backup (#14): (d)'s ratio to it is what
	// replicating the index into both tiers costs.
	{key: "dualstore-nobackup", label: "(g) both tiers, index backup off", kind: kindDualstore, writeToBoth: true,
		noBackup: true, data: "random", writeOnly: true, baseline: "dualstore-both"},
	// (d) with the primary a casync store, against desync itself (#16):
	// the write through the mount to a casync primary plus the safety tier
	// and the cold read, beside desync make and extract of the same file.
	{key: "dualstore-casync", label: "(h) casync primary + safety", kind: kindDualstore, writeToBoth: true,
		hash: "sha512-256", casync: true, data: "random", writeCold: true, baseline: "desync"},
	// The peer baseline of (h): desync make of the source to a fresh local
	// store on the same disk, then a sync (the write); desync extract of it
	// after drop_caches (the cold read).
	{key: "desync", label: "(i) desync make / extract", kind: kindDesync, data: "random", writeCold: true},
}

// runsOn reports whether v runs on the data set named ds.
func (v variant) runsOn(ds string) bool { return v.data == "" || v.data == ds }

func variantByKey(key string) variant {
	for _, v := range variants {
		if v.key == key {
			return v
		}
	}
	return variant{key: key, label: key}
}

// An instance is a variant set up in its own directory of the work dir:
// a plain directory, or a mount with its backing directory or data dir.
type instance struct {
	v    variant
	b    *bench
	root string
	// dir is where the bench puts its files.
	dir string
	// mnt, backing and cfg are set for the FUSE variants.
	mnt, backing, cfg string
	d                 *daemon
}

// open sets up a fresh instance of v in work/name.
func (b *bench) open(ctx context.Context, v variant, name string) (*instance, error) {
	in := &instance{v: v, b: b, root: filepath.Join(b.work, name)}
	if err := os.RemoveAll(in.root); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(in.root, 0o755); err != nil {
		return nil, err
	}
	switch v.kind {
	case kindDisk, kindDesync:
		in.dir = filepath.Join(in.root, "files")
		if err := os.Mkdir(in.dir, 0o755); err != nil {
			return nil, err
		}
		return in, nil
	case kindLoopback:
		in.backing = filepath.Join(in.root, "backing")
	case kindDualstore:
		in.backing = filepath.Join(in.root, "data")
		in.cfg = filepath.Join(in.root, "dualstore.yaml")
		if err := os.WriteFile(in.cfg, []byte(dualstoreConfig(v, in.backing, b.opts.compress)), 0o644); err != nil {
			return nil, err
		}
	}
	in.mnt = filepath.Join(in.root, "mnt")
	in.dir = in.mnt
	for _, d := range []string{in.backing, in.mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := in.mount(ctx); err != nil {
		return nil, err
	}
	return in, nil
}

// dualstoreConfig is the YAML config of a dualstore variant: the embedded
// defaults but for the dual options under test (and compression and the
// sync mode, when asked for).
func dualstoreConfig(v variant, data string, compress bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "data_dir: %s\nlog_level: warn\ndual:\n  write_to_both: %v\n  verify_both: %v\n", quote(data), v.writeToBoth, v.verifyBoth)
	if v.noBackup {
		b.WriteString("index_backup:\n  enabled: false\n")
	}
	if v.hash != "" {
		fmt.Fprintf(&b, "chunker:\n  hash: %s\n", v.hash)
	}
	if compress || v.sync != "" || v.casync {
		for _, tier := range []string{"primary", "safety"} {
			casync := v.casync && tier == "primary"
			if !casync && !compress && v.sync == "" {
				continue // the default store
			}
			fmt.Fprintf(&b, "%s:\n  - name: %s-0\n    type: local\n    path: %s\n", tier, tier, quote(filepath.Join(data, tier)))
			if casync {
				b.WriteString("    layout: casync\n") // always zstd
			} else if compress {
				b.WriteString("    compress: true\n")
			}
			if v.sync != "" {
				fmt.Fprintf(&b, "    sync: %s\n", v.sync)
			}
		}
	}
	return b.String()
}

// quote writes a YAML string (JSON strings are YAML).
func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func (in *instance) mount(ctx context.Context) error {
	var err error
	switch in.v.kind {
	case kindLoopback:
		in.d, err = in.b.procs.startLoopback(ctx, in.backing, in.mnt)
	case kindDualstore:
		in.d, err = in.b.procs.startDualstore(ctx, in.b.opts.bin, in.cfg, in.mnt, in.b.opts.mountArgs)
	}
	return err
}

// remount restarts the daemon: a fresh process with empty caches, and
// nothing of the mount left in the kernel's caches.
func (in *instance) remount(ctx context.Context) error {
	if in.d == nil {
		return nil
	}
	err := in.b.procs.stop(in.d)
	in.d = nil
	if err != nil {
		return err
	}
	return in.mount(ctx)
}

// close unmounts and removes everything of the instance.
func (in *instance) close() error {
	var errs []error
	if in.d != nil {
		errs = append(errs, in.b.procs.stop(in.d))
		in.d = nil
	}
	if in.mnt != "" && isMounted(in.mnt) {
		errs = append(errs, fmt.Errorf("%s is still mounted; leaving %s in place", in.mnt, in.root))
	} else {
		errs = append(errs, os.RemoveAll(in.root))
	}
	return errors.Join(errs...)
}

// usage reads the daemon's CPU time and RSS (zero for the plain disk).
func (in *instance) usage() (procUsage, error) {
	if in.d == nil {
		return procUsage{}, nil
	}
	return usage(in.d.pid())
}

// dsStats is the part of `.dualstore/stats` the bench reads.
type dsStats struct {
	UniqueBytes int64 `json:"unique_bytes"`
	Tiers       map[string]struct {
		Writes struct {
			Bytes int64 `json:"bytes"`
		} `json:"writes"`
	} `json:"tiers"`
}

// storedBytes is the chunk bytes dualstore has written to its tiers, and
// the unique chunk bytes its index references.
func (in *instance) storedBytes() (written, unique int64, err error) {
	if in.v.kind != kindDualstore {
		return 0, 0, nil
	}
	b, err := os.ReadFile(filepath.Join(in.mnt, ".dualstore", "stats"))
	if err != nil {
		return 0, 0, err
	}
	var st dsStats
	if err := json.Unmarshal(b, &st); err != nil {
		return 0, 0, fmt.Errorf("stats: %w", err)
	}
	for _, t := range st.Tiers {
		written += t.Writes.Bytes
	}
	return written, st.UniqueBytes, nil
}
