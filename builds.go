package runnerapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// BuildsService registers for builds and reports their state. Reach it as Client.Builds.
type BuildsService service

// RunnerInfo describes the runner to the coordinator, which shows it in its runners page.
type RunnerInfo struct {
	Name         string `url:"name,omitempty"`
	Version      string `url:"version,omitempty"`
	Revision     string `url:"revision,omitempty"`
	Platform     string `url:"platform,omitempty"`
	Architecture string `url:"architecture,omitempty"`
}

// RegisterOptions are the optional parameters of Register.
type RegisterOptions struct {
	// LastUpdate is the X-GitLab-Last-Update of the previous "no build" answer (Response.LastUpdate). While it is
	// unchanged the coordinator answers "no build" at once, without searching its queue.
	LastUpdate string `url:"last_update,omitempty"`
	// Info describes the runner; it is sent as info[name], info[version] and so on.
	Info RunnerInfo `url:"info,omitempty"`
}

// registerForm is the body of POST builds/register.
type registerForm struct {
	Token string `url:"token"`
	*RegisterOptions
}

// Register takes the oldest pending build for this runner. A build it returns has already been moved to running
// and assigned to this runner. When there is none (204, or 404 from older coordinators and for a paused runner)
// it returns a nil build and a nil error; send resp.LastUpdate back in the next call.
//
// When the answer to a build cannot be decoded in full, Register returns the error together with the part of the
// build that could be read, when that includes its ID: the build is assigned to this runner all the same, and
// should be reported failed.
//
// Register is retried only when the failure shows the coordinator did not act on it, since a lost answer may hide
// a build already assigned.
func (s *BuildsService) Register(ctx context.Context, opts *RegisterOptions, reqOpts ...RequestOption) (*Build, *Response, error) {
	c := s.client
	token, err := c.runnerTokenFor(newCallConfig(reqOpts), "Register")
	if err != nil {
		return nil, nil, err
	}
	if opts == nil {
		opts = &RegisterOptions{}
	}
	req, err := c.NewRequest(ctx, http.MethodPost, "builds/register", &registerForm{Token: token, RegisterOptions: opts})
	if err != nil {
		return nil, nil, err
	}
	build := new(Build)
	resp, err := c.do(req, build, call{retry: retryUnsent, small: true, secrets: []string{token}})
	if er := (*ErrorResponse)(nil); errors.As(err, &er) && er.StatusCode == http.StatusNotFound {
		if isNoBuild(er) {
			return nil, resp, nil
		}
		return nil, resp, &notCoordinatorError{er}
	}
	if err != nil && resp != nil && resp.StatusCode == http.StatusCreated && build.ID != 0 {
		// The coordinator has already assigned this build to the runner: hand back what could be read, so that the
		// caller can report it failed instead of leaving it running until it times out.
		return build, resp, fmt.Errorf("runnerapi: build %d was assigned to this runner but could not be read in full: %w", build.ID, err)
	}
	if err != nil {
		return nil, resp, err
	}
	if resp.StatusCode != http.StatusCreated && build.ID == 0 {
		return nil, resp, nil
	}
	return build, resp, nil
}

// isNoBuild reports whether a 404 to register is a coordinator's "no build": GitLab's not_found!, a JSON body
// {"message":"404 Not Found"} (some versions write "Not found").
func isNoBuild(er *ErrorResponse) bool {
	return er.bodyJSON && strings.EqualFold(strings.TrimSpace(er.Message), "404 Not Found")
}

// notCoordinatorError is a 404 to register that no coordinator sends.
type notCoordinatorError struct {
	er *ErrorResponse
}

func (e *notCoordinatorError) Error() string {
	return e.er.Error() + " (not a coordinator's answer: the address does not serve the CI Builds API v1; check the base URL)"
}

func (e *notCoordinatorError) Unwrap() []error { return []error{e.er, ErrNotCoordinator} }

// DefaultPollInterval is how often Next asks for a build unless told otherwise.
const DefaultPollInterval = 3 * time.Second

// NextOptions are the optional parameters of Next.
type NextOptions struct {
	// Info describes the runner, as in RegisterOptions.
	Info RunnerInfo
	// LastUpdate seeds the long-polling value; Next keeps it current from then on.
	LastUpdate string
	// Interval is the mean wait between two polls (DefaultPollInterval when zero); each wait is drawn between half
	// and one and a half times it, so that many runners do not poll in step.
	Interval time.Duration
}

