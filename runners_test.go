package runnerapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Secrets of the runners endpoints, each recognisable and unchanged by URL encoding.
const (
	testRegistrationToken = "REG-TOKEN-7d2e4a9b1c"
	testNewRunnerToken    = "NEW-RUNNER-TOKEN-3b8f0c6e"
)

// testRunnersRequest is one request a runners endpoint received, as it came off the wire.
type testRunnersRequest struct {
	method, path, rawQuery, contentType string
	form                                url.Values
}

// testRunnersServer answers every request with status and body after recording it; body may quote the request's
// form with %s, as a careless proxy echoing what it got would.
func testRunnersServer(t *testing.T, status int, body string) (*Client, func() []testRunnersRequest) {
	t.Helper()
	var (
		mu   sync.Mutex
		seen []testRunnersRequest
	)
	c, _ := testServerClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, err := io.ReadAll(r.Body)
		assert.NoError(t, err)
		// Parsed by hand: net/http reads no form from a DELETE's body, though GitLab (Rack) does.
		form, err := url.ParseQuery(string(raw))
		assert.NoError(t, err)
		mu.Lock()
		seen = append(seen, testRunnersRequest{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Content-Type"), form})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		answer := body
		if strings.Contains(body, "%s") {
			answer = fmt.Sprintf(body, strings.ReplaceAll(string(raw), `"`, `'`))
		}
		_, _ = io.WriteString(w, answer)
	}))
	return c, func() []testRunnersRequest {
		mu.Lock()
		defer mu.Unlock()
		return append([]testRunnersRequest(nil), seen...)
	}
}

func testBoolPtr(v bool) *bool { return &v }

func TestRunnersRegisterRequestShape(t *testing.T) {
	c, seen := testRunnersServer(t, http.StatusCreated, `{"id":12,"token":"`+testNewRunnerToken+`"}`)

	runner, resp, err := c.Runners.Register(context.Background(), testRegistrationToken, &RegisterRunnerOptions{
		Description: "docker on build-7",
		TagList:     []string{"docker", "linux"},
		RunUntagged: testBoolPtr(true),
		Locked:      testBoolPtr(false),
		Info:        RunnerInfo{Name: "my-runner", Version: "1.2.3", Revision: "abcdef", Platform: "linux", Architecture: "amd64"},
	})

	require.NoError(t, err)
	assert.Equal(t, &RegisteredRunner{ID: 12, Token: testNewRunnerToken}, runner)
	assert.Equal(t, http.StatusCreated, resp.StatusCode)
	reqs := seen()
	require.Len(t, reqs, 1)
	r := reqs[0]
	assert.Equal(t, http.MethodPost, r.method)
	assert.Equal(t, "/gitlab/ci/api/v1/runners/register", r.path)
	assert.Empty(t, r.rawQuery, "no query string: tokens must not go into URLs")
	assert.Equal(t, "application/x-www-form-urlencoded", r.contentType)
	assert.Equal(t, url.Values{
		"token":              {testRegistrationToken},
		"description":        {"docker on build-7"},
		"tag_list":           {"docker,linux"},
		"run_untagged":       {"true"},
		"locked":             {"false"},
		"info[name]":         {"my-runner"},
		"info[version]":      {"1.2.3"},
		"info[revision]":     {"abcdef"},
		"info[platform]":     {"linux"},
		"info[architecture]": {"amd64"},
	}, r.form)
}

// Unset options are not sent, so that the coordinator's defaults apply (run_untagged defaults to true there).
func TestRunnersRegisterMinimalForm(t *testing.T) {
	c, seen := testRunnersServer(t, http.StatusCreated, `{"id":3,"token":"`+testNewRunnerToken+`"}`)

	runner, _, err := c.Runners.Register(context.Background(), testRegistrationToken, nil)

	require.NoError(t, err)
	assert.Equal(t, int64(3), runner.ID)
	reqs := seen()
	require.Len(t, reqs, 1)
	assert.Equal(t, url.Values{"token": {testRegistrationToken}}, reqs[0].form)
}

// The runner token a client was made with is for taking builds; registering never sends it.
func TestRunnersRegisterDoesNotSendTheClientsRunnerToken(t *testing.T) {
	c, seen := testRunnersServer(t, http.StatusCreated, `{"id":3,"token":"`+testNewRunnerToken+`"}`)

	_, _, err := c.Runners.Register(context.Background(), testRegistrationToken, nil, WithToken("per-call-token"))

	require.NoError(t, err)
	reqs := seen()
	require.Len(t, reqs, 1)
	assert.Equal(t, []string{testRegistrationToken}, reqs[0].form["token"])
}

