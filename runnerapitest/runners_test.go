package runnerapitest_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/runnerapi/runnerapi"
	"github.com/runnerapi/runnerapi/runnerapitest"
)

const fakeRunnersAPI = "/ci/api/v1/runners"

// registerRunner posts runners/register with a form and returns the answer.
func (e *fakeEnv) registerRunner(v url.Values) (*http.Response, string) {
	e.t.Helper()
	return e.do(http.MethodPost, fakeRunnersAPI+"/register", formHeader(fakeMultiUA), strings.NewReader(v.Encode()))
}

// registeredRunner is runners/register's 201 body.
type registeredRunner struct {
	ID    int64  `json:"id"`
	Token string `json:"token"`
}

func decodeRegistered(t *testing.T, body string) registeredRunner {
	t.Helper()
	var keys map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &keys))
	assert.Len(t, keys, 2, "id and token, nothing else: %s", body)
	var r registeredRunner
	require.NoError(t, json.Unmarshal([]byte(body), &r))
	return r
}

func TestRunnerRegisterWithInstanceToken(t *testing.T) {
	e := newFakeEnv(t)
	e.srv.AddRegistrationToken("instance-registration")
	resp, body := e.registerRunner(url.Values{
		"token": {"instance-registration"}, "description": {"builder 1"}, "tag_list": {"docker, linux,,docker"},
		"run_untagged": {"false"}, "locked": {"true"}, "info[name]": {"gitlab-ci-multi-runner"},
		"info[version]": {"1.11.0"}, "info[platform]": {"linux"},
	})
	require.Equal(t, http.StatusCreated, resp.StatusCode, body)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	reg := decodeRegistered(t, body)
	assert.GreaterOrEqual(t, len(reg.Token), 20, "runner tokens are 20 characters or more")
	assert.NotEqual(t, "instance-registration", reg.Token)

	got, ok := e.srv.Runner(reg.Token)
	require.True(t, ok)
	assert.Equal(t, runnerapitest.Runner{
		ID: reg.ID, Description: "builder 1", Tags: []string{"docker", "linux"}, RunUntagged: false, Locked: true,
		Info: runnerapi.RunnerInfo{Name: "gitlab-ci-multi-runner", Version: "1.11.0", Platform: "linux"},
	}, got)
	all := e.srv.Runners()
	require.Len(t, all, 2, "AddRunner's and the new one")
	assert.Equal(t, got, all[1])
	assert.Less(t, all[0].ID, all[1].ID, "by ID")
	assert.True(t, all[0].RunUntagged, "GitLab's default")
	assert.Zero(t, all[0].ProjectID)

	// The new token takes builds at once.
	id := e.srv.Enqueue(runnerapi.Build{})
	assert.Equal(t, id, e.take(reg.Token).ID)
	info, _ := e.srv.Build(id)
	assert.Equal(t, reg.ID, info.RunnerID)
}

func TestRunnerRegisterWithProjectToken(t *testing.T) {
	e := newFakeEnv(t)
	e.srv.SetProjectRunnersToken(12, "project-12-runners")
	// The 1.11 runner's JSON body; tags may come as a list as well.
	resp, body := e.do(http.MethodPost, fakeRunnersAPI+"/register.json", http.Header{"Content-Type": {"application/json"}},
		strings.NewReader(`{"token":"project-12-runners","description":"p12","tag_list":["a","b , c"],"run_untagged":true,"info":{"name":"r"}}`))
	require.Equal(t, http.StatusCreated, resp.StatusCode, body)
	reg := decodeRegistered(t, body)
	got, ok := e.srv.Runner(reg.Token)
	require.True(t, ok)
	assert.Equal(t, int64(12), got.ProjectID)
	assert.Equal(t, []string{"a", "b", "c"}, got.Tags)
	assert.True(t, got.RunUntagged)
	assert.False(t, got.Locked)
	assert.Equal(t, "r", got.Info.Name)

	e.srv.SetProjectRunnersToken(12, "")
	resp, body = e.registerRunner(url.Values{"token": {"project-12-runners"}})
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "a removed project token registers nothing")
	assert.Equal(t, `{"message":"403 Forbidden"}`, body)
}

func TestRunnerRegisterErrors(t *testing.T) {
	e := newFakeEnv(t)
	e.srv.AddRegistrationToken("instance-registration")
	cases := []struct {
		name   string
		form   url.Values
		status int
		body   string
	}{
		{"no token", url.Values{"description": {"x"}}, 400, `{"message":"400 (Bad request) \"token\" not given"}`},
		{"blank token", url.Values{"token": {" "}}, 400, `{"message":"400 (Bad request) \"token\" not given"}`},
		{"wrong token", url.Values{"token": {"nope"}}, 403, `{"message":"403 Forbidden"}`},
		{"a runner token is no registration token", url.Values{"token": {fakeRunnerToken}}, 403, `{"message":"403 Forbidden"}`},
		// Ci::Runner does not save a runner that may take no build, and the API answers not_found!.
		{"untagged refused without tags", url.Values{"token": {"instance-registration"}, "run_untagged": {"0"}}, 404, `{"message":"404 Not Found"}`},
	}
	for _, tc := range cases {
		resp, body := e.registerRunner(tc.form)
		assert.Equal(t, tc.status, resp.StatusCode, tc.name)
		assert.Equal(t, tc.body, body, tc.name)
	}
	assert.Len(t, e.srv.Runners(), 1, "no runner was created")
}

