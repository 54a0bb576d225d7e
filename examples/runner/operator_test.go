//go:build unix

package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
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

	"github.com/runnerapi/runnerapi"
	"github.com/runnerapi/runnerapi/runnerapitest"
)

// The tests here are what an operator sees: the subcommands, the start-up against a coordinator that is not (yet)
// there, the log, -concurrent, the signals and after_script.

const registrationTestToken = "registration-test-token-4c1d"

// lastLine is the last line of a log, without its timestamp.
func lastLine(t *testing.T, stderr string) string {
	t.Helper()
	lines := logLines(t, stderr)
	require.NotEmpty(t, lines)
	return lines[len(lines)-1]
}

// newRegistrationCoordinator starts a fake coordinator that registers runners with registrationTestToken.
func newRegistrationCoordinator(t *testing.T) *runnerapitest.Server {
	t.Helper()
	srv := runnerapitest.NewServer()
	t.Cleanup(srv.Close)
	srv.AddRegistrationToken(registrationTestToken)
	return srv
}

// proxyTo returns a reverse proxy that passes every request on to srv, for a front between the runner and it.
func proxyTo(t *testing.T, srv *runnerapitest.Server) *httputil.ReverseProxy {
	t.Helper()
	target, err := url.Parse(srv.URL)
	require.NoError(t, err)
	return httputil.NewSingleHostReverseProxy(target)
}

// The sequence the README shows: TOKEN=$(runner register ...), runner -url $URL -token $TOKEN -once, runner
// unregister; after it the token is refused.
func TestRegisterRunUnregister(t *testing.T) {
	t.Parallel()
	srv := newRegistrationCoordinator(t)
	id := srv.EnqueueCommands("hello", "echo hello from the registered runner")

	reg := runRunner(t.Context(), "register", "-url", srv.URL, "-registration-token", registrationTestToken,
		"-description", "test runner", "-tag-list", "docker, linux", "-run-untagged=false", "-locked", "-interval", "10ms")

	require.Equal(t, 0, reg.code, "stderr: %s", reg.stderr)
	token, ok := strings.CutSuffix(reg.stdout, "\n")
	require.True(t, ok, "stdout is the token and a newline: %q", reg.stdout)
	require.NotEmpty(t, token)
	assert.NotContains(t, token, "\n", "the token alone on stdout")
	assert.NotContains(t, reg.stderr, token, "the token only on stdout")
	assert.NotContains(t, reg.stderr, registrationTestToken)
	assert.Regexp(t, `^runner: registered runner \d+ with the coordinator at `+srv.URL+`; its token is on stdout$`, lastLine(t, reg.stderr))
	runners := srv.Runners()
	require.Len(t, runners, 1)
	r := runners[0]
	assert.Equal(t, "test runner", r.Description)
	assert.Equal(t, []string{"docker", "linux"}, r.Tags)
	assert.False(t, r.RunUntagged)
	assert.True(t, r.Locked)
	assert.Equal(t, "runnerapi example runner", r.Info.Name)

	res := runRunner(t.Context(), "-url", srv.URL, "-token", token, "-once", "-interval", "10ms", "-workdir", t.TempDir())

	require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
	assert.Equal(t, runnerapi.StateSuccess, stateOf(t, srv, id))
	info, _ := srv.Build(id)
	assert.Equal(t, r.ID, info.RunnerID, "the registered runner took the build")
	assert.Contains(t, traceOf(srv, id), "hello from the registered runner\n")

	unreg := runRunner(t.Context(), "unregister", "-url", srv.URL, "-token", token, "-interval", "10ms")

	require.Equal(t, 0, unreg.code, "stderr: %s", unreg.stderr)
	assert.Empty(t, unreg.stdout)
	assert.Equal(t, "runner: unregistered the runner from the coordinator at "+srv.URL, lastLine(t, unreg.stderr))
	assert.NotContains(t, unreg.stderr, token)
	assert.Empty(t, srv.Runners())

	srv.EnqueueCommands("after", "true")
	gone := runRunner(t.Context(), "-url", srv.URL, "-token", token, "-once", "-interval", "10ms", "-workdir", t.TempDir())
	assert.Equal(t, 1, gone.code)
	assert.Equal(t, "runner: the coordinator at "+srv.URL+" refused the runner token", lastLine(t, gone.stderr))
}

