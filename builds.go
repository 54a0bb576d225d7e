package runnerapi

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"time"
)

// BuildsService registers for builds and reports their state. Reach it as Client.Builds.
type BuildsService service

// RunnerInfo describes the runner to the coordinator, which shows it in its runners page.
type RunnerInfo struct {
	// Name is the runner program's name, such as "gitlab-ci-multi-runner".
	Name string `url:"name,omitempty"`
	// Version is the runner program's version, such as "1.11.0".
	Version string `url:"version,omitempty"`
	// Revision is the commit the runner program was built from.
	Revision string `url:"revision,omitempty"`
	// Platform is the operating system the runner runs on, such as "linux".
	Platform string `url:"platform,omitempty"`
	// Architecture is the processor architecture the runner runs on, such as "amd64".
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

// Register takes the oldest pending build for this runner. It asks for a build to run and is not how a runner is
// registered: to register a runner, see RunnersService.Register. A build it returns has already been moved to
// running and assigned to this runner.
//
// When there is none, Register returns a nil build and a nil error; send resp.LastUpdate back in the next call.
// GitLab says "no build" with 204 only to a User-Agent like "gitlab-ci-multi-runner 1.11.0 (...)", and to every
// other User-Agent, this SDK's default among them, with 404 and the JSON body {"message":"404 Not Found"}; a paused
// runner gets that 404 too. A 404 carrying X-GitLab-Last-Update is "no build" whatever its body (a proxy may have
// replaced it); any other 404 (an HTML page, an empty body, another service's answer) is an error matching
// ErrNotCoordinator: the address does not serve the API, and polling on would never bring a build.
//
// A build the coordinator assigns while ctx ends is not lost. An attempt in flight when ctx ends may finish, for up
// to 10 seconds more (less when the client's per-attempt timeout ends it first), and a build it brings is returned
// with a nil error: check ctx.Err() before starting it if that matters, and report it with a context that has not
// ended. No attempt starts once ctx has ended, and one whose request body had not begun to go out (still dialing,
// say) ends with ctx and never sends it, since the coordinator must not act on it.
//
// When the answer to a build cannot be decoded in full, Register returns the error together with the part of the
// build that could be read, when that includes its ID: the build is assigned to this runner all the same, and
// should be reported failed.
//
// Register is retried only when the failure shows the coordinator did not act on it (a refused connection, a 429,
// 502 or 503), since a lost answer may hide a build already assigned.
func (s *BuildsService) Register(ctx context.Context, opts *RegisterOptions, reqOpts ...RequestOption) (*Build, *Response, error) {
	c := s.client
	if c.wire.jobs {
		return nil, nil, c.notInAPI("Builds.Register", "takes jobs with Jobs.Request and Jobs.Next")
	}
	token, err := c.runnerTokenFor(newCallConfig(reqOpts), "Register")
	if err != nil {
		return nil, nil, err
	}
	if opts == nil {
		opts = &RegisterOptions{}
	}
	build := new(Build)
	resp, err := s.register(ctx, registerForm{Token: token, RegisterOptions: opts}, build)
	if err != nil {
		// Declared here, where only a failure pays for it: errors.As takes its address.
		var er *ErrorResponse
		if errors.As(err, &er) && er.StatusCode == http.StatusNotFound {
			if isNoBuild(er) {
				return nil, resp, nil
			}
			return nil, resp, &notCoordinatorError{er: er}
		}
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

// registerGrace bounds how long a register attempt in flight may go on once the caller's context has ended, so
// that a build the coordinator assigns meanwhile is not abandoned. The client's per-attempt timeout, when shorter,
// ends it first.
const registerGrace = 10 * time.Second

// register sends form until an answer, retrying only when the coordinator surely did not act on it. Each attempt is
// detached from ctx: when ctx ends while one is in flight, the coordinator may already have assigned a build, so the
// attempt may finish, for up to registerGrace more; no attempt starts once ctx has ended.
func (s *BuildsService) register(ctx context.Context, form registerForm, build *Build) (*Response, error) {
	body, err := form.encode()
	if err != nil {
		return nil, fmt.Errorf("runnerapi: encoding form: %w", err)
	}
	return s.client.takeJob(ctx, body, formContentType, "", func() { *build = Build{} }, build, form.Token)
}

// takeJob posts body, of type contentType, to the API's request path, with token in the header tokenHeader (a
// canonical key) unless that is empty, decoding the answer into v after reset, until an answer, as
// BuildsService.register says: retried only when the coordinator surely did not act on it, each attempt detached
// from ctx for up to registerGrace. It serves both APIs' requests for a job.
func (c *Client) takeJob(ctx context.Context, body []byte, contentType, tokenHeader string, reset func(), v any, token string) (*Response, error) {
	cl := call{retry: retryUnsent, small: true, secrets: []string{token}}
	where := func() string { return "runnerapi: POST " + redactURL(c.baseURL) + c.wire.requestPath }
	_, gated := c.httpClient.Transport.(*http.Transport)
	gated = gated || c.httpClient.Transport == nil
	var resp *Response
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return resp, fmt.Errorf("%s: %w", where(), err)
		}
		a := newJobAttempt(ctx, registerGrace, c.timeout, gated)
		req, err := c.newBytesRequest(a.ctx, http.MethodPost, c.wire.requestPath, body, contentType, a)
		if err != nil {
			a.end()
			return resp, err
		}
		if tokenHeader != "" {
			req.Header[tokenHeader] = []string{token}
		}
		reset()
		// The attempt's context has its timeout already.
		resp, err = c.exchange(a, req, v, cl, attempt)
		over := a.graceOver()
		if err == nil {
			a.end()
			return resp, nil
		}
		notSent := ctx.Err() != nil && a.unsent()
		a.end()
		if over {
			return resp, fmt.Errorf("%s: %w, and the request in flight had no answer %v later", where(), ctx.Err(), registerGrace)
		}
		if notSent {
			return resp, fmt.Errorf("%s: %w before the request was sent", where(), ctx.Err())
		}
		wait, retry := c.shouldRetry(resp, err, cl.retry, attempt)
		var er *ErrorResponse
		if ctxErr := ctx.Err(); ctxErr != nil && (retry || !errors.As(err, &er) || IsTransient(er)) {
			// The failure is told, not wrapped: IsTransient must not see it behind an ended context.
			return resp, fmt.Errorf("%s: %w, and the request in flight then failed: %v", where(), ctxErr, err)
		}
		if !retry {
			return resp, err
		}
		if c.logger.Enabled(ctx, slog.LevelDebug) {
			c.logger.LogAttrs(ctx, slog.LevelDebug, "runnerapi: retrying",
				slog.String("method", req.Method), slog.String("path", req.URL.Path),
				slog.Int("attempt", attempt), slog.Duration("wait", wait), slog.String("error", err.Error()))
		}
		if ctxErr := sleepCtx(ctx, wait); ctxErr != nil {
			return resp, fmt.Errorf("%s: %w while waiting to retry after: %v", where(), ctxErr, err)
		}
	}
}

// errUnsent ends a register attempt whose request was not sent in full when the caller's context ended.
var errUnsent = errors.New("runnerapi: register not sent")

// jobAttempt is one attempt of a request for a job, and what decides how it ends once the caller's context ends.
// Its context keeps the caller's values but not its end: when the caller's context ends while the request is in
// flight, the coordinator may already have assigned a job, so the attempt may finish, for up to grace more. The
// client's per-attempt timeout, when there is one, bounds it all the same.
//
// When gated, a gate on the request's body (see gateBody) also ends the attempt at once when the caller's context
// ends before the transport has begun to read the body: the coordinator cannot get the request in full (a
// coordinator that does not answer the dial or the TLS handshake would otherwise hold a Ctrl-C for the whole
// grace). The body refuses to be read once that context has ended, so a request the attempt gave up on cannot go
// out after all: cancelling a request does not stop net/http's writer, which may still write it. Only net/http's
// own Transport is known to read the body before anything reaches the coordinator; through any other RoundTripper
// the request counts as sent, and the attempt is not gated.
//
// One value and one context hold what two contexts, a timeout's and two watches held: an attempt is made on
// every poll.
type jobAttempt struct {
	ctx    context.Context // the attempt's: the caller's values, the timeout; ended by end, the grace or an unsent request
	caller context.Context
	cancel context.CancelFunc
	grace  time.Duration
	gated  bool
	stop   func() bool // stops the watch on the caller's context; nil when it never ends
	// trace is what ctx traces, when gated: its WroteHeaders opens the gate.
	trace httptrace.ClientTrace

	mu      sync.Mutex
	why     error         // why ctx was ended, when not for its timeout: errGraceOver, errUnsent or, after end, context.Canceled
	sent    bool          // the body has been handed out: the request may reach the coordinator
	refused bool          // the body will not be handed out
	ended   bool          // end was called: the caller's end no longer matters
	body    *bytes.Reader // the gated body the transport reads next, empty until the gate opens for it
	data    []byte        // what the gated body holds once open
	timer   *time.Timer
}

// errGraceOver ends a register attempt that outlived registerGrace.
var errGraceOver = errors.New("runnerapi: register grace over")

// newJobAttempt starts an attempt within ctx, bounded by timeout unless it is zero.
func newJobAttempt(ctx context.Context, grace, timeout time.Duration, gated bool) *jobAttempt {
	a := &jobAttempt{caller: ctx, grace: grace, gated: gated}
	if timeout > 0 {
		a.ctx, a.cancel = context.WithTimeout(context.WithoutCancel(ctx), timeout)
	} else {
		a.ctx, a.cancel = context.WithCancel(context.WithoutCancel(ctx))
	}
	if ctx.Done() != nil {
		a.stop = context.AfterFunc(ctx, a.callerEnded)
	}
	if gated {
		a.trace.WroteHeaders = a.wroteHeaders
		a.ctx = httptrace.WithClientTrace(a.ctx, &a.trace)
	}
	return a
}

// endFor ends the attempt's context for why, the first reason it has; a.mu is held.
func (a *jobAttempt) endFor(why error) {
	if a.why == nil {
		a.why = why
	}
	a.cancel()
}

// callerEnded runs once the caller's context has ended: an unsent request ends the attempt at once, any other has
// the grace.
func (a *jobAttempt) callerEnded() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ended {
		return
	}
	if a.gated && !a.sent {
		a.refused = true
		a.endFor(errUnsent)
		return
	}
	a.timer = time.AfterFunc(a.grace, func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.endFor(errGraceOver)
	})
}

