package runnerapitest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/runnerapi/runnerapi"
	"github.com/runnerapi/runnerapi/runnerapitest"
)

var lastUpdateRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestRegisterRefusesBadToken(t *testing.T) {
	e := newFakeEnv(t)
	e.srv.Enqueue(runnerapi.Build{})
	for _, token := range []string{"", "not-a-runner"} {
		resp, body := e.register(token, fakeMultiUA, nil)
		assert.Equal(t, http.StatusForbidden, resp.StatusCode)
		assert.Equal(t, `{"message":"403 Forbidden"}`, body)
		assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	}
	info, ok := e.srv.Build(1)
	require.True(t, ok)
	assert.Equal(t, runnerapi.StatePending, info.State, "a refused register takes no build")
}

func TestRegisterNoBuildStatusByUserAgent(t *testing.T) {
	cases := []struct {
		name   string
		ua     string
		opts   []runnerapitest.Option
		status int
	}{
		{"multi-runner", fakeMultiUA, nil, http.StatusNoContent},
		{"gitlab-multi-runner", "gitlab-multi-runner 1.2.3 (x; go1.6; linux/amd64)", nil, http.StatusNotFound},
		{"release candidate", "gitlab-ci-multi-runner 1.11.0-rc1 (x)", nil, http.StatusNotFound},
		{"behind a prefix", "proxy/1.0 gitlab-ci-multi-runner 1.11.0 (x)", nil, http.StatusNoContent},
		{"no trailing space", "gitlab-ci-multi-runner 1.11.0", nil, http.StatusNotFound},
		{"beta multi-runner", "gitlab-ci-multi-runner 9.5.0~beta.36.g1f8a3d4 (x)", nil, http.StatusNoContent},
		{"other client", "runnerapi/0.1.0", nil, http.StatusNotFound},
		{"later runner name", "gitlab-runner 10.0.0 (10-0-stable; go1.8.3; linux/amd64)", nil, http.StatusNotFound},
		{"no version", "gitlab-ci-multi-runner", nil, http.StatusNotFound},
		{"forced 204", "runnerapi/0.1.0", []runnerapitest.Option{runnerapitest.WithNoBuildStatus(204)}, http.StatusNoContent},
		{"forced 404", fakeMultiUA, []runnerapitest.Option{runnerapitest.WithNoBuildStatus(404)}, http.StatusNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newFakeEnv(t, tc.opts...)
			resp, body := e.register(fakeRunnerToken, tc.ua, nil)
			assert.Equal(t, tc.status, resp.StatusCode)
			assert.Regexp(t, lastUpdateRE, resp.Header.Get("X-GitLab-Last-Update"))
			if tc.status == http.StatusNoContent {
				assert.Empty(t, body)
			} else {
				assert.Equal(t, `{"message":"404 Not Found"}`, body)
			}
		})
	}
}

func TestRegisterHandsOutOldestBuildRunningAndAssigned(t *testing.T) {
	e := newFakeEnv(t)
	first := e.srv.Enqueue(runnerapi.Build{Name: "compile", Commands: "make"})
	second := e.srv.EnqueueCommands("test", "make test", "make lint")
	assert.Equal(t, first+1, second)

	resp, body := e.register(fakeRunnerToken, fakeMultiUA, nil)
	require.Equal(t, http.StatusCreated, resp.StatusCode, body)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	var raw map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &raw))
	assert.Equal(t, "running", raw["status"])
	assert.Equal(t, []any{}, raw["variables"], "lists are sent empty, not null")
	assert.Equal(t, []any{}, raw["depends_on_builds"])
	var b runnerapi.Build
	require.NoError(t, json.Unmarshal([]byte(body), &b))
	assert.Equal(t, first, b.ID)
	assert.Equal(t, "compile", b.Name)
	assert.Equal(t, "make", b.Commands)
	assert.Len(t, b.Token, 20, "a build token is filled in")
	assert.Len(t, b.SHA, 40)
	assert.Equal(t, int64(3600), b.Timeout)

	info, ok := e.srv.Build(first)
	require.True(t, ok)
	assert.Equal(t, runnerapi.StateRunning, info.State)
	runner, ok := e.srv.Runner(fakeRunnerToken)
	require.True(t, ok)
	assert.Equal(t, runner.ID, info.RunnerID)
	assert.False(t, runner.LastContact.IsZero())
	assert.Equal(t, b.Token, info.Build.Token)

	b2 := e.take(fakeRunnerToken)
	assert.Equal(t, second, b2.ID)
	assert.Equal(t, "make test\nmake lint", b2.Commands)
	assert.NotEqual(t, b.Token, b2.Token)

	resp, _ = e.register(fakeRunnerToken, fakeMultiUA, nil)
	assert.Equal(t, http.StatusNoContent, resp.StatusCode, "the queue is empty")
}

