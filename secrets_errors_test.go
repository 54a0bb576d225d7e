package runnerapi_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/runnerapi/runnerapi"
)

// secClientBuildToken is the client's own build token (WithBuildToken), which no call below uses: it is scrubbed
// all the same, since the SDK knows it.
const secClientBuildToken = "S3cret-CLIENT-build-6f"

// secMalformed are answers net/http cannot read, each repeating the tokens it is given where net/http's error
// quotes what it could not read. Tokens hold no character that %q escapes.
var secMalformed = []struct {
	name   string
	answer func(tokens string) string
}{
	{"header-missing-colon", func(tok string) string {
		return "HTTP/1.1 200 OK\r\nBUILD-TOKEN " + tok + "\r\n\r\n"
	}},
	{"header-name", func(tok string) string {
		return "HTTP/1.1 200 OK\r\nX-Echo(" + tok + "): 1\r\n\r\n"
	}},
	{"header-continuation", func(tok string) string {
		return "HTTP/1.1 200 OK\r\n X-Echo: " + tok + "\r\n\r\n"
	}},
	{"status-code", func(tok string) string {
		return "HTTP/1.1 2" + tok + " OK\r\n\r\n"
	}},
	{"status-line", func(tok string) string {
		return "HTTP/1.1" + tok + "\r\n\r\n"
	}},
	{"version", func(tok string) string {
		return "HTTP/" + tok + " 200 OK\r\n\r\n"
	}},
	{"content-length", func(tok string) string {
		return "HTTP/1.1 200 OK\r\nContent-Length: " + tok + "\r\n\r\n"
	}},
	{"transfer-encoding", func(tok string) string {
		return "HTTP/1.1 200 OK\r\nTransfer-Encoding: " + tok + "\r\n\r\n"
	}},
	{"chunk-size", func(tok string) string {
		return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n" + tok + "\r\n"
	}},
	{"location", func(tok string) string {
		return "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://[" + tok + "/\r\nContent-Length: 0\r\n\r\n"
	}},
}

// secRawServer is a TCP server that reads each request, then writes a malformed answer echoing the tokens the
// request carried (its BUILD-TOKEN header, the token of its form) and the client's tokens, as a broken proxy might.
type secRawServer struct {
	ln     net.Listener
	answer func(tokens string) string
	wg     sync.WaitGroup

	mu     sync.Mutex
	echoed int // answers that carried a token
}

func newSecRawServer(t *testing.T, answer func(tokens string) string) *secRawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &secRawServer{ln: ln, answer: answer}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer conn.Close()
				s.serve(conn)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		s.wg.Wait()
	})
	return s
}

func (s *secRawServer) serve(conn net.Conn) {
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	req, err := http.ReadRequest(bufio.NewReader(conn))
	if err != nil {
		return
	}
	tokens := []string{secRunnerToken, secClientBuildToken}
	if t := req.Header.Get("BUILD-TOKEN"); t != "" {
		tokens = append(tokens, t)
	}
	if strings.HasPrefix(req.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		if err := req.ParseForm(); err == nil && req.PostForm.Get("token") != "" {
			tokens = append(tokens, req.PostForm.Get("token"))
		}
	}
	body, _ := io.ReadAll(req.Body)
	if req.Method == http.MethodPatch && bytes.Contains(body, []byte("[MASKED]")) {
		// A trace writer's part: the writer knows the build's secrets, so its errors must not show them either.
		tokens = append(tokens, secAll...)
	}
	s.mu.Lock()
	s.echoed++
	s.mu.Unlock()
	_, _ = io.WriteString(conn, s.answer(strings.Join(tokens, "-")))
}

