package main

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// hostMeta describes the machine, the build and the work dir's filesystem.
func hostMeta(work string) meta {
	m := meta{
		Date:    time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		Cores:   runtime.NumCPU(),
		Go:      runtime.Version(),
		WorkDir: work,
		CPU:     "unknown CPU",
	}
	m.Host, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
				m.MemGiB = kb / (1 << 20)
			}
		}
	}
	m.WorkFS = fsOf(work)
	if out, err := exec.Command("git", "describe", "--always", "--dirty").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
	}
	return m
}

// fsOf names the filesystem holding dir: its type and device, from the
// longest mount point above it.
func fsOf(dir string) string {
	best, desc := -1, "unknown filesystem"
	for _, mi := range mountTable() {
		mp := mi.point
		if (dir == mp || strings.HasPrefix(dir, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > best {
			best, desc = len(mp), mi.fstype+" ("+mi.source+")"
		}
	}
	return desc
}

// mountInfo is one line of /proc/self/mountinfo.
type mountInfo struct {
	point, fstype, source string
}

func mountTable() []mountInfo {
	raw, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []mountInfo
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mi := mountInfo{point: unescapeMount(f[4])}
		// Optional fields end at "-"; then fstype and source.
		for i := 5; i+2 < len(f); i++ {
			if f[i] == "-" {
				mi.fstype, mi.source = f[i+1], unescapeMount(f[i+2])
				break
			}
		}
		out = append(out, mi)
	}
	return out
}
