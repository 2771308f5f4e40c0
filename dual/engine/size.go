package engine

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ParseBytes reads a byte count or rate (config, ctl, CLI flags, the
// bench), the one size parser of the project: a plain number, or one with a
// K, M, G or T suffix (powers of 1024; "KiB", "MB" and "M" all mean the
// same). Zero means unlimited where a rate is meant.
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	u := strings.ToUpper(t)
	u = strings.TrimSuffix(strings.TrimSuffix(u, "/S"), "B")
	u = strings.TrimSuffix(u, "I")
	mult := int64(1)
	if n := len(u); n > 0 {
		switch u[n-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult > 1 {
			u = u[:n-1]
		}
	}
	v, err := strconv.ParseFloat(u, 64)
	if err != nil || v < 0 || math.IsNaN(v) || math.IsInf(v, 0) || v*float64(mult) > math.MaxInt64/2 {
		return 0, fmt.Errorf("%q: want a byte count like 50M or 1048576", s)
	}
	return int64(v * float64(mult)), nil
}
