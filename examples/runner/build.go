//go:build unix

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/runnerapi/runnerapi"
)

// afterScriptStoppedBound is the longest after_script runs once the build was stopped (canceled, timed out, or
// the runner asked to stop): it must not hold up a runner that was told to go.
const afterScriptStoppedBound = 30 * time.Second

// runBuild runs one build (or job) and reports how it ended, logging when it was taken and when it ended. It
// returns false when the end could not be reported.
func runBuild(stop *stopper, co coordinator, w *work, readErr error, cfg config, log *logger) bool {
	start := time.Now()
	log.printf("build %d (%s): taken", w.id, w.name)
	// The trace and the report outlive a first signal, so that a canceled build is still recorded and reported.
	keep := stop.delivery
	end := outcome{state: runnerapi.StateFailed, failureReason: "runner_system_failure"}
	trace, err := co.traceWriter(keep, w, &runnerapi.TraceOptions{FlushInterval: cfg.interval, KeepAlive: cfg.interval})
	switch {
	case err != nil:
		log.printf("build %d (%s): %v", w.id, w.name, err)
	case readErr != nil:
		fmt.Fprintf(trace, "ERROR: %v\n", readErr)
	default:
		end = execute(stop, co.client(), w, cfg, trace)
	}
	// The whole trace is delivered before the state, so the coordinator never shows a finished build whose trace
	// still grows.
	var traceBytes int64
	if trace != nil {
		if err := trace.Close(); err != nil {
			log.printf("build %d (%s): sending the trace failed: %v", w.id, w.name, err)
		}
		traceBytes = trace.Stats().Length
	}
	ended := func(how string) {
		log.printf("build %d (%s) ended: %s, after %s, trace %d bytes", w.id, w.name, how, roundWait(time.Since(start)), traceBytes)
	}
	if end.state == runnerapi.StateCanceled {
		ended(fmt.Sprintf("stopped, the coordinator says it is %s", trace.Status()))
		return true
	}
	err = co.report(keep, w, end, trace)
	switch {
	case errors.Is(err, runnerapi.ErrNotFound) || errors.Is(err, runnerapi.ErrForbidden):
		// The build ended on the coordinator's side meanwhile (canceled, erased): there is nothing left to report.
		ended(fmt.Sprintf("%s, but the coordinator no longer runs it", end.state))
		return true
	case err != nil:
		ended(fmt.Sprintf("%s, but reporting it failed: %v", end.state, err))
		return false
	}
	ended(string(end.state))
	return true
}

// errStopped is the cause of a build's end when the coordinator canceled it (or marked it failed).
var errStopped = errors.New("the coordinator stopped the build")

// errCanceling is the cause of a build's end when the coordinator asked for a graceful cancel (the runner API v4's
// canceling): the script is stopped, the after_script runs, and the build is reported as usual.
var errCanceling = errors.New("the coordinator asked to cancel the build")