func TestRegisterTakesJSONBodyAndRunnerInfo(t *testing.T) {
	e := newFakeEnv(t)
	id := e.srv.Enqueue(runnerapi.Build{})
	body := `{"token":"` + fakeRunnerToken + `","info":{"name":"r1","version":"1.2.3","platform":"linux","architecture":"amd64","revision":"abc"}}`
	resp, out := e.do(http.MethodPost, fakeAPI+"/register", http.Header{"Content-Type": {"application/json"}}, strings.NewReader(body))
	require.Equal(t, http.StatusCreated, resp.StatusCode, out)
	assert.Contains(t, out, fmt.Sprintf(`"id":%d`, id))
	r, ok := e.srv.Runner(fakeRunnerToken)
	require.True(t, ok)
	assert.Equal(t, runnerapi.RunnerInfo{Name: "r1", Version: "1.2.3", Revision: "abc", Platform: "linux", Architecture: "amd64"}, r.Info)

	resp, out = e.do(http.MethodPost, fakeAPI+"/register", http.Header{"Content-Type": {"application/json"}}, strings.NewReader(`{"token":`))
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "malformed JSON")
	assert.Equal(t, `{"message":"400 Bad Request"}`, out)
}

func TestRegisterPausedRunnerGets404(t *testing.T) {
	e := newFakeEnv(t)
	e.srv.AddRunner(fakeOtherToken, runnerapitest.RunnerPaused())
	id := e.srv.Enqueue(runnerapi.Build{})

	resp, body := e.register(fakeOtherToken, fakeMultiUA, nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, "404 even for a multi-runner user agent")
	assert.Equal(t, `{"message":"404 Not Found"}`, body)
	assert.Empty(t, resp.Header.Get("X-GitLab-Last-Update"))
	info, _ := e.srv.Build(id)
	assert.Equal(t, runnerapi.StatePending, info.State)

	require.NoError(t, e.srv.ResumeRunner(fakeOtherToken))
	assert.Equal(t, id, e.take(fakeOtherToken).ID)

	require.NoError(t, e.srv.PauseRunner(fakeRunnerToken))
	r, _ := e.srv.Runner(fakeRunnerToken)
	assert.True(t, r.Paused)
	resp, _ = e.register(fakeRunnerToken, fakeMultiUA, nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	assert.Error(t, e.srv.PauseRunner("nobody"))
}

func TestRegisterLongPolling(t *testing.T) {
	e := newFakeEnv(t)
	resp, _ := e.register(fakeRunnerToken, fakeMultiUA, nil)
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	v1 := resp.Header.Get("X-GitLab-Last-Update")
	require.Regexp(t, lastUpdateRE, v1)

	// Unchanged: answered at once with the same value.
	resp, _ = e.register(fakeRunnerToken, fakeMultiUA, url.Values{"last_update": {v1}})
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	assert.Equal(t, v1, resp.Header.Get("X-GitLab-Last-Update"))
	// A value the coordinator never sent makes it search; the queue's value is still v1.
	resp, _ = e.register(fakeRunnerToken, fakeMultiUA, url.Values{"last_update": {"0123456789abcdef0123456789abcdef"}})
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	assert.Equal(t, v1, resp.Header.Get("X-GitLab-Last-Update"))

	// A new build changes the value, so the runner that sends v1 back gets it.
	id := e.srv.Enqueue(runnerapi.Build{})
	resp, body := e.register(fakeRunnerToken, fakeMultiUA, url.Values{"last_update": {v1}})
	require.Equal(t, http.StatusCreated, resp.StatusCode, body)
	assert.Empty(t, resp.Header.Get("X-GitLab-Last-Update"), "only no-build answers carry it")
	assert.Contains(t, body, fmt.Sprintf(`"id":%d`, id))

	resp, _ = e.register(fakeRunnerToken, fakeMultiUA, url.Values{"last_update": {v1}})
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	v2 := resp.Header.Get("X-GitLab-Last-Update")
	assert.Regexp(t, lastUpdateRE, v2)
	assert.NotEqual(t, v1, v2)
}

func TestUpdate(t *testing.T) {
	e := newFakeEnv(t)
	e.srv.AddRunner(fakeOtherToken)
	id := e.srv.Enqueue(runnerapi.Build{})
	b := e.take(fakeRunnerToken)
	require.Equal(t, id, b.ID)

	resp, body := e.update(id, "not-a-runner", "success", nil)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	assert.Equal(t, `{"message":"403 Forbidden"}`, body)
	resp, body = e.update(id, fakeOtherToken, "success", nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, "another runner's build")
	assert.Equal(t, `{"message":"404 Not Found"}`, body)
	resp, _ = e.update(id+100, fakeRunnerToken, "success", nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, "unknown build")
	resp, body = e.do(http.MethodPut, fakeAPI+"/abc", formHeader(""), strings.NewReader("token="+fakeRunnerToken))
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, "not a build ID")
	assert.Equal(t, `{"message":"404 Not Found"}`, body)
	info, _ := e.srv.Build(id)
	assert.Equal(t, runnerapi.StateRunning, info.State, "refused updates change nothing")

	resp, body = e.update(id, fakeRunnerToken, "running", ptr("whole trace\n"))
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "null", body)
	assert.Equal(t, "whole trace\n", string(e.srv.Trace(id)))
	resp, _ = e.update(id, fakeRunnerToken, "running", ptr("replaced"))
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "replaced", string(e.srv.Trace(id)), "trace replaces, not appends")
	info, _ = e.srv.Build(id)
	assert.Equal(t, runnerapi.StateRunning, info.State)

	resp, body = e.update(id, fakeRunnerToken, "success", nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "true", body)
	assert.Equal(t, "replaced", string(e.srv.Trace(id)), "no trace parameter keeps the trace")
	info, _ = e.srv.Build(id)
	assert.Equal(t, runnerapi.StateSuccess, info.State)
	assert.Equal(t, 3, info.Updates)

	resp, body = e.update(id, fakeRunnerToken, "failed", nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, "a finished build is not running any more")
	assert.Equal(t, `{"message":"404 Not Found"}`, body)
	info, _ = e.srv.Build(id)
	assert.Equal(t, runnerapi.StateSuccess, info.State)
}

