package fs

import (
	"testing"
	"time"
)

// BenchmarkFuseOpsDone is the cost counting adds to every FUSE request.
func BenchmarkFuseOpsDone(b *testing.B) {
	var o fuseOps
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			o.done(opWrite, time.Now())
		}
	})
}
