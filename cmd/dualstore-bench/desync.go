package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// desyncOnce measures desync, the peer baseline of (h), on one run of the
// random data set: `desync make -s STORE out.caibx SRC` to a fresh local
// store in the work dir, then a syncfs of that filesystem (every other
// write ends with an fsync: the chunks must be on the disk), as the write;
// and `desync extract -s STORE out.caibx OUT` after the caches are dropped
// as for every cold read, as the cold read. Its own CPU time stands in
// the daemon CPU column.
func (b *bench) desyncOnce(ctx context.Context, v variant, ds dataset, src string, run int) (err error) {
	name := fmt.Sprintf("seq-%s-%s", ds.name, v.key)
	in, err := b.open(ctx, v, name)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	defer func() { err = errors.Join(err, in.close()) }()
	store := filepath.Join(in.dir, "store")
	idx := filepath.Join(in.dir, "out.caibx")
	out := filepath.Join(in.dir, "out")
	if err := os.Mkdir(store, 0o755); err != nil {
		return err
	}
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	size := float64(st.Size())
	line := ""
	add := func(cs string, d time.Duration, cpu float64, extra map[string]float64) {
		det := map[string]float64{"seconds": d.Seconds(), "bytes": size, "daemon_cpu_seconds": cpu}
		for k, x := range extra {
			det[k] = x
		}
		val := size / mib / d.Seconds()
		b.add(sample{Case: cs, Data: ds.name, Variant: v.key, Run: run, Value: val, Unit: "MiB/s", Detail: det})
		line += fmt.Sprintf(" %s %s", cs, fmtNum(val))
	}

	// The write: make, then sync the store's filesystem.
	if err := b.settle(src); err != nil {
		return err
	}
	t0 := time.Now()
	cpu, err := b.desync(ctx, "make", "-s", store, idx, src)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	made := time.Since(t0)
	if err := syncfs(store); err != nil {
		return fmt.Errorf("%s: syncfs %s: %w", name, store, err)
	}
	d := time.Since(t0)
	add("write", d, cpu, map[string]float64{"make_seconds": made.Seconds()})

	// The cold read: extract to a new file with no page cache.
	how, err := b.coldCaches(in)
	if err != nil {
		return err
	}
	t0 = time.Now()
	cpu, err = b.desync(ctx, "extract", "-s", store, idx, out)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	add("read-cold", time.Since(t0), cpu, map[string]float64{"drop_caches": how})

	if b.opts.verify && run == 0 {
		if err := sameFiles(ctx, src, out); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		line += " (contents verified)"
	}
	b.logf("run %d/%d %-34s MiB/s:%s", run+1, b.opts.runs, name, line)
	return nil
}

// desync runs the desync binary with args and returns its CPU seconds.
func (b *bench) desync(ctx context.Context, args ...string) (float64, error) {
	cmd := exec.CommandContext(ctx, b.opts.desync, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = &stderr
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("desync %s: %w: %s", args[0], err, bytes.TrimSpace(stderr.Bytes()))
	}
	return (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds(), nil
}

// syncfs syncs the filesystem that holds dir.
func syncfs(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

// findDesync resolves the -desync binary: its absolute path, or why the
// desync baselines are skipped.
func findDesync(p string) (string, string) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Sprintf("-desync %s: %v", p, err)
	}
	st, err := os.Stat(abs)
	switch {
	case err != nil:
		return "", fmt.Sprintf("-desync %s not found (`make desync` builds it)", p)
	case st.IsDir() || st.Mode().Perm()&0o111 == 0:
		return "", fmt.Sprintf("-desync %s is not an executable", p)
	}
	return abs, ""
}
