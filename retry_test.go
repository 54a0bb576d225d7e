package runnerapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testStatusHandler answers every request with status (and Retry-After, when set), counting the requests.
func testStatusHandler(n *atomic.Int32, status int, retryAfter string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, `{"message":"`+http.StatusText(status)+`"}`)
	}
}

// testDropHandler reads the request, then drops the connection without answering.
func testDropHandler(n *atomic.Int32) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			_ = conn.Close()
		}
	}
}

func TestRetryCounts(t *testing.T) {
	for _, maxRetries := range []int{0, 1, 3} {
		var n atomic.Int32
		policy := testFastRetry
		policy.MaxRetries = maxRetries
		c, _ := testServerClient(t, testStatusHandler(&n, http.StatusServiceUnavailable, ""), WithRetryPolicy(policy))
		resp, err := c.Builds.Update(context.Background(), 1, &UpdateOptions{State: StateSuccess})
		require.Error(t, err)
		var er *ErrorResponse
		require.ErrorAs(t, err, &er)
		assert.Equal(t, http.StatusServiceUnavailable, er.StatusCode)
		assert.Equal(t, int32(maxRetries+1), n.Load(), "MaxRetries %d", maxRetries)
		require.NotNil(t, resp)
		assert.Equal(t, maxRetries+1, resp.Attempts)
	}
}

func TestWithoutRetriesMakesOneAttempt(t *testing.T) {
	var n atomic.Int32
	c, _ := testServerClient(t, testStatusHandler(&n, http.StatusServiceUnavailable, ""), WithoutRetries())
	_, err := c.Builds.Update(context.Background(), 1, &UpdateOptions{State: StateSuccess})
	require.Error(t, err)
	assert.Equal(t, int32(1), n.Load())
}

func TestRetrySucceedsAfterTransientFailures(t *testing.T) {
	var n atomic.Int32
	c, _ := testServerClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) < 3 {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		_, _ = io.WriteString(w, "true")
	}))
	resp, err := c.Builds.Update(context.Background(), 1, &UpdateOptions{State: StateSuccess})
	require.NoError(t, err)
	assert.Equal(t, 3, resp.Attempts)
	assert.Equal(t, int32(3), n.Load())
}

func TestRegisterRetryOnlyWhenUnsent(t *testing.T) {
	tests := []struct {
		name    string
		handler func(*atomic.Int32) http.Handler
		want    int32
	}{
		{"500 may have assigned a build", func(n *atomic.Int32) http.Handler {
			return testStatusHandler(n, http.StatusInternalServerError, "")
		}, 1},
		{"504 may have assigned a build", func(n *atomic.Int32) http.Handler {
			return testStatusHandler(n, http.StatusGatewayTimeout, "")
		}, 1},
		{"dropped after reading the request", func(n *atomic.Int32) http.Handler { return testDropHandler(n) }, 1},
		{"503 is retried", func(n *atomic.Int32) http.Handler {
			return testStatusHandler(n, http.StatusServiceUnavailable, "")
		}, int32(testFastRetry.MaxRetries + 1)},
		{"502 is retried", func(n *atomic.Int32) http.Handler {
			return testStatusHandler(n, http.StatusBadGateway, "")
		}, int32(testFastRetry.MaxRetries + 1)},
		{"429 is retried", func(n *atomic.Int32) http.Handler {
			return testStatusHandler(n, http.StatusTooManyRequests, "0")
		}, int32(testFastRetry.MaxRetries + 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n atomic.Int32
			c, _ := testServerClient(t, tt.handler(&n))
			build, _, err := c.Builds.Register(context.Background(), nil)
			require.Error(t, err)
			assert.Nil(t, build)
			assert.Equal(t, tt.want, n.Load())
		})
	}
}

func TestRegisterRetriedAfterRefusedConnection(t *testing.T) {
	var n atomic.Int32
	_, srv := testServerClient(t, testStatusHandler(&n, http.StatusNoContent, ""))
	refused := httptestClosedAddr(t)

	var dials atomic.Int32
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		if dials.Add(1) <= 2 {
			return d.DialContext(ctx, network, refused)
		}
		return d.DialContext(ctx, network, addr)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	c, err := NewClient(srv.URL, WithHTTPClient(&http.Client{Transport: tr}), WithRunnerToken(testRunnerToken),
		WithRetryPolicy(testFastRetry))
	require.NoError(t, err)
	build, resp, err := c.Builds.Register(context.Background(), nil)
	require.NoError(t, err)
	assert.Nil(t, build)
	assert.Equal(t, 3, resp.Attempts)
	assert.Equal(t, int32(1), n.Load())
}

