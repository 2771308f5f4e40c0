package stores

import (
	"context"
	"fmt"
	"time"
)

// Config is one backend's part of a store's configuration: the keys of a
// store entry in the config file besides its name and type, as a struct
// with yaml and json tags. Each backend brings its own (local.Config,
// s3.Config); a registry in the engine maps a type name to a constructor of
// it, so a new backend is its package plus one registration line.
type Config interface {
	// Complete fills the defaults, so the rendered config shows what is in
	// effect, and checks every value without touching the store. key names
	// the entry in messages ("safety[0]"): "safety[0].path: required".
	Complete(key string) error
	// Open opens the store named name. create is set while a new
	// filesystem is being created: only then may a backend create what is
	// missing (a directory, a bucket it was told to create); for an
	// existing filesystem a missing store is an error, since its chunks
	// should be there. undo, if not nil, removes what Open created, for a
	// creation that fails later on.
	Open(ctx context.Context, name string, create bool) (s Store, undo func(), err error)
}

// Overlapper is a Config that can tell whether another store's config
// shares its storage, which would make the tiers dependent (one deletion
// or outage hitting both copies). key and otherKey name the two entries
// for the message; sameTier says whether both are members of one tier.
// It returns nil when they are apart or of different kinds.
type Overlapper interface {
	Overlaps(key string, other Config, otherKey string, sameTier bool) error
}

// Duration is a time.Duration written as "5s" in YAML and JSON alike, so
// the rendered config reads like the config file.
type Duration time.Duration

// D returns the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalText writes the duration as Go does ("1m30s").
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText reads a Go duration ("500ms", "5s", "2m").
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: want e.g. 500ms, 5s, 2m", b)
	}
	*d = Duration(v)
	return nil
}
