package fs

import (
	"context"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/dualstore/dualstore/dual"
)

// Who sees what. The kernel checks modes against the stored owners
// (default_permissions) before a request reaches the daemon; what it
// cannot check is left to these rules:
//
//   - The world-readable control documents (`stats`, `compare`) name files
//     and chunks: the paths of the files a difference touches, whose
//     directories the reader may not be allowed to list, and their chunk
//     ids, which for a one-chunk file are a hash of its content that
//     confirms a guess. Only root and the mount's owner see them; anyone
//     else sees the counts.
//   - The trusted.* extended attributes are for root alone, as on ext4:
//     the kernel refuses others' get and set before the daemon hears of
//     them, but on FUSE it hands listxattr's list through unfiltered.

// callerUID returns the uid of the process behind a FUSE request, and
// false when ctx carries none.
func callerUID(ctx context.Context) (uint32, bool) {
	if c, ok := fuse.FromContext(ctx); ok {
		return c.Uid, true
	}
	return 0, false
}

// callerIsRoot reports whether a request comes from uid 0. The kernel
// gives trusted.* to CAP_SYS_ADMIN; FUSE tells the daemon the caller's
// uid, not its capabilities, so uid 0 stands in for it. A request without
// a caller is not root.
func callerIsRoot(ctx context.Context) bool {
	uid, ok := callerUID(ctx)
	return ok && uid == 0
}

// seesNames reports whether a request may see file paths and chunk ids:
// it comes from root, who may read everything below the mount anyway, or
// from the mount's owner (the daemon's uid), whose files the index and
// the stores are. A request without a caller sees only counts.
func seesNames(ctx context.Context) bool {
	uid, ok := callerUID(ctx)
	return ok && (uid == 0 || uid == uint32(syscall.Getuid()))
}

// trustedXattr reports names in the trusted namespace.
func trustedXattr(name string) bool { return strings.HasPrefix(name, "trusted.") }

// countsOnly returns r without what may name a file or a chunk: the
// details, the subtree the action was limited to, and the error text.
// The state and every count stay.
func countsOnly(r dual.Report) dual.Report {
	r.Path = ""
	r.Details = []dual.Detail{}
	if r.Error != "" {
		r.Error = "hidden: only root and the mount's owner see the error"
	}
	return r
}

// statsDoc is the `.dualstore/stats` document as one reader gets it;
// Redacted marks the counts-only form.
type statsDoc struct {
	Stats
	Redacted bool `json:"redacted,omitempty"`
}

// statsFor returns s as the caller of ctx may see it.
func statsFor(ctx context.Context, s Stats) statsDoc {
	if seesNames(ctx) {
		return statsDoc{Stats: s}
	}
	if s.LastCompare != nil {
		r := countsOnly(*s.LastCompare)
		r.Details = nil // stats never carries them (see dual.Manager.Stats)
		s.LastCompare = &r
	}
	return statsDoc{Stats: s, Redacted: true}
}

// compareFor returns the compare document as the caller of ctx may see it.
func compareFor(ctx context.Context, r dual.Report, auto bool) compareDoc {
	if seesNames(ctx) {
		return compareDoc{Report: r, Automatic: auto}
	}
	return compareDoc{Report: countsOnly(r), Automatic: auto, Redacted: true}
}
