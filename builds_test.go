package runnerapi

import (
	"context"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jarcoal/httpmock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const testLastUpdate = "3f4c2ab8e1d9a0b7c6d5e4f3a2b1c0d9"

// testFixtureResponder answers with status and the named testdata file as JSON.
func testFixtureResponder(t *testing.T, status int, name string) httpmock.Responder {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return httpmock.NewBytesResponder(status, data).HeaderSet(http.Header{"Content-Type": {"application/json"}})
}

func TestRegisterRequestShape(t *testing.T) {
	c, mock := testMockClient(t)
	var got *http.Request
	mock.RegisterResponder(http.MethodPost, testAPIRoot+"builds/register", func(r *http.Request) (*http.Response, error) {
		got = r
		testMethod(t, r, http.MethodPost)
		testHeader(t, r, "Content-Type", "application/x-www-form-urlencoded")
		testHeader(t, r, "User-Agent", DefaultUserAgent)
		testHeader(t, r, "Accept", "application/json")
		testHeader(t, r, wireV1.jobTokenHeader, "")
		testFormValues(t, r, url.Values{
			"token":              {testRunnerToken},
			"last_update":        {testLastUpdate},
			"info[name]":         {"my-runner"},
			"info[version]":      {"1.2.3"},
			"info[revision]":     {"abcdef"},
			"info[platform]":     {"linux"},
			"info[architecture]": {"amd64"},
		})
		return httpmock.NewStringResponse(http.StatusNoContent, ""), nil
	})
	_, _, err := c.Builds.Register(context.Background(), &RegisterOptions{
		LastUpdate: testLastUpdate,
		Info:       RunnerInfo{Name: "my-runner", Version: "1.2.3", Revision: "abcdef", Platform: "linux", Architecture: "amd64"},
	})
	require.NoError(t, err)
	require.NotNil(t, got, "the request reached the coordinator")
	assert.Equal(t, "/gitlab/ci/api/v1/builds/register", got.URL.Path)
	assert.NotContains(t, got.URL.String(), testRunnerToken)
	assert.Equal(t, 1, mock.GetTotalCallCount())
}

func TestRegisterMinimalForm(t *testing.T) {
	c, mock := testMockClient(t)
	mock.RegisterResponder(http.MethodPost, testAPIRoot+"builds/register", func(r *http.Request) (*http.Response, error) {
		testFormValues(t, r, url.Values{"token": {"per-call-token"}})
		return httpmock.NewStringResponse(http.StatusNoContent, ""), nil
	})
	_, _, err := c.Builds.Register(context.Background(), nil, WithToken("per-call-token"))
	require.NoError(t, err)
	assert.Equal(t, 1, mock.GetTotalCallCount())
}

func TestRegisterStatuses(t *testing.T) {
	noBuild := func(status int) httpmock.Responder {
		return httpmock.NewStringResponder(status, `{"message":"404 Not Found"}`).
			HeaderSet(http.Header{"X-Gitlab-Last-Update": {testLastUpdate}})
	}
	tests := []struct {
		name      string
		responder httpmock.Responder
		wantBuild bool
		wantIs    error
	}{
		{"201 build", testFixtureResponder(t, http.StatusCreated, "build_8_17.json"), true, nil},
		{"204 no build", httpmock.NewStringResponder(http.StatusNoContent, "").
			HeaderSet(http.Header{"X-Gitlab-Last-Update": {testLastUpdate}}), false, nil},
		{"404 no build", noBuild(http.StatusNotFound), false, nil},
		{"403", httpmock.NewStringResponder(http.StatusForbidden, `{"message":"403 Forbidden"}`), false, ErrForbidden},
		{"409", httpmock.NewStringResponder(http.StatusConflict, `{"message":"409 Conflict"}`), false, ErrConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, mock := testMockClient(t)
			mock.RegisterResponder(http.MethodPost, testAPIRoot+"builds/register", tt.responder)
			build, resp, err := c.Builds.Register(context.Background(), nil)
			require.NotNil(t, resp)
			assert.Equal(t, 1, mock.GetTotalCallCount(), "not retried")
			if tt.wantIs != nil {
				require.Error(t, err)
				assert.ErrorIs(t, err, tt.wantIs)
				assert.Nil(t, build)
				for _, other := range []error{ErrForbidden, ErrNotFound, ErrConflict, ErrTooLarge} {
					if other != tt.wantIs {
						assert.NotErrorIs(t, err, other)
					}
				}
				var er *ErrorResponse
				require.ErrorAs(t, err, &er)
				assert.Equal(t, http.MethodPost, er.Method)
				assert.Equal(t, testAPIRoot+"builds/register", er.URL)
				return
			}
			require.NoError(t, err)
			if tt.wantBuild {
				require.NotNil(t, build)
				assert.Equal(t, int64(1234567), build.ID)
				assert.Equal(t, "b8e3c5a1f0d94e7a", build.Token)
				assert.Equal(t, http.StatusCreated, resp.StatusCode)
				return
			}
			assert.Nil(t, build)
			assert.Equal(t, testLastUpdate, resp.LastUpdate)
		})
	}
}