// -run-untagged and -locked are sent only when given, so that the coordinator's defaults apply; the registration
// token can come from the environment.
func TestRegisterDefaultsAndTokenFromTheEnvironment(t *testing.T) {
	t.Setenv("REGISTRATION_TOKEN", registrationTestToken)
	srv := newRegistrationCoordinator(t)

	reg := runRunner(t.Context(), "register", "-url", srv.URL, "-interval", "10ms")

	require.Equal(t, 0, reg.code, "stderr: %s", reg.stderr)
	runners := srv.Runners()
	require.Len(t, runners, 1)
	assert.True(t, runners[0].RunUntagged, "GitLab's default")
	assert.False(t, runners[0].Locked)
	assert.Empty(t, runners[0].Tags)
}

func TestRegisterRefusedToken(t *testing.T) {
	t.Parallel()
	srv := newRegistrationCoordinator(t)

	reg := runRunner(t.Context(), "register", "-url", srv.URL, "-registration-token", "not-"+registrationTestToken, "-interval", "10ms")

	assert.Equal(t, 1, reg.code)
	assert.Empty(t, reg.stdout)
	lines := logLines(t, reg.stderr)
	assert.Equal(t, []string{"runner: the coordinator at " + srv.URL + " refused the registration token"}, lines)
	assert.Empty(t, srv.Runners())
}

func TestUnregisterUnknownToken(t *testing.T) {
	t.Parallel()
	srv := newRunnerCoordinator(t)

	res := runRunner(t.Context(), "unregister", "-url", srv.URL, "-token", "not-"+runnerTestToken, "-interval", "10ms")

	assert.Equal(t, 1, res.code)
	assert.Equal(t, []string{"runner: the coordinator at " + srv.URL + " refused the runner token"}, logLines(t, res.stderr))
	assert.Len(t, srv.Runners(), 1, "the known runner stays")
}

// A coordinator whose first two register calls fail, in two ways that may pass, still registers the runner: the
// failures are logged with their reason and delay, and the token is printed once.
func TestRegisterWaitsOutFailures(t *testing.T) {
	t.Parallel()
	srv := newRegistrationCoordinator(t)
	require.NoError(t, srv.ScriptFaults(runnerapitest.EndpointRunnerRegister,
		runnerapitest.FaultInternalError, runnerapitest.FaultDropBefore))

	reg := runRunner(t.Context(), "register", "-url", srv.URL, "-registration-token", registrationTestToken, "-interval", "10ms")

	require.Equal(t, 0, reg.code, "stderr: %s", reg.stderr)
	assert.Equal(t, 1, strings.Count(reg.stdout, "\n"), "one token: %q", reg.stdout)
	lines := logLines(t, reg.stderr)
	require.Len(t, lines, 3, "log:\n%s", reg.stderr)
	assert.Regexp(t, `^runner: registering the runner failed, trying again in [0-9.]+m?s: .*500 Internal Server Error$`, lines[0])
	assert.Regexp(t, `^runner: registering the runner failed, trying again in [0-9.]+m?s: .*(EOF|connection reset|broken pipe|use of closed network connection)`, lines[1])
	assert.Contains(t, lines[2], "runner: registered runner ")
	assert.Len(t, srv.Runners(), 1)
	assert.NotContains(t, reg.stderr, registrationTestToken)
}

