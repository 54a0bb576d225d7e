package runnerapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// VerifyRunnerOptions are the optional parameters of RunnersService.Verify.
type VerifyRunnerOptions struct {
	// SystemID names the machine, as in JobRequestOptions; GitLab expects it for glrt- tokens.
	SystemID string
	// Info describes the runner.
	Info RunnerInfo
	// Features are the info.features the runner implements, as in JobRequestOptions: GitLab reads
	// cancel_gracefully from the runner manager too, so send the same list on both calls.
	Features []string
}

// runnerTokenBody is the JSON body of the v4 runner endpoints that take a runner token.
type runnerTokenBody struct {
	Token    string          `json:"token"`
	SystemID string          `json:"system_id,omitempty"`
	Info     *jobRequestInfo `json:"info,omitempty"`
}

// Verify checks runnerToken with the coordinator (POST /api/v4/runners/verify, runner API v4), and returns the
// runner's ID and token expiry when the coordinator says them (older GitLab answers 200 with no runner: then the
// runner has only its token). It is how a runner created in GitLab's UI, whose token starts with "glrt-", is
// set up: such a runner is verified, not registered. A refused token is an error matching ErrForbidden.
func (s *RunnersService) Verify(ctx context.Context, runnerToken string, opts *VerifyRunnerOptions, reqOpts ...RequestOption) (*RegisteredRunner, *Response, error) {
	if opts == nil {
		opts = &VerifyRunnerOptions{}
	}
	info := &jobRequestInfo{Name: opts.Info.Name, Version: opts.Info.Version, Revision: opts.Info.Revision,
		Platform: opts.Info.Platform, Architecture: opts.Info.Architecture, Features: featureSet(opts.Features)}
	var answer bytes.Buffer
	resp, err := s.runnerCall(ctx, "Runners.Verify", http.MethodPost, "runners/verify", runnerToken,
		runnerTokenBody{Token: runnerToken, SystemID: opts.SystemID, Info: info}, &limitedBuffer{buf: &answer}, retryTransient)
	if err != nil {
		return nil, resp, err
	}
	runner := &RegisteredRunner{Token: runnerToken}
	if data := bytes.TrimSpace(answer.Bytes()); len(data) > 0 && data[0] == '{' {
		if err := json.Unmarshal(data, runner); err != nil {
			return nil, resp, fmt.Errorf("runnerapi: Runners.Verify: %s", decodeFailure(err))
		}
		if runner.Token == "" {
			runner.Token = runnerToken
		}
	}
	return runner, resp, nil
}

// DeleteManager removes the runner manager of systemID (one machine of the runner) and leaves the runner
// (DELETE /api/v4/runners/managers, GitLab 16.0 and later). gitlab-runner uses it instead of Unregister for glrt-
// tokens, whose runner belongs to GitLab's UI. An unknown system_id is an error matching ErrNotFound.
func (s *RunnersService) DeleteManager(ctx context.Context, runnerToken, systemID string, reqOpts ...RequestOption) (*Response, error) {
	if systemID == "" {
		return nil, errors.New("runnerapi: Runners.DeleteManager needs the system_id")
	}
	return s.runnerCall(ctx, "Runners.DeleteManager", http.MethodDelete, "runners/managers", runnerToken,
		runnerTokenBody{Token: runnerToken, SystemID: systemID}, nil, retryTransient)
}

// ResetToken rotates runnerToken (POST /api/v4/runners/reset_authentication_token) and returns the new token,
// with its expiry when it can expire; the old token is refused from then on. It is not retried after the request
// may have been applied: a lost answer would leave the runner with a token nobody has.
func (s *RunnersService) ResetToken(ctx context.Context, runnerToken string, reqOpts ...RequestOption) (*RegisteredRunner, *Response, error) {
	runner := new(RegisteredRunner)
	resp, err := s.runnerCall(ctx, "Runners.ResetToken", http.MethodPost, "runners/reset_authentication_token", runnerToken,
		runnerTokenBody{Token: runnerToken}, runner, retryUnsent)
	if err != nil {
		scrubError(err, []string{runner.Token})
		return nil, resp, err
	}
	if runner.Token == "" {
		return nil, resp, fmt.Errorf("runnerapi: Runners.ResetToken: the coordinator answered %d without a token", resp.StatusCode)
	}
	return runner, resp, nil
}

// runnerCall sends body as JSON to a v4 runner endpoint, with the runner token also in RUNNER-TOKEN, and decodes
// a 2xx answer into v.
func (s *RunnersService) runnerCall(ctx context.Context, name, method, path, runnerToken string, body runnerTokenBody, v any, retry retryClass) (*Response, error) {
	c := s.client
	if !c.wire.runnerTokens {
		return nil, c.notInAPI(name, "has no such endpoint")
	}
	if runnerToken == "" {
		return nil, fmt.Errorf("runnerapi: %s needs the runner token", name)
	}
	data, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("runnerapi: %s: %w", name, err)
	}
	req, err := c.newJSONRequest(ctx, method, path, data)
	if err != nil {
		return nil, err
	}
	req.Header.Set(runnerTokenHeaderV4, runnerToken)
	resp, err := c.do(req, v, call{retry: retry, small: true, secrets: []string{runnerToken}})
	return resp, notCoordinator(err)
}

// featureSet is a list of feature names as info.features: each true.
func featureSet(names []string) map[string]bool {
	if len(names) == 0 {
		return nil
	}
	set := make(map[string]bool, len(names))
	for _, f := range names {
		set[f] = true
	}
	return set
}

// limitedBuffer takes at most maxJSONBody bytes of an answer.
type limitedBuffer struct {
	buf *bytes.Buffer
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if l.buf.Len()+len(p) > maxJSONBody {
		return 0, fmt.Errorf("answer larger than %d bytes", maxJSONBody)
	}
	return l.buf.Write(p)
}
