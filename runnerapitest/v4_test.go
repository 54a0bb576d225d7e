package runnerapitest_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/runnerapi/runnerapi"
	rt "github.com/runnerapi/runnerapi/runnerapitest"
)

// v4Job is the part of the v4 job payload these tests read, in gitlab-runner's spec.Job shape.
type v4Job struct {
	ID            int64 `json:"id"`
	Token         string
	AllowGitFetch bool `json:"allow_git_fetch"`
	JobInfo       struct {
		ID          int64  `json:"id"`
		Name        string `json:"name"`
		Stage       string `json:"stage"`
		ProjectID   int64  `json:"project_id"`
		ProjectName string `json:"project_name"`
	} `json:"job_info"`
	GitInfo struct {
		RepoURL   string   `json:"repo_url"`
		Ref       string   `json:"ref"`
		SHA       string   `json:"sha"`
		BeforeSHA string   `json:"before_sha"`
		RefType   string   `json:"ref_type"`
		Refspecs  []string `json:"refspecs"`
	} `json:"git_info"`
	RunnerInfo struct {
		Timeout int64 `json:"timeout"`
	} `json:"runner_info"`
	Variables []struct {
		Key    string `json:"key"`
		Value  string `json:"value"`
		Public bool   `json:"public"`
		Masked bool   `json:"masked"`
	} `json:"variables"`
	Steps []struct {
		Name         string   `json:"name"`
		Script       []string `json:"script"`
		Timeout      int64    `json:"timeout"`
		When         string   `json:"when"`
		AllowFailure bool     `json:"allow_failure"`
	} `json:"steps"`
	Image *struct {
		Name string `json:"name"`
	} `json:"image"`
	Services []struct {
		Name string `json:"name"`
	} `json:"services"`
	Artifacts []struct {
		Name           string   `json:"name"`
		Paths          []string `json:"paths"`
		When           string   `json:"when"`
		ExpireIn       string   `json:"expire_in"`
		ArtifactType   string   `json:"artifact_type"`
		ArtifactFormat string   `json:"artifact_format"`
	} `json:"artifacts"`
	Cache []struct {
		Key    string   `json:"key"`
		Paths  []string `json:"paths"`
		Policy string   `json:"policy"`
	} `json:"cache"`
	Credentials []struct {
		Type     string `json:"type"`
		Password string `json:"password"`
	} `json:"credentials"`
	Dependencies []struct {
		ID            int64  `json:"id"`
		Name          string `json:"name"`
		Token         string `json:"token"`
		ArtifactsFile *struct {
			Filename string `json:"filename"`
			Size     int64  `json:"size"`
		} `json:"artifacts_file"`
	} `json:"dependencies"`
	Features struct {
		TraceSections  bool     `json:"trace_sections"`
		FailureReasons []string `json:"failure_reasons"`
	} `json:"features"`
}

// requestJob takes a job through POST /api/v4/jobs/request for runner, advertising features.
func requestJob(t *testing.T, w *conformanceWorld, runner, features string) v4Job {
	t.Helper()
	body := `{"info":{"name":"gitlab-runner","version":"17.0.0","features":` + features + `},"token":"` + runner + `"}`
	resp, data := w.send(http.MethodPost, jobs+"/request", runnerHeader(runner), body)
	require.Equal(t, http.StatusCreated, resp.StatusCode, data)
	var job v4Job
	require.NoError(t, json.Unmarshal([]byte(data), &job))
	return job
}