func TestUpdateFailedCanceledErasedAndJSON(t *testing.T) {
	e := newFakeEnv(t)
	failed := e.srv.Enqueue(runnerapi.Build{})
	canceled := e.srv.Enqueue(runnerapi.Build{})
	erased := e.srv.Enqueue(runnerapi.Build{})
	for range 3 {
		e.take(fakeRunnerToken)
	}

	body := `{"token":"` + fakeRunnerToken + `","state":"failed","trace":"boom\n"}`
	resp, out := e.do(http.MethodPut, fmt.Sprintf("%s/%d", fakeAPI, failed), http.Header{"Content-Type": {"application/json"}}, strings.NewReader(body))
	assert.Equal(t, http.StatusOK, resp.StatusCode, out)
	info, _ := e.srv.Build(failed)
	assert.Equal(t, runnerapi.StateFailed, info.State)
	assert.Equal(t, "boom\n", string(e.srv.Trace(failed)))

	require.NoError(t, e.srv.Cancel(canceled))
	resp, out = e.update(canceled, fakeRunnerToken, "success", nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	assert.Equal(t, `{"message":"404 Not Found"}`, out)
	info, _ = e.srv.Build(canceled)
	assert.Equal(t, runnerapi.StateCanceled, info.State)
	assert.Error(t, e.srv.Cancel(canceled), "already finished")
	assert.Error(t, e.srv.Cancel(999), "unknown")

	// GitLab erases only finished builds, and update finds only running ones: an erased build is not found.
	assert.Error(t, e.srv.Erase(erased), "a running build cannot be erased")
	resp, out = e.update(erased, fakeRunnerToken, "success", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, out)
	require.NoError(t, e.srv.Erase(erased))
	resp, out = e.update(erased, fakeRunnerToken, "success", nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	assert.Equal(t, `{"message":"404 Not Found"}`, out)
	info, _ = e.srv.Build(erased)
	assert.True(t, info.Erased)
}

func TestTrace(t *testing.T) {
	e := newFakeEnv(t)
	id := e.srv.Enqueue(runnerapi.Build{ProjectID: 7})
	b := e.take(fakeRunnerToken)
	path := fmt.Sprintf("%s/%d/trace.txt", fakeAPI, id)

	resp, body := e.patch(id, b.Token, "", "x")
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	assert.Equal(t, `{"error":"400 Missing header Content-Range"}`, body)
	for _, cr := range []string{"bytes 0-1/1", "0-", "-1", "0 - 1", "a-b", "0-1,2-3"} {
		resp, body = e.patch(id, b.Token, cr, "x")
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, cr)
		assert.Equal(t, `{"error":"400 Invalid header Content-Range"}`, body, cr)
	}

	resp, body = e.patch(id, b.Token, "0-21", "Running git clone...\n")
	assert.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	assert.Equal(t, "0-21", resp.Header.Get("Range"))
	assert.Equal(t, "running", resp.Header.Get("Build-Status"))
	assert.Empty(t, body)

	// A part that does not start where the trace ends is refused with the length, and nothing is written.
	for _, cr := range []string{"0-21", "5-26", "22-30", "99999999999999999999-99999999999999999999"} {
		resp, body = e.patch(id, b.Token, cr, "Running git clone...\n")
		assert.Equal(t, http.StatusRequestedRangeNotSatisfiable, resp.StatusCode, cr)
		assert.Equal(t, "0-21", resp.Header.Get("Range"), cr)
		assert.Equal(t, `{"error":"416 Range Not Satisfiable"}`, body, cr)
		assert.Empty(t, resp.Header.Values("Build-Status"), "GitLab's 416 carries Range only: %s", cr)
	}
	// Only START is read: END may be anything.
	resp, _ = e.patch(id, b.Token, "21-0", "ok\n")
	assert.Equal(t, http.StatusAccepted, resp.StatusCode)
	assert.Equal(t, "0-24", resp.Header.Get("Range"))
	// An empty part at the end is a keep-alive.
	resp, _ = e.patch(id, b.Token, "24-24", "")
	assert.Equal(t, http.StatusAccepted, resp.StatusCode)
	assert.Equal(t, "0-24", resp.Header.Get("Range"))
	assert.Equal(t, "running", resp.Header.Get("Build-Status"))

	// Tokens: a bad one, none, the parameter winning over the header either way, the project's runners token.
	resp, body = e.patch(id, "wrong", "24-24", "")
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	assert.Equal(t, `{"message":"403 Forbidden"}`, body)
	resp, _ = e.do(http.MethodPatch, path, http.Header{"Content-Range": {"24-24"}}, nil)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	resp, _ = e.do(http.MethodPatch, path+"?token="+b.Token, http.Header{"Content-Range": {"24-24"}, "BUILD-TOKEN": {"wrong"}}, nil)
	assert.Equal(t, http.StatusAccepted, resp.StatusCode)
	resp, _ = e.do(http.MethodPatch, path+"?token=wrong", http.Header{"Content-Range": {"24-24"}, "BUILD-TOKEN": {b.Token}}, nil)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	resp, _ = e.patch(id, "project-7-runners", "24-24", "")
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	e.srv.SetProjectRunnersToken(7, "project-7-runners")
	resp, _ = e.patch(id, "project-7-runners", "24-24", "")
	assert.Equal(t, http.StatusAccepted, resp.StatusCode)
	e.srv.SetProjectRunnersToken(7, "")
	resp, _ = e.patch(id, "project-7-runners", "24-24", "")
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)

	resp, body = e.patch(id+1, b.Token, "0-1", "x")
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	assert.Equal(t, `{"message":"404 Not Found"}`, body)

	// Canceled: parts are still accepted, and the answer says so.
	require.NoError(t, e.srv.Cancel(id))
	resp, _ = e.patch(id, b.Token, "24-24", "")
	assert.Equal(t, http.StatusAccepted, resp.StatusCode)
	assert.Equal(t, "canceled", resp.Header.Get("Build-Status"))
	resp, _ = e.patch(id, b.Token, "0-9", "canceled\n")
	assert.Equal(t, http.StatusRequestedRangeNotSatisfiable, resp.StatusCode)
	assert.Empty(t, resp.Header.Values("Build-Status"), "a part out of step learns nothing of the cancel, as on GitLab")
	resp, _ = e.patch(id, b.Token, "24-33", "canceled\n")
	assert.Equal(t, http.StatusAccepted, resp.StatusCode)
	assert.Equal(t, "0-33", resp.Header.Get("Range"))
	assert.Equal(t, "Running git clone...\nok\ncanceled\n", string(e.srv.Trace(id)))
	info, _ := e.srv.Build(id)
	assert.Equal(t, int64(33), info.TraceSize)

	require.NoError(t, e.srv.Erase(id))
	resp, body = e.patch(id, b.Token, "0-1", "x")
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	assert.Equal(t, `{"message":"403 Forbidden  - Build has been erased!"}`, body)
	assert.Empty(t, e.srv.Trace(id))
}

