//go:build unix

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/runnerapi/runnerapi"
	"github.com/runnerapi/runnerapi/runnerapitest"
)

// TestMain fails the tests if a goroutine outlives them: a trace writer not closed, a script's output still being
// copied.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const runnerTestToken = "runner-test-token"

// runnerResult is what one run of the runner did.
type runnerResult struct {
	code           int
	stdout, stderr string
}

// runRunner runs the runner to its end.
func runRunner(ctx context.Context, args ...string) runnerResult {
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, &stdout, &stderr)
	return runnerResult{code, stdout.String(), stderr.String()}
}

// startRunner runs the runner in the background; the channel yields its result.
func startRunner(ctx context.Context, args ...string) <-chan runnerResult {
	done := make(chan runnerResult, 1)
	go func() { done <- runRunner(ctx, args...) }()
	return done
}

// awaitRunner waits for a background runner, failing the test if it does not end long before any script's sleep
// would have.
func awaitRunner(t *testing.T, done <-chan runnerResult) runnerResult {
	t.Helper()
	select {
	case res := <-done:
		return res
	case <-time.After(15 * time.Second):
		t.Fatal("the runner did not end")
		return runnerResult{}
	}
}

// newRunnerCoordinator starts a fake coordinator that knows runnerTestToken.
func newRunnerCoordinator(t *testing.T) *runnerapitest.Server {
	t.Helper()
	srv := runnerapitest.NewServer()
	t.Cleanup(srv.Close)
	srv.AddRunner(runnerTestToken)
	return srv
}

// runnerArgs are the flags that point the runner at srv with a short poll interval and workdir as its work dir.
func runnerArgs(srv *runnerapitest.Server, workdir string, more ...string) []string {
	return append([]string{"-url", srv.URL, "-token", runnerTestToken, "-interval", "10ms", "-workdir", workdir}, more...)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// sleeperCommands start a grandchild of the runner, "sleep 30", record its PID in pidFile and wait for it.
func sleeperCommands(pidFile string) string {
	return "sleep 30 &\necho $! > " + shellQuote(pidFile) + "\nwait"
}

// waitPID waits until the script has written its grandchild's PID.
func waitPID(t *testing.T, pidFile string) int {
	t.Helper()
	var pid int
	require.Eventually(t, func() bool {
		data, err := os.ReadFile(pidFile)
		if err != nil || !bytes.HasSuffix(data, []byte("\n")) {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(data)))
		return err == nil
	}, 10*time.Second, 5*time.Millisecond, "the script did not start its sleep")
	return pid
}

// processGone reports whether pid no longer runs. A killed process whose parent died too waits as a zombie until
// init reaps it: it is gone all the same.
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')') // the state follows the command name, which may hold anything
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

func assertStopped(t *testing.T, pid int) {
	t.Helper()
	assert.Eventually(t, func() bool { return processGone(pid) }, 5*time.Second, 5*time.Millisecond,
		"the script's grandchild %d still runs", pid)
}

func traceOf(srv *runnerapitest.Server, id int64) string { return string(srv.Trace(id)) }

func stateOf(t *testing.T, srv *runnerapitest.Server, id int64) runnerapi.BuildState {
	t.Helper()
	info, ok := srv.Build(id)
	require.True(t, ok)
	return info.State
}

func TestDemo(t *testing.T) {
	t.Parallel()
	workdir := t.TempDir()
	res := runRunner(t.Context(), "-workdir", workdir)

	require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
	assert.Empty(t, res.stderr)
	assert.Contains(t, res.stdout, "runner: build 1 (compile): success\n")
	assert.Contains(t, res.stdout, "runner: build 2 (check): success\n")
	_, checkTrace, found := strings.Cut(res.stdout, "--- trace of build 2 (check)")
	require.True(t, found, "no trace of the check build in:\n%s", res.stdout)
	assert.Contains(t, checkTrace, "Downloading the artifacts of build 1 (compile)\n")
	assert.Contains(t, checkTrace, "hello from build 1 (compile)\n", "check did not read compile's artifact")
	assert.Contains(t, res.stdout, "Summary: compile success, check success; compile uploaded artifacts.zip (")
	assert.Contains(t, res.stdout, "which check downloaded.\n")
	assert.NotContains(t, res.stdout, "demo-runner-token")
}

