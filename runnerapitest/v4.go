package runnerapitest

import (
	"crypto/rand"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/runnerapi/runnerapi"
)

// The runner API v4 as today's GitLab serves it, under /api/v4: the runners endpoints (v4_runners.go), the jobs
// endpoints (v4_jobs.go), the job payload (v4_payload.go) and artifacts with their object storage
// (v4_artifacts.go). It works on the same runners and builds as the CI API v1.

// Error messages of the runner API v4. Its forbidden!(reason) joins the reason with a single space, where the
// 8.x API of v1 had two.
const (
	msgJobNotProcessing = "403 Forbidden - Job is not processing on runner"
	msgJobErased        = "403 Forbidden - Job has been erased!"
	msgInvalidToken     = "403 Forbidden - invalid token supplied"
	msgRegistrationGone = "410 Gone - runner registration disallowed"
	// GitLab's not_found!(resource) appends " Not Found" to its argument, which here already says it.
	msgManagerNotFound = "404 Runner manager not found Not Found"
	msgArtifactTooBig  = "file size has reached maximum size limit"
	msgArtifactExists  = "another artifact of the same type already exists"
	msgRateLimited     = "This endpoint has been requested too many times. Try again later."
	msgNoJobRouter     = "Job Router is not available. Please contact your administrator."
)

// stateCanceling is the state of a job whose runner has been asked to cancel it gracefully (CancelGracefully): it
// still runs its after_script and reports, and is canceled then.
const stateCanceling runnerapi.BuildState = "canceling"

// Defaults of the v4 timers, as on GitLab.
const (
	// defaultTraceUpdateInterval is the X-GitLab-Trace-Update-Interval of a trace part when nobody watches the log
	// (Gitlab::Ci::Trace::UPDATE_FREQUENCY_DEFAULT).
	defaultTraceUpdateInterval = 30
	// defaultAcceptTimeout is how long a final update waits for the trace to match its checksum before the job is
	// finished anyway (Ci::UpdateBuildStateService::ACCEPT_TIMEOUT).
	defaultAcceptTimeout = 5 * time.Minute
	// maxLongPollBody is the most Workhorse reads of a jobs/request body it long-polls.
	maxLongPollBody = 32 << 10
)

// v4Config holds the options of the runner API v4.
type v4Config struct {
	registrationDisallowed bool
	tokenLifetime          time.Duration
	longPoll               time.Duration
	traceInterval          int
	finalHolds             int
	finalInterval          int
	acceptTimeout          time.Duration
	strictContentRange     bool
	traceSizeLimit         int64
	objectStorage          bool
	store                  *objectStorage
	uploadRedirect         bool
	uploadHost             *httptest.Server
	longPollWaiters        atomic.Int64 // job requests held by long polling now
}

// WithoutRegistrationTokens makes POST /api/v4/runners answer 410 Gone for any token, as GitLab 17.0 and later do
// once the instance no longer takes registration tokens; runners are then created in the UI and verified (see
// AddRunner and POST /api/v4/runners/verify). The CI API v1 predates the setting and still registers.
func WithoutRegistrationTokens() Option {
	return func(s *Server) { s.v4.registrationDisallowed = true }
}

// WithRunnerTokenLifetime makes the tokens POST /api/v4/runners and reset_authentication_token hand out expire d
// after they are issued, as with GitLab's runner token expiration settings: their token_expires_at is set, and an
// expired token is refused 403 by every runner endpoint. AddRunner's tokens do not expire (see
// RunnerTokenExpiresAt). Zero or less: tokens do not expire, token_expires_at is null.
func WithRunnerTokenLifetime(d time.Duration) Option {
	return func(s *Server) { s.v4.tokenLifetime = max(d, 0) }
}

