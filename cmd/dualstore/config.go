package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/dualstore/dualstore/dual/engine"
)

// Config is the YAML configuration: the engine's, which also completes
// and checks it. This file only reads it.
type Config = engine.Config

// loadConfig reads a YAML file strictly: an unknown key is an error that
// names it, so a typo never silently falls back to a default.
func loadConfig(path string) (Config, error) {
	var c Config
	if path == "" {
		return c, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	if err := engine.ParseYAML(b, &c); err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// configFileWarning says what is unsafe about the config file at path:
// readable by others while it holds secrets (an S3 secret key). ""
// when nothing is, or there is no file.
func configFileWarning(path string, cfg *Config) string {
	if path == "" {
		return ""
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm()&0o004 == 0 {
		return ""
	}
	keys := cfg.SecretKeys()
	if len(keys) == 0 {
		return ""
	}
	return fmt.Sprintf("config %s is readable by others (mode %04o) and holds secrets (%s): chmod o-r %s, or take the credentials from the environment or a credentials_file",
		path, st.Mode().Perm(), strings.Join(keys, ", "), path)
}
