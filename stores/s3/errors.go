package s3

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/dualstore/dualstore/stores"
)

var (
	// ErrAuth is wrapped by every error the server gave because it did not
	// accept the credentials or denied the request (HTTP 401/403:
	// AccessDenied, InvalidAccessKeyId, SignatureDoesNotMatch, expired
	// tokens, a clock too far off). It is never reported as a missing
	// chunk: retrying or reading elsewhere does not fix it, a person must.
	ErrAuth = errors.New("s3: access denied (check the credentials and the bucket policy)")
	// ErrUnavailable is wrapped by every error that says the endpoint
	// could not be reached (connection refused or reset, DNS failure),
	// and by the calls that fail at once while an outage is assumed
	// (Options.OutageBackoff).
	ErrUnavailable = errors.New("s3: endpoint unreachable")
	// ErrNoBucket is wrapped by errors that say the bucket does not exist.
	ErrNoBucket = errors.New("s3: bucket does not exist")
	// ErrNoCredentials is returned by New when no credentials were given
	// and none were found in the environment or the shared files.
	ErrNoCredentials = errors.New("s3: no credentials found")
)

// authCodes are the S3 error codes that mean "these credentials may not do
// this": wrong keys, wrong signature, expired or invalid tokens, or a clock
// so far off that signatures fail.
var authCodes = map[string]bool{
	"AccessDenied":                 true,
	"AllAccessDisabled":            true,
	"AccountProblem":               true,
	"InvalidAccessKeyId":           true,
	"InvalidSecurity":              true,
	"InvalidToken":                 true,
	"ExpiredToken":                 true,
	"TokenRefreshRequired":         true,
	"SignatureDoesNotMatch":        true,
	"RequestTimeTooSkewed":         true,
	"AuthorizationHeaderMalformed": true,
	"MissingSecurityHeader":        true,
	"InvalidClientTokenId":         true,
	"UnauthorizedAccess":           true,
	// versitygw's answer (HTTP 404) to an access key it does not know.
	"XAdminUserNotFound": true,
}

// classify wraps err with the sentinel that says what kind of failure it
// is, keeping the server's message: "chunk not found: The specified key
// does not exist."
func classify(err error) error {
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		switch {
		case er.Code == minio.NoSuchKey:
			return fmt.Errorf("%w: %w", stores.ErrNotFound, err)
		case er.Code == minio.NoSuchBucket:
			return fmt.Errorf("%w: %w", ErrNoBucket, err)
		case authCodes[er.Code] || er.StatusCode == http.StatusUnauthorized || er.StatusCode == http.StatusForbidden:
			return fmt.Errorf("%w: %s: %w", ErrAuth, er.Code, err)
		}
		return fmt.Errorf("%s (HTTP %d): %w", er.Code, er.StatusCode, err)
	}
	if unreachable(err) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// answered reports whether err (nil included) came from the server
// itself, which proves the endpoint is reachable.
func answered(err error) bool {
	var er minio.ErrorResponse
	return err == nil || errors.As(err, &er)
}

// unreachable reports whether err says the server could not be reached at
// all. A context deadline is not counted here: who set it decides.
func unreachable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		return false
	}
	return minio.IsNetworkOrHostDown(err, false)
}

// outage is a small circuit breaker: after a call finds the endpoint
// unreachable or timed out (its retries already spent), calls fail at once
// for a window that doubles with each further failure, up to
// maxOutageBackoff. Any answer from the server closes it. Calls arriving
// after the window go to the server, and the first to come back decides.
type outage struct {
	base time.Duration // 0: disabled

	mu      sync.Mutex
	until   time.Time
	backoff time.Duration
	cause   string // the error that opened the window, for messages
}

// check returns an error wrapping ErrUnavailable while the window is open.
func (o *outage) check() error {
	if o.base <= 0 {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if left := time.Until(o.until); left > 0 {
		return fmt.Errorf("%w: not trying for another %s after: %s", ErrUnavailable, left.Round(time.Millisecond), o.cause)
	}
	return nil
}

// failed records a call that could not reach the server.
func (o *outage) failed(err error) {
	if o.base <= 0 {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if time.Now().Before(o.until) {
		return // many calls fail together; one doubling per window
	}
	if o.backoff == 0 {
		o.backoff = o.base
	} else {
		o.backoff = min(2*o.backoff, maxOutageBackoff)
	}
	o.until = time.Now().Add(o.backoff)
	o.cause = err.Error()
}

// ok records an answer from the server.
func (o *outage) ok() {
	if o.base <= 0 {
		return
	}
	o.mu.Lock()
	o.backoff, o.until, o.cause = 0, time.Time{}, ""
	o.mu.Unlock()
}

// down reports whether the window is open, for tests and stats.
func (o *outage) down() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return time.Now().Before(o.until)
}
