package stores_test

import (
	"strings"
	"testing"

	"github.com/dualstore/dualstore/stores"
)

func TestValidMetaName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"a", true},
		{"index", true},
		{"index/gen-000001.zst", true},
		{"A-Z_a-z.0-9", true},
		{"a/b/c/d", true},
		{".hidden", true},
		{"..x", true},
		{"x..", true},
		{"_meta/x", true},
		{strings.Repeat("a", stores.MaxMetaName), true},
		{strings.Repeat("ab/", stores.MaxMetaName/3-1) + "ab", true},

		{"", false},
		{strings.Repeat("a", stores.MaxMetaName+1), false},
		{strings.Repeat("a", 300), false},
		{"/a", false},
		{"a/", false},
		{"/", false},
		{"a//b", false},
		{".", false},
		{"..", false},
		{"../x", false},
		{"x/..", false},
		{"a/./b", false},
		{"a/../b", false},
		{"a b", false},
		{"a\\b", false},
		{"a\x00b", false},
		{"a\nb", false},
		{"a:b", false},
		{"a*", false},
		{"é", false},
	}
	for _, tt := range tests {
		t.Run(strings.ReplaceAll(tt.name, "/", "|"), func(t *testing.T) {
			err := stores.ValidMetaName(tt.name)
			if (err == nil) != tt.ok {
				t.Fatalf("ValidMetaName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
			}
		})
	}
}
