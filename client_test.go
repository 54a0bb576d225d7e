package runnerapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jarcoal/httpmock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A non-empty base path, so that a request resolved against the wrong root fails loudly.
const (
	testBaseURL = "https://gitlab.example.com/gitlab/"
	testAPIRoot = "https://gitlab.example.com/gitlab/ci/api/v1/"
)

const testRunnerToken = "RUNNER-TOKEN-5e1f9c"

// testFastRetry retries like the default policy, in milliseconds.
var testFastRetry = RetryPolicy{MaxRetries: 3, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond,
	MaxRetryAfter: 5 * time.Millisecond}

// testMockClient returns a client whose requests go to a fresh httpmock transport.
func testMockClient(t *testing.T, opts ...Option) (*Client, *httpmock.MockTransport) {
	t.Helper()
	mock := httpmock.NewMockTransport()
	opts = append([]Option{WithHTTPClient(&http.Client{Transport: mock}), WithRunnerToken(testRunnerToken),
		WithRetryPolicy(testFastRetry)}, opts...)
	c, err := NewClient(testBaseURL, opts...)
	require.NoError(t, err)
	return c, mock
}

// testServerClient returns a client for an httptest server running h, closed when the test ends.
func testServerClient(t *testing.T, h http.Handler, opts ...Option) (*Client, *httptest.Server) {
	t.Helper()
	srv := httptest.NewServer(h)
	tr := &http.Transport{}
	t.Cleanup(func() {
		srv.Close()
		tr.CloseIdleConnections()
	})
	opts = append([]Option{WithHTTPClient(&http.Client{Transport: tr}), WithRunnerToken(testRunnerToken),
		WithRetryPolicy(testFastRetry)}, opts...)
	c, err := NewClient(srv.URL+"/gitlab", opts...)
	require.NoError(t, err)
	return c, srv
}

func testMethod(t *testing.T, r *http.Request, want string) {
	t.Helper()
	assert.Equal(t, want, r.Method)
}

func testHeader(t *testing.T, r *http.Request, header, want string) {
	t.Helper()
	assert.Equal(t, want, r.Header.Get(header), "header %s", header)
}

// testFormValues checks that the request's form body holds exactly want, and that its URL has no query at all.
func testFormValues(t *testing.T, r *http.Request, want url.Values) {
	t.Helper()
	assert.Empty(t, r.URL.RawQuery, "no query string: tokens must not go into URLs")
	require.NoError(t, r.ParseForm())
	assert.Equal(t, want, r.PostForm)
}

// testLogRecorder collects the records of a Debug-level logger.
type testLogRecorder struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *testLogRecorder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *testLogRecorder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// testLogger returns a logger writing both text and JSON records at Debug level into rec.
func testLogger(rec *testLogRecorder) *slog.Logger {
	opts := &slog.HandlerOptions{Level: slog.LevelDebug}
	return slog.New(testTeeHandler{slog.NewTextHandler(rec, opts), slog.NewJSONHandler(rec, opts)})
}

type testTeeHandler []slog.Handler

func (h testTeeHandler) Enabled(ctx context.Context, l slog.Level) bool { return h[0].Enabled(ctx, l) }
func (h testTeeHandler) Handle(ctx context.Context, r slog.Record) error {
	for _, x := range h {
		if err := x.Handle(ctx, r.Clone()); err != nil {
			return err
		}
	}
	return nil
}
func (h testTeeHandler) WithAttrs(a []slog.Attr) slog.Handler {
	out := make(testTeeHandler, len(h))
	for i, x := range h {
		out[i] = x.WithAttrs(a)
	}
	return out
}
func (h testTeeHandler) WithGroup(n string) slog.Handler {
	out := make(testTeeHandler, len(h))
	for i, x := range h {
		out[i] = x.WithGroup(n)
	}
	return out
}

func TestNewClientBaseURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://gitlab.example.com", "https://gitlab.example.com/ci/api/v1/"},
		{"https://gitlab.example.com/", "https://gitlab.example.com/ci/api/v1/"},
		{"  https://gitlab.example.com/  ", "https://gitlab.example.com/ci/api/v1/"},
		{"http://gitlab.example.com", "http://gitlab.example.com/ci/api/v1/"},
		{"HTTPS://gitlab.example.com", "https://gitlab.example.com/ci/api/v1/"},
		{"https://gitlab.example.com:8443", "https://gitlab.example.com:8443/ci/api/v1/"},
		{"http://127.0.0.1:8080/", "http://127.0.0.1:8080/ci/api/v1/"},
		{"http://[::1]:8080", "http://[::1]:8080/ci/api/v1/"},
		{"https://example.com/gitlab", "https://example.com/gitlab/ci/api/v1/"},
		{"https://example.com/gitlab/", "https://example.com/gitlab/ci/api/v1/"},
		{"https://example.com/a/b/gitlab//", "https://example.com/a/b/gitlab/ci/api/v1/"},
		{"https://gitlab.example.com/ci", "https://gitlab.example.com/ci/api/v1/"},
		{"https://gitlab.example.com/ci/", "https://gitlab.example.com/ci/api/v1/"},
		{"https://gitlab.example.com/ci/api/v1", "https://gitlab.example.com/ci/api/v1/"},
		{"https://gitlab.example.com/ci/api/v1/", "https://gitlab.example.com/ci/api/v1/"},
		{"https://example.com/gitlab/ci/api/v1/", "https://example.com/gitlab/ci/api/v1/"},
		{"https://example.com/gitlab/ci", "https://example.com/gitlab/ci/api/v1/"},
		{"https://example.com/sci", "https://example.com/sci/ci/api/v1/"},
		{"https://example.com/my%20gitlab", "https://example.com/my%20gitlab/ci/api/v1/"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			c, err := NewClient(tt.in)
			require.NoError(t, err)
			assert.Equal(t, tt.want, c.BaseURL().String())

			req, err := c.NewRequest(context.Background(), http.MethodGet, "builds/1/artifacts", nil)
			require.NoError(t, err)
			assert.Equal(t, tt.want+"builds/1/artifacts", req.URL.String())
		})
	}
}

func TestNewClientRejectsBadBaseURL(t *testing.T) {
	tests := []struct{ name, in, wantErr string }{
		{"empty", "", "scheme"},
		{"no scheme", "gitlab.example.com", "scheme"},
		{"no scheme with port", "gitlab.example.com:443", "scheme"},
		{"ftp", "ftp://gitlab.example.com", "scheme"},
		{"no host", "https://", "no host"},
		{"no host with path", "https:///gitlab", "no host"},
		{"port only", "https://:8443", "no host"},
		{"query", "https://gitlab.example.com/?private_token=x", "query"},
		{"empty query", "https://gitlab.example.com/?", "query"},
		{"fragment", "https://gitlab.example.com/#top", "fragment"},
		{"userinfo", "https://root:Sup3rS3cret@gitlab.example.com", "credentials"},
		{"user only", "https://Sup3rS3cret@gitlab.example.com", "credentials"},
		{"password with a slash", "https://root:Sup3r/S3cret@gitlab.example.com", "invalid base URL"},
		{"password with a hash", "https://root:Sup3r#S3cret@gitlab.example.com", "invalid base URL"},
		{"password with a question mark", "https://root:Sup3r?S3cret@gitlab.example.com", "invalid base URL"},
		{"no scheme, credentials", "Sup3rS3cret:x@gitlab.example.com", "scheme"},
		{"control character", "https://gitlab.example.com/\x7f", "invalid base URL"},
		{"bad escape", "https://gitlab.example.com/%zz", "invalid base URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewClient(tt.in)
			require.Error(t, err)
			assert.Nil(t, c)
			assert.Contains(t, err.Error(), tt.wantErr)
			assert.Contains(t, err.Error(), "runnerapi: ")
			// The parser lowercases a scheme, so compare without case.
			assert.NotContains(t, strings.ToLower(err.Error()), "sup3r")
			assert.NotContains(t, strings.ToLower(err.Error()), "s3cret")
			assert.NotContains(t, err.Error(), "private_token")
		})
	}
}

func TestNewClientRejectsBadOptions(t *testing.T) {
	tests := map[string]Option{
		"nil http client":  WithHTTPClient(nil),
		"negative retries": WithRetryPolicy(RetryPolicy{MaxRetries: -1}),
		"negative delay":   WithRetryPolicy(RetryPolicy{BaseDelay: -1}),
		"negative timeout": WithTimeout(-time.Second),
	}
	for name, opt := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := NewClient(testBaseURL, opt)
			require.Error(t, err)
			assert.Nil(t, c)
		})
	}
}

