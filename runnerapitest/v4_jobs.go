package runnerapitest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/runnerapi/runnerapi"
)

// failureReasons are the keys of GitLab's CommitStatus failure_reasons, in their order: a final update's
// failure_reason outside them is stored as unknown_failure, and the job payload's features.failure_reasons lists
// them, so that gitlab-runner sends each of its reasons only when the server knows it.
var failureReasons = []string{
	"unknown_failure", "script_failure", "api_failure", "stuck_or_timeout_failure", "runner_system_failure",
	"missing_dependency_failure", "runner_unsupported", "stale_schedule", "job_execution_timeout",
	"archived_failure", "unmet_prerequisites", "scheduler_failure", "data_integrity_failure",
	"forward_deployment_failure", "user_blocked", "project_deleted", "ci_quota_exceeded", "pipeline_loop_detected",
	"no_matching_runner", "trace_size_exceeded", "builds_disabled", "environment_creation_failure",
	"deployment_rejected", "failed_outdated_deployment_job", "job_execution_server_timeout",
	"stuck_pending_with_matching_runners", "stuck_pending_no_matching_runners", "no_updates_running",
	"no_updates_canceling", "server_timeout_running", "server_timeout_canceling", "runner_configuration_error",
	"runner_external_dependency_failure", "runner_interrupted", "protected_environment_failure",
	"insufficient_bridge_permissions", "downstream_bridge_project_not_found", "invalid_bridge_trigger",
	"upstream_bridge_project_not_found", "insufficient_upstream_permissions", "bridge_pipeline_is_child_pipeline",
	"downstream_pipeline_creation_failed", "secrets_provider_not_found", "reached_max_descendant_pipelines_depth",
	"ip_restriction_failure", "reached_max_pipeline_hierarchy_size",
	"reached_downstream_pipeline_trigger_rate_limit",
}

// knownFailureReason reports whether reason is one of failureReasons.
func knownFailureReason(reason string) bool {
	for _, r := range failureReasons {
		if r == reason {
			return true
		}
	}
	return false
}

// runnerInfo reads the info[...] parameters of a request.
func runnerInfo(p params) runnerapi.RunnerInfo {
	return runnerapi.RunnerInfo{
		Name: p.get("info[name]"), Version: p.get("info[version]"), Revision: p.get("info[revision]"),
		Platform: p.get("info[platform]"), Architecture: p.get("info[architecture]"),
	}
}

