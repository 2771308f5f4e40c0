package s3

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// Defaults of the Options fields whose zero value means "default".
const (
	// DefaultTimeout bounds one store call, its retries included.
	DefaultTimeout = 30 * time.Second
	// DefaultRetries is how often a call failing with a transient error
	// is retried.
	DefaultRetries = 3
	// DefaultConcurrency is how many calls may talk to the server at once.
	DefaultConcurrency = 16
	// DefaultOutageBackoff is how long calls fail at once after one found
	// the endpoint unreachable; it doubles per further failure up to
	// maxOutageBackoff.
	DefaultOutageBackoff = time.Second
)

// maxOutageBackoff caps the fail-fast window, so a server that comes back
// is noticed within this long even after a long outage.
const maxOutageBackoff = 15 * time.Second

// Addressing is how requests name the bucket: in the path
// (http://host/bucket/key) or in the host name (http://bucket.host/key).
type Addressing int

const (
	// AddressingAuto uses virtual-host addressing for the endpoints of
	// the big clouds that want it and path addressing everywhere else
	// (minio-go's rule), which suits self-hosted servers.
	AddressingAuto Addressing = iota
	// AddressingPath always puts the bucket in the path.
	AddressingPath
	// AddressingVirtualHost always puts the bucket in the host name.
	AddressingVirtualHost
)

// String returns the form ParseAddressing accepts.
func (a Addressing) String() string {
	switch a {
	case AddressingAuto:
		return "auto"
	case AddressingPath:
		return "path"
	case AddressingVirtualHost:
		return "virtual-host"
	}
	return fmt.Sprintf("addressing(%d)", int(a))
}

// ParseAddressing reads the config's path_style: "auto" (or empty),
// "true"/"path", "false"/"virtual-host".
func ParseAddressing(s string) (Addressing, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "auto":
		return AddressingAuto, nil
	case "true", "path", "yes", "on":
		return AddressingPath, nil
	case "false", "virtual-host", "virtual", "vhost", "no", "off":
		return AddressingVirtualHost, nil
	}
	return AddressingAuto, fmt.Errorf("s3 store: path_style %q: want auto, true (path) or false (virtual-host)", s)
}

// Options configures an S3 store. Secrets in it are never logged: String
// and GoString redact them, so printing Options with any fmt verb is safe.
type Options struct {
	// Name is the store's name in logs and stats; default
	// "s3://<bucket>/<prefix>".
	Name string
	// Endpoint is the server: "host", "host:port", or a URL
	// "http(s)://host[:port]" without a path. A scheme picks TLS or
	// plain HTTP; without one TLS is used unless DisableTLS is set.
	// Required.
	Endpoint string
	// Bucket holds the chunks. Required. New fails if it does not exist,
	// unless CreateBucket is set.
	Bucket string
	// Prefix puts every key below "<Prefix>/", so one bucket can hold
	// several stores (leading and trailing slashes are ignored).
	Prefix string
	// Region is the bucket's region. Empty: taken from the endpoint's
	// host name where it says (AWS), else asked once from the server
	// (GetBucketLocation) and cached. Set it for servers that do not
	// answer that call.
	Region string
	// Addressing chooses path or virtual-host bucket addressing.
	Addressing Addressing
	// DisableTLS talks plain HTTP. Only for servers on a trusted network
	// or on localhost: the request signatures protect the credentials,
	// not the data.
	DisableTLS bool
	// InsecureSkipVerify accepts any TLS certificate (self-signed test
	// servers). The system roots, plus SSL_CERT_FILE/SSL_CERT_DIR, are
	// trusted otherwise.
	InsecureSkipVerify bool

	// AccessKey, SecretKey and SessionToken are explicit credentials.
	// When AccessKey is empty the standard AWS chain is used instead: the
	// environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
	// AWS_SESSION_TOKEN), then the shared credentials/config files.
	AccessKey    string
	SecretKey    string
	SessionToken string
	// Profile is the shared credentials file's profile; default
	// AWS_PROFILE, else "default".
	Profile string
	// CredentialsFile is the shared credentials file to read instead of
	// the standard ones (AWS_SHARED_CREDENTIALS_FILE, ~/.aws/credentials
	// and ~/.aws/config).
	CredentialsFile string
	// Anonymous sends unsigned requests when no credentials are found,
	// instead of failing New. For public test servers only.
	Anonymous bool

	// Timeout bounds one store call, its retries included (a List bounds
	// each page instead). 0 means DefaultTimeout; negative means none
	// (the caller's context still applies).
	Timeout time.Duration
	// Retries is how often a request failing with a transient error
	// (connection refused or reset, timeouts, HTTP 5xx, 429, SlowDown) is
	// retried, with jittered exponential backoff. 0 means DefaultRetries;
	// negative means none.
	Retries int
	// Concurrency bounds the calls talking to the server at once; more
	// wait. 0 means DefaultConcurrency.
	Concurrency int
	// OutageBackoff: after a call finds the endpoint unreachable (its
	// retries spent), every call fails at once, wrapping ErrUnavailable,
	// for this long, doubling per further failure up to 15s; the first
	// call after the window probes the server again. This keeps a dead
	// server from slowing every chunk write and read down to its
	// timeouts. 0 means DefaultOutageBackoff; negative disables it.
	OutageBackoff time.Duration
	// CreateBucket makes New create a missing bucket instead of failing.
	CreateBucket bool
	// Layout is how chunks are stored: LayoutDualstore (the default, "")
	// or LayoutCasync, what desync's S3 store reads and writes.
	Layout string
}