func TestV4JobPayloadFromABuild(t *testing.T) {
	w := newV4World(t)
	dep := w.id
	_, err := w.srv.SetArtifact(dep, "artifacts.zip", strings.NewReader("0123456789"))
	require.NoError(t, err)
	finishJob(w)
	id := w.srv.Enqueue(runnerapi.Build{
		Name: "deploy", Stage: "deploy", Ref: "v1.2.0", Tag: true, ProjectID: 7, ProjectName: "project",
		Commands:  "make\n\nmake install",
		RepoURL:   "https://gitlab-ci-token:job-secret@gitlab.example.com/group/project.git",
		Timeout:   600,
		Variables: []runnerapi.Variable{{Key: "CI", Value: "true", Public: true}, {Key: "API_KEY", Value: "key-12345678"}},
		Options: runnerapi.Options{Image: "alpine:3", Services: []string{"redis:7"}, AfterScript: []string{"make clean"},
			Artifacts: runnerapi.ArtifactsOptions{Name: "bin", Paths: []string{"bin/"}, ExpireIn: "1 week"},
			Cache:     runnerapi.CacheOptions{Key: "deps", Paths: []string{"vendor/"}}},
		Credentials:     []runnerapi.Credential{{Type: "registry", URL: "registry.example.com", Username: "gitlab-ci-token", Password: "reg-pass"}},
		DependsOnBuilds: []runnerapi.DependentBuild{{ID: dep}, {ID: 12345, Name: "elsewhere", Token: "their-token"}},
	})
	job := requestJob(t, w, v4Runner, `{}`)
	build, _ := w.srv.Build(id)

	assert.Equal(t, id, job.ID)
	assert.Equal(t, build.Build.Token, job.Token, "the job token is the build token")
	assert.Equal(t, id, job.JobInfo.ID)
	assert.Equal(t, "deploy", job.JobInfo.Name)
	assert.Equal(t, "deploy", job.JobInfo.Stage)
	assert.Equal(t, int64(7), job.JobInfo.ProjectID)
	assert.Equal(t, "https://gitlab-ci-token:job-secret@gitlab.example.com/group/project.git", job.GitInfo.RepoURL)
	assert.Equal(t, "v1.2.0", job.GitInfo.Ref)
	assert.Equal(t, "tag", job.GitInfo.RefType)
	assert.Equal(t, build.Build.SHA, job.GitInfo.SHA)
	assert.Equal(t, build.Build.BeforeSHA, job.GitInfo.BeforeSHA)
	assert.Contains(t, job.GitInfo.Refspecs, "+refs/tags/v1.2.0:refs/tags/v1.2.0")
	assert.Equal(t, int64(600), job.RunnerInfo.Timeout)

	require.Len(t, job.Variables, 2)
	assert.True(t, job.Variables[0].Public)
	assert.False(t, job.Variables[0].Masked)
	assert.Equal(t, "key-12345678", job.Variables[1].Value)
	assert.True(t, job.Variables[1].Masked, "a variable that is not public is sent masked")

	require.Len(t, job.Steps, 2)
	assert.Equal(t, "script", job.Steps[0].Name)
	assert.Equal(t, []string{"make", "make install"}, job.Steps[0].Script, "one script line per command, blanks dropped")
	assert.Equal(t, "on_success", job.Steps[0].When)
	assert.Equal(t, int64(600), job.Steps[0].Timeout)
	assert.Equal(t, "after_script", job.Steps[1].Name)
	assert.Equal(t, []string{"make clean"}, job.Steps[1].Script)
	assert.Equal(t, "always", job.Steps[1].When)

	require.NotNil(t, job.Image)
	assert.Equal(t, "alpine:3", job.Image.Name)
	require.Len(t, job.Services, 1)
	assert.Equal(t, "redis:7", job.Services[0].Name)
	require.Len(t, job.Artifacts, 1)
	assert.Equal(t, "archive", job.Artifacts[0].ArtifactType)
	assert.Equal(t, "zip", job.Artifacts[0].ArtifactFormat)
	assert.Equal(t, []string{"bin/"}, job.Artifacts[0].Paths)
	assert.Equal(t, "on_success", job.Artifacts[0].When)
	assert.Equal(t, "1 week", job.Artifacts[0].ExpireIn)
	require.Len(t, job.Cache, 1)
	assert.Equal(t, "deps", job.Cache[0].Key)
	assert.Equal(t, "pull-push", job.Cache[0].Policy)
	require.Len(t, job.Credentials, 1)
	assert.Equal(t, "reg-pass", job.Credentials[0].Password)

	require.Len(t, job.Dependencies, 2)
	assert.Equal(t, dep, job.Dependencies[0].ID)
	assert.Equal(t, "rspec", job.Dependencies[0].Name)
	assert.Equal(t, job.Token, job.Dependencies[0].Token, "current GitLab sends the running job's own token")
	require.NotNil(t, job.Dependencies[0].ArtifactsFile)
	assert.Equal(t, "artifacts.zip", job.Dependencies[0].ArtifactsFile.Filename)
	assert.Equal(t, int64(10), job.Dependencies[0].ArtifactsFile.Size)
	assert.Equal(t, "their-token", job.Dependencies[1].Token, "a dependency not of this server is sent as given")
	assert.Nil(t, job.Dependencies[1].ArtifactsFile)

	assert.True(t, job.Features.TraceSections)
	assert.Contains(t, job.Features.FailureReasons, "script_failure")
	assert.Contains(t, job.Features.FailureReasons, "runner_system_failure")
	assert.NotContains(t, job.Features.FailureReasons, "image_pull_failure", "GitLab has no such reason; the runner maps it")

	info, _ := w.srv.Build(id)
	assert.True(t, info.Job.Taken)
	assert.Equal(t, runnerapi.StateRunning, info.State)
}

