//go:build unix

// Command runner is a minimal CI runner built only on runnerapi's public API. It takes builds from a coordinator,
// unpacks the artifacts of the builds they depend on, runs their commands with "sh -e", streams the output as the
// build's trace, uploads the build's artifacts and reports the result.
//
// Usage:
//
//	runner [-url https://gitlab.example.com] [-token TOKEN] [-once] [-workdir DIR] [-interval 3s]
//
// The runner token can come from the RUNNER_TOKEN environment variable instead of -token, which keeps it out of
// ps. Without -url the runner starts an embedded fake coordinator (runnerapitest) with a two-build demo pipeline,
// runs both builds, prints their traces and a summary, and exits.
//
// The exit status is 0 when every build the runner took was run and its final state reported, whatever the build's
// own result, and non-zero with one line on stderr otherwise (a refused token, an unreachable coordinator).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/runnerapi/runnerapi"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first signal stops the build in hand, which is still reported; a second one ends the runner at once.
	context.AfterFunc(ctx, stop)
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// config is what the flags say.
type config struct {
	url      string
	token    string
	limit    int // builds to run before exiting; 0 for no limit
	workdir  string
	interval time.Duration
}

// run is the whole program but for the process it runs in, so that tests can call it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "runner: %v (see -h)\n", err)
		return 2
	}
	if cfg.workdir == "" {
		dir, err := os.MkdirTemp("", "runnerapi-runner-")
		if err != nil {
			fmt.Fprintln(stderr, "runner:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		cfg.workdir = dir
	}
	if cfg.url == "" {
		err = demo(ctx, cfg, stdout)
	} else {
		err = serve(ctx, cfg, stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "runner:", strings.ReplaceAll(err.Error(), "\n", " "))
		return 1
	}
	return 0
}

func parseFlags(args []string, stdout io.Writer) (config, error) {
	var cfg config
	var once bool
	fs := flag.NewFlagSet("runner", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // run reports a bad flag in one line; -h prints the usage on stdout
	fs.StringVar(&cfg.url, "url", "", "coordinator address, such as https://gitlab.example.com; without it, run a demo pipeline on an embedded coordinator")
	// No default shown here: the usage must not print a token taken from the environment.
	fs.StringVar(&cfg.token, "token", "", "runner token (default $RUNNER_TOKEN, which keeps it out of ps)")
	fs.BoolVar(&once, "once", false, "run one build, then exit")
	fs.StringVar(&cfg.workdir, "workdir", "", "directory builds run in (default: a temporary directory, removed on exit)")
	fs.DurationVar(&cfg.interval, "interval", runnerapi.DefaultPollInterval, "how often to ask for a build, and for a running build's status")
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprintln(stdout, "Usage: runner [-url URL] [-token TOKEN] [-once] [-workdir DIR] [-interval DURATION]")
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return cfg, err
	case err != nil:
		return cfg, err
	case fs.NArg() > 0:
		return cfg, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case cfg.interval <= 0:
		return cfg, errors.New("-interval must be positive")
	}
	if once {
		cfg.limit = 1
	}
	if cfg.token == "" {
		cfg.token = os.Getenv("RUNNER_TOKEN")
	}
	if cfg.workdir != "" {
		cfg.workdir, err = filepath.Abs(cfg.workdir)
	}
	return cfg, err
}

// serve takes builds from the coordinator at cfg.url and runs them one at a time, until it has run cfg.limit of
// them or ctx ends. Its error says why it could not go on; a build's own failure is not one.
func serve(ctx context.Context, cfg config, out io.Writer) error {
	if cfg.token == "" {
		return errors.New("no runner token: set RUNNER_TOKEN or use -token")
	}
	// Retries back off in proportion to the poll interval, so that a runner told to poll fast also gives up fast on
	// a coordinator it cannot reach. At the default interval this is the SDK's default policy.
	policy := runnerapi.DefaultRetryPolicy()
	policy.BaseDelay, policy.MaxDelay = cfg.interval/12, 5*cfg.interval
	c, err := runnerapi.NewClient(cfg.url, runnerapi.WithRunnerToken(cfg.token), runnerapi.WithRetryPolicy(policy))
	if err != nil {
		return err
	}
	info := runnerapi.RunnerInfo{Name: "runnerapi example runner", Version: runnerapi.Version, Platform: runtime.GOOS, Architecture: runtime.GOARCH}

	// The first request is a plain Register: Next would wait out an unreachable coordinator, and the runner should
	// rather say at once that it cannot reach it or that its token is refused.
	b, resp, err := c.Builds.Register(ctx, &runnerapi.RegisterOptions{Info: info})
	lastUpdate := ""
	for taken := 0; ; {
		switch {
		case b != nil:
			// A build that comes with an error is assigned to this runner but could not be read in full: runBuild
			// reports it failed rather than leave it running on the coordinator.
			if err := runBuild(ctx, c, b, err, cfg, out); err != nil {
				return err
			}
			if taken++; taken == cfg.limit {
				return nil
			}
			lastUpdate = ""
		case ctx.Err() != nil:
			return nil // asked to stop while waiting for a build
		case err != nil:
			var te *runnerapi.TransportError
			where := c.BaseURL().Scheme + "://" + c.BaseURL().Host
			switch {
			case errors.Is(err, runnerapi.ErrForbidden):
				return errors.New("the coordinator refused the runner token")
			case errors.As(err, &te):
				return fmt.Errorf("cannot reach the coordinator at %s: %v", where, te.Err)
			}
			return fmt.Errorf("asking the coordinator at %s for a build: %v", where, err)
		default:
			lastUpdate = resp.LastUpdate
		}
		b, resp, err = c.Builds.Next(ctx, &runnerapi.NextOptions{Info: info, LastUpdate: lastUpdate, Interval: cfg.interval})
	}
}

// runBuild runs one build and reports how it ended. It fails only when the end could not be reported.
func runBuild(ctx context.Context, c *runnerapi.Client, b *runnerapi.Build, readErr error, cfg config, out io.Writer) error {
	fmt.Fprintf(out, "runner: took build %d (%s)\n", b.ID, b.Name)
	// The trace and the report outlive a stop signal, so that a stopped build is still recorded and reported.
	keep := context.WithoutCancel(ctx)
	state := runnerapi.StateFailed
	trace, err := c.NewBuildTraceWriter(keep, b, &runnerapi.TraceOptions{FlushInterval: cfg.interval, KeepAlive: cfg.interval})
	switch {
	case err != nil:
		fmt.Fprintf(out, "runner: build %d: %v\n", b.ID, err)
	case readErr != nil:
		fmt.Fprintf(trace, "ERROR: %v\n", readErr)
	default:
		state = execute(ctx, c, b, cfg, trace)
	}
	// The whole trace is delivered before the state, so the coordinator never shows a finished build whose trace
	// still grows.
	if trace != nil {
		if err := trace.Close(); err != nil {
			fmt.Fprintf(out, "runner: build %d: sending the trace: %v\n", b.ID, err)
		}
	}
	if state == runnerapi.StateCanceled {
		fmt.Fprintf(out, "runner: build %d (%s): stopped, the coordinator says it is %s\n", b.ID, b.Name, trace.Status())
		return nil
	}
	_, err = c.Builds.Update(keep, b.ID, &runnerapi.UpdateOptions{State: state})
	switch {
	case errors.Is(err, runnerapi.ErrNotFound) || errors.Is(err, runnerapi.ErrForbidden):
		// The build ended on the coordinator's side meanwhile (canceled, erased): there is nothing left to report.
		fmt.Fprintf(out, "runner: build %d (%s): %s, but the coordinator no longer runs it\n", b.ID, b.Name, state)
		return nil
	case err != nil:
		return fmt.Errorf("reporting build %d: %v", b.ID, err)
	}
	fmt.Fprintf(out, "runner: build %d (%s): %s\n", b.ID, b.Name, state)
	return nil
}

// errStopped is the cause of a build's end when the coordinator canceled it (or marked it failed).
var errStopped = errors.New("the coordinator stopped the build")

// execute runs the build in a fresh directory: it unpacks the artifacts of the builds it depends on, runs the
// script and uploads the build's artifacts, writing what happens to the trace. It returns the build's state, or
// StateCanceled when the coordinator stopped the build.
func execute(ctx context.Context, c *runnerapi.Client, b *runnerapi.Build, cfg config, trace *runnerapi.TraceWriter) runnerapi.BuildState {
	timeout := time.Duration(b.Timeout) * time.Second
	if timeout <= 0 {
		timeout = time.Hour
	}
	// One context ends all the build does, and its cause says why: the coordinator stopped the build, its timeout
	// passed, or the runner was asked to stop.
	bctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	bctx, cancel := context.WithTimeoutCause(bctx, timeout, fmt.Errorf("the build timed out after %s", timeout))
	defer cancel()
	go func() {
		select {
		case <-trace.Canceled():
			stop(errStopped)
		case <-bctx.Done():
		}
	}()

	fmt.Fprintf(trace, "Running build %d (%s) with the runnerapi example runner %s\n", b.ID, b.Name, runnerapi.Version)
	dir := filepath.Join(cfg.workdir, "build-"+strconv.FormatInt(b.ID, 10))
	err := prepare(bctx, c, b, dir, trace)
	if err == nil {
		// The script lives beside the build's directory, not in it, where the artifacts paths could pick it up.
		err = runScript(bctx, b, dir, dir+".sh", buildEnv(b, dir, trace), trace)
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
	case ctx.Err() != nil:
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

// runScript runs the build's commands with "sh -e" in dir, their output going to the trace, until they end or ctx
// does. Either way it then kills the script's process group, so that nothing the script started outlives the build.
func runScript(ctx context.Context, b *runnerapi.Build, dir, script string, env []string, trace io.Writer) error {
	if err := os.WriteFile(script, []byte(b.Commands+"\n"), 0o600); err != nil {
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

// buildEnv is the environment of a build's script: a few variables of the runner's own environment (never all of
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
