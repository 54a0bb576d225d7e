package runnerapitest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/runnerapi/runnerapi"
	"github.com/runnerapi/runnerapi/runnerapitest"
)

// The conformance table: the raw HTTP a real runner (gitlab-ci-multi-runner 1.11) or GitLab's own request specs
// send, and what GitLab 8.17/9.x answers, row by row. Every row runs against a new server in the same scene (see
// newConformanceWorld) through net/http alone, never the SDK, so that the fake is checked against GitLab and not
// against our own client.

const (
	ua111       = "gitlab-ci-multi-runner 1.11.0 (1-11-stable; go1.7.4; linux/amd64)"
	cfRunner    = "conformance-runner-token"
	cfOther     = "conformance-other-runner"
	cfPaused    = "conformance-paused-runner"
	cfReg       = "conformance-registration"
	cfProject   = "conformance-project-7-runners"
	cfBoundary  = "conformanceboundary"
	cfMultipart = "multipart/form-data; boundary=" + cfBoundary
	cfJSON      = "application/json"
	cfForm      = "application/x-www-form-urlencoded"
	cfTraceLine = "Running git clone...\n" // 21 bytes: Content-Range 0-21
)

// conformanceWorld is the scene of a row: a runner that has taken build {id} of project 7 (its token {token}), a
// paused runner, another runner, an instance registration token and project 7's runners token.
type conformanceWorld struct {
	t     *testing.T
	srv   *runnerapitest.Server
	hc    *http.Client
	id    int64
	token string            // the running build's token
	vars  map[string]string // more placeholders a row's setup adds
}

func newConformanceWorld(t *testing.T, opts ...runnerapitest.Option) *conformanceWorld {
	t.Helper()
	srv := runnerapitest.NewServer(opts...)
	t.Cleanup(srv.Close)
	srv.AddRunner(cfRunner)
	srv.AddRunner(cfOther)
	srv.AddRunner(cfPaused, runnerapitest.RunnerPaused())
	srv.AddRegistrationToken(cfReg)
	srv.SetProjectRunnersToken(7, cfProject)
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	w := &conformanceWorld{t: t, srv: srv, hc: &http.Client{Transport: tr}, vars: map[string]string{}}
	w.id = srv.Enqueue(runnerapi.Build{ProjectID: 7, Name: "rspec", Commands: "bundle exec rspec"})
	resp, body := w.send(http.MethodPost, "/ci/api/v1/builds/register.json",
		http.Header{"Content-Type": {cfJSON}, "User-Agent": {ua111}}, `{"token":"`+cfRunner+`"}`)
	require.Equal(t, http.StatusCreated, resp.StatusCode, body)
	var b runnerapi.Build
	require.NoError(t, json.Unmarshal([]byte(body), &b))
	w.token = b.Token
	return w
}

// expand replaces the placeholders {id}, {token}, {runner} and those of vars.
func (w *conformanceWorld) expand(s string) string {
	pairs := []string{"{id}", strconv.FormatInt(w.id, 10), "{token}", w.token, "{runner}", cfRunner}
	for k, v := range w.vars {
		pairs = append(pairs, "{"+k+"}", v)
	}
	return strings.NewReplacer(pairs...).Replace(s)
}

// send sends a request with placeholders expanded and returns the answer with its body read.
func (w *conformanceWorld) send(method, path string, header http.Header, body string) (*http.Response, string) {
	w.t.Helper()
	req, err := http.NewRequest(method, w.srv.URL+w.expand(path), strings.NewReader(w.expand(body)))
	require.NoError(w.t, err)
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, w.expand(v))
		}
	}
	resp, err := w.hc.Do(req)
	require.NoError(w.t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(w.t, err)
	return resp, string(data)
}

// multipartFile is a multipart body with form fields and one file part "file" named artifacts.zip.
func multipartFile(content string, fields ...string) string {
	var b strings.Builder
	for i := 0; i+1 < len(fields); i += 2 {
		b.WriteString("--" + cfBoundary + "\r\nContent-Disposition: form-data; name=\"" + fields[i] + "\"\r\n\r\n" + fields[i+1] + "\r\n")
	}
	if content != "" {
		b.WriteString("--" + cfBoundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"artifacts.zip\"\r\n" +
			"Content-Type: application/octet-stream\r\n\r\n" + content + "\r\n")
	}
	b.WriteString("--" + cfBoundary + "--\r\n")
	return b.String()
}

// conformanceRow is one request and GitLab's answer to it.
type conformanceRow struct {
	name   string
	opts   []runnerapitest.Option
	setup  func(w *conformanceWorld)
	method string
	path   string
	header http.Header
	body   string

	status    int
	headers   map[string]string // exact values, placeholders expanded
	headersRE map[string]string // values matching these patterns
	absent    []string          // headers that must not be sent
	wantBody  string            // the exact body, when not empty; "-" for an empty one
	bodyRE    string            // a pattern the body matches
	keys      []string          // top-level keys a JSON object body must have
	noKeys    []string          // top-level keys it must not have
	after     func(t *testing.T, w *conformanceWorld)
}