func TestSuccessfulBuild(t *testing.T) {
	t.Parallel()
	srv := newRunnerCoordinator(t)
	id := srv.EnqueueCommands("hello", `echo "hello from $CI_BUILD_NAME"`, "echo 'to stderr' >&2")

	res := runRunner(t.Context(), runnerArgs(srv, t.TempDir(), "-once")...)

	require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
	assert.Empty(t, res.stderr)
	assert.Equal(t, runnerapi.StateSuccess, stateOf(t, srv, id))
	trace := traceOf(srv, id)
	assert.Contains(t, trace, "hello from hello\nto stderr\n")
	assert.True(t, strings.HasSuffix(trace, "Build succeeded\n"), "trace: %q", trace)
	assert.Equal(t, "runner: took build 1 (hello)\nrunner: build 1 (hello): success\n", res.stdout)
	for _, r := range srv.Requests() {
		assert.False(t, r.TokenInQuery, "%s %s carried a token in its query", r.Method, r.Path)
	}
}

func TestFailingBuild(t *testing.T) {
	t.Parallel()
	srv := newRunnerCoordinator(t)
	id := srv.EnqueueCommands("broken", "echo before", "false", "echo after")

	res := runRunner(t.Context(), runnerArgs(srv, t.TempDir(), "-once")...)

	require.Equal(t, 0, res.code, "a failed build is still a build run and reported; stderr: %s", res.stderr)
	assert.Empty(t, res.stderr)
	assert.Equal(t, runnerapi.StateFailed, stateOf(t, srv, id))
	trace := traceOf(srv, id)
	assert.Contains(t, trace, "before\nERROR: Build failed: the script failed: exit status 1\n")
	assert.NotContains(t, trace, "after")
	assert.Contains(t, res.stdout, "runner: build 1 (broken): failed\n")
}

func TestCanceledBuildKillsTheProcessGroup(t *testing.T) {
	t.Parallel()
	srv := newRunnerCoordinator(t)
	pidFile := filepath.Join(t.TempDir(), "sleep.pid")
	id := srv.EnqueueCommands("sleeper", sleeperCommands(pidFile))

	done := startRunner(t.Context(), runnerArgs(srv, t.TempDir(), "-once")...)
	pid := waitPID(t, pidFile)
	require.NoError(t, srv.Cancel(id))
	res := awaitRunner(t, done)

	require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
	assert.Empty(t, res.stderr)
	assertStopped(t, pid)
	assert.Equal(t, runnerapi.StateCanceled, stateOf(t, srv, id))
	assert.Contains(t, traceOf(srv, id), "Build stopped: the coordinator says it is canceled\n")
	assert.Contains(t, res.stdout, "runner: build 1 (sleeper): stopped, the coordinator says it is canceled\n")
}

func TestTimedOutBuildKillsTheProcessGroup(t *testing.T) {
	t.Parallel()
	srv := newRunnerCoordinator(t)
	pidFile := filepath.Join(t.TempDir(), "sleep.pid")
	id := srv.Enqueue(runnerapi.Build{Name: "slow", Commands: sleeperCommands(pidFile), Timeout: 1})

	done := startRunner(t.Context(), runnerArgs(srv, t.TempDir(), "-once")...)
	pid := waitPID(t, pidFile)
	res := awaitRunner(t, done)

	require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
	assertStopped(t, pid)
	assert.Equal(t, runnerapi.StateFailed, stateOf(t, srv, id))
	assert.Contains(t, traceOf(srv, id), "ERROR: Build failed: the build timed out after 1s\n")
}