func TestUnknownPathIs404(t *testing.T) {
	// The CI API has no catch-all: Grape cascades to Rails, whose 404 is an HTML page. GitLab's /api catch-all
	// answers {"error":"404 Not Found"}. Neither is the API's own {"message":"404 Not Found"}.
	e := newFakeEnv(t)
	for _, p := range []string{"/ci/api/v1/runners", fakeAPI + "/1/trace", fakeAPI + "/register.xml", "/gitlab" + fakeAPI + "/register"} {
		resp, body := e.do(http.MethodPost, p, nil, nil)
		assert.Equal(t, http.StatusNotFound, resp.StatusCode, p)
		assert.Contains(t, resp.Header.Get("Content-Type"), "text/html", p)
		assert.NotContains(t, body, `"message"`, p)
	}
	resp, body := e.do(http.MethodPost, "/api/v4/builds/register", nil, nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	assert.Equal(t, `{"error":"404 Not Found"}`, body)
}

func TestWaitFinished(t *testing.T) {
	e := newFakeEnv(t)
	id := e.srv.Enqueue(runnerapi.Build{})
	e.take(fakeRunnerToken)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	state, err := e.srv.WaitFinished(ctx, id)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, runnerapi.StateRunning, state)

	_, err = e.srv.WaitFinished(context.Background(), 404)
	assert.Error(t, err)

	done := make(chan runnerapi.BuildState)
	go func() {
		st, err := e.srv.WaitFinished(context.Background(), id)
		assert.NoError(t, err)
		done <- st
	}()
	// Updates that do not finish the build must not end the wait.
	resp, _ := e.update(id, fakeRunnerToken, "running", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp, _ = e.update(id, fakeRunnerToken, "failed", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, runnerapi.StateFailed, <-done)

	canceled := e.srv.Enqueue(runnerapi.Build{})
	go func() {
		st, err := e.srv.WaitFinished(context.Background(), canceled)
		assert.NoError(t, err)
		done <- st
	}()
	require.NoError(t, e.srv.Cancel(canceled))
	assert.Equal(t, runnerapi.StateCanceled, <-done)
}

func TestWaitFinishedEndsOnClose(t *testing.T) {
	srv := runnerapitest.NewServer()
	id := srv.Enqueue(runnerapi.Build{})
	errc := make(chan error)
	go func() {
		_, err := srv.WaitFinished(context.Background(), id)
		errc <- err
	}()
	srv.Close()
	assert.ErrorIs(t, <-errc, runnerapitest.ErrServerClosed)
	srv.Close() // a second Close is harmless
}

func TestDependencies(t *testing.T) {
	e := newFakeEnv(t)
	build1 := e.srv.Enqueue(runnerapi.Build{Name: "build", Stage: "build"})
	test := e.srv.Enqueue(runnerapi.Build{Name: "test", DependsOnBuilds: []runnerapi.DependentBuild{{ID: build1}, {ID: 999, Name: "elsewhere"}}})
	info, _ := e.srv.Build(test)
	assert.Equal(t, runnerapi.StateCreated, info.State, "waits for its dependency")

	b1 := e.take(fakeRunnerToken)
	require.Equal(t, build1, b1.ID)
	resp, _ := e.register(fakeRunnerToken, fakeMultiUA, nil)
	assert.Equal(t, http.StatusNoContent, resp.StatusCode, "the dependent build is not handed out yet")
	v := resp.Header.Get("X-GitLab-Last-Update")
	resp, body := e.upload(build1, b1.Token, "", "artifacts.zip", []byte("zipdata"))
	require.Equal(t, http.StatusCreated, resp.StatusCode, body)
	resp, _ = e.update(build1, fakeRunnerToken, "success", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// Its release changes the queue's value, so long polling sees it.
	resp, body = e.register(fakeRunnerToken, fakeMultiUA, url.Values{"last_update": {v}})
	require.Equal(t, http.StatusCreated, resp.StatusCode, body)
	var b2 runnerapi.Build
	require.NoError(t, json.Unmarshal([]byte(body), &b2))
	assert.Equal(t, test, b2.ID)
	require.Len(t, b2.DependsOnBuilds, 2)
	d := b2.DependsOnBuilds[0]
	assert.Equal(t, build1, d.ID)
	assert.Equal(t, b1.Token, d.Token)
	assert.Equal(t, runnerapi.StateSuccess, d.Status)
	assert.Equal(t, "build", d.Stage)
	assert.Equal(t, runnerapi.ArtifactsFile{Filename: "artifacts.zip", Size: 7}, d.ArtifactsFile)
	assert.Equal(t, runnerapi.DependentBuild{ID: 999, Name: "elsewhere"}, b2.DependsOnBuilds[1], "others are sent as given")

	// The dependency's token downloads its artifacts.
	resp, body = e.do(http.MethodGet, e.artifactsPath(d.ID), tokenHeader(d.Token), nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "zipdata", body)

	// A failed dependency skips the builds after it, transitively.
	a := e.srv.Enqueue(runnerapi.Build{})
	bb := e.srv.Enqueue(runnerapi.Build{DependsOnBuilds: []runnerapi.DependentBuild{{ID: a}}})
	c := e.srv.Enqueue(runnerapi.Build{DependsOnBuilds: []runnerapi.DependentBuild{{ID: bb}}})
	require.NoError(t, e.srv.Cancel(a))
	for _, id := range []int64{bb, c} {
		st, err := e.srv.WaitFinished(context.Background(), id)
		require.NoError(t, err)
		assert.Equal(t, runnerapi.StateSkipped, st)
	}
}

func TestEnqueueCopiesAndValidates(t *testing.T) {
	e := newFakeEnv(t)
	vars := []runnerapi.Variable{{Key: "A", Value: "1", Public: true}}
	id := e.srv.Enqueue(runnerapi.Build{ID: 42, Token: "given-token", Variables: vars})
	assert.Equal(t, int64(42), id)
	vars[0].Value = "changed"
	b := e.take(fakeRunnerToken)
	assert.Equal(t, "given-token", b.Token)
	assert.Equal(t, "1", b.Variables[0].Value, "the server keeps its own copy")
	assert.Panics(t, func() { e.srv.Enqueue(runnerapi.Build{ID: 42}) })
	assert.Panics(t, func() { e.srv.AddRunner(fakeRunnerToken) })
	assert.Panics(t, func() { e.srv.AddRunner("") })
	_, ok := e.srv.Build(7)
	assert.False(t, ok)
	assert.Nil(t, e.srv.Trace(7))
}

func TestConcurrentRunnersEachBuildOnce(t *testing.T) {
	e := newFakeEnv(t)
	const runners, builds = 6, 30
	for i := range runners {
		e.srv.AddRunner(fmt.Sprintf("concurrent-%d", i))
	}
	for range builds {
		e.srv.Enqueue(runnerapi.Build{})
	}
	var (
		mu   sync.Mutex
		seen = map[int64]int{}
		wg   sync.WaitGroup
	)
	for i := range runners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			token := fmt.Sprintf("concurrent-%d", i)
			for {
				resp, err := e.send(http.MethodPost, fakeAPI+"/register", formHeader(fakeMultiUA), strings.NewReader("token="+token))
				if !assert.NoError(t, err) {
					return
				}
				var b runnerapi.Build
				decErr := json.NewDecoder(resp.Body).Decode(&b)
				resp.Body.Close()
				if resp.StatusCode == http.StatusNoContent {
					return
				}
				if !assert.NoError(t, decErr) {
					return
				}
				mu.Lock()
				seen[b.ID]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	assert.Len(t, seen, builds)
	for id, n := range seen {
		assert.Equal(t, 1, n, "build %d", id)
	}
}

func TestRequestsLogHoldsNoToken(t *testing.T) {
	e := newFakeEnv(t)
	id := e.srv.Enqueue(runnerapi.Build{Token: "build-secret-9"})
	e.take(fakeRunnerToken)
	e.patch(id, "build-secret-9", "0-2", "hi")
	e.do(http.MethodPatch, fmt.Sprintf("%s/%d/trace.txt?token=build-secret-9", fakeAPI, id), http.Header{"Content-Range": {"2-2"}}, nil)
	e.update(id, fakeRunnerToken, "success", nil)

	reqs := e.srv.Requests()
	require.Len(t, reqs, 4)
	assert.Equal(t, runnerapitest.Request{Method: "POST", Path: fakeAPI + "/register", Endpoint: runnerapitest.EndpointRegister,
		Status: 201, ContentLength: int64(len("token=" + fakeRunnerToken)), UserAgent: fakeMultiUA}, reqs[0])
	assert.Equal(t, runnerapitest.Request{Method: "PATCH", Path: fmt.Sprintf("%s/%d/trace.txt", fakeAPI, id), Endpoint: runnerapitest.EndpointTrace,
		Status: 202, ContentRange: "0-2", ContentLength: 2, UserAgent: "Go-http-client/1.1"}, reqs[1])
	assert.True(t, reqs[2].TokenInQuery)
	assert.Equal(t, runnerapitest.EndpointUpdate, reqs[3].Endpoint)
	assert.Equal(t, 200, reqs[3].Status)
	dump := fmt.Sprintf("%+v %#v", reqs, reqs)
	assert.NotContains(t, dump, "build-secret-9")
	assert.NotContains(t, dump, fakeRunnerToken)
}

func TestLoggerGetsNoToken(t *testing.T) {
	var buf strings.Builder
	var mu sync.Mutex
	h := slogHandlerTo(&buf, &mu)
	e := newFakeEnv(t, runnerapitest.WithLogger(h))
	id := e.srv.Enqueue(runnerapi.Build{Token: "build-secret-9"})
	e.take(fakeRunnerToken)
	e.do(http.MethodPatch, fmt.Sprintf("%s/%d/trace.txt?token=build-secret-9", fakeAPI, id), http.Header{"Content-Range": {"0-0"}}, nil)
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	assert.Contains(t, out, "status=202")
	assert.Contains(t, out, "trace.txt")
	assert.NotContains(t, out, "build-secret-9")
	assert.NotContains(t, out, fakeRunnerToken)
}

func TestUnstartedServerAndTLS(t *testing.T) {
	srv := runnerapitest.NewUnstartedServer()
	defer srv.Close()
	assert.Empty(t, srv.URL)
	srv.AddRunner(fakeRunnerToken)
	id := srv.Enqueue(runnerapi.Build{})
	srv.StartTLS()
	require.True(t, strings.HasPrefix(srv.URL, "https://127.0.0.1:"), srv.URL)
	resp, err := srv.Client().PostForm(srv.URL+fakeAPI+"/register", url.Values{"token": {fakeRunnerToken}})
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusCreated, resp.StatusCode)
	info, _ := srv.Build(id)
	assert.Equal(t, runnerapi.StateRunning, info.State)

	never := runnerapitest.NewUnstartedServer()
	never.Close() // closing a server that never started is fine
}

func TestParametersInEveryForm(t *testing.T) {
	e := newFakeEnv(t, runnerapitest.WithMaxArtifactSize(10))
	first := e.srv.Enqueue(runnerapi.Build{})
	second := e.srv.Enqueue(runnerapi.Build{})

	// The token in the query string works, as it does on GitLab, and the request log says so.
	resp, body := e.do(http.MethodPost, fakeAPI+"/register?token="+fakeRunnerToken, nil, nil)
	require.Equal(t, http.StatusCreated, resp.StatusCode, body)
	reqs := e.srv.Requests()
	assert.True(t, reqs[len(reqs)-1].TokenInQuery)
	// A body parameter wins over the query.
	resp, _ = e.do(http.MethodPost, fakeAPI+"/register?token=wrong", formHeader(""), strings.NewReader("token="+fakeRunnerToken))
	require.Equal(t, http.StatusCreated, resp.StatusCode)

	// A multipart form.
	ct, mbody := multipartBody(t, map[string]string{"token": fakeRunnerToken, "state": "failed", "trace": "multi\n"}, "", nil)
	resp, body = e.do(http.MethodPut, fmt.Sprintf("%s/%d", fakeAPI, first), http.Header{"Content-Type": {ct}}, mbody)
	assert.Equal(t, http.StatusOK, resp.StatusCode, body)
	info, _ := e.srv.Build(first)
	assert.Equal(t, runnerapi.StateFailed, info.State)
	assert.Equal(t, "multi\n", string(e.srv.Trace(first)))

	// JSON values of any type are taken as Rails would take them.
	resp, body = e.do(http.MethodPut, fmt.Sprintf("%s/%d", fakeAPI, second), http.Header{"Content-Type": {"application/json; charset=utf-8"}},
		strings.NewReader(`{"token":"`+fakeRunnerToken+`","state":"running","trace":null,"extra":[1,2],"n":3,"b":true}`))
	assert.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Empty(t, e.srv.Trace(second), "a null trace is no trace")

	// A trace part is bounded like an artifacts file.
	b, _ := e.srv.Build(second)
	resp, body = e.patch(second, b.Build.Token, "0-11", "01234567890")
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	assert.Equal(t, `{"message":"413 Request Entity Too Large"}`, body)
	assert.Empty(t, e.srv.Trace(second))

	resp, body = e.do(http.MethodPut, fmt.Sprintf("%s/%d", fakeAPI, second), formHeader(""), strings.NewReader("token=%zz"))
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "malformed form")
	assert.Equal(t, `{"message":"400 Bad Request"}`, body)
}

// TestRequestsListedBeforeAnswer checks that a client holding its answer finds its request logged, even when the
// answer is too large to be buffered until the handler returns.
func TestRequestsListedBeforeAnswer(t *testing.T) {
	e := newFakeEnv(t)
	for range 20 {
		e.srv.Enqueue(runnerapi.Build{Commands: strings.Repeat("echo filler\n", 8<<10)})
	}
	for i := range 20 {
		e.take(fakeRunnerToken)
		reqs := e.srv.Requests()
		require.Len(t, reqs, i+1)
		assert.Equal(t, http.StatusCreated, reqs[i].Status)
	}
}