// TestSecretsNotInNetworkErrors: answers that net/http cannot read, and whose fragments its errors quote, repeat
// the tokens of the request to every endpoint; no error the SDK returns, nothing it wraps, no returned value and
// no record of a JSON logger at debug level shows one.
func TestSecretsNotInNetworkErrors(t *testing.T) {
	for _, m := range secMalformed {
		t.Run(m.name, func(t *testing.T) {
			hostileLeakCheck(t)
			srv := newSecRawServer(t, m.answer)
			var logs bytes.Buffer
			var logMu sync.Mutex
			logger := slog.New(slog.NewJSONHandler(&secLockedWriter{w: &logs, mu: &logMu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			cl, err := runnerapi.NewClient("http://"+srv.ln.Addr().String(),
				runnerapi.WithHTTPClient(&http.Client{Transport: tr}),
				runnerapi.WithRunnerToken(secRunnerToken),
				runnerapi.WithBuildToken(secClientBuildToken),
				runnerapi.WithLogger(logger),
				runnerapi.WithTimeout(5*time.Second),
				runnerapi.WithRetryPolicy(runnerapi.RetryPolicy{MaxRetries: 1, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
			require.NoError(t, err)

			failed := 0
			for _, c := range secCalls() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				vals, err := c.run(ctx, cl, t.TempDir())
				cancel()
				if err == nil {
					// Update and Delete read no body: a broken chunk after good headers passes for them.
					assert.Equal(t, "chunk-size", m.name, "%s: a malformed answer must fail the call", c.name)
					continue
				}
				failed++
				for _, s := range []string{err.Error(), secPrinted(err), fmt.Sprint(errors.Unwrap(err))} {
					assert.Empty(t, secFind(s), "%s: error shows a secret: %s", c.name, s)
					assert.NotContains(t, s, secClientBuildToken, "%s: error shows the client's build token", c.name)
				}
				for e := err; e != nil; e = errors.Unwrap(e) {
					assert.Empty(t, secFind(secPrinted(e)), "%s: wrapped %T shows a secret", c.name, e)
				}
				var te *runnerapi.TransportError
				if errors.As(err, &te) {
					assert.Empty(t, secFind(te.Error()+fmt.Sprint(te.Err)), "%s: the TransportError shows a secret", c.name)
				}
				for _, v := range vals {
					assert.Empty(t, secFind(secPrinted(v)), "%s: returned %T shows a secret", c.name, v)
				}
			}
			assert.NotZero(t, failed, "no call failed: the check would prove nothing")

			srv.mu.Lock()
			echoed := srv.echoed
			srv.mu.Unlock()
			assert.NotZero(t, echoed, "the server echoed nothing: the check would prove nothing")
			logMu.Lock()
			logText := logs.String()
			logMu.Unlock()
			if m.name != "chunk-size" {
				// A body that cannot be read fails the call after the attempt, which was logged as answered.
				assert.Contains(t, logText, `"error"`, "no failure was logged: the check would prove nothing")
			}
			assert.Empty(t, secFind(logText), "log records show a secret: %s", logText)
			assert.NotContains(t, logText, secClientBuildToken, "log records show the client's build token")
		})
	}
}

// TestScrubbedErrorsKeepTheirIdentity: an error whose text had a token masked is still, for errors.Is, errors.As
// and IsTransient, the failure it was.
func TestScrubbedErrorsKeepTheirIdentity(t *testing.T) {
	hostileLeakCheck(t)
	srv := newSecRawServer(t, secMalformed[0].answer)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	cl, err := runnerapi.NewClient("http://"+srv.ln.Addr().String(),
		runnerapi.WithHTTPClient(&http.Client{Transport: tr}),
		runnerapi.WithRunnerToken(secRunnerToken), runnerapi.WithoutRetries())
	require.NoError(t, err)

	_, err = cl.Artifacts.Delete(context.Background(), 1, runnerapi.WithToken(secBuildToken))
	require.Error(t, err)
	assert.Empty(t, secFind(err.Error()), err.Error())
	assert.Contains(t, err.Error(), "malformed MIME header", "the cause is still told")
	assert.Contains(t, err.Error(), "[MASKED]")
	var te *runnerapi.TransportError
	require.ErrorAs(t, err, &te)
	assert.True(t, runnerapi.IsTransient(err), "a connection broken by a malformed answer is transient")
	assert.Empty(t, secFind(fmt.Sprint(te.Err)))
}

// secEchoTransport is a RoundTripper, such as a caller's proxy-aware one, whose failures quote the request's
// tokens: when dialing, and in the middle of an answer's body.
type secEchoTransport struct {
	mu    sync.Mutex
	calls int
	// midBody makes the answers 200s whose body fails after a few bytes; otherwise the dial fails.
	midBody bool
}

func (e *secEchoTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, req.Body)
		_ = req.Body.Close()
	}
	e.mu.Lock()
	e.calls++
	e.mu.Unlock()
	tokens := secRunnerToken + " " + secClientBuildToken + " " + req.Header.Get("BUILD-TOKEN")
	if !e.midBody {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: fmt.Errorf("proxy refused %s: %w", tokens, io.ErrUnexpectedEOF)}
	}
	return &http.Response{
		StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}}, ContentLength: -1,
		Body:    io.NopCloser(io.MultiReader(strings.NewReader(`{"id"`), iotestErrReader{fmt.Errorf("proxy dropped %s", tokens)})),
		Request: req,
	}, nil
}