func TestStoppedRunnerReportsTheBuildFailed(t *testing.T) {
	t.Parallel()
	srv := newRunnerCoordinator(t)
	pidFile := filepath.Join(t.TempDir(), "sleep.pid")
	id := srv.EnqueueCommands("sleeper", sleeperCommands(pidFile))

	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	done := startRunner(ctx, runnerArgs(srv, t.TempDir())...)
	pid := waitPID(t, pidFile)
	stop() // as a SIGINT does
	res := awaitRunner(t, done)

	require.Equal(t, 0, res.code, "the build was reported, so the runner succeeded; stderr: %s", res.stderr)
	assertStopped(t, pid)
	assert.Equal(t, runnerapi.StateFailed, stateOf(t, srv, id))
	assert.Contains(t, traceOf(srv, id), "ERROR: Build failed: the runner was stopped\n")
}

func TestBackgroundProcessesDoNotOutliveTheBuild(t *testing.T) {
	t.Parallel()
	srv := newRunnerCoordinator(t)
	pidFile := filepath.Join(t.TempDir(), "sleep.pid")
	// The sleep keeps the script's output open; the build must end with the script all the same.
	id := srv.EnqueueCommands("leaves-a-sleep", "sleep 30 &", "echo $! > "+shellQuote(pidFile), "echo done")

	res := awaitRunner(t, startRunner(t.Context(), runnerArgs(srv, t.TempDir(), "-once")...))

	require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
	assert.Equal(t, runnerapi.StateSuccess, stateOf(t, srv, id))
	assert.Contains(t, traceOf(srv, id), "done\nBuild succeeded\n")
	assertStopped(t, waitPID(t, pidFile))
}

func TestArtifactsPassBetweenDependentBuilds(t *testing.T) {
	t.Parallel()
	srv := newRunnerCoordinator(t)
	produce := srv.Enqueue(runnerapi.Build{
		Name:     "produce",
		Commands: "mkdir -p dist/sub\necho payload-42 > dist/sub/data.txt\necho not-an-artifact > other.txt",
		Options:  runnerapi.Options{Artifacts: runnerapi.ArtifactsOptions{Paths: []string{"dist/"}, ExpireIn: "1 week"}},
	})
	consume := srv.Enqueue(runnerapi.Build{
		Name:            "consume",
		Commands:        "cat dist/sub/data.txt\ntest ! -e other.txt",
		DependsOnBuilds: []runnerapi.DependentBuild{{ID: produce}},
	})
	workdir := t.TempDir()

	state, res := runUntilFinished(t, srv, workdir, consume)

	require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
	assert.Equal(t, runnerapi.StateSuccess, stateOf(t, srv, produce), "trace:\n%s", traceOf(srv, produce))
	assert.Equal(t, runnerapi.StateSuccess, state, "trace:\n%s", traceOf(srv, consume))
	a, ok := srv.Artifact(produce)
	require.True(t, ok, "produce uploaded no artifacts")
	assert.Equal(t, "artifacts.zip", a.Filename)
	assert.Equal(t, "1 week", a.ExpireIn)
	assert.Contains(t, traceOf(srv, consume), "Downloading the artifacts of build 1 (produce)\npayload-42\n")
	got, err := os.ReadFile(filepath.Join(workdir, "build-2", "dist", "sub", "data.txt"))
	require.NoError(t, err)
	assert.Equal(t, "payload-42\n", string(got))
}

func TestDependenciesOptionChoosesArtifacts(t *testing.T) {
	t.Parallel()
	srv := newRunnerCoordinator(t)
	var producers []int64
	for _, name := range []string{"produce-a", "produce-b"} {
		producers = append(producers, srv.Enqueue(runnerapi.Build{
			Name:     name,
			Commands: "mkdir -p out\necho from-" + name + " > out/" + name + ".txt",
			Options:  runnerapi.Options{Artifacts: runnerapi.ArtifactsOptions{Paths: []string{"out/"}}},
		}))
	}
	consume := srv.Enqueue(runnerapi.Build{
		Name:            "consume",
		Commands:        "cat out/produce-b.txt\ntest ! -e out/produce-a.txt",
		DependsOnBuilds: []runnerapi.DependentBuild{{ID: producers[0]}, {ID: producers[1]}},
		Options:         runnerapi.Options{Dependencies: []string{"produce-b"}},
	})

	state, res := runUntilFinished(t, srv, t.TempDir(), consume)

	require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
	trace := traceOf(srv, consume)
	assert.Equal(t, runnerapi.StateSuccess, state, "trace:\n%s", trace)
	assert.Contains(t, trace, "Downloading the artifacts of build 2 (produce-b)\nfrom-produce-b\n")
	assert.NotContains(t, trace, "(produce-a)")
}