// handleJobRequest serves POST /api/v4/jobs/request: hand the oldest pending build to the runner as a v4 job (201),
// or answer 204 with X-GitLab-Last-Update, as GitLab's acquire_ci_job! does, behind Workhorse's long polling when
// WithLongPolling is set.
func (s *Server) handleJobRequest(w http.ResponseWriter, r *http.Request) {
	if s.v4.longPoll > 0 {
		w.Header().Set("Gitlab-Ci-Builds-Polling", "yes")
		data, err := io.ReadAll(io.LimitReader(r.Body, maxLongPollBody+1))
		if err != nil {
			writeMessage(w, http.StatusBadRequest, msgBadRequest)
			return
		}
		if len(data) > maxLongPollBody {
			writeMessage(w, http.StatusRequestEntityTooLarge, msgTooLarge)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(data))
		if s.longPoll(r, data) {
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	p, rn, _ := s.lockRunnerV4Request(w, r)
	if rn == nil {
		return
	}
	heartbeatV4Locked(rn, p)
	if rn.queueValue == "" {
		rn.queueValue = randomHex(16)
	}
	if rn.paused {
		value := rn.queueValue
		s.mu.Unlock()
		w.Header().Set("X-GitLab-Last-Update", value)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if last := p.get("last_update"); last != "" && last == rn.queueValue {
		// Nothing changed since the runner last asked: answer at once, without searching the queue.
		s.mu.Unlock()
		w.Header().Set("X-GitLab-Last-Update", last)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	value := rn.queueValue
	found := s.firstPendingLocked()
	if found == nil {
		s.mu.Unlock()
		w.Header().Set("X-GitLab-Last-Update", value)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	found.runnerID = rn.id
	found.job.taken = true
	found.job.cancelGracefully = rn.features["cancel_gracefully"]
	found.job.systemID = p.get("system_id")
	s.setStateLocked(found, runnerapi.StateRunning)
	payload := s.jobPayloadLocked(found)
	s.mu.Unlock()
	writeJSON(w, http.StatusCreated, payload)
}

// longPoll does what Workhorse does before a jobs/request reaches Rails: when the body is a JSON object with a
// token and a last_update that is the runner's current queue value, it waits until that value changes or the
// polling duration passes, and reports true: the request is answered 204 there. It reports false when the request
// must go on to Rails.
func (s *Server) longPoll(r *http.Request, body []byte) bool {
	var req struct {
		Token      string `json:"token"`
		LastUpdate string `json:"last_update"`
	}
	if json.Unmarshal(body, &req) != nil || req.Token == "" || req.LastUpdate == "" {
		return false
	}
	timer := time.NewTimer(s.v4.longPoll)
	defer timer.Stop()
	s.v4.longPollWaiters.Add(1)
	defer s.v4.longPollWaiters.Add(-1)
	for first := true; ; first = false {
		s.mu.Lock()
		rn := s.runners[req.Token]
		differs := rn == nil || rn.queueValue != req.LastUpdate
		changed := s.changed
		s.mu.Unlock()
		if differs {
			// A value that differs at once goes to Rails; one that changes during the wait ends it with 204.
			return !first
		}
		select {
		case <-changed:
		case <-timer.C:
			return true
		case <-r.Context().Done():
			return true
		case <-s.closed:
			return true
		}
	}
}

// handleJobUpdate serves PUT /api/v4/jobs/:id: the keep-alive (state running) and the final update, whose checksum
// is checked against the trace as GitLab's Ci::UpdateBuildStateService does, answering 202 until it matches. Every
// answer but a 400 of validation carries Job-Status; the body is the status code.
func (s *Server) handleJobUpdate(w http.ResponseWriter, r *http.Request) {
	p, err := parseParams(r)
	if err != nil {
		badBody(w, err)
		return
	}
	if !p.has("token") {
		// Grape's `requires :token`: the JOB-TOKEN header alone does not do here.
		writeValidationError(w, "token is missing")
		return
	}
	for _, key := range []string{"exit_code", "output[bytesize]"} {
		if p.has(key) {
			if _, err := strconv.ParseInt(p.get(key), 10, 64); err != nil {
				writeValidationError(w, key+" is invalid")
				return
			}
		}
	}
	b := s.lockJob(w, r, p.get("token"), true)
	if b == nil {
		return
	}
	s.heartbeatLocked(b)
	status, interval := http.StatusBadRequest, 0
	switch st := runnerapi.BuildState(p.get("state")); st {
	case runnerapi.StateRunning:
		// The keep-alive: nothing changes.
		status = http.StatusOK
		b.updates++
	case runnerapi.StateSuccess, runnerapi.StateFailed:
		status, interval = s.finalUpdateLocked(b, st, p)
	}
	jobStatus := b.state
	s.mu.Unlock()
	w.Header().Set("Job-Status", string(jobStatus))
	if interval > 0 {
		w.Header().Set("X-GitLab-Trace-Update-Interval", strconv.Itoa(interval))
	}
	writeStatusBody(w, status)
}

// finalUpdateLocked applies a final update and returns its status, and the seconds to wait for a 202.
func (s *Server) finalUpdateLocked(b *build, st runnerapi.BuildState, p params) (status, interval int) {
	checksum := p.get("output[checksum]")
	if checksum == "" {
		checksum = p.get("checksum")
	}
	exitCode, _ := strconv.ParseInt(p.get("exit_code"), 10, 64)
	if checksum == "" {
		s.finishJobLocked(b, st, p.get("failure_reason"), exitCode)
		return http.StatusOK, 0
	}
	if b.job.pending == nil {
		// The first attempt is kept; retries are judged by it, whatever they say.
		bytesize, _ := strconv.ParseInt(p.get("output[bytesize]"), 10, 64)
		b.job.pending = &pendingState{state: st, checksum: checksum, bytesize: bytesize,
			failureReason: p.get("failure_reason"), exitCode: exitCode, since: time.Now()}
	}
	ps := b.job.pending
	matches := traceMatches(b.trace, ps.checksum)
	if b.job.finalAnswers < s.v4.finalHolds || (!matches && time.Since(ps.since) < s.v4.acceptTimeout) {
		interval = s.v4.finalInterval
		if interval == 0 {
			interval = 1 << min(b.job.finalAnswers, 6)
		}
		b.job.finalAnswers++
		s.notifyLocked()
		return http.StatusAccepted, interval
	}
	b.job.checksumMismatch = !matches
	s.finishJobLocked(b, ps.state, ps.failureReason, ps.exitCode)
	return http.StatusOK, 0
}

// traceMatches reports whether checksum, "crc32:" and the CRC-32 (IEEE) in hex, is that of trace.
func traceMatches(trace []byte, checksum string) bool {
	hexSum, ok := strings.CutPrefix(checksum, "crc32:")
	if !ok {
		return false
	}
	sum, err := strconv.ParseUint(hexSum, 16, 32)
	return err == nil && uint32(sum) == crc32.ChecksumIEEE(trace)
}

// finishJobLocked moves a job to its final state: canceled if it was canceling, whatever the runner reports.
func (s *Server) finishJobLocked(b *build, st runnerapi.BuildState, failureReason string, exitCode int64) {
	b.updates++
	if b.state == stateCanceling {
		s.setStateLocked(b, runnerapi.StateCanceled)
		return
	}
	if st == runnerapi.StateFailed {
		if !knownFailureReason(failureReason) {
			failureReason = "unknown_failure"
		}
		b.job.failureReason, b.job.exitCode = failureReason, exitCode
	}
	s.setStateLocked(b, st)
}

// handleJobTrace serves PATCH /api/v4/jobs/:id/trace: append the body to the trace if Content-Range's START is the
// trace's length, and answer 202 with Job-Status, Range and X-GitLab-Trace-Update-Interval; 416 with Range alone
// otherwise.
func (s *Server) handleJobTrace(w http.ResponseWriter, r *http.Request) {
	// The body is the part, never parameters: only the query can hold a token parameter.
	p := params{body: url.Values{}, query: r.URL.Query()}
	b := s.lockJob(w, r, jobToken(r, p), true)
	if b == nil {
		return
	}
	s.heartbeatLocked(b)
	s.mu.Unlock()

	start, end, part, ok := s.readTracePart(w, r, writeMessage)
	if !ok {
		return
	}
	if s.v4.strictContentRange && len(part) > 0 {
		// An END too large to parse is -1, which no part's last byte is.
		if start < 0 || end != start+int64(len(part))-1 {
			writeMessage(w, http.StatusBadRequest, msgInvalidRange)
			return
		}
	}
	debug, _ := railsBool(p.get("debug_trace"))

	s.mu.Lock()
	n := int64(len(b.trace))
	if start != n {
		s.mu.Unlock()
		w.Header().Set("Range", fmt.Sprintf("0-%d", n))
		writeMessage(w, http.StatusRequestedRangeNotSatisfiable, msgRangeNotSatisfy)
		return
	}
	if debug && start == 0 {
		b.job.debugTrace = true
	}
	if la, _ := r.Context().Value(lateApplyKey{}).(*lateApply); la != nil {
		n, state, waiting := s.applyPartLate(r, la, b, func() { b.trace = truncateAppend(b.trace, start, part) })
		if waiting {
			s.answerJobTrace(w, n, state)
		}
		return
	}
	b.trace = append(b.trace, part...)
	n = int64(len(b.trace))
	if limit := s.v4.traceSizeLimit; limit > 0 && n > limit {
		b.job.failureReason = "trace_size_exceeded"
		s.setStateLocked(b, runnerapi.StateFailed)
		s.mu.Unlock()
		writeMessage(w, http.StatusForbidden, msgForbidden)
		return
	}
	state := b.state
	s.mu.Unlock()
	s.answerJobTrace(w, n, state)
}

// answerJobTrace answers an appended part: the job's status, the trace's length and the interval of the next part.
func (s *Server) answerJobTrace(w http.ResponseWriter, length int64, state runnerapi.BuildState) {
	w.Header().Set("Job-Status", string(state))
	w.Header().Set("Range", fmt.Sprintf("0-%d", length))
	w.Header().Set("X-GitLab-Trace-Update-Interval", strconv.Itoa(s.v4.traceInterval))
	w.WriteHeader(http.StatusAccepted)
}
