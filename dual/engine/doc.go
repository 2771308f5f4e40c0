// Package engine opens and creates a dualstore filesystem from its
// configuration, without any front end: it completes and checks the
// config (Config.Complete), locks the data dir, opens both tiers through a
// store Registry, opens or creates the index, and builds the dual manager
// over them (Open, Create, OpenOrCreate, Close). The FUSE mount
// (package fs) and the offline maintenance commands are front ends over an
// Engine; cmd/dualstore only reads the config file and flags and calls it.
//
// The registry is a value, not a global: each backend brings its own
// config type (a stores.Config: its keys, defaults, validation and
// constructor), and DefaultRegistry registers the ones dualstore ships. A
// new backend is its package plus one Register line.
//
// Imports: engine sits above dual, index, chunker and the store backends,
// and below the front ends (fs, cmd); it must not import package fs or
// go-fuse.
//
// Invariants it keeps:
//   - a data dir is used by one process at a time (an flock'ed "lock" file
//     naming its holder);
//   - an existing filesystem never gets a store directory created for it,
//     and a new one is never created over stores that hold chunks (that is
//     a filesystem whose index was lost);
//   - a failed open or create leaves nothing behind that it created;
//   - a setting the user must fix fails with a *ConfigError naming the key,
//     before anything is created;
//   - every number is within its entry of the bounds table (dual/bounds);
//   - the data dir and every local store's path are resolved once, every
//     symlink followed, in Complete, and used resolved from then on; none
//     is at / or in a system directory, none collides with the data dir or
//     its staging area, and (CheckMountpoint, at mount time) none is
//     inside the mount point; no two stores share a name;
//   - log_file, if set, is resolved the same way, its directory exists,
//     and (CheckMountpoint) it is not inside the mount point.
package engine
