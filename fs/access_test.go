package fs

import (
	"context"
	"encoding/json"
	"strings"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/dualstore/dualstore/dual"
)

func asUID(uid uint32) context.Context {
	return fuse.NewContext(context.Background(), &fuse.Caller{Owner: fuse.Owner{Uid: uid, Gid: uid}})
}

// TestSeesNames: root and the daemon's own uid see paths and chunk ids in
// the control documents, anyone else (and a request without a caller)
// the counts; only uid 0 passes for trusted.*.
func TestSeesNames(t *testing.T) {
	other := uint32(54321)
	if uint32(syscall.Getuid()) == other {
		other++
	}
	for _, tc := range []struct {
		name       string
		ctx        context.Context
		names, yes bool
	}{
		{"root", asUID(0), true, true},
		{"the mount's owner", asUID(uint32(syscall.Getuid())), true, syscall.Getuid() == 0},
		{"another user", asUID(other), false, false},
		{"no caller", context.Background(), false, false},
	} {
		if got := seesNames(tc.ctx); got != tc.names {
			t.Errorf("%s: seesNames = %v, want %v", tc.name, got, tc.names)
		}
		if got := callerIsRoot(tc.ctx); got != tc.yes {
			t.Errorf("%s: callerIsRoot = %v, want %v", tc.name, got, tc.yes)
		}
	}
}

// TestCountsOnly: the counts-only form of a report keeps the state and
// the counts, and drops every path, chunk id and error text.
func TestCountsOnly(t *testing.T) {
	const id, file = "7f7d37099dd9ed96da1e05a61228ded4d3a875b4428655533768b4d806b455d3", "/private/salary.txt"
	r := dual.Report{State: "failed", Action: "repair", Path: "/private", Total: 3, Done: 2, PrimaryOnly: 1, Repaired: 1,
		Details: []dual.Detail{{Chunk: id, Class: dual.ClassPrimaryOnly, Files: []string{file}, Error: "put " + id + ": boom"}},
		Error:   "reading " + file + ": boom"}
	other := asUID(54321)
	if uint32(syscall.Getuid()) == 54321 {
		other = asUID(54322)
	}
	s := Stats{Files: 7}
	s.LastCompare = &r
	for name, doc := range map[string]any{"compare": compareFor(other, r, true), "stats": statsFor(other, s)} {
		b, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		out := string(b)
		for _, secret := range []string{id, file, "/private", "boom"} {
			if strings.Contains(out, secret) {
				t.Errorf("%s for another user shows %q: %s", name, secret, out)
			}
		}
		for _, want := range []string{`"redacted":true`, `"state":"failed"`, `"primary_only":1`, `"repaired":1`, `"total":3`} {
			if !strings.Contains(out, want) {
				t.Errorf("%s for another user lacks %s: %s", name, want, out)
			}
		}
	}
	if b, _ := json.Marshal(compareFor(asUID(0), r, false)); !strings.Contains(string(b), id) || !strings.Contains(string(b), file) || strings.Contains(string(b), "redacted") {
		t.Errorf("compare for root: %s, want the details and no redacted mark", b)
	}
	if r.Details[0].Chunk != id || r.Path != "/private" {
		t.Errorf("countsOnly changed the report it was given: %+v", r)
	}
}
