package engine

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// Every string key of the config is either public (shown as it is in
// `.dualstore/config`) or secret (redacted). A new key must be put on one
// of the lists: TestConfigSecretsClassified fails until it is.
var (
	configPublicKeys = []string{
		"data_dir", "log_level", "log_file", "hash", "read_preference", "require",
		"name", "type", "path", "sync", "endpoint", "bucket", "prefix", "region", "path_style",
		"profile", "credentials_file", // where credentials are, not what
		"max_file_size",
		"metrics_addr",                     // mount: where the metrics are served
		"layout",                           // local: dualstore or casync
		"max_unused", "min_unused", "rate", // gc: a percentage, sizes
	}
	configSecretKeys = []string{"access_key", "secret_key", "session_token"}
)

// fillStrings sets every string field reachable from v (structs, pointers
// to structs, slices of structs get one element) to a marker naming its
// YAML key, and returns marker → key.
func fillStrings(v reflect.Value, marks map[string]string) {
	switch v.Kind() {
	case reflect.Pointer:
		if v.Type().Elem().Kind() == reflect.Struct {
			if v.IsNil() {
				v.Set(reflect.New(v.Type().Elem()))
			}
			fillStrings(v.Elem(), marks)
		}
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Struct {
			v.Set(reflect.MakeSlice(v.Type(), 1, 1))
			fillStrings(v.Index(0), marks)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if !f.IsExported() {
				continue
			}
			key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			fv := v.Field(i)
			if fv.Kind() == reflect.String {
				m := fmt.Sprintf("MARK%03d-%s", len(marks), key)
				fv.SetString(m)
				marks[m] = key
				continue
			}
			fillStrings(fv, marks)
		}
	}
}

// TestConfigSecretsClassified fills every string key of a config with a
// marker and renders `.dualstore/config`: secret keys' markers must not
// appear, public keys' must, and every key must be on one of the lists.
func TestConfigSecretsClassified(t *testing.T) {
	// One store of every registered type, each with every string set.
	var c Config
	marks := map[string]string{}
	fillStrings(reflect.ValueOf(&c).Elem(), marks)
	reg := DefaultRegistry()
	for _, typ := range reg.Types() {
		sc := StoreConfig{Name: "store-" + typ, Type: typ, Options: reg.newConfig[typ]()}
		fillStrings(reflect.ValueOf(sc.Options).Elem(), marks)
		c.Safety = append(c.Safety, sc)
	}
	out := string(c.RedactedJSON())
	for m, key := range marks {
		shown := strings.Contains(out, m)
		switch {
		case slices.Contains(configSecretKeys, key):
			if shown {
				t.Errorf("secret key %s is shown in .dualstore/config:\n%s", key, out)
			}
		case slices.Contains(configPublicKeys, key):
			if !shown {
				t.Errorf("public key %s is not shown in .dualstore/config", key)
			}
		default:
			t.Errorf("config key %s (a string) is on neither list: can it hold a secret? Add it to configSecretKeys (and redact it) or configPublicKeys", key)
		}
	}
	for _, key := range configSecretKeys {
		found := false
		for _, k := range marks {
			found = found || k == key
		}
		if !found {
			t.Errorf("configSecretKeys names %s, which the config no longer has", key)
		}
	}
}
