//go:build unix

package main

import (
	"fmt"
	"hash/crc32"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/runnerapi/runnerapi"
	"github.com/runnerapi/runnerapi/runnerapitest"
)

// endpointsSeen counts the requests srv was sent, by endpoint.
func endpointsSeen(srv *runnerapitest.Server) map[runnerapitest.Endpoint]int {
	seen := map[runnerapitest.Endpoint]int{}
	for _, r := range srv.Requests() {
		seen[r.Endpoint]++
	}
	return seen
}

// v1Only serves srv's CI API v1 and answers every path of the runner API v4 404, as a GitLab 8.x does.
func v1Only(t *testing.T, srv *runnerapitest.Server) *httptest.Server {
	t.Helper()
	proxy := proxyTo(t, srv)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/v4/") {
			http.NotFound(w, r)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	return front
}

// assertV4Report checks what the final update of a job said of its trace: the checksum and length of the trace
// the coordinator stored, as GitLab compares them.
func assertV4Report(t *testing.T, srv *runnerapitest.Server, id int64) {
	t.Helper()
	info, ok := srv.Build(id)
	require.True(t, ok)
	trace := srv.Trace(id)
	assert.Equal(t, fmt.Sprintf("crc32:%08x", crc32.ChecksumIEEE(trace)), info.Job.Checksum)
	assert.Equal(t, int64(len(trace)), info.Job.Bytesize)
	assert.False(t, info.Job.ChecksumMismatch)
}

// The demo runs the same pipeline over either API, and -api auto (the default) finds that the embedded
// coordinator speaks v4; the artifact of the first build reaches the second through its dependencies.
func TestDemoOnEachAPI(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args          []string
		api           string
		take, refused runnerapitest.Endpoint
	}{
		{[]string{"-api", "v4"}, "", runnerapitest.EndpointJobRequest, runnerapitest.EndpointRegister},
		{[]string{"-api", "v1"}, "", runnerapitest.EndpointRegister, runnerapitest.EndpointJobRequest},
		{nil, "v4", runnerapitest.EndpointJobRequest, runnerapitest.EndpointRegister},
	} {
		t.Run(strings.Join(append([]string{"api"}, tc.args...), " "), func(t *testing.T) {
			t.Parallel()
			res := runRunner(t.Context(), append(tc.args, "-workdir", t.TempDir())...)

			require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
			if tc.api != "" {
				assert.Contains(t, res.stderr, " speaks the runner API "+tc.api+"\n")
			} else {
				assert.NotContains(t, res.stderr, " speaks the runner API ", "an API given is not asked for")
			}
			assert.Contains(t, res.stderr, "runner: build 1 (compile) ended: success, after ")
			assert.Contains(t, res.stderr, "runner: build 2 (check) ended: success, after ")
			_, checkTrace, found := strings.Cut(res.stdout, "--- trace of build 2 (check)")
			require.True(t, found, "no trace of the check build in:\n%s", res.stdout)
			assert.Contains(t, checkTrace, "Downloading the artifacts of build 1 (compile)\n")
			assert.Contains(t, checkTrace, "hello from build 1 (compile)\n", "check did not read compile's artifact")
			assert.Contains(t, res.stdout, "Summary: compile success, check success; compile uploaded artifacts.zip (")
			assert.Contains(t, res.stdout, "which check downloaded.\n")
			assert.NotContains(t, res.stdout+res.stderr, "demo-runner-token")
		})
	}
}

