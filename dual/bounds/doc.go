// Package bounds is the one table of the sane range of every numeric and
// duration setting of dualstore: the config file's keys, and the CLI
// flags and `.dualstore/ctl` options that set the same things. Each entry
// says the key, the range, the unit and why the range is what it is; the
// config's Complete, the flags and the ctl parser all check against it,
// so a value is refused (or accepted) the same way wherever it is given,
// with an error naming the key (or flag), the value and the range. The
// README's bounds table is this table.
//
// It imports nothing of dualstore's, so every layer can use it.
//
// Invariants:
//   - Every numeric or duration key of the config has exactly one entry
//     (the engine's tests walk the config to check).
//   - Entries are values: Of returns a copy, nothing changes the table.
package bounds
