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
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/runnerapi/runnerapi"
)

// afterScriptStoppedBound is the longest after_script runs once the build was stopped (canceled, timed out, or
// the runner asked to stop): it must not hold up a runner that was told to go.
const afterScriptStoppedBound = 30 * time.Second

// runBuild runs one build and reports how it ended, logging when it was taken and when it ended. It returns false
// when the end could not be reported.
func runBuild(stop *stopper, c *runnerapi.Client, b *runnerapi.Build, readErr error, cfg config, log *logger) bool {
	start := time.Now()
	log.printf("build %d (%s): taken", b.ID, b.Name)
	// The trace and the report outlive a first signal, so that a canceled build is still recorded and reported.
	keep := stop.delivery
	state := runnerapi.StateFailed
	trace, err := c.NewBuildTraceWriter(keep, b, &runnerapi.TraceOptions{FlushInterval: cfg.interval, KeepAlive: cfg.interval})
	switch {
	case err != nil:
		log.printf("build %d (%s): %v", b.ID, b.Name, err)
	case readErr != nil:
		fmt.Fprintf(trace, "ERROR: %v\n", readErr)
	default:
		state = execute(stop, c, b, cfg, trace)
	}
	// The whole trace is delivered before the state, so the coordinator never shows a finished build whose trace
	// still grows.
	var traceBytes int64
	if trace != nil {
		if err := trace.Close(); err != nil {
			log.printf("build %d (%s): sending the trace failed: %v", b.ID, b.Name, err)
		}
		traceBytes = trace.Stats().Length
	}
	ended := func(how string) {
		log.printf("build %d (%s) ended: %s, after %s, trace %d bytes", b.ID, b.Name, how, roundWait(time.Since(start)), traceBytes)
	}
	if state == runnerapi.StateCanceled {
		ended(fmt.Sprintf("stopped, the coordinator says it is %s", trace.Status()))
		return true
	}
	_, err = c.Builds.Update(keep, b.ID, &runnerapi.UpdateOptions{State: state})
	switch {
	case errors.Is(err, runnerapi.ErrNotFound) || errors.Is(err, runnerapi.ErrForbidden):
		// The build ended on the coordinator's side meanwhile (canceled, erased): there is nothing left to report.
		ended(fmt.Sprintf("%s, but the coordinator no longer runs it", state))
		return true
	case err != nil:
		ended(fmt.Sprintf("%s, but reporting it failed: %v", state, err))
		return false
	}
	ended(string(state))
	return true
}

// errStopped is the cause of a build's end when the coordinator canceled it (or marked it failed).
var errStopped = errors.New("the coordinator stopped the build")

// execute runs the build in a fresh directory of its own: it unpacks the artifacts of the builds it depends on,
// runs the script, then the after_script, and uploads the build's artifacts, writing what happens to the trace. It
// returns the build's state, or StateCanceled when the coordinator stopped the build.
func execute(stop *stopper, c *runnerapi.Client, b *runnerapi.Build, cfg config, trace *runnerapi.TraceWriter) runnerapi.BuildState {
	timeout := time.Duration(b.Timeout) * time.Second
	if timeout <= 0 {
		timeout = time.Hour
	}
	// One context ends all the build does, and its cause says why: the coordinator stopped the build, its timeout
	// passed, or the runner was asked to stop.
	bctx, stopBuild := context.WithCancelCause(stop.builds)
	defer stopBuild(nil)
	bctx, cancel := context.WithTimeoutCause(bctx, timeout, fmt.Errorf("the build timed out after %s", timeout))
	defer cancel()
	go func() {
		select {
		case <-trace.Canceled():
			stopBuild(errStopped)
		case <-bctx.Done():
		}
	}()

	fmt.Fprintf(trace, "Running build %d (%s) with the runnerapi example runner %s\n", b.ID, b.Name, runnerapi.Version)
	dir := filepath.Join(cfg.workdir, "build-"+strconv.FormatInt(b.ID, 10))
	err := prepare(bctx, c, b, dir, trace)
	if err == nil {
		env := buildEnv(b, dir, trace)
		// The scripts live beside the build's directory, not in it, where the artifacts paths could pick them up.
		err = runScript(bctx, stop.groups, b.Commands, dir, dir+".sh", env, trace)
		afterScript(stop.delivery, stop.groups, bctx.Err() != nil, b, dir, env, cfg, trace)
	}
	// artifacts:when is on_success unless it says on_failure or always.
	a := b.Options.Artifacts
	if bctx.Err() == nil && len(a.Paths) > 0 && (a.When == "always" || (a.When == "on_failure") == (err != nil)) {
		if uerr := upload(bctx, c, b, dir, trace); err == nil {
			err = uerr
		}
	}
	switch {
	case errors.Is(context.Cause(bctx), errStopped):
		fmt.Fprintf(trace, "Build stopped: the coordinator says it is %s\n", trace.Status())
		return runnerapi.StateCanceled
	case stop.builds.Err() != nil:
		err = errors.New("the runner was stopped")
	case bctx.Err() != nil:
		err = context.Cause(bctx)
	}
	if err != nil {
		fmt.Fprintf(trace, "ERROR: Build failed: %v\n", err)
		return runnerapi.StateFailed
	}
	fmt.Fprintln(trace, "Build succeeded")
	return runnerapi.StateSuccess
}