// A runner started while its coordinator hiccups (a 500, a dropped connection, a 503 and a 429) comes up on its own
// and takes the build; each wait is a line with its reason and delay.
func TestStartUpWaitsOutFailures(t *testing.T) {
	t.Parallel()
	srv := newRunnerCoordinator(t)
	require.NoError(t, srv.ScriptFaults(runnerapitest.EndpointRegister, runnerapitest.FaultInternalError,
		runnerapitest.FaultDropBefore, runnerapitest.FaultServiceUnavailable, runnerapitest.FaultTooManyRequests))
	id := srv.EnqueueCommands("patient", "echo came up")

	res := runRunner(t.Context(), runnerArgs(srv, t.TempDir(), "-once")...)

	require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
	assert.Equal(t, runnerapi.StateSuccess, stateOf(t, srv, id))
	lines := logLines(t, res.stderr)
	var waits []string
	for _, l := range lines {
		if strings.Contains(l, "trying again in") {
			waits = append(waits, l)
		}
	}
	require.Len(t, waits, 4, "log:\n%s", res.stderr)
	// A connection dropped before the request was read shows, by timing, as EOF, a reset, a broken pipe or a write
	// on a closed connection. The 500 and the dropped connection may have been acted on: the runner waits them out itself. The 503 and the
	// 429 surely were not: the SDK sends the request again.
	assert.Regexp(t, `^runner: asking for a build failed, trying again in [0-9.]+m?s: .*500 Internal Server Error$`, waits[0])
	assert.Regexp(t, `^runner: asking for a build failed, trying again in [0-9.]+m?s: .*(EOF|connection reset|broken pipe|use of closed network connection)`, waits[1])
	assert.Regexp(t, `^runner: POST /ci/api/v1/builds/register failed, trying again in [0-9.]+m?s: .*503 Service Unavailable`, waits[2])
	assert.Regexp(t, `^runner: POST /ci/api/v1/builds/register failed, trying again in [0-9.]+m?s: .*429 Too Many Requests`, waits[3])
}

// A register request that gets no answer within -request-timeout is given up and waited out like any other
// failure that may pass.
func TestStartUpWaitsOutATimeout(t *testing.T) {
	t.Parallel()
	srv := newRunnerCoordinator(t)
	id := srv.EnqueueCommands("after-a-hang", "echo answered at last")
	proxy := proxyTo(t, srv)
	var hung sync.Once
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		first := false
		if r.URL.Path == "/ci/api/v1/builds/register" {
			hung.Do(func() { first = true })
		}
		if first {
			// The coordinator never answers the first register. The body read, the server sees the client leave.
			_, _ = io.Copy(io.Discard, r.Body)
			<-r.Context().Done()
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)

	res := runRunner(t.Context(), "-url", front.URL, "-token", runnerTestToken, "-interval", "10ms",
		"-request-timeout", "2s", "-once", "-workdir", t.TempDir())

	require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
	assert.Equal(t, runnerapi.StateSuccess, stateOf(t, srv, id))
	assert.Regexp(t, `(?m)^\S+ runner: asking for a build failed, trying again in [0-9.]+m?s: .*context deadline exceeded$`, res.stderr)
}

// A runner started before its coordinator (connections refused) waits until it listens.
func TestStartedBeforeTheCoordinator(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close()) // nothing listens there now: connections are refused
	srv := newRunnerCoordinator(t)
	id := srv.EnqueueCommands("late", "echo the coordinator came")

	p := startRunner(t.Context(), "-url", "http://"+addr, "-token", runnerTestToken, "-interval", "10ms", "-once", "-workdir", t.TempDir())
	p.awaitLog(t, "runner: asking for a build failed, trying again in ")
	// The coordinator comes up at the address the runner was given.
	l, err = net.Listen("tcp", addr)
	require.NoError(t, err, "the port was taken meanwhile")
	proxy := &http.Server{Handler: proxyTo(t, srv)}
	go func() { _ = proxy.Serve(l) }()
	t.Cleanup(func() { _ = proxy.Close() })
	res := p.await(t)

	require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
	assert.Equal(t, runnerapi.StateSuccess, stateOf(t, srv, id))
	assert.Contains(t, res.stderr, "connection refused")
	assert.NotContains(t, res.stderr, runnerTestToken)
}

