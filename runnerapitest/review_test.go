package runnerapitest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/runnerapi/runnerapi"
	"github.com/runnerapi/runnerapi/runnerapitest"
)

const reviewRunner = "review-runner-token-0123"

// reviewSend sends one raw request to srv and returns its status and body.
func reviewSend(t *testing.T, srv *runnerapitest.Server, method, path string, header http.Header, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(data)
}

// reviewRunningBuild starts a server with a runner that has taken a build, and returns the build's ID and token.
func reviewRunningBuild(t *testing.T) (*runnerapitest.Server, int64, string) {
	t.Helper()
	srv := runnerapitest.NewServer()
	t.Cleanup(srv.Close)
	srv.AddRunner(reviewRunner)
	id := srv.Enqueue(runnerapi.Build{Name: "review"})
	status, body := reviewSend(t, srv, http.MethodPost, "/ci/api/v1/builds/register",
		http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, "token="+reviewRunner)
	require.Equal(t, http.StatusCreated, status, body)
	var b runnerapi.Build
	require.NoError(t, json.Unmarshal([]byte(body), &b))
	return srv, id, b.Token
}

// allocated returns the bytes allocated while fn ran.
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// A JSON body's nested objects are flattened into "outer[inner]" keys. Built level by level, those keys grow with
// the depth, so that a body of a few hundred KiB made the fake allocate hundreds of MiB: a test feeding it odd
// input (a fuzzer, a hostile client) could take the whole machine down. Rack refuses forms past a depth of 100
// (param_depth_limit) and past 64 KiB of keys (key_space_limit), with 400; the fake refuses such JSON alike.
func TestJSONBodyFlatteningIsBounded(t *testing.T) {
	key := strings.Repeat("k", 100)
	deep := strings.Repeat(`{"`+key+`":`, 1500) + `"x"` + strings.Repeat("}", 1500)
	var wide strings.Builder
	wide.WriteString(`{"token":"` + reviewRunner + `","info":{"` + strings.Repeat("p", 100<<10) + `":{`)
	for i := range 1000 {
		if i > 0 {
			wide.WriteByte(',')
		}
		wide.WriteString(`"a` + strconv.Itoa(i) + `":1`)
	}
	wide.WriteString("}}}")
	srv := runnerapitest.NewServer()
	t.Cleanup(srv.Close)
	srv.AddRunner(reviewRunner)
	for name, body := range map[string]string{"deep": `{"token":"` + reviewRunner + `","info":` + deep + `}`, "wide": wide.String()} {
		t.Run(name, func(t *testing.T) {
			var status int
			n := allocated(func() {
				status, _ = reviewSend(t, srv, http.MethodPost, "/ci/api/v1/builds/register",
					http.Header{"Content-Type": {"application/json"}}, body)
			})
			assert.Equal(t, http.StatusBadRequest, status)
			assert.Less(t, n, uint64(32<<20), "bytes allocated for a body of %d bytes", len(body))
		})
	}
}

// Rack's params merge the query with the body, the body winning (GET.merge(POST)); Grape's params, and so GitLab's
// params['expire_in'] in the upload, take that. The fake let the query win for expire_in, though it lets the form
// win for the token of the same request.
func TestUploadExpireInFormFieldWinsOverQuery(t *testing.T) {
	srv, id, token := reviewRunningBuild(t)
	const boundary = "reviewboundary"
	body := "--" + boundary + "\r\nContent-Disposition: form-data; name=\"expire_in\"\r\n\r\n7d\r\n" +
		"--" + boundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"artifacts.zip\"\r\n" +
		"Content-Type: application/octet-stream\r\n\r\nzip\r\n--" + boundary + "--\r\n"
	status, answer := reviewSend(t, srv, http.MethodPost, "/ci/api/v1/builds/"+strconv.FormatInt(id, 10)+"/artifacts?expire_in=1d",
		http.Header{"Content-Type": {"multipart/form-data; boundary=" + boundary}, "BUILD-TOKEN": {token}}, body)
	require.Equal(t, http.StatusCreated, status, answer)
	a, ok := srv.Artifact(id)
	require.True(t, ok)
	assert.Equal(t, "7d", a.ExpireIn)
}

// Rack reads the body of a POST without a Content-Type as a form (Rack::Request#form_data?), so GitLab takes a
// runner's token from it; the fake read no parameters at all and refused the runner.
func TestPostWithoutContentTypeIsReadAsAForm(t *testing.T) {
	srv := runnerapitest.NewServer()
	t.Cleanup(srv.Close)
	srv.AddRunner(reviewRunner)
	srv.Enqueue(runnerapi.Build{Name: "review"})
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/ci/api/v1/builds/register", strings.NewReader("token="+reviewRunner))
	require.NoError(t, err)
	require.Empty(t, req.Header.Get("Content-Type"))
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusCreated, resp.StatusCode)
}

// Grape parses a JSON body only when it is not empty (Grape::Middleware::Formatter#read_body_input), so a DELETE
// with the build token in its header and a Content-Type but no body is served; the fake answered it 400.
func TestEmptyJSONBodyHasNoParameters(t *testing.T) {
	srv, id, token := reviewRunningBuild(t)
	_, err := srv.SetArtifact(id, "artifacts.zip", strings.NewReader("zip"))
	require.NoError(t, err)
	status, body := reviewSend(t, srv, http.MethodDelete, "/ci/api/v1/builds/"+strconv.FormatInt(id, 10)+"/artifacts",
		http.Header{"Content-Type": {"application/json"}, "BUILD-TOKEN": {token}}, "")
	assert.Equal(t, http.StatusOK, status, body)
	_, ok := srv.Artifact(id)
	assert.False(t, ok)
}

// A runner pointed at a wrong base URL must learn it from the fake as it would from GitLab, whose unrouted paths are
// answered by Rails' HTML 404: the fake's JSON {"message":"404 Not Found"} there read as "no build" forever.
func TestWrongBaseURLIsNotCoordinator(t *testing.T) {
	srv := runnerapitest.NewServer()
	t.Cleanup(srv.Close)
	srv.AddRunner(reviewRunner)
	c, err := runnerapi.NewClient(srv.URL+"/gitlab", runnerapi.WithRunnerToken(reviewRunner), runnerapi.WithoutRetries())
	require.NoError(t, err)
	build, _, err := c.Builds.Register(t.Context(), nil)
	assert.Nil(t, build)
	assert.ErrorIs(t, err, runnerapi.ErrNotCoordinator)
}
