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

const registerUsage = "runner register -url URL -registration-token TOKEN [-api v1|v4|auto] [-description D] [-tag-list a,b] [-run-untagged] [-locked]"

// registerCommand registers a new runner and prints its token, alone, on stdout.
func registerCommand(ctx context.Context, args []string, e env) error {
	var (
		description, tags   string
		runUntagged, locked bool
	)
	call := coordinatorCall{command: "register", tokenFlag: "registration-token", tokenVariable: "REGISTRATION_TOKEN",
		tokenKind: "registration token"}
	fs := newFlagSet("register")
	call.define(fs, "the instance's shared-runner registration token or a project's runners token (default $REGISTRATION_TOKEN, which keeps it out of ps)")
	fs.StringVar(&description, "description", "", "the runner's name in the coordinator's runners page")
	fs.StringVar(&tags, "tag-list", "", "comma-separated tags; the runner takes only builds whose tags it has")
	fs.BoolVar(&runUntagged, "run-untagged", false, "take builds without tags too (when not given, the coordinator decides)")
	fs.BoolVar(&locked, "locked", false, "lock the runner to the project whose token registers it (GitLab 9.0 and later)")
	if err := parse(fs, args, registerUsage, e.stdout); err != nil {
		return err
	}
	if err := call.check(); err != nil {
		return err
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

	return call.untilDone(ctx, e, "registering the runner", "the runner was registered",
		func(ctx context.Context, c *runnerapi.Client, log *logger, _ bool) (*runnerapi.Response, error) {
			runner, resp, err := c.Runners.Register(ctx, call.token, opts)
			if err == nil {
				fmt.Fprintln(e.stdout, runner.Token)
				log.printf("registered runner %d with the coordinator at %s; its token is on stdout", runner.ID, where(c))
			}
			return resp, err
		})
}

const unregisterUsage = "runner unregister -url URL -token TOKEN [-api v1|v4|auto]"

// unregisterCommand removes a runner from the coordinator, which refuses its token from then on.
func unregisterCommand(ctx context.Context, args []string, e env) error {
	call := coordinatorCall{command: "unregister", tokenFlag: "token", tokenVariable: "RUNNER_TOKEN",
		tokenKind: "runner token"}
	fs := newFlagSet("unregister")
	call.define(fs, "the runner token (default $RUNNER_TOKEN, which keeps it out of ps)")
	if err := parse(fs, args, unregisterUsage, e.stdout); err != nil {
		return err
	}
	if err := call.check(); err != nil {
		return err
	}

	return call.untilDone(ctx, e, "unregistering the runner", "the runner was unregistered",
		func(ctx context.Context, c *runnerapi.Client, log *logger, retried bool) (*runnerapi.Response, error) {
			resp, err := c.Runners.Unregister(ctx, call.token)
			switch {
			case err == nil:
				log.printf("unregistered the runner from the coordinator at %s", where(c))
			case ctx.Err() == nil && errors.Is(err, runnerapi.ErrForbidden) && (retried || resp != nil && resp.Attempts > 1):
				// An earlier attempt whose answer was lost may have removed it: the token is no runner's either way.
				log.printf("the coordinator at %s knows no runner by this token (any more)", where(c))
				return resp, nil
			}
			return resp, err
		})
}

// coordinatorCall is what register and unregister share: the flags that say where the coordinator is, the token
// to send and how to retry, and the loop that makes the command's one call until it is done.
type coordinatorCall struct {
	command       string // the command, as usage errors name it
	tokenFlag     string // the flag that gives the token
	tokenVariable string // the environment variable that gives the token when the flag does not
	tokenKind     string // the token, as the operator calls it

	url, token        string
	api               apiChoice
	interval, timeout time.Duration
}

// define defines the call's flags on fs; tokenUsage is the help of the token's flag.
func (cc *coordinatorCall) define(fs *flag.FlagSet, tokenUsage string) {
	fs.StringVar(&cc.url, "url", "", "coordinator address, such as https://gitlab.example.com (required)")
	fs.StringVar(&cc.token, cc.tokenFlag, "", tokenUsage)
	defineAPI(fs, &cc.api)
	fs.DurationVar(&cc.interval, "interval", runnerapi.DefaultPollInterval, "first wait before trying again after a failure that may pass")
	fs.DurationVar(&cc.timeout, "request-timeout", runnerapi.DefaultTimeout, "the longest one request may take before it is given up and tried again")
}

// check takes the token from the environment when the flag gave none, and says what the parsed flags lack.
func (cc *coordinatorCall) check() error {
	cc.token = tokenFrom(cc.token, cc.tokenVariable)
	switch {
	case cc.url == "":
		return fmt.Errorf("%w: %s needs -url", errUsage, cc.command)
	case cc.token == "":
		return fmt.Errorf("%w: %s needs -%s or $%s", errUsage, cc.command, cc.tokenFlag, cc.tokenVariable)
	case cc.interval <= 0:
		return fmt.Errorf("%w: -interval must be positive", errUsage)
	case cc.timeout <= 0:
		return fmt.Errorf("%w: -request-timeout must be positive", errUsage)
	}
	return nil
}

// untilDone makes call, which logs its own success, until it returns no error, fails for a reason that waiting
// cannot mend, or ctx or a signal stops it; retried tells call whether an attempt came before. doing and done name
// the call in the log, as "registering the runner" and "the runner was registered".
func (cc *coordinatorCall) untilDone(ctx context.Context, e env, doing, done string,
	call func(ctx context.Context, c *runnerapi.Client, log *logger, retried bool) (*runnerapi.Response, error)) error {
	log := newLogger(e.stderr)
	ctx, stop := untilSignal(ctx, e.signals)
	defer stop()
	c, err := connect(ctx, cc.api, cc.url, "", cc.interval, cc.timeout, log, cc.tokenKind)
	if errors.Is(err, errStoppedBeforeAPI) {
		return log.fatal("stopped before %s", done)
	}
	if err != nil {
		return err
	}
	wait := waiter{interval: cc.interval}
	for retried := false; ; retried = true {
		resp, err := call(ctx, c, log, retried)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return log.fatal("stopped before %s", done)
		}
		if reason := lastingReason(c, err, cc.tokenKind); reason != "" {
			return log.fatal("%s", reason)
		}
		d := wait.next(resp)
		log.printf("%s failed, trying again in %s: %v", doing, roundWait(d), err)
		if sleep(ctx, d) != nil {
			return log.fatal("stopped before %s", done)
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
