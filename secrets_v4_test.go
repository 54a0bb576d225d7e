package runnerapi_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runnerapi/runnerapi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// secCallsV4 drives every v4 endpoint with the secrets of secrets_test.go: the runner token, the job token (as
// secBuildToken) and a registration token (as secRegistry).
func secCallsV4() []secCall {
	withTok := runnerapi.WithToken(secBuildToken)
	return []secCall{
		{"Jobs.Request", func(ctx context.Context, cl *runnerapi.Client, _ string) ([]any, error) {
			j, resp, err := cl.Jobs.Request(ctx, &runnerapi.JobRequestOptions{SystemID: "s_0123456789ab"})
			return []any{j, resp}, err
		}},
		{"Jobs.Next", func(ctx context.Context, cl *runnerapi.Client, _ string) ([]any, error) {
			j, resp, err := cl.Jobs.Next(ctx, &runnerapi.JobNextOptions{Interval: time.Millisecond})
			return []any{j, resp}, err
		}},
		{"Jobs.Update", func(ctx context.Context, cl *runnerapi.Client, _ string) ([]any, error) {
			st, resp, err := cl.Jobs.Update(ctx, 7, &runnerapi.JobUpdateOptions{State: runnerapi.StateSuccess}, withTok)
			return []any{st, resp}, err
		}},
		{"TraceWriter", func(ctx context.Context, cl *runnerapi.Client, _ string) ([]any, error) {
			w, err := cl.NewTraceWriter(ctx, 7, &runnerapi.TraceOptions{Token: secBuildToken, Secrets: []string{secVariable}})
			if err != nil {
				return nil, err
			}
			_, _ = io.WriteString(w, "log with "+secVariable+" and "+secBuildToken+"\n")
			err = w.Close()
			return []any{w, w.Stats(), w.Output()}, err
		}},
		{"Upload", func(ctx context.Context, cl *runnerapi.Client, _ string) ([]any, error) {
			b, resp, err := cl.Artifacts.Upload(ctx, 7, strings.NewReader("zip"), &runnerapi.UploadOptions{ArtifactType: "junit"}, withTok)
			return []any{b, resp}, err
		}},
		{"Download", func(ctx context.Context, cl *runnerapi.Client, _ string) ([]any, error) {
			info, resp, err := cl.Artifacts.Download(ctx, 7, io.Discard, nil, withTok, runnerapi.WithDirectDownload())
			return []any{info, resp}, err
		}},
		{"Runners.Register", func(ctx context.Context, cl *runnerapi.Client, _ string) ([]any, error) {
			r, resp, err := cl.Runners.Register(ctx, secRegistry, nil)
			return []any{r, resp}, err
		}},
		{"Runners.Verify", func(ctx context.Context, cl *runnerapi.Client, _ string) ([]any, error) {
			r, resp, err := cl.Runners.Verify(ctx, secRunnerToken, nil)
			return []any{r, resp}, err
		}},
		{"Runners.ResetToken", func(ctx context.Context, cl *runnerapi.Client, _ string) ([]any, error) {
			r, resp, err := cl.Runners.ResetToken(ctx, secRunnerToken)
			return []any{r, resp}, err
		}},
		{"Runners.Unregister", func(ctx context.Context, cl *runnerapi.Client, _ string) ([]any, error) {
			resp, err := cl.Runners.Unregister(ctx, secRunnerToken)
			return []any{resp}, err
		}},
		{"Runners.DeleteManager", func(ctx context.Context, cl *runnerapi.Client, _ string) ([]any, error) {
			resp, err := cl.Runners.DeleteManager(ctx, secRunnerToken, "s_0123456789ab")
			return []any{resp}, err
		}},
	}
}

// TestSecretsNeverLeakV4 drives every v4 endpoint against coordinators that echo the whole request (headers and
// body) into their error answers, and finds no secret in an error, a printed or logged result, a log record, or a
// URL the server saw; a trace part carries only masked text.
func TestSecretsNeverLeakV4(t *testing.T) {
	hostileLeakCheck(t)
	for _, mode := range []string{"echo-403", "echo-400-object", "echo-416", "echo-502-html", "echo-413-text"} {
		t.Run(mode, func(t *testing.T) {
			coord := &secCoord{t: t, mode: mode}
			srv := httptest.NewServer(coord)
			defer srv.Close()
			var logs bytes.Buffer
			var logMu sync.Mutex
			logger := slog.New(slog.NewTextHandler(&secLockedWriter{w: &logs, mu: &logMu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
			callerLog := slog.New(slog.NewJSONHandler(&secLockedWriter{w: &logs, mu: &logMu}, nil))
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			cl, err := runnerapi.NewClient(srv.URL, runnerapi.WithAPI(runnerapi.APIv4),
				runnerapi.WithHTTPClient(&http.Client{Transport: tr}), runnerapi.WithRunnerToken(secRunnerToken),
				runnerapi.WithLogger(logger), runnerapi.WithTimeout(5*time.Second),
				runnerapi.WithRetryPolicy(runnerapi.RetryPolicy{MaxRetries: 1, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
			require.NoError(t, err)
			for _, c := range secCallsV4() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				vals, err := c.run(ctx, cl, t.TempDir())
				cancel()
				require.Error(t, err, "%s: a %s answer must fail the call", c.name, mode)
				for _, s := range []string{err.Error(), secPrinted(err)} {
					assert.Empty(t, secFind(s), "%s: error shows a secret: %s", c.name, s)
				}
				for e := err; e != nil; e = errors.Unwrap(e) {
					assert.Empty(t, secFind(secPrinted(e)), "%s: wrapped %T shows a secret", c.name, e)
				}
				for _, v := range vals {
					assert.Empty(t, secFind(secPrinted(v)), "%s: returned %T shows a secret", c.name, v)
					callerLog.Info("result", "call", c.name, "value", v)
				}
				callerLog.Info("call", "name", c.name, "error", err)
			}
			logMu.Lock()
			logText := logs.String()
			logMu.Unlock()
			assert.NotEmpty(t, logText)
			assert.Empty(t, secFind(logText), "log records show a secret")
			coord.mu.Lock()
			defer coord.mu.Unlock()
			assert.NotEmpty(t, coord.seen)
			for _, r := range coord.seen {
				assert.Empty(t, secFind(r.uri), "URL %s", r.uri)
				if strings.HasSuffix(r.uri, "/trace") {
					assert.Empty(t, secFind(string(r.body)), "trace part shows a secret")
				}
			}
		})
	}
}
