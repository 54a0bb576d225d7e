package runnerapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// RunnersService registers runners with the coordinator and removes them. Reach it as Client.Runners.
//
// Registering a runner is done once per runner: RunnersService.Register trades a registration token for a new
// runner's token, which the runner then keeps. Taking a build is done over and over with that runner token:
// BuildsService.Register.
type RunnersService service

// RegisterRunnerOptions are the optional parameters of RunnersService.Register.
type RegisterRunnerOptions struct {
	// Description is the runner's name in the coordinator's runners page.
	Description string `url:"description,omitempty"`
	// TagList is the runner's tags: it takes only builds whose tags it has all of. It is sent comma-joined as
	// tag_list, so a tag cannot hold a comma.
	TagList []string `url:"tag_list,comma,omitempty"`
	// RunUntagged, when set, says whether the runner also takes builds that have no tags; the coordinator decides
	// when it is nil.
	RunUntagged *bool `url:"run_untagged,omitempty"`
	// Locked, when set, says whether the runner is locked to the project whose token registered it (GitLab 9.0
	// and later; older coordinators ignore it).
	Locked *bool `url:"locked,omitempty"`
	// Info describes the runner; it is sent as info[name], info[version] and so on.
	Info RunnerInfo `url:"info,omitempty"`
}

// registerRunnerForm is the body of POST runners/register.
type registerRunnerForm struct {
	Token string `url:"token"`
	*RegisterRunnerOptions
}

// RegisteredRunner is a runner the coordinator has just registered. Printing it with fmt (any verb) or logging it
// with slog or marshaling it to JSON shows its token masked; to store it, marshal it as an UnredactedRunner.
type RegisteredRunner struct {
	// ID is the runner's ID on the coordinator.
	ID int64 `json:"id"`
	// Token is the new runner's token, a secret: the runner sends it to take builds (WithRunnerToken).
	Token string `json:"token"`
	// TokenExpiresAt is when the token expires (runner API v4), nil when it does not or the coordinator did not
	// say. Rotate it before then with ResetToken.
	TokenExpiresAt *time.Time `json:"token_expires_at,omitempty"`
}

// plainRegisteredRunner has no methods, so fmt prints its fields as it would a plain struct. It leaves out
// TokenExpiresAt, which a runner of the CI API v1 never has, so that such a runner prints as it always did.
type plainRegisteredRunner struct {
	ID    int64
	Token string
}

// plainExpiringRunner is plainRegisteredRunner with the token's expiry.
type plainExpiringRunner RegisteredRunner

// Format prints the runner with its token masked, for every verb.
func (r RegisteredRunner) Format(f fmt.State, verb rune) {
	if r.Token != "" {
		r.Token = masked
	}
	if r.TokenExpiresAt == nil {
		fmt.Fprintf(f, fmt.FormatString(f, verb), plainRegisteredRunner{ID: r.ID, Token: r.Token})
		return
	}
	fmt.Fprintf(f, fmt.FormatString(f, verb), plainExpiringRunner(r))
}

// MarshalJSON encodes the runner with its token masked, as printing does: a logger or encoder that marshals values
// shows no token, alone or in a slice. To store a runner with its token, marshal it as an UnredactedRunner.
func (r RegisteredRunner) MarshalJSON() ([]byte, error) {
	if r.Token != "" {
		r.Token = masked
	}
	return json.Marshal(plainExpiringRunner(r))
}

// UnredactedRunner is a RegisteredRunner whose JSON encoding holds its token: convert a RegisteredRunner to it to
// store the token (json.Marshal(runnerapi.UnredactedRunner(r))), and decode it back into a RegisteredRunner.
// Printing and logging it still mask the token.
type UnredactedRunner RegisteredRunner

// MarshalJSON encodes the runner with its token.
func (r UnredactedRunner) MarshalJSON() ([]byte, error) { return json.Marshal(plainExpiringRunner(r)) }

// Format prints the runner with its token masked, as RegisteredRunner does.
func (r UnredactedRunner) Format(f fmt.State, verb rune) { RegisteredRunner(r).Format(f, verb) }

// LogValue logs the runner as RegisteredRunner does, its token masked.
func (r UnredactedRunner) LogValue() slog.Value { return RegisteredRunner(r).LogValue() }