// runUntilFinished runs the runner without -once, so that it takes builds until it is stopped, and stops it once
// build id has finished; it returns the build's state and how the runner ended.
func runUntilFinished(t *testing.T, srv *runnerapitest.Server, workdir string, id int64) (runnerapi.BuildState, runnerResult) {
	t.Helper()
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	done := startRunner(ctx, runnerArgs(srv, workdir)...)
	wctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	state, err := srv.WaitFinished(wctx, id)
	require.NoError(t, err)
	stop()
	return state, awaitRunner(t, done)
}

func TestArtifactsNameNamesTheArchive(t *testing.T) {
	t.Parallel()
	srv := newRunnerCoordinator(t)
	id := srv.Enqueue(runnerapi.Build{
		Name:     "named",
		Commands: "mkdir -p out\necho x > out/x.txt",
		Options: runnerapi.Options{Artifacts: runnerapi.ArtifactsOptions{Name: "../rspec-artifacts",
			Paths: []string{"out/"}}},
	})

	res := runRunner(t.Context(), runnerArgs(srv, t.TempDir(), "-once")...)

	require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
	a, ok := srv.Artifact(id)
	require.True(t, ok, "trace:\n%s", traceOf(srv, id))
	assert.Equal(t, "rspec-artifacts.zip", a.Filename)
}

func TestMissingArtifactPathsAreAWarning(t *testing.T) {
	t.Parallel()
	srv := newRunnerCoordinator(t)
	id := srv.Enqueue(runnerapi.Build{
		Name:     "nothing",
		Commands: "true",
		Options:  runnerapi.Options{Artifacts: runnerapi.ArtifactsOptions{Paths: []string{"missing/"}}},
	})

	res := runRunner(t.Context(), runnerArgs(srv, t.TempDir(), "-once")...)

	require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
	assert.Equal(t, runnerapi.StateSuccess, stateOf(t, srv, id))
	assert.Contains(t, traceOf(srv, id), "WARNING: no file matches the artifacts paths; nothing uploaded\n")
	_, ok := srv.Artifact(id)
	assert.False(t, ok)
}

func TestBadToken(t *testing.T) {
	t.Parallel()
	srv := newRunnerCoordinator(t)
	id := srv.EnqueueCommands("untouched", "true")

	args := runnerArgs(srv, t.TempDir())
	args[3] = "not-" + runnerTestToken
	res := runRunner(t.Context(), args...)

	assert.Equal(t, 1, res.code)
	assert.Equal(t, "runner: the coordinator refused the runner token\n", res.stderr)
	assert.Equal(t, runnerapi.StatePending, stateOf(t, srv, id))
}

func TestUnreachableCoordinator(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close()) // nothing listens there now: connections are refused

	res := runRunner(t.Context(), "-url", "http://"+addr, "-token", runnerTestToken, "-interval", "10ms", "-workdir", t.TempDir())

	assert.Equal(t, 1, res.code)
	assert.True(t, strings.HasPrefix(res.stderr, "runner: cannot reach the coordinator at http://"+addr+": "), "stderr: %q", res.stderr)
	assert.Contains(t, res.stderr, "connection refused")
	assert.Equal(t, 1, strings.Count(res.stderr, "\n"), "stderr: %q", res.stderr)
	assert.NotContains(t, res.stderr, runnerTestToken)
}