func TestV4JobWithoutOptionsHasEmptyListsAndNullImage(t *testing.T) {
	w := newV4World(t)
	w.srv.EnqueueCommands("plain", "true")
	resp, data := w.send(http.MethodPost, jobs+"/request", runnerHeader(v4Runner), `{"token":"{runner4}"}`)
	require.Equal(t, http.StatusCreated, resp.StatusCode, data)
	for _, want := range []string{`"image":null`, `"services":[]`, `"artifacts":null`, `"cache":[]`, `"credentials":[]`,
		`"dependencies":[]`, `"variables":[]`, `"hooks":[]`} {
		assert.Contains(t, data, want)
	}
}

func TestV4DependencyArtifactsWithTheRunningJobsToken(t *testing.T) {
	w := newV4World(t)
	dep := w.id
	_, err := w.srv.SetArtifact(dep, "artifacts.zip", strings.NewReader("0123456789"))
	require.NoError(t, err)
	finishJob(w)
	w.srv.Enqueue(runnerapi.Build{Name: "deploy", ProjectID: 7, DependsOnBuilds: []runnerapi.DependentBuild{{ID: dep}}})
	other := w.srv.Enqueue(runnerapi.Build{Name: "foreign", ProjectID: 8})
	job := requestJob(t, w, v4Runner, `{}`)
	foreign := requestJob(t, w, v4Legacy, `{}`)
	require.Equal(t, other, foreign.ID)

	download := func(token string) (*http.Response, string) {
		return w.send(http.MethodGet, jobs+"/"+itoa(dep)+"/artifacts", http.Header{"JOB-TOKEN": {token}, "User-Agent": {ua17}}, "")
	}
	resp, body := download(job.Dependencies[0].Token)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Equal(t, "0123456789", body)

	resp, _ = download(foreign.Token)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "a job of another project")

	resp, _ = w.send(http.MethodPut, jobs+"/"+itoa(job.ID), jobHeader(), `{"token":"`+job.Token+`","state":"success"}`)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp, _ = download(job.Token)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "the token of a job that no longer runs")
}

func TestV4ObjectStorageRedirectMustNotCarryTheToken(t *testing.T) {
	w := newV4World(t, rt.WithObjectStorage())
	_, err := w.srv.SetArtifact(w.id, "artifacts.zip", strings.NewReader("0123456789"))
	require.NoError(t, err)
	require.NotEmpty(t, w.srv.ObjectStorageURL())
	require.NotEqual(t, w.srv.URL, w.srv.ObjectStorageURL(), "another listener")

	noFollow := &http.Client{Transport: w.hc.Transport, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
	req, err := http.NewRequest(http.MethodGet, w.srv.URL+jobs+"/"+itoa(w.id)+"/artifacts?direct_download=true", nil)
	require.NoError(t, err)
	req.Header.Set("JOB-TOKEN", w.token)
	resp, err := noFollow.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusFound, resp.StatusCode)
	location := resp.Header.Get("Location")
	assert.True(t, strings.HasPrefix(location, w.srv.ObjectStorageURL()+"/"), location)
	assert.NotContains(t, location, w.token)

	// The Location is on another host: fetch it there, without the token, as a careful client does.
	get := func(header http.Header) (int, string) {
		req, err := http.NewRequest(http.MethodGet, location, nil)
		require.NoError(t, err)
		req.Header = header
		resp, err := w.hc.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(data)
	}
	status, body := get(http.Header{})
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, "0123456789", body)
	status, body = get(http.Header{"JOB-TOKEN": {w.token}})
	assert.Equal(t, http.StatusForbidden, status, "a token sent to object storage is refused")
	assert.Contains(t, body, "<Code>AccessDenied</Code>")

	// net/http copies a custom header such as JOB-TOKEN across a redirect: a client that lets it follow fails here.
	req, err = http.NewRequest(http.MethodGet, w.srv.URL+jobs+"/"+itoa(w.id)+"/artifacts?direct_download=true", nil)
	require.NoError(t, err)
	req.Header.Set("JOB-TOKEN", w.token)
	resp, err = w.hc.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)

	var storage []rt.Request
	for _, r := range w.srv.Requests() {
		if r.Endpoint == rt.EndpointObjectStorage {
			storage = append(storage, r)
		}
	}
	require.Len(t, storage, 3)
	assert.Equal(t, []int{200, 403, 403}, []int{storage[0].Status, storage[1].Status, storage[2].Status})
}