// WithLongPolling makes POST /api/v4/jobs/request long-poll as GitLab Workhorse does with
// apiCiLongPollingDuration d: a request with a JSON body holding token and last_update, whose last_update is the
// runner's current queue value, is held until the queue changes or d passes, and then answered 204 without
// X-GitLab-Last-Update; every answer carries Gitlab-Ci-Builds-Polling: yes, and a body above 32 KiB is refused 413.
// Zero, the default, answers at once as Workhorse's default does.
func WithLongPolling(d time.Duration) Option {
	return func(s *Server) { s.v4.longPoll = max(d, 0) }
}

// WithTraceUpdateInterval sets the X-GitLab-Trace-Update-Interval of v4 trace answers, in seconds: 30 by default,
// as GitLab sends when nobody watches the job's log (3 when someone does). Values below 1 keep the default.
func WithTraceUpdateInterval(seconds int) Option {
	return func(s *Server) {
		if seconds > 0 {
			s.v4.traceInterval = seconds
		}
	}
}

// WithFinalUpdateHolds makes the first n final updates (PUT /api/v4/jobs/:id with state success or failed and a
// checksum) of every job answer 202 even when the trace matches, as GitLab does while it persists the trace's live
// chunks, so a test can drive a runner through the final-update loop. With n 0, the default, only a trace that does
// not match the checksum yet is answered 202.
func WithFinalUpdateHolds(n int) Option {
	return func(s *Server) { s.v4.finalHolds = max(n, 0) }
}

// WithFinalUpdateInterval fixes the X-GitLab-Trace-Update-Interval of a final update's 202, in seconds. By default
// it backs off as GitLab's does: 1, 2, 4 ... 64 seconds for the first, second, third ... 202 of a job. Values below
// 1 keep the default.
func WithFinalUpdateInterval(seconds int) Option {
	return func(s *Server) {
		if seconds > 0 {
			s.v4.finalInterval = seconds
		}
	}
}

// WithFinalUpdateAcceptTimeout sets how long final updates are answered 202 while the trace does not match their
// checksum, counted from the job's first final update: once it has passed, the job is finished anyway and
// JobInfo.ChecksumMismatch says so, as GitLab does after its 5 minutes (the default). Zero or less keeps it.
func WithFinalUpdateAcceptTimeout(d time.Duration) Option {
	return func(s *Server) {
		if d > 0 {
			s.v4.acceptTimeout = d
		}
	}
}

// WithStrictContentRange makes the v4 trace endpoint refuse with 400 a part whose Content-Range END is not
// START + length - 1, the inclusive end gitlab-runner 11.3 and later send. GitLab reads START only; this option is
// stricter, to catch a client that sends v1's exclusive end. An empty part may give any END.
func WithStrictContentRange() Option {
	return func(s *Server) { s.v4.strictContentRange = true }
}

// WithTraceSizeLimit sets the plan limit of a job's log (GitLab's ci_jobs_trace_size_limit), in bytes: the v4
// trace part that takes the log above it is stored, and then answered 403 while the job is failed with
// trace_size_exceeded, as Ci::AppendBuildTraceService does. Zero, the default, sets no limit.
func WithTraceSizeLimit(n int64) Option {
	return func(s *Server) { s.v4.traceSizeLimit = max(n, 0) }
}

// RunnerTokenExpiresAt gives a runner of AddRunner a token that expires at t: verify and reset_authentication_token
// answer it as token_expires_at, and every runner endpoint refuses the token 403 from then on.
func RunnerTokenExpiresAt(t time.Time) RunnerOption {
	return func(r *runner) { r.tokenExpiresAt = t.UTC().Truncate(time.Millisecond) }
}

