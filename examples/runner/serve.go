//go:build unix

package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/runnerapi/runnerapi"
)

// runUsage names the other commands too: run is the default, so "runner -h" is where an operator looks first.
const runUsage = "runner [run] [-url URL] [-token TOKEN] [-api v1|v4|auto] [-once] [-concurrent N] [-workdir DIR] [-interval DURATION] [-request-timeout DURATION] [-after-script-timeout DURATION]\n" +
	"       " + registerUsage + "\n" +
	"       " + unregisterUsage + "\n" +
	"(runner COMMAND -h for the flags of register and unregister; the flags of run follow)"

// config is what the flags of run say.
type config struct {
	url                string
	token              string
	api                apiChoice
	limit              int // builds to take before exiting; 0 for no limit
	concurrent         int
	workdir            string
	interval           time.Duration
	afterScriptTimeout time.Duration
	requestTimeout     time.Duration
}

// runCommand takes builds and runs them: from the coordinator at -url, or from an embedded demo one.
func runCommand(ctx context.Context, args []string, e env) error {
	var cfg config
	var once bool
	fs := newFlagSet("run")
	fs.StringVar(&cfg.url, "url", "", "coordinator address, such as https://gitlab.example.com; without it, run a demo pipeline on an embedded coordinator")
	// No default shown here: the usage must not print a token taken from the environment.
	fs.StringVar(&cfg.token, "token", "", "runner token (default $RUNNER_TOKEN, which keeps it out of ps)")
	defineAPI(fs, &cfg.api)
	fs.BoolVar(&once, "once", false, "run one build, then exit")
	fs.IntVar(&cfg.concurrent, "concurrent", 1, "how many builds to run at once, each in its own directory")
	fs.StringVar(&cfg.workdir, "workdir", "", "directory builds run in (default: a temporary directory, removed on exit)")
	fs.DurationVar(&cfg.interval, "interval", runnerapi.DefaultPollInterval, "how often to ask for a build, and for a running build's status")
	fs.DurationVar(&cfg.requestTimeout, "request-timeout", runnerapi.DefaultTimeout, "the longest one small request (register, update, a trace part) may take before it is given up and tried again")
	fs.DurationVar(&cfg.afterScriptTimeout, "after-script-timeout", 5*time.Minute, "the longest a build's after_script may run (at most 30s after the build was stopped)")
	if err := parse(fs, args, runUsage, e.stdout); err != nil {
		return err
	}
	switch {
	case cfg.interval <= 0:
		return fmt.Errorf("%w: -interval must be positive", errUsage)
	case cfg.concurrent < 1:
		return fmt.Errorf("%w: -concurrent must be at least 1", errUsage)
	case cfg.afterScriptTimeout <= 0:
		return fmt.Errorf("%w: -after-script-timeout must be positive", errUsage)
	case cfg.requestTimeout <= 0:
		return fmt.Errorf("%w: -request-timeout must be positive", errUsage)
	}
	if once {
		cfg.limit = 1
	}
	cfg.token = tokenFrom(cfg.token, "RUNNER_TOKEN")
	if cfg.workdir == "" {
		dir, err := os.MkdirTemp("", "runnerapi-runner-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		cfg.workdir = dir
	} else {
		dir, err := filepath.Abs(cfg.workdir)
		if err != nil {
			return err
		}
		// A workdir no build can run in must stop the runner now: later, it would take every build and fail it.
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("-workdir: %w", err)
		}
		cfg.workdir = dir
	}
	if cfg.url == "" {
		return demo(ctx, cfg, e)
	}
	if cfg.token == "" {
		return fmt.Errorf("no runner token: set RUNNER_TOKEN or use -token")
	}
	return serve(ctx, cfg, e)
}

// stopper turns signals, and the end of run's context, into the three ways the runner stops.
type stopper struct {
	log *logger
	// taking ends when the runner is to take no more builds.
	taking     context.Context
	stopTaking context.CancelFunc
	// builds ends when the running builds are to be canceled.
	builds       context.Context
	cancelBuilds context.CancelFunc
	// delivery ends only when the runner must exit at once: the traces and reports of builds use it, so that a
	// canceled build is still recorded.
	delivery       context.Context
	cancelDelivery context.CancelFunc
	// forced is closed when the runner must exit at once, once the scripts' process groups are killed.
	forced chan struct{}
	groups *processGroups
	done   chan struct{}
}

func newStopper(ctx context.Context, signals <-chan os.Signal, log *logger) *stopper {
	s := &stopper{log: log, forced: make(chan struct{}), done: make(chan struct{}), groups: new(processGroups)}
	s.delivery, s.cancelDelivery = context.WithCancel(context.WithoutCancel(ctx))
	s.builds, s.cancelBuilds = context.WithCancel(context.WithoutCancel(ctx))
	s.taking, s.stopTaking = context.WithCancel(s.builds)
	go s.watch(ctx, signals)
	return s
}

// release ends the stopper's goroutine and contexts once the runner is done.
func (s *stopper) release() {
	close(s.done)
	s.stopTaking()
	s.cancelBuilds()
	s.cancelDelivery()
}

