package runnerapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

// A job's trace and final update end-to-end on the fake v4 coordinator: the final update is held with 202 twice
// and resent, with the same state and checksum, until the coordinator finishes the job.
func TestJobsUpdateFinal(t *testing.T) {
	srv := runnerapitest.NewServer(runnerapitest.WithFinalUpdateHolds(2), runnerapitest.WithFinalUpdateInterval(1))
	defer srv.Close()
	srv.AddRunner("glrt-update-runner")
	srv.EnqueueCommands("update", "false")
	id, jobToken := takeV4Job(t, srv, "glrt-update-runner")
	c := newV4Client(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w, err := c.NewTraceWriter(ctx, id, &runnerapi.TraceOptions{Token: jobToken})
	require.NoError(t, err)
	_, _ = io.WriteString(w, "$ false\nERROR: Job failed: exit code 1\n")
	require.NoError(t, w.Close())

	status, resp, err := c.Jobs.Update(ctx, id, &runnerapi.JobUpdateOptions{State: runnerapi.StateFailed,
		FailureReason: "script_failure", ExitCode: 1, Output: w.Output()}, runnerapi.WithToken(jobToken))
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, runnerapi.StateFailed, status)
	state, err := srv.WaitFinished(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, runnerapi.StateFailed, state)
	info, ok := srv.Build(id)
	require.True(t, ok)
	assert.Equal(t, 2, info.Job.FinalUpdateRetries)
	assert.Equal(t, w.Output().Checksum, info.Job.Checksum)
	assert.False(t, info.Job.ChecksumMismatch)
	assert.Equal(t, "script_failure", info.Job.FailureReason)
	assert.Equal(t, int64(1), info.Job.ExitCode)
	puts := 0
	for _, r := range srv.Requests() {
		if r.Endpoint == runnerapitest.EndpointJobUpdate {
			puts++
			assert.False(t, r.TokenInQuery)
		}
	}
	assert.Equal(t, 3, puts)
}

// rawJobServer answers PUT jobs/:id from answers in turn, recording each request and its body.
func rawJobServer(t *testing.T, answers ...v4Answer) (*httptest.Server, func() ([]*http.Request, [][]byte)) {
	t.Helper()
	var (
		mu     sync.Mutex
		reqs   []*http.Request
		bodies [][]byte
	)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		a := answers[min(len(reqs), len(answers)-1)]
		reqs, bodies = append(reqs, r), append(bodies, body)
		mu.Unlock()
		for k, v := range a.header {
			w.Header().Set(k, v)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(a.status)
		if a.status == http.StatusForbidden {
			_, _ = io.WriteString(w, `{"message":"403 Forbidden - Job is not processing on runner"}`)
			return
		}
		_, _ = fmt.Fprint(w, a.status)
	}))
	t.Cleanup(ts.Close)
	return ts, func() ([]*http.Request, [][]byte) {
		mu.Lock()
		defer mu.Unlock()
		return reqs, bodies
	}
}