// On the runner API v4, register (with -api auto) prints the new token alone on stdout, run -once takes and
// reports one job with the checksum of its trace, and unregister removes the runner: all over /api/v4.
func TestRegisterRunUnregisterV4(t *testing.T) {
	t.Parallel()
	srv := newRegistrationCoordinator(t)
	id := srv.EnqueueCommands("hello", `echo "hello from job $CI_JOB_ID"`)

	reg := runRunner(t.Context(), "register", "-url", srv.URL, "-registration-token", registrationTestToken,
		"-description", "v4 runner", "-api", "auto", "-interval", "10ms")

	require.Equal(t, 0, reg.code, "stderr: %s", reg.stderr)
	token, ok := strings.CutSuffix(reg.stdout, "\n")
	require.True(t, ok, "stdout is the token and a newline: %q", reg.stdout)
	require.NotEmpty(t, token)
	assert.NotContains(t, token, "\n", "the token alone on stdout")
	assert.NotContains(t, reg.stderr, token, "the token only on stdout")
	assert.NotContains(t, reg.stderr, registrationTestToken)
	assert.Contains(t, reg.stderr, "runner: the coordinator at "+srv.URL+" speaks the runner API v4\n")
	seen := endpointsSeen(srv)
	assert.Equal(t, 1, seen[runnerapitest.EndpointRunnersRegister], "registered through POST /api/v4/runners")
	assert.Zero(t, seen[runnerapitest.EndpointRunnerRegister], "not through the CI API v1")
	runners := srv.Runners()
	require.Len(t, runners, 1)
	assert.Equal(t, "v4 runner", runners[0].Description)

	workdir := t.TempDir()
	res := runRunner(t.Context(), "-url", srv.URL, "-token", token, "-api", "v4", "-once", "-workdir", workdir, "-interval", "10ms")

	require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
	assert.Equal(t, runnerapi.StateSuccess, stateOf(t, srv, id))
	info, _ := srv.Build(id)
	assert.Equal(t, runners[0].ID, info.RunnerID, "the registered runner took the job")
	assert.True(t, info.Job.Taken, "taken through POST /api/v4/jobs/request")
	assert.Contains(t, traceOf(srv, id), fmt.Sprintf("hello from job %d\n", id))
	assertV4Report(t, srv, id)
	assert.Zero(t, endpointsSeen(srv)[runnerapitest.EndpointRegister], "no build asked for through the CI API v1")
	assert.NotContains(t, res.stderr, token)

	unreg := runRunner(t.Context(), "unregister", "-url", srv.URL, "-token", token, "-api", "v4", "-interval", "10ms")

	require.Equal(t, 0, unreg.code, "stderr: %s", unreg.stderr)
	assert.Empty(t, unreg.stdout)
	assert.Equal(t, 1, endpointsSeen(srv)[runnerapitest.EndpointRunnersDelete], "unregistered through DELETE /api/v4/runners")
	assert.Empty(t, srv.Runners())
}

// -api auto finds the API the coordinator speaks with one request, logged, and then speaks only that one: v4 when
// /api/v4 answers, v1 when it answers 404 as on GitLab 8.x.
func TestAutoPicksTheCoordinatorsAPI(t *testing.T) {
	t.Parallel()
	for _, api := range []string{"v4", "v1"} {
		t.Run(api, func(t *testing.T) {
			t.Parallel()
			srv := newRunnerCoordinator(t)
			id := srv.EnqueueCommands("hello", "echo hello")
			url := srv.URL
			if api == "v1" {
				url = v1Only(t, srv).URL
			}

			res := runRunner(t.Context(), "-url", url, "-token", runnerTestToken, "-api", "auto", "-once",
				"-interval", "10ms", "-workdir", t.TempDir())

			require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
			assert.Equal(t, runnerapi.StateSuccess, stateOf(t, srv, id))
			lines := logLines(t, res.stderr)
			require.NotEmpty(t, lines)
			assert.Equal(t, "runner: the coordinator at "+url+" speaks the runner API "+api, lines[0])
			seen := endpointsSeen(srv)
			info, _ := srv.Build(id)
			if api == "v4" {
				assert.True(t, info.Job.Taken)
				assert.Zero(t, seen[runnerapitest.EndpointRegister])
				assertV4Report(t, srv, id)
			} else {
				assert.False(t, info.Job.Taken)
				assert.Zero(t, seen[runnerapitest.EndpointJobRequest])
				assert.Equal(t, 1, seen[runnerapitest.EndpointRegister])
			}
		})
	}
}

// A probe that meets a failure that may pass is waited out and asked again, as any start-up call: first by the
// SDK's retries (up to 5 attempts), then by the runner's own waits.
func TestAutoWaitsOutAFailedProbe(t *testing.T) {
	t.Parallel()
	srv := newRunnerCoordinator(t)
	id := srv.EnqueueCommands("hello", "echo hello")
	faults := make([]runnerapitest.FaultKind, 6)
	for i := range faults {
		faults[i] = runnerapitest.FaultBadGateway
	}
	require.NoError(t, srv.ScriptFaults(runnerapitest.EndpointRunnersVerify, faults...))

	res := runRunner(t.Context(), "-url", srv.URL, "-token", runnerTestToken, "-api", "auto", "-once",
		"-interval", "10ms", "-workdir", t.TempDir())

	require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
	assert.Contains(t, res.stderr, "runner: asking the coordinator which API it speaks failed, trying again in ")
	assert.Contains(t, res.stderr, "runner: the coordinator at "+srv.URL+" speaks the runner API v4\n")
	assert.Equal(t, runnerapi.StateSuccess, stateOf(t, srv, id))
	assert.Equal(t, 6, srv.FaultsInjected()[runnerapitest.FaultBadGateway])
}

