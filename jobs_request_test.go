package runnerapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/runnerapi/runnerapi"
	"github.com/runnerapi/runnerapi/runnerapitest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestJobsRequestOnFake(t *testing.T) {
	srv := runnerapitest.NewServer()
	defer srv.Close()
	srv.AddRunner("glrt-request-runner")
	id := srv.EnqueueCommands("unit", "go test ./...")
	c := newV4Client(t, srv, runnerapi.WithRunnerToken("glrt-request-runner"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	opts := &runnerapi.JobRequestOptions{SystemID: "s_0123456789ab", Features: []string{"cancel_gracefully", "trace_checksum"},
		Info: runnerapi.RunnerInfo{Name: "example", Version: "1.0.0"}}
	job, resp, err := c.Jobs.Request(ctx, opts)
	require.NoError(t, err)
	require.NotNil(t, job)
	assert.Equal(t, http.StatusCreated, resp.StatusCode)
	assert.Equal(t, id, job.ID)
	assert.NotEmpty(t, job.Token)
	assert.Equal(t, "unit", job.JobInfo.Name)
	assert.Equal(t, []string{"go test ./..."}, job.Script())
	info, ok := srv.Build(id)
	require.True(t, ok)
	assert.True(t, info.Job.Taken)
	assert.Equal(t, "s_0123456789ab", info.Job.SystemID)
	assert.True(t, info.Job.CancelGracefully)

	job, resp, err = c.Jobs.Request(ctx, opts)
	require.NoError(t, err)
	assert.Nil(t, job)
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	assert.NotEmpty(t, resp.LastUpdate)
	for _, r := range srv.Requests() {
		assert.False(t, r.TokenInQuery)
	}
}

// rawRequestServer answers POST jobs/request from answers in turn (the last repeated), recording bodies.
func rawRequestServer(t *testing.T, answers ...func(w http.ResponseWriter)) (*httptest.Server, func() ([]*http.Request, []map[string]any)) {
	t.Helper()
	var (
		mu     sync.Mutex
		reqs   []*http.Request
		bodies []map[string]any
	)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var body map[string]any
		_ = json.Unmarshal(raw, &body)
		mu.Lock()
		a := answers[min(len(reqs), len(answers)-1)]
		reqs, bodies = append(reqs, r), append(bodies, body)
		mu.Unlock()
		a(w)
	}))
	t.Cleanup(ts.Close)
	return ts, func() ([]*http.Request, []map[string]any) {
		mu.Lock()
		defer mu.Unlock()
		return reqs, bodies
	}
}