// iotestErrReader fails every Read with err.
type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }

// TestSecretsNotInTransportFailures: a transport's own failures that quote the tokens, on dialing and mid-body
// (downloads resume, JSON answers fail to decode), are scrubbed, and stay what they were for errors.Is, errors.As,
// IsTransient and the retry of a register that surely was not sent.
func TestSecretsNotInTransportFailures(t *testing.T) {
	for _, midBody := range []bool{false, true} {
		t.Run(fmt.Sprintf("midBody=%v", midBody), func(t *testing.T) {
			tr := &secEchoTransport{midBody: midBody}
			var logs bytes.Buffer
			var logMu sync.Mutex
			logger := slog.New(slog.NewJSONHandler(&secLockedWriter{w: &logs, mu: &logMu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
			cl, err := runnerapi.NewClient("http://coordinator.invalid",
				runnerapi.WithHTTPClient(&http.Client{Transport: tr}),
				runnerapi.WithRunnerToken(secRunnerToken), runnerapi.WithBuildToken(secClientBuildToken),
				runnerapi.WithLogger(logger),
				runnerapi.WithRetryPolicy(runnerapi.RetryPolicy{MaxRetries: 1, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
			require.NoError(t, err)
			for _, c := range secCalls() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				vals, err := c.run(ctx, cl, t.TempDir())
				cancel()
				if err == nil {
					assert.True(t, midBody, "%s: a failed dial must fail the call", c.name)
					continue
				}
				text := err.Error() + secPrinted(err)
				for e := err; e != nil; e = errors.Unwrap(e) {
					text += secPrinted(e)
				}
				var te *runnerapi.TransportError
				if errors.As(err, &te) {
					text += te.Error() + fmt.Sprint(te.Err)
				}
				for _, v := range vals {
					text += secPrinted(v)
				}
				assert.Empty(t, secFind(text), "%s: %s", c.name, err)
				assert.NotContains(t, text, secClientBuildToken, "%s: %s", c.name, err)
				// Next ends with its context; the trace endpoints, Update and Delete read no body.
				readsBody := !strings.Contains("Next AppendTrace TraceWriter Update Delete", c.name)
				if c.name != "Next" && (!midBody || readsBody) {
					assert.Contains(t, err.Error(), "proxy", "%s: the cause is still told", c.name)
				}
				if !midBody && c.name != "Next" {
					assert.ErrorIs(t, err, io.ErrUnexpectedEOF, "%s: the cause is still found", c.name)
					var op *net.OpError
					assert.ErrorAs(t, err, &op, "%s", c.name)
					if c.name != "TraceWriter" {
						assert.True(t, runnerapi.IsTransient(err), "%s: a refused dial is transient", c.name)
					}
				}
			}
			logMu.Lock()
			logText := logs.String()
			logMu.Unlock()
			if !midBody {
				// A body that fails is the call's failure, not the attempt's: only a failed exchange is logged.
				assert.Contains(t, logText, "proxy", "the failures were not logged: the check would prove nothing")
			}
			assert.Empty(t, secFind(logText), logText)
			assert.NotContains(t, logText, secClientBuildToken)

			if !midBody {
				// Register retries only a request that surely had no effect: a dial failure, found through the
				// scrubbed cause.
				tr.mu.Lock()
				tr.calls = 0
				tr.mu.Unlock()
				_, resp, err := cl.Builds.Register(context.Background(), nil)
				require.Error(t, err)
				assert.Nil(t, resp)
				tr.mu.Lock()
				assert.Equal(t, 2, tr.calls, "a refused register is sent again once")
				tr.mu.Unlock()
			}
		})
	}
}
