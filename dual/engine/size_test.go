package engine

import "testing"

func TestParseBytes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{in: "4096", want: 4096},
		{in: "64K", want: 64 << 10},
		{in: "256MiB", want: 256 << 20},
		{in: "1GiB", want: 1 << 30},
		{in: "4G", want: 4 << 30},
		{in: "1GB", want: 1 << 30},
		{in: "1.5G", want: 3 << 29},
		{in: "12X", bad: true},
		{in: "", bad: true},
		{in: "10M/s", want: 10 << 20},
		{in: "1.5K", want: 1536},
		{in: "-1", bad: true},
		{in: "NaN", bad: true},
		{in: "99999999T", bad: true},
	} {
		got, err := ParseBytes(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("ParseBytes(%q) = %d, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}