var lastUpdate32 = `^[0-9a-f]{32}$`

func jsonHeader(ua string) http.Header {
	return http.Header{"Content-Type": {cfJSON}, "User-Agent": {ua}}
}

func formHeaderUA(ua string) http.Header {
	return http.Header{"Content-Type": {cfForm}, "User-Agent": {ua}}
}

// traceHeader is what the 1.11 runner sends with a trace part.
func traceHeader(contentRange string) http.Header {
	return http.Header{"Content-Type": {"text/plain"}, "User-Agent": {ua111}, "BUILD-TOKEN": {"{token}"},
		"Content-Range": {contentRange}}
}

func enqueuePending(w *conformanceWorld) { w.srv.Enqueue(runnerapi.Build{Name: "pending"}) }

// appendLine appends cfTraceLine to the running build's trace, as a setup.
func appendLine(w *conformanceWorld) {
	resp, body := w.send(http.MethodPatch, "/ci/api/v1/builds/{id}/trace.txt", traceHeader("0-21"), cfTraceLine)
	require.Equal(w.t, http.StatusAccepted, resp.StatusCode, body)
}

// storeArtifact gives the running build an artifacts file of 10 bytes, as a setup.
func storeArtifact(w *conformanceWorld) {
	_, err := w.srv.SetArtifact(w.id, "artifacts.zip", strings.NewReader("0123456789"))
	require.NoError(w.t, err)
}

// httpDate is the form of an HTTP date, as in Last-Modified.
const httpDate = `^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$`

// storeArtifactAndDate stores an artifacts file, as storeArtifact, and keeps its Last-Modified as {modified}.
func storeArtifactAndDate(w *conformanceWorld) {
	storeArtifact(w)
	resp, _ := w.send(http.MethodGet, "/ci/api/v1/builds/{id}/artifacts", http.Header{"BUILD-TOKEN": {"{token}"}}, "")
	require.Equal(w.t, http.StatusOK, resp.StatusCode)
	w.vars["modified"] = resp.Header.Get("Last-Modified")
	require.NotEmpty(w.t, w.vars["modified"])
}

