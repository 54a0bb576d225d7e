// Package handwritten is what a runner's author writes for the CI Builds API v1 and the runner API v4 without the
// SDK: net/http and encoding/json, the form fields, JSON bodies and headers the SDK sends, plain structs for the
// answers, and no retries. It is the reference the SDK's per-call overhead is measured against, by the benchmark
// harness (internal/bench) and by the tests of the SDK's allocations, which must measure the same client.
package handwritten

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Info is the runner's description that a register or a job request sends.
type Info struct {
	Name         string `json:"name"`
	Version      string `json:"version"`
	Revision     string `json:"revision"`
	Platform     string `json:"platform"`
	Architecture string `json:"architecture"`
}

// Client calls the CI Builds API v1 at Base, the coordinator's root URL.
type Client struct {
	HTTP        *http.Client
	Base        string
	RunnerToken string
	UserAgent   string
	Info        Info
}

// Build is the client's view of a build: the protocol's fields in plain types.
type Build struct {
	ID          int64  `json:"id"`
	Ref         string `json:"ref"`
	Tag         bool   `json:"tag"`
	SHA         string `json:"sha"`
	BeforeSHA   string `json:"before_sha"`
	Status      string `json:"status"`
	Name        string `json:"name"`
	Stage       string `json:"stage"`
	Token       string `json:"token"`
	ProjectID   int64  `json:"project_id"`
	ProjectName string `json:"project_name"`
	RepoURL     string `json:"repo_url"`
	Commands    string `json:"commands"`
	AllowFetch  bool   `json:"allow_git_fetch"`
	Timeout     int64  `json:"timeout"`
	Variables   []struct {
		Key    string `json:"key"`
		Value  string `json:"value"`
		Public bool   `json:"public"`
	} `json:"variables"`
	Options struct {
		Image     string   `json:"image"`
		Services  []string `json:"services"`
		Artifacts struct {
			Name      string   `json:"name"`
			Untracked bool     `json:"untracked"`
			Paths     []string `json:"paths"`
			When      string   `json:"when"`
			ExpireIn  string   `json:"expire_in"`
		} `json:"artifacts"`
		Cache struct {
			Key       string   `json:"key"`
			Untracked bool     `json:"untracked"`
			Paths     []string `json:"paths"`
		} `json:"cache"`
		Dependencies []string        `json:"dependencies"`
		AfterScript  []string        `json:"after_script"`
		Environment  json.RawMessage `json:"environment"`
	} `json:"options"`
	DependsOnBuilds []json.RawMessage `json:"depends_on_builds"`
	ArtifactsFile   struct {
		Filename string `json:"filename"`
		Size     int64  `json:"size"`
	} `json:"artifacts_file"`
	Credentials []struct {
		Type     string `json:"type"`
		URL      string `json:"url"`
		Username string `json:"username"`
		Password string `json:"password"`
	} `json:"credentials"`
}

func (c *Client) newForm(ctx context.Context, method, path string, form url.Values) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.Base, "/")+"/ci/api/v1/"+path, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.UserAgent)
	return req, nil
}

// Register asks for a build (POST builds/register).
func (c *Client) Register(ctx context.Context) (*Build, error) {
	form := url.Values{
		"token":              {c.RunnerToken},
		"info[name]":         {c.Info.Name},
		"info[version]":      {c.Info.Version},
		"info[revision]":     {c.Info.Revision},
		"info[platform]":     {c.Info.Platform},
		"info[architecture]": {c.Info.Architecture},
	}
	req, err := c.newForm(ctx, http.MethodPost, "builds/register", form)
	if err != nil {
		return nil, err
	}
	var b Build
	if err := doCreated(c.HTTP, req, &b, "register"); err != nil {
		return nil, err
	}
	return &b, nil
}

// Update sets the state of build id (PUT builds/:id).
func (c *Client) Update(ctx context.Context, id int64, state string) error {
	form := url.Values{"token": {c.RunnerToken}, "state": {state}}
	req, err := c.newForm(ctx, http.MethodPut, "builds/"+strconv.FormatInt(id, 10), form)
	if err != nil {
		return err
	}
	return doOK(c.HTTP, req, "update")
}

// ClientV4 calls the runner API v4 at Base, the coordinator's root URL, with JSON bodies as gitlab-runner sends
// them.
type ClientV4 struct {
	HTTP        *http.Client
	Base        string
	RunnerToken string
	JobToken    string
	SystemID    string
	UserAgent   string
	Info        Info
}

// Job is the client's view of a v4 job: the fields a runner reads, in plain types.
type Job struct {
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

func (c *ClientV4) newJSON(ctx context.Context, method, path string, body any) (*http.Request, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.Base, "/")+"/api/v4/"+path, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.UserAgent)
	return req, nil
}

// Request asks for a job (POST jobs/request).
func (c *ClientV4) Request(ctx context.Context) (*Job, error) {
	body := struct {
		Token    string `json:"token"`
		SystemID string `json:"system_id"`
		Info     Info   `json:"info"`
	}{c.RunnerToken, c.SystemID, c.Info}
	req, err := c.newJSON(ctx, http.MethodPost, "jobs/request", body)
	if err != nil {
		return nil, err
	}
	// gitlab-runner also sends the runner token as a header, which proxies may route on.
	req.Header.Set("Runner-Token", c.RunnerToken)
	var j Job
	if err := doCreated(c.HTTP, req, &j, "request"); err != nil {
		return nil, err
	}
	return &j, nil
}

// Update sets the state of job id (PUT jobs/:id).
func (c *ClientV4) Update(ctx context.Context, id int64, state string) error {
	req, err := c.newJSON(ctx, http.MethodPut, "jobs/"+strconv.FormatInt(id, 10), struct {
		Token  string   `json:"token"`
		State  string   `json:"state"`
		Output struct{} `json:"output"` // the trace's checksum and size, which a keep-alive has none of yet
	}{Token: c.JobToken, State: state})
	if err != nil {
		return err
	}
	req.Header.Set("JOB-TOKEN", c.JobToken)
	return doOK(c.HTTP, req, "update")
}

// doCreated sends req and decodes its 201 answer into v; what names the call in errors. The body is read to its
// end so that the connection is reused.
func doCreated(hc *http.Client, req *http.Request, v any, what string) error {
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		_, _ = io.Copy(io.Discard, resp.Body)
		return fmt.Errorf("%s: status %s", what, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return nil
}

// doOK sends req and wants a 200, its body read to its end.
func doOK(hc *http.Client, req *http.Request, what string) error {
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: status %s", what, resp.Status)
	}
	return nil
}