// Validate reports whether the options can be used, without any network
// access.
func (o Options) Validate() error {
	var errs []error
	if _, _, err := o.endpoint(); err != nil {
		errs = append(errs, err)
	}
	if err := checkBucketName(o.Bucket); err != nil {
		errs = append(errs, err)
	}
	if err := checkPrefix(o.Prefix); err != nil {
		errs = append(errs, err)
	}
	if o.Addressing < AddressingAuto || o.Addressing > AddressingVirtualHost {
		errs = append(errs, fmt.Errorf("s3 store: unknown addressing %d", int(o.Addressing)))
	}
	if (o.AccessKey == "") != (o.SecretKey == "") {
		errs = append(errs, errors.New("s3 store: access_key and secret_key must be set together"))
	}
	if o.SessionToken != "" && o.AccessKey == "" {
		errs = append(errs, errors.New("s3 store: session_token needs access_key and secret_key"))
	}
	if o.AccessKey != "" && (o.Profile != "" || o.CredentialsFile != "") {
		errs = append(errs, errors.New("s3 store: explicit access_key/secret_key exclude profile and credentials_file"))
	}
	if err := validLayout(o.Layout); err != nil {
		errs = append(errs, err)
	}
	if o.Concurrency < 0 {
		errs = append(errs, fmt.Errorf("s3 store: concurrency %d: want >= 0", o.Concurrency))
	}
	if strings.ContainsRune(o.Region, '/') || strings.ContainsAny(o.Region, " \t\n") {
		errs = append(errs, fmt.Errorf("s3 store: region %q is not a region name", o.Region))
	}
	return errors.Join(errs...)
}

// endpoint returns the host[:port] minio-go wants and whether to use TLS.
func (o Options) endpoint() (host string, secure bool, err error) {
	ep := strings.TrimSpace(o.Endpoint)
	if ep == "" {
		return "", false, errors.New("s3 store: endpoint not set")
	}
	secure = !o.DisableTLS
	if strings.Contains(ep, "://") {
		u, err := url.Parse(ep)
		if err != nil {
			return "", false, fmt.Errorf("s3 store: endpoint %q: %w", redactURL(ep), err)
		}
		switch u.Scheme {
		case "http":
			secure = false
		case "https":
			if o.DisableTLS {
				return "", false, fmt.Errorf("s3 store: endpoint %s is https but TLS is disabled", u.Host)
			}
			secure = true
		default:
			return "", false, fmt.Errorf("s3 store: endpoint %q: scheme %q: want http or https", redactURL(ep), u.Scheme)
		}
		if u.User != nil {
			return "", false, fmt.Errorf("s3 store: endpoint %s: credentials do not belong in the URL (use access_key/secret_key)", u.Host)
		}
		if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
			return "", false, fmt.Errorf("s3 store: endpoint %q: a path is not allowed (the bucket and prefix are separate options)", redactURL(ep))
		}
		ep = u.Host
	}
	if ep == "" || strings.ContainsAny(ep, "/?#@ ") {
		return "", false, fmt.Errorf("s3 store: endpoint %q: want host, host:port or http(s)://host[:port]", redactURL(o.Endpoint))
	}
	if h, p, err := net.SplitHostPort(ep); err == nil {
		if h == "" || p == "" {
			return "", false, fmt.Errorf("s3 store: endpoint %q: empty host or port", ep)
		}
	} else if strings.Count(ep, ":") == 1 {
		return "", false, fmt.Errorf("s3 store: endpoint %q: %w", ep, err)
	}
	return ep, secure, nil
}