// What waiting cannot mend ends the runner at once with one line after the start line: a refused token, an address
// that serves an HTML 404 (not the CI API), a certificate that does not verify.
func TestLastingFailuresExitAtOnce(t *testing.T) {
	t.Parallel()
	html404 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, "<html><head><title>404 Not Found</title></head><body>nginx</body></html>")
	}))
	t.Cleanup(html404.Close)
	coord := newRunnerCoordinator(t)
	pending := coord.EnqueueCommands("untouched", "true")
	tlsCoord := runnerapitest.NewUnstartedServer()
	t.Cleanup(tlsCoord.Close)
	tlsCoord.AddRunner(runnerTestToken)
	tlsCoord.StartTLS()

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"refused token", []string{"-url", coord.URL, "-token", "not-" + runnerTestToken},
			"runner: the coordinator at " + coord.URL + " refused the runner token"},
		{"HTML 404", []string{"-url", html404.URL, "-token", runnerTestToken},
			"runner: " + html404.URL + " does not serve the CI API (it answers 404 with a page that is not the coordinator's); check -url"},
		{"HTML 404 on register", []string{"register", "-url", html404.URL, "-registration-token", registrationTestToken},
			"runner: " + html404.URL + " does not serve the CI API (it answers 404 with a page that is not the coordinator's); check -url"},
		{"HTML 404 on unregister", []string{"unregister", "-url", html404.URL, "-token", runnerTestToken},
			"runner: " + html404.URL + " does not serve the CI API (it answers 404 with a page that is not the coordinator's); check -url"},
		{"certificate", []string{"-url", tlsCoord.URL, "-token", runnerTestToken},
			"runner: cannot talk to the coordinator at " + tlsCoord.URL + ": tls: failed to verify certificate: x509: certificate signed by unknown authority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Bounded, so that a runner that waits where it should not ends the test in failure, not in a hang.
			ctx, cancel := contextWithTimeout(t)
			defer cancel()
			res := runRunner(ctx, append(tc.args, "-interval", "10ms")...)

			assert.Equal(t, 1, res.code)
			assert.Empty(t, res.stdout)
			lines := logLines(t, res.stderr)
			assert.Equal(t, tc.want, lastLine(t, res.stderr))
			if tc.args[0] == "-url" {
				require.Len(t, lines, 2, "the start line and the reason:\n%s", res.stderr)
				assert.True(t, strings.HasPrefix(lines[0], "runner: runnerapi example runner "), lines[0])
			} else {
				assert.Len(t, lines, 1, "the reason alone:\n%s", res.stderr)
			}
			assert.NotContains(t, res.stderr, runnerTestToken)
			assert.NotContains(t, res.stderr, registrationTestToken)
		})
	}
	assert.Equal(t, runnerapi.StatePending, stateOf(t, coord, pending))
}

// fifoGate is a named pipe a build's script reads from: the script blocks until the test opens it.
type fifoGate string

func newFifoGate(t *testing.T, dir, name string) fifoGate {
	t.Helper()
	path := filepath.Join(dir, name)
	require.NoError(t, syscall.Mkfifo(path, 0o600))
	return fifoGate(path)
}

// wait is the shell line that blocks until the gate opens.
func (g fifoGate) wait() string { return "read line < " + shellQuote(string(g)) }

