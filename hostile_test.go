package runnerapi_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/runnerapi/runnerapi"
)

// hostileMode is how a hostile server misbehaves.
type hostileMode int

const (
	// hostileSilent accepts, reads everything sent, and never answers.
	hostileSilent hostileMode = iota
	// hostileTrickle answers with headers at once, then one body byte every few milliseconds, forever.
	hostileTrickle
	// hostileEndless answers with headers at once, then an endless body as fast as the client reads it.
	hostileEndless
	// hostileHugeJSON answers 201 with a well-formed build whose JSON is 1 GiB long.
	hostileHugeJSON
	// hostileHolding answers every request at once with 202, "Job-Status: running" and an update interval of a
	// second, forever: the v4 coordinator that never finishes a job's final update.
	hostileHolding
)

// hostileServer is a raw TCP server that misbehaves in one way on every connection.
type hostileServer struct {
	ln    net.Listener
	mode  hostileMode
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	done  chan struct{}
	// sent counts body bytes written to clients.
	sent int64
}

func newHostileServer(t *testing.T, mode hostileMode) *hostileServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &hostileServer{ln: ln, mode: mode, conns: make(map[net.Conn]struct{}), done: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[conn] = struct{}{}
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer conn.Close()
				s.serve(conn)
			}()
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *hostileServer) url() string { return "http://" + s.ln.Addr().String() }

func (s *hostileServer) close() {
	close(s.done)
	_ = s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *hostileServer) serve(conn net.Conn) {
	br := bufio.NewReader(conn)
	if s.mode == hostileSilent {
		_, _ = io.Copy(io.Discard, br)
		return
	}
	if s.mode == hostileHolding {
		s.hold(conn, br)
		return
	}
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	// Swallow the request body, whatever comes, while answering.
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_, _ = io.Copy(io.Discard, br)
	}()
	status := 200
	switch {
	case req.Method == http.MethodPost:
		status = 201
	case req.Method == http.MethodPatch:
		status = 202
	}
	head := fmt.Sprintf("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nRange: 0-0\r\nBuild-Status: running\r\n"+
		"Job-Status: running\r\nX-GitLab-Trace-Update-Interval: 1\r\n"+
		"Content-Disposition: attachment; filename=a.zip\r\nConnection: close\r\n", status, http.StatusText(status))
	if s.mode == hostileHugeJSON {
		head += fmt.Sprintf("Content-Length: %d\r\n", int64(1)<<30)
	}
	if _, err := io.WriteString(conn, head+"\r\n"); err != nil {
		return
	}
	if _, err := io.WriteString(conn, `{"id":1,"token":"t","commands":"`); err != nil {
		return
	}
	chunk := []byte(strings.Repeat("a", 32<<10))
	for {
		select {
		case <-s.done:
			return
		default:
		}
		p := chunk
		if s.mode == hostileTrickle {
			p = chunk[:1]
			time.Sleep(5 * time.Millisecond)
		}
		n, err := conn.Write(p)
		s.mu.Lock()
		s.sent += int64(n)
		s.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// hold answers each request on conn with 202 and an empty body, keeping the connection for the next one.
func (s *hostileServer) hold(conn net.Conn, br *bufio.Reader) {
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		_ = req.Body.Close()
		select {
		case <-s.done:
			return
		default:
		}
		if _, err := io.WriteString(conn, "HTTP/1.1 202 Accepted\r\nJob-Status: running\r\nRange: 0-0\r\n"+
			"X-GitLab-Trace-Update-Interval: 1\r\nContent-Length: 0\r\n\r\n"); err != nil {
			return
		}
	}
}

// hostileAPIs are the APIs every hostile test runs on: each call of hostileCalls is made on those it exists in.
var hostileAPIs = []struct {
	name string
	api  runnerapi.API
}{{"v1", runnerapi.APIv1}, {"v4", runnerapi.APIv4}}

// hostileClient is a client with its own transport, closed at the end of the test, so that goleak sees no idle
// connection of an earlier test.
func hostileClient(t *testing.T, url string, opts ...runnerapi.Option) *runnerapi.Client {
	t.Helper()
	tr := &http.Transport{ExpectContinueTimeout: 100 * time.Millisecond}
	t.Cleanup(tr.CloseIdleConnections)
	opts = append([]runnerapi.Option{
		runnerapi.WithHTTPClient(&http.Client{Transport: tr}),
		runnerapi.WithRunnerToken("hostile-runner-token"),
		runnerapi.WithBuildToken("hostile-build-token"),
		runnerapi.WithRetryPolicy(runnerapi.RetryPolicy{MaxRetries: 2, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}),
	}, opts...)
	cl, err := runnerapi.NewClient(url, opts...)
	require.NoError(t, err)
	return cl
}