func TestWithHTTPClientDoesNotMutateCaller(t *testing.T) {
	hc := &http.Client{Transport: httpmock.NewMockTransport(), Timeout: time.Minute}
	c, err := NewClient(testBaseURL, WithHTTPClient(hc))
	require.NoError(t, err)
	assert.Nil(t, hc.CheckRedirect, "the caller's client must not be changed")
	assert.NotSame(t, hc, c.httpClient)
	assert.NotNil(t, c.httpClient.CheckRedirect)
	assert.Equal(t, time.Minute, c.httpClient.Timeout)
}

func TestNewRequest(t *testing.T) {
	c, _ := testMockClient(t)
	ctx := context.Background()

	t.Run("absolute path rejected", func(t *testing.T) {
		_, err := c.NewRequest(ctx, http.MethodGet, "/builds/1", nil)
		assert.ErrorContains(t, err, "relative")
	})
	t.Run("form body", func(t *testing.T) {
		req, err := c.NewRequest(ctx, http.MethodPost, "builds/register", &registerForm{Token: "t",
			RegisterOptions: &RegisterOptions{Info: RunnerInfo{Name: "n"}}})
		require.NoError(t, err)
		testHeader(t, req, "Content-Type", "application/x-www-form-urlencoded")
		testHeader(t, req, "Accept", "application/json")
		testHeader(t, req, "User-Agent", DefaultUserAgent)
		assert.NotNil(t, req.GetBody, "a form body can be replayed")
		testFormValues(t, req, url.Values{"token": {"t"}, "info[name]": {"n"}})
	})
	t.Run("reader body", func(t *testing.T) {
		req, err := c.NewRequest(ctx, http.MethodPatch, "builds/1/trace.txt", strings.NewReader("abc"))
		require.NoError(t, err)
		testHeader(t, req, "Content-Type", "")
		assert.Equal(t, int64(3), req.ContentLength)
	})
	t.Run("unencodable body", func(t *testing.T) {
		_, err := c.NewRequest(ctx, http.MethodPost, "builds/register", 42)
		assert.ErrorContains(t, err, "encoding form")
	})
	t.Run("custom user agent", func(t *testing.T) {
		c, _ := testMockClient(t, WithUserAgent("gitlab-ci-multi-runner 1.11.0 (1-11-stable; go1.7; linux/amd64)"))
		req, err := c.NewRequest(ctx, http.MethodGet, "builds/1", nil)
		require.NoError(t, err)
		testHeader(t, req, "User-Agent", "gitlab-ci-multi-runner 1.11.0 (1-11-stable; go1.7; linux/amd64)")
	})
	assert.Contains(t, DefaultUserAgent, "runnerapi/"+Version)
}

// testRedirectServers starts a coordinator that redirects every request to target+path, with the given status.
func testRedirectServer(t *testing.T, status int, target func() string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/final" {
			w.Header().Set("X-Got-Token", r.Header.Get(wireV1.jobTokenHeader))
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusOK)
			return
		}
		http.Redirect(w, r, target()+"/final", status)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestRedirectKeepsBuildTokenOnOrigin(t *testing.T) {
	other := testRedirectServer(t, http.StatusFound, func() string { return "" })
	var coordinator *httptest.Server
	tests := []struct {
		name      string
		target    func() string
		wantToken string
	}{
		{"same origin", func() string { return coordinator.URL }, "BUILD-TOKEN-abc"},
		{"other host", func() string { return other.URL }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			coordinator = testRedirectServer(t, http.StatusFound, tt.target)
			tr := &http.Transport{}
			t.Cleanup(tr.CloseIdleConnections)
			c, err := NewClient(coordinator.URL, WithHTTPClient(&http.Client{Transport: tr}))
			require.NoError(t, err)
			req, err := c.NewRequest(context.Background(), http.MethodGet, "builds/1/artifacts", nil)
			require.NoError(t, err)
			req.Header.Set(wireV1.jobTokenHeader, "BUILD-TOKEN-abc")
			resp, err := c.Do(req, io.Discard)
			require.NoError(t, err)
			assert.Equal(t, tt.wantToken, resp.Header.Get("X-Got-Token"))
			assert.Equal(t, "/final", resp.Request.URL.Path, "the redirect was followed")
		})
	}
}