// GitLab answers "no build" (and a paused runner) with 404 and its JSON body to every user agent but
// gitlab-ci-multi-runner's. Any other 404 means the address is not a coordinator: polling on would bring nothing,
// ever.
func TestRegister404(t *testing.T) {
	const nginx = "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n" +
		"<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
	tests := []struct {
		name        string
		contentType string
		body        string
		noBuild     bool
	}{
		{"GitLab's JSON", "application/json", `{"message":"404 Not Found"}`, true},
		{"GitLab's JSON, lower-case f", "application/json", `{"message":"404 Not found"}`, true},
		{"GitLab's JSON with a newline", "application/json", "{\"message\":\"404 Not Found\"}\n", true},
		{"JSON sniffed as text", "text/plain; charset=utf-8", `{"message":"404 Not Found"}`, true},
		{"nginx page", "text/html", nginx, false},
		{"empty body", "", "", false},
		{"Go's NotFound", "text/plain; charset=utf-8", "404 page not found\n", false},
		{"GitLab's words as plain text", "text/plain", "404 Not Found", false},
		{"another service's JSON", "application/json",
			`{"timestamp":"2017-03-01T10:00:00Z","status":404,"error":"Not Found","path":"/gitlab/ci/api/v1/builds/register"}`, false},
		{"JSON with another message", "application/json", `{"message":"404 Project Not Found"}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, mock := testMockClient(t)
			h := http.Header{}
			if tt.contentType != "" {
				h.Set("Content-Type", tt.contentType)
			}
			mock.RegisterResponder(http.MethodPost, testAPIRoot+"builds/register",
				httpmock.NewStringResponder(http.StatusNotFound, tt.body).HeaderSet(h))

			build, resp, err := c.Builds.Register(context.Background(), nil)
			assert.Nil(t, build)
			require.NotNil(t, resp)
			assert.Equal(t, http.StatusNotFound, resp.StatusCode)
			if tt.noBuild {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrNotCoordinator)
			var er *ErrorResponse
			require.ErrorAs(t, err, &er)
			assert.Equal(t, http.StatusNotFound, er.StatusCode)
			assert.Contains(t, err.Error(), "does not serve the CI Builds API v1")
			assert.NotContains(t, err.Error(), testRunnerToken)
			assert.False(t, IsTransient(err))
			assert.Equal(t, 1, mock.GetTotalCallCount(), "not retried")

			// Next gives up at once rather than polling an address that will never bring a build.
			build, _, err = c.Builds.Next(context.Background(), &NextOptions{Interval: time.Millisecond})
			assert.Nil(t, build)
			assert.ErrorIs(t, err, ErrNotCoordinator)
			assert.Equal(t, 2, mock.GetTotalCallCount(), "Next polled on")
		})
	}
}

func TestRegisterUndecodableBuildIsHandedBack(t *testing.T) {
	// A build whose JSON fails to decode is assigned to the runner all the same: the caller needs its ID to fail it.
	c, mock := testMockClient(t)
	mock.RegisterResponder(http.MethodPost, testAPIRoot+"builds/register",
		httpmock.NewStringResponder(http.StatusCreated, `{"id":42,"token":"tok-42","name":"unit","options":"not an object"}`))
	build, resp, err := c.Builds.Register(context.Background(), nil)
	require.Error(t, err)
	require.NotNil(t, resp)
	require.NotNil(t, build)
	assert.Equal(t, int64(42), build.ID)
	assert.Equal(t, "unit", build.Name)
	assert.Contains(t, err.Error(), "build 42 was assigned to this runner")
	assert.NotContains(t, err.Error(), "tok-42")

	// Next hands it back too, rather than polling on.
	build, _, err = c.Builds.Next(context.Background(), &NextOptions{Interval: time.Millisecond})
	require.Error(t, err)
	require.NotNil(t, build)
	assert.Equal(t, int64(42), build.ID)

	// Without an ID there is nothing to report, so nothing is handed back.
	mock.RegisterResponder(http.MethodPost, testAPIRoot+"builds/register",
		httpmock.NewStringResponder(http.StatusCreated, `{"options":"not an object"}`))
	build, _, err = c.Builds.Register(context.Background(), nil)
	require.Error(t, err)
	assert.Nil(t, build)
}

func TestUpdateRequestShape(t *testing.T) {
	trace := "Running git clone...\nDone & dusted = 100%\n"
	tests := []struct {
		name string
		opts *UpdateOptions
		want url.Values
	}{
		{"state only", &UpdateOptions{State: StateSuccess},
			url.Values{"token": {testRunnerToken}, "state": {"success"}}},
		{"with trace", &UpdateOptions{State: StateFailed, Trace: &trace},
			url.Values{"token": {testRunnerToken}, "state": {"failed"}, "trace": {trace}}},
		{"empty trace replaces the trace", &UpdateOptions{State: StateRunning, Trace: new(string)},
			url.Values{"token": {testRunnerToken}, "state": {"running"}, "trace": {""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, mock := testMockClient(t)
			mock.RegisterResponder(http.MethodPut, testAPIRoot+"builds/1234567", func(r *http.Request) (*http.Response, error) {
				testMethod(t, r, http.MethodPut)
				assert.Equal(t, "/gitlab/ci/api/v1/builds/1234567", r.URL.Path)
				testHeader(t, r, "Content-Type", "application/x-www-form-urlencoded")
				testHeader(t, r, "User-Agent", DefaultUserAgent)
				testHeader(t, r, wireV1.jobTokenHeader, "")
				testFormValues(t, r, tt.want)
				return httpmock.NewStringResponse(http.StatusOK, "true"), nil
			})
			resp, err := c.Builds.Update(context.Background(), 1234567, tt.opts)
			require.NoError(t, err)
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Equal(t, 1, mock.GetTotalCallCount())
		})
	}
}

func TestUpdateStatuses(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		wantIs  error
		wantMsg string
	}{
		{"200 true", http.StatusOK, "true", nil, ""},
		{"200 null", http.StatusOK, "null", nil, ""},
		{"200 empty", http.StatusOK, "", nil, ""},
		{"403 erased", http.StatusForbidden, `{"message":"403 Forbidden  - Build has been erased!"}`, ErrForbidden,
			"403 Forbidden  - Build has been erased!"},
		{"404", http.StatusNotFound, `{"message":"404 Not found"}`, ErrNotFound, "404 Not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, mock := testMockClient(t)
			mock.RegisterResponder(http.MethodPut, testAPIRoot+"builds/9", httpmock.NewStringResponder(tt.status, tt.body))
			resp, err := c.Builds.Update(context.Background(), 9, &UpdateOptions{State: StateSuccess})
			require.NotNil(t, resp)
			assert.Equal(t, tt.status, resp.StatusCode)
			assert.Equal(t, 1, mock.GetTotalCallCount())
			if tt.wantIs == nil {
				assert.NoError(t, err)
				return
			}
			assert.ErrorIs(t, err, tt.wantIs)
			var er *ErrorResponse
			require.ErrorAs(t, err, &er)
			assert.Equal(t, tt.status, er.StatusCode)
			assert.Equal(t, tt.wantMsg, er.Message)
			assert.Equal(t, http.MethodPut, er.Method)
			assert.Contains(t, err.Error(), tt.wantMsg)
		})
	}
}

func TestMissingRunnerTokenFailsBeforeIO(t *testing.T) {
	mock := httpmock.NewMockTransport()
	c, err := NewClient(testBaseURL, WithHTTPClient(&http.Client{Transport: mock}))
	require.NoError(t, err)
	ctx := context.Background()

	_, _, err = c.Builds.Register(ctx, nil)
	assert.ErrorContains(t, err, "runner token")
	_, err = c.Builds.Update(ctx, 1, &UpdateOptions{State: StateSuccess})
	assert.ErrorContains(t, err, "runner token")
	_, _, err = c.Builds.Next(ctx, &NextOptions{Interval: time.Millisecond})
	assert.ErrorContains(t, err, "runner token")
	// A build token is not a runner token.
	c2, err := NewClient(testBaseURL, WithHTTPClient(&http.Client{Transport: mock}), WithBuildToken("bt"))
	require.NoError(t, err)
	_, _, err = c2.Builds.Register(ctx, nil)
	assert.ErrorContains(t, err, "runner token")

	assert.Zero(t, mock.GetTotalCallCount(), "no request may be sent without a token")
}

func TestUpdateNeedsState(t *testing.T) {
	c, mock := testMockClient(t)
	for _, opts := range []*UpdateOptions{nil, {}, {Trace: new(string)}} {
		_, err := c.Builds.Update(context.Background(), 1, opts)
		assert.ErrorContains(t, err, "state")
	}
	assert.Zero(t, mock.GetTotalCallCount())
}

// GitLab's update acts on "success" and "failed", takes "running" as a keep-alive, and answers 200 to anything else
// while doing nothing: a build "updated" to canceled would stay running, unreported.
func TestUpdateRefusesStatesTheAPIDoesNotTake(t *testing.T) {
	c, mock := testMockClient(t)
	mock.RegisterResponder(http.MethodPut, testAPIRoot+"builds/1", httpmock.NewStringResponder(http.StatusOK, "true"))
	for _, state := range []BuildState{StateCanceled, StateCreated, StatePending, StateSkipped, StateManual, "bogus",
		"Success", " success", "success\n"} {
		_, err := c.Builds.Update(context.Background(), 1, &UpdateOptions{State: state})
		require.Error(t, err, "state %q", state)
		assert.ErrorContains(t, err, "running, success or failed")
	}
	assert.Zero(t, mock.GetTotalCallCount(), "nothing may be sent for a state the API does not take")

	for _, state := range []BuildState{StateRunning, StateSuccess, StateFailed} {
		_, err := c.Builds.Update(context.Background(), 1, &UpdateOptions{State: state})
		assert.NoError(t, err, "state %q", state)
	}
	assert.Equal(t, 3, mock.GetTotalCallCount())
}

// testNextServer answers register from a script of statuses, recording the last_update of each request.
type testNextServer struct {
	mu          sync.Mutex
	lastUpdates []string
}

func (s *testNextServer) record(r *http.Request) {
	_ = r.ParseForm()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastUpdates = append(s.lastUpdates, r.PostForm.Get("last_update"))
}

func TestNextPollsUntilBuild(t *testing.T) {
	c, mock := testMockClient(t)
	srv := &testNextServer{}
	build := testFixtureResponder(t, http.StatusCreated, "build_8_17.json")
	noBuild := func(lu string) httpmock.Responder {
		return httpmock.NewStringResponder(http.StatusNoContent, "").HeaderSet(http.Header{"X-Gitlab-Last-Update": {lu}})
	}
	script := []httpmock.Responder{
		noBuild("aaaa"),
		noBuild("aaaa"),
		httpmock.NewStringResponder(http.StatusNotFound, `{"message":"404 Not Found"}`).
			HeaderSet(http.Header{"X-Gitlab-Last-Update": {"bbbb"}}),
		httpmock.NewStringResponder(http.StatusConflict, `{"message":"409 Conflict"}`),
		httpmock.NewStringResponder(http.StatusInternalServerError, `{"message":"500 Internal Server Error"}`),
		noBuild(""), // a no-build answer without the header keeps the last value
		build,
	}
	var n int
	mock.RegisterResponder(http.MethodPost, testAPIRoot+"builds/register", func(r *http.Request) (*http.Response, error) {
		srv.record(r)
		testFormValues(t, r, url.Values{"token": {testRunnerToken}, "info[name]": {"r"},
			"last_update": r.PostForm["last_update"]})
		resp := script[min(n, len(script)-1)]
		n++
		return resp(r)
	})
	got, resp, err := c.Builds.Next(context.Background(), &NextOptions{
		Info: RunnerInfo{Name: "r"}, LastUpdate: "seed", Interval: time.Millisecond,
	})
	require.NoError(t, err)
	require.NotNil(t, got)
	assert.Equal(t, int64(1234567), got.ID)
	assert.Equal(t, http.StatusCreated, resp.StatusCode)
	assert.Equal(t, []string{"seed", "aaaa", "aaaa", "bbbb", "bbbb", "bbbb", "bbbb"}, srv.lastUpdates)
}

func TestNextReturnsAtOnceOn403(t *testing.T) {
	c, mock := testMockClient(t)
	mock.RegisterResponder(http.MethodPost, testAPIRoot+"builds/register",
		httpmock.NewStringResponder(http.StatusForbidden, `{"message":"403 Forbidden"}`))
	build, resp, err := c.Builds.Next(context.Background(), &NextOptions{Interval: time.Millisecond})
	assert.ErrorIs(t, err, ErrForbidden)
	assert.Nil(t, build)
	require.NotNil(t, resp)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	assert.Equal(t, 1, mock.GetTotalCallCount())
}

func TestNextRetriesTransportFailures(t *testing.T) {
	c, mock := testMockClient(t, WithoutRetries())
	var n int
	mock.RegisterResponder(http.MethodPost, testAPIRoot+"builds/register", func(r *http.Request) (*http.Response, error) {
		n++
		if n < 3 {
			return nil, errors.New("connection reset by peer")
		}
		return testFixtureResponder(t, http.StatusCreated, "build_8_0.json")(r)
	})
	build, _, err := c.Builds.Next(context.Background(), &NextOptions{Interval: time.Millisecond})
	require.NoError(t, err)
	assert.Equal(t, int64(7), build.ID)
	assert.Equal(t, 3, mock.GetTotalCallCount())
}

func TestNextStopsWhenContextEnds(t *testing.T) {
	tests := map[string]httpmock.Responder{
		"while waiting between polls": httpmock.NewStringResponder(http.StatusNoContent, ""),
		"while waiting after a conflict": httpmock.NewStringResponder(http.StatusConflict,
			`{"message":"409 Conflict"}`),
	}
	for name, responder := range tests {
		t.Run(name, func(t *testing.T) {
			c, mock := testMockClient(t)
			mock.RegisterResponder(http.MethodPost, testAPIRoot+"builds/register", responder)
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			start := time.Now()
			build, _, err := c.Builds.Next(ctx, &NextOptions{Interval: time.Hour})
			assert.Less(t, time.Since(start), 10*time.Second, "Next did not stop when its context ended")
			assert.Nil(t, build)
			assert.ErrorIs(t, err, context.DeadlineExceeded)
			assert.Equal(t, 1, mock.GetTotalCallCount())
		})
	}

	t.Run("already canceled", func(t *testing.T) {
		c, mock := testMockClient(t)
		mock.RegisterResponder(http.MethodPost, testAPIRoot+"builds/register", httpmock.NewStringResponder(204, ""))
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, _, err := c.Builds.Next(ctx, nil)
		assert.ErrorIs(t, err, context.Canceled)
		assert.False(t, strings.Contains(err.Error(), testRunnerToken))
	})
}

func TestNextHugeInterval(t *testing.T) {
	c, mock := testMockClient(t)
	mock.RegisterResponder(http.MethodPost, testAPIRoot+"builds/register", httpmock.NewStringResponder(204, ""))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	assert.NotPanics(t, func() {
		_, _, err := c.Builds.Next(ctx, &NextOptions{Interval: math.MaxInt64})
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	})
	// An overflowing wait would be negative, and Next would poll in a tight loop until ctx ended.
	assert.Equal(t, 1, mock.GetTotalCallCount())
}

func TestPollWaitJitter(t *testing.T) {
	distinct := map[time.Duration]bool{}
	for range 100 {
		w := pollWait(time.Second)
		assert.GreaterOrEqual(t, w, 500*time.Millisecond)
		assert.Less(t, w, 1500*time.Millisecond)
		distinct[w] = true
	}
	assert.Greater(t, len(distinct), 1, "runners would poll in step")
	for range 100 {
		assert.GreaterOrEqual(t, pollWait(math.MaxInt64), time.Duration(math.MaxInt64/2))
	}
}

// testLateAssigner is a coordinator that assigns a build to the first register it is sent, and answers only once
// the test has ended the client's context: the build is the runner's whatever the runner does then.
type testLateAssigner struct {
	t        *testing.T
	build    []byte
	status   int // of the answer to the first register; later ones get 204
	received chan struct{}
	release  chan struct{}
	once     sync.Once
	mu       sync.Mutex
	calls    int
}

func newTestLateAssigner(t *testing.T, status int) *testLateAssigner {
	data, err := os.ReadFile(filepath.Join("testdata", "build_8_17.json"))
	require.NoError(t, err)
	return &testLateAssigner{t: t, build: data, status: status, received: make(chan struct{}), release: make(chan struct{})}
}

func (s *testLateAssigner) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/gitlab/ci/api/v1/builds/register" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"message":"404 Not Found"}`))
		return
	}
	_ = r.ParseForm()
	s.mu.Lock()
	s.calls++
	first := s.calls == 1
	s.mu.Unlock()
	if !first {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	s.once.Do(func() { close(s.received) })
	select {
	case <-s.release:
	case <-r.Context().Done(): // the client gave up: the build stays assigned all the same
	}
	if s.status != http.StatusCreated {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(s.status)
		_, _ = w.Write([]byte("<html><head><title>503 Service Temporarily Unavailable</title></head></html>"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(s.build)
}

// client returns a client for the coordinator at srvURL whose transport tells the test about the request in flight.
func (s *testLateAssigner) client(t *testing.T, srvURL string) (*Client, *testInFlight) {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	spy := &testInFlight{next: tr, returned: make(chan struct{})}
	c, err := NewClient(srvURL+"/gitlab", WithHTTPClient(&http.Client{Transport: spy}), WithRunnerToken(testRunnerToken),
		WithRetryPolicy(testFastRetry))
	require.NoError(t, err)
	return c, spy
}

// endCtxWhenReceived cancels the client's context once the coordinator has the request, then lets it answer: at
// once if the request in flight lives on, or only once the client has given up on it if it ended with the context,
// so that the answer cannot outrun the cancellation.
func (s *testLateAssigner) endCtxWhenReceived(cancel context.CancelFunc, spy *testInFlight) {
	go func() {
		<-s.received
		cancel()
		if spy.context().Err() != nil {
			<-spy.returned
		}
		close(s.release)
	}()
}

// testInFlight is a transport that remembers the context of the first request and tells when its round trip
// returned.
type testInFlight struct {
	next     http.RoundTripper
	mu       sync.Mutex
	ctx      context.Context
	returned chan struct{}
	once     sync.Once
}

func (s *testInFlight) RoundTrip(r *http.Request) (*http.Response, error) {
	s.mu.Lock()
	first := s.ctx == nil
	if first {
		s.ctx = r.Context()
	}
	s.mu.Unlock()
	resp, err := s.next.RoundTrip(r)
	if first {
		s.once.Do(func() { close(s.returned) })
	}
	return resp, err
}

func (s *testInFlight) context() context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ctx
}

func (s *testLateAssigner) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// A build assigned by a register in flight when the caller's context ends is the runner's: dropping the answer
// would leave it running on the coordinator with nobody to run or report it.
func TestRegisterInFlightWhenContextEndsKeepsTheBuild(t *testing.T) {
	calls := map[string]func(ctx context.Context, c *Client) (*Build, *Response, error){
		"Register": func(ctx context.Context, c *Client) (*Build, *Response, error) {
			return c.Builds.Register(ctx, nil)
		},
		"Next": func(ctx context.Context, c *Client) (*Build, *Response, error) {
			return c.Builds.Next(ctx, &NextOptions{Interval: time.Millisecond})
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			srv := newTestLateAssigner(t, http.StatusCreated)
			hs := httptest.NewServer(srv)
			defer hs.Close()
			c, spy := srv.client(t, hs.URL)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			srv.endCtxWhenReceived(cancel, spy)

			build, resp, err := call(ctx, c)
			require.Error(t, ctx.Err(), "the context ended while the request was in flight")
			require.NoError(t, err, "a build that arrived is not an error")
			require.NotNil(t, build, "the assigned build was dropped")
			assert.Equal(t, int64(1234567), build.ID)
			assert.Equal(t, "b8e3c5a1f0d94e7a", build.Token)
			require.NotNil(t, resp)
			assert.Equal(t, http.StatusCreated, resp.StatusCode)
			assert.Equal(t, 1, srv.count())
		})
	}
}

// Once the context has ended, no new attempt starts: a refusal that would be retried ends the call, saying why.
func TestRegisterNoRetryAfterContextEnded(t *testing.T) {
	srv := newTestLateAssigner(t, http.StatusServiceUnavailable)
	hs := httptest.NewServer(srv)
	defer hs.Close()
	c, spy := srv.client(t, hs.URL)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv.endCtxWhenReceived(cancel, spy)

	build, _, err := c.Builds.Next(ctx, &NextOptions{Interval: time.Millisecond})
	assert.Nil(t, build)
	require.Error(t, err)
	assert.ErrorIs(t, err, context.Canceled)
	assert.False(t, IsTransient(err), "an ended context is not transient: %v", err)
	assert.Equal(t, 1, srv.count(), "a request was sent after the context ended")
}

// An attempt in flight when the context ends is still bounded: by the client's per-attempt timeout here, and by
// registerGrace when there is none.
func TestRegisterInFlightStaysBounded(t *testing.T) {
	stalled := make(chan struct{})
	defer close(stalled)
	received := make(chan struct{}, 1)
	c, _ := testServerClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case received <- struct{}{}:
		default:
		}
		select {
		case <-stalled:
		case <-r.Context().Done():
		}
	}), WithTimeout(50*time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-received
		cancel()
	}()
	done := make(chan error, 1)
	go func() {
		_, _, err := c.Builds.Register(ctx, nil)
		done <- err
	}()
	select {
	case err := <-done:
		require.Error(t, err)
		assert.ErrorIs(t, err, context.Canceled)
		assert.Contains(t, err.Error(), "runnerapi: POST ")
		assert.NotContains(t, err.Error(), testRunnerToken)
	case <-time.After(30 * time.Second):
		t.Fatal("Register did not end")
	}
}