// open lets the script waiting at the gate go on.
func (g fifoGate) open(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(string(g), os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = io.WriteString(f, "go\n")
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

// awaitFile waits until a script has written path.
func awaitFile(t *testing.T, path string) {
	t.Helper()
	require.Eventually(t, func() bool { _, err := os.Stat(path); return err == nil }, 15*time.Second, 5*time.Millisecond,
		"no %s", path)
}

// -concurrent 3 runs three builds at once, each in its own directory, all through one client: each build waits at
// a gate that opens only once all three have started.
func TestConcurrentBuilds(t *testing.T) {
	t.Parallel()
	srv := newRunnerCoordinator(t)
	marks, workdir := t.TempDir(), t.TempDir()
	var ids []int64
	var gates []fifoGate
	for i := range 3 {
		gate := newFifoGate(t, marks, "gate"+string(rune('a'+i)))
		gates = append(gates, gate)
		// The mark appears by a rename, once written: awaitFile must not see it empty.
		started := shellQuote(filepath.Join(marks, "started")) + ".$CI_BUILD_ID"
		ids = append(ids, srv.Enqueue(runnerapi.Build{
			Name: "parallel",
			Commands: "pwd > " + started + ".tmp && mv " + started + ".tmp " + started + "\n" + gate.wait() +
				"\necho $CI_BUILD_ID > mine.txt\ncat mine.txt",
		}))
	}

	p := startRunner(t.Context(), runnerArgs(srv, workdir, "-concurrent", "3")...)
	var dirs []string
	for _, id := range ids {
		started := filepath.Join(marks, "started."+strconvI(id))
		awaitFile(t, started)
		data, err := os.ReadFile(started)
		require.NoError(t, err)
		dirs = append(dirs, strings.TrimSpace(string(data)))
	}
	// All three are running now; the builds are let go in an order other than the one they came in.
	for _, i := range []int{2, 0, 1} {
		gates[i].open(t)
	}
	for _, id := range ids {
		wctx, cancel := contextWithTimeout(t)
		state, err := srv.WaitFinished(wctx, id)
		cancel()
		require.NoError(t, err)
		assert.Equal(t, runnerapi.StateSuccess, state, "trace:\n%s", traceOf(srv, id))
		assert.Contains(t, traceOf(srv, id), strconvI(id)+"\nBuild succeeded\n", "each build sees only its own directory")
	}
	p.signals <- syscall.SIGQUIT
	res := p.await(t)

	require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
	slices.Sort(dirs)
	assert.Equal(t, []string{filepath.Join(workdir, "build-1"), filepath.Join(workdir, "build-2"), filepath.Join(workdir, "build-3")}, dirs)
	assert.Contains(t, res.stderr, "up to 3 at a time")
	assert.Equal(t, 3, strings.Count(res.stderr, "ended: success"))
}

// SIGQUIT stops taking builds and lets the running one finish, then the runner exits 0.
func TestSIGQUITLetsRunningBuildsFinish(t *testing.T) {
	t.Parallel()
	srv := newRunnerCoordinator(t)
	marks := t.TempDir()
	gate := newFifoGate(t, marks, "gate")
	started := filepath.Join(marks, "started")
	first := srv.EnqueueCommands("first", "touch "+shellQuote(started), gate.wait(), "echo finished")
	second := srv.EnqueueCommands("second", "true")

	p := startRunner(t.Context(), runnerArgs(srv, t.TempDir())...)
	awaitFile(t, started)
	p.signals <- syscall.SIGQUIT
	p.awaitLog(t, "runner: SIGQUIT: taking no more builds; the running ones finish, then the runner exits")
	gate.open(t)
	res := p.await(t)

	require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
	assert.Equal(t, runnerapi.StateSuccess, stateOf(t, srv, first))
	assert.Contains(t, traceOf(srv, first), "finished\nBuild succeeded\n")
	assert.Equal(t, runnerapi.StatePending, stateOf(t, srv, second), "no build is taken after SIGQUIT")
	assert.Equal(t, "runner: stopped", lastLine(t, res.stderr))
}

// SIGINT and SIGTERM cancel the running build: its processes are killed, its after_script runs, its trace is
// delivered and it is reported failed.
func TestInterruptCancelsRunningBuilds(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(signalName(sig), func(t *testing.T) {
			t.Parallel()
			srv := newRunnerCoordinator(t)
			pidFile := filepath.Join(t.TempDir(), "sleep.pid")
			id := srv.Enqueue(runnerapi.Build{Name: "sleeper", Commands: sleeperCommands(pidFile),
				Options: runnerapi.Options{AfterScript: []string{"echo cleaning up"}}})

			p := startRunner(t.Context(), runnerArgs(srv, t.TempDir())...)
			pid := waitPID(t, pidFile)
			p.signals <- sig
			res := p.await(t)

			require.Equal(t, 0, res.code, "every build was reported; stderr: %s", res.stderr)
			assertStopped(t, pid)
			assert.Equal(t, runnerapi.StateFailed, stateOf(t, srv, id))
			assert.Contains(t, traceOf(srv, id), "Running after_script\ncleaning up\nERROR: Build failed: the runner was stopped\n")
			assert.Contains(t, res.stderr, "runner: "+signalName(sig)+": canceling the running builds; they are reported failed, then the runner exits\n")
			assert.Contains(t, res.stderr, "runner: build 1 (sleeper) ended: failed, after ")
		})
	}
}

// A second SIGINT exits at once: the runner does not wait for the after_script of the build the first one
// canceled (which would run up to 30 seconds), and kills it.
func TestSecondInterruptExitsAtOnce(t *testing.T) {
	t.Parallel()
	srv := newRunnerCoordinator(t)
	dir := t.TempDir()
	scriptPID, afterPID := filepath.Join(dir, "script.pid"), filepath.Join(dir, "after.pid")
	id := srv.Enqueue(runnerapi.Build{Name: "stubborn", Commands: sleeperCommands(scriptPID),
		Options: runnerapi.Options{AfterScript: []string{sleeperCommands(afterPID)}}})

	p := startRunner(t.Context(), runnerArgs(srv, t.TempDir())...)
	waitPID(t, scriptPID)
	p.signals <- syscall.SIGINT
	pid := waitPID(t, afterPID)
	p.signals <- syscall.SIGINT
	res := p.await(t)

	assert.Equal(t, 1, res.code)
	assert.Equal(t, "runner: SIGINT again: exiting at once; the running builds are not reported", lastLine(t, res.stderr))
	awaitBuilds(t, p)
	assertStopped(t, pid)
	assert.Equal(t, runnerapi.StateRunning, stateOf(t, srv, id), "not reported")
}

// awaitBuilds waits for the builds a forced exit left behind, so that they do not outlive the test.
func awaitBuilds(t *testing.T, p *runnerProcess) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		p.builds.Wait()
		close(done)
	}()
	awaitClosed(t, done, "the builds left behind did not end")
}

