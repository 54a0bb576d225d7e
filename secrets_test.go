package runnerapi_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/runnerapi/runnerapi"
	"github.com/runnerapi/runnerapi/runnerapitest"
)

// The secrets the tests below look for, each recognisable and unchanged by URL encoding.
const (
	secRunnerToken = "S3cret-RUNNER-tok-1a"
	secBuildToken  = "S3cret-BUILD-tok-2b"
	secRepoPass    = "S3cret-REPO-pw-3c"
	secRegistry    = "S3cret-REG-pw-4d"
	secVariable    = "S3cret-VAR-val-5e"
)

var secAll = []string{secRunnerToken, secBuildToken, secRepoPass, secRegistry, secVariable}

// secBuild is the build the coordinator hands out, holding every kind of secret.
func secBuild() runnerapi.Build {
	return runnerapi.Build{
		ID: 7, Name: "deploy", Stage: "deploy", Status: runnerapi.StateRunning, Token: secBuildToken,
		RepoURL:  "https://gitlab-ci-token:" + secRepoPass + "@gitlab.example.com/group/app.git",
		Commands: "make deploy",
		Variables: []runnerapi.Variable{
			{Key: "CI_BUILD_ID", Value: "7", Public: true},
			{Key: "DEPLOY_PASSWORD", Value: secVariable},
		},
		Credentials: []runnerapi.Credential{{Type: "registry", URL: "registry.example.com", Username: "ci", Password: secRegistry}},
	}
}

// secZip is a valid artifacts archive.
func secZip(t *testing.T) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	f, err := zw.Create("out/a.txt")
	require.NoError(t, err)
	_, _ = io.WriteString(f, "artifact\n")
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

// secSeen is one request a server received: everything a proxy in between could log or a foreign host could keep.
type secSeen struct {
	host, uri string
	header    http.Header
	body      []byte
}

// secCoord answers every endpoint in the way its mode says, echoing the whole request (headers and body) into
// error answers as a careless coordinator or proxy would, and records every request it gets.
type secCoord struct {
	t     *testing.T
	mode  string
	other *httptest.Server // where "redirect" sends requests
	zip   []byte

	mu    sync.Mutex
	seen  []secSeen
	trace int64
}

func (c *secCoord) record(r *http.Request) []byte {
	body, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	c.seen = append(c.seen, secSeen{host: r.Host, uri: r.RequestURI, header: r.Header.Clone(), body: body})
	c.mu.Unlock()
	return body
}

// secDump is the request as an echoing server repeats it.
func secDump(r *http.Request, body []byte) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", r.Method, r.RequestURI)
	for k, vs := range r.Header {
		fmt.Fprintf(&b, " %s=%s", k, strings.Join(vs, ","))
	}
	b.WriteString(" body=")
	b.Write(body[:min(len(body), 2000)])
	return b.String()
}

func (c *secCoord) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body := c.record(r)
	dump := secDump(r, body)
	path := strings.TrimPrefix(r.URL.Path, "/ci/api/v1/")
	switch c.mode {
	case "echo-403":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_ = json.NewEncoder(w).Encode(map[string]string{"message": "403 Forbidden: " + dump})
	case "echo-400-object":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]any{"message": map[string][]string{"token": {"is invalid: " + dump}}})
	case "echo-416":
		w.Header().Set("Range", "0-"+strconv.Quote(dump))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": dump})
	case "echo-502-html":
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		_, _ = fmt.Fprintf(w, "<html><head><title>502 %s</title></head><body>%s</body></html>", dump, dump)
	case "echo-413-text":
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		_, _ = io.WriteString(w, strings.Repeat("x", 490)+dump) // cut inside a token by the message bound
	case "decode":
		// A 2xx whose body or headers cannot be read as the endpoint's answer, with the request echoed in them.
		w.Header().Set("Range", "0-"+strconv.Quote(dump))
		w.Header().Set("Content-Range", "bytes "+strconv.Quote(dump))
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodPost {
			w.WriteHeader(http.StatusCreated)
		} else {
			w.WriteHeader(http.StatusOK)
		}
		raw, _ := json.Marshal(runnerapi.UnredactedBuild(secBuild()))
		_, _ = fmt.Fprintf(w, `%s, "timeout": %q}`, raw[:len(raw)-1], dump)
	case "redirect":
		http.Redirect(w, r, c.other.URL+r.URL.Path, http.StatusTemporaryRedirect)
	case "cancel":
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	case "success":
		c.serveOK(w, r, path, body)
	default:
		c.t.Errorf("unknown mode %q", c.mode)
	}
}