func TestRunnerDelete(t *testing.T) {
	e := newFakeEnv(t)
	e.srv.AddRegistrationToken("instance-registration")
	_, body := e.registerRunner(url.Values{"token": {"instance-registration"}, "description": {"to go"}})
	reg := decodeRegistered(t, body)
	id := e.srv.Enqueue(runnerapi.Build{})
	e.take(reg.Token)

	resp, body := e.do(http.MethodDelete, fakeRunnersAPI+"/delete", formHeader(""), nil)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	assert.Equal(t, `{"message":"400 (Bad request) \"token\" not given"}`, body)
	resp, body = e.do(http.MethodDelete, fakeRunnersAPI+"/delete", formHeader(""), strings.NewReader("token=unknown"))
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	assert.Equal(t, `{"message":"403 Forbidden"}`, body)

	resp, body = e.do(http.MethodDelete, fakeRunnersAPI+"/delete", formHeader(""), strings.NewReader("token="+reg.Token))
	assert.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.NotContains(t, body, reg.Token)
	_, ok := e.srv.Runner(reg.Token)
	assert.False(t, ok)
	assert.Len(t, e.srv.Runners(), 1)

	// From now on its token is refused everywhere a runner token is taken.
	resp, body = e.register(reg.Token, fakeMultiUA, nil)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	assert.Equal(t, `{"message":"403 Forbidden"}`, body)
	resp, body = e.update(id, reg.Token, "success", nil)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	assert.Equal(t, `{"message":"403 Forbidden"}`, body)
	resp, _ = e.do(http.MethodDelete, fakeRunnersAPI+"/delete.json", http.Header{"Content-Type": {"application/json"}},
		strings.NewReader(`{"token":"`+reg.Token+`"}`))
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "deleted once")

	// AddRunner's runners go the same way, with the JSON body and suffix the 1.11 runner uses.
	resp, _ = e.do(http.MethodDelete, fakeRunnersAPI+"/delete.json", http.Header{"Content-Type": {"application/json"}},
		strings.NewReader(`{"token":"`+fakeRunnerToken+`"}`))
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Empty(t, e.srv.Runners())
}

func TestRunnerTokensNeverShown(t *testing.T) {
	e := newFakeEnv(t)
	e.srv.AddRegistrationToken("instance-registration")
	_, body := e.registerRunner(url.Values{"token": {"instance-registration"}})
	reg := decodeRegistered(t, body)
	for _, r := range e.srv.Runners() {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
			out := fmt.Sprintf(verb, r)
			assert.NotContains(t, out, reg.Token)
			assert.NotContains(t, out, fakeRunnerToken)
		}
	}
	for _, r := range e.srv.Requests() {
		assert.NotContains(t, fmt.Sprintf("%+v", r), "instance-registration")
		assert.Equal(t, runnerapitest.EndpointRunnerRegister, r.Endpoint)
	}
	assert.NotContains(t, fmt.Sprintf("%v %+v", e.srv, e.srv), "instance-registration")
}

func TestAddRegistrationTokenRefusesEmpty(t *testing.T) {
	e := newFakeEnv(t)
	assert.Panics(t, func() { e.srv.AddRegistrationToken("") })
}

func TestRunnersEndpointsLogNoToken(t *testing.T) {
	var buf strings.Builder
	var mu sync.Mutex
	e := newFakeEnv(t, runnerapitest.WithLogger(slogHandlerTo(&buf, &mu)))
	e.srv.AddRegistrationToken("instance-registration")
	resp, body := e.do(http.MethodPost, fakeRunnersAPI+"/register.json?token=instance-registration", nil, nil)
	require.Equal(t, http.StatusCreated, resp.StatusCode, body)
	reg := decodeRegistered(t, body)
	resp, _ = e.do(http.MethodDelete, fakeRunnersAPI+"/delete?token="+reg.Token, nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	assert.Contains(t, out, "status=201")
	assert.Contains(t, out, "/runners/delete")
	assert.NotContains(t, out, "instance-registration")
	assert.NotContains(t, out, reg.Token)
	for _, r := range e.srv.Requests() {
		assert.True(t, r.TokenInQuery, "the log says where the token was, never what it was")
		assert.NotContains(t, r.Path, "token")
	}
}
