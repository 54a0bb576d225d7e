package runnerapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// JobRequestOptions are the optional parameters of JobsService.Request.
type JobRequestOptions struct {
	// SystemID names the machine the runner runs on ("s_" and 12 hex digits, or "r_" and 12 characters, as
	// gitlab-runner makes them): the coordinator keeps one runner manager per system_id, and expects one for
	// runners created in the UI (glrt- tokens).
	SystemID string
	// LastUpdate is the X-GitLab-Last-Update of the previous "no job" answer (Response.LastUpdate): while it is
	// unchanged the coordinator (or Workhorse, long-polling) answers "no job" without searching its queue.
	LastUpdate string
	// Info describes the runner: info.name, version, revision, platform and architecture.
	Info RunnerInfo
	// Executor is info.executor, such as "shell" or "docker".
	Executor string
	// Features are the info.features the runner implements, sent as true. Advertise only what the runner really
	// does: the coordinator hands a runner jobs that need a feature it advertises, and drops as
	// runner_unsupported those that need one it lacks. The SDK provides what "trace_checksum" and "trace_size"
	// (TraceWriter.Output), "cancelable" (TraceWriter.Canceled), "cancel_gracefully" (CancelRequested),
	// "return_exit_code" (JobUpdateOptions.ExitCode) and "upload_multiple_artifacts" (UploadOptions.ArtifactType)
	// need; the runner does the rest. It does not provide "trace_reset" (412 answers) nor "two_phase_job_commit".
	Features []string
}

// jobRequestBody is the JSON body of POST jobs/request, in gitlab-runner's shape.
type jobRequestBody struct {
	Token      string         `json:"token"`
	SystemID   string         `json:"system_id,omitempty"`
	LastUpdate string         `json:"last_update,omitempty"`
	Info       jobRequestInfo `json:"info"`
}

// jobRequestInfo is the info object of POST jobs/request.
type jobRequestInfo struct {
	Name         string          `json:"name,omitempty"`
	Version      string          `json:"version,omitempty"`
	Revision     string          `json:"revision,omitempty"`
	Platform     string          `json:"platform,omitempty"`
	Architecture string          `json:"architecture,omitempty"`
	Executor     string          `json:"executor,omitempty"`
	Features     map[string]bool `json:"features,omitempty"`
}

// Request takes the next job for this runner on the runner API v4 (POST /api/v4/jobs/request), authenticated by
// the runner token (WithToken, else WithRunnerToken), sent as the token parameter and in RUNNER-TOKEN. A job it
// returns is the runner's: run it and report it with Jobs.Update.
//
// A 204 is "no job": Request returns a nil job and a nil error; send resp.LastUpdate back in the next call. A 409
// (the coordinator lost a race for a job) is an error matching ErrConflict; a 403, ErrForbidden; a 404, that the
// address does not serve the runner API v4, ErrNotCoordinator. Request has the same rules as Builds.Register for
// a job assigned while ctx ends (it is returned, with up to 10 seconds of grace), for retries (only when the
// coordinator surely did not act) and for a job that cannot be read in full (returned with the error when its ID
// was read, to be reported failed).
func (s *JobsService) Request(ctx context.Context, opts *JobRequestOptions, reqOpts ...RequestOption) (*Job, *Response, error) {
	c := s.client
	if !c.wire.jobs {
		return nil, nil, c.notInAPI("Jobs.Request", "takes builds with Builds.Register")
	}
	token, err := c.runnerTokenFor(newCallConfig(reqOpts), "Jobs.Request")
	if err != nil {
		return nil, nil, err
	}
	if opts == nil {
		opts = &JobRequestOptions{}
	}
	b := jobRequestBody{Token: token, SystemID: opts.SystemID, LastUpdate: opts.LastUpdate, Info: jobRequestInfo{
		Name: opts.Info.Name, Version: opts.Info.Version, Revision: opts.Info.Revision, Platform: opts.Info.Platform,
		Architecture: opts.Info.Architecture, Executor: opts.Executor}}
	b.Info.Features = featureSet(opts.Features)
	body, err := json.Marshal(b)
	if err != nil {
		return nil, nil, fmt.Errorf("runnerapi: Jobs.Request: %w", err)
	}
	job := new(Job)
	resp, err := c.takeJob(ctx, body, jsonContentType, runnerTokenKey, func() { *job = Job{} }, job, token)
	if err != nil {
		// Declared here, where only a failure pays for it: errors.As takes its address.
		var er *ErrorResponse
		if errors.As(err, &er) && er.StatusCode == http.StatusNotFound {
			return nil, resp, &notCoordinatorError{er: er, api: c.wire.name}
		}
	}
	if err != nil && resp != nil && resp.StatusCode == http.StatusCreated && job.ID != 0 {
		return job, resp, fmt.Errorf("runnerapi: job %d was assigned to this runner but could not be read in full: %w", job.ID, err)
	}
	if err != nil {
		return nil, resp, err
	}
	if resp.StatusCode != http.StatusCreated {
		return nil, resp, nil
	}
	if job.ID == 0 {
		return nil, resp, fmt.Errorf("runnerapi: POST %s: the coordinator answered 201 with no job ID", redactURL(c.baseURL)+c.wire.requestPath)
	}
	return job, resp, nil
}

// JobNextOptions are the optional parameters of JobsService.Next.
type JobNextOptions struct {
	// JobRequestOptions are sent on every request; LastUpdate seeds the long-polling value, which Next keeps
	// current from then on.
	JobRequestOptions
	// Interval is the mean wait between two requests (DefaultPollInterval when zero), drawn as for Builds.Next.
	Interval time.Duration
}

// Next calls Request until a job arrives, ctx ends, the coordinator refuses the token (ErrForbidden) or the
// address turns out not to serve the API (ErrNotCoordinator), with the same rules as Builds.Next: conflicts and
// transient failures are waited out, a job that arrives is never dropped, and a nil error always comes with a job.
func (s *JobsService) Next(ctx context.Context, opts *JobNextOptions, reqOpts ...RequestOption) (*Job, *Response, error) {
	c := s.client
	if opts == nil {
		opts = &JobNextOptions{}
	}
	interval := opts.Interval
	if interval <= 0 {
		interval = DefaultPollInterval
	}
	ropts := opts.JobRequestOptions
	return pollFor(ctx, c, interval, func() (*Job, *Response, error) {
		job, r, err := s.Request(ctx, &ropts, reqOpts...)
		if err == nil && r != nil && r.LastUpdate != "" {
			ropts.LastUpdate = r.LastUpdate
		}
		return job, r, err
	})
}