func TestRunnersRegisterRefusesBadInputBeforeSending(t *testing.T) {
	c, seen := testRunnersServer(t, http.StatusCreated, `{"id":3,"token":"`+testNewRunnerToken+`"}`)

	_, _, err := c.Runners.Register(context.Background(), "", nil)
	assert.EqualError(t, err, "runnerapi: Runners.Register needs a registration token")
	_, _, err = c.Runners.Register(context.Background(), testRegistrationToken, &RegisterRunnerOptions{TagList: []string{"a,b"}})
	assert.EqualError(t, err, `runnerapi: Runners.Register: tag "a,b" holds a comma, which would split it in two`)
	_, err = c.Runners.Unregister(context.Background(), "")
	assert.EqualError(t, err, "runnerapi: Runners.Unregister needs the runner token")
	assert.Empty(t, seen())
}

func TestRunnersRegisterStatuses(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		body      string
		attempts  int // how many requests the coordinator sees
		forbidden bool
		want      string
	}{
		{"wrong registration token", http.StatusForbidden, `{"message":"403 Forbidden"}`, 1, true,
			"runnerapi: POST " + testServerRoot + "runners/register: 403 Forbidden"},
		// GitLab's answer when the token parameter is missing (required_attributes!).
		{"missing token", http.StatusBadRequest, `{"message":"400 (Bad request) \"token\" not given"}`, 1, false,
			"runnerapi: POST " + testServerRoot + `runners/register: 400 (Bad request) "token" not given`},
		// A 500 may come after the runner was made: sending again could make a second one.
		{"internal error is not retried", http.StatusInternalServerError, `{"message":"500 Internal Server Error"}`, 1, false,
			"runnerapi: POST " + testServerRoot + "runners/register: 500 Internal Server Error"},
		// A 503 from a proxy means the coordinator never saw the request.
		{"unavailable is retried", http.StatusServiceUnavailable, `{"message":"503 Service Unavailable"}`, 1 + testFastRetry.MaxRetries, false,
			"runnerapi: POST " + testServerRoot + "runners/register: 503 Service Unavailable"},
		{"created without a token", http.StatusCreated, `{"id":12}`, 1, false,
			"runnerapi: POST " + testServerRoot + "runners/register: the coordinator answered 201 without a runner token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, seen := testRunnersServer(t, tt.status, tt.body)

			runner, _, err := c.Runners.Register(context.Background(), testRegistrationToken, nil)

			require.Error(t, err)
			assert.Nil(t, runner)
			assert.Equal(t, tt.forbidden, errors.Is(err, ErrForbidden))
			assert.Equal(t, strings.Replace(tt.want, testServerRoot, c.BaseURL().String(), 1), err.Error())
			assert.Len(t, seen(), tt.attempts)
		})
	}
}

// testServerRoot stands for the test server's API root in expected messages.
const testServerRoot = "ROOT/"

func TestRunnersUnregister(t *testing.T) {
	c, seen := testRunnersServer(t, http.StatusOK, `{"id":12,"description":"docker on build-7"}`)

	resp, err := c.Runners.Unregister(context.Background(), testNewRunnerToken)

	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	reqs := seen()
	require.Len(t, reqs, 1)
	r := reqs[0]
	assert.Equal(t, http.MethodDelete, r.method)
	assert.Equal(t, "/gitlab/ci/api/v1/runners/delete", r.path)
	assert.Empty(t, r.rawQuery, "no query string: tokens must not go into URLs")
	assert.Equal(t, "application/x-www-form-urlencoded", r.contentType)
	assert.Equal(t, url.Values{"token": {testNewRunnerToken}}, r.form)
}

func TestRunnersUnregisterStatuses(t *testing.T) {
	t.Run("unknown token", func(t *testing.T) {
		c, seen := testRunnersServer(t, http.StatusForbidden, `{"message":"403 Forbidden"}`)
		_, err := c.Runners.Unregister(context.Background(), testNewRunnerToken)
		assert.ErrorIs(t, err, ErrForbidden)
		assert.Len(t, seen(), 1)
	})
	t.Run("internal error is retried", func(t *testing.T) {
		// Removing a runner twice does no harm: the second answer is a 403 for a token already gone.
		c, seen := testRunnersServer(t, http.StatusInternalServerError, `{"message":"500 Internal Server Error"}`)
		resp, err := c.Runners.Unregister(context.Background(), testNewRunnerToken)
		assert.True(t, IsTransient(err), "%v", err)
		assert.Len(t, seen(), 1+testFastRetry.MaxRetries)
		require.NotNil(t, resp)
		assert.Equal(t, 1+testFastRetry.MaxRetries, resp.Attempts)
	})
}

