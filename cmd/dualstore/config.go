package main

import (
	"fmt"
	"os"

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