// Next polls Register until a build arrives, ctx ends, or the coordinator refuses the token. Conflicts and
// transient failures are waited out; the long-polling value is sent back on every poll.
func (s *BuildsService) Next(ctx context.Context, opts *NextOptions, reqOpts ...RequestOption) (*Build, *Response, error) {
	c := s.client
	if opts == nil {
		opts = &NextOptions{}
	}
	interval := opts.Interval
	if interval <= 0 {
		interval = DefaultPollInterval
	}
	ropts := RegisterOptions{LastUpdate: opts.LastUpdate, Info: opts.Info}
	var (
		resp     *Response
		failures int
	)
	for {
		build, r, err := s.Register(ctx, &ropts, reqOpts...)
		if r != nil {
			resp = r
		}
		wait := pollWait(interval)
		switch {
		case build != nil:
			return build, resp, err
		case err == nil:
			failures = 0
			if r.LastUpdate != "" {
				ropts.LastUpdate = r.LastUpdate
			}
		case ctx.Err() != nil:
			return nil, resp, err
		case errors.Is(err, ErrConflict) || IsTransient(err):
			failures++
			var ra time.Duration
			if r != nil && r.Response != nil {
				ra = parseRetryAfter(r.Header.Get("Retry-After"), time.Now())
			}
			wait = max(wait, c.retry.backoff(failures, ra))
			c.logger.LogAttrs(ctx, slog.LevelDebug, "runnerapi: no build this time",
				slog.String("error", err.Error()), slog.Duration("wait", wait))
		default:
			return nil, resp, err
		}
		if err := sleepCtx(ctx, wait); err != nil {
			return nil, resp, fmt.Errorf("runnerapi: waiting for a build: %w", err)
		}
	}
}

// pollWait draws a wait between half and one and a half times interval, saturating rather than overflowing into a
// negative wait (a tight loop) for absurdly long intervals.
func pollWait(interval time.Duration) time.Duration {
	half := interval / 2
	j := rand.N(interval)
	if j > math.MaxInt64-half {
		return math.MaxInt64
	}
	return half + j
}

// UpdateOptions are the parameters of Update.
type UpdateOptions struct {
	// State is the build's new state: StateSuccess or StateFailed finish it, StateRunning changes nothing but tells
	// the coordinator the runner is alive. Update refuses any other state (StateCanceled among them: a runner cannot
	// cancel a build) before sending anything, since the coordinator would answer 200 and do nothing.
	State BuildState
	// Trace, when not nil, replaces the build's whole trace.
	Trace *string
}

// updateForm is the body of PUT builds/:id.
type updateForm struct {
	Token string     `url:"token"`
	State BuildState `url:"state"`
	Trace *string    `url:"trace,omitempty"`
}

// Update sets a build's state and, optionally, its whole trace. A build that is no longer this runner's to run
// (finished, canceled, erased, or its project deleted) makes it fail with an error for which errors.Is reports
// ErrNotFound or ErrForbidden: stop the build then.
func (s *BuildsService) Update(ctx context.Context, id int64, opts *UpdateOptions, reqOpts ...RequestOption) (*Response, error) {
	c := s.client
	token, err := c.runnerTokenFor(newCallConfig(reqOpts), "Update")
	if err != nil {
		return nil, err
	}
	if opts == nil || opts.State == "" {
		return nil, errors.New("runnerapi: Update needs a state: running, success or failed")
	}
	switch opts.State {
	case StateRunning, StateSuccess, StateFailed:
	default:
		// The coordinator answers 200 to any other state and does nothing: the build would stay running, unreported.
		return nil, fmt.Errorf("runnerapi: Update: the API takes the state running, success or failed, not %q", opts.State)
	}
	form := &updateForm{Token: token, State: opts.State, Trace: opts.Trace}
	req, err := c.NewRequest(ctx, http.MethodPut, "builds/"+strconv.FormatInt(id, 10), form)
	if err != nil {
		return nil, err
	}
	return c.do(req, nil, call{retry: retryTransient, small: true, secrets: []string{token}})
}
