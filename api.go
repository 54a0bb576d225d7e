package runnerapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// API is a runner API a coordinator speaks. A client speaks one, chosen with WithAPI when it is made.
type API int

const (
	// APIv1 is the CI Builds API v1 of GitLab 8.x and 9.x, below /ci/api/v1/: builds, BUILD-TOKEN, Build-Status.
	// It is the default, so that every client written before the SDK spoke v4 goes on talking to the coordinators
	// it was written for.
	APIv1 API = 1
	// APIv4 is the runner API v4 of every GitLab since 9.0, below /api/v4/: jobs, JOB-TOKEN, Job-Status. It is
	// what today's GitLab and gitlab-runner speak.
	APIv4 API = 4
)

// String returns "v1" or "v4".
func (a API) String() string {
	switch a {
	case APIv1:
		return "v1"
	case APIv4:
		return "v4"
	}
	return fmt.Sprintf("API(%d)", int(a))
}

// wireOf returns the wire of api, or nil for an API the SDK does not speak.
func wireOf(api API) *wire {
	switch api {
	case APIv1:
		return &wireV1
	case APIv4:
		return &wireV4
	}
	return nil
}

// WithAPI makes the client speak api (APIv1 when not given). Every service, the trace writer and the artifacts
// calls then use that API's paths, token headers, status header and Content-Range convention; which API a
// coordinator speaks can be asked with Client.DetectAPI.
func WithAPI(api API) Option {
	return func(c *Client) error {
		w := wireOf(api)
		if w == nil {
			return fmt.Errorf("runnerapi: WithAPI: unknown API %v; use APIv1 or APIv4", api)
		}
		c.wire = w
		return nil
	}
}

// API returns the API the client speaks.
func (c *Client) API() API { return c.wire.api }

// ErrNotInAPI marks a call that the client's API does not have, such as deleting artifacts on the runner API v4,
// which has no runner-side delete. It is returned before anything is sent.
var ErrNotInAPI = errors.New("runnerapi: not in this API")

// notInAPI returns an error matching ErrNotInAPI for call, with why.
func (c *Client) notInAPI(call, why string) error {
	return fmt.Errorf("%w: %s: the %s %s", ErrNotInAPI, call, c.wire.name, why)
}

// DetectAPI asks the coordinator whether it speaks the runner API v4, whichever API the client speaks, and
// returns APIv4 if it does, else APIv1. It costs one small request, with no token and no effect: POST
// /api/v4/runners/verify without parameters, which GitLab's API v4 refuses (400, the token is missing) before it
// looks anything up, and which a GitLab without the API v4 (8.x) answers 404. Any answer of the API v4 but a 404
// (400, 401, 403, 422, 429) means v4. A 5xx or a transport failure is an error: nothing can be concluded.
func (c *Client) DetectAPI(ctx context.Context) (API, error) {
	root := *c.baseURL
	root.Path = strings.TrimSuffix(root.Path, c.wire.basePath+"/") + "/"
	probe := root
	probe.Path += strings.TrimPrefix(wireV4.basePath, "/") + "/runners/verify"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, probe.String(), nil)
	if err != nil {
		return 0, fmt.Errorf("runnerapi: DetectAPI: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	_, err = c.do(req, nil, call{retry: retryTransient, small: true})
	if err == nil {
		return APIv4, nil
	}
	var er *ErrorResponse
	if !errors.As(err, &er) || er.StatusCode >= 500 {
		return 0, fmt.Errorf("runnerapi: DetectAPI: %w", err)
	}
	if er.StatusCode == http.StatusNotFound {
		return APIv1, nil
	}
	return APIv4, nil
}
