package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/dualstore/dualstore/index"
)

// The daemon's memory with many files in the tree (issue #18): what it
// holds after a big copy into the mount, and after a walk of a tree much
// bigger than a copy through the mount could make in a bench. Both run
// against (d), once.
const (
	rssFilesCase = "rss-files/" + rssVariant
	rssWalkCase  = "rss-walk/" + rssVariant
	// filesPerDir is how many files each directory of these trees holds.
	filesPerDir = 1000
	// walkReadEvery: one file in this many of the walked tree has content
	// (the same 4 KiB chunk), and the walk reads each of those.
	walkReadEvery = 1000
	// settleWait is how long the daemon sits idle before its settled RSS
	// is read: the Go runtime returns freed memory to the kernel in the
	// background, a little at a time.
	settleWait = 10 * time.Second
)

// rssFilesOnce creates -files files of 4 KiB through a (d) mount, in
// directories of 1000 (as a big rsync or cp -r into the mount does), and
// records the rate, the daemon's peak RSS and its RSS once idle.
func (b *bench) rssFilesOnce(ctx context.Context) (err error) {
	v := variantByKey(rssVariant)
	in, err := b.open(ctx, v, "rss-files-"+v.key)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, in.close()) }()
	if err := b.settle(); err != nil {
		return err
	}
	n := b.opts.files
	gen := newRandomGen(randomData.seed + 200)
	buf := make([]byte, smallFileSize)
	m, err := in.timed(func() (int64, time.Duration, error) {
		t0 := time.Now()
		for i := range n {
			if err := ctx.Err(); err != nil {
				return 0, 0, err
			}
			dir := filepath.Join(in.dir, fmt.Sprintf("d%04d", i/filesPerDir))
			if i%filesPerDir == 0 {
				if err := os.Mkdir(dir, 0o755); err != nil {
					return 0, 0, err
				}
			}
			gen.fill(buf)
			if err := writeSmall(filepath.Join(dir, fmt.Sprintf("f%06d", i)), buf); err != nil {
				return 0, 0, err
			}
		}
		return int64(n), time.Since(t0), nil
	})
	if err != nil {
		return fmt.Errorf("create %d files: %w", n, err)
	}
	return b.addRSS(ctx, in, "files", m)
}

// rssWalkOnce puts -walk-files files into a (d) filesystem's index
// directly (creating them through the mount runs at a few hundred files a
// second here: half an hour for a million), in directories of 1000, one
// in walkReadEvery with a 4 KiB chunk written through the mount; then
// mounts it, walks the whole tree with `find -ls` (a LOOKUP and the
// attributes of every entry) and reads every file with content. It
// records the walk's rate, the daemon's peak RSS and its RSS once idle.
func (b *bench) rssWalkOnce(ctx context.Context) (err error) {
	v := variantByKey(rssVariant)
	in, err := b.open(ctx, v, "rss-walk-"+v.key)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, in.close()) }()

	// A seed file through the mount: its chunk is in both tiers, so every
	// file given its chunk list reads back the seed's bytes.
	seed := make([]byte, smallFileSize)
	newRandomGen(randomData.seed + 300).fill(seed)
	seedPath := filepath.Join(in.dir, "seed")
	if err := writeSmall(seedPath, seed); err != nil {
		return err
	}
	st, err := os.Stat(seedPath)
	if err != nil {
		return err
	}
	seedIno := st.Sys().(*syscall.Stat_t).Ino
	if err := b.procs.stop(in.d); err != nil {
		in.d = nil
		return err
	}
	in.d = nil
	n := b.opts.walkFiles
	t0 := time.Now()
	if err := populate(ctx, filepath.Join(in.backing, "index.db"), seedIno, n); err != nil {
		return fmt.Errorf("populating the index with %d files: %w", n, err)
	}
	b.logf("%d files put into the index in %s", n, time.Since(t0).Round(time.Second))
	if err := in.mount(ctx); err != nil {
		return err
	}
	if err := b.settle(); err != nil {
		return err
	}
	var entries int64
	m, err := in.timed(func() (int64, time.Duration, error) {
		t0 := time.Now()
		k, err := findLs(ctx, in.dir)
		entries = k
		return k, time.Since(t0), err
	})
	if err != nil {
		return fmt.Errorf("walk: %w", err)
	}
	// Every file, every directory, the root and the seed; .dualstore
	// and what is below it are listed too.
	if want := int64(n + (n+filesPerDir-1)/filesPerDir + 2); entries < want {
		return fmt.Errorf("walk: find listed %d entries, want at least %d", entries, want)
	}
	got := make([]byte, smallFileSize)
	for i := 0; i < n; i += walkReadEvery {
		p := filepath.Join(in.dir, fmt.Sprintf("w%04d", i/filesPerDir), fmt.Sprintf("f%07d", i))
		if err := readSmall(p, got); err != nil {
			return err
		}
		if !bytes.Equal(got, seed) {
			return fmt.Errorf("%s: not the seed's bytes", p)
		}
	}
	m.hwm = 0 // the peak after the reads, not only after the walk
	if u, err := in.usage(); err == nil {
		m.hwm = u.HWM
	}
	return b.addRSS(ctx, in, "walk", m)
}

