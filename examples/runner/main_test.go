//go:build unix

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
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

// syncBuffer is a buffer the runner writes to while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// pinnedAPI makes the runner speak the CI API v1 to a coordinator (-url) when args do not say which API: the tests
// that do not are about what both APIs share, and v1 is where they were written; runnerapitest serves both, so that
// -api auto would pick v4. The tests of v4 and of auto say -api.
func pinnedAPI(args []string) []string {
	if !slices.Contains(args, "-url") || slices.Contains(args, "-api") {
		return args
	}
	return append(slices.Clone(args), "-api", "v1")
}

// runRunner runs the runner to its end.
func runRunner(ctx context.Context, args ...string) runnerResult {
	args = pinnedAPI(args)
	var stdout, stderr syncBuffer
	code := run(ctx, args, env{stdout: &stdout, stderr: &stderr})
	return runnerResult{code, stdout.String(), stderr.String()}
}

// runnerProcess is a runner running in the background, to which the test sends signals.
type runnerProcess struct {
	signals        chan os.Signal
	stdout, stderr *syncBuffer
	builds         sync.WaitGroup
	done           chan runnerResult
}

// startRunner runs the runner in the background.
func startRunner(ctx context.Context, args ...string) *runnerProcess {
	p := &runnerProcess{signals: make(chan os.Signal, 4), stdout: new(syncBuffer), stderr: new(syncBuffer),
		done: make(chan runnerResult, 1)}
	args = pinnedAPI(args)
	go func() {
		code := run(ctx, args, env{stdout: p.stdout, stderr: p.stderr, signals: p.signals, builds: &p.builds})
		p.done <- runnerResult{code, p.stdout.String(), p.stderr.String()}
	}()
	return p
}

// await waits for the runner's end, failing the test if it does not end long before any script's sleep would have.
func (p *runnerProcess) await(t *testing.T) runnerResult {
	t.Helper()
	select {
	case res := <-p.done:
		return res
	case <-time.After(15 * time.Second):
		t.Fatalf("the runner did not end; its log:\n%s", p.stderr.String())
		return runnerResult{}
	}
}

// awaitClosed waits until done is closed, failing the test with why if that takes long.
func awaitClosed(t *testing.T, done <-chan struct{}, why string) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal(why)
	}
}

// contextWithTimeout bounds a wait of the test generously.
func contextWithTimeout(t *testing.T) (context.Context, context.CancelFunc) {
	return context.WithTimeout(t.Context(), 15*time.Second)
}

// awaitLog waits until the runner's log has a line holding want.
func (p *runnerProcess) awaitLog(t *testing.T, want string) {
	t.Helper()
	require.Eventually(t, func() bool { return strings.Contains(p.stderr.String(), want) }, 15*time.Second,
		5*time.Millisecond, "no %q in the log:\n%s", want, p.stderr)
}

// logLines returns the runner's log lines without their timestamps, checking that each has one.
func logLines(t *testing.T, stderr string) []string {
	t.Helper()
	var lines []string
	for _, line := range strings.Split(strings.TrimSuffix(stderr, "\n"), "\n") {
		stamp, rest, ok := strings.Cut(line, " ")
		if !assert.True(t, ok, "line %q", line) {
			continue
		}
		_, err := time.Parse(time.RFC3339Nano, stamp)
		assert.NoError(t, err, "the line %q starts with its time", line)
		lines = append(lines, rest)
	}
	return lines
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
	assert.Contains(t, res.stderr, "runner: build 1 (compile) ended: success, after ")
	assert.Contains(t, res.stderr, "runner: build 2 (check) ended: success, after ")
	assert.Contains(t, res.stderr, "runner: the demo pipeline is done: taking no more builds")
	assert.NotContains(t, res.stderr, "canceling")
	_, checkTrace, found := strings.Cut(res.stdout, "--- trace of build 2 (check)")
	require.True(t, found, "no trace of the check build in:\n%s", res.stdout)
	assert.Contains(t, checkTrace, "Downloading the artifacts of build 1 (compile)\n")
	assert.Contains(t, checkTrace, "hello from build 1 (compile)\n", "check did not read compile's artifact")
	assert.Contains(t, res.stdout, "Summary: compile success, check success; compile uploaded artifacts.zip (")
	assert.Contains(t, res.stdout, "which check downloaded.\n")
	assert.NotContains(t, res.stdout+res.stderr, "demo-runner-token")
}

