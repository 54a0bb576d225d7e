// Package runnerapi is a client for GitLab's runner APIs, through which CI runners take jobs from a GitLab
// coordinator, report their state, stream their trace and move their artifacts: the runner API v4 of every GitLab
// since 9.0, and the CI Builds API v1 of GitLab 8.x and 9.x. One Client, TraceWriter and ArtifactsService serve
// both; the API is chosen when the client is made, with WithAPI (v1 by default, for the clients written before
// v4 was spoken), and Client.DetectAPI asks a coordinator which it speaks with one request that has no effect.
//
// # The runner API v4 (today's GitLab)
//
// Make the client with WithAPI(APIv4); take a job with Jobs.Next, stream its trace through a TraceWriter made
// with NewJobTraceWriter, and send the final update with the trace's checksum, which Jobs.Update resends while the
// coordinator answers 202:
//
//	c, err := runnerapi.NewClient("https://gitlab.example.com", runnerapi.WithAPI(runnerapi.APIv4),
//		runnerapi.WithRunnerToken(token)) // a glrt- token: check it once with c.Runners.Verify
//	job, _, err := c.Jobs.Next(ctx, &runnerapi.JobNextOptions{JobRequestOptions: runnerapi.JobRequestOptions{
//		SystemID: systemID, Features: []string{"trace_checksum", "trace_size", "cancelable"}}})
//	w, err := c.NewJobTraceWriter(ctx, job, nil) // masks the job's token and secret variables
//	... run job.Script(), writing its output to w; watch w.Canceled() and w.CancelRequested() ...
//	err = w.Close()
//	_, _, err = c.Jobs.Update(ctx, job.ID, &runnerapi.JobUpdateOptions{State: runnerapi.StateSuccess,
//		Output: w.Output()}, runnerapi.WithToken(job.Token))
//
// Runners.Register (with a registration token), Verify, ResetToken, Unregister and DeleteManager manage the
// runner; Artifacts.Upload takes UploadOptions.ArtifactType for reports, and Download a dependency's token.
// Not modelled: the two-phase job commit, the Job Router's discovery, and trace_reset's 412.
//
// # The CI Builds API v1
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
// artifacts endpoints authenticate with the build's own token (Build.Token), sent in the BUILD-TOKEN header (on
// v4, the job token: in JOB-TOKEN, and as the token parameter of Jobs.Update; RUNNER-TOKEN besides the runner
// token's parameter). No
// token is ever put into a URL, an error string or a log record, and the BUILD-TOKEN header is not sent to
// another host when the coordinator redirects. A call whose token is missing fails before any network I/O.
//
// # Taking builds
//
// Builds.Register takes one build if there is one; Builds.Next polls it until one comes. "No build" is a 204 to
// gitlab-ci-multi-runner's User-Agent, and to any other (this SDK's default among them) a 404 with GitLab's JSON
// body, which a paused runner gets too: both are a nil build and a nil error. A 404 that is not GitLab's JSON (an
// HTML page, an empty body) is an error matching ErrNotCoordinator, since the address does not serve this API.
// The coordinator assigns a build before it answers, so a register request in flight when the context ends is let
// finish, for up to 10 seconds more (less when the per-attempt timeout ends it first), and the build it brings is
// returned with a nil error; one not yet sent in full ends with the context.
//
// # Errors
//
// An answer with a status other than 2xx is an *ErrorResponse; errors.Is matches it against ErrForbidden (403),
// ErrNotFound (404), ErrConflict (409) and ErrTooLarge (413), and register's foreign 404 also against
// ErrNotCoordinator. A failed exchange (a refused or dropped connection, a timed-out attempt) is a *TransportError.
//
// # Retries
//
// Transient failures (connection errors, timed-out attempts, and 408, 429, 500, 502, 503 and 504 answers: see
// IsTransient) are retried with full-jitter exponential backoff that honours Retry-After (see RetryPolicy). Other
// statuses, 501 and 505 among them, are not. A request is retried only when that is safe: register only when the
// coordinator surely did not act on it (a refused connection, or a 429, 502 or 503), and no request whose body is a
// one-shot stream.
//
// # Timeouts
//
// Each attempt of a small call (register, update, delete, a trace part) is bounded by DefaultTimeout, or what
// WithTimeout sets; uploads and downloads by their context alone. A TraceWriter bounds its requests even when
// WithTimeout(0) turns the bound off for the other calls (see TraceOptions.AttemptTimeout).
package runnerapi
