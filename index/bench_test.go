package index

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func BenchmarkCreate(b *testing.B) {
	ctx := context.Background()
	db, _ := newDB(b)
	d := mkdir(b, db, RootIno, "d")
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := db.Create(ctx, d.Ino, fmt.Sprintf("file-%09d", i), fileNode()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCreateCommit is what closing a new small file costs: create,
// then commit a one-chunk list.
func BenchmarkCreateCommit(b *testing.B) {
	ctx := context.Background()
	db, _ := newDB(b)
	d := mkdir(b, db, RootIno, "d")
	for i := 0; b.Loop(); i++ {
		a, err := db.Create(ctx, d.Ino, fmt.Sprintf("file-%09d", i), fileNode())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := db.CommitChunks(ctx, a.Ino, []Chunk{{ID: cid(i), Size: 4096}}, t0); err != nil {
			b.Fatal(err)
		}
	}
}

func bigList(base, n int) []Chunk {
	cs := make([]Chunk, n)
	for i := range cs {
		cs[i] = Chunk{ID: cid(base + i), Size: 1 << 20}
	}
	return cs
}

// BenchmarkCommitChunks4096New commits a 4 GiB file of 4096 new chunks.
func BenchmarkCommitChunks4096New(b *testing.B) {
	ctx := context.Background()
	db, _ := newDB(b)
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		f := mkfile(b, db, RootIno, fmt.Sprint(i))
		cs := bigList(i*4096, 4096)
		b.StartTimer()
		if _, err := db.CommitChunks(ctx, f.Ino, cs, t0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCommitChunks4096Replace rewrites every chunk of a 4096-chunk file.
func BenchmarkCommitChunks4096Replace(b *testing.B) {
	ctx := context.Background()
	db, _ := newDB(b)
	f := mkfile(b, db, RootIno, "f")
	for i := 0; b.Loop(); i++ {
		if _, err := db.CommitChunks(ctx, f.Ino, bigList((i%2)*4096, 4096), t0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCommitChunks4096Append appends one chunk to a 4096-chunk file.
func BenchmarkCommitChunks4096Append(b *testing.B) {
	ctx := context.Background()
	db, _ := newDB(b)
	f := mkfile(b, db, RootIno, "f")
	cs := bigList(0, 4096)
	if _, err := db.CommitChunks(ctx, f.Ino, cs, t0); err != nil {
		b.Fatal(err)
	}
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		next := append(cs[:4096:4096], Chunk{ID: cid(1e6 + i), Size: 1})
		b.StartTimer()
		if _, err := db.CommitChunks(ctx, f.Ino, next, t0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLookup(b *testing.B) {
	ctx := context.Background()
	db, _ := newDB(b)
	d := mkdir(b, db, RootIno, "d")
	for i := range 1000 {
		mkfile(b, db, d.Ino, fmt.Sprintf("file-%04d", i))
	}
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := db.Lookup(ctx, d.Ino, fmt.Sprintf("file-%04d", i%1000)); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

func BenchmarkLookupSerial(b *testing.B) {
	ctx := context.Background()
	db, _ := newDB(b)
	d := mkdir(b, db, RootIno, "d")
	for i := range 1000 {
		mkfile(b, db, d.Ino, fmt.Sprintf("file-%04d", i))
	}
	for i := 0; b.Loop(); i++ {
		if _, err := db.Lookup(ctx, d.Ino, fmt.Sprintf("file-%04d", i%1000)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGetAttr(b *testing.B) {
	ctx := context.Background()
	db, _ := newDB(b)
	f := mkfile(b, db, RootIno, "f")
	for b.Loop() {
		if _, err := db.GetAttr(ctx, f.Ino); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSync is the index's share of one fsync(2): a small commit, then
// Sync.
func BenchmarkSync(b *testing.B) {
	ctx := context.Background()
	db, _ := newDB(b)
	f := mkfile(b, db, RootIno, "f")
	for i := 0; b.Loop(); i++ {
		if _, err := db.CommitChunks(ctx, f.Ino, []Chunk{{ID: cid(i), Size: 10}}, t0); err != nil {
			b.Fatal(err)
		}
		if err := db.Sync(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUsage(b *testing.B) {
	ctx := context.Background()
	db, _ := newDB(b)
	for b.Loop() {
		if _, err := db.Usage(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadDir128(b *testing.B) {
	ctx := context.Background()
	db, _ := newDB(b)
	d := mkdir(b, db, RootIno, "d")
	for i := range 5000 {
		mkfile(b, db, d.Ino, fmt.Sprintf("file-%04d", i))
	}
	for i := 0; b.Loop(); i++ {
		if _, err := db.ReadDir(ctx, d.Ino, fmt.Sprintf("file-%04d", (i*128)%4800), 128); err != nil {
			b.Fatal(err)
		}
	}
}

var _ = time.Now