func TestV4LongPollingWakesWhenTheQueueChanges(t *testing.T) {
	w := newV4World(t, rt.WithLongPolling(time.Hour))
	resp, _ := w.send(http.MethodPost, jobs+"/request", runnerHeader(v4Runner), v4JobRequest)
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	w.vars["last"] = resp.Header.Get("X-GitLab-Last-Update")
	require.NotEmpty(t, w.vars["last"])

	type answer struct {
		resp *http.Response
		body string
	}
	held := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, w.srv.URL+jobs+"/request", strings.NewReader(w.expand(v4JobRequest)))
		req.Header.Set("Content-Type", cfJSON)
		resp, err := w.hc.Do(req)
		if err != nil {
			held <- answer{}
			return
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		held <- answer{resp, string(data)}
	}()
	waitUntil(t, "the request is held", func() bool { return rt.LongPollWaiters(w.srv) == 1 })
	id := w.srv.EnqueueCommands("woken", "true")

	a := <-held
	require.NotNil(t, a.resp)
	assert.Equal(t, http.StatusNoContent, a.resp.StatusCode, "Workhorse answers the change itself")
	assert.Empty(t, a.resp.Header.Values("X-GitLab-Last-Update"), "and sends no queue value")

	// The runner asks again with the value it kept: the queue differs, so Workhorse lets it through to Rails,
	// which hands the job out.
	resp, body := w.send(http.MethodPost, jobs+"/request", runnerHeader(v4Runner), v4JobRequest)
	require.Equal(t, http.StatusCreated, resp.StatusCode, body)
	assert.Contains(t, body, `"id":`+itoa(id)+`,`)
}

func TestV4LongPollingEndsOnClose(t *testing.T) {
	w := newV4World(t, rt.WithLongPolling(time.Hour))
	resp, _ := w.send(http.MethodPost, jobs+"/request", runnerHeader(v4Runner), v4JobRequest)
	w.vars["last"] = resp.Header.Get("X-GitLab-Last-Update")
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, w.srv.URL+jobs+"/request", strings.NewReader(w.expand(v4JobRequest)))
		req.Header.Set("Content-Type", cfJSON)
		resp, err := w.hc.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	waitUntil(t, "the request is held", func() bool { return rt.LongPollWaiters(w.srv) == 1 })
	w.srv.Close()
	<-done
	assert.Zero(t, rt.LongPollWaiters(w.srv))
}

func TestV4CancelGracefullyNeedsTheFeature(t *testing.T) {
	w := newV4World(t)
	info, _ := w.srv.Build(w.id)
	require.True(t, info.Job.CancelGracefully, "the world's runner advertised cancel_gracefully")

	id := w.srv.EnqueueCommands("no-feature", "true")
	requestJob(t, w, v4Legacy, `{"cancel_gracefully":false}`)
	require.NoError(t, w.srv.CancelGracefully(id))
	info, _ = w.srv.Build(id)
	assert.Equal(t, runnerapi.StateCanceled, info.State, "a runner that cannot cancel gracefully is canceled at once")

	require.NoError(t, w.srv.CancelGracefully(w.id))
	info, _ = w.srv.Build(w.id)
	assert.Equal(t, runnerapi.BuildState("canceling"), info.State)
	require.NoError(t, w.srv.Cancel(w.id), "Cancel forces a canceling job")
	info, _ = w.srv.Build(w.id)
	assert.Equal(t, runnerapi.StateCanceled, info.State)
	assert.Error(t, w.srv.CancelGracefully(w.id), "already finished")
	assert.Error(t, w.srv.CancelGracefully(999))
}

