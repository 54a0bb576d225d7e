//go:build unix

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/runnerapi/runnerapi"
)

const registerUsage = "runner register -url URL -registration-token TOKEN [-description D] [-tag-list a,b] [-run-untagged] [-locked]"

// registerCommand registers a new runner and prints its token, alone, on stdout.
func registerCommand(ctx context.Context, args []string, e env) error {
	var (
		url, token, description, tags string
		runUntagged, locked           bool
		interval, timeout             time.Duration
	)
	fs := newFlagSet("register")
	fs.StringVar(&url, "url", "", "coordinator address, such as https://gitlab.example.com (required)")
	fs.StringVar(&token, "registration-token", "", "the instance's shared-runner registration token or a project's runners token (default $REGISTRATION_TOKEN, which keeps it out of ps)")
	fs.StringVar(&description, "description", "", "the runner's name in the coordinator's runners page")
	fs.StringVar(&tags, "tag-list", "", "comma-separated tags; the runner takes only builds whose tags it has")
	fs.BoolVar(&runUntagged, "run-untagged", false, "take builds without tags too (when not given, the coordinator decides)")
	fs.BoolVar(&locked, "locked", false, "lock the runner to the project whose token registers it (GitLab 9.0 and later)")
	fs.DurationVar(&interval, "interval", runnerapi.DefaultPollInterval, "first wait before trying again after a failure that may pass")
	fs.DurationVar(&timeout, "request-timeout", runnerapi.DefaultTimeout, "the longest one request may take before it is given up and tried again")
	if err := parse(fs, args, registerUsage, e.stdout); err != nil {
		return err
	}
	token = tokenFrom(token, "REGISTRATION_TOKEN")
	switch {
	case url == "":
		return fmt.Errorf("%w: register needs -url", errUsage)
	case token == "":
		return fmt.Errorf("%w: register needs -registration-token or $REGISTRATION_TOKEN", errUsage)
	case interval <= 0:
		return fmt.Errorf("%w: -interval must be positive", errUsage)
	case timeout <= 0:
		return fmt.Errorf("%w: -request-timeout must be positive", errUsage)
	}
	opts := &runnerapi.RegisterRunnerOptions{Description: description, Info: runnerInfo}
	for _, tag := range strings.Split(tags, ",") {
		if tag = strings.TrimSpace(tag); tag != "" {
			opts.TagList = append(opts.TagList, tag)
		}
	}
	// Sent only when given, so that the coordinator's defaults apply otherwise.
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "run-untagged":
			opts.RunUntagged = &runUntagged
		case "locked":
			opts.Locked = &locked
		}
	})

	log := newLogger(e.stderr)
	c, err := newClient(url, "", interval, timeout, log)
	if err != nil {
		return err
	}
	ctx, stop := untilSignal(ctx, e.signals)
	defer stop()
	wait := waiter{interval: interval}
	for {
		runner, resp, err := c.Runners.Register(ctx, token, opts)
		if err == nil {
			fmt.Fprintln(e.stdout, runner.Token)
			log.printf("registered runner %d with the coordinator at %s; its token is on stdout", runner.ID, where(c))
			return nil
		}
		if ctx.Err() != nil {
			return log.fatal("stopped before the runner was registered")
		}
		if reason := lastingReason(c, err, "registration token"); reason != "" {
			return log.fatal("%s", reason)
		}
		d := wait.next(resp)
		log.printf("registering the runner failed, trying again in %s: %v", roundWait(d), err)
		if sleep(ctx, d) != nil {
			return log.fatal("stopped before the runner was registered")
		}
	}
}

const unregisterUsage = "runner unregister -url URL -token TOKEN"

// unregisterCommand removes a runner from the coordinator, which refuses its token from then on.
func unregisterCommand(ctx context.Context, args []string, e env) error {
	var (
		url, token string
		interval   time.Duration
		timeout    time.Duration
	)
	fs := newFlagSet("unregister")
	fs.StringVar(&url, "url", "", "coordinator address, such as https://gitlab.example.com (required)")
	fs.StringVar(&token, "token", "", "the runner token (default $RUNNER_TOKEN, which keeps it out of ps)")
	fs.DurationVar(&interval, "interval", runnerapi.DefaultPollInterval, "first wait before trying again after a failure that may pass")
	fs.DurationVar(&timeout, "request-timeout", runnerapi.DefaultTimeout, "the longest one request may take before it is given up and tried again")
	if err := parse(fs, args, unregisterUsage, e.stdout); err != nil {
		return err
	}
	token = tokenFrom(token, "RUNNER_TOKEN")
	switch {
	case url == "":
		return fmt.Errorf("%w: unregister needs -url", errUsage)
	case token == "":
		return fmt.Errorf("%w: unregister needs -token or $RUNNER_TOKEN", errUsage)
	case interval <= 0:
		return fmt.Errorf("%w: -interval must be positive", errUsage)
	case timeout <= 0:
		return fmt.Errorf("%w: -request-timeout must be positive", errUsage)
	}

	log := newLogger(e.stderr)
	c, err := newClient(url, "", interval, timeout, log)
	if err != nil {
		return err
	}
	ctx, stop := untilSignal(ctx, e.signals)
	defer stop()
	wait := waiter{interval: interval}
	for retried := false; ; retried = true {
		resp, err := c.Runners.Unregister(ctx, token)
		if err == nil {
			log.printf("unregistered the runner from the coordinator at %s", where(c))
			return nil
		}
		if ctx.Err() != nil {
			return log.fatal("stopped before the runner was unregistered")
		}
		if errors.Is(err, runnerapi.ErrForbidden) && (retried || resp != nil && resp.Attempts > 1) {
			// An earlier attempt whose answer was lost may have removed it: the token is no runner's either way.
			log.printf("the coordinator at %s knows no runner by this token (any more)", where(c))
			return nil
		}
		if reason := lastingReason(c, err, "runner token"); reason != "" {
			return log.fatal("%s", reason)
		}
		d := wait.next(resp)
		log.printf("unregistering the runner failed, trying again in %s: %v", roundWait(d), err)
		if sleep(ctx, d) != nil {
			return log.fatal("stopped before the runner was unregistered")
		}
	}
}

// untilSignal returns a context that ends with ctx or at the first signal.
func untilSignal(ctx context.Context, signals <-chan os.Signal) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-signals:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}