// mountV4 adds the runner API v4's routes to mux.
func (s *Server) mountV4(mux *http.ServeMux) {
	route := func(method, path string, ep Endpoint, h http.HandlerFunc) {
		mux.Handle(method+" /api/v4"+path, s.endpoint(ep, func(w http.ResponseWriter, r *http.Request) {
			// GitLab answers every request with its correlation ID, which gitlab-runner logs.
			w.Header().Set("X-Request-Id", correlationID())
			h(w, r)
		}))
	}
	route(http.MethodPost, "/runners", EndpointRunnersRegister, s.handleRunnersRegister)
	route(http.MethodPost, "/runners/verify", EndpointRunnersVerify, s.handleRunnersVerify)
	route(http.MethodDelete, "/runners", EndpointRunnersDelete, s.handleRunnersDelete)
	route(http.MethodDelete, "/runners/managers", EndpointRunnersManagersDelete, s.handleRunnersManagersDelete)
	route(http.MethodPost, "/runners/reset_authentication_token", EndpointRunnersResetToken, s.handleRunnersResetToken)
	route(http.MethodGet, "/runners/router/discovery", EndpointRunnersRouter, s.handleRunnersRouterDiscovery)
	route(http.MethodPost, "/jobs/request", EndpointJobRequest, s.handleJobRequest)
	route(http.MethodPut, "/jobs/{id}", EndpointJobUpdate, s.handleJobUpdate)
	route(http.MethodPatch, "/jobs/{id}/trace", EndpointJobTrace, s.handleJobTrace)
	route(http.MethodPost, "/jobs/{id}/artifacts", EndpointJobArtifactsUpload, s.handleJobArtifactsUpload)
	route(http.MethodGet, "/jobs/{id}/artifacts", EndpointJobArtifactsDownload, s.handleJobArtifactsDownload)
}

// correlationID returns a new correlation ID in the shape of GitLab's: a ULID, 26 characters of Crockford's base32.
func correlationID() string {
	const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	p := make([]byte, 24)
	_, _ = rand.Read(p)
	out := []byte("01")
	for _, c := range p {
		out = append(out, alphabet[c%32])
	}
	return string(out)
}

// writeValidationError answers a request that Grape's parameter validation refuses: 400 {"error": msg}.
func writeValidationError(w http.ResponseWriter, msg string) {
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": msg})
}

