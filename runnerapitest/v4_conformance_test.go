package runnerapitest_test

import (
	"encoding/json"
	"fmt"
	"hash/crc32"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/runnerapi/runnerapi"
	"github.com/runnerapi/runnerapi/runnerapitest"
)

// The conformance table of the runner API v4: the raw HTTP gitlab-runner 17 sends (network/gitlab.go: JSON bodies,
// RUNNER-TOKEN and JOB-TOKEN headers beside the token parameter, an inclusive Content-Range) and what today's GitLab
// answers (lib/api/ci/runner.rb and its services), row by row, from ../shared/PROTOCOL-v4.md. Every row runs
// against a new server in the scene of newV4World, through net/http alone.

const (
	ua17       = "gitlab-runner 17.0.0 (17-0-stable; go1.22.3; linux/amd64)"
	v4Runner   = "glrt-t1_conformance-v4-runner" // created in the UI
	v4Legacy   = "t1_conformance-legacy-runner"
	v4Paused   = "t1_conformance-paused-runner"
	v4SystemID = "s_0123456789ab"
	v4Line     = "Running on runner-1 via host...\n" // 32 bytes: Content-Range 0-31
	jobs       = "/api/v4/jobs"
	runners4   = "/api/v4/runners"
)

// v4Features is the info.features gitlab-runner 17 sends.
const v4Features = `{"variables":true,"image":true,"services":true,"artifacts":true,"cache":true,"fallback_cache_keys":true,` +
	`"shared":true,"upload_multiple_artifacts":true,"upload_raw_artifacts":true,"session":true,"terminal":true,` +
	`"refspecs":true,"masking":true,"proxy":false,"raw_variables":true,"artifacts_exclude":true,"multi_build_steps":true,` +
	`"trace_reset":true,"trace_checksum":true,"trace_size":true,"vault_secrets":true,"cancelable":true,` +
	`"return_exit_code":true,"service_variables":true,"service_multiple_aliases":true,"image_executor_opts":true,` +
	`"service_executor_opts":true,"cancel_gracefully":true,"native_steps_integration":false,"two_phase_job_commit":false}`

// v4Info is the info object of gitlab-runner 17's requests.
const v4Info = `{"name":"gitlab-runner","version":"17.0.0","revision":"44feccdf","platform":"linux","architecture":"amd64",` +
	`"executor":"shell","shell":"bash","features":` + v4Features + `,"config":{"gpus":""}}`

// v4JobRequest is the body of gitlab-runner 17's POST /jobs/request for the runner token {runner4}.
const v4JobRequest = `{"info":` + v4Info + `,"token":"{runner4}","system_id":"` + v4SystemID + `","last_update":"{last}"}`

// runnerHeader is what gitlab-runner sends with a runners or jobs/request call.
func runnerHeader(token string) http.Header {
	return http.Header{"Content-Type": {cfJSON}, "Accept": {cfJSON}, "User-Agent": {ua17}, "RUNNER-TOKEN": {token},
		"X-Request-Id": {"0123456789abcdef0123456789abcdef"}}
}

// jobHeader is what gitlab-runner sends with a job update.
func jobHeader() http.Header {
	return http.Header{"Content-Type": {cfJSON}, "Accept": {cfJSON}, "User-Agent": {ua17}, "JOB-TOKEN": {"{token}"}}
}

// traceHeader4 is what gitlab-runner sends with a trace part.
func traceHeader4(contentRange string) http.Header {
	return http.Header{"Content-Type": {"text/plain"}, "User-Agent": {ua17}, "JOB-TOKEN": {"{token}"},
		"Content-Range": {contentRange}}
}

// uploadHeader is what gitlab-runner's artifacts uploader sends.
func uploadHeader() http.Header {
	return http.Header{"Content-Type": {cfMultipart}, "User-Agent": {ua17}, "JOB-TOKEN": {"{token}"}}
}

