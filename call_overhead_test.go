package runnerapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The per-call overhead of Register, Update and v4's Request and Update, measured over loopback against a server
// that allocates nothing per request: testing's allocation counts are the whole process's, so they are then the
// client's alone, as in the benchmark harness, whose server runs in another process. The answers are the
// harness's build and job (internal/bench: benchBuildJSON, benchJobJSON).

// cannedServer answers HTTP/1.1 requests on loopback with fixed bytes, chosen by method and path, reading each
// request into one buffer per connection: no allocation per request once a connection is open.
type cannedServer struct {
	ln      net.Listener
	answers map[string][]byte // "METHOD /path" without the build ID's digits, to the whole answer
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   []net.Conn
}

func newCannedServer(t testing.TB) *cannedServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &cannedServer{ln: ln, answers: map[string][]byte{
		"POST /ci/api/v1/builds/register": cannedAnswer("201 Created", "", overheadBuildJSON(t)),
		"PUT /ci/api/v1/builds/#":         cannedAnswer("200 OK", "", []byte("true")),
		"POST /api/v4/jobs/request":       cannedAnswer("201 Created", "", overheadJobJSON(t)),
		"PUT /api/v4/jobs/#":              cannedAnswer("200 OK", "Job-Status: running\r\n", []byte(`"OK"`)),
	}}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.close)
	return s
}

func cannedAnswer(status, header string, body []byte) []byte {
	head := "HTTP/1.1 " + status + "\r\nContent-Type: application/json\r\n" + header +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
	return append([]byte(head), body...)
}

func (s *cannedServer) url() string { return "http://" + s.ln.Addr().String() }

func (s *cannedServer) close() {
	_ = s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *cannedServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serve(c)
	}
}

// serve answers the requests of one connection until it closes or sends something it does not expect.
func (s *cannedServer) serve(c net.Conn) {
	defer s.wg.Done()
	defer c.Close()
	br := bufio.NewReaderSize(c, 64<<10)
	key := make([]byte, 0, 256)
	notFound := cannedAnswer("404 Not Found", "", []byte(`{"message":"404 Not Found"}`))
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return
		}
		// "METHOD /path HTTP/1.1": the key is method and path, a run of digits standing as "#".
		end := bytes.LastIndexByte(line, ' ')
		if end < 0 {
			return
		}
		key = key[:0]
		for i, b := range line[:end] {
			if '0' <= b && b <= '9' && i > 0 && line[i-1] == '/' {
				key = append(key, '#')
				continue
			}
			if '0' <= b && b <= '9' && len(key) > 0 && key[len(key)-1] == '#' {
				continue
			}
			key = append(key, b)
		}
		length := 0
		for {
			h, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(h) <= 2 {
				break
			}
			const cl = "content-length:"
			if len(h) > len(cl) && bytes.EqualFold(h[:len(cl)], []byte(cl)) {
				for _, b := range bytes.TrimSpace(h[len(cl):]) {
					length = length*10 + int(b-'0')
				}
			}
		}
		if _, err := br.Discard(length); err != nil {
			return
		}
		answer, ok := s.answers[string(key)]
		if !ok {
			answer = notFound
		}
		if _, err := c.Write(answer); err != nil {
			return
		}
	}
}

// overheadBuildJSON is the build the benchmark harness's server answers register with.
func overheadBuildJSON(t testing.TB) []byte {
	const token = "build-token-0123456789"
	vars := make([]map[string]any, 0, 12)
	for i := range 12 {
		vars = append(vars, map[string]any{"key": fmt.Sprintf("VAR_%02d", i), "value": fmt.Sprintf("value-%02d", i), "public": i%3 != 0})
	}
	b, err := json.Marshal(map[string]any{
		"id": 1, "ref": "main", "tag": false, "sha": strings.Repeat("a1", 20), "before_sha": strings.Repeat("b2", 20),
		"status": "running", "name": "test", "stage": "test", "token": token, "project_id": 7,
		"project_name": "bench", "repo_url": "http://gitlab-ci-token:" + token + "@127.0.0.1/group/bench.git",
		"commands": "make\nmake test", "allow_git_fetch": true, "timeout": 3600, "variables": vars,
		"options": map[string]any{
			"image": "golang:1.24", "services": []string{"postgres:16"},
			"artifacts":    map[string]any{"name": "out", "paths": []string{"out/"}, "expire_in": "1 week"},
			"cache":        map[string]any{"key": "go", "paths": []string{".cache/"}},
			"after_script": []string{"echo done"},
		},
		"depends_on_builds": []any{},
		"credentials":       []any{map[string]any{"type": "registry", "url": "registry.example.com", "username": "gitlab-ci-token", "password": token}},
	})
	require.NoError(t, err)
	return b
}