func answer(status int, header map[string]string, body string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		for k, v := range header {
			w.Header().Set(k, v)
		}
		if body != "" {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// The request is gitlab-runner's (PROTOCOL-v4 §3.1): a JSON body with token, system_id, info with features as
// true, last_update from the previous 204; the runner token also in RUNNER-TOKEN, never in the URL. Next waits out
// a 409 and keeps the long-polling value.
func TestJobsNextRawRequests(t *testing.T) {
	ts, seen := rawRequestServer(t,
		answer(http.StatusNoContent, map[string]string{"X-GitLab-Last-Update": "queue-1"}, ""),
		answer(http.StatusConflict, nil, `{"message":"409 Conflict"}`),
		answer(http.StatusCreated, nil, `{"id":17,"token":"glcbt-job-token-secret","job_info":{"name":"unit"},"new_field":[1]}`))
	c, err := runnerapi.NewClient(ts.URL, runnerapi.WithAPI(runnerapi.APIv4), runnerapi.WithRunnerToken("glrt-runner-token-secret"),
		runnerapi.WithRetryPolicy(runnerapi.RetryPolicy{MaxRetries: 3, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
	require.NoError(t, err)
	job, _, err := c.Jobs.Next(context.Background(), &runnerapi.JobNextOptions{Interval: time.Millisecond,
		JobRequestOptions: runnerapi.JobRequestOptions{SystemID: "s_0123456789ab", Features: []string{"cancel_gracefully"}, Executor: "shell"}})
	require.NoError(t, err)
	require.NotNil(t, job)
	assert.Equal(t, int64(17), job.ID)
	assert.Equal(t, "glcbt-job-token-secret", job.Token)
	assert.Contains(t, job.Extra, "new_field")
	reqs, bodies := seen()
	require.Len(t, reqs, 3)
	for i, r := range reqs {
		assert.Equal(t, http.MethodPost, r.Method)
		assert.Equal(t, "/api/v4/jobs/request", r.URL.Path)
		assert.Empty(t, r.URL.RawQuery)
		assert.Equal(t, "application/json", r.Header.Get("Content-Type"))
		assert.Equal(t, "glrt-runner-token-secret", r.Header.Get("RUNNER-TOKEN"))
		assert.Equal(t, "glrt-runner-token-secret", bodies[i]["token"])
		assert.Equal(t, "s_0123456789ab", bodies[i]["system_id"])
		assert.Equal(t, map[string]any{"executor": "shell", "features": map[string]any{"cancel_gracefully": true}}, bodies[i]["info"])
	}
	assert.NotContains(t, bodies[0], "last_update")
	assert.Equal(t, "queue-1", bodies[1]["last_update"])
	assert.Equal(t, "queue-1", bodies[2]["last_update"])
}

func TestJobsRequestAnswers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer func(http.ResponseWriter)
		is     error
	}{
		{"409", answer(http.StatusConflict, nil, `{"message":"409 Conflict"}`), runnerapi.ErrConflict},
		{"403", answer(http.StatusForbidden, nil, `{"message":"403 Forbidden"}`), runnerapi.ErrForbidden},
		{"404", answer(http.StatusNotFound, nil, `<html>no</html>`), runnerapi.ErrNotCoordinator},
	} {
		ts, _ := rawRequestServer(t, tc.answer)
		c, err := runnerapi.NewClient(ts.URL, runnerapi.WithAPI(runnerapi.APIv4), runnerapi.WithRunnerToken("glrt-runner-token-secret"),
			runnerapi.WithoutRetries())
		require.NoError(t, err)
		job, _, err := c.Jobs.Request(context.Background(), nil)
		assert.Nil(t, job, tc.name)
		assert.True(t, errors.Is(err, tc.is), "%s: %v", tc.name, err)
		assert.NotContains(t, err.Error(), "glrt-runner-token-secret")
	}
	// A job cut short is handed back by its ID with the error, to be reported failed; a 201 without a job is an
	// error. Neither error names a token.
	for body, wantID := range map[string]int64{`{"id":7,"token":"glcbt-job-token-secret","steps":[{"name":`: 7, `{}`: 0} {
		ts, _ := rawRequestServer(t, answer(http.StatusCreated, nil, body))
		c, err := runnerapi.NewClient(ts.URL, runnerapi.WithAPI(runnerapi.APIv4), runnerapi.WithRunnerToken("glrt-runner-token-secret"))
		require.NoError(t, err)
		job, _, err := c.Jobs.Request(context.Background(), nil)
		require.Error(t, err, body)
		if wantID == 0 {
			assert.Nil(t, job)
		} else if assert.NotNil(t, job, body) {
			assert.Equal(t, wantID, job.ID)
		}
		assert.NotContains(t, err.Error(), "glcbt-job-token-secret")
	}
	ts, _ := rawRequestServer(t, answer(http.StatusNoContent, nil, ""))
	// A v1 client has no Jobs.Request.
	v1, err := runnerapi.NewClient(ts.URL, runnerapi.WithRunnerToken("t"))
	require.NoError(t, err)
	_, _, err = v1.Jobs.Request(context.Background(), nil)
	assert.True(t, errors.Is(err, runnerapi.ErrNotInAPI))
}

// A job assigned while the caller's context ends is not stranded (the register grace, shared with v1).
func TestJobsRequestNotStranded(t *testing.T) {
	arrived, release := make(chan struct{}), make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		close(arrived)
		<-release
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"id":9,"token":"glcbt-job-token-secret"}`)
	}))
	defer ts.Close()
	c, err := runnerapi.NewClient(ts.URL, runnerapi.WithAPI(runnerapi.APIv4), runnerapi.WithRunnerToken("glrt-runner-token-secret"))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-arrived
		cancel()
		close(release)
	}()
	job, _, err := c.Jobs.Request(ctx, nil)
	require.NoError(t, err)
	require.NotNil(t, job)
	assert.Equal(t, int64(9), job.ID)
}

// A v4 client takes and reports jobs through Jobs: the v1 calls say so before sending anything.
func TestBuildsOnV4Client(t *testing.T) {
	c, err := runnerapi.NewClient("http://127.0.0.1:1", runnerapi.WithAPI(runnerapi.APIv4), runnerapi.WithRunnerToken("t"))
	require.NoError(t, err)
	_, _, err = c.Builds.Register(context.Background(), nil)
	assert.True(t, errors.Is(err, runnerapi.ErrNotInAPI), err)
	_, _, err = c.Builds.Next(context.Background(), nil)
	assert.True(t, errors.Is(err, runnerapi.ErrNotInAPI), err)
	_, err = c.Builds.Update(context.Background(), 1, &runnerapi.UpdateOptions{State: runnerapi.StateSuccess})
	assert.True(t, errors.Is(err, runnerapi.ErrNotInAPI), err)
}