// after_script runs after the script whatever its result, under a header in the trace; its failure or timeout
// does not change the build's state.
func TestAfterScript(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, script string
		after        []string
		state        runnerapi.BuildState
		trace        string
	}{
		{"after a failed script", "echo script; exit 4", []string{"echo after: $CI_BUILD_NAME", "echo second line"},
			runnerapi.StateFailed,
			"script\nRunning after_script\nafter: after a failed script\nsecond line\nERROR: Build failed: the script failed: exit status 4\n"},
		{"failing after a good script", "echo script", []string{"echo failing", "exit 3", "echo not reached"},
			runnerapi.StateSuccess,
			"script\nRunning after_script\nfailing\nWARNING: after_script failed: exit status 3; the build's result stands\nBuild succeeded\n"},
		{"none", "echo script", nil, runnerapi.StateSuccess, "script\nBuild succeeded\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newRunnerCoordinator(t)
			id := srv.Enqueue(runnerapi.Build{Name: tc.name, Commands: tc.script,
				Options: runnerapi.Options{AfterScript: tc.after}})

			res := runRunner(t.Context(), runnerArgs(srv, t.TempDir(), "-once")...)

			require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
			assert.Equal(t, tc.state, stateOf(t, srv, id))
			assert.True(t, strings.HasSuffix(traceOf(srv, id), tc.trace), "trace:\n%s", traceOf(srv, id))
		})
	}
}

// after_script is bounded: past -after-script-timeout it is killed, and the build's result stands.
func TestAfterScriptTimeout(t *testing.T) {
	t.Parallel()
	srv := newRunnerCoordinator(t)
	pidFile := filepath.Join(t.TempDir(), "after.pid")
	id := srv.Enqueue(runnerapi.Build{Name: "slow-cleanup", Commands: "echo script",
		Options: runnerapi.Options{AfterScript: []string{sleeperCommands(pidFile)}}})

	p := startRunner(t.Context(), runnerArgs(srv, t.TempDir(), "-once", "-after-script-timeout", "2s")...)
	pid := waitPID(t, pidFile)
	res := p.await(t)

	require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
	assertStopped(t, pid)
	assert.Equal(t, runnerapi.StateSuccess, stateOf(t, srv, id))
	assert.Contains(t, traceOf(srv, id), "Running after_script\nWARNING: after_script timed out after 2s; the build's result stands\nBuild succeeded\n")
}