// httptestClosedAddr returns an address where nothing listens: connecting to it is refused.
func httptestClosedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

func TestUpdateRetriedAfterReceivedFailures(t *testing.T) {
	tests := map[string]func(*atomic.Int32) http.Handler{
		"500":                func(n *atomic.Int32) http.Handler { return testStatusHandler(n, http.StatusInternalServerError, "") },
		"dropped connection": func(n *atomic.Int32) http.Handler { return testDropHandler(n) },
	}
	for name, h := range tests {
		t.Run(name, func(t *testing.T) {
			var n atomic.Int32
			c, _ := testServerClient(t, h(&n))
			_, err := c.Builds.Update(context.Background(), 1, &UpdateOptions{State: StateFailed})
			require.Error(t, err)
			assert.True(t, IsTransient(err))
			assert.Equal(t, int32(testFastRetry.MaxRetries+1), n.Load())
		})
	}
}

func TestRetryAttemptTimeout(t *testing.T) {
	var n atomic.Int32
	c, _ := testServerClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Reading the body lets the server notice the client hanging up.
		_, _ = io.Copy(io.Discard, r.Body)
		if n.Add(1) == 1 {
			<-r.Context().Done() // hang until the client gives up on this attempt
			return
		}
		_, _ = io.WriteString(w, "true")
	}), WithTimeout(20*time.Millisecond))
	resp, err := c.Builds.Update(context.Background(), 1, &UpdateOptions{State: StateSuccess})
	require.NoError(t, err)
	assert.Equal(t, 2, resp.Attempts)
}

func TestNoRetryOfNonReplayableBody(t *testing.T) {
	var n atomic.Int32
	c, _ := testServerClient(t, testStatusHandler(&n, http.StatusServiceUnavailable, ""))
	// A MultiReader hides the type, so net/http cannot make a GetBody for it.
	body := io.MultiReader(strings.NewReader("one-shot stream"))
	req, err := c.NewRequest(context.Background(), http.MethodPut, "builds/1", body)
	require.NoError(t, err)
	require.Nil(t, req.GetBody)
	_, err = c.Do(req, nil)
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrBodyNotReplayable)
	var er *ErrorResponse
	require.ErrorAs(t, err, &er)
	assert.Equal(t, http.StatusServiceUnavailable, er.StatusCode)
	assert.Equal(t, int32(1), n.Load())

	// The same body shape with a failure that is not retried anyway is not flagged.
	var m atomic.Int32
	c2, _ := testServerClient(t, testStatusHandler(&m, http.StatusForbidden, ""))
	req, err = c2.NewRequest(context.Background(), http.MethodPut, "builds/1", io.MultiReader(strings.NewReader("x")))
	require.NoError(t, err)
	_, err = c2.Do(req, nil)
	assert.ErrorIs(t, err, ErrForbidden)
	assert.NotErrorIs(t, err, ErrBodyNotReplayable)
}

func TestDoReplaysBodyOnRetry(t *testing.T) {
	var n atomic.Int32
	var bodies []string
	c, _ := testServerClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies = append(bodies, string(b))
		if n.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	req, err := c.NewRequest(context.Background(), http.MethodPut, "builds/1", strings.NewReader("replay me"))
	require.NoError(t, err)
	resp, err := c.Do(req, nil)
	require.NoError(t, err)
	assert.Equal(t, 3, resp.Attempts)
	assert.Equal(t, []string{"replay me", "replay me", "replay me"}, bodies)
}

func TestRetryAfterHonoured(t *testing.T) {
	tests := map[string]string{
		"seconds":   "120",
		"http date": time.Now().Add(time.Hour).UTC().Format(http.TimeFormat),
	}
	for name, ra := range tests {
		t.Run(name, func(t *testing.T) {
			var n atomic.Int32
			// The backoff alone would wait at most 1ms; Retry-After asks for much more, capped at 30ms.
			policy := RetryPolicy{MaxRetries: 2, BaseDelay: time.Microsecond, MaxDelay: time.Millisecond,
				MaxRetryAfter: 30 * time.Millisecond}
			c, _ := testServerClient(t, testStatusHandler(&n, http.StatusTooManyRequests, ra), WithRetryPolicy(policy))
			start := time.Now()
			_, err := c.Builds.Update(context.Background(), 1, &UpdateOptions{State: StateSuccess})
			elapsed := time.Since(start)
			require.Error(t, err)
			assert.Equal(t, int32(3), n.Load())
			assert.GreaterOrEqual(t, elapsed, 2*policy.MaxRetryAfter, "two waits of the capped Retry-After")
		})
	}
}