func (s *stopper) watch(ctx context.Context, signals <-chan os.Signal) {
	interrupted := false
	// interrupt cancels the running builds the first time, and makes the runner exit at once the second.
	interrupt := func(why string) (forced bool) {
		if interrupted {
			s.log.printf("%s again: exiting at once; the running builds are not reported", why)
			s.cancelDelivery()
			// main exits as soon as run returns, before the builds' goroutines would kill their scripts, and
			// the scripts' own process groups do not get the terminal's signal: only this kills them.
			s.groups.killAll()
			close(s.forced)
			return true
		}
		interrupted = true
		s.log.printf("%s: canceling the running builds; they are reported failed, then the runner exits", why)
		s.stopTaking()
		s.cancelBuilds()
		return false
	}
	ctxDone := ctx.Done()
	for {
		select {
		case <-s.done:
			return
		case <-ctxDone:
			ctxDone = nil
			if interrupt("asked to stop") {
				return
			}
		case sig := <-signals:
			if sig == syscall.SIGQUIT || sig == pipelineDone {
				if s.taking.Err() == nil {
					s.log.printf("%s: taking no more builds; the running ones finish, then the runner exits", signalName(sig))
					s.stopTaking()
				}
				continue
			}
			if interrupt(signalName(sig)) {
				return
			}
		}
	}
}

// pipelineDone is the signal the demo gives itself when its pipeline is done: it stops the runner as SIGQUIT does.
var pipelineDone os.Signal = demoSignal("the demo pipeline is done")

type demoSignal string

func (s demoSignal) String() string { return string(s) }

func (demoSignal) Signal() {}

func signalName(sig os.Signal) string {
	switch sig {
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGQUIT:
		return "SIGQUIT"
	}
	return sig.String()
}

// serve takes builds from the coordinator at cfg.url and runs up to cfg.concurrent of them at once, until it has
// taken cfg.limit of them, a signal stops it, or it meets a failure that waiting cannot mend.
func serve(ctx context.Context, cfg config, e env) error {
	log := newLogger(e.stderr)
	stop := newStopper(ctx, e.signals, log)
	defer stop.release()
	// Asking which API the coordinator speaks is a start-up call like the others: a signal stops it.
	c, err := connect(stop.taking, cfg.api, cfg.url, cfg.token, cfg.interval, cfg.requestTimeout, log, "runner token")
	if errors.Is(err, errStoppedBeforeAPI) {
		log.printf("stopped")
		return nil
	}
	if err != nil {
		return err
	}
	log.printf("%s %s: taking builds from %s, up to %d at a time", runnerInfo.Name, runnerInfo.Version, where(c), cfg.concurrent)

	var (
		mu         sync.Mutex
		unreported int
	)
	takeErr := take(newCoordinator(c), cfg, stop, log, e.builds, func() {
		mu.Lock()
		unreported++
		mu.Unlock()
	})
	if takeErr != nil {
		// The runner cannot go on: the builds in progress are canceled and reported, as on SIGINT.
		stop.cancelBuilds()
	}
	finished := make(chan struct{})
	go func() {
		e.builds.Wait()
		close(finished)
	}()
	select {
	case <-finished:
	case <-stop.forced:
		return &fatalError{msg: "exited at once"}
	}
	if takeErr != nil {
		return takeErr
	}
	mu.Lock()
	defer mu.Unlock()
	if unreported > 0 {
		return log.fatal("stopped; the end of %d build(s) could not be reported", unreported)
	}
	log.printf("stopped")
	return nil
}

// take asks for builds and starts each in its own goroutine, as long as a slot is free, until it should stop. It
// returns an error only for a failure that waiting cannot mend, which it has logged.
func take(co coordinator, cfg config, stop *stopper, log *logger, builds *sync.WaitGroup, unreported func()) error {
	slots := make(chan struct{}, cfg.concurrent)
	lastUpdate := ""
	wait := waiter{interval: cfg.interval}
	for taken := 0; cfg.limit == 0 || taken < cfg.limit; {
		select {
		case slots <- struct{}{}:
		case <-stop.taking.Done():
			return nil
		}
		if stop.taking.Err() != nil {
			return nil
		}
		// A request in flight is not cut short by SIGQUIT: the coordinator may already have assigned a build.
		w, resp, err := co.take(stop.builds, lastUpdate)
		if w != nil {
			taken++
			wait.reset()
			lastUpdate = ""
			builds.Add(1)
			go func() {
				defer builds.Done()
				defer func() { <-slots }()
				// A build that comes with an error is assigned to this runner but could not be read in full:
				// runBuild reports it failed rather than leave it running on the coordinator.
				if !runBuild(stop, co, w, err, cfg, log) {
					unreported()
				}
			}()
			continue
		}
		<-slots
		var d time.Duration
		switch {
		case stop.taking.Err() != nil:
			return nil
		case err == nil:
			// Quiet while idle: no line per poll.
			wait.reset()
			lastUpdate = resp.LastUpdate
			d = pollWait(cfg.interval)
		default:
			if reason := lastingReason(co.client(), err, "runner token"); reason != "" {
				return log.fatal("%s", reason)
			}
			d = wait.next(resp)
			log.printf("asking for a build failed, trying again in %s: %v", roundWait(d), err)
		}
		if sleep(stop.taking, d) != nil {
			return nil
		}
	}
	return nil
}

// pollWait draws the wait before the next poll between half and one and a half times interval, so that many
// runners do not poll in step.
func pollWait(interval time.Duration) time.Duration {
	return interval/2 + rand.N(interval+1)
}