func (c *secCoord) serveOK(w http.ResponseWriter, r *http.Request, path string, body []byte) {
	switch {
	case path == "builds/register":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(runnerapi.UnredactedBuild(secBuild()))
	case r.Method == http.MethodPatch:
		c.mu.Lock()
		c.trace += int64(len(body))
		n := c.trace
		c.mu.Unlock()
		w.Header().Set("Range", "0-"+strconv.FormatInt(n, 10))
		w.Header().Set("Build-Status", "running")
		w.WriteHeader(http.StatusAccepted)
	case r.Method == http.MethodPost:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		b := secBuild()
		b.ArtifactsFile = runnerapi.ArtifactsFile{Filename: "artifacts.zip", Size: 3}
		_ = json.NewEncoder(w).Encode(runnerapi.UnredactedBuild(b))
	case r.Method == http.MethodGet:
		w.Header().Set("Content-Disposition", "attachment; filename=artifacts.zip")
		w.Header().Set("Content-Length", strconv.Itoa(len(c.zip)))
		_, _ = w.Write(c.zip)
	default:
		w.WriteHeader(http.StatusOK)
	}
}

// secCall drives one endpoint and returns what the SDK handed back besides the error.
type secCall struct {
	name string
	run  func(ctx context.Context, cl *runnerapi.Client, dir string) ([]any, error)
}

func secCalls() []secCall {
	build := secBuild()
	withTok := runnerapi.WithToken(secBuildToken)
	return []secCall{
		{"Register", func(ctx context.Context, cl *runnerapi.Client, _ string) ([]any, error) {
			b, resp, err := cl.Builds.Register(ctx, &runnerapi.RegisterOptions{Info: runnerapi.RunnerInfo{Name: "r"}})
			return []any{b, resp}, err
		}},
		{"Next", func(ctx context.Context, cl *runnerapi.Client, _ string) ([]any, error) {
			ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			defer cancel()
			b, resp, err := cl.Builds.Next(ctx, &runnerapi.NextOptions{Interval: time.Millisecond})
			return []any{b, resp}, err
		}},
		{"Update", func(ctx context.Context, cl *runnerapi.Client, _ string) ([]any, error) {
			trace := "all done\n"
			resp, err := cl.Builds.Update(ctx, build.ID, &runnerapi.UpdateOptions{State: runnerapi.StateFailed, Trace: &trace})
			return []any{resp}, err
		}},
		{"AppendTrace", func(ctx context.Context, cl *runnerapi.Client, _ string) ([]any, error) {
			res, resp, err := cl.Builds.AppendTrace(ctx, build.ID, 0, []byte("step 1\n"), withTok)
			return []any{res, resp}, err
		}},
		{"TraceWriter", func(ctx context.Context, cl *runnerapi.Client, _ string) ([]any, error) {
			b := secBuild()
			w, err := cl.NewBuildTraceWriter(ctx, &b, &runnerapi.TraceOptions{FlushInterval: time.Millisecond, KeepAlive: -1})
			if err != nil {
				return nil, err
			}
			// A build that prints its own secrets: the writer must mask every one.
			for _, s := range secAll {
				_, _ = fmt.Fprintf(w, "$ echo %s\n%s\n", s, s)
			}
			ferr := w.Flush(ctx)
			cerr := w.Close()
			return []any{w.Stats(), ferr}, cerr
		}},
		{"Upload", func(ctx context.Context, cl *runnerapi.Client, _ string) ([]any, error) {
			b, resp, err := cl.Artifacts.Upload(ctx, build.ID, strings.NewReader("zip"), &runnerapi.UploadOptions{Size: 3, ExpireIn: "1d"}, withTok)
			return []any{b, resp}, err
		}},
		{"UploadFile", func(ctx context.Context, cl *runnerapi.Client, dir string) ([]any, error) {
			p := filepath.Join(dir, "a.zip")
			if err := os.WriteFile(p, []byte("zip"), 0o644); err != nil {
				return nil, err
			}
			b, resp, err := cl.Artifacts.UploadFile(ctx, build.ID, p, nil, withTok)
			return []any{b, resp}, err
		}},
		{"UploadPaths", func(ctx context.Context, cl *runnerapi.Client, dir string) ([]any, error) {
			if err := os.WriteFile(filepath.Join(dir, "f.txt"), []byte("f"), 0o644); err != nil {
				return nil, err
			}
			b, resp, err := cl.Artifacts.UploadPaths(ctx, build.ID, dir, []string{"f.txt"}, nil, withTok)
			return []any{b, resp}, err
		}},
		{"Download", func(ctx context.Context, cl *runnerapi.Client, _ string) ([]any, error) {
			info, resp, err := cl.Artifacts.Download(ctx, build.ID, io.Discard, nil, withTok)
			return []any{info, resp}, err
		}},
		{"DownloadFile", func(ctx context.Context, cl *runnerapi.Client, dir string) ([]any, error) {
			info, resp, err := cl.Artifacts.DownloadFile(ctx, build.ID, filepath.Join(dir, "d.zip"), nil, withTok)
			return []any{info, resp}, err
		}},
		{"Open", func(ctx context.Context, cl *runnerapi.Client, _ string) ([]any, error) {
			rc, info, err := cl.Artifacts.Open(ctx, build.ID, withTok)
			if err != nil {
				return []any{info}, err
			}
			defer rc.Close()
			_, err = io.Copy(io.Discard, rc)
			return []any{info}, err
		}},
		{"Extract", func(ctx context.Context, cl *runnerapi.Client, dir string) ([]any, error) {
			info, resp, err := cl.Artifacts.Extract(ctx, build.ID, filepath.Join(dir, "x"), &runnerapi.ExtractOptions{TempDir: dir}, withTok)
			return []any{info, resp}, err
		}},
		{"Delete", func(ctx context.Context, cl *runnerapi.Client, _ string) ([]any, error) {
			resp, err := cl.Artifacts.Delete(ctx, build.ID, withTok)
			return []any{resp}, err
		}},
	}
}

