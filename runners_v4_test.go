package runnerapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

// A runner's life on v4 through the same RunnersService: register with a registration token (201 with
// token_expires_at), take a job with the new token, rotate it, unregister (204).
func TestRunnersV4Lifecycle(t *testing.T) {
	srv := runnerapitest.NewServer(runnerapitest.WithRunnerTokenLifetime(time.Hour))
	defer srv.Close()
	srv.AddRegistrationToken("REG-TOKEN-v4-secret")
	c := newV4Client(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	runner, resp, err := c.Runners.Register(ctx, "REG-TOKEN-v4-secret", &runnerapi.RegisterRunnerOptions{Description: "v4", TagList: []string{"docker"}})
	require.NoError(t, err)
	assert.Equal(t, http.StatusCreated, resp.StatusCode)
	require.NotEmpty(t, runner.Token)
	assert.NotZero(t, runner.ID)
	require.NotNil(t, runner.TokenExpiresAt)
	assert.NotContains(t, fmt.Sprintf("%v %+v %#v %s", runner, runner, runner, runner), runner.Token)

	rotated, _, err := c.Runners.ResetToken(ctx, runner.Token)
	require.NoError(t, err)
	require.NotEmpty(t, rotated.Token)
	assert.NotEqual(t, runner.Token, rotated.Token)
	_, _, err = c.Runners.Verify(ctx, runner.Token, nil)
	assert.True(t, errors.Is(err, runnerapi.ErrForbidden), "the old token is refused: %v", err)
	assert.NotContains(t, err.Error(), runner.Token)

	_, err = c.Runners.Unregister(ctx, rotated.Token)
	require.NoError(t, err)
	_, _, err = c.Runners.Verify(ctx, rotated.Token, nil)
	assert.True(t, errors.Is(err, runnerapi.ErrForbidden), err)
	for _, r := range srv.Requests() {
		assert.False(t, r.TokenInQuery, r.Path)
	}
}

// A runner created in the UI (glrt-) is verified with its system_id, and its manager removed on its own.
func TestRunnersV4VerifyAndDeleteManager(t *testing.T) {
	srv := runnerapitest.NewServer()
	defer srv.Close()
	srv.AddRunner("glrt-ui-runner-secret")
	c := newV4Client(t, srv)
	ctx := context.Background()
	runner, _, err := c.Runners.Verify(ctx, "glrt-ui-runner-secret", &runnerapi.VerifyRunnerOptions{SystemID: "s_0123456789ab",
		Features: []string{"cancel_gracefully"}})
	require.NoError(t, err)
	assert.NotZero(t, runner.ID)
	assert.Equal(t, "glrt-ui-runner-secret", runner.Token)
	rn, ok := srv.Runner("glrt-ui-runner-secret")
	require.True(t, ok)
	assert.Equal(t, []string{"s_0123456789ab"}, rn.SystemIDs)

	_, err = c.Runners.DeleteManager(ctx, "glrt-ui-runner-secret", "s_0123456789ab")
	require.NoError(t, err)
	rn, _ = srv.Runner("glrt-ui-runner-secret")
	assert.Empty(t, rn.SystemIDs)
	_, err = c.Runners.DeleteManager(ctx, "glrt-ui-runner-secret", "s_0123456789ab")
	assert.True(t, errors.Is(err, runnerapi.ErrNotFound), err)
}

// 410 when registration tokens are off says what to do instead.
func TestRunnersV4RegisterGone(t *testing.T) {
	srv := runnerapitest.NewServer(runnerapitest.WithoutRegistrationTokens())
	defer srv.Close()
	srv.AddRegistrationToken("REG-TOKEN-v4-secret")
	c := newV4Client(t, srv)
	_, _, err := c.Runners.Register(context.Background(), "REG-TOKEN-v4-secret", nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Runners.Verify")
	assert.NotContains(t, err.Error(), "REG-TOKEN-v4-secret")
}

// The raw requests (PROTOCOL-v4 §2): JSON bodies with the token, RUNNER-TOKEN too, no token in the URL; an older
// GitLab's verify answers a plain "200".
func TestRunnersV4RawRequests(t *testing.T) {
	type seen struct {
		method, path, query, header string
		body                        map[string]any
	}
	var got []seen
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var body map[string]any
		_ = json.Unmarshal(raw, &body)
		got = append(got, seen{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("RUNNER-TOKEN"), body})
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/api/v4/runners/verify":
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, "200")
		case "/api/v4/runners/managers":
			w.WriteHeader(http.StatusNoContent)
		case "/api/v4/runners/reset_authentication_token":
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, `{"token":"glrt-new-token-secret","token_expires_at":null}`)
		}
	}))
	defer ts.Close()
	c, err := runnerapi.NewClient(ts.URL, runnerapi.WithAPI(runnerapi.APIv4))
	require.NoError(t, err)
	ctx := context.Background()
	runner, _, err := c.Runners.Verify(ctx, "glrt-old-token-secret", &runnerapi.VerifyRunnerOptions{SystemID: "s_0123456789ab"})
	require.NoError(t, err)
	assert.Equal(t, "glrt-old-token-secret", runner.Token)
	assert.Zero(t, runner.ID)
	_, err = c.Runners.DeleteManager(ctx, "glrt-old-token-secret", "s_0123456789ab")
	require.NoError(t, err)
	rotated, _, err := c.Runners.ResetToken(ctx, "glrt-old-token-secret")
	require.NoError(t, err)
	assert.Equal(t, "glrt-new-token-secret", rotated.Token)
	assert.Nil(t, rotated.TokenExpiresAt)
	require.Len(t, got, 3)
	assert.Equal(t, []string{http.MethodPost, http.MethodDelete, http.MethodPost}, []string{got[0].method, got[1].method, got[2].method})
	for _, s := range got {
		assert.Empty(t, s.query)
		assert.Equal(t, "glrt-old-token-secret", s.header)
		assert.Equal(t, "glrt-old-token-secret", s.body["token"])
	}
	assert.Equal(t, "s_0123456789ab", got[0].body["system_id"])
	assert.Equal(t, "s_0123456789ab", got[1].body["system_id"])

	v1, err := runnerapi.NewClient(ts.URL)
	require.NoError(t, err)
	_, _, err = v1.Runners.Verify(ctx, "t", nil)
	assert.True(t, errors.Is(err, runnerapi.ErrNotInAPI))
}
