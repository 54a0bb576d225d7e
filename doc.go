// Package runnerapi is a client for the CI Builds API v1, through which CI runners take builds from a GitLab CI
// coordinator, report their state, stream their trace and move their artifacts.
//
// Create a Client with the coordinator's address and the runner token, take a build with Builds.Next, stream its
// output through a TraceWriter, move artifacts through Artifacts, and report the result with Builds.Update:
//
//	c, err := runnerapi.NewClient("https://gitlab.example.com", runnerapi.WithRunnerToken(token))
//	build, _, err := c.Builds.Next(ctx, nil)
//	...
//	_, err = c.Builds.Update(ctx, build.ID, &runnerapi.UpdateOptions{State: runnerapi.StateSuccess})
//
// # Authentication
//
// Register and update authenticate with the runner token, which travels in the request body. The trace and
// artifacts endpoints authenticate with the build's own token (Build.Token), sent in the BUILD-TOKEN header. No
// token is ever put into a URL, an error string or a log record, and the BUILD-TOKEN header is not sent to
// another host when the coordinator redirects. A call whose token is missing fails before any network I/O.
//
// # Errors
//
// An answer with a status other than 2xx is an *ErrorResponse; errors.Is matches it against ErrForbidden (403),
// ErrNotFound (404), ErrConflict (409) and ErrTooLarge (413). A failed exchange (a refused or dropped connection, a
// timed-out attempt) is a *TransportError.
//
// # Retries
//
// Transient failures (connection errors, timeouts, 408, 429 and 5xx answers) are retried with full-jitter
// exponential backoff that honours Retry-After (see RetryPolicy). A request is retried only when that is safe:
// register only when the coordinator surely did not act on it, and no request whose body is a one-shot stream.
package runnerapi
