package s3

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/dualstore/dualstore/stores"
)

// Config is an s3 store's entry in the config file (type: s3). The
// credentials (access_key, secret_key, session_token) are redacted
// wherever the config is shown.
type Config struct {
	Endpoint           string          `yaml:"endpoint" json:"endpoint,omitempty"`
	Bucket             string          `yaml:"bucket" json:"bucket,omitempty"`
	Prefix             string          `yaml:"prefix" json:"prefix,omitempty"`
	Region             string          `yaml:"region" json:"region,omitempty"`
	PathStyle          string          `yaml:"path_style" json:"path_style,omitempty"` // auto, true, false
	TLS                *bool           `yaml:"tls" json:"tls,omitempty"`
	InsecureSkipVerify bool            `yaml:"insecure_skip_verify" json:"insecure_skip_verify,omitempty"`
	AccessKey          string          `yaml:"access_key" json:"access_key,omitempty"`
	SecretKey          string          `yaml:"secret_key" json:"secret_key,omitempty"`
	SessionToken       string          `yaml:"session_token" json:"session_token,omitempty"`
	Profile            string          `yaml:"profile" json:"profile,omitempty"`
	CredentialsFile    string          `yaml:"credentials_file" json:"credentials_file,omitempty"`
	Timeout            stores.Duration `yaml:"timeout" json:"timeout,omitempty"`
	// Retries is how often a transient failure is retried; 0: never.
	Retries       *int            `yaml:"retries" json:"retries,omitempty"`
	Concurrency   int             `yaml:"concurrency" json:"concurrency,omitempty"`
	OutageBackoff stores.Duration `yaml:"outage_backoff" json:"outage_backoff,omitempty"`
	CreateBucket  bool            `yaml:"create_bucket" json:"create_bucket,omitempty"`
	// Layout is how the chunk objects are named and encoded: dualstore
	// (the default) or casync, the layout desync's S3 store uses (see
	// Options.Layout). A casync store needs the filesystem's hash to be
	// sha512-256 (RequiredHash).
	Layout string `yaml:"layout" json:"layout,omitempty"`
}

var (
	_ stores.Config     = (*Config)(nil)
	_ stores.Overlapper = (*Config)(nil)
)

// Complete checks the keys and fills their defaults, so the rendered
// config shows what is in effect. key is "safety[0]".
func (c *Config) Complete(key string) error {
	var errs []error
	if c.PathStyle == "" {
		c.PathStyle = "auto"
	}
	if c.TLS == nil {
		tls := !strings.HasPrefix(strings.ToLower(strings.TrimSpace(c.Endpoint)), "http://")
		c.TLS = &tls
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("%s.timeout %s: want > 0", key, c.Timeout.D()))
	} else if c.Timeout == 0 {
		c.Timeout = stores.Duration(DefaultTimeout)
	}
	if c.Retries == nil {
		n := DefaultRetries
		c.Retries = &n
	} else if *c.Retries < 0 {
		errs = append(errs, fmt.Errorf("%s.retries %d: want >= 0 (0: no retries)", key, *c.Retries))
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.OutageBackoff == 0 {
		c.OutageBackoff = stores.Duration(DefaultOutageBackoff)
	}
	switch c.Layout {
	case "":
		c.Layout = LayoutDualstore
	case LayoutDualstore, LayoutCasync:
	default:
		errs = append(errs, fmt.Errorf("%s.layout %q: want %s or %s", key, c.Layout, LayoutDualstore, LayoutCasync))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	o, err := c.Options("")
	if err == nil {
		err = o.Validate()
	}
	if err != nil {
		// "s3 store: bucket not set" → "safety[0]: bucket not set"
		msg := strings.ReplaceAll(err.Error(), "s3 store: ", "")
		return fmt.Errorf("%s: %s", key, strings.ReplaceAll(msg, "\n", "; "))
	}
	return nil
}

// Options turns a completed Config into the store's options.
func (c *Config) Options(name string) (Options, error) {
	addressing, err := ParseAddressing(c.PathStyle)
	if err != nil {
		return Options{}, err
	}
	o := Options{
		Name:               name,
		Endpoint:           c.Endpoint,
		Bucket:             c.Bucket,
		Prefix:             c.Prefix,
		Region:             c.Region,
		Addressing:         addressing,
		DisableTLS:         c.TLS != nil && !*c.TLS,
		InsecureSkipVerify: c.InsecureSkipVerify,
		AccessKey:          c.AccessKey,
		SecretKey:          c.SecretKey,
		SessionToken:       c.SessionToken,
		Profile:            c.Profile,
		CredentialsFile:    c.CredentialsFile,
		Timeout:            c.Timeout.D(),
		Concurrency:        c.Concurrency,
		OutageBackoff:      c.OutageBackoff.D(),
		CreateBucket:       c.CreateBucket,
		Layout:             c.Layout,
	}
	// The config says 0 for "no retries"; the options say -1 (their 0 is
	// "default").
	if c.Retries != nil {
		o.Retries = *c.Retries
		if o.Retries == 0 {
			o.Retries = -1
		}
	}
	return o, nil
}

// RequiredHash returns the chunk hash a filesystem with this store must
// use ("sha512-256" for the casync layout, whose objects desync names by
// it), or "" if any will do.
func (c *Config) RequiredHash() string {
	if c.Layout == LayoutCasync {
		return casyncHash
	}
	return ""
}

// Open connects to the bucket: New checks the bucket and the credentials,
// within the store's own timeout.
func (c *Config) Open(ctx context.Context, name string, _ bool) (stores.Store, func(), error) {
	o, err := c.Options(name)
	if err != nil {
		return nil, nil, err
	}
	s, err := New(ctx, o)
	if err != nil {
		return nil, nil, err
	}
	return s, nil, nil
}

// location is where the chunks live: endpoint, bucket and prefix.
func (c *Config) location() string {
	ep := strings.ToLower(strings.TrimSpace(c.Endpoint))
	ep = strings.TrimPrefix(strings.TrimPrefix(ep, "https://"), "http://")
	return strings.TrimSuffix(ep, "/") + "/" + c.Bucket + "/" + strings.Trim(c.Prefix, "/")
}

// Overlaps refuses a primary and a safety store that are the same bucket
// and prefix on the same endpoint: one outage or one deletion would hit
// both copies.
func (c *Config) Overlaps(key string, other stores.Config, otherKey string, sameTier bool) error {
	o, ok := other.(*Config)
	if !ok || sameTier || c.location() != o.location() {
		return nil
	}
	return fmt.Errorf("%s and %s are the same bucket and prefix %s: the two tiers must be independent", key, otherKey, c.location())
}