// hostileCall is one SDK call made against a hostile server.
type hostileCall struct {
	name string
	// ctxOnly calls are bounded by their context alone (streams, and Next, which waits out failures); the others
	// also by the client's per-attempt timeout.
	ctxOnly bool
	// bodyless calls need only the answer's status and headers: a 2xx whose body never ends is still a success.
	// So do uploads: their 201 says the file is stored, and its body is read only as far as it can be.
	bodyless bool
	run      func(ctx context.Context, cl *runnerapi.Client, dir string) error
	// api is the one API the call exists in; zero for calls made on both.
	api runnerapi.API
}

// hostileCalls are the calls made on api: those of both APIs, and those of api alone.
func hostileCalls(api runnerapi.API) []hostileCall {
	var calls []hostileCall
	for _, c := range hostileAllCalls() {
		if c.api == 0 || c.api == api {
			calls = append(calls, c)
		}
	}
	return calls
}

// hostileJob is the v4 job the v4 calls report on.
var hostileJob = &runnerapi.Job{ID: 1, Token: "hostile-job-token"}

// hostileAllCalls lists every call: the v1 builds calls, the v4 jobs and runners calls, and the trace writer and
// artifacts calls that both APIs share (on v4, with a report's artifact type).
func hostileAllCalls() []hostileCall {
	return []hostileCall{
		{"Register", false, false, func(ctx context.Context, cl *runnerapi.Client, _ string) error {
			_, _, err := cl.Builds.Register(ctx, nil)
			return err
		}, runnerapi.APIv1},
		{"Next", true, false, func(ctx context.Context, cl *runnerapi.Client, _ string) error {
			_, _, err := cl.Builds.Next(ctx, &runnerapi.NextOptions{Interval: time.Millisecond})
			return err
		}, runnerapi.APIv1},
		{"Update", false, true, func(ctx context.Context, cl *runnerapi.Client, _ string) error {
			_, err := cl.Builds.Update(ctx, 1, &runnerapi.UpdateOptions{State: runnerapi.StateSuccess})
			return err
		}, runnerapi.APIv1},
		{"AppendTrace", false, true, func(ctx context.Context, cl *runnerapi.Client, _ string) error {
			_, _, err := cl.Builds.AppendTrace(ctx, 1, 0, []byte("hello\n"))
			return err
		}, runnerapi.APIv1},
		{"Delete", false, true, func(ctx context.Context, cl *runnerapi.Client, _ string) error {
			_, err := cl.Artifacts.Delete(ctx, 1)
			return err
		}, runnerapi.APIv1},
		{"TraceWriter", false, false, func(ctx context.Context, cl *runnerapi.Client, _ string) error {
			// The writer goes on for StopGrace after ctx ends, to deliver what was written: a short one here.
			w, err := cl.NewTraceWriter(ctx, 1, &runnerapi.TraceOptions{FlushInterval: time.Millisecond, KeepAlive: -1, StopGrace: 100 * time.Millisecond})
			if err != nil {
				return err
			}
			_, _ = w.Write([]byte("hello\n"))
			ferr := w.Flush(ctx)
			cerr := w.Close()
			if ferr == nil || cerr == nil {
				return fmt.Errorf("flush: %v, close: %v", ferr, cerr)
			}
			return cerr
		}, runnerapi.APIv1},
		{"Jobs.Request", false, false, func(ctx context.Context, cl *runnerapi.Client, _ string) error {
			_, _, err := cl.Jobs.Request(ctx, &runnerapi.JobRequestOptions{SystemID: "s_0123456789ab"})
			return err
		}, runnerapi.APIv4},
		{"Jobs.Next", true, false, func(ctx context.Context, cl *runnerapi.Client, _ string) error {
			_, _, err := cl.Jobs.Next(ctx, &runnerapi.JobNextOptions{Interval: time.Millisecond})
			return err
		}, runnerapi.APIv4},
		{"Jobs.Update", false, true, func(ctx context.Context, cl *runnerapi.Client, _ string) error {
			_, _, err := cl.Jobs.Update(ctx, hostileJob.ID, &runnerapi.JobUpdateOptions{State: runnerapi.StateSuccess},
				runnerapi.WithToken(hostileJob.Token))
			return err
		}, runnerapi.APIv4},
		{"JobTraceWriter", false, false, func(ctx context.Context, cl *runnerapi.Client, _ string) error {
			w, err := cl.NewJobTraceWriter(ctx, hostileJob, &runnerapi.TraceOptions{FlushInterval: time.Millisecond, KeepAlive: -1, StopGrace: 100 * time.Millisecond})
			if err != nil {
				return err
			}
			_, _ = w.Write([]byte("hello\n"))
			ferr := w.Flush(ctx)
			cerr := w.Close()
			if ferr == nil || cerr == nil {
				return fmt.Errorf("flush: %v, close: %v", ferr, cerr)
			}
			return cerr
		}, runnerapi.APIv4},
		{"Runners.Register", false, false, func(ctx context.Context, cl *runnerapi.Client, _ string) error {
			_, _, err := cl.Runners.Register(ctx, "hostile-registration-token", nil)
			return err
		}, runnerapi.APIv4},
		{"Runners.Verify", false, false, func(ctx context.Context, cl *runnerapi.Client, _ string) error {
			_, _, err := cl.Runners.Verify(ctx, "glrt-hostile-runner-token", &runnerapi.VerifyRunnerOptions{SystemID: "s_0123456789ab"})
			return err
		}, runnerapi.APIv4},
		{"Runners.Unregister", false, true, func(ctx context.Context, cl *runnerapi.Client, _ string) error {
			_, err := cl.Runners.Unregister(ctx, "glrt-hostile-runner-token")
			return err
		}, runnerapi.APIv4},
		{"Runners.ResetToken", false, false, func(ctx context.Context, cl *runnerapi.Client, _ string) error {
			_, _, err := cl.Runners.ResetToken(ctx, "glrt-hostile-runner-token")
			return err
		}, runnerapi.APIv4},
		{"Upload", true, true, func(ctx context.Context, cl *runnerapi.Client, _ string) error {
			_, _, err := cl.Artifacts.Upload(ctx, 1, io.LimitReader(hostileZeros{}, 8<<20), hostileUploadOptions(cl))
			return err
		}, 0},
		{"UploadFile", true, true, func(ctx context.Context, cl *runnerapi.Client, dir string) error {
			p := filepath.Join(dir, "up.bin")
			if err := os.WriteFile(p, make([]byte, 2<<20), 0o644); err != nil {
				return err
			}
			_, _, err := cl.Artifacts.UploadFile(ctx, 1, p, hostileUploadOptions(cl))
			return err
		}, 0},
		{"UploadPaths", true, true, func(ctx context.Context, cl *runnerapi.Client, dir string) error {
			if err := os.WriteFile(filepath.Join(dir, "f.txt"), []byte("x"), 0o644); err != nil {
				return err
			}
			_, _, err := cl.Artifacts.UploadPaths(ctx, 1, dir, []string{"f.txt"}, hostileUploadOptions(cl))
			return err
		}, 0},
		{"Download", true, false, func(ctx context.Context, cl *runnerapi.Client, _ string) error {
			_, _, err := cl.Artifacts.Download(ctx, 1, io.Discard, nil)
			return err
		}, 0},
		{"DownloadFile", true, false, func(ctx context.Context, cl *runnerapi.Client, dir string) error {
			_, _, err := cl.Artifacts.DownloadFile(ctx, 1, filepath.Join(dir, "down.zip"), nil)
			return err
		}, 0},
		{"Open", true, false, func(ctx context.Context, cl *runnerapi.Client, _ string) error {
			rc, _, err := cl.Artifacts.Open(ctx, 1)
			if err != nil {
				return err
			}
			defer rc.Close()
			_, err = io.Copy(io.Discard, rc)
			if err == nil {
				return errors.New("the endless file ended")
			}
			return err
		}, 0},
		{"Extract", true, false, func(ctx context.Context, cl *runnerapi.Client, dir string) error {
			_, _, err := cl.Artifacts.Extract(ctx, 1, filepath.Join(dir, "out"), &runnerapi.ExtractOptions{TempDir: dir})
			return err
		}, 0},
	}
}

