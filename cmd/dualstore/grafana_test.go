package main

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/dualstore/dualstore/fs/metrics"
)

// TestGrafanaDashboard: the shipped dashboard is JSON Grafana imports
// (panels with PromQL targets) and names only metrics the mount exports,
// and the metric reference in the README lists every metric.
func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile("grafana/dualstore.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("grafana/dualstore.json: %v", err)
	}
	names := metrics.Names()
	known := func(n string) bool {
		if slices.Contains(names, n) {
			return true
		}
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			if base := strings.TrimSuffix(n, suffix); base != n && strings.HasSuffix(base, "_duration_seconds") && slices.Contains(names, base) {
				return true
			}
		}
		return false
	}
	metricName := regexp.MustCompile(`\bdualstore_[a-z0-9_]+`)
	used := 0
	for _, p := range dash.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, n := range metricName.FindAllString(tg.Expr, -1) {
				used++
				if !known(n) {
					t.Errorf("panel %q uses %s, which the mount does not export", p.Title, n)
				}
			}
		}
	}
	if dash.UID == "" || used < 20 {
		t.Errorf("the dashboard has uid %q and names %d metrics", dash.UID, used)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if !strings.Contains(string(readme), "`"+n+"`") && !strings.Contains(string(readme), n+"{") {
			t.Errorf("cmd/dualstore/README.md does not list the metric %s", n)
		}
	}
}
