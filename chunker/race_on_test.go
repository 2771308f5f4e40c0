//go:build race

package chunker

// raceEnabled shrinks the slow data-heavy tests: the race detector makes
// restic's inner loop about ten times slower.
const raceEnabled = true
