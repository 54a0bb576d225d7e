package runnerapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runnerapi/runnerapi"
	"github.com/runnerapi/runnerapi/runnerapitest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// takeV4Job takes a job from srv over the wire, as gitlab-runner does, advertising cancel_gracefully.
func takeV4Job(t *testing.T, srv *runnerapitest.Server, runnerToken string) (id int64, jobToken string) {
	t.Helper()
	body := fmt.Sprintf(`{"token":%q,"info":{"features":{"cancel_gracefully":true,"trace_checksum":true}}}`, runnerToken)
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/api/v4/jobs/request", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	var job struct {
		ID    int64  `json:"id"`
		Token string `json:"token"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&job))
	return job.ID, job.Token
}

func newV4Client(t *testing.T, srv *runnerapitest.Server, opts ...runnerapi.Option) *runnerapi.Client {
	t.Helper()
	c, err := runnerapi.NewClient(srv.URL, append([]runnerapi.Option{runnerapi.WithHTTPClient(srv.Client()),
		runnerapi.WithAPI(runnerapi.APIv4)}, opts...)...)
	require.NoError(t, err)
	return c
}

// The same TraceWriter streams a v4 job's trace: PATCH jobs/:id/trace with JOB-TOKEN and an inclusive
// Content-Range END (the fake refuses any other with WithStrictContentRange), and knows the checksum of what it
// sent without reading it again.
func TestTraceWriterV4(t *testing.T) {
	srv := runnerapitest.NewServer(runnerapitest.WithStrictContentRange())
	defer srv.Close()
	srv.AddRunner("glrt-trace-v4-runner")
	buildID := srv.EnqueueCommands("trace", "true")
	id, jobToken := takeV4Job(t, srv, "glrt-trace-v4-runner")
	require.Equal(t, buildID, id)
	c := newV4Client(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w, err := c.NewTraceWriter(ctx, id, &runnerapi.TraceOptions{Token: jobToken, ChunkSize: 7, FlushInterval: time.Millisecond})
	require.NoError(t, err)
	var want strings.Builder
	for i := range 40 {
		line := fmt.Sprintf("line %d of the job's log\n", i)
		want.WriteString(line)
		_, err := io.WriteString(w, line)
		require.NoError(t, err)
	}
	require.NoError(t, w.Close())
	got := srv.Trace(id)
	assert.Equal(t, want.String(), string(got))
	out := w.Output()
	assert.Equal(t, fmt.Sprintf("crc32:%08x", crc32.ChecksumIEEE(got)), out.Checksum)
	assert.Equal(t, int64(len(got)), out.Bytesize)
	assert.Equal(t, runnerapi.StateRunning, w.Status())
	parts := 0
	for _, r := range srv.Requests() {
		if r.Endpoint == runnerapitest.EndpointJobTrace {
			parts++
			assert.Equal(t, fmt.Sprintf("/api/v4/jobs/%d/trace", id), r.Path)
			assert.False(t, r.TokenInQuery)
			assert.Equal(t, http.StatusAccepted, r.Status)
		}
	}
	assert.Greater(t, parts, 1)
}

// v4Answer is one scripted answer of a raw trace endpoint.
type v4Answer struct {
	status int
	header map[string]string
}

// rawV4TraceServer answers trace parts from answers in turn (the last one repeated), recording the requests.
func rawV4TraceServer(t *testing.T, answers ...v4Answer) (*httptest.Server, func() []*http.Request) {
	t.Helper()
	var (
		mu   sync.Mutex
		reqs []*http.Request
		n    int
		size int64
	)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		reqs = append(reqs, r)
		a := answers[min(n, len(answers)-1)]
		n++
		if a.status == http.StatusAccepted {
			size += int64(len(body))
			w.Header().Set("Range", fmt.Sprintf("0-%d", size))
		}
		for k, v := range a.header {
			w.Header().Set(k, v)
		}
		if a.status >= 400 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(a.status)
			_, _ = fmt.Fprintf(w, `{"message":"%d"}`, a.status)
			return
		}
		w.WriteHeader(a.status)
	}))
	t.Cleanup(ts.Close)
	return ts, func() []*http.Request {
		mu.Lock()
		defer mu.Unlock()
		return append([]*http.Request(nil), reqs...)
	}
}

// Job-Status: canceling, as PROTOCOL-v4 §5.3 says GitLab sends while a graceful cancel is asked, closes
// CancelRequested and not Canceled.
func TestTraceWriterV4Canceling(t *testing.T) {
	ts, reqs := rawV4TraceServer(t, v4Answer{http.StatusAccepted, map[string]string{
		"Job-Status": "canceling", "X-GitLab-Trace-Update-Interval": "3"}})
	c, err := runnerapi.NewClient(ts.URL, runnerapi.WithAPI(runnerapi.APIv4))
	require.NoError(t, err)
	w, err := c.NewTraceWriter(context.Background(), 42, &runnerapi.TraceOptions{Token: "job-token-v4-secret"})
	require.NoError(t, err)
	_, err = io.WriteString(w, "hello")
	require.NoError(t, err)
	require.NoError(t, w.Close())
	select {
	case <-w.CancelRequested():
	default:
		t.Fatal("CancelRequested not closed after Job-Status: canceling")
	}
	select {
	case <-w.Canceled():
		t.Fatal("Canceled closed by a graceful cancel")
	default:
	}
	assert.Equal(t, runnerapi.StateCanceling, w.Status())
	rs := reqs()
	require.NotEmpty(t, rs)
	r := rs[0]
	assert.Equal(t, http.MethodPatch, r.Method)
	assert.Equal(t, "/api/v4/jobs/42/trace", r.URL.Path)
	assert.Equal(t, "job-token-v4-secret", r.Header.Get("JOB-TOKEN"))
	assert.Empty(t, r.Header.Get("BUILD-TOKEN"))
	assert.Equal(t, "0-4", r.Header.Get("Content-Range"), "v4's END is inclusive")
	assert.NotContains(t, r.URL.RawQuery, "job-token-v4-secret")
}

// A 403 with Job-Status: canceled (PROTOCOL-v4 §4.2) stops the writer and closes Canceled; the error names no token.
func TestTraceWriterV4Forbidden(t *testing.T) {
	ts, _ := rawV4TraceServer(t, v4Answer{http.StatusForbidden, map[string]string{"Job-Status": "canceled"}})
	c, err := runnerapi.NewClient(ts.URL, runnerapi.WithAPI(runnerapi.APIv4))
	require.NoError(t, err)
	w, err := c.NewTraceWriter(context.Background(), 7, &runnerapi.TraceOptions{Token: "job-token-v4-secret"})
	require.NoError(t, err)
	_, _ = io.WriteString(w, "hello")
	err = w.Close()
	require.Error(t, err)
	assert.True(t, errors.Is(err, runnerapi.ErrForbidden), err)
	assert.NotContains(t, err.Error(), "job-token-v4-secret")
	select {
	case <-w.Canceled():
	default:
		t.Fatal("Canceled not closed after a 403 with Job-Status: canceled")
	}
}

// v4 has no whole-trace update: a trace endpoint that answers 404 fails the writer, with no PUT ever sent.
func TestTraceWriterV4NotFoundNoFallback(t *testing.T) {
	ts, reqs := rawV4TraceServer(t, v4Answer{http.StatusNotFound, nil})
	c, err := runnerapi.NewClient(ts.URL, runnerapi.WithAPI(runnerapi.APIv4), runnerapi.WithRunnerToken("glrt-runner-secret"),
		runnerapi.WithRetryPolicy(runnerapi.RetryPolicy{MaxRetries: 5, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
	require.NoError(t, err)
	w, err := c.NewTraceWriter(context.Background(), 7, &runnerapi.TraceOptions{Token: "job-token-v4-secret"})
	require.NoError(t, err)
	_, _ = io.WriteString(w, "hello")
	err = w.Close()
	require.Error(t, err)
	assert.True(t, errors.Is(err, runnerapi.ErrNotFound), err)
	for _, r := range reqs() {
		assert.Equal(t, http.MethodPatch, r.Method)
	}
}

// A graceful cancel made on the fake coordinator reaches the writer.
func TestTraceWriterV4CancelGracefully(t *testing.T) {
	srv := runnerapitest.NewServer()
	defer srv.Close()
	srv.AddRunner("glrt-trace-v4-runner")
	srv.EnqueueCommands("trace", "sleep 100")
	id, jobToken := takeV4Job(t, srv, "glrt-trace-v4-runner")
	require.NoError(t, srv.CancelGracefully(id))
	c := newV4Client(t, srv)
	w, err := c.NewTraceWriter(context.Background(), id, &runnerapi.TraceOptions{Token: jobToken})
	require.NoError(t, err)
	_, _ = io.WriteString(w, "running after_script\n")
	require.NoError(t, w.Close())
	select {
	case <-w.CancelRequested():
	default:
		t.Fatal("CancelRequested not closed")
	}
	assert.Equal(t, "running after_script\n", string(srv.Trace(id)))
}

// NewJobTraceWriter masks the job's token and secret variables of 8 bytes or more in the trace.
func TestNewJobTraceWriterMasksSecrets(t *testing.T) {
	srv := runnerapitest.NewServer()
	defer srv.Close()
	srv.AddRunner("glrt-trace-v4-runner")
	srv.EnqueueCommands("trace", "true")
	c := newV4Client(t, srv, runnerapi.WithRunnerToken("glrt-trace-v4-runner"))
	job, _, err := c.Jobs.Request(context.Background(), nil)
	require.NoError(t, err)
	require.NotNil(t, job)
	w, err := c.NewJobTraceWriter(context.Background(), job, nil)
	require.NoError(t, err)
	_, _ = io.WriteString(w, "token="+job.Token+"\n")
	require.NoError(t, w.Close())
	got := string(srv.Trace(job.ID))
	assert.NotContains(t, got, job.Token)
	assert.Contains(t, got, "[MASKED]")
	_, err = c.NewJobTraceWriter(context.Background(), nil, nil)
	assert.Error(t, err)
}