// LogValue logs the runner's ID, and its token masked.
func (r RegisteredRunner) LogValue() slog.Value {
	token := ""
	if r.Token != "" {
		token = masked
	}
	attrs := []slog.Attr{slog.Int64("id", r.ID), slog.String("token", token)}
	if r.TokenExpiresAt != nil {
		attrs = append(attrs, slog.Time("token_expires_at", *r.TokenExpiresAt))
	}
	return slog.GroupValue(attrs...)
}

// Register registers a new runner with the coordinator and returns its ID and token. registrationToken is the
// instance's shared-runner registration token or a project's runners token; both are secrets, and so is the
// returned runner token. This makes a runner; BuildsService.Register, in contrast, takes a build for a runner that
// already has its token.
//
// A refused registration token makes it fail with an error for which errors.Is reports ErrForbidden, and an address
// that does not serve the API (a 404 that is not JSON) with one that matches ErrNotCoordinator. Register is
// retried only when the failure shows the coordinator did not act on it: a lost answer may hide a runner already
// made, whose token nobody has (it takes no builds, but shows in the coordinator's runners page). No RequestOption
// changes what it sends: the registration token is its argument, never the client's runner token.
func (s *RunnersService) Register(ctx context.Context, registrationToken string, opts *RegisterRunnerOptions, reqOpts ...RequestOption) (*RegisteredRunner, *Response, error) {
	c := s.client
	if registrationToken == "" {
		return nil, nil, errors.New("runnerapi: Runners.Register needs a registration token")
	}
	if opts == nil {
		opts = &RegisterRunnerOptions{}
	}
	for _, tag := range opts.TagList {
		if strings.Contains(tag, ",") {
			return nil, nil, fmt.Errorf("runnerapi: Runners.Register: tag %q holds a comma, which would split it in two", tag)
		}
	}
	form := &registerRunnerForm{Token: registrationToken, RegisterRunnerOptions: opts}
	req, err := c.NewRequest(ctx, http.MethodPost, c.wire.registerRunnerPath, form)
	if err != nil {
		return nil, nil, err
	}
	runner := new(RegisteredRunner)
	// The answer carries the new runner token: mask it too, should a later failure quote the answer.
	resp, err := c.do(req, runner, call{retry: retryUnsent, small: true, secrets: []string{registrationToken}})
	if err != nil {
		scrubError(err, []string{runner.Token})
		if er := (*ErrorResponse)(nil); errors.As(err, &er) && er.StatusCode == http.StatusGone {
			err = fmt.Errorf("%w (the instance no longer takes registration tokens: create the runner in GitLab and verify its glrt- token with Runners.Verify)", err)
		}
		return nil, resp, notCoordinator(err)
	}
	if runner.Token == "" {
		return nil, resp, fmt.Errorf("runnerapi: POST %s: the coordinator answered %d without a runner token", redactURL(req.URL), resp.StatusCode)
	}
	return runner, resp, nil
}

// unregisterRunnerForm is the body of DELETE runners/delete.
type unregisterRunnerForm struct {
	Token string `url:"token"`
}

// Unregister removes the runner whose token is runnerToken from the coordinator, which refuses that token from
// then on. The token travels in the request body, never in the URL.
//
// An error for which errors.Is reports ErrForbidden means the coordinator knows no runner by that token: when
// resp.Attempts is more than 1, an earlier attempt whose answer was lost may have removed it. One that matches
// ErrNotCoordinator means the address does not serve the API. Unregister is retried after any transient failure,
// since removing a runner twice does no harm.
func (s *RunnersService) Unregister(ctx context.Context, runnerToken string, reqOpts ...RequestOption) (*Response, error) {
	c := s.client
	if runnerToken == "" {
		return nil, errors.New("runnerapi: Runners.Unregister needs the runner token")
	}
	req, err := c.NewRequest(ctx, http.MethodDelete, c.wire.unregisterRunnerPath, &unregisterRunnerForm{Token: runnerToken})
	if err != nil {
		return nil, err
	}
	resp, err := c.do(req, nil, call{retry: retryTransient, small: true, secrets: []string{runnerToken}})
	return resp, notCoordinator(err)
}

// notCoordinator marks a 404 whose body is not GitLab's JSON {"message": ...} as ErrNotCoordinator: GitLab's runners
// endpoints answer so even when they fail, so an HTML page, an empty body or the {"error": ...} of GitLab's /api
// catch-all means the address does not serve the API.
func notCoordinator(err error) error {
	var er *ErrorResponse
	if errors.As(err, &er) && er.StatusCode == http.StatusNotFound && !er.apiMessage {
		return &notCoordinatorError{er: er}
	}
	return err
}
