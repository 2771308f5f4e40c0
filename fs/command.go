package fs

import (
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/dualstore/dualstore/dual"
	"github.com/dualstore/dualstore/dual/bounds"
	"github.com/dualstore/dualstore/dual/engine"
	"github.com/dualstore/dualstore/dual/maint"
)

// errBadCommand is wrapped by every error parseCommand returns; it maps to
// EINVAL.
var errBadCommand = errors.New("bad control command")

// command is one parsed line written to `.dualstore/ctl`.
type command struct {
	Verb   string // compare, repair, migrate, gc, stop, read-preference, reset-stats
	Deep   bool
	DryRun bool // gc
	// AfterRestore lets gc sweep after a restore (maint.GCAllowed).
	AfterRestore bool
	Path         string // compare, repair: limit to this subtree ("/" = all)
	Direction    string // migrate
	Pref         dual.Preference
	// Tuning are the run's rate=N and concurrency=N; unset keeps the
	// configured value, and rate=0 asks for no limit.
	Tuning maint.Overrides
}

// maxCommandLen bounds what a ctl write may hold: one short command.
const maxCommandLen = 4096

// MaxCommandLen is the size of CtlIoctl's buffer: a command of fewer
// bytes, NUL-padded.
const MaxCommandLen = maxCommandLen

const commandUsage = "compare [deep] [rate=N] [concurrency=N] [PATH], repair [rate=N] [concurrency=N] [PATH], " +
	"migrate to_safety|to_primary|compare_all [rate=N] [concurrency=N], gc [dry-run] [after-restore], stop, " +
	"read-preference primary|safety|fastest, reset-stats"

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
	toks, err := splitCommand(s)
	if err != nil {
		return command{}, err
	}
	if len(toks) == 0 {
		return command{}, fmt.Errorf("%w: empty command", errBadCommand)
	}
	if toks[0].quoted {
		return command{}, fmt.Errorf("%w: a quoted verb %q", errBadCommand, toks[0].s)
	}
	c := command{Verb: toks[0].s}
	// Tuning options (key=value) may come anywhere after the verb. A
	// quoted argument is a path, whatever it holds: "deep", a "=", spaces.
	tunable := c.Verb == "compare" || c.Verb == "repair" || c.Verb == "migrate"
	var rest []string
	deep := false
	for _, t := range toks[1:] {
		if t.quoted {
			if c.Verb != "compare" && c.Verb != "repair" {
				return command{}, fmt.Errorf("%w: %s takes no quoted argument", errBadCommand, c.Verb)
			}
			if t.s == "" {
				// A script's empty variable, quoted: not the whole tree
				// (that is no PATH, or "/").
				return command{}, fmt.Errorf("%w: %s: an empty quoted path", errBadCommand, c.Verb)
			}
			rest = append(rest, t.s)
			continue
		}
		a := t.s
		if c.Verb == "compare" && a == "deep" && len(rest) == 0 && !deep {
			deep = true // the first word that is not an option
			continue
		}
		k, v, ok := strings.Cut(a, "=")
		if !ok || !tunable {
			rest = append(rest, a)
			continue
		}
		switch k {
		case "rate":
			n, err := engine.ParseBytes(v)
			if err != nil {
				return command{}, fmt.Errorf("%w: rate: %w", errBadCommand, err)
			}
			// The bounds of the config's compare.rate and the CLI's --rate.
			if err := bounds.Of(bounds.CompareRate).Check("rate", n); err != nil {
				return command{}, fmt.Errorf("%w: %w", errBadCommand, err)
			}
			c.Tuning.Rate = &n
		case "concurrency":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return command{}, fmt.Errorf("%w: concurrency %q: want a number", errBadCommand, v)
			}
			if err := bounds.Of(bounds.CompareConcurrency).Check("concurrency", n); err != nil {
				return command{}, fmt.Errorf("%w: %w", errBadCommand, err)
			}
			c.Tuning.Concurrency = int(n)
		default:
			return command{}, fmt.Errorf("%w: %s: unknown option %q (want rate=N or concurrency=N)", errBadCommand, c.Verb, k)
		}
	}
	args := rest
	switch c.Verb {
	case "compare", "repair":
		c.Deep = deep
		c.Path = "/"
		if len(args) > 1 {
			return command{}, fmt.Errorf("%w: usage: %s", errBadCommand, commandUsage)
		}
		if len(args) == 1 {
			p := args[0]
			if strings.IndexFunc(p, unicode.IsControl) >= 0 || !utf8.ValidString(p) {
				return command{}, fmt.Errorf("%w: path %q holds control characters or invalid UTF-8", errBadCommand, p)
			}
			if !strings.HasPrefix(p, "/") {
				p = "/" + p
			}
			c.Path = path.Clean(p)
		}
	case "migrate":
		if len(args) != 1 {
			return command{}, fmt.Errorf("%w: usage: migrate to_safety|to_primary|compare_all [rate=N] [concurrency=N]", errBadCommand)
		}
		d, err := dual.ParseDirection(args[0])
		if err != nil {
			return command{}, fmt.Errorf("%w: %w", errBadCommand, err)
		}
		c.Direction = d
	case "gc":
		for _, a := range args {
			switch a {
			case "dry-run":
				c.DryRun = true
			case "after-restore":
				c.AfterRestore = true
			default:
				return command{}, fmt.Errorf("%w: usage: gc [dry-run] [after-restore]", errBadCommand)
			}
		}
	case "stop", "reset-stats":
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
		return command{}, fmt.Errorf("%w: unknown command %q (want %s)", errBadCommand, c.Verb, commandUsage)
	}
	return c, nil
}

// token is a word of a control command: as written, or a double-quoted
// Go string literal (how the CLI sends a path), unquoted.
type token struct {
	s      string
	quoted bool
}

// splitCommand splits a command into words at white space; a word that
// starts with a double quote is a Go string literal up to its closing
// quote (escapes as strconv.Unquote reads them), followed by white space
// or the end.
func splitCommand(s string) ([]token, error) {
	var toks []token
	for i := 0; i < len(s); {
		if s[i] == ' ' || s[i] == '\t' {
			i++
			continue
		}
		if s[i] != '"' {
			j := strings.IndexAny(s[i:], " \t")
			if j < 0 {
				j = len(s) - i
			}
			toks = append(toks, token{s: s[i : i+j]})
			i += j
			continue
		}
		j := i + 1
		for j < len(s) && s[j] != '"' {
			if s[j] == '\\' {
				j++
			}
			j++
		}
		if j >= len(s) {
			return nil, fmt.Errorf("%w: unbalanced double quote", errBadCommand)
		}
		u, err := strconv.Unquote(s[i : j+1])
		if err != nil {
			return nil, fmt.Errorf("%w: quoted argument %s: %w", errBadCommand, s[i:j+1], err)
		}
		if j+1 < len(s) && s[j+1] != ' ' && s[j+1] != '\t' {
			return nil, fmt.Errorf("%w: a quoted argument runs into %q", errBadCommand, s[j+1:])
		}
		toks = append(toks, token{s: u, quoted: true})
		i = j + 1
	}
	return toks, nil
}