// afterScript runs the build's options.after_script, whatever the script's result, under a header in the trace.
// Its failure is told in the trace and changes nothing else. It runs within ctx, which a first signal does not end,
// for at most -after-script-timeout, or afterScriptStoppedBound once the build was stopped.
func afterScript(ctx context.Context, groups *processGroups, stopped bool, b *runnerapi.Build, dir string, env []string, cfg config, trace io.Writer) {
	if len(b.Options.AfterScript) == 0 {
		return
	}
	bound := cfg.afterScriptTimeout
	if stopped {
		bound = min(bound, afterScriptStoppedBound)
	}
	actx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	fmt.Fprintln(trace, "Running after_script")
	err := runScript(actx, groups, strings.Join(b.Options.AfterScript, "\n"), dir, dir+".after.sh", env, trace)
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

// prepare makes the build's directory afresh and unpacks into it the artifacts of the builds it depends on: all of
// them, or only those its options.dependencies names when it has that list.
func prepare(ctx context.Context, c *runnerapi.Client, b *runnerapi.Build, dir string, trace io.Writer) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	wanted := b.Options.Dependencies
	for _, dep := range b.DependsOnBuilds {
		if dep.ArtifactsFile.Filename == "" || (wanted != nil && !slices.Contains(wanted, dep.Name)) {
			continue
		}
		fmt.Fprintf(trace, "Downloading the artifacts of build %d (%s)\n", dep.ID, dep.Name)
		// Each dependency's own token downloads its artifacts.
		if _, _, err := c.Artifacts.Extract(ctx, dep.ID, dir, nil, runnerapi.WithToken(dep.Token)); err != nil {
			return fmt.Errorf("downloading the artifacts of build %d: %w", dep.ID, err)
		}
	}
	return nil
}

// upload zips the build's artifacts paths and uploads them. Paths that match nothing are a warning, not a failure.
func upload(ctx context.Context, c *runnerapi.Client, b *runnerapi.Build, dir string, trace io.Writer) error {
	a := b.Options.Artifacts
	fmt.Fprintf(trace, "Uploading artifacts: %s\n", strings.Join(a.Paths, " "))
	opts := &runnerapi.UploadOptions{ExpireIn: a.ExpireIn}
	// artifacts.name names the archive; only its last element, so that it cannot name a path.
	if name := path.Base(strings.ReplaceAll(a.Name, "\\", "/")); a.Name != "" && name != "/" && name != "." && name != ".." {
		opts.Filename = name + ".zip"
	}
	up, _, err := c.Artifacts.UploadPaths(ctx, b.ID, dir, a.Paths, opts, runnerapi.WithToken(b.Token))
	switch {
	case errors.Is(err, runnerapi.ErrNoArtifactFiles):
		fmt.Fprintln(trace, "WARNING: no file matches the artifacts paths; nothing uploaded")
		return nil
	case err != nil:
		return fmt.Errorf("uploading the artifacts: %w", err)
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
func buildEnv(b *runnerapi.Build, dir string, trace io.Writer) []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "USER", "LANG", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	env = append(env,
		"CI=true",
		"GITLAB_CI=true",
		"CI_BUILD_ID="+strconv.FormatInt(b.ID, 10),
		"CI_BUILD_NAME="+b.Name,
		"CI_BUILD_STAGE="+b.Stage,
		"CI_BUILD_REF="+b.SHA,
		"CI_BUILD_BEFORE_SHA="+b.BeforeSHA,
		"CI_BUILD_REF_NAME="+b.Ref,
		"CI_BUILD_TOKEN="+b.Token, // the build's own token, as GitLab's runner gives it; the trace masks it
		"CI_PROJECT_ID="+strconv.FormatInt(b.ProjectID, 10),
		"CI_PROJECT_DIR="+dir,
	)
	for _, v := range b.Variables {
		if v.Key == "" || strings.ContainsAny(v.Key, "=\x00") || strings.Contains(v.Value, "\x00") {
			fmt.Fprintf(trace, "WARNING: variable %q cannot be put in the environment; skipped\n", v.Key)
			continue
		}
		env = append(env, v.Key+"="+v.Value)
	}
	return env
}