func TestRedirectRefusesFormBodyToOtherOrigin(t *testing.T) {
	var otherHits atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		otherHits.Add(1)
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(other.Close)
	c, _ := testServerClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/steal", http.StatusTemporaryRedirect)
	}))
	build, _, err := c.Builds.Register(context.Background(), nil)
	require.Error(t, err)
	assert.Nil(t, build)
	assert.Contains(t, err.Error(), "refusing to resend")
	assert.NotContains(t, err.Error(), testRunnerToken)
	assert.Zero(t, otherHits.Load(), "the runner token must not reach another origin")
}

// testCountingBody is an endless response body that counts what was read from it.
type testCountingBody struct {
	n    atomic.Int64
	size int64
	fill byte
	head string
}

func (b *testCountingBody) Read(p []byte) (int, error) {
	off := b.n.Load()
	if off >= b.size {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), b.size-off)]
	for i := range p {
		if pos := off + int64(i); pos < int64(len(b.head)) {
			p[i] = b.head[pos]
		} else {
			p[i] = b.fill
		}
	}
	b.n.Add(int64(len(p)))
	return len(p), nil
}

func (b *testCountingBody) Close() error { return nil }

func TestDoBoundsJSONAnswer(t *testing.T) {
	c, mock := testMockClient(t)
	// A 20 MiB JSON string: valid JSON were it complete, far beyond any build.
	body := &testCountingBody{size: 20 << 20, fill: 'a', head: `{"id":1,"name":"`}
	mock.RegisterResponder(http.MethodPost, testAPIRoot+"builds/register", func(*http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: http.StatusCreated, Body: body, Header: http.Header{}}, nil
	})
	build, _, err := c.Builds.Register(context.Background(), nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "larger than")
	assert.LessOrEqual(t, body.n.Load(), int64(maxJSONBody+64<<10), "the answer was read past the bound")
	// The 201 assigned build 1 all the same: its ID, read from the start, is handed back for the caller to fail it.
	require.NotNil(t, build)
	assert.Equal(t, Build{ID: 1}, *build)
	assert.Contains(t, err.Error(), "build 1 was assigned to this runner")
}

func TestDoDecodesAndStreams(t *testing.T) {
	c, mock := testMockClient(t)
	mock.RegisterResponder(http.MethodGet, testAPIRoot+"builds/1", httpmock.NewStringResponder(200, `{"id":1} trailing`))
	mock.RegisterResponder(http.MethodGet, testAPIRoot+"builds/2", httpmock.NewStringResponder(200, `not json`))
	ctx := context.Background()

	req, err := c.NewRequest(ctx, http.MethodGet, "builds/1", nil)
	require.NoError(t, err)
	var v struct{ ID int64 }
	_, err = c.Do(req, &v)
	require.NoError(t, err)
	assert.Equal(t, int64(1), v.ID)

	req, err = c.NewRequest(ctx, http.MethodGet, "builds/1", nil)
	require.NoError(t, err)
	var buf bytes.Buffer
	_, err = c.Do(req, &buf)
	require.NoError(t, err)
	assert.Equal(t, `{"id":1} trailing`, buf.String())

	req, err = c.NewRequest(ctx, http.MethodGet, "builds/2", nil)
	require.NoError(t, err)
	resp, err := c.Do(req, &v)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "decoding answer")
	var se *json.SyntaxError
	assert.ErrorAs(t, err, &se)
	require.NotNil(t, resp)
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, 1, mock.GetCallCountInfo()["GET "+testAPIRoot+"builds/2"], "a decode error is not retried")
}