func TestV4CancelGracefullyOfAV1BuildCancels(t *testing.T) {
	e := newFakeEnv(t)
	id := e.srv.Enqueue(runnerapi.Build{})
	e.take(fakeRunnerToken)
	require.NoError(t, e.srv.CancelGracefully(id))
	info, _ := e.srv.Build(id)
	assert.Equal(t, runnerapi.StateCanceled, info.State)
}

func TestV4WaitFinishedSeesTheFinalUpdate(t *testing.T) {
	w := newV4World(t)
	appendLine4(w)
	resp, body := w.send(http.MethodPut, jobs+"/{id}", jobHeader(), finalUpdate("failed", v4Line))
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	ctx := t.Context()
	state, err := w.srv.WaitFinished(ctx, w.id)
	require.NoError(t, err)
	assert.Equal(t, runnerapi.StateFailed, state)
	info, _ := w.srv.Build(w.id)
	assert.Equal(t, "unknown_failure", info.Job.FailureReason, "no reason given")
}

func TestV4FaultsApplyToTheV4Endpoints(t *testing.T) {
	w := newV4World(t)
	require.NoError(t, w.srv.ScriptFaults(rt.EndpointJobRequest, rt.FaultInternalError, rt.FaultConflict))
	require.NoError(t, w.srv.ScriptFaults(rt.EndpointJobUpdate, rt.FaultServiceUnavailable))
	require.NoError(t, w.srv.ScriptFaults(rt.EndpointRunnersVerify, rt.FaultTooManyRequests))
	require.NoError(t, w.srv.ScriptFaults(rt.EndpointJobArtifactsUpload, rt.FaultBadGateway))
	require.NoError(t, w.srv.ScriptFaults(rt.EndpointJobArtifactsDownload, rt.FaultInternalError))

	resp, _ := w.send(http.MethodPost, jobs+"/request", runnerHeader(v4Runner), v4JobRequest)
	assert.Equal(t, http.StatusInternalServerError, resp.StatusCode)
	resp, _ = w.send(http.MethodPost, jobs+"/request", runnerHeader(v4Runner), v4JobRequest)
	assert.Equal(t, http.StatusConflict, resp.StatusCode)
	resp, _ = w.send(http.MethodPut, jobs+"/{id}", jobHeader(), `{"token":"{token}","state":"running"}`)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	resp, _ = w.send(http.MethodPost, runners4+"/verify", runnerHeader(v4Runner), `{"token":"{runner4}"}`)
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	resp, _ = w.send(http.MethodPost, jobs+"/{id}/artifacts", uploadHeader(), multipartFile("zip"))
	assert.Equal(t, http.StatusBadGateway, resp.StatusCode)
	_, ok := w.srv.Artifact(w.id)
	assert.False(t, ok, "not applied")
	resp, _ = w.send(http.MethodGet, jobs+"/{id}/artifacts", http.Header{"JOB-TOKEN": {"{token}"}}, "")
	assert.Equal(t, http.StatusInternalServerError, resp.StatusCode)

	// The trace faults apply to the v4 trace: a lost tail is answered 416 with the shorter length.
	appendLine4(w)
	require.NoError(t, w.srv.ScriptFaults(rt.EndpointJobTrace, rt.FaultLoseTraceTail))
	resp, _ = w.send(http.MethodPatch, jobs+"/{id}/trace", traceHeader4("32-34"), "ok\n")
	assert.Equal(t, http.StatusRequestedRangeNotSatisfiable, resp.StatusCode)
	assert.Less(t, len(w.srv.Trace(w.id)), len(v4Line))
	require.NoError(t, w.srv.ScriptFaults(rt.EndpointJobTrace, rt.FaultLateApply))

	assert.Error(t, w.srv.ScriptFaults(rt.EndpointJobUpdate, rt.FaultConflict), "409 is for job requests")
	assert.Error(t, w.srv.ScriptFaults(rt.EndpointJobUpdate, rt.FaultLoseTraceTail), "trace faults are for traces")

	counts := w.srv.FaultsInjected()
	assert.Equal(t, 2, counts[rt.FaultInternalError])
	assert.Equal(t, 1, counts[rt.FaultConflict])
	assert.Equal(t, 1, counts[rt.FaultLoseTraceTail])

	endpoints := map[rt.Endpoint]bool{}
	for _, r := range w.srv.Requests() {
		endpoints[r.Endpoint] = true
	}
	for _, ep := range []rt.Endpoint{rt.EndpointJobRequest, rt.EndpointJobUpdate, rt.EndpointJobTrace,
		rt.EndpointRunnersVerify, rt.EndpointJobArtifactsUpload, rt.EndpointJobArtifactsDownload} {
		assert.True(t, endpoints[ep], ep)
	}
}

