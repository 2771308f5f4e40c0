package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

func main() {
	backing := flag.String("backing", "", "the backing directory (required): where synced data lands")
	mnt := flag.String("mount", "", "the mount point (required)")
	debug := flag.Bool("debug", false, "log every FUSE request to stderr")
	flag.Parse()
	if *backing == "" || *mnt == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: powerloss -backing DIR -mount DIR [-debug]")
		os.Exit(2)
	}
	if err := run(*backing, *mnt, *debug); err != nil {
		fmt.Fprintln(os.Stderr, "powerloss:", err)
		os.Exit(1)
	}
}

// run mounts the layer and serves it until SIGTERM or SIGINT, then
// unmounts.
func run(backing, mnt string, debug bool) error {
	backing, err := filepath.Abs(backing)
	if err != nil {
		return err
	}
	if mnt, err = filepath.Abs(mnt); err != nil {
		return err
	}
	if st, err := os.Stat(backing); err != nil {
		return err
	} else if !st.IsDir() {
		return fmt.Errorf("-backing %s is not a directory", backing)
	}
	// The kernel has already applied the caller's umask to the modes it
	// sends.
	syscall.Umask(0)
	root, err := gofs.NewLoopbackRoot(backing)
	if err != nil {
		return fmt.Errorf("loopback root %s: %w", backing, err)
	}
	ln, ok := root.(*gofs.LoopbackNode)
	if !ok {
		return fmt.Errorf("loopback root %s: go-fuse returned a %T, want *fs.LoopbackNode", backing, root)
	}
	timeout := time.Second
	opts := &gofs.Options{
		MountOptions: fuse.MountOptions{
			FsName:      backing,
			Name:        "powerloss",
			DirectMount: true,
			MaxWrite:    1 << 20,
			Debug:       debug,
			// No writeback cache (go-fuse does not ask for it): every
			// write reaches the layer before write(2) returns, and the
			// kernel keeps no dirty data of its own that a power loss
			// would have to drop. Locks stay in the kernel (no
			// EnableLocks), as SQLite needs nothing more on one machine.
		},
		EntryTimeout: &timeout,
		AttrTimeout:  &timeout,
	}
	// go-fuse logs to the standard logger otherwise (a splice that falls
	// back, for one): the layer logs nothing unless asked to.
	opts.Logger = log.New(io.Discard, "", 0)
	opts.MountOptions.Logger = opts.Logger
	if debug {
		opts.Logger = log.New(os.Stderr, "powerloss: ", log.Lmicroseconds)
		opts.MountOptions.Logger = opts.Logger
	}
	srv, err := gofs.Mount(mnt, &node{LoopbackNode: ln, files: newFiles()}, opts)
	if err != nil {
		return fmt.Errorf("mount %s: %w", mnt, err)
	}

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { srv.Wait(); close(done) }()
	select {
	case <-done:
		return errors.New("unmounted from outside")
	case <-sigs:
	}
	// Unsynced data is dropped here too: a clean stop is not a sync.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := srv.Unmount()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			_ = syscall.Unmount(mnt, syscall.MNT_DETACH)
			return fmt.Errorf("unmount %s: %w (detached it)", mnt, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	<-done
	return nil
}