func conformanceRows() []conformanceRow {
	const (
		builds   = "/ci/api/v1/builds"
		runners  = "/ci/api/v1/runners"
		notFound = `{"message":"404 Not Found"}`
		denied   = `{"message":"403 Forbidden"}`
	)
	buildKeys := []string{"id", "ref", "tag", "sha", "before_sha", "status", "name", "stage", "token", "project_id",
		"project_name", "repo_url", "commands", "allow_git_fetch", "timeout", "variables", "options",
		"depends_on_builds", "credentials"}
	var rows []conformanceRow

	// Routing. lib/ci/api/api.rb declares `format :json`, so Grape appends "(.json)" to every route's path (Grape::Path
	// gives a single declared format as the suffix); gitlab-ci-multi-runner 1.11 (network/gitlab.go) calls
	// builds/register.json, builds/:id.json and runners/register.json / runners/delete.json, and ":id/trace.txt"
	// answers as ":id/trace.txt.json" too.
	rows = append(rows,
		conformanceRow{name: "register.json with the 1.11 runner's JSON body", setup: enqueuePending,
			method: "POST", path: builds + "/register.json", header: jsonHeader(ua111),
			body:   `{"info":{"name":"gitlab-ci-multi-runner","version":"1.11.0","revision":"33f9e9e","platform":"linux","architecture":"amd64","executor":"shell"},"token":"{runner}","last_update":""}`,
			status: 201, headers: map[string]string{"Content-Type": "application/json"}, keys: buildKeys,
			after: func(t *testing.T, w *conformanceWorld) {
				r, _ := w.srv.Runner(cfRunner)
				assert.Equal(t, "1.11.0", r.Info.Version, "info[...] is taken from the JSON object")
			}},
		conformanceRow{name: "update :id.json with a JSON body", method: "PUT", path: builds + "/{id}.json",
			header: jsonHeader(ua111), body: `{"info":{"name":"gitlab-ci-multi-runner"},"token":"{runner}","state":"success","trace":"done\n"}`,
			status: 200, wantBody: "true",
			after: func(t *testing.T, w *conformanceWorld) {
				info, _ := w.srv.Build(w.id)
				assert.Equal(t, runnerapi.StateSuccess, info.State)
				assert.Equal(t, "done\n", string(w.srv.Trace(w.id)))
			}},
		conformanceRow{name: "upload artifacts.json", method: "POST", path: builds + "/{id}/artifacts.json",
			header: http.Header{"Content-Type": {cfMultipart}, "BUILD-TOKEN": {"{token}"}, "User-Agent": {ua111}},
			body:   multipartFile("zipbytes"), status: 201, keys: append([]string{"artifacts_file"}, buildKeys...)},
		conformanceRow{name: "download artifacts.json", setup: storeArtifact, method: "GET", path: builds + "/{id}/artifacts.json",
			header: http.Header{"BUILD-TOKEN": {"{token}"}}, status: 200, wantBody: "0123456789"},
		conformanceRow{name: "delete artifacts.json", setup: storeArtifact, method: "DELETE", path: builds + "/{id}/artifacts.json",
			header: http.Header{"BUILD-TOKEN": {"{token}"}}, status: 200},
		conformanceRow{name: "runners/register.json", method: "POST", path: runners + "/register.json",
			header: jsonHeader(ua111), body: `{"token":"` + cfReg + `","description":"ci-1","tag_list":"docker,linux","info":{"name":"gitlab-ci-multi-runner"}}`,
			status: 201, keys: []string{"id", "token"}},
		conformanceRow{name: "runners/delete.json", method: "DELETE", path: runners + "/delete.json",
			header: jsonHeader(ua111), body: `{"token":"` + cfOther + `"}`, status: 200},
		conformanceRow{name: "trace.txt.json appends too", method: "PATCH", path: builds + "/{id}/trace.txt.json",
			header: traceHeader("0-21"), body: cfTraceLine, status: 202, headers: map[string]string{"Range": "0-21"},
			after: func(t *testing.T, w *conformanceWorld) { assert.Equal(t, cfTraceLine, string(w.srv.Trace(w.id))) }},
		// Ci::API::API has no catch-all route: Grape cascades an unrouted path to Rails, whose 404 is its HTML page,
		// never the API's JSON.
		conformanceRow{name: "an unknown path answers Rails' HTML 404", method: "POST", path: "/ci/api/v1/jobs/request",
			status: 404, headersRE: map[string]string{"Content-Type": "^text/html"}, bodyRE: `(?i)<html`},
	)

	// Parameters. Grape's params merge the query string with a urlencoded, multipart or JSON body; the build token
	// is `params[:token] || env["HTTP_BUILD_TOKEN"]` (lib/ci/api/helpers.rb, authenticate_build!), so a token
	// parameter wins over the header on every endpoint. GitLab's spec (spec/requests/ci/api/builds_spec.rb)
	// deletes artifacts with the token in a form body.
	rows = append(rows,
		conformanceRow{name: "register with the token in the query", setup: enqueuePending, method: "POST",
			path: builds + "/register?token={runner}", header: http.Header{"User-Agent": {ua111}}, status: 201},
		conformanceRow{name: "register with a urlencoded form", setup: enqueuePending, method: "POST",
			path: builds + "/register", header: formHeaderUA(ua111), body: "token={runner}&info%5Bname%5D=spec", status: 201,
			after: func(t *testing.T, w *conformanceWorld) {
				r, _ := w.srv.Runner(cfRunner)
				assert.Equal(t, "spec", r.Info.Name)
			}},
		conformanceRow{name: "register with a multipart form", setup: enqueuePending, method: "POST",
			path: builds + "/register", header: http.Header{"Content-Type": {cfMultipart}}, body: multipartFile("", "token", cfRunner),
			status: 201},
		conformanceRow{name: "update with a form", method: "PUT", path: builds + "/{id}", header: formHeaderUA(ua111),
			body: "token={runner}&state=failed", status: 200, wantBody: "true",
			after: func(t *testing.T, w *conformanceWorld) {
				info, _ := w.srv.Build(w.id)
				assert.Equal(t, runnerapi.StateFailed, info.State)
			}},
		conformanceRow{name: "delete artifacts with the token in a form body beats a wrong header", setup: storeArtifact,
			method: "DELETE", path: builds + "/{id}/artifacts", header: http.Header{"Content-Type": {cfForm}, "BUILD-TOKEN": {"wrong"}},
			body: "token={token}", status: 200,
			after: func(t *testing.T, w *conformanceWorld) {
				_, ok := w.srv.Artifact(w.id)
				assert.False(t, ok)
			}},
		conformanceRow{name: "delete artifacts with the token in a JSON body", setup: storeArtifact, method: "DELETE",
			path: builds + "/{id}/artifacts", header: http.Header{"Content-Type": {cfJSON}}, body: `{"token":"{token}"}`, status: 200},
		conformanceRow{name: "delete artifacts with a wrong token parameter beats a right header", setup: storeArtifact,
			method: "DELETE", path: builds + "/{id}/artifacts", header: http.Header{"Content-Type": {cfForm}, "BUILD-TOKEN": {"{token}"}},
			body: "token=wrong", status: 403, wantBody: denied},
		conformanceRow{name: "download with the token in the query beats a wrong header", setup: storeArtifact,
			method: "GET", path: builds + "/{id}/artifacts?token={token}", header: http.Header{"BUILD-TOKEN": {"wrong"}}, status: 200},
		conformanceRow{name: "download with a wrong query token beats a right header", setup: storeArtifact,
			method: "GET", path: builds + "/{id}/artifacts?token=wrong", header: http.Header{"BUILD-TOKEN": {"{token}"}},
			status: 403, wantBody: denied},
		conformanceRow{name: "trace with the token in the query beats a wrong header", method: "PATCH",
			path: builds + "/{id}/trace.txt?token={token}", header: http.Header{"BUILD-TOKEN": {"wrong"}, "Content-Range": {"0-21"}},
			body: cfTraceLine, status: 202},
		conformanceRow{name: "upload with the token as a form field beats a wrong header", method: "POST",
			path: builds + "/{id}/artifacts", header: http.Header{"Content-Type": {cfMultipart}, "BUILD-TOKEN": {"wrong"}},
			body: multipartFile("zip", "token", "{token}"), status: 201},
	)

	// Register: lib/ci/api/builds.rb `post "register"` and lib/ci/api/helpers.rb build_not_found!, which answers
	// 204 when the User-Agent matches /gitlab-ci-multi-runner \d+\.\d+\.\d+(~beta\.\d+\.g[0-9a-f]+)? / anywhere,
	// 404 otherwise; Ci::Runner#ensure_runner_queue_value gives X-GitLab-Last-Update.
	noBuild := func(name, ua string, status int) conformanceRow {
		row := conformanceRow{name: name, method: "POST", path: builds + "/register.json", header: jsonHeader(ua),
			body: `{"token":"{runner}"}`, status: status, headersRE: map[string]string{"X-GitLab-Last-Update": lastUpdate32}}
		if status == 204 {
			row.wantBody = "-"
		} else {
			row.wantBody = notFound
		}
		return row
	}
	rows = append(rows,
		conformanceRow{name: "register with a wrong token", setup: enqueuePending, method: "POST", path: builds + "/register.json",
			header: jsonHeader(ua111), body: `{"token":"nope"}`, status: 403, wantBody: denied},
		conformanceRow{name: "register without a token is refused by authenticate_runner! first", method: "POST",
			path: builds + "/register.json", header: jsonHeader(ua111), body: `{}`, status: 403, wantBody: denied},
		noBuild("no build for the 1.11 runner: 204", ua111, 204),
		noBuild("no build behind a User-Agent prefix: 204", "proxy/1.0 gitlab-ci-multi-runner 1.11.0 (x)", 204),
		noBuild("no build for a beta: 204", "gitlab-ci-multi-runner 9.5.0~beta.36.g1f8a3d4 (x)", 204),
		noBuild("no build for gitlab-multi-runner: 404", "gitlab-multi-runner 1.2.3 (x)", 404),
		noBuild("no build for a release candidate: 404", "gitlab-ci-multi-runner 1.11.0-rc1 (x)", 404),
		noBuild("no build for another client: 404", "Go-http-client/1.1", 404),
		conformanceRow{name: "a paused runner gets 404 and no queue value", setup: enqueuePending, method: "POST",
			path: builds + "/register.json", header: jsonHeader(ua111), body: `{"token":"` + cfPaused + `"}`,
			status: 404, wantBody: notFound, absent: []string{"X-GitLab-Last-Update"}},
		conformanceRow{name: "long polling: the last value sent back is answered no build at once",
			setup: func(w *conformanceWorld) {
				resp, _ := w.send(http.MethodPost, builds+"/register.json", jsonHeader(ua111), `{"token":"{runner}"}`)
				w.vars["last"] = resp.Header.Get("X-GitLab-Last-Update")
			},
			method: "POST", path: builds + "/register.json", header: jsonHeader(ua111),
			body: `{"token":"{runner}","last_update":"{last}"}`, status: 204, headers: map[string]string{"X-GitLab-Last-Update": "{last}"}},
		conformanceRow{name: "a build without artifacts has no artifacts_file", setup: enqueuePending, method: "POST",
			path: builds + "/register.json", header: jsonHeader(ua111), body: `{"token":"{runner}"}`, status: 201,
			keys: buildKeys, noKeys: []string{"artifacts_file"},
			bodyRE: `"status":"running".*"variables":\[\].*"depends_on_builds":\[\].*"credentials":\[\]`},
		conformanceRow{name: "a dependency with artifacts carries its artifacts_file",
			setup: func(w *conformanceWorld) {
				storeArtifact(w)
				w.srv.Enqueue(runnerapi.Build{Name: "deploy", DependsOnBuilds: []runnerapi.DependentBuild{{ID: w.id}}})
				resp, body := w.send(http.MethodPut, builds+"/{id}.json", jsonHeader(ua111), `{"token":"{runner}","state":"success"}`)
				require.Equal(w.t, http.StatusOK, resp.StatusCode, body)
			},
			method: "POST", path: builds + "/register.json", header: jsonHeader(ua111), body: `{"token":"{runner}"}`,
			status: 201, noKeys: []string{"artifacts_file"},
			bodyRE: `"depends_on_builds":\[\{"id":{id},[^\]]*"token":"{token}"[^\]]*"artifacts_file":\{"filename":"artifacts.zip","size":10\}\}\]`},
	)

	// Update: lib/ci/api/builds.rb `put ":id"` finds the build among this runner's running ones (else 404), and
	// `build.success` / `build.drop` give the body true. validate_build!'s 403 for an erased build is not reached:
	// only a finished build can be erased (Ci::Build#erasable? requires complete?), and a finished one is not found.
	rows = append(rows,
		conformanceRow{name: "update running changes nothing and answers null", method: "PUT", path: builds + "/{id}.json",
			header: jsonHeader(ua111), body: `{"token":"{runner}","state":"running"}`, status: 200, wantBody: "null"},
		conformanceRow{name: "update with a wrong token", method: "PUT", path: builds + "/{id}.json", header: jsonHeader(ua111),
			body: `{"token":"nope","state":"success"}`, status: 403, wantBody: denied},
		conformanceRow{name: "update of another runner's build", method: "PUT", path: builds + "/{id}.json", header: jsonHeader(ua111),
			body: `{"token":"` + cfOther + `","state":"success"}`, status: 404, wantBody: notFound},
		conformanceRow{name: "update of a canceled build", setup: func(w *conformanceWorld) { require.NoError(w.t, w.srv.Cancel(w.id)) },
			method: "PUT", path: builds + "/{id}.json", header: jsonHeader(ua111), body: `{"token":"{runner}","state":"success"}`,
			status: 404, wantBody: notFound},
		// gitlab-ci-multi-runner 1.11 (network/gitlab.go VerifyRunner) checks its token with an update of build -1:
		// 404 says the runner exists, 403 that it was removed.
		conformanceRow{name: "verify a runner with an update of build -1", method: "PUT", path: builds + "/-1",
			header: jsonHeader(ua111), body: `{"token":"{runner}"}`, status: 404, wantBody: notFound},
		conformanceRow{name: "verify a removed runner with an update of build -1",
			setup: func(w *conformanceWorld) {
				resp, _ := w.send(http.MethodDelete, runners+"/delete", jsonHeader(ua111), `{"token":"{runner}"}`)
				require.Equal(w.t, http.StatusOK, resp.StatusCode)
			},
			method: "PUT", path: builds + "/-1", header: jsonHeader(ua111), body: `{"token":"{runner}"}`, status: 403, wantBody: denied},
		conformanceRow{name: "update of an erased build: not running, so not found",
			setup: func(w *conformanceWorld) {
				resp, body := w.send(http.MethodPut, builds+"/{id}.json", jsonHeader(ua111), `{"token":"{runner}","state":"success"}`)
				require.Equal(w.t, http.StatusOK, resp.StatusCode, body)
				require.NoError(w.t, w.srv.Erase(w.id))
			},
			method: "PUT", path: builds + "/{id}.json", header: jsonHeader(ua111), body: `{"token":"{runner}","state":"success"}`,
			status: 404, wantBody: notFound},
	)

	// Trace: lib/ci/api/builds.rb `patch ":id/trace.txt"` reads START only, answers 416 through error! with the
	// Range header alone, and after app/models/ci/build.rb append_trace answers 202 with Build-Status and Range.
	rows = append(rows,
		conformanceRow{name: "a part of 21 bytes at 0-21", method: "PATCH", path: builds + "/{id}/trace.txt",
			header: traceHeader("0-21"), body: cfTraceLine, status: 202, wantBody: "-",
			headers: map[string]string{"Range": "0-21", "Build-Status": "running"},
			after:   func(t *testing.T, w *conformanceWorld) { assert.Equal(t, cfTraceLine, string(w.srv.Trace(w.id))) }},
		conformanceRow{name: "only START is read: any END goes", setup: appendLine, method: "PATCH", path: builds + "/{id}/trace.txt",
			header: traceHeader("21-0"), body: "ok\n", status: 202, headers: map[string]string{"Range": "0-24"}},
		conformanceRow{name: "a part not at the trace's length: 416 with Range only", setup: appendLine, method: "PATCH",
			path: builds + "/{id}/trace.txt", header: traceHeader("0-21"), body: cfTraceLine, status: 416,
			wantBody: `{"error":"416 Range Not Satisfiable"}`, headers: map[string]string{"Range": "0-21"}, absent: []string{"Build-Status"},
			after: func(t *testing.T, w *conformanceWorld) {
				assert.Equal(t, cfTraceLine, string(w.srv.Trace(w.id)), "nothing written")
			}},
		conformanceRow{name: "a 416 says nothing of a cancel", setup: func(w *conformanceWorld) { require.NoError(w.t, w.srv.Cancel(w.id)) },
			method: "PATCH", path: builds + "/{id}/trace.txt", header: traceHeader("5-26"), body: cfTraceLine, status: 416,
			headers: map[string]string{"Range": "0-0"}, absent: []string{"Build-Status"}},
		conformanceRow{name: "a part without Content-Range", method: "PATCH", path: builds + "/{id}/trace.txt",
			header: http.Header{"BUILD-TOKEN": {"{token}"}}, body: cfTraceLine, status: 400,
			wantBody: `{"error":"400 Missing header Content-Range"}`},
		conformanceRow{name: "a part with a wrong token", method: "PATCH", path: builds + "/{id}/trace.txt",
			header: http.Header{"BUILD-TOKEN": {"nope"}, "Content-Range": {"0-21"}}, body: cfTraceLine, status: 403, wantBody: denied},
		conformanceRow{name: "a part for the project's runners token", method: "PATCH", path: builds + "/{id}/trace.txt",
			header: http.Header{"BUILD-TOKEN": {cfProject}, "Content-Range": {"0-21"}}, body: cfTraceLine, status: 202},
		conformanceRow{name: "a part for an unknown build", method: "PATCH", path: builds + "/999/trace.txt",
			header: traceHeader("0-21"), body: cfTraceLine, status: 404, wantBody: notFound},
		conformanceRow{name: "a part after a cancel is taken and says canceled",
			setup:  func(w *conformanceWorld) { require.NoError(w.t, w.srv.Cancel(w.id)) },
			method: "PATCH", path: builds + "/{id}/trace.txt", header: traceHeader("0-21"), body: cfTraceLine, status: 202,
			headers: map[string]string{"Build-Status": "canceled", "Range": "0-21"}},
		conformanceRow{name: "an empty part at the end is a keep-alive", setup: appendLine, method: "PATCH",
			path: builds + "/{id}/trace.txt", header: traceHeader("21-21"), status: 202,
			headers: map[string]string{"Range": "0-21", "Build-Status": "running"}},
	)

	// Artifacts: lib/ci/api/builds.rb `post ":id/artifacts"` (running builds only, a file smaller than the limit),
	// `get ":id/artifacts"` through present_file! (Rails' send_file: octet-stream, attachment, binary transfer
	// encoding) and `delete ":id/artifacts"`.
	rows = append(rows,
		conformanceRow{name: "upload with expire_in in the query", method: "POST", path: builds + "/{id}/artifacts?expire_in=7d",
			header: http.Header{"Content-Type": {cfMultipart}, "BUILD-TOKEN": {"{token}"}}, body: multipartFile("zipbytes"),
			status: 201, keys: []string{"artifacts_file", "artifacts_expire_at"},
			bodyRE: `"artifacts_file":\{"filename":"artifacts.zip","size":8\}`},
		// app/models/ci/build.rb (9.x) artifacts_expire_in=: ChronicDuration.parse(value)&.seconds&.from_now, nil for a
		// value it cannot read, and nothing validates it: the file is stored without expiry. (8.x before the safe
		// navigation added it to Time.now and answered 500.)
		conformanceRow{name: "upload with an expire_in GitLab cannot read: stored without expiry", method: "POST",
			path: builds + "/{id}/artifacts?expire_in=soon", header: http.Header{"Content-Type": {cfMultipart}, "BUILD-TOKEN": {"{token}"}},
			body: multipartFile("zip"), status: 201, keys: []string{"artifacts_file"},
			after: func(t *testing.T, w *conformanceWorld) {
				a, ok := w.srv.Artifact(w.id)
				require.True(t, ok, "stored")
				assert.True(t, a.ExpireAt.IsZero(), "never expires")
			}},
		conformanceRow{name: "upload not smaller than the limit", opts: []runnerapitest.Option{runnerapitest.WithMaxArtifactSize(8)},
			method: "POST", path: builds + "/{id}/artifacts", header: http.Header{"Content-Type": {cfMultipart}, "BUILD-TOKEN": {"{token}"}},
			body: multipartFile("zipbytes"), status: 413, wantBody: `{"message":"413 Request Entity Too Large"}`},
		conformanceRow{name: "upload without a file part", method: "POST", path: builds + "/{id}/artifacts",
			header: http.Header{"Content-Type": {cfMultipart}, "BUILD-TOKEN": {"{token}"}}, body: multipartFile("", "expire_in", "1d"),
			status: 400, bodyRE: `Missing artifacts file`},
		conformanceRow{name: "upload for a build not running", setup: func(w *conformanceWorld) { require.NoError(w.t, w.srv.Cancel(w.id)) },
			method: "POST", path: builds + "/{id}/artifacts", header: http.Header{"Content-Type": {cfMultipart}, "BUILD-TOKEN": {"{token}"}},
			body: multipartFile("zip"), status: 403, wantBody: `{"message":"403 Forbidden  - Build is not running!"}`},
		conformanceRow{name: "upload with a wrong token", method: "POST", path: builds + "/{id}/artifacts",
			header: http.Header{"Content-Type": {cfMultipart}, "BUILD-TOKEN": {"nope"}}, body: multipartFile("zip"),
			status: 403, wantBody: denied},
		// present_file! hands the path to Workhorse (X-Sendfile), whose sendfile serves it with http.ServeContent and
		// the file's modification time: Last-Modified, byte ranges and If-Range, and no ETag.
		conformanceRow{name: "download", setup: storeArtifact, method: "GET", path: builds + "/{id}/artifacts",
			header: http.Header{"BUILD-TOKEN": {"{token}"}}, status: 200, wantBody: "0123456789",
			headers: map[string]string{"Content-Type": "application/octet-stream", "Content-Length": "10",
				"Content-Disposition": "attachment; filename=artifacts.zip", "Content-Transfer-Encoding": "binary",
				"Accept-Ranges": "bytes"},
			headersRE: map[string]string{"Last-Modified": httpDate}, absent: []string{"ETag"}},
		conformanceRow{name: "download resumed with If-Range naming its Last-Modified", setup: storeArtifactAndDate,
			method: "GET", path: builds + "/{id}/artifacts",
			header: http.Header{"BUILD-TOKEN": {"{token}"}, "Range": {"bytes=4-"}, "If-Range": {"{modified}"}},
			status: 206, wantBody: "456789", headers: map[string]string{"Content-Range": "bytes 4-9/10"}},
		conformanceRow{name: "download resumed with If-Range naming another date gets the whole file", setup: storeArtifact,
			method: "GET", path: builds + "/{id}/artifacts",
			header: http.Header{"BUILD-TOKEN": {"{token}"}, "Range": {"bytes=4-"}, "If-Range": {"Mon, 02 Jan 2006 15:04:05 GMT"}},
			status: 200, wantBody: "0123456789"},
		conformanceRow{name: "download of a byte range", setup: storeArtifact, method: "GET", path: builds + "/{id}/artifacts",
			header: http.Header{"BUILD-TOKEN": {"{token}"}, "Range": {"bytes=4-"}}, status: 206, wantBody: "456789",
			headers: map[string]string{"Content-Range": "bytes 4-9/10", "Content-Transfer-Encoding": "binary"}},
		conformanceRow{name: "download without a file", method: "GET", path: builds + "/{id}/artifacts",
			header: http.Header{"BUILD-TOKEN": {"{token}"}}, status: 404, wantBody: notFound},
		conformanceRow{name: "download with a wrong token", setup: storeArtifact, method: "GET", path: builds + "/{id}/artifacts",
			header: http.Header{"BUILD-TOKEN": {"nope"}}, status: 403, wantBody: denied},
		conformanceRow{name: "delete", setup: storeArtifact, method: "DELETE", path: builds + "/{id}/artifacts",
			header: http.Header{"BUILD-TOKEN": {"{token}"}}, status: 200,
			after: func(t *testing.T, w *conformanceWorld) {
				_, ok := w.srv.Artifact(w.id)
				assert.False(t, ok)
			}},
	)

	// Runners: lib/ci/api/runners.rb. register: required_attributes! [:token] (400), the instance registration
	// token, then a project's runners token, else forbidden!; Entities::Runner gives id and token; a runner that
	// Ci::Runner's tag_constraints refuses to save is not_found!. delete: required_attributes! then
	// authenticate_runner! (403), then destroy.
	rows = append(rows,
		conformanceRow{name: "register a runner with the instance token, as a form", method: "POST", path: runners + "/register",
			header: formHeaderUA(ua111), body: "token=" + cfReg + "&description=ci-2&tag_list=ruby%2C+mysql&run_untagged=false&locked=true",
			status: 201, keys: []string{"id", "token"}, bodyRE: `^\{"id":\d+,"token":"[0-9a-f]{20,}"\}$`,
			after: func(t *testing.T, w *conformanceWorld) {
				all := w.srv.Runners()
				last := all[len(all)-1]
				assert.Equal(t, []string{"ruby", "mysql"}, last.Tags)
				assert.Equal(t, "ci-2", last.Description)
				assert.False(t, last.RunUntagged)
				assert.True(t, last.Locked)
				assert.Zero(t, last.ProjectID)
			}},
		conformanceRow{name: "register a runner with a project's runners token", method: "POST", path: runners + "/register.json",
			header: jsonHeader(ua111), body: `{"token":"` + cfProject + `"}`, status: 201,
			after: func(t *testing.T, w *conformanceWorld) {
				all := w.srv.Runners()
				assert.Equal(t, int64(7), all[len(all)-1].ProjectID)
			}},
		conformanceRow{name: "register a runner with a wrong token", method: "POST", path: runners + "/register.json",
			header: jsonHeader(ua111), body: `{"token":"nope"}`, status: 403, wantBody: denied},
		conformanceRow{name: "register a runner without a token", method: "POST", path: runners + "/register.json",
			header: jsonHeader(ua111), body: `{"description":"x"}`, status: 400, wantBody: `{"message":"400 (Bad request) \"token\" not given"}`},
		conformanceRow{name: "register a runner that could take no build", method: "POST", path: runners + "/register.json",
			header: jsonHeader(ua111), body: `{"token":"` + cfReg + `","run_untagged":false}`, status: 404, wantBody: notFound},
		conformanceRow{name: "delete a runner", method: "DELETE", path: runners + "/delete", header: formHeaderUA(ua111),
			body: "token=" + cfOther, status: 200,
			after: func(t *testing.T, w *conformanceWorld) {
				_, ok := w.srv.Runner(cfOther)
				assert.False(t, ok)
			}},
		conformanceRow{name: "delete an unknown runner", method: "DELETE", path: runners + "/delete", header: formHeaderUA(ua111),
			body: "token=nope", status: 403, wantBody: denied},
		conformanceRow{name: "delete without a token", method: "DELETE", path: runners + "/delete", header: formHeaderUA(ua111),
			status: 400, wantBody: `{"message":"400 (Bad request) \"token\" not given"}`},
		conformanceRow{name: "a deleted runner's token is refused by register",
			setup: func(w *conformanceWorld) {
				enqueuePending(w)
				resp, _ := w.send(http.MethodDelete, runners+"/delete.json", jsonHeader(ua111), `{"token":"{runner}"}`)
				require.Equal(w.t, http.StatusOK, resp.StatusCode)
			},
			method: "POST", path: builds + "/register.json", header: jsonHeader(ua111), body: `{"token":"{runner}"}`,
			status: 403, wantBody: denied},
		conformanceRow{name: "a deleted runner's token is refused by update",
			setup: func(w *conformanceWorld) {
				resp, _ := w.send(http.MethodDelete, runners+"/delete.json", jsonHeader(ua111), `{"token":"{runner}"}`)
				require.Equal(w.t, http.StatusOK, resp.StatusCode)
			},
			method: "PUT", path: builds + "/{id}.json", header: jsonHeader(ua111), body: `{"token":"{runner}","state":"success"}`,
			status: 403, wantBody: denied},
	)
	return rows
}