func TestV4RandomFaultsForEveryEndpointReachV4(t *testing.T) {
	w := newV4World(t)
	require.NoError(t, w.srv.SetFaults(1, rt.FaultRule{Kind: rt.FaultConflict, Probability: 1}))
	resp, _ := w.send(http.MethodPost, jobs+"/request", runnerHeader(v4Runner), v4JobRequest)
	assert.Equal(t, http.StatusConflict, resp.StatusCode, "a rule for every endpoint reaches jobs/request")
	resp, _ = w.send(http.MethodPut, jobs+"/{id}", jobHeader(), `{"token":"{token}","state":"running"}`)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "and not the endpoints it makes no sense for")
}

// TestV4EndpointsLeaveTheV1StreamsAlone pins the first draws of the v1 update endpoint's stream for seed 42, as the
// server drew them before the v4 endpoints were added: the v4 endpoints go at the end of the list.
func TestV4EndpointsLeaveTheV1StreamsAlone(t *testing.T) {
	got := faultRun(t, 42, false)[:20]
	assert.Equal(t, v1UpdateStreamSeed42, got)
}

func TestV4LogsNoToken(t *testing.T) {
	var (
		buf bytes.Buffer
		mu  sync.Mutex
	)
	w := newV4World(t, rt.WithLogger(slogHandlerTo(&buf, &mu)))
	appendLine4(w)
	w.send(http.MethodPost, jobs+"/{id}/artifacts?artifact_type=archive", uploadHeader(), multipartFile("zip"))
	w.send(http.MethodGet, jobs+"/{id}/artifacts?token={token}", nil, "")
	w.send(http.MethodPut, jobs+"/{id}", jobHeader(), finalUpdate("success", v4Line))
	w.send(http.MethodPost, runners4+"/reset_authentication_token", runnerHeader(v4Runner), `{"token":"{runner4}"}`)
	w.send(http.MethodPost, runners4, runnerHeader(cfReg), `{"token":"`+cfReg+`"}`)
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	require.Contains(t, out, "/api/v4/jobs/")
	for _, secret := range []string{w.token, v4Runner, cfReg} {
		assert.NotContains(t, out, secret)
	}
	assert.NotContains(t, fmt.Sprintf("%+v %#v", w.srv, w.srv), w.token)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// v1UpdateStreamSeed42 is what faultRun(t, 42, false) drew first before the runner API v4 was served.
var v1UpdateStreamSeed42 = []rt.FaultKind{"429", "503", "503", "500", "503", "503", "", "500", "", "429", "503", "503",
	"", "500", "503", "", "500", "429", "", ""}

func TestV4EraseRemovesEveryUploadAndSetArtifactOnlyTheArchive(t *testing.T) {
	w := newV4World(t)
	resp, body := w.send(http.MethodPost, jobs+"/{id}/artifacts?artifact_type=junit&artifact_format=gzip", uploadHeader(), multipartFile("<x/>"))
	require.Equal(t, http.StatusCreated, resp.StatusCode, body)
	_, err := w.srv.SetArtifact(w.id, "artifacts.zip", strings.NewReader("zip"))
	require.NoError(t, err)
	_, ok := w.srv.JobArtifact(w.id, "junit")
	assert.True(t, ok, "SetArtifact replaces the archive only")
	r, err := w.srv.OpenJobArtifact(w.id, "junit")
	require.NoError(t, err)
	data, _ := io.ReadAll(r)
	r.Close()
	assert.Equal(t, "<x/>", string(data))

	finishJob(w) // only a finished job can be erased
	require.NoError(t, w.srv.Erase(w.id))
	_, ok = w.srv.JobArtifact(w.id, "junit")
	assert.False(t, ok)
	_, ok = w.srv.JobArtifact(w.id, "archive")
	assert.False(t, ok)
	info, _ := w.srv.Build(w.id)
	assert.Empty(t, info.Job.ArtifactTypes)
}

func TestV4UploadRedirectedToAnotherHost(t *testing.T) {
	w := newV4World(t, rt.WithUploadRedirect())
	require.NotEmpty(t, w.srv.UploadURL())
	post := func(base string) *http.Response {
		req, err := http.NewRequest(http.MethodPost, base+jobs+"/"+itoa(w.id)+"/artifacts?artifact_type=archive&expire_in=1d",
			strings.NewReader(multipartFile("zipbytes")))
		require.NoError(t, err)
		req.Header.Set("Content-Type", cfMultipart)
		req.Header.Set("JOB-TOKEN", w.token)
		noFollow := &http.Client{Transport: w.hc.Transport, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}}
		resp, err := noFollow.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp
	}
	resp := post(w.srv.URL)
	require.Equal(t, http.StatusTemporaryRedirect, resp.StatusCode)
	location := resp.Header.Get("Location")
	assert.Equal(t, w.srv.UploadURL()+jobs+"/"+itoa(w.id)+"/artifacts?artifact_type=archive&expire_in=1d", location)
	_, ok := w.srv.Artifact(w.id)
	assert.False(t, ok, "nothing stored by the redirect")

	// gitlab-runner takes the Location's scheme and host as its base URL and uploads again.
	resp = post(w.srv.UploadURL())
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	a, ok := w.srv.Artifact(w.id)
	require.True(t, ok)
	assert.Equal(t, int64(8), a.Size)
}

