package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/runnerapi/runnerapi"
)

// overheadSystemID is the system_id both clients send when they ask for a v4 job.
const overheadSystemID = "s_0123456789ab"

// overheadCasesV4 are Jobs.Request and Jobs.Update through the SDK on the runner API v4, each beside the same
// request made by hand.
func overheadCasesV4(p childParams) ([]overheadCase, error) {
	sdk, err := runnerapi.NewClient(p.URL, runnerapi.WithAPI(runnerapi.APIv4), runnerapi.WithRunnerToken(p.RunnerToken),
		runnerapi.WithBuildToken(p.BuildToken), runnerapi.WithHTTPClient(&http.Client{Transport: benchTransport()}))
	if err != nil {
		return nil, err
	}
	hand := &handClientV4{hc: &http.Client{Transport: benchTransport()}, base: strings.TrimRight(p.URL, "/") + "/api/v4/",
		runnerToken: p.RunnerToken, jobToken: p.BuildToken}
	ropts := &runnerapi.JobRequestOptions{SystemID: overheadSystemID, Info: overheadInfo}
	uopts := &runnerapi.JobUpdateOptions{State: runnerapi.StateRunning}
	return []overheadCase{
		{Call: "v4 Jobs.Request", Client: overheadSDK, SDK: true, run: func(ctx context.Context) error {
			j, _, err := sdk.Jobs.Request(ctx, ropts)
			if err == nil && (j == nil || j.ID == 0) {
				err = errors.New("request: no job")
			}
			return err
		}},
		{Call: "v4 Jobs.Request", Client: overheadHand, Ref: true, run: func(ctx context.Context) error {
			j, err := hand.request(ctx)
			if err == nil && j.ID == 0 {
				err = errors.New("request: no job")
			}
			return err
		}},
		{Call: "v4 Jobs.Update", Client: overheadSDK, SDK: true, run: func(ctx context.Context) error {
			_, _, err := sdk.Jobs.Update(ctx, overheadBuildID, uopts)
			return err
		}},
		{Call: "v4 Jobs.Update", Client: overheadHand, Ref: true, run: func(ctx context.Context) error {
			return hand.update(ctx, overheadBuildID, "running")
		}},
	}, nil
}

// handClientV4 is what a runner author writes for the runner API v4 without the SDK: net/http and encoding/json,
// JSON bodies as gitlab-runner sends them, and no retries.
type handClientV4 struct {
	hc          *http.Client
	base        string
	runnerToken string
	jobToken    string
}

// handJob is the hand-written client's view of a v4 job: the fields a runner reads, in plain types.
type handJob struct {
	ID            int64  `json:"id"`
	Token         string `json:"token"`
	AllowGitFetch bool   `json:"allow_git_fetch"`
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
		Depth     int      `json:"depth"`
	} `json:"git_info"`
	RunnerInfo struct {
		Timeout int64 `json:"timeout"`
	} `json:"runner_info"`
	Variables []struct {
		Key    string `json:"key"`
		Value  string `json:"value"`
		Public bool   `json:"public"`
		Masked bool   `json:"masked"`
		File   bool   `json:"file"`
		Raw    bool   `json:"raw"`
	} `json:"variables"`
	Steps []struct {
		Name         string   `json:"name"`
		Script       []string `json:"script"`
		Timeout      int64    `json:"timeout"`
		When         string   `json:"when"`
		AllowFailure bool     `json:"allow_failure"`
	} `json:"steps"`
	Image struct {
		Name string `json:"name"`
	} `json:"image"`
	Services []struct {
		Name string `json:"name"`
	} `json:"services"`
	Artifacts []struct {
		Name           string   `json:"name"`
		Untracked      bool     `json:"untracked"`
		Paths          []string `json:"paths"`
		When           string   `json:"when"`
		ExpireIn       string   `json:"expire_in"`
		ArtifactType   string   `json:"artifact_type"`
		ArtifactFormat string   `json:"artifact_format"`
	} `json:"artifacts"`
	Cache []struct {
		Key       string   `json:"key"`
		Untracked bool     `json:"untracked"`
		Paths     []string `json:"paths"`
		Policy    string   `json:"policy"`
		When      string   `json:"when"`
	} `json:"cache"`
	Dependencies []json.RawMessage `json:"dependencies"`
	Credentials  []struct {
		Type     string `json:"type"`
		URL      string `json:"url"`
		Username string `json:"username"`
		Password string `json:"password"`
	} `json:"credentials"`
	Features map[string]any `json:"features"`
}

func (h *handClientV4) newJSON(ctx context.Context, method, path string, body any) (*http.Request, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, h.base+path, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", runnerapi.DefaultUserAgent)
	return req, nil
}

func (h *handClientV4) request(ctx context.Context) (*handJob, error) {
	type info struct {
		Name         string `json:"name"`
		Version      string `json:"version"`
		Revision     string `json:"revision"`
		Platform     string `json:"platform"`
		Architecture string `json:"architecture"`
	}
	body := struct {
		Token    string `json:"token"`
		SystemID string `json:"system_id"`
		Info     info   `json:"info"`
	}{h.runnerToken, overheadSystemID, info{overheadInfo.Name, overheadInfo.Version, overheadInfo.Revision,
		overheadInfo.Platform, overheadInfo.Architecture}}
	req, err := h.newJSON(ctx, http.MethodPost, "jobs/request", body)
	if err != nil {
		return nil, err
	}
	// gitlab-runner also sends the runner token as a header, which proxies may route on.
	req.Header.Set("Runner-Token", h.runnerToken)
	var j handJob
	if err := doCreated(h.hc, req, &j, "request"); err != nil {
		return nil, err
	}
	return &j, nil
}

func (h *handClientV4) update(ctx context.Context, id int64, state string) error {
	req, err := h.newJSON(ctx, http.MethodPut, "jobs/"+strconv.FormatInt(id, 10), struct {
		Token  string   `json:"token"`
		State  string   `json:"state"`
		Output struct{} `json:"output"` // the trace's checksum and size, which a keep-alive has none of yet
	}{Token: h.jobToken, State: state})
	if err != nil {
		return err
	}
	req.Header.Set("JOB-TOKEN", h.jobToken)
	resp, err := h.hc.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("update: status %s", resp.Status)
	}
	return nil
}