func TestConformance(t *testing.T) {
	for _, row := range conformanceRows() {
		t.Run(row.name, func(t *testing.T) {
			checkConformanceRow(t, newConformanceWorld(t, row.opts...), row)
		})
	}
}

// checkConformanceRow runs a row's setup in w, sends its request and checks the answer.
func checkConformanceRow(t *testing.T, w *conformanceWorld, row conformanceRow) {
	t.Helper()
	if row.setup != nil {
		row.setup(w)
	}
	resp, body := w.send(row.method, row.path, row.header, row.body)
	require.Equal(t, row.status, resp.StatusCode, body)
	for k, v := range row.headers {
		assert.Equal(t, w.expand(v), resp.Header.Get(k), k)
	}
	for k, re := range row.headersRE {
		assert.Regexp(t, re, resp.Header.Get(k), k)
	}
	for _, k := range row.absent {
		assert.Empty(t, resp.Header.Values(k), k)
	}
	switch row.wantBody {
	case "":
	case "-":
		assert.Empty(t, body)
	default:
		assert.Equal(t, w.expand(row.wantBody), body)
	}
	if row.bodyRE != "" {
		assert.Regexp(t, regexp.MustCompile(w.expand(row.bodyRE)), body)
	}
	if len(row.keys) > 0 || len(row.noKeys) > 0 {
		var obj map[string]json.RawMessage
		require.NoError(t, json.Unmarshal([]byte(body), &obj), body)
		for _, k := range row.keys {
			assert.Contains(t, obj, k)
		}
		for _, k := range row.noKeys {
			assert.NotContains(t, obj, k)
		}
	}
	if row.after != nil {
		row.after(t, w)
	}
}
