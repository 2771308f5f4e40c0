package main

import (
	"fmt"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
)

// bar is a progress bar on stderr, drawn only when stderr is a terminal
// (a log or a pipe gets the command's summary line alone). The zero of
// its use is a nil *bar: every method is then a no-op.
type bar struct{ pb *progressbar.ProgressBar }

// newBar starts a bar over total units (bytes when inBytes, else a count).
func newBar(total int64, what string, inBytes bool) *bar {
	if !stderrIsTerminal() {
		return nil
	}
	opts := []progressbar.Option{progressbar.OptionSetWriter(os.Stderr), progressbar.OptionSetDescription(what),
		progressbar.OptionThrottle(200 * time.Millisecond)}
	if inBytes {
		opts = append(opts, progressbar.OptionShowBytes(true))
	} else {
		opts = append(opts, progressbar.OptionShowCount())
	}
	return &bar{progressbar.NewOptions64(total, opts...)}
}

// add moves the bar on by n; a bar that cannot draw is no reason to stop.
func (b *bar) add(n int64) {
	if b != nil {
		_ = b.pb.Add64(n)
	}
}

// set moves the bar to done.
func (b *bar) set(done int64) {
	if b != nil {
		_ = b.pb.Set64(done)
	}
}

// finish draws the bar full and ends its line.
func (b *bar) finish() {
	if b != nil {
		_ = b.pb.Finish()
		fmt.Fprintln(os.Stderr)
	}
}
