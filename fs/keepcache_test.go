package fs

import "testing"

func TestKeepCache(t *testing.T) {
	var k keepCache
	// open is k.open's keep answer; opening, the writing answer of the
	// last open it made.
	var writing bool
	kopen := func(ino uint64, write bool) bool {
		keep, w := k.open(ino, write)
		writing = w
		return keep
	}
	steps := []struct {
		what  string
		do    func() bool
		want  bool
		known int // entries left
	}{
		{"first open of a file never written here", func() bool { return kopen(1, false) }, true, 0},
		{"create (a write open) of a new file", func() bool { return kopen(2, true) }, true, 1},
		{"reader while it is being written", func() bool { return kopen(2, false) }, false, 1},
		{"second writer", func() bool { return kopen(2, true) }, false, 1},
		{"first writer gone, second still writing", func() bool { k.release(2, true); return kopen(2, false) }, false, 1},
		{"last writer gone: the first open drops", func() bool { k.release(2, true); return kopen(2, false) }, false, 0},
		{"then opens keep", func() bool { return kopen(2, false) }, true, 0},
		{"truncate: the next open drops", func() bool { k.change(2); return kopen(2, false) }, false, 0},
		{"written but forgotten by the kernel", func() bool { kopen(3, true); k.release(3, true); k.forget(3); return kopen(3, false) }, true, 0},
		{"forget while written: kept", func() bool { kopen(4, true); k.forget(4); k.release(4, true); return kopen(4, false) }, false, 0},
	}
	for _, s := range steps {
		writing = false
		if got := s.do(); got != s.want {
			t.Errorf("%s: keep %v, want %v", s.what, got, s.want)
		}
		if want := s.what == "reader while it is being written" || s.what == "second writer" ||
			s.what == "first writer gone, second still writing"; writing != want {
			t.Errorf("%s: writing %v, want %v (a reader then bypasses the page cache)", s.what, writing, want)
		}
		if len(k.m) != s.known {
			t.Errorf("%s: %d entries, want %d", s.what, len(k.m), s.known)
		}
	}
}
