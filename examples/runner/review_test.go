//go:build unix

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/runnerapi/runnerapi"
)

// A second SIGINT makes the runner process exit at once, and the after_script the first one left running dies
// with it: the script runs in a process group of its own, which the terminal's SIGINT does not reach, so only the
// runner can kill it. This runs the real program, whose main exits as soon as run returns, without waiting for the
// builds' goroutines.
func TestSecondInterruptKillsTheAfterScriptOfTheProcess(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "runner")
	build := exec.Command("go", "build", "-o", bin, ".")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)

	srv := newRunnerCoordinator(t)
	dir := t.TempDir()
	scriptPID, afterPID := filepath.Join(dir, "script.pid"), filepath.Join(dir, "after.pid")
	srv.Enqueue(runnerapi.Build{Name: "stubborn", Commands: sleeperCommands(scriptPID),
		Options: runnerapi.Options{AfterScript: []string{sleeperCommands(afterPID)}}})

	cmd := exec.Command(bin, runnerArgs(srv, t.TempDir())...)
	cmd.Stderr = new(syncBuffer)
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})

	waitPID(t, scriptPID)
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	pid := waitPID(t, afterPID)
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	select {
	case err := <-exited:
		exited <- err
		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit)
		assert.Equal(t, 1, exit.ExitCode(), "stderr: %s", cmd.Stderr)
	case <-time.After(15 * time.Second):
		t.Fatalf("the runner did not exit; its log:\n%s", cmd.Stderr)
	}
	assertStopped(t, pid)
	_ = os.Remove(afterPID)
}

// A workdir the runner cannot create builds in ends the runner at start-up, before it takes a build: otherwise it
// takes every build the coordinator has and fails each one in turn.
func TestUnusableWorkdirTakesNoBuild(t *testing.T) {
	t.Parallel()
	srv := newRunnerCoordinator(t)
	file := filepath.Join(t.TempDir(), "a-file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	id := srv.Enqueue(runnerapi.Build{Name: "first", Commands: "echo hi"})

	res := runRunner(t.Context(), runnerArgs(srv, filepath.Join(file, "work"), "-once")...)

	assert.Equal(t, 1, res.code, "stderr: %s", res.stderr)
	assert.Contains(t, res.stderr, "work")
	assert.Equal(t, runnerapi.StatePending, stateOf(t, srv, id), "stderr: %s", res.stderr)
}

// What a build brings into the runner's log (its name, here) cannot forge or hide lines there: a carriage return,
// a terminal's escape sequence or a Unicode line separator is shown escaped, and each event stays one line.
func TestBuildNamesCannotForgeLogLines(t *testing.T) {
	t.Parallel()
	srv := newRunnerCoordinator(t)
	name := "evil\r2026-12-01T00:00:00.000Z runner: forged\x1b[2K\u2028\u0085x"
	srv.Enqueue(runnerapi.Build{Name: name, Commands: "echo hi"})

	res := runRunner(t.Context(), runnerArgs(srv, t.TempDir(), "-once")...)

	require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
	assert.NotContains(t, res.stderr, "\r")
	assert.NotContains(t, res.stderr, "\x1b")
	assert.NotContains(t, res.stderr, "\u2028")
	assert.NotContains(t, res.stderr, "\u0085")
	assert.Contains(t, res.stderr, `(evil\r2026-12-01T00:00:00.000Z runner: forged\x1b[2K\u2028\u0085x): taken`)
}
