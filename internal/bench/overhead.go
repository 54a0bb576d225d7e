package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/runnerapi/runnerapi"
)

// overheadRun is one testing.Benchmark result of one call through one client.
type overheadRun struct {
	Call        string `json:"call"`
	Client      string `json:"client"`
	Round       int    `json:"round"`
	N           int    `json:"n"`
	NsPerOp     int64  `json:"ns_per_op"`
	AllocsPerOp int64  `json:"allocs_per_op"`
	BytesPerOp  int64  `json:"bytes_per_op"`
}

// overheadCase is one call made by one client, b.N times. Its error, if any, fails the scenario.
type overheadCase struct {
	Call, Client string
	Ref          bool // the hand-written client, the reference
	SDK          bool
	run          func(ctx context.Context) error
}

// overheadInfo is the runner description both clients send on register.
var overheadInfo = runnerapi.RunnerInfo{Name: "bench-runner", Version: "1.0.0", Revision: "0123abcd", Platform: "linux", Architecture: "amd64"}

// overheadBuildID is the build the Update calls address.
const overheadBuildID = 4242

// overheadCases are the calls of the overhead scenario, v1's then v4's (overhead_v4.go), in the order they alternate within a round.
func overheadCases(p childParams) ([]overheadCase, error) {
	sdk, err := runnerapi.NewClient(p.URL, runnerapi.WithRunnerToken(p.RunnerToken),
		runnerapi.WithHTTPClient(&http.Client{Transport: benchTransport()}))
	if err != nil {
		return nil, err
	}
	hand := newHandClient(p.URL, p.RunnerToken)
	ropts := &runnerapi.RegisterOptions{Info: overheadInfo}
	uopts := &runnerapi.UpdateOptions{State: runnerapi.StateRunning}
	cases := []overheadCase{
		{Call: "Register", Client: overheadSDK, SDK: true, run: func(ctx context.Context) error {
			b, _, err := sdk.Builds.Register(ctx, ropts)
			if err == nil && (b == nil || b.ID == 0) {
				err = errors.New("register: no build")
			}
			return err
		}},
		{Call: "Register", Client: overheadHand, Ref: true, run: func(ctx context.Context) error {
			b, err := hand.register(ctx)
			if err == nil && b.ID == 0 {
				err = errors.New("register: no build")
			}
			return err
		}},
		{Call: "Update", Client: overheadSDK, SDK: true, run: func(ctx context.Context) error {
			_, err := sdk.Builds.Update(ctx, overheadBuildID, uopts)
			return err
		}},
		{Call: "Update", Client: overheadHand, Ref: true, run: func(ctx context.Context) error {
			return hand.update(ctx, overheadBuildID, "running")
		}},
	}
	v4, err := overheadCasesV4(p)
	if err != nil {
		return nil, err
	}
	return append(cases, v4...), nil
}

// childOverhead measures every overhead case with testing.Benchmark, alternating the cases within each round.
func childOverhead(ctx context.Context, p childParams) (childOutput, error) {
	testing.Init()
	if err := flag.Set("test.benchtime", p.BenchTime); err != nil {
		return childOutput{}, fmt.Errorf("benchtime %q: %w", p.BenchTime, err)
	}
	cases, err := overheadCases(p)
	if err != nil {
		return childOutput{}, err
	}
	var out childOutput
	for round := 0; round < p.Runs; round++ {
		for _, c := range cases {
			var (
				once     sync.Once
				firstErr error
			)
			res := testing.Benchmark(func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if err := c.run(ctx); err != nil {
						once.Do(func() { firstErr = err })
						return
					}
				}
			})
			if firstErr != nil {
				return childOutput{}, fmt.Errorf("%s through %s: %w", c.Call, c.Client, firstErr)
			}
			if res.N == 0 {
				return childOutput{}, fmt.Errorf("%s through %s: benchmark did not run", c.Call, c.Client)
			}
			out.Overhead = append(out.Overhead, overheadRun{Call: c.Call, Client: c.Client, Round: round, N: res.N,
				NsPerOp: res.NsPerOp(), AllocsPerOp: res.AllocsPerOp(), BytesPerOp: res.AllocedBytesPerOp()})
		}
	}
	return out, nil
}

// handClient is what a runner author writes without the SDK: net/http and encoding/json, the same form fields
// and headers as the SDK, and no retries.
type handClient struct {
	hc          *http.Client
	base        string
	runnerToken string
}

// handBuild is the hand-written client's view of a build: the protocol's fields in plain types.
type handBuild struct {
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

func newHandClient(base, runnerToken string) *handClient {
	return &handClient{hc: &http.Client{Transport: benchTransport()}, base: strings.TrimRight(base, "/") + "/ci/api/v1/", runnerToken: runnerToken}
}

func (h *handClient) newForm(ctx context.Context, method, path string, form url.Values) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, h.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", runnerapi.DefaultUserAgent)
	return req, nil
}

func (h *handClient) register(ctx context.Context) (*handBuild, error) {
	form := url.Values{
		"token":              {h.runnerToken},
		"info[name]":         {overheadInfo.Name},
		"info[version]":      {overheadInfo.Version},
		"info[revision]":     {overheadInfo.Revision},
		"info[platform]":     {overheadInfo.Platform},
		"info[architecture]": {overheadInfo.Architecture},
	}
	req, err := h.newForm(ctx, http.MethodPost, "builds/register", form)
	if err != nil {
		return nil, err
	}
	var b handBuild
	if err := doCreated(h.hc, req, &b, "register"); err != nil {
		return nil, err
	}
	return &b, nil
}

// doCreated sends req, as a hand-written client would, and decodes its 201 answer into v; what names the call in
// errors. The body is read to its end so that the connection is reused.
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

func (h *handClient) update(ctx context.Context, id int64, state string) error {
	form := url.Values{"token": {h.runnerToken}, "state": {state}}
	req, err := h.newForm(ctx, http.MethodPut, "builds/"+strconv.FormatInt(id, 10), form)
	if err != nil {
		return err
	}
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