// addRSS adds the samples of one many-files case: its rate, the daemon's
// peak RSS, and its RSS after settleWait of idleness.
func (b *bench) addRSS(ctx context.Context, in *instance, what string, m measured) error {
	select {
	case <-time.After(settleWait):
	case <-ctx.Done():
		return ctx.Err()
	}
	u, err := in.usage()
	if err != nil {
		return err
	}
	det := m.detail(in, "files")
	det["daemon_rss_bytes"] = float64(u.RSS)
	v := in.v.key
	b.add(sample{Case: "rss-" + what, Variant: v, Value: float64(m.n) / m.d.Seconds(), Unit: "files/s", Detail: det})
	b.add(sample{Case: "rss-" + what + "-peak", Variant: v, Value: float64(m.hwm) / mib, Unit: "MiB", Detail: det})
	b.add(sample{Case: "rss-" + what + "-settled", Variant: v, Value: float64(u.RSS) / mib, Unit: "MiB", Detail: det})
	b.logf("%s %d files: %s files/s, daemon peak RSS %s MiB, %s MiB after %s idle, %.2f CPU s/1k files", what, m.n,
		fmtNum(float64(m.n)/m.d.Seconds()), fmtNum(float64(m.hwm)/mib), fmtNum(float64(u.RSS)/mib), settleWait, m.cpu/(float64(m.n)/1000))
	return nil
}

// populate opens the index of an unmounted filesystem and adds n empty
// files to it, in directories w0000, w0001… of filesPerDir files each;
// every walkReadEvery-th file gets the chunk list of the inode seed.
func populate(ctx context.Context, path string, seed uint64, n int) (err error) {
	db, err := index.Open(ctx, index.Options{Path: path, MustExist: true, Log: zerolog.Nop()})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, db.Close()) }()
	chunks, err := db.Chunks(ctx, seed)
	if err != nil {
		return err
	}
	now := time.Now()
	var dir uint64
	for i := range n {
		if err := ctx.Err(); err != nil {
			return err
		}
		if i%filesPerDir == 0 {
			a, err := db.Create(ctx, index.RootIno, fmt.Sprintf("w%04d", i/filesPerDir), index.NewNode{Mode: syscall.S_IFDIR | 0o755, Time: now})
			if err != nil {
				return err
			}
			dir = a.Ino
		}
		a, err := db.Create(ctx, dir, fmt.Sprintf("f%07d", i), index.NewNode{Mode: syscall.S_IFREG | 0o644, Time: now})
		if err != nil {
			return err
		}
		if i%walkReadEvery == 0 {
			if _, err := db.CommitChunks(ctx, a.Ino, chunks, now); err != nil {
				return err
			}
		}
		// Checkpoints keep the log small: the mount checkpoints only at
		// its durability points.
		if i%1000 == 999 || i == n-1 {
			if _, err := db.Settle(ctx, db.Seal()); err != nil {
				return err
			}
		}
	}
	return db.Sync(ctx)
}

// findLs runs `find DIR -ls`, which looks up every entry and reads its
// attributes, as a user's find or an rsync of the tree does, and counts
// the lines it prints.
func findLs(ctx context.Context, dir string) (int64, error) {
	cmd := exec.CommandContext(ctx, "find", dir, "-ls")
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var lines lineCounter
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &lines, &stderr
	if err := cmd.Run(); err != nil {
		return lines.n, fmt.Errorf("find -ls: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	return lines.n, nil
}

// lineCounter counts the lines written to it.
type lineCounter struct{ n int64 }

func (c *lineCounter) Write(p []byte) (int, error) {
	c.n += int64(bytes.Count(p, []byte{'\n'}))
	return len(p), nil
}