// overheadJobJSON is the job the benchmark harness's server answers a v4 job request with.
func overheadJobJSON(t testing.TB) []byte {
	const token = "build-token-0123456789"
	vars := make([]map[string]any, 0, 12)
	for i := range 12 {
		vars = append(vars, map[string]any{"key": fmt.Sprintf("VAR_%02d", i), "value": fmt.Sprintf("value-%02d", i),
			"public": i%3 != 0, "masked": i%3 == 0, "file": false, "raw": false})
	}
	b, err := json.Marshal(map[string]any{
		"id": 1, "token": token, "allow_git_fetch": true,
		"job_info": map[string]any{"id": 1, "name": "test", "stage": "test", "project_id": 7, "project_name": "bench"},
		"git_info": map[string]any{"repo_url": "http://gitlab-ci-token:" + token + "@127.0.0.1/group/bench.git",
			"ref": "main", "sha": strings.Repeat("a1", 20), "before_sha": strings.Repeat("b2", 20), "ref_type": "branch",
			"refspecs": []string{"+refs/heads/main:refs/remotes/origin/main"}, "depth": 20},
		"runner_info": map[string]any{"timeout": 3600},
		"variables":   vars,
		"steps": []any{
			map[string]any{"name": "script", "script": []string{"make", "make test"}, "timeout": 3600, "when": "on_success", "allow_failure": false},
			map[string]any{"name": "after_script", "script": []string{"echo done"}, "timeout": 3600, "when": "always", "allow_failure": true},
		},
		"image":    map[string]any{"name": "golang:1.24"},
		"services": []any{map[string]any{"name": "postgres:16"}},
		"artifacts": []any{map[string]any{"name": "out", "untracked": false, "paths": []string{"out/"}, "when": "on_success",
			"expire_in": "1 week", "artifact_type": "archive", "artifact_format": "zip"}},
		"cache":        []any{map[string]any{"key": "go", "untracked": false, "paths": []string{".cache/"}, "policy": "pull-push", "when": "on_success"}},
		"dependencies": []any{},
		"credentials":  []any{map[string]any{"type": "registry", "url": "registry.example.com", "username": "gitlab-ci-token", "password": token}},
		"features":     map[string]any{"trace_sections": true},
	})
	require.NoError(t, err)
	return b
}

// overheadCall is one call through one client, made again and again.
type overheadCall struct {
	name string
	run  func(ctx context.Context) error
}

// overheadCalls are the SDK's calls and the same requests made by hand with net/http and encoding/json as the
// benchmark harness makes them (internal/bench/overhead.go and overhead_v4.go), each client on a transport of its
// own (a clone of http.DefaultTransport, as the harness's), against s.
func overheadCalls(t testing.TB, s *cannedServer) []overheadCall {
	t.Helper()
	const runnerToken, jobToken = "runner-token-0123456789", "build-token-0123456789"
	info := RunnerInfo{Name: "bench-runner", Version: "1.0.0", Revision: "0123abcd", Platform: "linux", Architecture: "amd64"}
	transport := func() *http.Transport {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.Proxy = nil
		t.Cleanup(tr.CloseIdleConnections)
		return tr
	}
	v1, err := NewClient(s.url(), WithRunnerToken(runnerToken), WithHTTPClient(&http.Client{Transport: transport()}))
	require.NoError(t, err)
	v4, err := NewClient(s.url(), WithAPI(APIv4), WithRunnerToken(runnerToken), WithBuildToken(jobToken),
		WithHTTPClient(&http.Client{Transport: transport()}))
	require.NoError(t, err)
	hand := &http.Client{Transport: transport()}
	handV4 := &http.Client{Transport: transport()}
	ropts := &RegisterOptions{Info: info}
	uopts := &UpdateOptions{State: StateRunning}
	jropts := &JobRequestOptions{SystemID: "s_0123456789ab", Info: info}
	juopts := &JobUpdateOptions{State: StateRunning}

	newForm := func(ctx context.Context, method, path string, form url.Values) (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, method, s.url()+"/ci/api/v1/"+path, strings.NewReader(form.Encode()))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", "application/json")
		req.Header.Set("User-Agent", DefaultUserAgent)
		return req, nil
	}
	newJSON := func(ctx context.Context, method, path string, body any) (*http.Request, error) {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, method, s.url()+"/api/v4/"+path, bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json")
		req.Header.Set("User-Agent", DefaultUserAgent)
		return req, nil
	}
	doCreated := func(hc *http.Client, req *http.Request, v any) error {
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			_, _ = io.Copy(io.Discard, resp.Body)
			return fmt.Errorf("status %s", resp.Status)
		}
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	doOK := func(hc *http.Client, req *http.Request) error {
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %s", resp.Status)
		}
		return nil
	}
	return []overheadCall{
		{"Register/SDK", func(ctx context.Context) error {
			b, _, err := v1.Builds.Register(ctx, ropts)
			if err == nil && (b == nil || b.ID == 0) {
				return fmt.Errorf("no build")
			}
			return err
		}},
		{"Register/hand", func(ctx context.Context) error {
			req, err := newForm(ctx, http.MethodPost, "builds/register", url.Values{"token": {runnerToken},
				"info[name]": {info.Name}, "info[version]": {info.Version}, "info[revision]": {info.Revision},
				"info[platform]": {info.Platform}, "info[architecture]": {info.Architecture}})
			if err != nil {
				return err
			}
			var b handBuild
			if err := doCreated(hand, req, &b); err != nil {
				return err
			}
			if b.ID == 0 {
				return fmt.Errorf("no build")
			}
			return nil
		}},
		{"Update/SDK", func(ctx context.Context) error {
			_, err := v1.Builds.Update(ctx, 4242, uopts)
			return err
		}},
		{"Update/hand", func(ctx context.Context) error {
			req, err := newForm(ctx, http.MethodPut, "builds/"+strconv.FormatInt(4242, 10), url.Values{"token": {runnerToken}, "state": {"running"}})
			if err != nil {
				return err
			}
			return doOK(hand, req)
		}},
		{"JobsRequest/SDK", func(ctx context.Context) error {
			j, _, err := v4.Jobs.Request(ctx, jropts)
			if err == nil && (j == nil || j.ID == 0) {
				return fmt.Errorf("no job")
			}
			return err
		}},
		{"JobsRequest/hand", func(ctx context.Context) error {
			type handInfo struct {
				Name         string `json:"name"`
				Version      string `json:"version"`
				Revision     string `json:"revision"`
				Platform     string `json:"platform"`
				Architecture string `json:"architecture"`
			}
			req, err := newJSON(ctx, http.MethodPost, "jobs/request", struct {
				Token    string   `json:"token"`
				SystemID string   `json:"system_id"`
				Info     handInfo `json:"info"`
			}{runnerToken, jropts.SystemID, handInfo(info)})
			if err != nil {
				return err
			}
			req.Header.Set("Runner-Token", runnerToken)
			var j handJob
			if err := doCreated(handV4, req, &j); err != nil {
				return err
			}
			if j.ID == 0 {
				return fmt.Errorf("no job")
			}
			return nil
		}},
		{"JobsUpdate/SDK", func(ctx context.Context) error {
			_, _, err := v4.Jobs.Update(ctx, 4242, juopts)
			return err
		}},
		{"JobsUpdate/hand", func(ctx context.Context) error {
			req, err := newJSON(ctx, http.MethodPut, "jobs/"+strconv.FormatInt(4242, 10), struct {
				Token  string   `json:"token"`
				State  string   `json:"state"`
				Output struct{} `json:"output"`
			}{Token: jobToken, State: "running"})
			if err != nil {
				return err
			}
			req.Header.Set("JOB-TOKEN", jobToken)
			return doOK(handV4, req)
		}},
	}
}

