// Package metrics exposes a mount's statistics to Prometheus: a
// prometheus.Collector that reads one fs.Stats snapshot per scrape (the
// same snapshot `.dualstore/stats` renders, so nothing is counted twice)
// and turns it into counters, gauges and histograms named by Prometheus'
// conventions (dualstore_ prefix, _total, _seconds, _bytes, base units),
// and the HTTP listener that serves them.
//
// It imports fs (for the snapshot), dual, stores and client_golang; only
// cmd imports it. The metric names are a contract like the stats JSON:
// metrics may be added, never renamed or dropped (the Grafana dashboard
// in cmd/dualstore/grafana and users' alerts use them).
//
// Every metric carries the filesystem's FSID and the mount point as
// constant labels (fsid, mountpoint), so several mounts scraped by one
// Prometheus stay apart. Counters restart from zero after a remount or a
// `reset-stats`, which Prometheus' rate() treats as a counter reset.
package metrics
