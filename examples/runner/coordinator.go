//go:build unix

package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"time"

	"github.com/runnerapi/runnerapi"
)

// runnerInfo is how the runner describes itself to the coordinator.
var runnerInfo = runnerapi.RunnerInfo{Name: "runnerapi example runner", Version: runnerapi.Version,
	Platform: runtime.GOOS, Architecture: runtime.GOARCH}

// newClient makes the one client the runner talks through. Its retries back off in proportion to the poll
// interval (at the default interval this is the SDK's default policy), and each is logged. timeout bounds each
// attempt of a small request.
// api is the API it speaks.
func newClient(url, token string, api runnerapi.API, interval, timeout time.Duration, log *logger) (*runnerapi.Client, error) {
	policy := runnerapi.DefaultRetryPolicy()
	policy.BaseDelay, policy.MaxDelay = interval/12, 5*interval
	opts := []runnerapi.Option{runnerapi.WithRetryPolicy(policy), runnerapi.WithTimeout(timeout),
		runnerapi.WithLogger(slogFor(log)), runnerapi.WithAPI(api)}
	if token != "" {
		opts = append(opts, runnerapi.WithRunnerToken(token))
	}
	return runnerapi.NewClient(url, opts...)
}

// where is the coordinator's address as the log shows it: scheme and host, nothing that could hold a secret.
func where(c *runnerapi.Client) string { return c.BaseURL().Scheme + "://" + c.BaseURL().Host }

// waiter spaces out the attempts after failures that may pass: doubling from the interval up to twenty times it,
// or longer when the coordinator asks for it with Retry-After.
type waiter struct {
	interval time.Duration
	failures int
}

// next returns the wait after one more failure, whose answer was resp.
func (w *waiter) next(resp *runnerapi.Response) time.Duration {
	w.failures++
	ceiling := w.interval
	for i := 1; i < w.failures && ceiling < 20*w.interval; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, 20*w.interval)
	d := ceiling/2 + rand.N(ceiling/2+1)
	if resp != nil && resp.Response != nil {
		if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
			d = max(d, min(time.Duration(secs)*time.Second, 5*time.Minute))
		}
	}
	return d
}

// reset forgets the failures once a call succeeded.
func (w *waiter) reset() { w.failures = 0 }

// sleep waits d, or less if ctx ends first.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// mayPass reports whether a failure may pass if the call is made again: a transient one in the SDK's sense, or a
// conflict while the coordinator assigned a build.
func mayPass(err error) bool {
	return runnerapi.IsTransient(err) || errors.Is(err, runnerapi.ErrConflict)
}

// lastingReason says why err will not pass by waiting, in words for the operator, or "" when it may pass.
// tokenKind names the token the call sent.
func lastingReason(c *runnerapi.Client, err error, tokenKind string) string {
	var (
		te *runnerapi.TransportError
		er *runnerapi.ErrorResponse
	)
	switch {
	case err == nil || mayPass(err):
		return ""
	case errors.Is(err, runnerapi.ErrForbidden):
		return fmt.Sprintf("the coordinator at %s refused the %s", where(c), tokenKind)
	case notCoordinator(err):
		return notCoordinatorReason(c)
	case errors.As(err, &te):
		return fmt.Sprintf("cannot talk to the coordinator at %s: %v", where(c), te.Err)
	case errors.As(err, &er) && er.StatusCode >= 500:
		return "" // a 5xx the SDK does not call transient (501, 505): the coordinator may be mended meanwhile
	}
	return fmt.Sprintf("the coordinator at %s: %v", where(c), err)
}

// notCoordinatorReason says that the address is not a coordinator.
func notCoordinatorReason(c *runnerapi.Client) string {
	return fmt.Sprintf("%s does not serve the CI API (it answers 404 with a page that is not the coordinator's); check -url", where(c))
}

// notCoordinator reports whether err says the address does not serve the CI API: a 404 that is not the
// coordinator's JSON (a web server's page, another service).
func notCoordinator(err error) bool { return errors.Is(err, runnerapi.ErrNotCoordinator) }