// TestRedactionOnEveryFailurePath drives each kind of failure with a token the server echoes, and checks that
// neither the error nor any debug log record carries it.
func TestRedactionOnEveryFailurePath(t *testing.T) {
	const token = "SECRET-RUNNER-TOKEN-7b2d"
	echo := func(status int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			_ = r.ParseForm()
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_ = json.NewEncoder(w).Encode(map[string]string{"message": "token " + r.PostForm.Get("token") + " is invalid"})
		}
	}
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	tests := []struct {
		name    string
		handler http.HandlerFunc
		baseURL string // overrides the server's
		cancel  bool   // cancel the context during the backoff
		wantErr func(*testing.T, error)
	}{
		{name: "http error 403", handler: echo(403), wantErr: func(t *testing.T, err error) {
			assert.ErrorIs(t, err, ErrForbidden)
			assert.Contains(t, err.Error(), "[MASKED]")
		}},
		{name: "http error 500 on update, retried", handler: echo(500), wantErr: func(t *testing.T, err error) {
			var er *ErrorResponse
			require.ErrorAs(t, err, &er)
			assert.Equal(t, 500, er.StatusCode)
		}},
		{name: "transport error", baseURL: closedURL, wantErr: func(t *testing.T, err error) {
			var te *TransportError
			assert.ErrorAs(t, err, &te)
		}},
		{name: "decode error", handler: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, `{"id":"`+token+`"}`)
		}, wantErr: func(t *testing.T, err error) {
			assert.Contains(t, err.Error(), "decoding answer")
		}},
		{name: "syntax error next to the token", handler: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, `{"id":1,"token":"`+token+`"`+token+`}`)
		}, wantErr: func(t *testing.T, err error) {
			var se *json.SyntaxError
			assert.ErrorAs(t, err, &se)
		}},
		{name: "cancel during backoff", handler: echo(503), cancel: true, wantErr: func(t *testing.T, err error) {
			assert.ErrorIs(t, err, context.Canceled)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &testLogRecorder{}
			policy := testFastRetry
			if tt.cancel {
				policy = RetryPolicy{MaxRetries: 3, BaseDelay: time.Hour, MaxDelay: time.Hour}
			}
			var c *Client
			if tt.baseURL != "" {
				tr := &http.Transport{}
				t.Cleanup(tr.CloseIdleConnections)
				var err error
				c, err = NewClient(tt.baseURL, WithHTTPClient(&http.Client{Transport: tr}), WithRunnerToken(token),
					WithLogger(testLogger(rec)), WithRetryPolicy(policy))
				require.NoError(t, err)
			} else {
				c, _ = testServerClient(t, tt.handler, WithRunnerToken(token), WithLogger(testLogger(rec)),
					WithRetryPolicy(policy))
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancel {
				go func() {
					// Cancel once the first attempt has been logged, i.e. during the hour-long backoff.
					for !strings.Contains(rec.String(), "retrying") && ctx.Err() == nil {
						time.Sleep(time.Millisecond)
					}
					cancel()
				}()
			}
			var err error
			if strings.Contains(tt.name, "update") {
				_, err = c.Builds.Update(ctx, 1, &UpdateOptions{State: StateFailed})
			} else {
				_, _, err = c.Builds.Register(ctx, nil)
			}
			require.Error(t, err)
			tt.wantErr(t, err)
			assert.NotContains(t, err.Error(), token)
			assert.NotContains(t, err.Error(), url.QueryEscape(token))
			logs := rec.String()
			assert.Contains(t, logs, "runnerapi: request", "the attempt was logged")
			assert.NotContains(t, logs, token)
		})
	}
}