// execute runs the build in a fresh directory of its own: it unpacks the artifacts of the builds it depends on,
// runs the script, then the after_script, and uploads the build's artifacts, writing what happens to the trace. It
// returns how the build ended, with the state StateCanceled when the coordinator stopped the build.
func execute(stop *stopper, c *runnerapi.Client, w *work, cfg config, trace *runnerapi.TraceWriter) outcome {
	timeout := w.timeout
	if timeout <= 0 {
		timeout = time.Hour
	}
	// One context ends all the build does, and its cause says why: the coordinator stopped the build or asked to
	// cancel it, its timeout passed, or the runner was asked to stop.
	bctx, stopBuild := context.WithCancelCause(stop.builds)
	defer stopBuild(nil)
	errTimedOut := fmt.Errorf("the build timed out after %s", timeout)
	bctx, cancel := context.WithTimeoutCause(bctx, timeout, errTimedOut)
	defer cancel()
	go func() {
		select {
		case <-trace.Canceled():
			stopBuild(errStopped)
		case <-trace.CancelRequested():
			stopBuild(errCanceling)
		case <-bctx.Done():
		}
	}()

	fmt.Fprintf(trace, "Running build %d (%s) with the runnerapi example runner %s\n", w.id, w.name, runnerapi.Version)
	dir := filepath.Join(cfg.workdir, "build-"+strconv.FormatInt(w.id, 10))
	err := prepare(bctx, c, w, dir, trace)
	scriptRan := false
	if err == nil {
		defer os.RemoveAll(dir + ".files")
		env := buildEnv(w, dir, trace)
		// The scripts live beside the build's directory, not in it, where the artifacts paths could pick them up.
		err = runScript(bctx, stop.groups, w.script, dir, dir+".sh", env, trace)
		scriptRan = true
		afterScript(stop.delivery, stop.groups, bctx.Err() != nil, w, dir, env, cfg, trace)
	}
	// artifacts:when is on_success unless it says on_failure or always.
	for _, a := range w.artifacts {
		if bctx.Err() != nil || len(a.paths) == 0 || !(a.when == "always" || (a.when == "on_failure") == (err != nil)) {
			continue
		}
		if uerr := upload(bctx, c, w, a, dir, trace); err == nil {
			err = uerr
		}
	}
	end := outcome{state: runnerapi.StateFailed}
	cause := context.Cause(bctx)
	switch {
	case errors.Is(cause, errStopped):
		fmt.Fprintf(trace, "Build stopped: the coordinator says it is %s\n", trace.Status())
		return outcome{state: runnerapi.StateCanceled}
	case errors.Is(cause, errCanceling):
		// Reported failed like any stopped build: the coordinator turns a canceling job's final update into
		// canceled whatever it says.
		err, end.failureReason = cause, "script_failure"
	case stop.builds.Err() != nil:
		err, end.failureReason = errors.New("the runner was stopped"), "runner_interrupted"
	case errors.Is(cause, errTimedOut):
		err, end.failureReason = cause, "job_execution_timeout"
	case err != nil && scriptRan:
		end.failureReason = "script_failure"
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			end.exitCode = exit.ExitCode()
		}
	case err != nil:
		end.failureReason = "runner_system_failure"
	}
	if err != nil {
		fmt.Fprintf(trace, "ERROR: Build failed: %v\n", err)
		return end
	}
	fmt.Fprintln(trace, "Build succeeded")
	return outcome{state: runnerapi.StateSuccess}
}

// afterScript runs the build's after_script, whatever the script's result, under a header in the trace. Its
// failure is told in the trace and changes nothing else. It runs within ctx, which a first signal does not end,
// for at most -after-script-timeout, or afterScriptStoppedBound once the build was stopped.
func afterScript(ctx context.Context, groups *processGroups, stopped bool, w *work, dir string, env []string, cfg config, trace io.Writer) {
	if len(w.afterScript) == 0 {
		return
	}
	bound := cfg.afterScriptTimeout
	if stopped {
		bound = min(bound, afterScriptStoppedBound)
	}
	actx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	fmt.Fprintln(trace, "Running after_script")
	err := runScript(actx, groups, strings.Join(w.afterScript, "\n"), dir, dir+".after.sh", env, trace)
	switch {
	case errors.Is(actx.Err(), context.DeadlineExceeded):
		fmt.Fprintf(trace, "WARNING: after_script timed out after %s; the build's result stands\n", bound)
	case err != nil:
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			err = exit
		}
		fmt.Fprintf(trace, "WARNING: after_script failed: %v; the build's result stands\n", err)
	}
}

// prepare makes the build's directory afresh and unpacks into it the artifacts of the builds it depends on.
func prepare(ctx context.Context, c *runnerapi.Client, w *work, dir string, trace io.Writer) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, dep := range w.dependencies {
		fmt.Fprintf(trace, "Downloading the artifacts of build %d (%s)\n", dep.id, dep.name)
		// Each dependency's own token downloads its artifacts.
		if _, _, err := c.Artifacts.Extract(ctx, dep.id, dir, nil, runnerapi.WithToken(dep.token)); err != nil {
			return fmt.Errorf("downloading the artifacts of build %d: %w", dep.id, err)
		}
	}
	return nil
}