func TestDetachWithGrace(t *testing.T) {
	t.Run("ends a grace after its parent", func(t *testing.T) {
		parent, cancel := context.WithCancel(context.WithValue(context.Background(), testCtxKey{}, "v"))
		detached, graceOver, release := detachWithGrace(parent, time.Millisecond)
		defer release()
		assert.Equal(t, "v", detached.Value(testCtxKey{}), "values are kept")
		cancel()
		select {
		case <-detached.Done():
		case <-time.After(30 * time.Second):
			t.Fatal("the detached context outlived its grace")
		}
		assert.True(t, graceOver())
	})
	t.Run("lives on while its parent does", func(t *testing.T) {
		detached, graceOver, release := detachWithGrace(context.Background(), time.Nanosecond)
		assert.NoError(t, detached.Err())
		release()
		assert.Error(t, detached.Err(), "release ends it")
		assert.False(t, graceOver())
	})
	t.Run("released within the grace", func(t *testing.T) {
		parent, cancel := context.WithCancel(context.Background())
		detached, graceOver, release := detachWithGrace(parent, time.Hour)
		cancel()
		assert.NoError(t, detached.Err(), "the parent's end does not end it")
		release()
		assert.Error(t, detached.Err())
		assert.False(t, graceOver())
	})
}

type testCtxKey struct{}
