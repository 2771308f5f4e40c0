package fs

import "testing"

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{
		`/mnt/plain`:          "/mnt/plain",
		`/mnt/with\040space`:  "/mnt/with space",
		`/mnt/tab\011end`:     "/mnt/tab\tend",
		`/mnt/back\134slash`:  `/mnt/back\slash`,
		`/mnt/short\04`:       `/mnt/short\04`,
		`/mnt/notoctal\09x`:   `/mnt/notoctal\09x`,
		`/mnt/trailing\`:      `/mnt/trailing\`,
		`/mnt/two\040\040sp`:  "/mnt/two  sp",
		`\040leading`:         " leading",
		`/mnt/newline\012end`: "/mnt/newline\nend",
	} {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("unescapeMountinfo(%q) = %q, want %q", in, got, want)
		}
	}
}