// A coordinator or proxy that echoes the request in its error answer does not put the tokens into the error.
func TestRunnersErrorsDoNotQuoteTokens(t *testing.T) {
	for _, status := range []int{http.StatusForbidden, http.StatusBadRequest, http.StatusServiceUnavailable} {
		c, _ := testRunnersServer(t, status, `{"message":"refused: %s"}`)

		_, _, err := c.Runners.Register(context.Background(), testRegistrationToken, &RegisterRunnerOptions{Description: "d"})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "refused: ", "the message is kept")
		assert.NotContains(t, err.Error(), testRegistrationToken)
		assert.Contains(t, err.Error(), masked)

		_, err = c.Runners.Unregister(context.Background(), testNewRunnerToken)
		require.Error(t, err)
		assert.NotContains(t, err.Error(), testNewRunnerToken)
		assert.Contains(t, err.Error(), masked)
	}
}

// The new runner token is a secret: no print and no log shows it.
func TestRegisteredRunnerPrintsWithoutItsToken(t *testing.T) {
	runner := &RegisteredRunner{ID: 12, Token: testNewRunnerToken}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
		for _, v := range []any{runner, *runner} {
			out := fmt.Sprintf(verb, v)
			assert.NotContains(t, out, testNewRunnerToken, verb)
			assert.NotContains(t, out, fmt.Sprintf("%x", testNewRunnerToken), verb)
		}
	}
	assert.Equal(t, "{ID:12 Token:[MASKED]}", fmt.Sprintf("%+v", *runner))

	var buf bytes.Buffer
	for _, h := range []slog.Handler{slog.NewJSONHandler(&buf, nil), slog.NewTextHandler(&buf, nil)} {
		slog.New(h).Info("registered", "runner", runner, "value", *runner)
	}
	assert.NotContains(t, buf.String(), testNewRunnerToken)
	assert.Contains(t, buf.String(), `"id":12`)

	// JSON masks it too, alone or in a slice, as a logger or encoder that marshals values would meet it; an
	// UnredactedRunner keeps it, for a program that stores the token it was given.
	for _, v := range []any{runner, *runner, []RegisteredRunner{*runner}, map[string]any{"r": runner}} {
		data, err := json.Marshal(v)
		require.NoError(t, err)
		assert.NotContains(t, string(data), testNewRunnerToken)
		assert.Contains(t, string(data), `"token":"[MASKED]"`)
	}
	data, err := json.Marshal(UnredactedRunner(*runner))
	require.NoError(t, err)
	assert.JSONEq(t, `{"id":12,"token":"`+testNewRunnerToken+`"}`, string(data))
	var back RegisteredRunner
	require.NoError(t, json.Unmarshal(data, &back))
	assert.Equal(t, *runner, back)
	assert.NotContains(t, fmt.Sprintf("%+v", UnredactedRunner(*runner)), testNewRunnerToken, "printing still masks")
}

func TestRunnersServicePrintsWithoutTokens(t *testing.T) {
	c, _ := testMockClient(t)
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
		out := fmt.Sprintf(verb, c.Runners)
		assert.NotContains(t, out, testRunnerToken, verb)
		assert.Contains(t, out, "RunnersService", verb)
	}
}

// A 404 that is not JSON comes from something other than a coordinator: GitLab's runners endpoints answer JSON.
func TestRunnersNotCoordinator(t *testing.T) {
	for _, tc := range []struct {
		name, contentType, body string
		notCoordinator          bool
	}{
		{"HTML page", "text/html", "<html><head><title>404 Not Found</title></head><body>nginx</body></html>", true},
		{"empty body", "text/plain", "", true},
		{"GitLab's JSON", "application/json", `{"message":"404 Not Found"}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := testServerClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.contentType)
				w.WriteHeader(http.StatusNotFound)
				_, _ = io.WriteString(w, tc.body)
			}))

			_, _, err := c.Runners.Register(context.Background(), testRegistrationToken, nil)
			assert.Equal(t, tc.notCoordinator, errors.Is(err, ErrNotCoordinator), "register: %v", err)
			assert.ErrorIs(t, err, ErrNotFound)
			var er *ErrorResponse
			assert.ErrorAs(t, err, &er)
			_, err = c.Runners.Unregister(context.Background(), testNewRunnerToken)
			assert.Equal(t, tc.notCoordinator, errors.Is(err, ErrNotCoordinator), "unregister: %v", err)
			assert.ErrorIs(t, err, ErrNotFound)
		})
	}
}
