//go:build tools

// Package tools pins desync, the casync-compatible peer the integration
// tests run against (see integration/README.md). It is its own module so the
// project's go.mod does not carry desync's dependencies.
package tools

import _ "github.com/folbricht/desync/cmd/desync"