// writeStatusBody answers status with the status code as the whole body, as GitLab's `body "201"` does; it is JSON
// too.
func writeStatusBody(w http.ResponseWriter, status int) {
	body := strconv.Itoa(status)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

// jobToken returns the job token of a v4 jobs request, as GitLab's job_token helper: params[:token] first, then
// the JOB-TOKEN header.
func jobToken(r *http.Request, p params) string {
	if p.has("token") {
		return p.get("token")
	}
	return r.Header.Get("JOB-TOKEN")
}

// executing reports whether a job is in one of GitLab's EXECUTING_STATUSES, whose job token opens the jobs
// endpoints.
func executing(st runnerapi.BuildState) bool {
	return st == runnerapi.StateRunning || st == stateCanceling
}

// lockJob authenticates a v4 jobs request as GitLab's authenticate_job! does: the token must be the job's, the
// job not erased, and, with requireExecuting, running or canceling. On success it returns the job with s.mu held;
// otherwise it answers 403 (never 404, by GitLab's design), with Job-Status when the job is not executing, and
// returns nil with s.mu released.
func (s *Server) lockJob(w http.ResponseWriter, r *http.Request, token string, requireExecuting bool) *build {
	id, ok := pathID(r)
	s.mu.Lock()
	b := s.builds[id]
	switch {
	case !ok || b == nil || token == "" || token != b.b.Token:
		s.mu.Unlock()
		writeMessage(w, http.StatusForbidden, msgForbidden)
		return nil
	case b.erased:
		s.mu.Unlock()
		writeMessage(w, http.StatusForbidden, msgJobErased)
		return nil
	case requireExecuting && !executing(b.state):
		st := b.state
		s.mu.Unlock()
		w.Header().Set("Job-Status", string(st))
		writeMessage(w, http.StatusForbidden, msgJobNotProcessing)
		return nil
	}
	return b
}

// heartbeatLocked records a contact of the runner that was handed b, as PUT and PATCH do on GitLab.
func (s *Server) heartbeatLocked(b *build) {
	for _, rn := range s.runners {
		if rn.id == b.runnerID {
			rn.lastContact = time.Now()
			return
		}
	}
}

// jobState is what the runner API v4 adds to a build.
type jobState struct {
	taken            bool // handed out by POST /api/v4/jobs/request
	cancelGracefully bool // its runner advertised info.features.cancel_gracefully when it took it
	systemID         string
	debugTrace       bool
	failureReason    string
	exitCode         int64
	pending          *pendingState // the first final update with a checksum
	finalAnswers     int           // final updates answered 202
	checksumMismatch bool
	reports          map[string]*storedArtifact // uploads by artifact_type, the archive included
}

// pendingState is the final state a runner reported with a checksum, kept from its first attempt on, as GitLab's
// BuildPendingState.
type pendingState struct {
	state         runnerapi.BuildState
	checksum      string
	bytesize      int64
	failureReason string
	exitCode      int64
	since         time.Time
}

// JobInfo is what a build's snapshot says of it as a runner API v4 job.
type JobInfo struct {
	// Taken says whether a v4 runner took it through POST /api/v4/jobs/request.
	Taken bool
	// SystemID is the system_id of the runner manager that took it, "" when none was sent.
	SystemID string
	// CancelGracefully says whether its runner advertised info.features.cancel_gracefully when it took it, which
	// makes CancelGracefully move it to canceling rather than canceled.
	CancelGracefully bool
	// DebugTrace says whether a trace part starting at 0 was sent with debug_trace=true.
	DebugTrace bool
	// FailureReason and ExitCode are what its final update reported for a failed job; an unknown failure_reason
	// is stored as "unknown_failure", as on GitLab.
	FailureReason string
	ExitCode      int64
	// Checksum and Bytesize are the output checksum ("crc32:%08x") and bytesize of its first final update with a
	// checksum, which GitLab keeps for every retry; empty and 0 before.
	Checksum string
	Bytesize int64
	// FinalUpdateRetries counts the final updates answered 202.
	FinalUpdateRetries int
	// ChecksumMismatch says the job was finished with a trace that did not match the checksum, once
	// WithFinalUpdateAcceptTimeout had passed.
	ChecksumMismatch bool
	// ArtifactTypes lists the artifact_type of each upload it kept, sorted; "archive" stands for its artifacts file,
	// however it came (a v4 or v1 upload, or SetArtifact).
	ArtifactTypes []string
}

// jobInfo describes b as a v4 job.
func jobInfo(b *build) JobInfo {
	j := &b.job
	types := sortedKeys(j.reports)
	if b.artifact != nil {
		types = append(types, "archive")
		slices.Sort(types)
	}
	out := JobInfo{
		Taken: j.taken, SystemID: j.systemID, CancelGracefully: j.cancelGracefully, DebugTrace: j.debugTrace,
		FailureReason: j.failureReason, ExitCode: j.exitCode, FinalUpdateRetries: j.finalAnswers,
		ChecksumMismatch: j.checksumMismatch, ArtifactTypes: types,
	}
	if j.pending != nil {
		out.Checksum, out.Bytesize = j.pending.checksum, j.pending.bytesize
	}
	return out
}

// sortedKeys returns the keys of m, sorted.
func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// CancelGracefully cancels a build as GitLab's cancel does for a runner that supports it: a running build taken
// by a v4 runner that advertised info.features.cancel_gracefully becomes canceling, which its runner learns from
// the Job-Status of its next trace part or update, and which its final update turns into canceled whatever state
// it reports. Any other build that has not finished is canceled at once, as Cancel does. Cancel on a canceling
// build cancels it at once, as GitLab's force cancel.
func (s *Server) CancelGracefully(id int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := s.unfinishedBuildLocked(id)
	if err != nil {
		return err
	}
	if b.state == runnerapi.StateRunning && b.job.taken && b.job.cancelGracefully {
		s.setStateLocked(b, stateCanceling)
		return nil
	}
	s.setStateLocked(b, runnerapi.StateCanceled)
	return nil
}
