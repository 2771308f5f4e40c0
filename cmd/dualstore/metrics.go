package main

import (
	"fmt"
	"os"

	"github.com/rs/zerolog"

	dsfs "github.com/dualstore/dualstore/fs"
	"github.com/dualstore/dualstore/fs/metrics"
)

// checkMetricsAddr refuses a mount.metrics_addr (or --metrics-addr) that
// is not host:port or "off", before anything is opened.
func checkMetricsAddr(cfg Config) error {
	if err := metrics.CheckAddr(cfg.Mount.MetricsAddr); err != nil {
		return usageErr(fmt.Errorf("mount.metrics_addr %w", err))
	}
	return nil
}

// healthOptions are the config's health bounds for the filesystem.
func healthOptions(cfg Config) dsfs.HealthOptions {
	return dsfs.HealthOptions{BackfillAge: cfg.Health.BackfillAge.D(), BackupLag: cfg.Health.BackupLag.D()}
}

// startMetrics serves the mount's metrics on addr, once the mount is
// ready, and returns what stops it (at unmount). A listener that cannot
// bind (the port is taken: several mounts on one host need one port
// each) does not fail the mount: the data matters more than its
// metrics. It is logged as a warning, and Prometheus sees the target
// down.
func startMetrics(addr string, fsys *dsfs.FS, fsid, mnt string, log zerolog.Logger) (stop func()) {
	if addr == metrics.Off {
		return func() {}
	}
	c := metrics.NewCollector(fsys.Stats, fsid, mnt)
	srv, err := metrics.Listen(addr, c, log.With().Str("component", "metrics").Logger())
	if err != nil {
		// Logged, and listed in the stats' warnings (so in `dualstore
		// stats` too): a scrape that finds nothing should be explained
		// where an admin looks.
		log.Warn().Err(err).Str("metrics_addr", addr).Msg("metrics not served (mount.metrics_addr): the mount goes on without them")
		fsys.Warn(fmt.Sprintf("metrics not served (mount.metrics_addr %s): %v", addr, err))
		return func() {}
	}
	log.Info().Str("addr", srv.Addr()).Msg("serving metrics")
	fmt.Fprintf(os.Stderr, "dualstore: metrics at http://%s/metrics\n", srv.Addr())
	return func() {
		if err := srv.Close(); err != nil {
			log.Warn().Err(err).Msg("closing the metrics listener")
		}
	}
}
