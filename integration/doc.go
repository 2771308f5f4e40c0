// Package integration holds the end-to-end tests of dualstore: they run the
// built binary (DUALSTORE_BIN, or one built once by TestMain) as a
// subprocess, mount real FUSE filesystems in temporary directories, drive
// them with real tools (cp, cat, cmp, dd, mv, rm, truncate, rsync…) and
// inspect the two chunk stores on disk.
//
// Requirements: root and /dev/fuse. Without them every test skips loudly;
// with CI=true they fail instead. A run fails if it leaves a mount behind.
//
// The package has no non-test code besides this comment and must not be
// imported.
package integration
