package runnerapitest_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/runnerapi/runnerapi"
	"github.com/runnerapi/runnerapi/runnerapitest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	fakeRunnerToken = "runner-secret-1"
	fakeOtherToken  = "runner-secret-2"
	fakeMultiUA     = "gitlab-ci-multi-runner 1.11.2 (1-11-stable; go1.7.5; linux/amd64)"
	fakeAPI         = "/ci/api/v1/builds"
)

// fakeEnv is a started server with one runner, and an HTTP client that keeps no idle connections, so a dropped
// connection is never retried behind the test's back.
type fakeEnv struct {
	t   *testing.T
	srv *runnerapitest.Server
	hc  *http.Client
}

func newFakeEnv(t *testing.T, opts ...runnerapitest.Option) *fakeEnv {
	t.Helper()
	srv := runnerapitest.NewServer(opts...)
	t.Cleanup(srv.Close)
	srv.AddRunner(fakeRunnerToken)
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &fakeEnv{t: t, srv: srv, hc: &http.Client{Transport: tr}}
}

// do sends a request and returns the answer with its body read.
func (e *fakeEnv) do(method, path string, header http.Header, body io.Reader) (*http.Response, string) {
	e.t.Helper()
	resp, err := e.send(method, path, header, body)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	return resp, string(data)
}

// send sends a request and returns the answer unread, or the transport's error.
func (e *fakeEnv) send(method, path string, header http.Header, body io.Reader) (*http.Response, error) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, body)
	require.NoError(e.t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	return e.hc.Do(req)
}

func formHeader(ua string) http.Header {
	h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	if ua != "" {
		h.Set("User-Agent", ua)
	}
	return h
}

// register posts builds/register with the runner token and extra form values.
func (e *fakeEnv) register(token, ua string, extra url.Values) (*http.Response, string) {
	e.t.Helper()
	v := url.Values{}
	for k, vs := range extra {
		v[k] = vs
	}
	if token != "" {
		v.Set("token", token)
	}
	return e.do(http.MethodPost, fakeAPI+"/register", formHeader(ua), strings.NewReader(v.Encode()))
}

// take registers and requires a build.
func (e *fakeEnv) take(token string) runnerapi.Build {
	e.t.Helper()
	resp, body := e.register(token, fakeMultiUA, nil)
	require.Equal(e.t, http.StatusCreated, resp.StatusCode, body)
	var b runnerapi.Build
	require.NoError(e.t, json.Unmarshal([]byte(body), &b))
	return b
}

// update puts a build's state, and its trace when trace is not nil.
func (e *fakeEnv) update(id int64, token, state string, trace *string) (*http.Response, string) {
	e.t.Helper()
	v := url.Values{"token": {token}, "state": {state}}
	if trace != nil {
		v.Set("trace", *trace)
	}
	return e.do(http.MethodPut, fmt.Sprintf("%s/%d", fakeAPI, id), formHeader(""), strings.NewReader(v.Encode()))
}

// patch appends part to a build's trace with the given Content-Range ("" for none).
func (e *fakeEnv) patch(id int64, token, contentRange, part string) (*http.Response, string) {
	e.t.Helper()
	h := http.Header{"Build-Token": {token}}
	if contentRange != "" {
		h.Set("Content-Range", contentRange)
	}
	return e.do(http.MethodPatch, fmt.Sprintf("%s/%d/trace.txt", fakeAPI, id), h, strings.NewReader(part))
}

// multipartBody returns a multipart form with fields and, when filename is not empty, a part "file".
func multipartBody(t *testing.T, fields map[string]string, filename string, content []byte) (string, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		require.NoError(t, mw.WriteField(k, v))
	}
	if filename != "" {
		fw, err := mw.CreateFormFile("file", filename)
		require.NoError(t, err)
		_, err = fw.Write(content)
		require.NoError(t, err)
	}
	require.NoError(t, mw.Close())
	return mw.FormDataContentType(), &buf
}

// upload posts an artifacts file with the build token in the header; query is appended to the URL.
func (e *fakeEnv) upload(id int64, token, query, filename string, content []byte) (*http.Response, string) {
	e.t.Helper()
	ct, body := multipartBody(e.t, nil, filename, content)
	h := http.Header{"Content-Type": {ct}}
	if token != "" {
		h.Set("BUILD-TOKEN", token)
	}
	return e.do(http.MethodPost, fmt.Sprintf("%s/%d/artifacts%s", fakeAPI, id, query), h, body)
}

func (e *fakeEnv) artifactsPath(id int64) string {
	return fmt.Sprintf("%s/%d/artifacts", fakeAPI, id)
}

func tokenHeader(token string) http.Header {
	return http.Header{"BUILD-TOKEN": {token}}
}

func ptr[T any](v T) *T { return &v }

// fakeLockedWriter serialises writes of concurrent handlers to one writer.
type fakeLockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l fakeLockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func slogHandlerTo(w io.Writer, mu *sync.Mutex) *slog.Logger {
	return slog.New(slog.NewTextHandler(fakeLockedWriter{w, mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
