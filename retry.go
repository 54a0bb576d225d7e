package runnerapi

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// RetryPolicy says how often and how patiently a call is retried after a transient failure: a connection error, a
// timeout, or a 408, 429, 500, 502, 503 or 504 answer.
type RetryPolicy struct {
	// MaxRetries is how many times a call may be sent again after its first attempt; 0 turns retries off.
	MaxRetries int
	// BaseDelay is the ceiling of the first backoff; each retry doubles it, up to MaxDelay. The wait is drawn
	// uniformly below the ceiling ("full jitter"), so that runners failing together do not retry together.
	BaseDelay time.Duration
	// MaxDelay caps the backoff ceiling.
	MaxDelay time.Duration
	// MaxRetryAfter caps how long a Retry-After header can make a call wait before its jitter; zero ignores
	// Retry-After. After a Retry-After of R (capped), the wait is R plus a jitter drawn uniformly below S, where S is
	// R but at least a second (both forms of Retry-After count whole seconds), capped by MaxRetryAfter too: runners
	// refused together come back spread over S, not in the same instant. So the wait never exceeds twice
	// MaxRetryAfter, and never falls below the backoff the retry would have had anyway.
	MaxRetryAfter time.Duration
}

// DefaultRetryPolicy is the policy of a client made without WithRetryPolicy: up to 4 retries, backoff from 250ms to
// 15s, Retry-After honoured up to a minute (and spread over as long again at most).
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{MaxRetries: 4, BaseDelay: 250 * time.Millisecond, MaxDelay: 15 * time.Second, MaxRetryAfter: time.Minute}
}

// backoff returns the wait before retry n (1 for the first retry). A positive retryAfter, the coordinator's own
// request, lengthens the computed backoff to it plus its jitter, as MaxRetryAfter's documentation says; it never
// shortens it, so a policy without MaxRetryAfter does not answer "wait two minutes" by retrying at once.
func (p RetryPolicy) backoff(n int, retryAfter time.Duration) time.Duration {
	wait := p.jitter(n)
	if retryAfter <= 0 || p.MaxRetryAfter <= 0 {
		return wait
	}
	asked := min(retryAfter, p.MaxRetryAfter)
	extra := rand.N(min(max(asked, time.Second), p.MaxRetryAfter))
	if asked > math.MaxInt64-extra {
		return math.MaxInt64
	}
	return max(wait, asked+extra)
}

// jitter draws the computed backoff before retry n: uniform below a ceiling that doubles from BaseDelay.
func (p RetryPolicy) jitter(n int) time.Duration {
	ceiling := min(p.BaseDelay, p.MaxDelay)
	for i := 1; i < n && ceiling < p.MaxDelay; i++ {
		// Doubling past MaxDelay/2 could overflow into a negative ceiling: stop at MaxDelay.
		if ceiling > p.MaxDelay/2 {
			ceiling = p.MaxDelay
			break
		}
		ceiling *= 2
	}
	if ceiling <= 0 {
		return 0
	}
	// rand.N(ceiling+1) would overflow, and panic, for a ceiling of math.MaxInt64.
	return rand.N(ceiling)
}

// shouldRetry decides whether attempt n, which failed with err, is followed by another, and after how long.
func (c *Client) shouldRetry(resp *Response, err error, class retryClass, n int) (time.Duration, bool) {
	if class == retryNever || n > c.retry.MaxRetries {
		return 0, false
	}
	switch class {
	case retryTransient:
		if !IsTransient(err) {
			return 0, false
		}
	case retryUnsent:
		if !isUnsent(err) {
			return 0, false
		}
	}
	var ra time.Duration
	if resp != nil && resp.Response != nil {
		ra = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	return c.retry.backoff(n, ra), true
}

// IsTransient reports whether err is a failure that may pass if the call is made again: a connection error, a
// timeout of one attempt, or a 408, 429, 500, 502, 503 or 504 answer. An ended context is not transient, and
// neither is a TLS failure that no retry mends (a certificate that does not verify, a server that does not speak
// TLS).
func IsTransient(err error) bool {
	var te *TransportError
	if errors.As(err, &te) {
		return !isPermanentTLSFailure(te.Err)
	}
	var er *ErrorResponse
	if errors.As(err, &er) {
		switch er.StatusCode {
		case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
			http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
	}
	return false
}

// isUnsent reports whether err shows that the request surely had no effect on the coordinator: the connection was
// never made, or the answer was 429, 502 or 503 (refused before the application acted on it).
func isUnsent(err error) bool {
	var te *TransportError
	if errors.As(err, &te) {
		var op *net.OpError
		return errors.As(te.Err, &op) && op.Op == "dial"
	}
	var er *ErrorResponse
	if errors.As(err, &er) {
		switch er.StatusCode {
		case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable:
			return true
		}
	}
	return false
}

// parseRetryAfter reads a Retry-After value in seconds or as an HTTP date; anything else is no request at all.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		// Beyond this any cap applies anyway; stopping here keeps the multiplication from overflowing.
		if secs > int64(24*time.Hour/time.Second) {
			secs = int64(24 * time.Hour / time.Second)
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// isPermanentTLSFailure reports whether err is a TLS failure that repeats on every attempt.
func isPermanentTLSFailure(err error) bool {
	var (
		verify   *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		record   tls.RecordHeaderError
	)
	return errors.As(err, &verify) || errors.As(err, &unknown) || errors.As(err, &hostname) ||
		errors.As(err, &invalid) || errors.As(err, &record)
}