// The request is gitlab-runner's (PROTOCOL-v4 §4.1): the job token as the required token parameter and in
// JOB-TOKEN, a JSON body with output always present; a 202 is resent byte for byte.
func TestJobsUpdateRawRequest(t *testing.T) {
	ts, seen := rawJobServer(t,
		v4Answer{http.StatusAccepted, map[string]string{"Job-Status": "running", "X-GitLab-Trace-Update-Interval": "1"}},
		v4Answer{http.StatusOK, map[string]string{"Job-Status": "success"}})
	c, err := runnerapi.NewClient(ts.URL+"/ci", runnerapi.WithAPI(runnerapi.APIv4), runnerapi.WithBuildToken("glcbt-job-token-secret"))
	require.NoError(t, err)
	out := runnerapi.TraceOutput{Checksum: "crc32:0000abcd", Bytesize: 12}
	status, _, err := c.Jobs.Update(context.Background(), 5, &runnerapi.JobUpdateOptions{State: runnerapi.StateSuccess, Output: out})
	require.NoError(t, err)
	assert.Equal(t, runnerapi.StateSuccess, status)
	reqs, bodies := seen()
	require.Len(t, reqs, 2)
	for i, r := range reqs {
		assert.Equal(t, http.MethodPut, r.Method)
		assert.Equal(t, "/api/v4/jobs/5", r.URL.Path)
		assert.Empty(t, r.URL.RawQuery)
		assert.Equal(t, "application/json", r.Header.Get("Content-Type"))
		assert.Equal(t, "glcbt-job-token-secret", r.Header.Get("JOB-TOKEN"))
		var got map[string]any
		require.NoError(t, json.Unmarshal(bodies[i], &got))
		assert.Equal(t, map[string]any{"token": "glcbt-job-token-secret", "state": "success",
			"output": map[string]any{"checksum": "crc32:0000abcd", "bytesize": float64(12)}}, got)
	}
	assert.Equal(t, bodies[0], bodies[1], "a held update is resent as it was")
}

// A 403 with Job-Status stops at once, matching ErrForbidden, with the status; Job-Status: canceled on a 202 stops
// too, the job being over.
func TestJobsUpdateStops(t *testing.T) {
	ts, seen := rawJobServer(t, v4Answer{http.StatusForbidden, map[string]string{"Job-Status": "canceled"}})
	c, err := runnerapi.NewClient(ts.URL, runnerapi.WithAPI(runnerapi.APIv4))
	require.NoError(t, err)
	status, _, err := c.Jobs.Update(context.Background(), 5, &runnerapi.JobUpdateOptions{State: runnerapi.StateRunning},
		runnerapi.WithToken("glcbt-job-token-secret"))
	require.Error(t, err)
	assert.True(t, errors.Is(err, runnerapi.ErrForbidden))
	assert.Equal(t, runnerapi.StateCanceled, status)
	assert.NotContains(t, err.Error(), "glcbt-job-token-secret")
	reqs, _ := seen()
	assert.Len(t, reqs, 1)

	ts2, seen2 := rawJobServer(t, v4Answer{http.StatusAccepted, map[string]string{"Job-Status": "canceled", "X-GitLab-Trace-Update-Interval": "1"}})
	c2, err := runnerapi.NewClient(ts2.URL, runnerapi.WithAPI(runnerapi.APIv4))
	require.NoError(t, err)
	status, _, err = c2.Jobs.Update(context.Background(), 5, &runnerapi.JobUpdateOptions{State: runnerapi.StateSuccess},
		runnerapi.WithToken("glcbt-job-token-secret"))
	require.NoError(t, err)
	assert.Equal(t, runnerapi.StateCanceled, status)
	reqs, _ = seen2()
	assert.Len(t, reqs, 1)
}

func TestJobsUpdateRefusals(t *testing.T) {
	v1, err := runnerapi.NewClient("https://gitlab.example.com", runnerapi.WithBuildToken("t"))
	require.NoError(t, err)
	_, _, err = v1.Jobs.Update(context.Background(), 1, &runnerapi.JobUpdateOptions{State: runnerapi.StateSuccess})
	assert.True(t, errors.Is(err, runnerapi.ErrNotInAPI), err)
	v4, err := runnerapi.NewClient("https://gitlab.example.com", runnerapi.WithAPI(runnerapi.APIv4), runnerapi.WithBuildToken("t"))
	require.NoError(t, err)
	for _, st := range []runnerapi.BuildState{"", runnerapi.StateCanceled, runnerapi.StatePending, runnerapi.StateCanceling} {
		_, _, err = v4.Jobs.Update(context.Background(), 1, &runnerapi.JobUpdateOptions{State: st})
		assert.Error(t, err, st)
	}
	_, _, err = v4.Jobs.Update(context.Background(), 1, nil)
	assert.Error(t, err)
}
