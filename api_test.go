package runnerapi_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/runnerapi/runnerapi"
	"github.com/runnerapi/runnerapi/runnerapitest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAPIDefaultIsV1(t *testing.T) {
	c, err := runnerapi.NewClient("https://gitlab.example.com")
	require.NoError(t, err)
	assert.Equal(t, runnerapi.APIv1, c.API())
	assert.Equal(t, "/ci/api/v1/", c.BaseURL().Path)
}

func TestWithAPIUnknown(t *testing.T) {
	_, err := runnerapi.NewClient("https://gitlab.example.com", runnerapi.WithAPI(runnerapi.API(2)))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "unknown API")
}

// gitlab-runner trims a trailing /ci from the configured URL and adds /api/v4/ (network/client.go fixCIURL).
func TestWithAPIv4BaseURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://gitlab.example.com":               "https://gitlab.example.com/api/v4/",
		"https://gitlab.example.com/":              "https://gitlab.example.com/api/v4/",
		"https://gitlab.example.com/ci":            "https://gitlab.example.com/api/v4/",
		"https://gitlab.example.com/ci/":           "https://gitlab.example.com/api/v4/",
		"https://example.com/gitlab/ci":            "https://example.com/gitlab/api/v4/",
		"https://example.com/gitlab/api/v4":        "https://example.com/gitlab/api/v4/",
		"https://example.com/gitlab/api/v4/":       "https://example.com/gitlab/api/v4/",
		"https://example.com/gitlab/ci/api/v1/":    "https://example.com/gitlab/api/v4/",
		" https://gitlab.example.com:8443/gitlab ": "https://gitlab.example.com:8443/gitlab/api/v4/",
	} {
		c, err := runnerapi.NewClient(in, runnerapi.WithAPI(runnerapi.APIv4))
		require.NoError(t, err, in)
		assert.Equal(t, want, c.BaseURL().String(), in)
		assert.Equal(t, runnerapi.APIv4, c.API())
	}
	// The order of options does not matter: the root follows the API chosen.
	c, err := runnerapi.NewClient("https://gitlab.example.com", runnerapi.WithAPI(runnerapi.APIv4), runnerapi.WithAPI(runnerapi.APIv1))
	require.NoError(t, err)
	assert.Equal(t, "/ci/api/v1/", c.BaseURL().Path)
}

func TestDetectAPIOnV4(t *testing.T) {
	srv := runnerapitest.NewServer()
	defer srv.Close()
	srv.AddRunner("glrt-detect-runner-token")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, api := range []runnerapi.API{runnerapi.APIv1, runnerapi.APIv4} {
		c, err := runnerapi.NewClient(srv.URL, runnerapi.WithHTTPClient(srv.Client()), runnerapi.WithAPI(api),
			runnerapi.WithRunnerToken("glrt-detect-runner-token"))
		require.NoError(t, err)
		got, err := c.DetectAPI(ctx)
		require.NoError(t, err)
		assert.Equal(t, runnerapi.APIv4, got, "from a client of %v", api)
	}
	reqs := srv.Requests()
	require.Len(t, reqs, 2)
	for _, r := range reqs {
		assert.Equal(t, http.MethodPost, r.Method)
		assert.Equal(t, "/api/v4/runners/verify", r.Path)
	}
	// No effect: the runner was not verified (no system_id recorded, no contact).
	rn, ok := srv.Runner("glrt-detect-runner-token")
	require.True(t, ok)
	assert.Empty(t, rn.SystemIDs)
	assert.True(t, rn.LastContact.IsZero())
}

// The probe sends no token and no body, and reads a 404 as a GitLab without the API v4.
func TestDetectAPIRawRequest(t *testing.T) {
	cases := []struct {
		status int
		body   string
		want   runnerapi.API
	}{
		{http.StatusBadRequest, `{"error":"token is missing"}`, runnerapi.APIv4},
		{http.StatusForbidden, `{"message":"403 Forbidden"}`, runnerapi.APIv4},
		{http.StatusTooManyRequests, `{"message":"Executing database migrations. Please retry later."}`, runnerapi.APIv4},
		{http.StatusNotFound, `{"error":"404 Not Found"}`, runnerapi.APIv1},
	}
	for _, tc := range cases {
		var got *http.Request
		var body []byte
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got = r
			body, _ = io.ReadAll(r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(tc.status)
			_, _ = io.WriteString(w, tc.body)
		}))
		c, err := runnerapi.NewClient(ts.URL+"/gitlab/ci", runnerapi.WithoutRetries(),
			runnerapi.WithRunnerToken("runner-token-not-sent"), runnerapi.WithBuildToken("build-token-not-sent"))
		require.NoError(t, err)
		api, err := c.DetectAPI(context.Background())
		ts.Close()
		require.NoError(t, err, tc.status)
		assert.Equal(t, tc.want, api, tc.status)
		require.NotNil(t, got)
		assert.Equal(t, "/gitlab/api/v4/runners/verify", got.URL.Path)
		assert.Empty(t, got.URL.RawQuery)
		assert.Empty(t, body)
		for _, h := range []string{"BUILD-TOKEN", "JOB-TOKEN", "RUNNER-TOKEN", "PRIVATE-TOKEN"} {
			assert.Empty(t, got.Header.Get(h), h)
		}
	}
}

func TestDetectAPIServerError(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer ts.Close()
	c, err := runnerapi.NewClient(ts.URL, runnerapi.WithoutRetries())
	require.NoError(t, err)
	_, err = c.DetectAPI(context.Background())
	require.Error(t, err)
	assert.True(t, runnerapi.IsTransient(err))
}