// hostileUploadOptions are an upload's options on cl's API: on v4 a report, so that the artifact_type and
// artifact_format parameters go out too.
func hostileUploadOptions(cl *runnerapi.Client) *runnerapi.UploadOptions {
	if cl.API() == runnerapi.APIv4 {
		return &runnerapi.UploadOptions{ArtifactType: "junit", ArtifactFormat: "gzip"}
	}
	return nil
}

type hostileZeros struct{}

func (hostileZeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// hostileWithin fails the test if fn does not return within limit: a hang detector, not a speed check.
func hostileWithin(t *testing.T, limit time.Duration, what string, fn func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		t.Fatalf("%s did not end within %v", what, limit)
		return nil
	}
}

func hostileLeakCheck(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

// TestHostileServersContextEndsEveryCall: against a server that never answers, one that trickles its answer and one
// whose answer never ends, every call returns once its context ends, and leaves no goroutine and no temporary file
// behind. A call that fails says why; calls that need only the status (an upload's 201 among them) succeed.
func TestHostileServersContextEndsEveryCall(t *testing.T) {
	for _, mode := range []struct {
		name string
		mode hostileMode
	}{{"silent", hostileSilent}, {"trickle", hostileTrickle}, {"endless", hostileEndless}} {
		for _, api := range hostileAPIs {
			t.Run(mode.name+"/"+api.name, func(t *testing.T) {
				hostileLeakCheck(t)
				srv := newHostileServer(t, mode.mode)
				// No per-attempt timeout: the context alone must end every call.
				cl := hostileClient(t, srv.url(), runnerapi.WithAPI(api.api), runnerapi.WithTimeout(0))
				for _, c := range hostileCalls(api.api) {
					t.Run(c.name, func(t *testing.T) {
						t.Parallel()
						dir := t.TempDir()
						ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
						defer cancel()
						err := hostileWithin(t, 20*time.Second, c.name, func() error { return c.run(ctx, cl, dir) })
						hostileNoTempFiles(t, dir)
						if c.bodyless && mode.mode != hostileSilent {
							if strings.HasPrefix(c.name, "Upload") {
								assert.NoError(t, err, "a 201 stores the file, whatever its body")
							}
							if err == nil {
								return
							}
						}
						require.Error(t, err)
						assert.True(t, strings.HasPrefix(err.Error(), "runnerapi: "), err.Error())
						switch {
						case mode.mode == hostileEndless && strings.Contains(err.Error(), "larger than"):
							// An endless JSON answer ends at the size bound before the context does.
						case strings.HasSuffix(c.name, "TraceWriter") && mode.mode != hostileSilent:
							// "Range: 0-0" on every answer: no progress, which may end the writer before its context.
							assert.True(t, errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "without progress"), err.Error())
						default:
							assert.ErrorIs(t, err, context.DeadlineExceeded)
						}
					})
				}
			})
		}
	}
}

