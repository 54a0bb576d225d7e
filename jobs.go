package runnerapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// JobsService takes and reports jobs on the runner API v4 (WithAPI(APIv4)); BuildsService does the same on the
// CI API v1. The two are apart because the payloads are: a v4 job and its final update (exit code, failure
// reason, the trace's checksum) have no v1 counterpart. Everything else is shared: the client, its retry policy
// and redaction, the register loop's grace, the TraceWriter and ArtifactsService. Reach it as Client.Jobs.
type JobsService service

// Format prints the service as the API root it talks to, for every verb.
func (s JobsService) Format(f fmt.State, _ rune) { formatService(f, "JobsService", s.client) }

// JobUpdateOptions are the parameters of JobsService.Update.
type JobUpdateOptions struct {
	// State is StateRunning (the keep-alive), StateSuccess or StateFailed.
	State BuildState
	// FailureReason says why a failed job failed, such as "script_failure" or "runner_system_failure"; the
	// coordinator stores a reason it does not know as unknown_failure.
	FailureReason string
	// ExitCode is the script's exit code, which the coordinator matches against allow_failure exit codes.
	ExitCode int
	// Output is the trace's checksum and length (TraceWriter.Output after Close), which the coordinator checks
	// against the trace it stored before it finishes the job.
	Output TraceOutput
}

// jobUpdateBody is the JSON body of PUT jobs/:id, in gitlab-runner's shape: empty fields left out, output always
// there.
type jobUpdateBody struct {
	Token         string      `json:"token"`
	State         BuildState  `json:"state"`
	FailureReason string      `json:"failure_reason,omitempty"`
	ExitCode      int         `json:"exit_code,omitempty"`
	Output        TraceOutput `json:"output"`
}

// maxUpdateHolds bounds how many 202 answers Update waits out: GitLab stops holding a final update once it is 5
// minutes old, which its backoff of 1 to 64 seconds reaches in about ten.
const maxUpdateHolds = 64

// Update sets job id's state, authenticated by the job token (WithToken, else the client's WithBuildToken), sent
// both as the token parameter GitLab requires and in the JOB-TOKEN header. It returns the job's status from the
// answer's Job-Status header.
//
// A 202 means the coordinator has not finished the job yet (it is still storing the trace): Update waits the
// X-GitLab-Trace-Update-Interval it asks for and sends the same state and checksum again, until a 200. It stops
// early, with a nil error, when Job-Status says canceled or failed: the job is over. A 403 (the job is no longer
// running, its token expired) is an error matching ErrForbidden, with the status the 403 carried. Transient
// failures are retried by the client's RetryPolicy, since an update repeated does no harm. The job token is in
// no URL and no error.
func (s *JobsService) Update(ctx context.Context, id int64, opts *JobUpdateOptions, reqOpts ...RequestOption) (BuildState, *Response, error) {
	c := s.client
	if !c.wire.jobs {
		return "", nil, c.notInAPI("Jobs.Update", "reports builds with Builds.Update")
	}
	token, err := c.buildTokenFor(newCallConfig(reqOpts), "Jobs.Update")
	if err != nil {
		return "", nil, err
	}
	if opts == nil {
		return "", nil, errors.New("runnerapi: Jobs.Update needs a state: running, success or failed")
	}
	switch opts.State {
	case StateRunning, StateSuccess, StateFailed:
	default:
		return "", nil, fmt.Errorf("runnerapi: Jobs.Update: the API takes the state running, success or failed, not %q", opts.State)
	}
	body, err := json.Marshal(jobUpdateBody{Token: token, State: opts.State, FailureReason: opts.FailureReason,
		ExitCode: opts.ExitCode, Output: opts.Output})
	if err != nil {
		return "", nil, fmt.Errorf("runnerapi: Jobs.Update: %w", err)
	}
	cl := call{retry: retryTransient, small: true, secrets: []string{token}}
	for holds := 0; ; holds++ {
		req, err := c.newJobRequest(ctx, http.MethodPut, id, body, jsonContentType)
		if err != nil {
			return "", nil, err
		}
		req.Header[c.jobTokenKey] = []string{token}
		resp, err := c.do(req, nil, cl)
		var status BuildState
		if resp != nil && resp.Response != nil {
			status = BuildState(resp.Header.Get(c.wire.statusHeader))
		}
		if err != nil || resp.StatusCode != http.StatusAccepted || status == StateCanceled || status == StateFailed {
			return status, resp, err
		}
		if holds >= maxUpdateHolds {
			return status, resp, fmt.Errorf("runnerapi: PUT %s: still not accepted after %d answers 202", redactURL(req.URL), holds+1)
		}
		wait := parseUpdateInterval(resp.Header.Get("X-GitLab-Trace-Update-Interval"))
		if wait <= 0 {
			wait = DefaultTraceFlushInterval // gitlab-runner's own interval, when the coordinator gave none
		}
		if err := c.sleep(ctx, min(max(wait, minTraceUpdateInterval), maxTraceUpdateInterval)); err != nil {
			return status, resp, fmt.Errorf("runnerapi: PUT %s: %w while the coordinator held the update", redactURL(req.URL), err)
		}
	}
}

// newJSONRequest builds a request for path whose body is the JSON document body, as the runner API v4 takes.
func (c *Client) newJSONRequest(ctx context.Context, method, path string, body []byte) (*http.Request, error) {
	return c.newBytesRequest(ctx, method, path, body, jsonContentType, nil)
}

// jsonContentType is the type of a JSON body.
const jsonContentType = "application/json"

// runnerTokenKey is runnerTokenHeaderV4 as net/http keys it, and sends it: Header.Set would make the key anew on
// every request.
var runnerTokenKey = http.CanonicalHeaderKey(runnerTokenHeaderV4)