// after_script also runs after the coordinator canceled the build, and after the build timed out.
func TestAfterScriptAfterCancelAndTimeout(t *testing.T) {
	t.Parallel()
	for _, canceled := range []bool{true, false} {
		name := map[bool]string{true: "canceled", false: "timed out"}[canceled]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := newRunnerCoordinator(t)
			dir := t.TempDir()
			pidFile, ran := filepath.Join(dir, "sleep.pid"), filepath.Join(dir, "after-ran")
			b := runnerapi.Build{Name: "stopped", Commands: sleeperCommands(pidFile),
				Options: runnerapi.Options{AfterScript: []string{"echo $CI_BUILD_ID > " + shellQuote(ran)}}}
			if !canceled {
				b.Timeout = 1
			}
			id := srv.Enqueue(b)

			p := startRunner(t.Context(), runnerArgs(srv, t.TempDir(), "-once")...)
			pid := waitPID(t, pidFile)
			if canceled {
				require.NoError(t, srv.Cancel(id))
			}
			res := p.await(t)

			require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
			assertStopped(t, pid)
			data, err := os.ReadFile(ran)
			require.NoError(t, err, "after_script did not run")
			assert.Equal(t, "1\n", string(data))
			if !canceled {
				assert.Equal(t, runnerapi.StateFailed, stateOf(t, srv, id))
				assert.Contains(t, traceOf(srv, id), "Running after_script\nERROR: Build failed: the build timed out after 1s\n")
			}
		})
	}
}

// Nothing is logged per idle poll: a runner that polls an empty queue many times says only its start line.
func TestQuietWhileIdle(t *testing.T) {
	t.Parallel()
	srv := newRunnerCoordinator(t)
	proxy := proxyTo(t, srv)
	var mu sync.Mutex
	polls := 0
	polled := make(chan struct{})
	srv2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		polls++
		if polls == 20 {
			close(polled)
		}
		mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv2.Close)

	p := startRunner(t.Context(), "-url", srv2.URL, "-token", runnerTestToken, "-interval", "1ms", "-workdir", t.TempDir())
	awaitClosed(t, polled, "the runner did not poll")
	p.signals <- syscall.SIGQUIT
	res := p.await(t)

	require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
	lines := logLines(t, res.stderr)
	require.Len(t, lines, 3, "log:\n%s", res.stderr)
	assert.Contains(t, lines[0], "taking builds from")
	assert.Contains(t, lines[1], "SIGQUIT")
	assert.Equal(t, "runner: stopped", lines[2])
}

func strconvI(id int64) string { return strconv.FormatInt(id, 10) }

// runner -h names every command; each command's -h lists its flags, and none prints a token from the environment.
func TestHelpNamesTheCommands(t *testing.T) {
	t.Setenv("REGISTRATION_TOKEN", registrationTestToken)
	t.Setenv("RUNNER_TOKEN", runnerTestToken)

	help := runRunner(t.Context(), "-h")
	assert.Equal(t, 0, help.code)
	assert.Contains(t, help.stdout, "runner register -url URL -registration-token TOKEN")
	assert.Contains(t, help.stdout, "runner unregister -url URL -token TOKEN")
	assert.Contains(t, help.stdout, "-concurrent")
	for _, command := range []string{"register", "unregister"} {
		res := runRunner(t.Context(), command, "-h")
		assert.Equal(t, 0, res.code, command)
		assert.Contains(t, res.stdout, "Usage: runner "+command+" -url URL", command)
		assert.Contains(t, res.stdout, "-interval", command)
		assert.NotContains(t, res.stdout+res.stderr, registrationTestToken, command)
		assert.NotContains(t, res.stdout+res.stderr, runnerTestToken, command)
	}
	reg := runRunner(t.Context(), "register", "-h")
	assert.Contains(t, reg.stdout, "-tag-list")
	assert.Contains(t, reg.stdout, "-run-untagged")
}