func TestRetryPolicyBackoff(t *testing.T) {
	p := RetryPolicy{MaxRetries: 10, BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second, MaxRetryAfter: 5 * time.Second}
	for n := 1; n <= 10; n++ {
		ceiling := min(p.BaseDelay<<(n-1), p.MaxDelay)
		for range 50 {
			d := p.backoff(n, 0)
			assert.GreaterOrEqual(t, d, time.Duration(0))
			assert.LessOrEqual(t, d, ceiling, "retry %d", n)
		}
	}
	// Full jitter: waits are spread over the range, not pinned to the ceiling.
	distinct := map[time.Duration]bool{}
	for range 20 {
		distinct[p.backoff(5, 0)] = true
	}
	assert.Greater(t, len(distinct), 1)

	// Retry-After is honoured up to the cap, plus a jitter of up to as long again, and never shortens the
	// computed wait.
	for range 50 {
		assert.GreaterOrEqual(t, p.backoff(1, 3*time.Second), 3*time.Second)
		assert.Less(t, p.backoff(1, 3*time.Second), 6*time.Second)
		assert.GreaterOrEqual(t, p.backoff(1, time.Hour), 5*time.Second)
		assert.Less(t, p.backoff(1, time.Hour), 10*time.Second)
		// Below a second (an HTTP date in the next second), the jitter still spans a second.
		assert.GreaterOrEqual(t, p.backoff(1, 200*time.Millisecond), 200*time.Millisecond)
		assert.Less(t, p.backoff(1, 200*time.Millisecond), 1200*time.Millisecond)
	}
	assert.GreaterOrEqual(t, p.backoff(10, time.Nanosecond), time.Nanosecond)
	// The jitter is capped by MaxRetryAfter as well.
	short := RetryPolicy{MaxRetries: 1, MaxRetryAfter: 30 * time.Millisecond}
	for range 50 {
		d := short.backoff(1, time.Second)
		assert.GreaterOrEqual(t, d, 30*time.Millisecond)
		assert.Less(t, d, 60*time.Millisecond)
	}

	// A policy without MaxRetryAfter ignores Retry-After rather than retrying at once.
	noCap := RetryPolicy{MaxRetries: 3, BaseDelay: time.Second, MaxDelay: time.Second}
	for range 20 {
		d := noCap.backoff(1, time.Minute)
		assert.LessOrEqual(t, d, time.Second)
	}
	zero := 0
	for range 50 {
		if noCap.backoff(1, time.Minute) == 0 {
			zero++
		}
	}
	assert.Less(t, zero, 50, "a Retry-After made every wait zero")

	assert.Zero(t, RetryPolicy{}.backoff(1, 0))
}

// Runners refused together with the same Retry-After must not come back together: the waits are spread evenly
// over as long again as Retry-After asked, so that no twentieth of that span holds much more than a twentieth of
// them. This draws the waits only; TestRetryAfterSpreadsTheHerd sends the requests.
func TestRetryPolicyBackoffSpreadsRetryAfter(t *testing.T) {
	p := DefaultRetryPolicy()
	for _, ra := range []time.Duration{time.Second, 5 * time.Second, 300 * time.Millisecond} {
		span := max(ra, time.Second)
		var bins [20]int
		const n = 4000
		for range n {
			d := p.backoff(1, ra)
			require.GreaterOrEqual(t, d, ra)
			require.Less(t, d, ra+span)
			bins[int((d-ra)*20/span)]++
		}
		for i, b := range bins {
			// A twentieth of the span expects 200 of the 4,000 waits; 300 is over seven standard deviations.
			assert.Less(t, b, 300, "Retry-After %v: %d of %d waits in the %d-th twentieth of the span", ra, b, n, i)
		}
	}
	huge := RetryPolicy{MaxRetries: 1, MaxRetryAfter: math.MaxInt64}
	assert.Equal(t, time.Duration(math.MaxInt64), huge.backoff(1, math.MaxInt64), "no overflow into a negative wait")
}