// secFind returns the secrets s holds.
func secFind(s string) []string {
	var found []string
	for _, sec := range secAll {
		if strings.Contains(s, sec) {
			found = append(found, sec)
		}
	}
	return found
}

// secPrinted is v as fmt prints it with the verbs a caller logs values with.
func secPrinted(v any) string {
	return fmt.Sprintf("%v | %+v | %#v | %s | %q", v, v, v, v, v)
}

// TestSecretsNeverLeak drives every endpoint through every failure path, and through success, with recognisable
// secrets, and finds none of them in an error string, a log record at any level, a printed return value, a URL any
// server saw, or anything the foreign host of a redirect received.
func TestSecretsNeverLeak(t *testing.T) {
	hostileLeakCheck(t)
	zipData := secZip(t)
	modes := []string{"echo-403", "echo-400-object", "echo-416", "echo-502-html", "echo-413-text", "decode", "redirect",
		"transport", "cancel", "success"}
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			other := &secCoord{t: t, mode: "echo-403", zip: zipData}
			otherSrv := httptest.NewServer(other)
			defer otherSrv.Close()
			coord := &secCoord{t: t, mode: mode, other: otherSrv, zip: zipData}
			srv := httptest.NewServer(coord)
			defer srv.Close()
			url := srv.URL
			if mode == "transport" {
				closed := httptest.NewServer(http.NotFoundHandler())
				url = closed.URL
				closed.Close()
			}

			var logs bytes.Buffer
			var logMu sync.Mutex
			logger := slog.New(slog.NewTextHandler(&secLockedWriter{w: &logs, mu: &logMu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
			// What a caller logs of each call: its results and error, alone and together, as JSON.
			callerLog := slog.New(slog.NewJSONHandler(&secLockedWriter{w: &logs, mu: &logMu}, nil))
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			cl, err := runnerapi.NewClient(url,
				runnerapi.WithHTTPClient(&http.Client{Transport: tr}),
				runnerapi.WithRunnerToken(secRunnerToken),
				runnerapi.WithLogger(logger),
				runnerapi.WithTimeout(5*time.Second),
				runnerapi.WithRetryPolicy(runnerapi.RetryPolicy{MaxRetries: 1, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
			require.NoError(t, err)

			for _, c := range secCalls() {
				coord.mu.Lock()
				coord.trace = 0
				coord.mu.Unlock()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				if mode == "cancel" {
					ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
				}
				vals, err := c.run(ctx, cl, t.TempDir())
				cancel()
				// Update and Delete do not read the answer's body, any bytes make a valid download, and an upload's
				// 201 stored the file whatever its body says.
				decodeOK := c.name == "Update" || c.name == "Delete" || c.name == "Download" || c.name == "DownloadFile" || c.name == "Open" ||
					strings.HasPrefix(c.name, "Upload")
				if mode != "success" && !(mode == "decode" && decodeOK) {
					assert.Error(t, err, "%s: a %s answer must fail the call", c.name, mode)
				}
				if err != nil {
					for _, s := range []string{err.Error(), secPrinted(err)} {
						assert.Empty(t, secFind(s), "%s: error shows a secret: %s", c.name, s)
					}
					for e := err; e != nil; e = errors.Unwrap(e) {
						assert.Empty(t, secFind(secPrinted(e)), "%s: wrapped %T shows a secret", c.name, e)
					}
				}
				for _, v := range vals {
					assert.Empty(t, secFind(secPrinted(v)), "%s: returned %T shows a secret: %s", c.name, v, secPrinted(v))
					callerLog.Info("result", "call", c.name, "value", v)
				}
				callerLog.Info("call", "name", c.name, "results", vals, "error", err, "errors", []error{err})
			}

			logMu.Lock()
			logText := logs.String()
			logMu.Unlock()
			assert.NotEmpty(t, logText, "the logger saw nothing: the check would prove nothing")
			assert.Empty(t, secFind(logText), "log records show a secret")

			coord.mu.Lock()
			defer coord.mu.Unlock()
			if mode != "transport" {
				assert.NotEmpty(t, coord.seen)
			}
			for _, r := range coord.seen {
				assert.Empty(t, secFind(r.uri), "URL %s", r.uri)
				if r.header.Get("Content-Range") != "" || strings.HasSuffix(r.uri, "/trace.txt") {
					// A trace part carries only masked text.
					assert.Empty(t, secFind(string(r.body)), "trace part shows a secret")
				}
			}
			other.mu.Lock()
			defer other.mu.Unlock()
			for _, r := range other.seen {
				assert.Empty(t, secFind(r.uri), "foreign host saw URL %s", r.uri)
				assert.Empty(t, secFind(fmt.Sprint(r.header)), "foreign host saw headers %v", r.header)
				assert.Empty(t, secFind(string(r.body)), "foreign host saw a body with a secret")
			}
			if mode == "redirect" {
				// Bodiless requests (download, delete, keep-alives) follow the redirect, without their token.
				assert.NotEmpty(t, other.seen, "no redirect was followed: the check would prove nothing")
			}
		})
	}
}

// secLockedWriter serialises writes of the log handler, which calls from several goroutines.
type secLockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *secLockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestSecretsNotInFakeCoordinatorURLs runs a build's life against the fake coordinator and asks it whether any
// request carried a token in its URL.
func TestSecretsNotInFakeCoordinatorURLs(t *testing.T) {
	srv := runnerapitest.NewServer()
	defer srv.Close()
	srv.AddRunner(secRunnerToken)
	b := secBuild()
	b.ID = 0
	id := srv.Enqueue(b)
	cl, err := runnerapi.NewClient(srv.URL, runnerapi.WithRunnerToken(secRunnerToken))
	require.NoError(t, err)
	ctx := context.Background()
	build, _, err := cl.Builds.Register(ctx, nil)
	require.NoError(t, err)
	require.Equal(t, id, build.ID)
	w, err := cl.NewBuildTraceWriter(ctx, build, &runnerapi.TraceOptions{FlushInterval: time.Millisecond})
	require.NoError(t, err)
	for _, s := range secAll {
		_, _ = fmt.Fprintf(w, "leak? %s\n", s)
	}
	require.NoError(t, w.Close())
	tok := runnerapi.WithToken(build.Token)
	_, _, err = cl.Artifacts.Upload(ctx, id, strings.NewReader("zip"), &runnerapi.UploadOptions{ExpireIn: "1 day"}, tok)
	require.NoError(t, err)
	_, _, err = cl.Artifacts.Download(ctx, id, io.Discard, nil, tok)
	require.NoError(t, err)
	_, err = cl.Artifacts.Delete(ctx, id, tok)
	require.NoError(t, err)
	_, err = cl.Builds.Update(ctx, id, &runnerapi.UpdateOptions{State: runnerapi.StateSuccess})
	require.NoError(t, err)

	reqs := srv.Requests()
	require.GreaterOrEqual(t, len(reqs), 5)
	for _, r := range reqs {
		assert.False(t, r.TokenInQuery, "%s %s", r.Method, r.Path)
		assert.Empty(t, secFind(r.Path))
	}
	trace := string(srv.Trace(id))
	assert.Empty(t, secFind(trace), "trace: %s", trace)
	assert.Equal(t, len(secAll), strings.Count(trace, "[MASKED]"))
}

// TestSecretsNotInPrintedClient: the client holds the runner and build tokens; printing it shows neither.
func TestSecretsNotInPrintedClient(t *testing.T) {
	cl, err := runnerapi.NewClient("https://gitlab.example.com", runnerapi.WithRunnerToken(secRunnerToken),
		runnerapi.WithBuildToken(secBuildToken))
	require.NoError(t, err)
	for _, v := range []any{cl, *cl, cl.Builds, cl.Artifacts} {
		s := secPrinted(v)
		assert.Empty(t, secFind(s), s)
	}
	assert.Contains(t, fmt.Sprint(cl), "https://gitlab.example.com/ci/api/v1/")
}

// TestSecretsNotInPrintedTraceWriter: a trace writer holds the build token and the secrets it masks; printing it
// shows none of them.
func TestSecretsNotInPrintedTraceWriter(t *testing.T) {
	cl, err := runnerapi.NewClient("https://gitlab.example.com", runnerapi.WithRunnerToken(secRunnerToken))
	require.NoError(t, err)
	b := secBuild()
	ctx, cancel := context.WithCancel(context.Background())
	w, err := cl.NewBuildTraceWriter(ctx, &b, &runnerapi.TraceOptions{Secrets: []string{secRegistry}})
	require.NoError(t, err)
	s := secPrinted(w)
	cancel()
	_ = w.Close()
	assert.Empty(t, secFind(s), s)
	assert.Contains(t, s, "7")
}

// TestSecretsNotInPrintedOptionsOrServer: the options a caller builds and the fake coordinator hold tokens too.
func TestSecretsNotInPrintedOptionsOrServer(t *testing.T) {
	opts := runnerapi.TraceOptions{Token: secBuildToken, Secrets: []string{secRegistry, secVariable}, ChunkSize: 4096}
	for _, v := range []any{opts, &opts} {
		s := secPrinted(v)
		assert.Empty(t, secFind(s), s)
		assert.Contains(t, s, "4096", "what is not secret still prints")
	}

	srv := runnerapitest.NewServer()
	defer srv.Close()
	srv.AddRunner(secRunnerToken)
	srv.Enqueue(runnerapi.Build{Token: secBuildToken})
	s := secPrinted(srv)
	assert.Empty(t, secFind(s), s)
	assert.Contains(t, s, srv.URL)
}

// TestSecretsOfUnparseableRepoURL: a repo_url whose password Go's URL parser rejects (a bad escape, a space), or
// that ends the authority early (a "#", "/" or "?"), still gives its password to Build.Secrets, as written and
// decoded, so the trace masks it; printing the build masks it and keeps the rest of the URL.
func TestSecretsOfUnparseableRepoURL(t *testing.T) {
	tests := []struct {
		url     string
		secrets []string
		printed string
	}{
		{"https://gitlab-ci-token:pa%zzword@gitlab.example.com/group/app.git", []string{"pa%zzword"},
			"https://gitlab-ci-token:[MASKED]@gitlab.example.com/group/app.git"},
		{"https://gitlab-ci-token:pa#ssw0rd@gitlab.example.com/app.git", []string{"pa#ssw0rd"}, "https://gitlab-ci-token:[MASKED]@gitlab.example.com/app.git"},
		{"https://gitlab-ci-token:pa ssw0rd@gitlab.example.com/app.git", []string{"pa ssw0rd"}, "https://gitlab-ci-token:[MASKED]@gitlab.example.com/app.git"},
		{"https://gitlab-ci-token:pa/ssw0rd@gitlab.example.com/app.git", []string{"pa/ssw0rd"}, "https://gitlab-ci-token:[MASKED]@gitlab.example.com/app.git"},
		{"https://gitlab-ci-token:pa?ssw0rd@gitlab.example.com/app.git", []string{"pa?ssw0rd"}, "https://gitlab-ci-token:[MASKED]@gitlab.example.com/app.git"},
		// These parse, but the authority ends before the password does: the rest passes for a path or fragment.
		{"https://gitlab-ci-token:12/ssw0rd@gitlab.example.com/app.git", []string{"12/ssw0rd"}, "https://gitlab-ci-token:[MASKED]@gitlab.example.com/app.git"},
		{"https://gitlab-ci-token:12#s%41sw0rd@gitlab.example.com/app.git", []string{"12#s%41sw0rd", "12#sAsw0rd"}, "https://gitlab-ci-token:[MASKED]@gitlab.example.com/app.git"},
		{"https://gitlab-ci-token:p%41ss w0rd@gitlab.example.com/app.git", []string{"p%41ss w0rd", "pAss w0rd"}, "https://gitlab-ci-token:[MASKED]@gitlab.example.com/app.git"},
		{"https://tok%zzen@gitlab.example.com/app.git", []string{"tok%zzen"}, "https://[MASKED]@gitlab.example.com/app.git"},
		{"https://gitlab-ci-token:p@ss w0rd@gitlab.example.com/app.git", []string{"p@ss w0rd"}, "https://gitlab-ci-token:[MASKED]@gitlab.example.com/app.git"},
		// No userinfo at all: nothing is secret, and the URL prints as it is.
		{"https://gitlab.example.com/group/p@x.git", nil, "https://gitlab.example.com/group/p@x.git"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			b := runnerapi.Build{ID: 3, Token: secBuildToken, RepoURL: tt.url}
			want := append([]string{secBuildToken}, tt.secrets...)
			assert.Equal(t, want, b.Secrets())
			for _, v := range []any{b, &b, []runnerapi.Build{b}} {
				out := secPrinted(v)
				assert.Contains(t, out, tt.printed)
				for _, s := range tt.secrets {
					assert.NotContains(t, out, s)
				}
			}
		})
	}

	// The trace a build writes about its own clone URL reaches the coordinator masked.
	srv := runnerapitest.NewServer()
	defer srv.Close()
	srv.AddRunner(secRunnerToken)
	for _, tt := range tests[:len(tests)-1] {
		id := srv.Enqueue(runnerapi.Build{RepoURL: tt.url})
		cl, err := runnerapi.NewClient(srv.URL, runnerapi.WithRunnerToken(secRunnerToken))
		require.NoError(t, err)
		b, _, err := cl.Builds.Register(context.Background(), nil)
		require.NoError(t, err)
		require.Equal(t, id, b.ID)
		w, err := cl.NewBuildTraceWriter(context.Background(), b, nil)
		require.NoError(t, err)
		_, _ = fmt.Fprintf(w, "$ git clone %s\nfatal: unable to access '%s'\n", tt.url, tt.url)
		for _, s := range tt.secrets {
			_, _ = fmt.Fprintf(w, "password: %s\n", s)
		}
		require.NoError(t, w.Close())
		trace := string(srv.Trace(id))
		for _, s := range tt.secrets {
			assert.NotContains(t, trace, s, "trace of %s", tt.url)
		}
		assert.Contains(t, trace, "$ git clone ")
		_, err = cl.Builds.Update(context.Background(), id, &runnerapi.UpdateOptions{State: runnerapi.StateSuccess})
		require.NoError(t, err)
	}
}

// TestSecretsOfRepoURLWithAtInPath: an "@" in the path of a URL whose credentials parse is not mistaken for the
// end of its userinfo.
func TestSecretsOfRepoURLWithAtInPath(t *testing.T) {
	b := runnerapi.Build{RepoURL: "https://u:p%40w@gitlab.example.com/group/a@b.git"}
	assert.Equal(t, []string{"p@w", "p%40w"}, b.Secrets())
	assert.Contains(t, fmt.Sprint(b), "https://u:[MASKED]@gitlab.example.com/group/a@b.git")
}
