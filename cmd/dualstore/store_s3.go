package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/dualstore/dualstore/stores/s3"
)

// completeS3 checks an s3 store's keys and fills their defaults, so
// `.dualstore/config` shows what is in effect. key is "safety[0]".
func (s *StoreConfig) completeS3(key string) error {
	var errs []error
	if s.Path != "" {
		errs = append(errs, fmt.Errorf("%s.path: only for local stores (an s3 store has endpoint, bucket and prefix)", key))
	}
	if s.Compress || s.Fsync {
		errs = append(errs, fmt.Errorf("%s: compress and fsync are local store options (not supported by s3 stores)", key))
	}
	if s.PathStyle == "" {
		s.PathStyle = "auto"
	}
	if s.TLS == nil {
		s.TLS = boolPtr(!strings.HasPrefix(strings.ToLower(strings.TrimSpace(s.Endpoint)), "http://"))
	}
	if s.Timeout < 0 {
		errs = append(errs, fmt.Errorf("%s.timeout %s: want > 0", key, s.Timeout.D()))
	} else if s.Timeout == 0 {
		s.Timeout = duration(s3.DefaultTimeout)
	}
	if s.Retries == nil {
		n := s3.DefaultRetries
		s.Retries = &n
	} else if *s.Retries < 0 {
		errs = append(errs, fmt.Errorf("%s.retries %d: want >= 0 (0: no retries)", key, *s.Retries))
	}
	if s.Concurrency == 0 {
		s.Concurrency = s3.DefaultConcurrency
	}
	if s.OutageBackoff == 0 {
		s.OutageBackoff = duration(s3.DefaultOutageBackoff)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	o, err := s.s3Options()
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

// s3Options turns a completed s3 StoreConfig into the store's options.
func (s StoreConfig) s3Options() (s3.Options, error) {
	addressing, err := s3.ParseAddressing(s.PathStyle)
	if err != nil {
		return s3.Options{}, err
	}
	o := s3.Options{
		Name:               s.Name,
		Endpoint:           s.Endpoint,
		Bucket:             s.Bucket,
		Prefix:             s.Prefix,
		Region:             s.Region,
		Addressing:         addressing,
		DisableTLS:         s.TLS != nil && !*s.TLS,
		InsecureSkipVerify: s.InsecureSkipVerify,
		AccessKey:          s.AccessKey,
		SecretKey:          s.SecretKey,
		SessionToken:       s.SessionToken,
		Profile:            s.Profile,
		CredentialsFile:    s.CredentialsFile,
		Timeout:            s.Timeout.D(),
		Concurrency:        s.Concurrency,
		OutageBackoff:      s.OutageBackoff.D(),
		CreateBucket:       s.CreateBucket,
	}
	// The config says 0 for "no retries"; the options say -1 (their 0 is
	// "default").
	if s.Retries != nil {
		o.Retries = *s.Retries
		if o.Retries == 0 {
			o.Retries = -1
		}
	}
	return o, nil
}

// checkNoS3Keys reports s3 keys on a local store: most likely a forgotten
// `type: s3`, which would otherwise silently make a local store.
func (s StoreConfig) checkNoS3Keys(key string) error {
	var set []string
	for _, k := range []struct {
		name string
		set  bool
	}{
		{"endpoint", s.Endpoint != ""}, {"bucket", s.Bucket != ""}, {"prefix", s.Prefix != ""},
		{"region", s.Region != ""}, {"path_style", s.PathStyle != ""}, {"tls", s.TLS != nil},
		{"insecure_skip_verify", s.InsecureSkipVerify}, {"access_key", s.AccessKey != ""},
		{"secret_key", s.SecretKey != ""}, {"session_token", s.SessionToken != ""},
		{"profile", s.Profile != ""}, {"credentials_file", s.CredentialsFile != ""},
		{"timeout", s.Timeout != 0}, {"retries", s.Retries != nil}, {"concurrency", s.Concurrency != 0},
		{"outage_backoff", s.OutageBackoff != 0}, {"create_bucket", s.CreateBucket},
	} {
		if k.set {
			set = append(set, k.name)
		}
	}
	if len(set) == 0 {
		return nil
	}
	return fmt.Errorf("%s: %s: only for s3 stores (missing `type: s3`?)", key, strings.Join(set, ", "))
}

// checkS3Independent refuses a primary and a safety store that are the
// same bucket and prefix on the same endpoint: one outage or one deletion
// would hit both copies.
func checkS3Independent(primary, safety []StoreConfig) error {
	loc := func(s StoreConfig) string {
		ep := strings.ToLower(strings.TrimSpace(s.Endpoint))
		ep = strings.TrimPrefix(strings.TrimPrefix(ep, "https://"), "http://")
		return strings.TrimSuffix(ep, "/") + "/" + s.Bucket + "/" + strings.Trim(s.Prefix, "/")
	}
	for i, p := range primary {
		for j, s := range safety {
			if p.Type == "s3" && s.Type == "s3" && loc(p) == loc(s) {
				return fmt.Errorf("primary[%d] and safety[%d] are the same bucket and prefix %s: the two tiers must be independent", i, j, loc(p))
			}
		}
	}
	return nil
}