// upload zips the paths of one of the build's artifacts uploads and uploads them. Paths that match nothing are a
// warning, not a failure. Only zip archives are made: a report of another format is a warning too.
func upload(ctx context.Context, c *runnerapi.Client, w *work, a artifactUpload, dir string, trace io.Writer) error {
	if a.artifactFormat != "" && a.artifactFormat != "zip" {
		fmt.Fprintf(trace, "WARNING: artifacts of type %s need the %s format, which this runner does not make; skipped\n", a.artifactType, a.artifactFormat)
		return nil
	}
	fmt.Fprintf(trace, "Uploading artifacts: %s\n", strings.Join(a.paths, " "))
	opts := &runnerapi.UploadOptions{ExpireIn: a.expireIn, ArtifactType: a.artifactType, ArtifactFormat: a.artifactFormat}
	// artifacts.name names the archive; only its last element, so that it cannot name a path.
	if name := path.Base(strings.ReplaceAll(a.name, "\\", "/")); a.name != "" && name != "/" && name != "." && name != ".." {
		opts.Filename = name + ".zip"
	}
	up, _, err := c.Artifacts.UploadPaths(ctx, w.id, dir, a.paths, opts, runnerapi.WithToken(w.token))
	switch {
	case errors.Is(err, runnerapi.ErrNoArtifactFiles):
		fmt.Fprintln(trace, "WARNING: no file matches the artifacts paths; nothing uploaded")
		return nil
	case err != nil:
		return fmt.Errorf("uploading the artifacts: %w", err)
	}
	if up.ArtifactsFile.Filename == "" {
		// The runner API v4 answers an upload with no description of the file.
		fmt.Fprintln(trace, "Uploaded the artifacts")
		return nil
	}
	fmt.Fprintf(trace, "Uploaded %s (%d bytes)\n", up.ArtifactsFile.Filename, up.ArtifactsFile.Size)
	return nil
}

// runScript runs commands with "sh -e" in dir, from the file script, their output going to the trace, until they
// end or ctx does. Either way it then kills the script's process group, so that nothing the script started
// outlives it; groups holds the group meanwhile, for an exit that cannot wait for that.
func runScript(ctx context.Context, groups *processGroups, commands, dir, script string, env []string, trace io.Writer) error {
	if err := os.WriteFile(script, []byte(commands+"\n"), 0o600); err != nil {
		return err
	}
	defer os.Remove(script)
	// The output goes through a pipe the runner reads itself, not through exec's copying, so that the script's end
	// is seen at once even while something it left behind holds the pipe open.
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	defer pr.Close()
	cmd := exec.Command("sh", "-e", script)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, env, pw, pw
	// A process group of its own lets the runner kill all the script started, however deep.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	pw.Close()
	if err != nil {
		return fmt.Errorf("starting the script: %w", err)
	}
	groups.add(cmd.Process.Pid)
	defer groups.remove(cmd.Process.Pid)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		if _, err := io.Copy(trace, pr); err != nil {
			_, _ = io.Copy(io.Discard, pr) // a failed trace must not block the script on a full pipe
		}
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	select {
	case err = <-exited:
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // what the script left running in the background
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		err = <-exited
	}
	// A process that left the group may still hold the pipe; it must not keep the build running.
	select {
	case <-copied:
	case <-time.After(time.Second):
		pr.Close()
		<-copied
	}
	if err != nil {
		return fmt.Errorf("the script failed: %w", err)
	}
	return nil
}

// buildEnv is the environment of a build's scripts: a few variables of the runner's own environment (never all of
// it, which holds the runner token), the build's identity, and the build's variables, which win over the others.
func buildEnv(w *work, dir string, trace io.Writer) []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "USER", "LANG", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	env = append(env, "CI=true", "GITLAB_CI=true")
	env = append(env, w.identity...)
	env = append(env, "CI_PROJECT_DIR="+dir)
	for _, v := range w.variables {
		if v.key == "" || strings.ContainsAny(v.key, "=/\x00") || (!v.file && strings.Contains(v.value, "\x00")) {
			fmt.Fprintf(trace, "WARNING: variable %q cannot be put in the environment; skipped\n", v.key)
			continue
		}
		value := v.value
		if v.file {
			// A File variable (runner API v4) is the path of a file holding its value, beside the build's
			// directory so that artifacts paths cannot pick it up; execute removes it when the build ends.
			files := dir + ".files"
			value = filepath.Join(files, v.key)
			err := os.MkdirAll(files, 0o700)
			if err == nil {
				err = os.WriteFile(value, []byte(v.value), 0o600)
			}
			if err != nil {
				fmt.Fprintf(trace, "WARNING: the file of variable %q cannot be written; skipped\n", v.key)
				continue
			}
		}
		env = append(env, v.key+"="+value)
	}
	return env
}