// Err is context.Canceled once the attempt's context has been ended by the grace, an unsent request or end, and
// nil while it has not been, or when its timeout ended it: what the context's Err would be, were the timeout
// its child's, as exchange wants it.
func (a *jobAttempt) Err() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.why != nil {
		return context.Canceled
	}
	return nil
}

// graceOver reports whether the attempt ended for the grace.
func (a *jobAttempt) graceOver() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.why == errGraceOver
}

// unsent reports, once the attempt is over and the caller's context has ended, whether the body was never read,
// and refuses it from then on. An attempt that is not gated counts as sent.
func (a *jobAttempt) unsent() bool {
	if !a.gated {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.refused = !a.sent
	return a.refused
}

// gateBody returns a body of data, for a request of the attempt (or for a copy the transport sends again), that
// holds nothing until the gate opens for it: a write that reads it first fails, its length short.
func (a *jobAttempt) gateBody(data []byte) *bytes.Reader {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.body, a.data = new(bytes.Reader), data
	return a.body
}

// wroteHeaders is the gate, as net/http calls it once it has written a request's headers (still in its buffer)
// and before it reads the body, in HTTP/1 and HTTP/2 alike: the body is filled, and from then on the request counts
// as sent, unless the caller's context ended first; then it stays empty, which fails the write, and the attempt
// ends. The body itself stays a *bytes.Reader, which net/http writes with the headers in one piece, where a body
// that gated its own reads made it send the headers apart, first.
func (a *jobAttempt) wroteHeaders() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.sent && !a.refused && a.caller.Err() == nil {
		a.sent = true
	}
	if a.sent {
		if a.body != nil {
			a.body.Reset(a.data)
		}
		return
	}
	a.refused = true
	a.endFor(errUnsent)
}