func TestV4ExtraListenersFollowTLSAndClose(t *testing.T) {
	srv := rt.NewUnstartedServer(rt.WithObjectStorage(), rt.WithUploadRedirect())
	srv.StartTLS()
	defer srv.Close()
	require.True(t, strings.HasPrefix(srv.ObjectStorageURL(), "https://"), srv.ObjectStorageURL())
	require.True(t, strings.HasPrefix(srv.UploadURL(), "https://"), srv.UploadURL())
	resp, err := srv.Client().Get(srv.ObjectStorageURL() + "/artifacts/nothing?X-Amz-Signature=x")
	require.NoError(t, err, "the server's client trusts the object storage too")
	resp.Body.Close()
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)

	unstarted := rt.NewUnstartedServer(rt.WithObjectStorage(), rt.WithUploadRedirect())
	unstarted.Close()
	plain := rt.NewServer()
	defer plain.Close()
	assert.Empty(t, plain.ObjectStorageURL(), "no object storage unless asked")
	assert.Empty(t, plain.UploadURL())
}

func TestV1AndV4RunnersShareOneQueue(t *testing.T) {
	w := newV4World(t)
	w.srv.AddRunner(cfRunner)
	const n = 24
	want := map[int64]bool{}
	for range n {
		want[w.srv.EnqueueCommands("shared", "true")] = true
	}
	var (
		mu  sync.Mutex
		got = map[int64]int{}
		wg  sync.WaitGroup
	)
	take := func(v4 bool) {
		defer wg.Done()
		for {
			var req *http.Request
			if v4 {
				req, _ = http.NewRequest(http.MethodPost, w.srv.URL+jobs+"/request", strings.NewReader(`{"token":"`+v4Runner+`"}`))
			} else {
				req, _ = http.NewRequest(http.MethodPost, w.srv.URL+"/ci/api/v1/builds/register.json",
					strings.NewReader(`{"token":"`+cfRunner+`"}`))
				req.Header.Set("User-Agent", ua111)
			}
			req.Header.Set("Content-Type", cfJSON)
			resp, err := w.hc.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			var b struct{ ID int64 }
			err = json.NewDecoder(resp.Body).Decode(&b)
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				return
			}
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			got[b.ID]++
			mu.Unlock()
		}
	}
	for i := range 6 {
		wg.Add(1)
		go take(i%2 == 0)
	}
	wg.Wait()
	require.Len(t, got, n)
	for id, times := range got {
		assert.True(t, want[id], id)
		assert.Equal(t, 1, times, "build %d handed out once", id)
	}
	var v4Jobs int
	for id := range want {
		info, _ := w.srv.Build(id)
		assert.Equal(t, runnerapi.StateRunning, info.State)
		if info.Job.Taken {
			v4Jobs++
		}
	}
	t.Logf("%d of %d builds went to the v4 runner", v4Jobs, n)
}