func TestRetryPolicyBackoffExtremes(t *testing.T) {
	// Absurd policies neither panic nor overflow into a zero or negative wait.
	huge := RetryPolicy{MaxRetries: 100, BaseDelay: math.MaxInt64, MaxDelay: math.MaxInt64}
	assert.NotPanics(t, func() { _ = huge.backoff(1, 0) })
	doubling := RetryPolicy{MaxRetries: 100, BaseDelay: time.Second, MaxDelay: math.MaxInt64}
	positive := 0
	for range 20 {
		d := doubling.backoff(80, 0)
		assert.GreaterOrEqual(t, d, time.Duration(0))
		if d > time.Second {
			positive++
		}
	}
	assert.Greater(t, positive, 0, "the ceiling overflowed")
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2017, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"-5", 0},
		{"7", 7 * time.Second},
		{" 7 ", 7 * time.Second},
		{"99999999999999999", 24 * time.Hour},
		{"1.5", 0},
		{"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"Wed, 01 Mar 2017 12:01:00 GMT", time.Minute},
		{"Wednesday, 01-Mar-17 12:01:00 GMT", time.Minute},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, parseRetryAfter(tt.in, now), "%q", tt.in)
	}
}

func TestCancelDuringBackoffReturnsPromptly(t *testing.T) {
	var n atomic.Int32
	// Retry-After makes the wait an hour; the context is canceled a moment into it.
	policy := RetryPolicy{MaxRetries: 3, BaseDelay: time.Hour, MaxDelay: time.Hour, MaxRetryAfter: time.Hour}
	c, _ := testServerClient(t, testStatusHandler(&n, http.StatusServiceUnavailable, "3600"), WithRetryPolicy(policy))
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	start := time.Now()
	_, err := c.Builds.Update(ctx, 1, &UpdateOptions{State: StateSuccess})
	elapsed := time.Since(start)
	require.Error(t, err)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Less(t, elapsed, 10*time.Second, "waited out the backoff")
	assert.Equal(t, int32(1), n.Load())
	assert.Contains(t, err.Error(), "503 Service Unavailable", "the failure that led to the wait is told")
	assert.False(t, IsTransient(err), "an ended context is not transient, whatever failed before it")
}

func TestIsTransientAndUnsent(t *testing.T) {
	dial := &TransportError{Err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}}
	read := &TransportError{Err: &net.OpError{Op: "read", Err: errors.New("connection reset by peer")}}
	eof := &TransportError{Err: io.ErrUnexpectedEOF}
	status := func(code int) error { return &ErrorResponse{StatusCode: code} }
	tests := []struct {
		name              string
		err               error
		transient, unsent bool
	}{
		{"dial", dial, true, true},
		{"read", read, true, false},
		{"eof", eof, true, false},
		{"408", status(408), true, false},
		{"429", status(429), true, true},
		{"500", status(500), true, false},
		{"502", status(502), true, true},
		{"503", status(503), true, true},
		{"504", status(504), true, false},
		{"400", status(400), false, false},
		{"403", status(403), false, false},
		{"404", status(404), false, false},
		{"409", status(409), false, false},
		{"unknown CA", &TransportError{Err: &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}}, false, false},
		{"bad host name", &TransportError{Err: x509.HostnameError{Host: "gitlab.example.com"}}, false, false},
		{"not TLS", &TransportError{Err: tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}}, false, false},
		{"canceled", context.Canceled, false, false},
		{"plain", errors.New("x"), false, false},
		{"nil", nil, false, false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.transient, IsTransient(tt.err), "IsTransient %s", tt.name)
		assert.Equal(t, tt.unsent, isUnsent(tt.err), "isUnsent %s", tt.name)
	}
}

func TestUntrustedCertificateIsNotRetried(t *testing.T) {
	var handled, conns atomic.Int32
	srv := httptest.NewUnstartedServer(testStatusHandler(&handled, http.StatusOK, ""))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	defer srv.Close()
	c, err := NewClient(srv.URL, WithRunnerToken("runner-token"),
		WithRetryPolicy(RetryPolicy{MaxRetries: 3, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
	require.NoError(t, err)
	_, err = c.Builds.Update(context.Background(), 1, &UpdateOptions{State: StateSuccess})
	require.Error(t, err)
	var verify *tls.CertificateVerificationError
	assert.ErrorAs(t, err, &verify, "the certificate is reported, so the caller can fix its trust")
	assert.False(t, IsTransient(err))
	assert.Equal(t, int32(1), conns.Load(), "one attempt: a certificate that does not verify is not retried")
	assert.Zero(t, handled.Load())
}
