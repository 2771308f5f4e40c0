package fs

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/dualstore/dualstore/dual"
)

// errBadCommand is wrapped by every error parseCommand returns; it maps to
// EINVAL.
var errBadCommand = errors.New("bad control command")

// command is one parsed line written to `.dualstore/ctl`.
type command struct {
	Verb string // compare, repair, stop, gc, read-preference, reset-stats
	Deep bool
	Path string // compare: limit to this subtree ("/" = all)
	Pref dual.Preference
}

// maxCommandLen bounds what a ctl write may hold: one short command.
const maxCommandLen = 4096

// parseCommand parses one control command. Anything unknown or malformed
// is an error wrapping errBadCommand, and nothing runs.
func parseCommand(b []byte) (command, error) {
	if len(b) > maxCommandLen {
		return command{}, fmt.Errorf("%w: %d bytes, at most %d", errBadCommand, len(b), maxCommandLen)
	}
	s := strings.TrimSuffix(string(b), "\n")
	s = strings.TrimSuffix(s, "\r")
	if strings.ContainsAny(s, "\n\x00") {
		return command{}, fmt.Errorf("%w: one command per write", errBadCommand)
	}
	f := strings.Fields(s)
	if len(f) == 0 {
		return command{}, fmt.Errorf("%w: empty command", errBadCommand)
	}
	c := command{Verb: f[0]}
	args := f[1:]
	switch c.Verb {
	case "compare":
		if len(args) > 0 && args[0] == "deep" {
			c.Deep = true
			args = args[1:]
		}
		c.Path = "/"
		if len(args) > 1 {
			return command{}, fmt.Errorf("%w: usage: compare [deep] [PATH]", errBadCommand)
		}
		if len(args) == 1 {
			p := args[0]
			if !strings.HasPrefix(p, "/") {
				p = "/" + p
			}
			c.Path = path.Clean(p)
		}
	case "repair", "stop", "gc", "reset-stats":
		if len(args) != 0 {
			return command{}, fmt.Errorf("%w: %s takes no arguments", errBadCommand, c.Verb)
		}
	case "read-preference":
		if len(args) != 1 {
			return command{}, fmt.Errorf("%w: usage: read-preference primary|safety|fastest", errBadCommand)
		}
		p, err := dual.ParsePreference(args[0])
		if err != nil {
			return command{}, fmt.Errorf("%w: %w", errBadCommand, err)
		}
		c.Pref = p
	default:
		return command{}, fmt.Errorf("%w: unknown command %q (want compare [deep] [PATH], repair, stop, gc, read-preference primary|safety|fastest, reset-stats)", errBadCommand, c.Verb)
	}
	return c, nil
}