func TestSuccessfulBuild(t *testing.T) {
	t.Parallel()
	srv := newRunnerCoordinator(t)
	id := srv.EnqueueCommands("hello", `echo "hello from $CI_BUILD_NAME"`, "echo 'to stderr' >&2")

	res := runRunner(t.Context(), runnerArgs(srv, t.TempDir(), "-once")...)

	require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
	assert.Equal(t, runnerapi.StateSuccess, stateOf(t, srv, id))
	trace := traceOf(srv, id)
	assert.Contains(t, trace, "hello from hello\nto stderr\n")
	assert.True(t, strings.HasSuffix(trace, "Build succeeded\n"), "trace: %q", trace)
	assert.Empty(t, res.stdout, "the log goes to stderr")
	// One line at start, one when the build is taken and one when it ends, one at the end: none per poll.
	lines := logLines(t, res.stderr)
	require.Len(t, lines, 4, "log:\n%s", res.stderr)
	assert.Equal(t, "runner: runnerapi example runner "+runnerapi.Version+": taking builds from "+srv.URL+", up to 1 at a time", lines[0])
	assert.Equal(t, "runner: build 1 (hello): taken", lines[1])
	assert.Regexp(t, `^runner: build 1 \(hello\) ended: success, after [0-9.]+[µm]?s, trace `+
		strconv.Itoa(len(trace))+` bytes$`, lines[2])
	assert.Equal(t, "runner: stopped", lines[3])
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
	assert.Equal(t, runnerapi.StateFailed, stateOf(t, srv, id))
	trace := traceOf(srv, id)
	assert.Contains(t, trace, "before\nERROR: Build failed: the script failed: exit status 1\n")
	assert.NotContains(t, trace, "after")
	assert.Contains(t, res.stderr, "runner: build 1 (broken) ended: failed, after ")
}

func TestCanceledBuildKillsTheProcessGroup(t *testing.T) {
	t.Parallel()
	srv := newRunnerCoordinator(t)
	pidFile := filepath.Join(t.TempDir(), "sleep.pid")
	id := srv.EnqueueCommands("sleeper", sleeperCommands(pidFile))

	p := startRunner(t.Context(), runnerArgs(srv, t.TempDir(), "-once")...)
	pid := waitPID(t, pidFile)
	require.NoError(t, srv.Cancel(id))
	res := p.await(t)

	require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
	assertStopped(t, pid)
	assert.Equal(t, runnerapi.StateCanceled, stateOf(t, srv, id))
	assert.Contains(t, traceOf(srv, id), "Build stopped: the coordinator says it is canceled\n")
	assert.Contains(t, res.stderr, "runner: build 1 (sleeper) ended: stopped, the coordinator says it is canceled, after ")
}

func TestTimedOutBuildKillsTheProcessGroup(t *testing.T) {
	t.Parallel()
	srv := newRunnerCoordinator(t)
	pidFile := filepath.Join(t.TempDir(), "sleep.pid")
	id := srv.Enqueue(runnerapi.Build{Name: "slow", Commands: sleeperCommands(pidFile), Timeout: 1})

	p := startRunner(t.Context(), runnerArgs(srv, t.TempDir(), "-once")...)
	pid := waitPID(t, pidFile)
	res := p.await(t)

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
	p := startRunner(ctx, runnerArgs(srv, t.TempDir())...)
	pid := waitPID(t, pidFile)
	stop() // as a SIGINT does
	res := p.await(t)

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

	res := startRunner(t.Context(), runnerArgs(srv, t.TempDir(), "-once")...).await(t)

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
	p := startRunner(ctx, runnerArgs(srv, workdir)...)
	wctx, cancel := contextWithTimeout(t)
	defer cancel()
	state, err := srv.WaitFinished(wctx, id)
	require.NoError(t, err)
	stop()
	return state, p.await(t)
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

func TestUsageErrorsAreOneLine(t *testing.T) {
	t.Setenv("RUNNER_TOKEN", "")
	t.Setenv("REGISTRATION_TOKEN", "")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-bogus"}, 2, "runner: flag provided but not defined: -bogus (see -h)\n"},
		{[]string{"-interval", "0s"}, 2, "runner: -interval must be positive (see -h)\n"},
		{[]string{"-url", "http://127.0.0.1:1", "extra"}, 2, "runner: unexpected argument \"extra\" (see -h)\n"},
		{[]string{"-url", "http://127.0.0.1:1"}, 1, "runner: no runner token: set RUNNER_TOKEN or use -token\n"},
		{[]string{"-concurrent", "0"}, 2, "runner: -concurrent must be at least 1 (see -h)\n"},
		{[]string{"-request-timeout", "0s"}, 2, "runner: -request-timeout must be positive (see -h)\n"},
		{[]string{"bogus"}, 2, "runner: unknown command \"bogus\": want register, unregister or run (see -h)\n"},
		{[]string{"register", "-registration-token", "x"}, 2, "runner: register needs -url (see -h)\n"},
		{[]string{"register", "-url", "http://127.0.0.1:1"}, 2, "runner: register needs -registration-token or $REGISTRATION_TOKEN (see -h)\n"},
		{[]string{"unregister", "-url", "http://127.0.0.1:1"}, 2, "runner: unregister needs -token or $RUNNER_TOKEN (see -h)\n"},
		// A malformed URL cannot be mended by waiting: one line, at once.
		{[]string{"-url", "ftp://gitlab.example.com", "-token", "t"}, 1, "runner: runnerapi: invalid base URL: scheme must be http or https, got \"ftp\"\n"},
		{[]string{"register", "-url", "gitlab.example.com", "-registration-token", "t"}, 1, "runner: runnerapi: invalid base URL: scheme must be http or https, got \"\"\n"},
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
	assert.Contains(t, res.stderr, "runner: build 7 (odd) ended: failed, after ")
}