// newV4World sets the scene of a v4 row: a UI-created runner ({runner4}) that took job {id} of project 7 through
// POST /api/v4/jobs/request (its job token {token}) advertising cancel_gracefully, a legacy runner, a paused one, an
// instance registration token and project 7's runners token.
func newV4World(t *testing.T, opts ...runnerapitest.Option) *conformanceWorld {
	t.Helper()
	srv := runnerapitest.NewServer(opts...)
	t.Cleanup(srv.Close)
	srv.AddRunner(v4Runner)
	srv.AddRunner(v4Legacy)
	srv.AddRunner(v4Paused, runnerapitest.RunnerPaused())
	srv.AddRegistrationToken(cfReg)
	srv.SetProjectRunnersToken(7, cfProject)
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	w := &conformanceWorld{t: t, srv: srv, hc: &http.Client{Transport: tr}, vars: map[string]string{"runner4": v4Runner}}
	w.id = srv.Enqueue(runnerapi.Build{ProjectID: 7, Name: "rspec", Commands: "bundle install\nbundle exec rspec",
		RepoURL:   "https://gitlab-ci-token:secret@gitlab.example.com/group/project.git",
		Variables: []runnerapi.Variable{{Key: "CI", Value: "true", Public: true}, {Key: "DEPLOY_KEY", Value: "s3cr3t-value"}},
		Options:   runnerapi.Options{Image: "ruby:3.3", Services: []string{"postgres:16"}, AfterScript: []string{"echo done"}}})
	w.vars["last"] = ""
	resp, body := w.send(http.MethodPost, jobs+"/request", runnerHeader(v4Runner), v4JobRequest)
	require.Equal(t, http.StatusCreated, resp.StatusCode, body)
	var job struct {
		ID    int64  `json:"id"`
		Token string `json:"token"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &job))
	require.Equal(t, w.id, job.ID)
	w.token = job.Token
	return w
}

// appendLine4 appends v4Line to the job's trace, as a setup.
func appendLine4(w *conformanceWorld) {
	resp, body := w.send(http.MethodPatch, jobs+"/{id}/trace?debug_trace=false", traceHeader4("0-31"), v4Line)
	require.Equal(w.t, http.StatusAccepted, resp.StatusCode, body)
}

// checksumOf renders a trace's checksum as gitlab-runner does.
func checksumOf(trace string) string {
	return fmt.Sprintf("crc32:%08x", crc32.ChecksumIEEE([]byte(trace)))
}

// finalUpdate is gitlab-runner's final PUT body for the state, with the checksum and bytesize of trace.
func finalUpdate(state, trace string) string {
	return fmt.Sprintf(`{"info":%s,"token":"{token}","state":"%s","output":{"checksum":"%s","bytesize":%d}}`,
		v4Info, state, checksumOf(trace), len(trace))
}

func cancelGracefully(w *conformanceWorld) { require.NoError(w.t, w.srv.CancelGracefully(w.id)) }
func cancelHard(w *conformanceWorld)       { require.NoError(w.t, w.srv.Cancel(w.id)) }

// finishJob reports the job a success without a checksum, as a setup.
func finishJob(w *conformanceWorld) {
	resp, body := w.send(http.MethodPut, jobs+"/{id}", jobHeader(), `{"token":"{token}","state":"success","output":{}}`)
	require.Equal(w.t, http.StatusOK, resp.StatusCode, body)
}

func v4State(t *testing.T, w *conformanceWorld) runnerapi.BuildState {
	t.Helper()
	info, ok := w.srv.Build(w.id)
	require.True(t, ok)
	return info.State
}

func v4ConformanceRows() []conformanceRow {
	const (
		denied     = `{"message":"403 Forbidden"}`
		notRunning = `{"message":"403 Forbidden - Job is not processing on runner"}`
		noToken    = `{"error":"token is missing"}`
	)
	registerBody := `{"description":"ci-1","maintenance_note":"rack 4","tag_list":"docker,linux","run_untagged":false,` +
		`"locked":true,"access_level":"ref_protected","maximum_timeout":3600,"paused":false,"info":` + v4Info +
		`,"token":"%s"}`
	var rows []conformanceRow

	// §2.1 POST /runners: 201 {id, token, token_expires_at}; 400 from Grape's validation; 403 with the service's
	// reason; 410 once registration tokens are disallowed (RegisterRunnerService, any token).
	rows = append(rows,
		conformanceRow{name: "register with the instance token, as gitlab-runner 17 does", method: "POST", path: runners4,
			header: runnerHeader(cfReg), body: fmt.Sprintf(registerBody, cfReg), status: 201,
			headers: map[string]string{"Content-Type": "application/json"},
			bodyRE:  `^\{"id":\d+,"token":"t1_[0-9a-f]{20}","token_expires_at":null\}$`,
			after: func(t *testing.T, w *conformanceWorld) {
				all := w.srv.Runners()
				last := all[len(all)-1]
				assert.Equal(t, []string{"docker", "linux"}, last.Tags)
				assert.Equal(t, "ci-1", last.Description)
				assert.Equal(t, "rack 4", last.MaintenanceNote)
				assert.Equal(t, "ref_protected", last.AccessLevel)
				assert.Equal(t, int64(3600), last.MaximumTimeout)
				assert.Equal(t, "gitlab-runner", last.Info.Name)
				assert.False(t, last.RunUntagged)
				assert.True(t, last.Locked)
				assert.False(t, last.Paused)
				assert.Zero(t, last.ProjectID)
			}},
		conformanceRow{name: "register with a project's runners token gives a project runner", method: "POST", path: runners4,
			header: runnerHeader(cfProject), body: `{"token":"` + cfProject + `"}`, status: 201,
			bodyRE: `"token":"t3_[0-9a-f]{20}"`,
			after: func(t *testing.T, w *conformanceWorld) {
				all := w.srv.Runners()
				assert.Equal(t, int64(7), all[len(all)-1].ProjectID)
			}},
		conformanceRow{name: "register paused", method: "POST", path: runners4, header: runnerHeader(cfReg),
			body: `{"token":"` + cfReg + `","paused":true}`, status: 201,
			after: func(t *testing.T, w *conformanceWorld) {
				all := w.srv.Runners()
				assert.True(t, all[len(all)-1].Paused)
			}},
		conformanceRow{name: "register with a token lifetime gives token_expires_at",
			opts:   []runnerapitest.Option{runnerapitest.WithRunnerTokenLifetime(72 * time.Hour)},
			method: "POST", path: runners4, header: runnerHeader(cfReg), body: `{"token":"` + cfReg + `"}`, status: 201,
			bodyRE: `"token_expires_at":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"`},
		conformanceRow{name: "register with a wrong token", method: "POST", path: runners4, header: runnerHeader("nope"),
			body: `{"token":"nope"}`, status: 403, wantBody: `{"message":"403 Forbidden - invalid token supplied"}`},
		conformanceRow{name: "register with the token in the header only", method: "POST", path: runners4,
			header: runnerHeader(cfReg), body: `{"description":"x"}`, status: 400, wantBody: noToken},
		conformanceRow{name: "register once registration tokens are disallowed: 410",
			opts:   []runnerapitest.Option{runnerapitest.WithoutRegistrationTokens()},
			method: "POST", path: runners4, header: runnerHeader(cfReg), body: `{"token":"` + cfReg + `"}`, status: 410,
			wantBody: `{"message":"410 Gone - runner registration disallowed"}`},
		conformanceRow{name: "register with any token once registration tokens are disallowed: 410",
			opts:   []runnerapitest.Option{runnerapitest.WithoutRegistrationTokens()},
			method: "POST", path: runners4, header: runnerHeader("nope"), body: `{"token":"nope"}`, status: 410},
		conformanceRow{name: "register a runner that could take no job", method: "POST", path: runners4,
			header: runnerHeader(cfReg), body: `{"token":"` + cfReg + `","run_untagged":false}`, status: 400,
			wantBody: `{"message":{"tags_list":["can not be empty when runner is not allowed to pick untagged jobs"]}}`},
		conformanceRow{name: "register with an unknown access_level", method: "POST", path: runners4,
			header: runnerHeader(cfReg), body: `{"token":"` + cfReg + `","access_level":"everyone"}`, status: 400,
			wantBody: `{"error":"access_level does not have a valid value"}`},
		conformanceRow{name: "register with both active and paused", method: "POST", path: runners4,
			header: runnerHeader(cfReg), body: `{"token":"` + cfReg + `","active":true,"paused":false}`, status: 400,
			wantBody: `{"error":"active, paused are mutually exclusive"}`},
	)

	// §2.2–2.5 verify, DELETE /runners, DELETE /runners/managers, reset_authentication_token.
	verifyBody := `{"token":"{runner4}","system_id":"s_fedcba987654","info":` + v4Info + `}`
	verifyManager := func(w *conformanceWorld) {
		resp, body := w.send(http.MethodPost, runners4+"/verify", runnerHeader(v4Runner), verifyBody)
		require.Equal(w.t, http.StatusOK, resp.StatusCode, body)
	}
	rows = append(rows,
		conformanceRow{name: "verify a runner created in the UI", method: "POST", path: runners4 + "/verify",
			header: runnerHeader(v4Runner), body: verifyBody, status: 200,
			bodyRE: `^\{"id":\d+,"token":"` + v4Runner + `","token_expires_at":null\}$`,
			after: func(t *testing.T, w *conformanceWorld) {
				r, ok := w.srv.Runner(v4Runner)
				require.True(t, ok)
				assert.Equal(t, []string{"s_0123456789ab", "s_fedcba987654"}, r.SystemIDs)
				assert.True(t, r.Features["cancel_gracefully"])
				assert.False(t, r.Features["proxy"])
				assert.Equal(t, "17.0.0", r.Info.Version)
			}},
		conformanceRow{name: "verify a token that expires", setup: func(w *conformanceWorld) {
			w.srv.AddRunner("glrt-expiring", runnerapitest.RunnerTokenExpiresAt(time.Date(2099, 1, 2, 3, 4, 5, 0, time.UTC)))
		},
			method: "POST", path: runners4 + "/verify", header: runnerHeader("glrt-expiring"), body: `{"token":"glrt-expiring"}`,
			status: 200, bodyRE: `"token_expires_at":"2099-01-02T03:04:05.000Z"`},
		conformanceRow{name: "verify an expired token", setup: func(w *conformanceWorld) {
			w.srv.AddRunner("glrt-expired", runnerapitest.RunnerTokenExpiresAt(time.Now().Add(-time.Minute)))
		},
			method: "POST", path: runners4 + "/verify", header: runnerHeader("glrt-expired"), body: `{"token":"glrt-expired"}`,
			status: 403, wantBody: denied},
		conformanceRow{name: "verify an unknown token", method: "POST", path: runners4 + "/verify", header: runnerHeader("nope"),
			body: `{"token":"nope"}`, status: 403, wantBody: denied},
		conformanceRow{name: "verify reads the token parameter, not RUNNER-TOKEN", method: "POST", path: runners4 + "/verify",
			header: runnerHeader(v4Runner), body: `{"system_id":"s_1"}`, status: 400, wantBody: noToken},
		conformanceRow{name: "delete a runner", method: "DELETE", path: runners4, header: runnerHeader(v4Legacy),
			body: `{"token":"` + v4Legacy + `"}`, status: 204, wantBody: "-",
			after: func(t *testing.T, w *conformanceWorld) {
				_, ok := w.srv.Runner(v4Legacy)
				assert.False(t, ok)
				resp, _ := w.send(http.MethodPost, jobs+"/request", runnerHeader(v4Legacy), `{"token":"`+v4Legacy+`"}`)
				assert.Equal(t, http.StatusForbidden, resp.StatusCode, "a deleted runner's token is refused")
			}},
		conformanceRow{name: "delete an unknown runner", method: "DELETE", path: runners4, header: runnerHeader("nope"),
			body: `{"token":"nope"}`, status: 403, wantBody: denied},
		conformanceRow{name: "delete a runner manager", setup: verifyManager, method: "DELETE", path: runners4 + "/managers",
			header: runnerHeader(v4Runner), body: `{"token":"{runner4}","system_id":"s_fedcba987654"}`, status: 204, wantBody: "-",
			after: func(t *testing.T, w *conformanceWorld) {
				r, ok := w.srv.Runner(v4Runner)
				require.True(t, ok, "the runner stays")
				assert.Equal(t, []string{v4SystemID}, r.SystemIDs)
			}},
		conformanceRow{name: "delete an unknown runner manager", method: "DELETE", path: runners4 + "/managers",
			header: runnerHeader(v4Runner), body: `{"token":"{runner4}","system_id":"s_nothere"}`, status: 404,
			wantBody: `{"message":"404 Runner manager not found Not Found"}`},
		conformanceRow{name: "delete a runner manager without system_id", method: "DELETE", path: runners4 + "/managers",
			header: runnerHeader(v4Runner), body: `{"token":"{runner4}"}`, status: 400, wantBody: `{"error":"system_id is missing"}`},
		conformanceRow{name: "delete a runner manager of an unknown runner", method: "DELETE", path: runners4 + "/managers",
			header: runnerHeader("nope"), body: `{"token":"nope","system_id":"s_1"}`, status: 403, wantBody: denied},
		conformanceRow{name: "reset the token", method: "POST", path: runners4 + "/reset_authentication_token",
			header: runnerHeader(v4Legacy), body: `{"token":"` + v4Legacy + `"}`, status: 201,
			bodyRE: `^\{"token":"t1_[0-9a-f]{20}"\}$`,
			after: func(t *testing.T, w *conformanceWorld) {
				resp, _ := w.send(http.MethodPost, runners4+"/verify", runnerHeader(v4Legacy), `{"token":"`+v4Legacy+`"}`)
				assert.Equal(t, http.StatusForbidden, resp.StatusCode, "the old token is refused")
			}},
		conformanceRow{name: "reset a UI-created token keeps its kind", method: "POST", path: runners4 + "/reset_authentication_token",
			header: runnerHeader(v4Runner), body: `{"token":"{runner4}"}`, status: 201, bodyRE: `^\{"token":"glrt-t1_[0-9a-f]{20}"\}$`},
		conformanceRow{name: "reset with a token lifetime gives token_expires_at",
			opts:   []runnerapitest.Option{runnerapitest.WithRunnerTokenLifetime(time.Hour)},
			method: "POST", path: runners4 + "/reset_authentication_token", header: runnerHeader(v4Legacy),
			body: `{"token":"` + v4Legacy + `"}`, status: 201, keys: []string{"token", "token_expires_at"}},
		conformanceRow{name: "router discovery without a Job Router: 501", method: "GET", path: runners4 + "/router/discovery",
			header: http.Header{"Runner-Token": {"{runner4}"}, "User-Agent": {ua17}}, status: 501,
			wantBody: `{"message":"Job Router is not available. Please contact your administrator."}`},
		conformanceRow{name: "router discovery reads the Runner-Token header, not a parameter", method: "GET",
			path: runners4 + "/router/discovery?token={runner4}", status: 403, wantBody: denied},
		conformanceRow{name: "reset an unknown token", method: "POST", path: runners4 + "/reset_authentication_token",
			header: runnerHeader("nope"), body: `{"token":"nope"}`, status: 403, wantBody: denied},
	)

	// §3 POST /jobs/request: 201 the payload; 204 with X-GitLab-Last-Update; the echo of a current last_update; 204
	// for a paused runner (v1 said 404); 403 for an unknown token; 409 on a conflict, without X-GitLab-Last-Update.
	jobKeys := []string{"id", "token", "allow_git_fetch", "job_info", "git_info", "runner_info", "variables", "steps",
		"image", "services", "artifacts", "cache", "credentials", "dependencies", "features", "hooks"}
	rows = append(rows,
		conformanceRow{name: "request a job", setup: func(w *conformanceWorld) {
			w.srv.Enqueue(runnerapi.Build{Name: "second"})
		},
			method: "POST", path: jobs + "/request", header: runnerHeader(v4Runner), body: v4JobRequest, status: 201,
			headers: map[string]string{"Content-Type": "application/json"}, keys: jobKeys,
			bodyRE: `"job_info":\{"id":\d+,"name":"second"`},
		conformanceRow{name: "no job: 204 with the queue value", method: "POST", path: jobs + "/request",
			header: runnerHeader(v4Runner), body: v4JobRequest, status: 204, wantBody: "-",
			headersRE: map[string]string{"X-GitLab-Last-Update": lastUpdate32, "X-Request-Id": `^01[0-9A-HJKMNP-TV-Z]{24}$`},
			absent:    []string{"Gitlab-Ci-Builds-Polling"}},
		conformanceRow{name: "the current last_update is echoed at once", setup: func(w *conformanceWorld) {
			resp, _ := w.send(http.MethodPost, jobs+"/request", runnerHeader(v4Runner), v4JobRequest)
			w.vars["last"] = resp.Header.Get("X-GitLab-Last-Update")
		},
			method: "POST", path: jobs + "/request", header: runnerHeader(v4Runner), body: v4JobRequest, status: 204,
			headers: map[string]string{"X-GitLab-Last-Update": "{last}"}},
		conformanceRow{name: "a paused runner: 204 with the queue value", setup: enqueuePending, method: "POST",
			path: jobs + "/request", header: runnerHeader(v4Paused), body: `{"token":"` + v4Paused + `"}`, status: 204,
			headersRE: map[string]string{"X-GitLab-Last-Update": lastUpdate32}},
		conformanceRow{name: "request with an unknown token", setup: enqueuePending, method: "POST", path: jobs + "/request",
			header: runnerHeader("nope"), body: `{"token":"nope"}`, status: 403, wantBody: denied},
		conformanceRow{name: "request with an expired token", setup: func(w *conformanceWorld) {
			enqueuePending(w)
			w.srv.AddRunner("t1_expired", runnerapitest.RunnerTokenExpiresAt(time.Now().Add(-time.Second)))
		},
			method: "POST", path: jobs + "/request", header: runnerHeader("t1_expired"), body: `{"token":"t1_expired"}`,
			status: 403, wantBody: denied},
		conformanceRow{name: "a registered runner takes a job with its new token", setup: func(w *conformanceWorld) {
			enqueuePending(w)
			resp, body := w.send(http.MethodPost, runners4, runnerHeader(cfReg), `{"token":"`+cfReg+`"}`)
			require.Equal(w.t, http.StatusCreated, resp.StatusCode, body)
			var reg struct{ Token string }
			require.NoError(w.t, json.Unmarshal([]byte(body), &reg))
			w.vars["new"] = reg.Token
		},
			method: "POST", path: jobs + "/request", header: runnerHeader("{new}"), body: `{"token":"{new}","system_id":"r_abcdefghijkl"}`,
			status: 201,
			after: func(t *testing.T, w *conformanceWorld) {
				r, ok := w.srv.Runner(w.vars["new"])
				require.True(t, ok)
				assert.Equal(t, []string{"r_abcdefghijkl"}, r.SystemIDs)
				assert.False(t, r.LastContact.IsZero())
			}},
		conformanceRow{name: "request with RUNNER-TOKEN alone", method: "POST", path: jobs + "/request",
			header: runnerHeader(v4Runner), body: `{"info":{}}`, status: 400, wantBody: noToken},
		conformanceRow{name: "request over the rate limit: 429 without Retry-After", setup: func(w *conformanceWorld) {
			require.NoError(w.t, w.srv.ScriptFaults(runnerapitest.EndpointJobRequest, runnerapitest.FaultRateLimited))
		},
			method: "POST", path: jobs + "/request", header: runnerHeader(v4Runner), body: v4JobRequest, status: 429,
			wantBody: `{"message":{"error":"This endpoint has been requested too many times. Try again later."}}`,
			absent:   []string{"Retry-After"}},
		conformanceRow{name: "request that conflicts: 409", setup: func(w *conformanceWorld) {
			enqueuePending(w)
			require.NoError(w.t, w.srv.ScriptFaults(runnerapitest.EndpointJobRequest, runnerapitest.FaultConflict))
		},
			method: "POST", path: jobs + "/request", header: runnerHeader(v4Runner), body: v4JobRequest, status: 409,
			wantBody: `{"message":"409 Conflict"}`, absent: []string{"X-GitLab-Last-Update"}},
		conformanceRow{name: "long polling: a request with the current last_update is held, then 204 without a queue value",
			opts: []runnerapitest.Option{runnerapitest.WithLongPolling(20 * time.Millisecond)},
			setup: func(w *conformanceWorld) {
				resp, _ := w.send(http.MethodPost, jobs+"/request", runnerHeader(v4Runner), v4JobRequest)
				require.Equal(w.t, "yes", resp.Header.Get("Gitlab-Ci-Builds-Polling"))
				w.vars["last"] = resp.Header.Get("X-GitLab-Last-Update")
			},
			method: "POST", path: jobs + "/request", header: runnerHeader(v4Runner), body: v4JobRequest, status: 204,
			wantBody: "-", headers: map[string]string{"Gitlab-Ci-Builds-Polling": "yes"}, absent: []string{"X-GitLab-Last-Update"}},
		conformanceRow{name: "long polling: a body above 32 KiB is refused",
			opts:   []runnerapitest.Option{runnerapitest.WithLongPolling(time.Minute)},
			method: "POST", path: jobs + "/request", header: runnerHeader(v4Runner),
			body: `{"token":"{runner4}","pad":"` + strings.Repeat("x", 32<<10) + `"}`, status: 413},
		conformanceRow{name: "a job taken through v4 is not handed to v1", method: "POST", path: "/ci/api/v1/builds/register.json",
			setup: func(w *conformanceWorld) { w.srv.AddRunner(cfRunner) }, header: jsonHeader(ua111),
			body: `{"token":"` + cfRunner + `"}`, status: 204},
	)

	// §4 PUT /jobs/:id: the job token as the required token parameter; Job-Status on every answer; the body is the
	// status code; 202 with X-GitLab-Trace-Update-Interval until the trace matches the checksum.
	rows = append(rows,
		conformanceRow{name: "keep-alive", method: "PUT", path: jobs + "/{id}", header: jobHeader(),
			body: `{"info":` + v4Info + `,"token":"{token}","state":"running","output":{"checksum":"crc32:00000000"}}`, status: 200,
			wantBody: "200", headers: map[string]string{"Job-Status": "running"}, absent: []string{"X-GitLab-Trace-Update-Interval"},
			after: func(t *testing.T, w *conformanceWorld) { assert.Equal(t, runnerapi.StateRunning, v4State(t, w)) }},
		conformanceRow{name: "final update whose checksum matches the trace", setup: appendLine4, method: "PUT",
			path: jobs + "/{id}", header: jobHeader(), body: finalUpdate("success", v4Line), status: 200, wantBody: "200",
			headers: map[string]string{"Job-Status": "success"},
			after: func(t *testing.T, w *conformanceWorld) {
				info, _ := w.srv.Build(w.id)
				assert.Equal(t, runnerapi.StateSuccess, info.State)
				assert.Equal(t, checksumOf(v4Line), info.Job.Checksum)
				assert.Equal(t, int64(len(v4Line)), info.Job.Bytesize)
				assert.False(t, info.Job.ChecksumMismatch)
			}},
		conformanceRow{name: "final update before the trace has arrived: 202 with a backoff", method: "PUT",
			path: jobs + "/{id}", header: jobHeader(), body: finalUpdate("success", v4Line), status: 202, wantBody: "202",
			headers: map[string]string{"Job-Status": "running", "X-GitLab-Trace-Update-Interval": "1"},
			after: func(t *testing.T, w *conformanceWorld) {
				assert.Equal(t, runnerapi.StateRunning, v4State(t, w))
				resp, _ := w.send(http.MethodPut, jobs+"/{id}", jobHeader(), finalUpdate("success", v4Line))
				assert.Equal(t, "2", resp.Header.Get("X-GitLab-Trace-Update-Interval"), "the backoff doubles")
				appendLine4(w)
				resp, body := w.send(http.MethodPut, jobs+"/{id}", jobHeader(), finalUpdate("success", v4Line))
				assert.Equal(t, http.StatusOK, resp.StatusCode, body)
				assert.Equal(t, runnerapi.StateSuccess, v4State(t, w))
			}},
		conformanceRow{name: "retries are judged by the first attempt", setup: func(w *conformanceWorld) {
			resp, _ := w.send(http.MethodPut, jobs+"/{id}", jobHeader(), finalUpdate("failed", v4Line))
			require.Equal(w.t, http.StatusAccepted, resp.StatusCode)
			appendLine4(w)
		},
			method: "PUT", path: jobs + "/{id}", header: jobHeader(), body: finalUpdate("success", "something else"),
			status: 200, headers: map[string]string{"Job-Status": "failed"}},
		conformanceRow{name: "final updates held while the trace is persisted",
			opts: []runnerapitest.Option{runnerapitest.WithFinalUpdateHolds(1), runnerapitest.WithFinalUpdateInterval(3)}, setup: appendLine4,
			method: "PUT", path: jobs + "/{id}", header: jobHeader(), body: finalUpdate("success", v4Line), status: 202,
			headers: map[string]string{"X-GitLab-Trace-Update-Interval": "3"},
			after: func(t *testing.T, w *conformanceWorld) {
				resp, _ := w.send(http.MethodPut, jobs+"/{id}", jobHeader(), finalUpdate("success", v4Line))
				assert.Equal(t, http.StatusOK, resp.StatusCode)
				info, _ := w.srv.Build(w.id)
				assert.Equal(t, 1, info.Job.FinalUpdateRetries)
			}},
		conformanceRow{name: "a checksum that never matches is accepted after the accept timeout",
			opts: []runnerapitest.Option{runnerapitest.WithFinalUpdateAcceptTimeout(time.Nanosecond)}, setup: appendLine4,
			method: "PUT", path: jobs + "/{id}", header: jobHeader(), body: finalUpdate("success", "masked differently"),
			status: 200,
			after: func(t *testing.T, w *conformanceWorld) {
				info, _ := w.srv.Build(w.id)
				assert.True(t, info.Job.ChecksumMismatch)
				assert.Equal(t, runnerapi.StateSuccess, info.State)
			}},
		conformanceRow{name: "final update without a checksum", method: "PUT", path: jobs + "/{id}", header: jobHeader(),
			body:   `{"token":"{token}","state":"failed","failure_reason":"script_failure","exit_code":3,"output":{}}`,
			status: 200, headers: map[string]string{"Job-Status": "failed"},
			after: func(t *testing.T, w *conformanceWorld) {
				info, _ := w.srv.Build(w.id)
				assert.Equal(t, "script_failure", info.Job.FailureReason)
				assert.Equal(t, int64(3), info.Job.ExitCode)
			}},
		conformanceRow{name: "an unknown failure_reason is stored as unknown_failure", method: "PUT", path: jobs + "/{id}",
			header: jobHeader(), body: `{"token":"{token}","state":"failed","failure_reason":"cosmic_rays"}`, status: 200,
			after: func(t *testing.T, w *conformanceWorld) {
				info, _ := w.srv.Build(w.id)
				assert.Equal(t, "unknown_failure", info.Job.FailureReason)
			}},
		conformanceRow{name: "update with JOB-TOKEN alone fails validation", method: "PUT", path: jobs + "/{id}",
			header: jobHeader(), body: `{"state":"success"}`, status: 400, wantBody: noToken, absent: []string{"Job-Status"}},
		conformanceRow{name: "update with a wrong token: 403 without Job-Status", method: "PUT", path: jobs + "/{id}",
			header: jobHeader(), body: `{"token":"nope","state":"success"}`, status: 403, wantBody: denied, absent: []string{"Job-Status"}},
		conformanceRow{name: "update of an unknown job: 403, never 404", method: "PUT", path: jobs + "/999",
			header: jobHeader(), body: `{"token":"{token}","state":"success"}`, status: 403, wantBody: denied},
		conformanceRow{name: "update of a canceled job: 403 with Job-Status", setup: cancelHard, method: "PUT", path: jobs + "/{id}",
			header: jobHeader(), body: `{"token":"{token}","state":"success"}`, status: 403, wantBody: notRunning,
			headers: map[string]string{"Job-Status": "canceled"}},
		conformanceRow{name: "update of a finished job: 403 with Job-Status", setup: finishJob, method: "PUT", path: jobs + "/{id}",
			header: jobHeader(), body: `{"token":"{token}","state":"running"}`, status: 403, wantBody: notRunning,
			headers: map[string]string{"Job-Status": "success"}},
		conformanceRow{name: "update of an erased job",
			setup: func(w *conformanceWorld) {
				// Only a finished job can be erased (Ci::Build#erasable? requires complete?).
				finishJob(w)
				require.NoError(w.t, w.srv.Erase(w.id))
			},
			method: "PUT", path: jobs + "/{id}", header: jobHeader(), body: `{"token":"{token}","state":"success"}`,
			status: 403, wantBody: `{"message":"403 Forbidden - Job has been erased!"}`},
		conformanceRow{name: "update with an unknown state", method: "PUT", path: jobs + "/{id}", header: jobHeader(),
			body: `{"token":"{token}","state":"done"}`, status: 400, wantBody: "400", headers: map[string]string{"Job-Status": "running"}},
		conformanceRow{name: "the two-phase pending state is not served", method: "PUT", path: jobs + "/{id}", header: jobHeader(),
			body: `{"token":"{token}","state":"pending"}`, status: 400},
		conformanceRow{name: "update while canceling says canceling", setup: cancelGracefully, method: "PUT", path: jobs + "/{id}",
			header: jobHeader(), body: `{"token":"{token}","state":"running"}`, status: 200,
			headers: map[string]string{"Job-Status": "canceling"}},
		conformanceRow{name: "the final update of a canceling job cancels it, whatever it reports", setup: cancelGracefully,
			method: "PUT", path: jobs + "/{id}", header: jobHeader(), body: `{"token":"{token}","state":"success"}`, status: 200,
			headers: map[string]string{"Job-Status": "canceled"},
			after:   func(t *testing.T, w *conformanceWorld) { assert.Equal(t, runnerapi.StateCanceled, v4State(t, w)) }},
	)

	// §5 PATCH /jobs/:id/trace: only START is read; 202 with Job-Status, Range 0-N and the interval; 416 with Range
	// alone; 400 without Content-Range; 403 with Job-Status once the job is not executing.
	rows = append(rows,
		conformanceRow{name: "a part with an inclusive end", method: "PATCH", path: jobs + "/{id}/trace?debug_trace=false",
			header: traceHeader4("0-31"), body: v4Line, status: 202, wantBody: "-",
			headers: map[string]string{"Job-Status": "running", "Range": "0-32", "X-GitLab-Trace-Update-Interval": "30"},
			after: func(t *testing.T, w *conformanceWorld) {
				assert.Equal(t, v4Line, string(w.srv.Trace(w.id)))
				reqs := w.srv.Requests()
				last := reqs[len(reqs)-1]
				assert.Equal(t, runnerapitest.EndpointJobTrace, last.Endpoint)
				assert.Equal(t, "0-31", last.ContentRange)
			}},
		conformanceRow{name: "GitLab reads only START: v1's exclusive end is taken", method: "PATCH", path: jobs + "/{id}/trace",
			header: traceHeader4("0-32"), body: v4Line, status: 202, headers: map[string]string{"Range": "0-32"}},
		conformanceRow{name: "a strict server refuses an exclusive end",
			opts:   []runnerapitest.Option{runnerapitest.WithStrictContentRange()},
			method: "PATCH", path: jobs + "/{id}/trace", header: traceHeader4("0-32"), body: v4Line, status: 400,
			after: func(t *testing.T, w *conformanceWorld) { assert.Empty(t, w.srv.Trace(w.id)) }},
		conformanceRow{name: "the interval of a watched log", opts: []runnerapitest.Option{runnerapitest.WithTraceUpdateInterval(3)},
			method: "PATCH", path: jobs + "/{id}/trace", header: traceHeader4("0-31"), body: v4Line, status: 202,
			headers: map[string]string{"X-GitLab-Trace-Update-Interval": "3"}},
		conformanceRow{name: "a part not at the trace's length: 416 with Range alone", setup: appendLine4, method: "PATCH",
			path: jobs + "/{id}/trace", header: traceHeader4("0-31"), body: v4Line, status: 416,
			wantBody: `{"message":"416 Range Not Satisfiable"}`, headers: map[string]string{"Range": "0-32"},
			absent: []string{"Job-Status", "X-GitLab-Trace-Update-Interval"}},
		conformanceRow{name: "a part without Content-Range", method: "PATCH", path: jobs + "/{id}/trace",
			header: http.Header{"JOB-TOKEN": {"{token}"}}, body: v4Line, status: 400,
			wantBody: `{"message":"400 Missing header Content-Range"}`},
		conformanceRow{name: "a part with a wrong token", method: "PATCH", path: jobs + "/{id}/trace",
			header: http.Header{"JOB-TOKEN": {"nope"}, "Content-Range": {"0-31"}}, body: v4Line, status: 403, wantBody: denied},
		conformanceRow{name: "a token parameter wins over the header", method: "PATCH", path: jobs + "/{id}/trace?token={token}",
			header: http.Header{"JOB-TOKEN": {"nope"}, "Content-Range": {"0-31"}}, body: v4Line, status: 202},
		conformanceRow{name: "a part while canceling says canceling", setup: cancelGracefully, method: "PATCH",
			path: jobs + "/{id}/trace", header: traceHeader4("0-31"), body: v4Line, status: 202,
			headers: map[string]string{"Job-Status": "canceling"}},
		conformanceRow{name: "a part after a cancel: 403 with Job-Status", setup: cancelHard, method: "PATCH",
			path: jobs + "/{id}/trace", header: traceHeader4("0-31"), body: v4Line, status: 403, wantBody: notRunning,
			headers: map[string]string{"Job-Status": "canceled"}},
		conformanceRow{name: "a part after the final update: 403 with Job-Status", setup: finishJob, method: "PATCH",
			path: jobs + "/{id}/trace", header: traceHeader4("0-31"), body: v4Line, status: 403,
			headers: map[string]string{"Job-Status": "success"}},
		conformanceRow{name: "a part above the plan's log limit fails the job", opts: []runnerapitest.Option{runnerapitest.WithTraceSizeLimit(40)},
			setup: appendLine4, method: "PATCH", path: jobs + "/{id}/trace", header: traceHeader4("32-63"), body: v4Line,
			status: 403, wantBody: denied, absent: []string{"Job-Status"},
			after: func(t *testing.T, w *conformanceWorld) {
				info, _ := w.srv.Build(w.id)
				assert.Equal(t, runnerapi.StateFailed, info.State)
				assert.Equal(t, "trace_size_exceeded", info.Job.FailureReason)
				assert.Equal(t, int64(64), info.TraceSize, "the part was stored first")
			}},
		conformanceRow{name: "debug_trace on the first part marks the job", method: "PATCH",
			path: jobs + "/{id}/trace?debug_trace=true", header: traceHeader4("0-31"), body: v4Line, status: 202,
			after: func(t *testing.T, w *conformanceWorld) {
				info, _ := w.srv.Build(w.id)
				assert.True(t, info.Job.DebugTrace)
			}},
	)

	// §6 artifacts: upload with the query parameters and one file part (201, body 201; several per job, by type);
	// download with a job token.
	upload := func(query, content string) func(w *conformanceWorld) {
		return func(w *conformanceWorld) {
			resp, body := w.send(http.MethodPost, jobs+"/{id}/artifacts"+query, uploadHeader(), multipartFile(content))
			require.Equal(w.t, http.StatusCreated, resp.StatusCode, body)
		}
	}
	rows = append(rows,
		conformanceRow{name: "upload the archive", method: "POST",
			path: jobs + "/{id}/artifacts?artifact_format=zip&artifact_type=archive&expire_in=7d", header: uploadHeader(),
			body: multipartFile("zipbytes"), status: 201, wantBody: "201",
			after: func(t *testing.T, w *conformanceWorld) {
				a, ok := w.srv.JobArtifact(w.id, "archive")
				require.True(t, ok)
				assert.Equal(t, "artifacts.zip", a.Filename)
				assert.Equal(t, int64(8), a.Size)
				assert.Equal(t, "7d", a.ExpireIn)
				assert.Equal(t, "zip", a.Format)
				v1, ok := w.srv.Artifact(w.id)
				require.True(t, ok, "the archive is the build's artifacts file")
				assert.Equal(t, a, v1)
			}},
		conformanceRow{name: "upload a report beside the archive", setup: upload("", "zipbytes"), method: "POST",
			path: jobs + "/{id}/artifacts?artifact_format=gzip&artifact_type=junit", header: uploadHeader(),
			body: multipartFile("<testsuites/>"), status: 201,
			after: func(t *testing.T, w *conformanceWorld) {
				info, _ := w.srv.Build(w.id)
				assert.Equal(t, []string{"archive", "junit"}, info.Job.ArtifactTypes)
				a, ok := w.srv.JobArtifact(w.id, "junit")
				require.True(t, ok)
				assert.Equal(t, "gzip", a.Format)
			}},
		conformanceRow{name: "a second, different archive", setup: upload("", "zipbytes"), method: "POST",
			path: jobs + "/{id}/artifacts", header: uploadHeader(), body: multipartFile("other"), status: 400,
			wantBody: `{"message":"another artifact of the same type already exists"}`},
		conformanceRow{name: "the same archive again", setup: upload("", "zipbytes"), method: "POST",
			path: jobs + "/{id}/artifacts", header: uploadHeader(), body: multipartFile("zipbytes"), status: 201},
		conformanceRow{name: "upload of an unknown artifact_type", method: "POST", path: jobs + "/{id}/artifacts?artifact_type=pictures",
			header: uploadHeader(), body: multipartFile("x"), status: 400, wantBody: `{"error":"artifact_type does not have a valid value"}`},
		conformanceRow{name: "upload with a wrong token", method: "POST", path: jobs + "/{id}/artifacts",
			header: http.Header{"Content-Type": {cfMultipart}, "JOB-TOKEN": {"nope"}}, body: multipartFile("x"), status: 403, wantBody: denied},
		conformanceRow{name: "upload for a canceled job", setup: cancelHard, method: "POST", path: jobs + "/{id}/artifacts",
			header: uploadHeader(), body: multipartFile("x"), status: 403, headers: map[string]string{"Job-Status": "canceled"}},
		conformanceRow{name: "upload not smaller than the limit", opts: []runnerapitest.Option{runnerapitest.WithMaxArtifactSize(8)},
			method: "POST", path: jobs + "/{id}/artifacts", header: uploadHeader(), body: multipartFile("zipbytes"), status: 413,
			wantBody: `{"message":"file size has reached maximum size limit"}`},
		conformanceRow{name: "upload without a file", method: "POST", path: jobs + "/{id}/artifacts", header: uploadHeader(),
			body: multipartFile("", "expire_in", "1d"), status: 400, wantBody: `{"error":"file is missing"}`},
		conformanceRow{name: "upload with a file under another name", method: "POST", path: jobs + "/{id}/artifacts",
			header: uploadHeader(), body: strings.Replace(multipartFile("x"), `name="file"`, `name="archive"`, 1), status: 400},
		conformanceRow{name: "download with the job's own token", setup: storeArtifact, method: "GET", path: jobs + "/{id}/artifacts",
			header: http.Header{"JOB-TOKEN": {"{token}"}, "User-Agent": {ua17}}, status: 200, wantBody: "0123456789",
			headers: map[string]string{"Content-Type": "application/octet-stream",
				"Content-Disposition": `attachment; filename="artifacts.zip"; filename*=UTF-8''artifacts.zip`}},
		conformanceRow{name: "download of a finished job with its token", setup: func(w *conformanceWorld) {
			storeArtifact(w)
			finishJob(w)
		},
			method: "GET", path: jobs + "/{id}/artifacts", header: http.Header{"JOB-TOKEN": {"{token}"}}, status: 200},
		conformanceRow{name: "download of a byte range", setup: storeArtifact, method: "GET", path: jobs + "/{id}/artifacts",
			header: http.Header{"JOB-TOKEN": {"{token}"}, "Range": {"bytes=4-"}}, status: 206, wantBody: "456789"},
		conformanceRow{name: "download with a wrong token", setup: storeArtifact, method: "GET", path: jobs + "/{id}/artifacts",
			header: http.Header{"JOB-TOKEN": {"nope"}}, status: 403, wantBody: denied},
		conformanceRow{name: "download without a file", method: "GET", path: jobs + "/{id}/artifacts",
			header: http.Header{"JOB-TOKEN": {"{token}"}}, status: 404, wantBody: `{"message":"404 Not Found"}`},
		conformanceRow{name: "direct_download without object storage is served", setup: storeArtifact, method: "GET",
			path: jobs + "/{id}/artifacts?direct_download=true", header: http.Header{"JOB-TOKEN": {"{token}"}}, status: 200},
	)
	return rows
}

func TestV4Conformance(t *testing.T) {
	for _, row := range v4ConformanceRows() {
		t.Run(row.name, func(t *testing.T) {
			checkConformanceRow(t, newV4World(t, row.opts...), row)
		})
	}
}