// A failed job's final update says why it failed and the script's exit code, which the coordinator matches
// against allow_failure:exit_codes.
func TestFailedJobReportsItsExitCode(t *testing.T) {
	t.Parallel()
	srv := newRunnerCoordinator(t)
	id := srv.EnqueueCommands("broken", "echo before", "exit 3")

	res := runRunner(t.Context(), runnerArgs(srv, t.TempDir(), "-api", "v4", "-once")...)

	require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
	assert.Equal(t, runnerapi.StateFailed, stateOf(t, srv, id))
	info, _ := srv.Build(id)
	assert.Equal(t, "script_failure", info.Job.FailureReason)
	assert.Equal(t, int64(3), info.Job.ExitCode)
	assert.Contains(t, traceOf(srv, id), "before\nERROR: Build failed: the script failed: exit status 3\n")
	assertV4Report(t, srv, id)
}

// A graceful cancel (Job-Status: canceling) stops the script, runs after_script, and reports the job, which the
// coordinator then records as canceled; the trace is whole and matches the checksum reported.
func TestGracefulCancelRunsAfterScript(t *testing.T) {
	t.Parallel()
	srv := newRunnerCoordinator(t)
	pidFile := filepath.Join(t.TempDir(), "script.pid")
	id := srv.Enqueue(runnerapi.Build{Name: "long", Commands: sleeperCommands(pidFile),
		Options: runnerapi.Options{AfterScript: []string{`echo "cleaning up after $CI_JOB_NAME"`}}})

	p := startRunner(t.Context(), runnerArgs(srv, t.TempDir(), "-api", "v4", "-once")...)
	pid := waitPID(t, pidFile)
	info, _ := srv.Build(id)
	require.True(t, info.Job.CancelGracefully, "the runner advertises cancel_gracefully")
	require.NoError(t, srv.CancelGracefully(id))
	res := p.await(t)

	require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
	assertStopped(t, pid)
	assert.Equal(t, runnerapi.StateCanceled, stateOf(t, srv, id), "canceling becomes canceled with the final update")
	trace := traceOf(srv, id)
	assert.Contains(t, trace, "Running after_script\ncleaning up after long\n")
	assert.True(t, strings.HasSuffix(trace, "ERROR: Build failed: the coordinator asked to cancel the build\n"), "trace:\n%s", trace)
	info, _ = srv.Build(id)
	assert.Equal(t, 1, info.Updates, "the job was reported")
	assertV4Report(t, srv, id)
	assert.Contains(t, res.stderr, "runner: build 1 (long) ended: failed, after ")
}

// A File variable of the runner API v4 reaches the script as the path of a file holding its value, outside the
// build's directory, where artifacts paths cannot pick it up.
func TestFileVariableIsAPath(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "build-1")
	var trace strings.Builder
	env := buildEnv(&work{variables: []variable{{key: "KUBECONFIG", value: "secret: yes\n", file: true},
		{key: "PLAIN", value: "as is"}}}, dir, &trace)

	assert.Empty(t, trace.String())
	assert.Contains(t, env, "PLAIN=as is")
	path := filepath.Join(dir+".files", "KUBECONFIG")
	require.Contains(t, env, "KUBECONFIG="+path)
	content, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "secret: yes\n", string(content))
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
}

// -api takes v1, v4 or auto on every command; anything else is a usage error, said in one line.
func TestAPIFlagRefusesOtherValues(t *testing.T) {
	t.Parallel()
	for _, command := range [][]string{{"run"}, {"register", "-registration-token", "t"}, {"unregister", "-token", "t"}} {
		res := runRunner(t.Context(), append(command, "-url", "http://127.0.0.1:1", "-api", "v2")...)
		assert.Equal(t, exitUsage, res.code, "%s: stderr: %s", command[0], res.stderr)
		assert.Equal(t, `runner: invalid value "v2" for flag -api: want v1, v4 or auto, not "v2" (see -h)`+"\n", res.stderr, command[0])
	}
}
