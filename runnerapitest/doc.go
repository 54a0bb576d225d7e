// Package runnerapitest provides a fake GitLab coordinator for tests, in the manner of net/http/httptest. It serves
// both runner APIs from one state: the CI API v1 of GitLab 8.x and 9.x (/ci/api/v1) and the runner API v4 of every
// GitLab since (/api/v4); a build enqueued once is taken by whichever runner asks first, of either API.
//
// NewServer starts, on loopback, a coordinator that serves the CI API v1 as GitLab 8.x and 9.x do: runner
// registration and deletion (/ci/api/v1/runners), runner and build tokens, register with long polling
// (X-GitLab-Last-Update), updates, trace appends with strict Content-Range checking and 416 answers, Build-Status on
// every accepted trace part, and artifacts upload, download (with byte ranges) and delete, with the error bodies
// real coordinators send. Uploads are streamed to a temporary directory, which Close removes.
//
// It speaks the wire as GitLab's Grape API does, so that gitlab-ci-multi-runner itself can run against it: every
// route also answers with a .json suffix (builds/register.json, builds/:id.json, runners/register.json, ...);
// parameters are read from the query string, a urlencoded or multipart form, or a JSON body alike, and a token
// parameter wins over the BUILD-TOKEN header; register's "no build" is 204 only for User-Agents that GitLab's own
// pattern takes for gitlab-ci-multi-runner, 404 for any other (WithNoBuildStatus fixes it); a 416 carries Range and
// nothing else.
//
// A test drives it directly: AddRunner and Enqueue set the scene, Cancel and Erase change it, and Build, Trace,
// Artifact, Requests and WaitFinished report what the code under test did:
//
//	srv := runnerapitest.NewServer()
//	defer srv.Close()
//	srv.AddRunner("runner-token")
//	id := srv.EnqueueCommands("unit", "go test ./...")
//
//	// ... run the runner under test against srv.URL with the token "runner-token" ...
//
//	state, err := srv.WaitFinished(ctx, id)
//	trace := srv.Trace(id)
//
// A runner can also register itself: AddRegistrationToken adds an instance-wide registration token and
// SetProjectRunnersToken a project's, POST /runners/register with either answers a new runner's ID and token, and
// Runners lists what was registered (description, tags, run_untagged, locked, project), never with a token.
// DELETE /runners/delete removes a runner, whose token is refused from then on.
//
// The runner API v4 is served as today's GitLab (with Workhorse in front) serves it to gitlab-runner: POST
// /api/v4/runners registers with a registration token (410 with WithoutRegistrationTokens), POST
// /api/v4/runners/verify verifies a runner created in the UI (AddRunner with a "glrt-" token) and records its
// system_id, DELETE /api/v4/runners and /api/v4/runners/managers unregister, and reset_authentication_token
// rotates the token (WithRunnerTokenLifetime makes tokens expire). POST /api/v4/jobs/request hands out the same
// builds as v4 jobs (job_info, git_info, steps, variables with masked, dependencies with tokens, ...), with
// X-GitLab-Last-Update and, with WithLongPolling, Workhorse's long polling. PUT /api/v4/jobs/:id takes the job
// token as its required token parameter, answers Job-Status, and answers a final update 202 with
// X-GitLab-Trace-Update-Interval until the trace matches its "crc32:%08x" checksum (WithFinalUpdateHolds forces
// a few); PATCH /api/v4/jobs/:id/trace reads Content-Range's START and answers Job-Status, Range and
// X-GitLab-Trace-Update-Interval; a job that is no longer running or canceling is refused 403 with Job-Status.
// CancelGracefully moves a job whose runner advertised cancel_gracefully to canceling, which its final update
// turns into canceled. Artifacts are uploaded by artifact_type (JobArtifact), and downloaded with a dependent job's
// token, or through a 302 to a fake object storage that refuses any token (WithObjectStorage); WithUploadRedirect
// answers uploads 307 to another host. Router discovery answers 501, as an instance without the Job Router does.
// JobInfo in BuildInfo.Job says what a v4 runner reported. Not served: the two-phase job commit (a state=pending
// update is refused 400, as by a server without it), Workhorse's authorize call, the PRIVATE-TOKEN user API, tag and
// protection matching, and dropping jobs that need a feature the runner lacks.
//
// SetFaults injects failures drawn from a seeded random stream per endpoint (5xx and 429 answers, connections
// dropped before or after the request was applied, a trace that loses its tail, a trace part applied late that
// cuts back an acknowledged trace, delays), so a test can prove that a client survives a real network, and repeat
// a failing run with the same seed. ScriptFaults makes the next requests to an endpoint fail in a given order
// before any random rule is drawn (the first register answers 500, the second is dropped, ...), for tests of one
// exact sequence. FaultsInjected says what was injected. Faults apply to the endpoints of both APIs (the v4 ones are
// the Endpoint constants EndpointRunners..., EndpointJob... and EndpointObjectStorage); FaultRateLimited answers
// 429 as GitLab's own rate limiter does.
package runnerapitest