// BenchmarkCallOverhead measures each call through the SDK and, where there is one, by hand:
// go test -run '^$' -bench CallOverhead -count 6 | benchstat -col /client -
func BenchmarkCallOverhead(b *testing.B) {
	s := newCannedServer(b)
	// A context that can end, as a runner's (signal.NotifyContext) and the harness's: watches on it cost what
	// they cost there.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, c := range overheadCalls(b, s) {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := c.run(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// handBuild is the benchmark harness's hand-written client's view of a build (internal/bench/overhead.go): the
// protocol's fields in plain types.
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

// handJob is the benchmark harness's hand-written client's view of a v4 job (internal/bench/overhead_v4.go): the
// fields a runner reads, in plain types.
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

// TestCallAllocations bounds the allocations of one call through the SDK by those of the same request made by hand
// (the benchmark harness's hand-written client), both through a clone of http.DefaultTransport, in a context that
// can end, against a server that allocates nothing per request. Measured with go1.26: Register 155 against 153 by
// hand, Update 68 against 70, v4's Jobs.Update 72 against 69 and Jobs.Request 261 against 162 (the SDK's Job keeps
// what it does not know, and decodes each object on its own). Before the register attempt's grace, gate and
// timeout shared one context, the SDK built its requests from their bytes and decoded a job's objects as plain
// structs when it could: Register 194, Update 78, Jobs.Update 84, Jobs.Request 1,029.
func TestCallAllocations(t *testing.T) {
	s := newCannedServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	allocs := map[string]float64{}
	for _, c := range overheadCalls(t, s) {
		require.NoError(t, c.run(ctx), "%s: the first call, which opens the connection", c.name)
		allocs[c.name] = testing.AllocsPerRun(200, func() {
			if err := c.run(ctx); err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
		})
	}
	t.Logf("allocations per call: %v", allocs)
	for call, extra := range map[string]float64{"Register": 6, "Update": 2, "JobsUpdate": 5, "JobsRequest": 120} {
		sdk, hand := allocs[call+"/SDK"], allocs[call+"/hand"]
		require.NotZero(t, hand, call)
		assert.LessOrEqual(t, sdk, hand+extra, "%s: %.0f allocations through the SDK, %.0f by hand", call, sdk, hand)
	}
}