func TestRedirectDroppingTheBodyIsRefused(t *testing.T) {
	// An http:// base URL behind a server that moves everything to https:// with a 301: net/http would turn the
	// register POST into a GET without its form, which the coordinator answers 404, read as "no build" forever.
	var posts, gets atomic.Int32
	c, _ := testServerClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			posts.Add(1)
			http.Redirect(w, r, "/elsewhere"+r.URL.Path, http.StatusMovedPermanently)
			return
		}
		gets.Add(1)
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"message":"404 Not Found"}`)
	}))
	build, _, err := c.Builds.Register(context.Background(), nil)
	require.Error(t, err, "a redirected register must not look like \"no build\"")
	assert.Nil(t, build)
	assert.Contains(t, err.Error(), "redirect")
	assert.False(t, IsTransient(err), "a refused redirect will not pass by trying again")
	assert.Zero(t, gets.Load())

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err = c.Builds.Next(ctx, &NextOptions{Interval: time.Millisecond})
	require.Error(t, err)
	assert.NotErrorIs(t, err, context.DeadlineExceeded, "Next kept polling a redirect it refuses")
	assert.Equal(t, int32(2), posts.Load())
}

func TestRedirectRefusalIsNotRetried(t *testing.T) {
	var hits atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(other.Close)
	c, _ := testServerClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Redirect(w, r, other.URL+"/x", http.StatusTemporaryRedirect)
	}))
	_, err := c.Builds.Update(context.Background(), 1, &UpdateOptions{State: StateSuccess})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "refusing to resend")
	assert.Equal(t, int32(1), hits.Load())
}

func TestClientConcurrentUse(t *testing.T) {
	var (
		mu    sync.Mutex
		seen  = map[string]int{}
		total atomic.Int32
	)
	c, _ := testServerClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		total.Add(1)
		mu.Lock()
		seen[r.PostForm.Get("token")]++
		first := seen[r.PostForm.Get("token")]%2 == 1
		mu.Unlock()
		if first { // every call's first attempt fails, so each goroutine retries once
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("X-GitLab-Last-Update", r.PostForm.Get("token"))
		w.WriteHeader(http.StatusNoContent)
	}))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok := "token-" + string(rune('a'+i))
			for range 5 {
				_, resp, err := c.Builds.Register(context.Background(), nil, WithToken(tok))
				if assert.NoError(t, err) {
					assert.Equal(t, tok, resp.LastUpdate, "answers crossed between goroutines")
				}
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, int32(8*5*2), total.Load())
}

func TestRedirectLoopAndCallerCheckRedirect(t *testing.T) {
	var n atomic.Int32
	loop := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		http.Redirect(w, r, r.URL.Path, http.StatusFound)
	})
	c, _ := testServerClient(t, loop)
	req, err := c.NewRequest(context.Background(), http.MethodGet, "builds/1/artifacts", nil)
	require.NoError(t, err)
	_, err = c.Do(req, io.Discard)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "10 redirects")
	assert.False(t, IsTransient(err))
	assert.Equal(t, int32(10), n.Load(), "one attempt of ten hops, not retried")

	// The caller's own CheckRedirect still runs after the SDK's checks.
	var called atomic.Int32
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
		called.Add(1)
		return http.ErrUseLastResponse
	}}
	c2, srv := testServerClient(t, loop, WithHTTPClient(hc))
	req, err = c2.NewRequest(context.Background(), http.MethodGet, "builds/1/artifacts", nil)
	require.NoError(t, err)
	_, err = c2.Do(req, io.Discard)
	var er *ErrorResponse
	require.ErrorAs(t, err, &er, "the redirect itself is the answer")
	assert.Equal(t, http.StatusFound, er.StatusCode)
	assert.Equal(t, int32(1), called.Load())
	assert.NotEmpty(t, srv.URL)
}

// testClosingBody records whether it was closed.
type testClosingBody struct {
	io.Reader
	closed atomic.Bool
}

func (b *testClosingBody) Close() error {
	b.closed.Store(true)
	return nil
}

func TestDoClosesEveryBody(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		v      any
	}{
		{"json", 201, `{"id":1}`, new(Build)},
		{"no content", 204, "", new(Build)},
		{"discarded", 200, "true", nil},
		{"streamed", 200, "bytes", io.Discard},
		{"error answer", 403, `{"message":"403 Forbidden"}`, new(Build)},
		{"error answer streamed", 404, `{"message":"404 Not Found"}`, io.Discard},
		{"retried error answers", 503, "", nil},
		{"decode error", 200, "{", new(Build)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, mock := testMockClient(t)
			var bodies []*testClosingBody
			mock.RegisterResponder(http.MethodGet, testAPIRoot+"builds/1", func(r *http.Request) (*http.Response, error) {
				b := &testClosingBody{Reader: strings.NewReader(tt.body)}
				bodies = append(bodies, b)
				return &http.Response{StatusCode: tt.status, Body: b, Header: http.Header{}, Request: r}, nil
			})
			req, err := c.NewRequest(context.Background(), http.MethodGet, "builds/1", nil)
			require.NoError(t, err)
			_, _ = c.Do(req, tt.v)
			require.NotEmpty(t, bodies)
			for i, b := range bodies {
				assert.True(t, b.closed.Load(), "body of attempt %d left open", i+1)
			}
		})
	}
}