// hostileNoTempFiles checks that a failed call left in dir only what the test itself made there.
func hostileNoTempFiles(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		switch e.Name() {
		case "up.bin", "f.txt":
		default:
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

// TestHostileServersDefaultTimeout: calls whose request and answer are small end by the client's per-attempt
// timeout (DefaultTimeout unless WithTimeout says otherwise) even with a context that never ends, with a transient
// error.
func TestHostileServersDefaultTimeout(t *testing.T) {
	for _, mode := range []struct {
		name string
		mode hostileMode
	}{{"silent", hostileSilent}, {"trickle", hostileTrickle}} {
		for _, api := range hostileAPIs {
			t.Run(mode.name+"/"+api.name, func(t *testing.T) {
				hostileLeakCheck(t)
				srv := newHostileServer(t, mode.mode)
				cl := hostileClient(t, srv.url(), runnerapi.WithAPI(api.api), runnerapi.WithTimeout(100*time.Millisecond))
				for _, c := range hostileCalls(api.api) {
					if c.ctxOnly {
						continue
					}
					t.Run(c.name, func(t *testing.T) {
						t.Parallel()
						err := hostileWithin(t, 20*time.Second, c.name, func() error { return c.run(context.Background(), cl, t.TempDir()) })
						if c.bodyless && mode.mode != hostileSilent && err == nil {
							return
						}
						require.Error(t, err)
						switch {
						case strings.HasSuffix(c.name, "TraceWriter") && mode.mode == hostileSilent:
							assert.Contains(t, err.Error(), "no answer within 100ms")
						case strings.HasSuffix(c.name, "TraceWriter"):
							assert.Contains(t, err.Error(), "without progress")
						case mode.mode == hostileSilent:
							assert.True(t, runnerapi.IsTransient(err), "%v", err)
							assert.Contains(t, err.Error(), "deadline exceeded")
						default:
							// The answer's status arrived; its body did not.
							assert.Regexp(t, `(decoding answer|reading body): context deadline exceeded`, err.Error())
						}
					})
				}
			})
		}
	}
}

// TestHostileHoldingServerContextEndsUpdate: a v4 coordinator that answers the final update with 202 and an
// update interval forever (it never finishes storing the trace) holds Jobs.Update only until its context ends,
// with an error that says so; the trace writer, answered 202 without progress, ends too. A context that never ends
// is no test here: Update's own bound is 64 answers at the interval asked for, minutes long.
func TestHostileHoldingServerContextEndsUpdate(t *testing.T) {
	hostileLeakCheck(t)
	srv := newHostileServer(t, hostileHolding)
	cl := hostileClient(t, srv.url(), runnerapi.WithAPI(runnerapi.APIv4), runnerapi.WithTimeout(0))
	for _, c := range hostileCalls(runnerapi.APIv4) {
		if c.name != "Jobs.Update" && c.name != "JobTraceWriter" {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
			defer cancel()
			err := hostileWithin(t, 20*time.Second, c.name, func() error { return c.run(ctx, cl, t.TempDir()) })
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), "runnerapi: "), err.Error())
			if c.name == "Jobs.Update" {
				assert.ErrorIs(t, err, context.DeadlineExceeded)
				assert.Contains(t, err.Error(), "held the update")
				assert.NotContains(t, err.Error(), hostileJob.Token)
				return
			}
			assert.True(t, errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "without progress"), err.Error())
		})
	}
}

