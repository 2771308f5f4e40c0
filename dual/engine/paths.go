package engine

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/dualstore/dualstore/stores/local"
)

// systemDirs are the directories no data dir or local store may be in,
// nor at /: where a stray write damages the system (/etc, /boot, the
// programs and libraries of /bin, /sbin, /lib*, /usr), or that are no
// storage at all (the kernel's /proc, /sys, /dev; /run, a tmpfs emptied
// at every boot, and /var/run, a symlink to it, resolved like any other).
// /var, /opt, /srv, /home, /root, /mnt, /media and /tmp are where data
// goes, and stay allowed.
func systemDirs() []string {
	return []string{"/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run", "/sbin", "/sys", "/usr"}
}

// within reports whether p is dir or below it (both clean and absolute).
func within(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+string(filepath.Separator))
}

// refusedPlace says why p (resolved) may hold no dualstore data, or "".
func refusedPlace(p string) string {
	if p == "/" {
		return "the root directory"
	}
	for _, d := range systemDirs() {
		if within(p, d) {
			return "inside " + d
		}
	}
	return ""
}

// maxSymlinks bounds the links resolvePath follows, as the kernel's
// ELOOP does.
const maxSymlinks = 40

// resolvePath resolves every symlink of the absolute path p, for a p
// that may not exist yet: its deepest existing ancestor is resolved and
// the rest appended, and a dangling symlink on the way is followed to
// where it points (where the directory would be created). The result is
// what the store will use, so a link cannot be changed to point
// elsewhere between the check and the use.
func resolvePath(p string) (string, error) {
	p = filepath.Clean(p)
	for range maxSymlinks {
		next, done, err := resolveStep(p)
		if err != nil || done {
			return next, err
		}
		p = next
	}
	return "", fmt.Errorf("%s: too many levels of symbolic links", p)
}

// resolveStep resolves p's deepest existing ancestor. If that is a
// dangling symlink it returns where the link points, with the rest of p,
// to resolve again (done false).
func resolveStep(p string) (string, bool, error) {
	dir, rest := p, ""
	for {
		fi, err := os.Lstat(dir)
		switch {
		case err == nil && fi.Mode()&iofs.ModeSymlink != 0:
			if _, serr := os.Stat(dir); errors.Is(serr, iofs.ErrNotExist) {
				t, err := os.Readlink(dir)
				if err != nil {
					return "", false, err
				}
				if !filepath.IsAbs(t) {
					t = filepath.Join(filepath.Dir(dir), t)
				}
				return filepath.Join(t, rest), false, nil
			}
			fallthrough
		case err == nil:
			r, err := filepath.EvalSymlinks(dir)
			if err != nil {
				return "", false, err
			}
			return filepath.Join(r, rest), true, nil
		case !errors.Is(err, iofs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR):
			// (A file on the way: the open that would create the
			// directory fails, naming it.)
			return "", false, err
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return p, true, nil
		}
		rest = filepath.Join(filepath.Base(dir), rest)
		dir = parent
	}
}

// place is a directory of the config, resolved, with its key.
type place struct {
	key, given, path string
}

func (p place) String() string {
	if p.given != p.path {
		return fmt.Sprintf("%s %s (resolves to %s)", p.key, p.given, p.path)
	}
	return fmt.Sprintf("%s %s", p.key, p.path)
}

// resolvePlaces resolves the data dir and every local store's path,
// replacing them with the resolved paths, and refuses the ones in the
// wrong place: at / or in a system directory, a store that is the data
// dir or inside its staging area (which every open empties), the data
// dir inside a store. It returns the places checked, for CheckMountpoint.
func (c *Config) resolvePlaces() ([]place, []error) {
	var errs []error
	var places []place
	resolve := func(key, given string) (place, bool) {
		r, err := resolvePath(given)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", key, given, err))
			return place{}, false
		}
		p := place{key: key, given: given, path: r}
		if why := refusedPlace(r); why != "" {
			errs = append(errs, fmt.Errorf("%s is %s: dualstore keeps no data at / or in the system directories (%s)",
				p, why, strings.Join(systemDirs(), ", ")))
			return p, false
		}
		places = append(places, p)
		return p, true
	}
	data, dataOK := place{}, false
	if c.DataDir != "" {
		if data, dataOK = resolve("data_dir", c.DataDir); dataOK {
			c.DataDir = data.path
		}
	}
	for _, t := range []struct {
		tier string
		list []StoreConfig
	}{{"primary", c.Primary}, {"safety", c.Safety}} {
		for i, s := range t.list {
			lc, ok := s.Options.(*local.Config)
			if !ok || lc.Path == "" {
				continue
			}
			p, ok := resolve(fmt.Sprintf("%s[%d].path", t.tier, i), lc.Path)
			if !ok {
				continue
			}
			lc.Path = p.path
			if !dataOK {
				continue
			}
			staging := filepath.Join(data.path, "staging")
			switch {
			case p.path == data.path:
				errs = append(errs, fmt.Errorf("%s is the data dir: a store needs a directory of its own (the data dir holds index.db, the lock and the staging area)", p))
			case within(p.path, staging):
				errs = append(errs, fmt.Errorf("%s is inside the data dir's staging area %s, which every mount empties", p, staging))
			case within(data.path, p.path):
				errs = append(errs, fmt.Errorf("%s is inside %s: the data dir needs a directory of its own, apart from the stores", data, p))
			}
		}
	}
	return places, errs
}