// end releases the attempt: its context ends, and the caller's end no longer starts a grace.
func (a *jobAttempt) end() {
	if a.stop != nil {
		a.stop()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ended = true
	if a.timer != nil {
		a.timer.Stop()
	}
	a.endFor(context.Canceled)
}

// detachWithGrace returns a context with ctx's values that ends grace after ctx ends, or at release. graceOver
// reports whether it ended for the grace. It is a jobAttempt without the gate.
func detachWithGrace(ctx context.Context, grace time.Duration) (_ context.Context, graceOver func() bool, release func()) {
	a := newJobAttempt(ctx, grace, 0, false)
	return a.ctx, a.graceOver, a.end
}

// isNoBuild reports whether a 404 to register is a coordinator's "no build": one that carries X-GitLab-Last-Update,
// which GitLab sets before its build_not_found! and no other server sends, whatever its body (a proxy's error page
// may have replaced it); or else GitLab's not_found!, a JSON body {"message":"404 Not Found"} (some versions write
// "Not found"), which older coordinators and a paused runner get without the header. GitLab's
// {"error":"404 Not Found"} is not: its /api catch-all answers so to a base URL under /api (such as .../api/v4),
// which serves no CI API v1.
func isNoBuild(er *ErrorResponse) bool {
	if er.Response != nil && er.Response.Header.Get(lastUpdateHeader) != "" {
		return true
	}
	return er.apiMessage && strings.EqualFold(strings.TrimSpace(er.Message), "404 Not Found")
}

// notCoordinatorError is a 404 to register that no coordinator sends.
type notCoordinatorError struct {
	er  *ErrorResponse
	api string // the name of the API the address does not serve; the CI Builds API v1 when empty
}

func (e *notCoordinatorError) Error() string {
	return e.er.Error() + " (not a coordinator's answer: the address does not serve the " + cmp.Or(e.api, wireV1.name) + "; check the base URL)"
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

// Next polls Register until a build arrives, ctx ends, the coordinator refuses the token (ErrForbidden) or the
// address turns out not to serve the API (ErrNotCoordinator). Conflicts and transient failures are waited out; the
// long-polling value is sent back on every poll.
//
// A nil error always comes with a build. A build that arrives is returned even when ctx ended while it was on its
// way (see Register), with a nil error: a caller that checks err first never drops an assigned build. An error
// comes with a build only when the build could not be read in full; report that one failed.
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
	return pollFor(ctx, c, interval, func() (*Build, *Response, error) {
		build, r, err := s.Register(ctx, &ropts, reqOpts...)
		if err == nil && r != nil && r.LastUpdate != "" {
			ropts.LastUpdate = r.LastUpdate
		}
		return build, r, err
	})
}

// pollFor calls take every interval (drawn by pollWait) until it brings a job, ctx ends, or it fails with an error
// that is neither a conflict nor transient; those are waited out with the client's backoff. take keeps the
// long-polling value itself. It is Next's loop, for both APIs.
func pollFor[T any](ctx context.Context, c *Client, interval time.Duration, take func() (*T, *Response, error)) (*T, *Response, error) {
	var (
		resp     *Response
		failures int
	)
	for {
		job, r, err := take()
		if r != nil {
			resp = r
		}
		wait := pollWait(interval)
		switch {
		case job != nil:
			return job, resp, err
		case err == nil:
			failures = 0
		case ctx.Err() != nil && (errors.Is(err, ErrConflict) || IsTransient(err)):
			// A failure Next would have waited out, met as ctx ended: Next stops for ctx, and says so. The failure
			// is told, not wrapped, as in register.
			return nil, resp, fmt.Errorf("runnerapi: waiting for a job: %w, and the last poll failed: %v", ctx.Err(), err)
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
			return nil, resp, fmt.Errorf("runnerapi: waiting for a job: %w", err)
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
	if c.wire.jobs {
		return nil, c.notInAPI("Builds.Update", "reports jobs with Jobs.Update")
	}
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
	form := updateForm{Token: token, State: opts.State, Trace: opts.Trace}
	req, err := c.newJobRequest(ctx, http.MethodPut, id, form.encode(), formContentType)
	if err != nil {
		return nil, err
	}
	return c.do(req, nil, call{retry: retryTransient, small: true, secrets: []string{token}})
}