// TestHostileHugeBuildJSON: a 1 GiB build stops being read once the answer passes the JSON bound, without
// reading, let alone holding, the rest: register fails, while an upload, whose 201 says the file is stored,
// succeeds.
func TestHostileHugeBuildJSON(t *testing.T) {
	hostileLeakCheck(t)
	srv := newHostileServer(t, hostileHugeJSON)
	v1 := hostileClient(t, srv.url(), runnerapi.WithoutRetries())
	v4 := hostileClient(t, srv.url(), runnerapi.WithAPI(runnerapi.APIv4), runnerapi.WithoutRetries())
	ctx := context.Background()
	for _, c := range []struct {
		name    string
		created bool // the call succeeds on the 201 alone
		run     func() error
	}{
		{"v1/Register", false, func() error { _, _, err := v1.Builds.Register(ctx, nil); return err }},
		{"v1/Upload", true, func() error {
			_, _, err := v1.Artifacts.Upload(ctx, 1, strings.NewReader("zip"), nil)
			return err
		}},
		{"v4/Jobs.Request", false, func() error { _, _, err := v4.Jobs.Request(ctx, nil); return err }},
		{"v4/Runners.Register", false, func() error {
			_, _, err := v4.Runners.Register(ctx, "hostile-registration-token", nil)
			return err
		}},
		{"v4/Runners.ResetToken", false, func() error {
			_, _, err := v4.Runners.ResetToken(ctx, "glrt-hostile-runner-token")
			return err
		}},
		{"v4/Upload", true, func() error {
			_, _, err := v4.Artifacts.Upload(ctx, 1, strings.NewReader("zip"), hostileUploadOptions(v4))
			return err
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err := hostileWithin(t, 30*time.Second, c.name, c.run)
			runtime.ReadMemStats(&after)
			if c.created {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
				assert.Contains(t, err.Error(), "larger than")
			}
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("%s: %d MiB allocated in all for a 1 GiB answer", c.name, alloc>>20)
			// The decoder's buffer grows to the 16 MiB bound, doubling: well under 128 MiB in all.
			assert.Less(t, alloc, uint64(128<<20))
		})
	}
	srv.mu.Lock()
	sent := srv.sent
	srv.mu.Unlock()
	assert.Less(t, sent, int64(512<<20), "the client read far beyond its bound")
}