// redactURL hides userinfo in a URL that failed to parse cleanly, so an
// error message never carries a password.
func redactURL(s string) string {
	if i := strings.Index(s, "://"); i >= 0 {
		rest := s[i+3:]
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			return s[:i+3] + "REDACTED@" + rest[at+1:]
		}
	}
	return s
}

// checkBucketName applies the S3 bucket naming rules that matter for
// addressing (3-63 characters, lower-case letters, digits, dots and
// hyphens, starting and ending with a letter or digit).
func checkBucketName(b string) error {
	if b == "" {
		return errors.New("s3 store: bucket not set")
	}
	if len(b) < 3 || len(b) > 63 {
		return fmt.Errorf("s3 store: bucket %q: want 3 to 63 characters", b)
	}
	for i, c := range []byte(b) {
		ok := 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.'
		if !ok {
			return fmt.Errorf("s3 store: bucket %q: only lower-case letters, digits, '.' and '-' are allowed", b)
		}
		if (i == 0 || i == len(b)-1) && (c == '-' || c == '.') {
			return fmt.Errorf("s3 store: bucket %q: must start and end with a letter or digit", b)
		}
	}
	if strings.Contains(b, "..") {
		return fmt.Errorf("s3 store: bucket %q: no two dots in a row", b)
	}
	return nil
}

// normPrefix trims the slashes around a prefix.
func normPrefix(p string) string { return strings.Trim(p, "/") }

// checkPrefix rejects prefixes that servers treat differently (empty or
// dot segments, control characters), so keys stay exactly what List
// finds again, and prefixes inside another prefix's meta objects.
func checkPrefix(p string) error {
	p = normPrefix(p)
	if p == "" {
		return nil
	}
	if len(p) > 512 {
		return fmt.Errorf("s3 store: prefix is %d bytes long: want at most 512", len(p))
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("s3 store: prefix %q: empty, '.' or '..' path segment", p)
		}
		if seg == metaDir {
			// Its chunks would be the meta objects of the store one
			// level up, and that store's meta objects its chunks.
			return fmt.Errorf("s3 store: prefix %q: a %q segment is where a store keeps its meta objects", p, metaDir)
		}
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f || r == '\\' {
			return fmt.Errorf("s3 store: prefix %q: control character or backslash", p)
		}
	}
	return nil
}

func (o Options) timeout() time.Duration {
	switch {
	case o.Timeout == 0:
		return DefaultTimeout
	case o.Timeout < 0:
		return 0
	}
	return o.Timeout
}

// attempts is what minio-go calls MaxRetries: tries in all.
func (o Options) attempts() int {
	switch {
	case o.Retries == 0:
		return DefaultRetries + 1
	case o.Retries < 0:
		return 1
	}
	return o.Retries + 1
}

func (o Options) concurrency() int {
	if o.Concurrency == 0 {
		return DefaultConcurrency
	}
	return o.Concurrency
}

func (o Options) outageBackoff() time.Duration {
	switch {
	case o.OutageBackoff == 0:
		return DefaultOutageBackoff
	case o.OutageBackoff < 0:
		return 0
	}
	return min(o.OutageBackoff, maxOutageBackoff)
}

// String describes the options with every secret redacted.
func (o Options) String() string {
	r := o
	for _, s := range []*string{&r.AccessKey, &r.SecretKey, &r.SessionToken} {
		if *s != "" {
			*s = "REDACTED"
		}
	}
	return fmt.Sprintf("s3.Options{Name:%q Endpoint:%q Bucket:%q Prefix:%q Region:%q Addressing:%s DisableTLS:%v InsecureSkipVerify:%v AccessKey:%q SecretKey:%q SessionToken:%q Profile:%q CredentialsFile:%q Anonymous:%v Timeout:%s Retries:%d Concurrency:%d OutageBackoff:%s CreateBucket:%v Layout:%q}",
		r.Name, redactURL(r.Endpoint), r.Bucket, r.Prefix, r.Region, r.Addressing, r.DisableTLS, r.InsecureSkipVerify,
		r.AccessKey, r.SecretKey, r.SessionToken, r.Profile, r.CredentialsFile, r.Anonymous,
		r.Timeout, r.Retries, r.Concurrency, r.OutageBackoff, r.CreateBucket, r.Layout)
}

// GoString is String, so %#v redacts too.
func (o Options) GoString() string { return o.String() }