func TestUsageErrorsAreOneLine(t *testing.T) {
	t.Setenv("RUNNER_TOKEN", "")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-bogus"}, 2, "runner: flag provided but not defined: -bogus (see -h)\n"},
		{[]string{"-interval", "0s"}, 2, "runner: -interval must be positive (see -h)\n"},
		{[]string{"-url", "http://127.0.0.1:1", "extra"}, 2, "runner: unexpected argument \"extra\" (see -h)\n"},
		{[]string{"-url", "http://127.0.0.1:1"}, 1, "runner: no runner token: set RUNNER_TOKEN or use -token\n"},
	} {
		res := runRunner(t.Context(), tc.args...)
		assert.Equal(t, tc.code, res.code, "%v", tc.args)
		assert.Equal(t, tc.want, res.stderr, "%v", tc.args)
	}
}

// The runner token comes from RUNNER_TOKEN, yet the build's script never sees it, nor does -h print it.
func TestRunnerTokenStaysOutOfTheBuild(t *testing.T) {
	const token = "env-runner-token-5f3a"
	t.Setenv("RUNNER_TOKEN", token)
	srv := runnerapitest.NewServer()
	defer srv.Close()
	srv.AddRunner(token)
	envFile := filepath.Join(t.TempDir(), "env.txt")
	id := srv.Enqueue(runnerapi.Build{
		Name:      "env",
		Commands:  "env > " + shellQuote(envFile),
		Variables: []runnerapi.Variable{{Key: "GREETING", Value: "hi there", Public: true}},
	})

	res := runRunner(t.Context(), "-url", srv.URL, "-interval", "10ms", "-once", "-workdir", t.TempDir())

	require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
	require.Equal(t, runnerapi.StateSuccess, stateOf(t, srv, id), "trace:\n%s", traceOf(srv, id))
	env, err := os.ReadFile(envFile)
	require.NoError(t, err)
	lines := strings.Split(string(env), "\n")
	assert.Contains(t, lines, "GREETING=hi there")
	assert.Contains(t, lines, "CI_BUILD_ID=1")
	assert.NotContains(t, string(env), token)
	assert.NotContains(t, string(env), "RUNNER_TOKEN")
	assert.NotContains(t, res.stdout+res.stderr, token)

	help := runRunner(t.Context(), "-h")
	assert.Equal(t, 0, help.code)
	assert.Contains(t, help.stdout, "Usage: runner")
	assert.NotContains(t, help.stdout, token)
}

// A build the coordinator assigned but whose JSON the SDK could not read in full is reported failed, not left
// running. runnerapitest cannot send such a build, so a small handler plays the coordinator.
func TestUnreadableBuildIsReportedFailed(t *testing.T) {
	t.Parallel()
	var (
		mu    sync.Mutex
		trace []byte
		state string
	)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /ci/api/v1/builds/register", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"id":7,"name":"odd","token":"build-token-7","commands":"true","timeout":"soon"}`)
	})
	mux.HandleFunc("PATCH /ci/api/v1/builds/7/trace.txt", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if start, _, _ := strings.Cut(r.Header.Get("Content-Range"), "-"); start != strconv.Itoa(len(trace)) {
			w.Header().Set("Range", fmt.Sprintf("0-%d", len(trace)))
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return
		}
		trace = append(trace, body...)
		w.Header().Set("Range", fmt.Sprintf("0-%d", len(trace)))
		w.Header().Set("Build-Status", "running")
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("PUT /ci/api/v1/builds/7", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		state = r.FormValue("state")
		_, _ = io.WriteString(w, "true")
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	res := runRunner(t.Context(), "-url", srv.URL, "-token", runnerTestToken, "-interval", "10ms", "-once", "-workdir", t.TempDir())

	require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, "failed", state)
	assert.Contains(t, string(trace), "ERROR: runnerapi: build 7 was assigned to this runner but could not be read in full")
	assert.Contains(t, res.stdout, "runner: build 7 (odd): failed\n")
}