// checkNames refuses two stores with one name: the name tells stores
// apart in the stats, the logs and every error.
func (c *Config) checkNames() []error {
	var errs []error
	seen := map[string]string{}
	for _, t := range []struct {
		tier string
		list []StoreConfig
	}{{"primary", c.Primary}, {"safety", c.Safety}} {
		for i, s := range t.list {
			key := fmt.Sprintf("%s[%d]", t.tier, i)
			if other, dup := seen[s.Name]; dup {
				errs = append(errs, fmt.Errorf("%s.name %q: %s has that name too: every store needs a name of its own (stats, logs and errors tell stores apart by it)", key, s.Name, other))
				continue
			}
			seen[s.Name] = key
		}
	}
	return errs
}

// CheckMountpoint refuses a mount at mnt that would put the filesystem's
// own data inside its mount (a store, the data dir or the log file there:
// every chunk write would go through the mount itself, and fail), or the mount inside
// a store or the staging area (a store lists its directory; every mount
// empties staging). Called with the mount point once it is known; c must
// be completed (its paths are resolved then).
func (c *Config) CheckMountpoint(mnt string) error {
	m, err := resolvePath(mnt)
	if err != nil {
		return fmt.Errorf("mountpoint %s: %w", mnt, err)
	}
	places, errs := c.resolvePlaces()
	if len(errs) > 0 {
		return joinOneLine(errs)
	}
	shown := mnt
	if m != mnt {
		shown = fmt.Sprintf("%s (resolves to %s)", mnt, m)
	}
	if c.LogFile != "" && within(c.LogFile, m) {
		errs = append(errs, fmt.Errorf("log_file %s is inside the mount point %s: the daemon would write its log through its own mount", c.LogFile, shown))
	}
	for _, p := range places {
		switch {
		case within(p.path, m):
			errs = append(errs, fmt.Errorf("%s is inside the mount point %s: dualstore would write its own data through the mount", p, shown))
		case p.key != "data_dir" && within(m, p.path):
			errs = append(errs, fmt.Errorf("the mount point %s is inside %s: a store lists its own directory, and would walk into the mount", shown, p))
		case p.key == "data_dir" && within(m, filepath.Join(p.path, "staging")):
			errs = append(errs, fmt.Errorf("the mount point %s is inside the data dir's staging area, which every mount empties", shown))
		}
	}
	return joinOneLine(errs)
}

// completeLogFile checks log_file: its directory must exist (a mount
// that cannot log there fails before it mounts, not at the first log
// line), and the file, if it exists, must be a regular file (a FIFO would
// block the daemon's every log line, a directory cannot be appended to).
// The path is made absolute and its symlinks resolved, so the mount
// point check sees where it really is and a SIGHUP reopens that same
// place.
func (c *Config) completeLogFile() error {
	if c.LogFile == "" {
		return nil
	}
	given := c.LogFile
	abs, err := filepath.Abs(given)
	if err != nil {
		return fmt.Errorf("log_file %s: %w", given, err)
	}
	dir := filepath.Dir(abs)
	st, err := os.Stat(dir)
	switch {
	case err != nil:
		return fmt.Errorf("log_file %s: its directory %s: %w (create it first)", given, dir, err)
	case !st.IsDir():
		return fmt.Errorf("log_file %s: %s is not a directory", given, dir)
	}
	r, err := resolvePath(abs)
	if err != nil {
		return fmt.Errorf("log_file %s: %w", given, err)
	}
	if st, err := os.Stat(r); err == nil && !st.Mode().IsRegular() {
		return fmt.Errorf("log_file %s: not a regular file (%s)", given, st.Mode().Type())
	}
	c.LogFile = r
	return nil
}
