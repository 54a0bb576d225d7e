package runnerapi

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	coordBuildToken  = "build-token-Qx7Jm2"
	coordRunnerToken = "runner-token-Zk4Pw9"
	coordBuildID     = 42
)

// coordAction is what the test coordinator does with one PATCH instead of answering it normally.
type coordAction int

const (
	actNormal       coordAction = iota
	actStatus                   // answer status, applying nothing
	actDropBefore               // close the connection, applying nothing
	actDropAfter                // apply the part, then close the connection
	actApplyStatus              // apply the part, then answer status
	actApplyPartial             // apply the first keep bytes, answer 202 with that length
	actBadRange                 // apply the part, answer 202 with Range: rangeValue
	actStall                    // hold the request until the client gives up, applying nothing
	actBare202                  // apply the first keep bytes (all when keep is 0), answer 202 without Range
	actLateApply                // hold the request until the client gives up, then apply it late (see lateApply)
)

// lateApply is a part that GitLab 8.x's append_trace held after its length check, past the client's patience, and
// then applied: it truncates the trace to the part's start, then appends the part, cutting off whatever the
// client sent meanwhile. File.truncate pads with zero bytes a trace shorter than the part's start.
type lateApply struct {
	after   int           // the part lands once request number after has been answered
	follows *lateApply    // when set, the part lands only after that one has
	release chan struct{} // closed when it has
	landed  chan struct{} // closed once the part has landed; requests after number after wait for it
	once    sync.Once
}

// lateApply adds a part to hold (the fault actLateApply names it) that lands once request number after has been
// answered.
func (c *traceCoord) lateApply(t testing.TB, after int) *lateApply {
	l := &lateApply{after: after, release: make(chan struct{}), landed: make(chan struct{})}
	t.Cleanup(l.free) // before the server's Close, which waits for the held request
	c.mu.Lock()
	c.lates = append(c.lates, l)
	c.mu.Unlock()
	return l
}

// waitLanded waits, with c.mu held and released meanwhile, until every held part due before request n has landed.
func (c *traceCoord) waitLanded(n int) {
	for _, l := range c.lates {
		if n > l.after {
			c.mu.Unlock()
			<-l.landed
			c.mu.Lock()
		}
	}
}

func (l *lateApply) free() { l.once.Do(func() { close(l.release) }) }

type coordFault struct {
	act        coordAction
	status     int
	retryAfter string
	rangeValue string
	keep       int
	// buildStatus, when set, is the Build-Status of a bare 202 instead of the build's.
	buildStatus string
	late        *lateApply // the part actLateApply holds
}

// receivedPart is one PATCH the test coordinator received.
type receivedPart struct {
	start, end int64
	n          int
}

// traceCoord is a coordinator that keeps one build's trace, answers the trace PATCH and the update PUT as
// PROTOCOL.md says, and injects faults.
type traceCoord struct {
	t   testing.TB
	srv *httptest.Server

	buildToken string // the token PATCH wants: coordBuildToken unless set

	mu           sync.Mutex
	trace        []byte
	status       string
	parts        []receivedPart
	badRanges    int // parts whose Content-Range END was not START plus their length
	updates      int
	noPatch      bool // a coordinator before 8.7: PATCH answers 404
	updateStatus int  // when set, PUT answers this
	requests     int
	fault        func(c *traceCoord, n int, start int64, body []byte) coordFault // called with mu held
	lates        []*lateApply                                                    // for actLateApply
}

func newTraceCoord(t testing.TB) *traceCoord {
	c := &traceCoord{t: t, status: "running"}
	c.srv = httptest.NewServer(http.HandlerFunc(c.serve))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *traceCoord) serve(w http.ResponseWriter, r *http.Request) {
	tracePath := "/ci/api/v1/builds/" + strconv.Itoa(coordBuildID) + "/trace.txt"
	switch {
	case r.Method == http.MethodPatch && r.URL.Path == tracePath:
		c.servePatch(w, r)
	case r.Method == http.MethodPut && r.URL.Path == "/ci/api/v1/builds/"+strconv.Itoa(coordBuildID):
		c.serveUpdate(w, r)
	default:
		http.Error(w, `{"message":"404 Not Found"}`, http.StatusNotFound)
	}
}

func (c *traceCoord) servePatch(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("BUILD-TOKEN") != cmp.Or(c.buildToken, coordBuildToken) {
		http.Error(w, `{"message":"403 Forbidden"}`, http.StatusForbidden)
		return
	}
	s, e, ok := strings.Cut(r.Header.Get("Content-Range"), "-")
	start, err1 := strconv.ParseInt(s, 10, 64)
	end, err2 := strconv.ParseInt(e, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		http.Error(w, `{"error":"400 Missing header Content-Range"}`, http.StatusBadRequest)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	c.mu.Lock()
	c.requests++
	n := c.requests
	c.waitLanded(n)
	c.parts = append(c.parts, receivedPart{start: start, end: end, n: len(body)})
	if end-start != int64(len(body)) {
		c.badRanges++
	}
	if c.noPatch {
		c.mu.Unlock()
		http.Error(w, `{"message":"404 Not Found"}`, http.StatusNotFound)
		return
	}
	var f coordFault
	if c.fault != nil {
		f = c.fault(c, n, start, body)
	}
	answer := func(code int, rangeValue string) {
		w.Header().Set("Range", rangeValue)
		w.Header().Set("Build-Status", c.status)
		if f.retryAfter != "" {
			w.Header().Set("Retry-After", f.retryAfter)
		}
		w.WriteHeader(code)
		if code == http.StatusRequestedRangeNotSatisfiable {
			_, _ = io.WriteString(w, `{"error":"416 Range Not Satisfiable"}`)
		}
		for _, l := range c.lates {
			if n == l.after {
				l.free()
			}
		}
	}
	fits := start == int64(len(c.trace))
	switch f.act {
	case actStatus:
		c.mu.Unlock()
		w.Header().Set("Retry-After", f.retryAfter)
		w.WriteHeader(f.status)
		return
	case actDropBefore:
		c.mu.Unlock()
		hangUp(w)
		return
	case actStall:
		c.mu.Unlock()
		<-r.Context().Done()
		return
	case actLateApply:
		if fits {
			c.mu.Unlock()
			<-r.Context().Done()
			<-f.late.release
			if f.late.follows != nil {
				<-f.late.follows.landed
			}
			c.mu.Lock()
			if pad := start - int64(len(c.trace)); pad > 0 {
				c.trace = append(c.trace, make([]byte, pad)...)
			}
			c.trace = append(c.trace[:start], body...)
			close(f.late.landed)
			c.mu.Unlock()
			return
		}
	case actBare202:
		if fits {
			kept := body
			if f.keep > 0 {
				kept = body[:f.keep]
			}
			c.trace = append(c.trace, kept...)
			w.Header().Set("Build-Status", cmp.Or(f.buildStatus, c.status))
			w.WriteHeader(http.StatusAccepted)
			c.mu.Unlock()
			return
		}
	case actApplyPartial:
		if fits {
			c.trace = append(c.trace, body[:f.keep]...)
			answer(http.StatusAccepted, "0-"+strconv.Itoa(len(c.trace)))
			c.mu.Unlock()
			return
		}
	}
	if !fits {
		answer(http.StatusRequestedRangeNotSatisfiable, "0-"+strconv.Itoa(len(c.trace)))
		c.mu.Unlock()
		return
	}
	c.trace = append(c.trace, body...)
	switch f.act {
	case actDropAfter:
		c.mu.Unlock()
		hangUp(w)
		return
	case actApplyStatus:
		c.mu.Unlock()
		w.WriteHeader(f.status)
		return
	case actBadRange:
		answer(http.StatusAccepted, f.rangeValue)
		c.mu.Unlock()
		return
	}
	answer(http.StatusAccepted, "0-"+strconv.Itoa(len(c.trace)))
	c.mu.Unlock()
}

func hangUp(w http.ResponseWriter) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		_ = conn.Close()
	}
}

func (c *traceCoord) serveUpdate(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.PostForm.Get("token") != coordRunnerToken {
		http.Error(w, `{"message":"403 Forbidden"}`, http.StatusForbidden)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.requests++
	c.waitLanded(c.requests)
	if c.updateStatus != 0 {
		http.Error(w, `{"message":"`+strconv.Itoa(c.updateStatus)+`"}`, c.updateStatus)
		return
	}
	c.updates++
	if _, ok := r.PostForm["trace"]; ok {
		c.trace = []byte(r.PostForm.Get("trace"))
	}
	_, _ = io.WriteString(w, "true")
}

func (c *traceCoord) snapshot() (trace []byte, parts []receivedPart) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.trace), append([]receivedPart(nil), c.parts...)
}

func (c *traceCoord) setFault(f func(c *traceCoord, n int, start int64, body []byte) coordFault) {
	c.mu.Lock()
	c.fault = f
	c.mu.Unlock()
}

// faultAt applies f to request number n only.
func faultAt(n int, f coordFault) func(*traceCoord, int, int64, []byte) coordFault {
	return func(_ *traceCoord, i int, _ int64, _ []byte) coordFault {
		if i == n {
			return f
		}
		return coordFault{}
	}
}

// client is a client of the test coordinator with fast retries.
func (c *traceCoord) client(t testing.TB, opts ...Option) *Client {
	t.Helper()
	base := []Option{
		WithHTTPClient(c.srv.Client()),
		WithBuildToken(coordBuildToken),
		WithRunnerToken(coordRunnerToken),
		WithRetryPolicy(RetryPolicy{MaxRetries: 8, BaseDelay: time.Millisecond, MaxDelay: 4 * time.Millisecond, MaxRetryAfter: 5 * time.Millisecond}),
	}
	cl, err := NewClient(c.srv.URL, append(base, opts...)...)
	require.NoError(t, err)
	return cl
}

// writer starts a TraceWriter on the test coordinator; its flush interval and keep-alive are long unless set.
func (c *traceCoord) writer(t testing.TB, cl *Client, o TraceOptions) *TraceWriter {
	t.Helper()
	if o.FlushInterval == 0 {
		o.FlushInterval = time.Hour
	}
	if o.KeepAlive == 0 {
		o.KeepAlive = -1
	}
	if o.ConfirmDelay == 0 {
		o.ConfirmDelay = time.Millisecond // nothing lands late here unless a test says so
	}
	w, err := cl.NewTraceWriter(context.Background(), coordBuildID, &o)
	require.NoError(t, err)
	return w
}

// assertContiguous checks that every non-empty part started where the coordinator's trace ended before it and
// carried a Content-Range matching its length.
func assertContiguous(t *testing.T, c *traceCoord) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	assert.Zero(t, c.badRanges, "parts whose Content-Range does not match their length")
}

func traceText(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	var b bytes.Buffer
	for b.Len() < n {
		fmt.Fprintf(&b, "line %d: %x\n", b.Len(), r.Uint64())
	}
	return b.Bytes()[:n]
}

func TestTraceWriterCoalescesOneByteWrites(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	w := c.writer(t, c.client(t), TraceOptions{})
	want := traceText(10000, 1)
	for i := range want {
		n, err := w.Write(want[i : i+1])
		require.NoError(t, err)
		require.Equal(t, 1, n)
	}
	require.NoError(t, w.Close())
	trace, parts := c.snapshot()
	assert.Equal(t, want, trace)
	assert.Equal(t, []receivedPart{{start: 0, end: 10000, n: 10000}}, parts)
	st := w.Stats()
	assert.Equal(t, TraceStats{Written: 10000, Length: 10000, Acknowledged: 10000, Requests: 1}, st)
}

func TestTraceWriterLargeWriteBecomesContiguousParts(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	w := c.writer(t, c.client(t), TraceOptions{})
	want := traceText(10<<20, 2)
	n, err := w.Write(want)
	require.NoError(t, err)
	require.Equal(t, len(want), n)
	require.NoError(t, w.Close())
	trace, parts := c.snapshot()
	assert.True(t, bytes.Equal(want, trace), "trace differs")
	require.Len(t, parts, 10)
	for i, p := range parts {
		assert.Equal(t, receivedPart{start: int64(i) << 20, end: int64(i+1) << 20, n: 1 << 20}, p)
	}
	assertContiguous(t, c)
}

func TestTraceWriterFlushesAfterInterval(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	w := c.writer(t, c.client(t), TraceOptions{FlushInterval: 10 * time.Millisecond})
	_, err := w.Write([]byte("hello "))
	require.NoError(t, err)
	_, err = w.Write([]byte("world\n"))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		trace, _ := c.snapshot()
		return string(trace) == "hello world\n"
	}, 5*time.Second, time.Millisecond, "written bytes were not sent without Flush")
	_, parts := c.snapshot()
	assert.Equal(t, []receivedPart{{start: 0, end: 12, n: 12}}, parts)
	require.NoError(t, w.Close())
}

func TestTraceWriterKeepAlive(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	w := c.writer(t, c.client(t), TraceOptions{KeepAlive: 5 * time.Millisecond})
	require.Eventually(t, func() bool {
		_, parts := c.snapshot()
		return len(parts) >= 2
	}, 5*time.Second, time.Millisecond)
	c.mu.Lock()
	c.status = "canceled"
	c.mu.Unlock()
	select {
	case <-w.Canceled():
	case <-time.After(5 * time.Second):
		t.Fatal("a keep-alive did not learn that the build was canceled")
	}
	require.NoError(t, w.Close())
	_, parts := c.snapshot()
	for _, p := range parts {
		assert.Equal(t, receivedPart{}, p, "a keep-alive is an empty part at the trace's length")
	}
	assert.Equal(t, StateCanceled, w.Status())
}

func TestTraceWriterSendsNoEmptyParts(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	w := c.writer(t, c.client(t), TraceOptions{FlushInterval: time.Millisecond, ChunkSize: 64})
	ctx := context.Background()
	require.NoError(t, w.Flush(ctx), "flushing nothing")
	want := traceText(5000, 3)
	for i := 0; i < len(want); i += 37 {
		_, err := w.Write(want[i:min(i+37, len(want))])
		require.NoError(t, err)
		if i%7 == 0 {
			require.NoError(t, w.Flush(ctx))
			require.NoError(t, w.Flush(ctx))
		}
	}
	require.NoError(t, w.Close())
	trace, parts := c.snapshot()
	assert.Equal(t, want, trace)
	for _, p := range parts {
		assert.Positive(t, p.n, "empty part at %d", p.start)
		assert.LessOrEqual(t, p.n, 64)
	}
	assertContiguous(t, c)
}

func TestTraceWriterDoesNotKeepP(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	w := c.writer(t, c.client(t), TraceOptions{})
	p := []byte("first line\n")
	_, err := w.Write(p)
	require.NoError(t, err)
	copy(p, "XXXXXXXXXXX")
	_, err = w.Write(p)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	trace, _ := c.snapshot()
	assert.Equal(t, "first line\nXXXXXXXXXXX", string(trace))
}

func TestTraceWriterRange416(t *testing.T) {
	tests := []struct {
		name      string
		preset    string                                                       // the coordinator's trace before the writer starts
		fault     func(c *traceCoord, n int, start int64, b []byte) coordFault // applied on each PATCH
		flush     bool                                                         // after the first 6 bytes
		wantParts []receivedPart
	}{
		{
			name: "coordinator lost its tail: resend",
			fault: func(c *traceCoord, n int, _ int64, _ []byte) coordFault {
				if n == 2 {
					c.trace = c.trace[:3]
				}
				return coordFault{}
			},
			flush:     true,
			wantParts: []receivedPart{{0, 6, 6}, {6, 12, 6}, {3, 12, 9}},
		},
		{
			// An earlier attempt of this run got "abcdefgh" through without the writer learning it.
			name:      "coordinator ahead within the trace: skip",
			preset:    "abcdefgh",
			wantParts: []receivedPart{{0, 12, 12}, {8, 12, 4}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leakCheck(t)
			c := newTraceCoord(t)
			c.trace = []byte(tt.preset)
			c.fault = tt.fault
			w := c.writer(t, c.client(t), TraceOptions{})
			_, err := io.WriteString(w, "abcdef")
			require.NoError(t, err)
			if tt.flush {
				require.NoError(t, w.Flush(context.Background()))
			}
			_, err = io.WriteString(w, "ghijkl")
			require.NoError(t, err)
			require.NoError(t, w.Close())
			trace, parts := c.snapshot()
			assert.Equal(t, "abcdefghijkl", string(trace))
			assert.Equal(t, tt.wantParts, parts)
			assert.Equal(t, int64(1), w.Stats().RangeRecoveries)
		})
	}
}

func TestTraceWriterCoordinatorAheadOfTrace(t *testing.T) {
	t.Run("replaced with a full update", func(t *testing.T) {
		leakCheck(t)
		c := newTraceCoord(t)
		c.trace = []byte("a longer trace left by an earlier attempt of this build\n")
		w := c.writer(t, c.client(t), TraceOptions{})
		_, err := io.WriteString(w, "new run\n")
		require.NoError(t, err)
		require.NoError(t, w.Flush(context.Background()))
		trace, _ := c.snapshot()
		assert.Equal(t, "new run\n", string(trace))
		_, err = io.WriteString(w, "more\n")
		require.NoError(t, err)
		require.NoError(t, w.Close())
		trace, parts := c.snapshot()
		assert.Equal(t, "new run\nmore\n", string(trace))
		assert.Equal(t, []receivedPart{{0, 8, 8}, {8, 13, 5}}, parts)
		st := w.Stats()
		assert.Equal(t, int64(1), st.FullUpdates)
		assert.Equal(t, int64(3), st.Requests)
	})
	t.Run("an error without the runner token", func(t *testing.T) {
		leakCheck(t)
		c := newTraceCoord(t)
		c.trace = []byte("a longer trace left by an earlier attempt of this build\n")
		cl := c.client(t, WithRunnerToken(""))
		w := c.writer(t, cl, TraceOptions{})
		_, err := io.WriteString(w, "new run\n")
		require.NoError(t, err)
		err = w.Close()
		require.Error(t, err)
		assert.Contains(t, err.Error(), "runner token")
		assert.Contains(t, err.Error(), "56 bytes")
		trace, _ := c.snapshot()
		assert.Equal(t, "a longer trace left by an earlier attempt of this build\n", string(trace), "nothing replaced")
	})
}

func TestTraceWriterMalformedRange(t *testing.T) {
	for _, v := range []string{"", "0-", "1-5", "0-x", "0--1", "0-+5", "0-99999999999999999999", "0-9223372036854775808", "bytes 0-5"} {
		t.Run(strconv.Quote(v), func(t *testing.T) {
			leakCheck(t)
			c := newTraceCoord(t)
			c.fault = faultAt(1, coordFault{act: actBadRange, rangeValue: v})
			w := c.writer(t, c.client(t), TraceOptions{})
			_, err := io.WriteString(w, "hello\n")
			require.NoError(t, err)
			err = w.Close()
			require.ErrorIs(t, err, ErrTraceRange)
			_, werr := w.Write([]byte("x"))
			assert.Equal(t, err, werr, "the error is sticky")
			assert.Equal(t, err, w.Close(), "the error is sticky")
		})
	}
}

// GitLab's own runner ignores a 202's Range, and the coordinators in its test suite answer bare 202s: a 202 without
// Range appended the part, and the writer goes on from the part's end.
func TestTraceWriterBare202(t *testing.T) {
	t.Run("every part", func(t *testing.T) {
		leakCheck(t)
		c := newTraceCoord(t)
		c.fault = func(*traceCoord, int, int64, []byte) coordFault { return coordFault{act: actBare202} }
		w := c.writer(t, c.client(t), TraceOptions{ChunkSize: 8})
		want := traceText(100, 11)
		for i := 0; i < len(want); i += 30 {
			_, err := w.Write(want[i:min(i+30, len(want))])
			require.NoError(t, err)
			require.NoError(t, w.Flush(context.Background()))
		}
		require.NoError(t, w.Close())
		trace, parts := c.snapshot()
		assert.Equal(t, string(want), string(trace))
		assert.Greater(t, len(parts), 10, "parts of at most 8 bytes")
		assertContiguous(t, c)
		assert.Equal(t, int64(100), w.Stats().Acknowledged)
		assert.Equal(t, StateRunning, w.Status())
	})
	for _, status := range []string{"failed", "canceled"} {
		t.Run("Build-Status "+status, func(t *testing.T) {
			leakCheck(t)
			c := newTraceCoord(t)
			c.fault = faultAt(1, coordFault{act: actBare202, buildStatus: status})
			w := c.writer(t, c.client(t), TraceOptions{})
			_, err := io.WriteString(w, "first\n")
			require.NoError(t, err)
			require.NoError(t, w.Flush(context.Background()))
			select {
			case <-w.Canceled():
			default:
				t.Fatalf("Canceled not closed by a bare 202 saying %s", status)
			}
			assert.Equal(t, BuildState(status), w.Status())
			_, err = io.WriteString(w, "second\n")
			require.NoError(t, err)
			require.NoError(t, w.Close())
			trace, _ := c.snapshot()
			assert.Equal(t, "first\nsecond\n", string(trace))
		})
	}
	t.Run("a later 416 corrects it", func(t *testing.T) {
		leakCheck(t)
		c := newTraceCoord(t)
		// The coordinator keeps 4 of the 10 bytes and answers a bare 202 all the same.
		c.fault = faultAt(1, coordFault{act: actBare202, keep: 4})
		w := c.writer(t, c.client(t), TraceOptions{})
		_, err := io.WriteString(w, "0123456789")
		require.NoError(t, err)
		require.NoError(t, w.Flush(context.Background()))
		_, err = io.WriteString(w, "abc")
		require.NoError(t, err)
		require.NoError(t, w.Close())
		trace, parts := c.snapshot()
		assert.Equal(t, "0123456789abc", string(trace))
		assert.Equal(t, []receivedPart{{0, 10, 10}, {10, 13, 3}, {4, 13, 9}}, parts)
	})
}

// A 416 stays strict: without a Range, nothing is known of the coordinator's trace, least of all that it is empty.
func TestTraceWriter416WithoutRange(t *testing.T) {
	leakCheck(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
		_, _ = io.WriteString(w, `{"error":"416 Range Not Satisfiable"}`)
	}))
	t.Cleanup(srv.Close)
	cl, err := NewClient(srv.URL, WithHTTPClient(srv.Client()), WithBuildToken(coordBuildToken))
	require.NoError(t, err)
	_, _, err = cl.Builds.AppendTrace(context.Background(), 1, 3, []byte("abc"))
	require.ErrorIs(t, err, ErrTraceRange)
	var re *RangeError
	assert.False(t, errors.As(err, &re), "no length to give")

	w, err := cl.NewTraceWriter(context.Background(), 1, &TraceOptions{KeepAlive: -1})
	require.NoError(t, err)
	_, err = io.WriteString(w, "abc")
	require.NoError(t, err)
	require.ErrorIs(t, w.Close(), ErrTraceRange)
}

func TestTraceWriterAccepted202ShorterThanPart(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	c.fault = faultAt(1, coordFault{act: actApplyPartial, keep: 4})
	w := c.writer(t, c.client(t), TraceOptions{})
	_, err := io.WriteString(w, "0123456789")
	require.NoError(t, err)
	require.NoError(t, w.Close())
	trace, parts := c.snapshot()
	assert.Equal(t, "0123456789", string(trace))
	assert.Equal(t, []receivedPart{{0, 10, 10}, {4, 10, 6}}, parts)
}

func TestTraceWriterDroppedConnections(t *testing.T) {
	for _, tt := range []struct {
		name  string
		act   coordAction
		parts []receivedPart
	}{
		{"after the part was applied: no duplicate", actDropAfter, []receivedPart{{0, 6, 6}, {0, 6, 6}}},
		{"before the part was applied: no gap", actDropBefore, []receivedPart{{0, 6, 6}, {0, 6, 6}}},
		{"5xx after the part was applied", actApplyStatus, []receivedPart{{0, 6, 6}, {0, 6, 6}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			leakCheck(t)
			c := newTraceCoord(t)
			c.fault = faultAt(1, coordFault{act: tt.act, status: http.StatusBadGateway})
			w := c.writer(t, c.client(t), TraceOptions{})
			_, err := io.WriteString(w, "abcdef")
			require.NoError(t, err)
			require.NoError(t, w.Flush(context.Background()))
			_, err = io.WriteString(w, "ghi")
			require.NoError(t, err)
			require.NoError(t, w.Close())
			trace, parts := c.snapshot()
			assert.Equal(t, "abcdefghi", string(trace))
			assert.Equal(t, append(tt.parts, receivedPart{6, 9, 3}), parts)
			assert.Equal(t, int64(1), w.Stats().Retries)
		})
	}
}

func TestTraceWriterAttemptTimeout(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	c.fault = faultAt(1, coordFault{act: actStall})
	w := c.writer(t, c.client(t), TraceOptions{AttemptTimeout: 20 * time.Millisecond})
	_, err := io.WriteString(w, "slow\n")
	require.NoError(t, err)
	require.NoError(t, w.Close())
	trace, parts := c.snapshot()
	assert.Equal(t, "slow\n", string(trace))
	assert.Equal(t, []receivedPart{{0, 5, 5}, {0, 5, 5}, {5, 5, 0}}, parts, "the part, its resend, Close's confirmation")
	assert.Equal(t, int64(1), w.Stats().Retries)
}

// GitLab 8.x truncates the trace to a part's start before appending it. A part abandoned at the attempt timeout
// and resent may still land after later parts were acknowledged, and cut them off; Close must see that and repair
// it before it reports success.
func TestTraceWriterLateAppliedPart(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	late := c.lateApply(t, 3) // the first part lands once the third request (the second part) is answered
	c.fault = faultAt(1, coordFault{act: actLateApply, late: late})
	w := c.writer(t, c.client(t), TraceOptions{AttemptTimeout: 50 * time.Millisecond, ConfirmDelay: time.Millisecond})
	_, err := io.WriteString(w, "first part\n")
	require.NoError(t, err)
	require.NoError(t, w.Flush(context.Background()))
	_, err = io.WriteString(w, "second part\n")
	require.NoError(t, err)
	require.NoError(t, w.Close())
	select {
	case <-late.landed:
	case <-time.After(10 * time.Second):
		t.Fatal("the held part never landed")
	}
	trace, parts := c.snapshot()
	assert.Equal(t, "first part\nsecond part\n", string(trace), "the late part cut the trace back")
	assert.Equal(t, []receivedPart{{0, 11, 11}, {0, 11, 11}, {11, 23, 12}, {23, 23, 0}, {11, 23, 12}, {23, 23, 0}}, parts,
		"the part, its resend, the second part, a confirmation answered 416, the repair, a confirmation")
}

// Two parts held past the client's patience at different offsets can land in either order. A first, then B: A
// cuts the trace back to its end, and B, whose start lies beyond it, has File.truncate pad the gap with zeros and
// leaves the trace exactly as long as what was written. The length proves nothing then: Close replaces the whole
// trace once the delay has passed, and confirms the length after that.
func TestTraceWriterLateAppliedPartsOutOfOrder(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	// Both land once the fifth request (B's resend) is answered, A first.
	first := c.lateApply(t, 5)
	second := c.lateApply(t, 5)
	second.follows = first
	c.fault = func(_ *traceCoord, n int, _ int64, _ []byte) coordFault {
		switch n {
		case 1:
			return coordFault{act: actLateApply, late: first}
		case 4:
			return coordFault{act: actLateApply, late: second}
		}
		return coordFault{}
	}
	w := c.writer(t, c.client(t), TraceOptions{AttemptTimeout: 50 * time.Millisecond, ConfirmDelay: time.Millisecond})
	for _, part := range []string{"first part\n", "second part\n"} {
		_, err := io.WriteString(w, part)
		require.NoError(t, err)
		require.NoError(t, w.Flush(context.Background()))
	}
	_, err := io.WriteString(w, "third part\n")
	require.NoError(t, err)
	require.NoError(t, w.Close())
	for _, l := range []*lateApply{first, second} {
		select {
		case <-l.landed:
		case <-time.After(10 * time.Second):
			t.Fatal("a held part never landed")
		}
	}
	trace, parts := c.snapshot()
	assert.Equal(t, "first part\nsecond part\nthird part\n", string(trace), "the late parts left zeros in the trace")
	assert.Equal(t, []receivedPart{{0, 11, 11}, {0, 11, 11}, {11, 23, 12}, {23, 34, 11}, {23, 34, 11}, {34, 34, 0}}, parts,
		"A, its resend, the second part, B, its resend, the confirmation after the whole trace's update")
	c.mu.Lock()
	assert.Equal(t, 1, c.updates, "one update of the whole trace")
	c.mu.Unlock()
	assert.Equal(t, int64(1), w.Stats().FullUpdates)
}

// Without the runner token the whole trace cannot be replaced: after attempts abandoned at different offsets,
// Close says so rather than vouch for a trace that may hold zeros.
func TestTraceWriterLateAppliedPartsWithoutRunnerToken(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	first := c.lateApply(t, 5)
	second := c.lateApply(t, 5)
	second.follows = first
	c.fault = func(_ *traceCoord, n int, _ int64, _ []byte) coordFault {
		switch n {
		case 1:
			return coordFault{act: actLateApply, late: first}
		case 4:
			return coordFault{act: actLateApply, late: second}
		}
		return coordFault{}
	}
	w := c.writer(t, c.client(t, WithRunnerToken("")), TraceOptions{AttemptTimeout: 50 * time.Millisecond, ConfirmDelay: time.Millisecond})
	for _, part := range []string{"first part\n", "second part\n"} {
		_, err := io.WriteString(w, part)
		require.NoError(t, err)
		require.NoError(t, w.Flush(context.Background()))
	}
	_, err := io.WriteString(w, "third part\n")
	require.NoError(t, err)
	err = w.Close()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "zeros")
	assert.Contains(t, err.Error(), "runner token")
	c.mu.Lock()
	assert.Zero(t, c.updates)
	c.mu.Unlock()
}

// Attempts abandoned at one offset land on a trace at least that long, whatever their order: the length proves
// the trace, and Close replaces nothing.
func TestTraceWriterAbandonedTwiceAtOneOffset(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	c.fault = func(_ *traceCoord, n int, _ int64, _ []byte) coordFault {
		if n <= 2 {
			return coordFault{act: actStall}
		}
		return coordFault{}
	}
	w := c.writer(t, c.client(t), TraceOptions{AttemptTimeout: 20 * time.Millisecond})
	_, err := io.WriteString(w, "slow\n")
	require.NoError(t, err)
	require.NoError(t, w.Close())
	trace, parts := c.snapshot()
	assert.Equal(t, "slow\n", string(trace))
	assert.Equal(t, []receivedPart{{0, 5, 5}, {0, 5, 5}, {0, 5, 5}, {5, 5, 0}}, parts, "the part, twice abandoned, its resend, the confirmation")
	c.mu.Lock()
	assert.Zero(t, c.updates)
	c.mu.Unlock()
}

// An abandoned attempt is confirmed only after ConfirmDelay: an answer sent sooner proves nothing about a request
// that may still be on its way.
func TestTraceWriterConfirmationWaitsConfirmDelay(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	c.fault = faultAt(1, coordFault{act: actStall})
	w := c.writer(t, c.client(t), TraceOptions{AttemptTimeout: 20 * time.Millisecond, ConfirmDelay: time.Hour})
	_, err := io.WriteString(w, "slow\n")
	require.NoError(t, err)
	require.NoError(t, w.Flush(context.Background()), "acknowledged by the second attempt")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err = w.CloseContext(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded, "Close waits the delay before it confirms")
	assert.Contains(t, err.Error(), "confirm")
	trace, parts := c.snapshot()
	assert.Equal(t, "slow\n", string(trace))
	assert.Len(t, parts, 2, "no confirmation before the delay")
}

// A 202 that claims more than the part's end is not believed: the bytes after the part are sent all the same,
// and the coordinator's next answer tells.
func TestTraceWriter202BeyondThePart(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	c.fault = faultAt(1, coordFault{act: actBadRange, rangeValue: "0-20"})
	w := c.writer(t, c.client(t), TraceOptions{ChunkSize: 10})
	_, err := io.WriteString(w, "0123456789abcdefghij")
	require.NoError(t, err)
	require.NoError(t, w.Close())
	trace, parts := c.snapshot()
	assert.Equal(t, "0123456789abcdefghij", string(trace))
	assert.Equal(t, []receivedPart{{0, 10, 10}, {10, 20, 10}}, parts)
}

// A bare 202 to the last part is only assumed to have appended it: Close confirms the length, and repairs.
func TestTraceWriterBare202OnTheLastPartIsConfirmed(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	c.fault = func(_ *traceCoord, n int, _ int64, _ []byte) coordFault {
		if n == 1 {
			return coordFault{act: actBare202, keep: 4} // the coordinator kept 4 bytes of 10
		}
		return coordFault{act: actBare202}
	}
	w := c.writer(t, c.client(t), TraceOptions{})
	_, err := io.WriteString(w, "0123456789")
	require.NoError(t, err)
	require.NoError(t, w.Close())
	trace, parts := c.snapshot()
	assert.Equal(t, "0123456789", string(trace))
	assert.Equal(t, []receivedPart{{0, 10, 10}, {10, 10, 0}, {4, 10, 6}, {10, 10, 0}}, parts)
}

// sleepRecorder records the backoffs a writer asked for, without waiting.
type sleepRecorder struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (s *sleepRecorder) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.waits = append(s.waits, d)
	s.mu.Unlock()
	return ctx.Err()
}

func TestTraceWriterRetriesHonourRetryAfter(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	c.fault = func(_ *traceCoord, n int, _ int64, _ []byte) coordFault {
		switch n {
		case 1:
			return coordFault{act: actStatus, status: http.StatusServiceUnavailable, retryAfter: "7"}
		case 2:
			return coordFault{act: actStatus, status: http.StatusTooManyRequests, retryAfter: "120"}
		case 3:
			return coordFault{act: actStatus, status: http.StatusInternalServerError}
		}
		return coordFault{}
	}
	cl := c.client(t, WithRetryPolicy(RetryPolicy{MaxRetries: 5, BaseDelay: 8 * time.Millisecond, MaxDelay: time.Second, MaxRetryAfter: time.Minute}))
	var sleeps sleepRecorder
	w := c.writer(t, cl, TraceOptions{sleep: sleeps.sleep})
	_, err := io.WriteString(w, "retried\n")
	require.NoError(t, err)
	require.NoError(t, w.Close())
	trace, _ := c.snapshot()
	assert.Equal(t, "retried\n", string(trace))
	require.Len(t, sleeps.waits, 3)
	// Retry-After plus a jitter of up to as long again, so that writers refused together do not retry together.
	assert.True(t, sleeps.waits[0] >= 7*time.Second && sleeps.waits[0] < 14*time.Second, "Retry-After in seconds: %v", sleeps.waits[0])
	assert.True(t, sleeps.waits[1] >= time.Minute && sleeps.waits[1] < 2*time.Minute, "Retry-After capped by MaxRetryAfter: %v", sleeps.waits[1])
	assert.LessOrEqual(t, sleeps.waits[2], 32*time.Millisecond, "third retry: jittered backoff below 4×BaseDelay")
	assert.Equal(t, int64(3), w.Stats().Retries)
	assert.Equal(t, int64(4), w.Stats().Requests)
}

func TestTraceWriterGivesUpAfterRetryPolicy(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	c.fault = func(*traceCoord, int, int64, []byte) coordFault {
		return coordFault{act: actStatus, status: http.StatusServiceUnavailable}
	}
	cl := c.client(t, WithRetryPolicy(RetryPolicy{MaxRetries: 2, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
	w := c.writer(t, cl, TraceOptions{})
	_, err := io.WriteString(w, "never\n")
	require.NoError(t, err)
	err = w.Close()
	require.Error(t, err)
	assert.True(t, IsTransient(err))
	assert.Contains(t, err.Error(), "giving up after 3 attempts")
	assert.Equal(t, int64(3), w.Stats().Requests)
}

func TestTraceWriterFatalStatuses(t *testing.T) {
	for _, tt := range []struct {
		status int
		is     error
	}{
		{http.StatusBadRequest, nil},
		{http.StatusForbidden, ErrForbidden},
		{http.StatusNotFound, ErrNotFound},
		{http.StatusConflict, ErrConflict},
	} {
		t.Run(strconv.Itoa(tt.status), func(t *testing.T) {
			leakCheck(t)
			c := newTraceCoord(t)
			// The first part succeeds, so a later 404 is not the pre-8.7 coordinator's.
			c.fault = faultAt(2, coordFault{act: actStatus, status: tt.status})
			w := c.writer(t, c.client(t), TraceOptions{})
			_, err := io.WriteString(w, "one\n")
			require.NoError(t, err)
			require.NoError(t, w.Flush(context.Background()))
			_, err = io.WriteString(w, "two\n")
			require.NoError(t, err)
			ferr := w.Flush(context.Background())
			require.Error(t, ferr)
			var er *ErrorResponse
			require.ErrorAs(t, ferr, &er)
			assert.Equal(t, tt.status, er.StatusCode)
			if tt.is != nil {
				assert.ErrorIs(t, ferr, tt.is)
			}
			_, werr := w.Write([]byte("three\n"))
			assert.Equal(t, ferr, werr)
			assert.Equal(t, ferr, w.Flush(context.Background()))
			assert.Equal(t, ferr, w.Close())
			assert.Equal(t, ferr, w.Close())
			assert.NotContains(t, ferr.Error(), coordBuildToken)
			_, parts := c.snapshot()
			assert.Len(t, parts, 2, "a fatal status is not retried")
		})
	}
}

func TestTraceWriterBadTokenIsFatalAndSecret(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	w := c.writer(t, c.client(t), TraceOptions{Token: "wrong-token-Ab12Cd"})
	_, err := io.WriteString(w, "x\n")
	require.NoError(t, err)
	err = w.Close()
	require.ErrorIs(t, err, ErrForbidden)
	assert.NotContains(t, err.Error(), "wrong-token-Ab12Cd")
}

func TestTraceWriterWithoutPatchEndpoint(t *testing.T) {
	t.Run("full updates at the flush interval", func(t *testing.T) {
		leakCheck(t)
		c := newTraceCoord(t)
		c.noPatch = true
		w := c.writer(t, c.client(t), TraceOptions{ChunkSize: 4})
		_, err := io.WriteString(w, "first part\n")
		require.NoError(t, err)
		require.NoError(t, w.Flush(context.Background()))
		trace, _ := c.snapshot()
		assert.Equal(t, "first part\n", string(trace))
		_, err = io.WriteString(w, "second part, beyond the chunk size\n")
		require.NoError(t, err)
		require.NoError(t, w.Close())
		trace, parts := c.snapshot()
		assert.Equal(t, "first part\nsecond part, beyond the chunk size\n", string(trace))
		assert.Len(t, parts, traceFallbackAfter, "PATCHes until the 404s are evidence, then updates only")
		c.mu.Lock()
		assert.Equal(t, 2, c.updates)
		c.mu.Unlock()
		assert.Equal(t, int64(2), w.Stats().FullUpdates)
	})
	t.Run("full updates of a trace spooled to its file", func(t *testing.T) {
		leakCheck(t)
		c := newTraceCoord(t)
		c.noPatch = true
		w := c.writer(t, c.client(t), TraceOptions{MemoryLimit: 1})
		text := traceText(3<<20+12345, 9)
		for p := text; len(p) > 0; {
			n := min(len(p), 1000)
			_, err := w.Write(p[:n])
			require.NoError(t, err)
			p = p[n:]
		}
		require.NoError(t, w.Close())
		trace, _ := c.snapshot()
		assert.True(t, bytes.Equal(text, trace), "the whole trace, from the file and from memory")
		assert.Positive(t, w.Stats().FullUpdates)
	})
	t.Run("without the runner token", func(t *testing.T) {
		leakCheck(t)
		c := newTraceCoord(t)
		c.noPatch = true
		w := c.writer(t, c.client(t, WithRunnerToken("")), TraceOptions{})
		_, err := io.WriteString(w, "x\n")
		require.NoError(t, err)
		err = w.Close()
		require.ErrorIs(t, err, ErrNotFound)
		assert.Contains(t, err.Error(), "runner token")
	})
	t.Run("build not running", func(t *testing.T) {
		leakCheck(t)
		c := newTraceCoord(t)
		c.noPatch = true
		c.updateStatus = http.StatusNotFound
		w := c.writer(t, c.client(t), TraceOptions{})
		_, err := io.WriteString(w, "x\n")
		require.NoError(t, err)
		require.ErrorIs(t, w.Close(), ErrNotFound)
	})
}

// One 404 is not evidence that the coordinator lacks the PATCH endpoint (GitLab before 8.7 answers 404 to every
// part): the writer goes on with parts, and never sends the whole trace.
func TestTraceWriterOne404IsNoFallback(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	c.fault = faultAt(1, coordFault{act: actStatus, status: http.StatusNotFound})
	w := c.writer(t, c.client(t), TraceOptions{})
	_, err := io.WriteString(w, "first\n")
	require.NoError(t, err)
	require.NoError(t, w.Flush(context.Background()))
	_, err = io.WriteString(w, "second\n")
	require.NoError(t, err)
	require.NoError(t, w.Close())
	trace, parts := c.snapshot()
	assert.Equal(t, "first\nsecond\n", string(trace))
	assert.Equal(t, []receivedPart{{0, 6, 6}, {0, 6, 6}, {6, 13, 7}}, parts)
	c.mu.Lock()
	assert.Zero(t, c.updates)
	c.mu.Unlock()
	assert.Zero(t, w.Stats().FullUpdates)
}

// A writer that fell back to whole-trace updates probes the PATCH endpoint now and then, and goes back to parts
// once it answers: the 404s may have been a proxy's, or the coordinator was upgraded.
func TestTraceWriterProbesPatchAgain(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	c.noPatch = true
	w := c.writer(t, c.client(t), TraceOptions{})
	var want strings.Builder
	write := func(i int) {
		line := fmt.Sprintf("line %d\n", i)
		want.WriteString(line)
		_, err := io.WriteString(w, line)
		require.NoError(t, err)
		require.NoError(t, w.Flush(context.Background()))
	}
	write(0)
	require.Equal(t, int64(1), w.Stats().FullUpdates, "fell back")
	c.mu.Lock()
	c.noPatch = false
	c.mu.Unlock()
	i := 1
	for ; i <= traceProbeEvery; i++ {
		write(i)
	}
	fullUpdates := w.Stats().FullUpdates
	assert.Less(t, fullUpdates, int64(traceProbeEvery+1), "a probe found the endpoint")
	for ; i <= 3*traceProbeEvery; i++ {
		write(i)
	}
	require.NoError(t, w.Close())
	assert.Equal(t, fullUpdates, w.Stats().FullUpdates, "parts only, once the endpoint answered")
	trace, _ := c.snapshot()
	assert.Equal(t, want.String(), string(trace))
}

// In the fallback the form body streams from the spool: a 64 MiB trace is sent whole without the writer
// allocating anything near its size (before, a copy of the trace and its encoded form: over 128 MiB).
func TestTraceWriterFullUpdateStreamsFromTheSpool(t *testing.T) {
	leakCheck(t)
	var (
		mu      sync.Mutex
		got     []byte // sha256 of the trace field of the last update
		updates int
		gotLen  int64
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPatch {
			_, _ = io.Copy(io.Discard, r.Body)
			http.Error(w, `{"message":"404 Not Found"}`, http.StatusNotFound)
			return
		}
		sum, n, err := decodeTraceForm(r.Body, coordRunnerToken)
		if err != nil {
			http.Error(w, `{"message":"400 Bad Request"}`, http.StatusBadRequest)
			return
		}
		mu.Lock()
		got, gotLen = sum, n
		updates++
		mu.Unlock()
		_, _ = io.WriteString(w, "true")
	}))
	t.Cleanup(srv.Close)
	cl, err := NewClient(srv.URL, WithHTTPClient(srv.Client()), WithBuildToken(coordBuildToken), WithRunnerToken(coordRunnerToken),
		WithRetryPolicy(RetryPolicy{MaxRetries: 3, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
	require.NoError(t, err)
	w, err := cl.NewTraceWriter(context.Background(), coordBuildID, &TraceOptions{
		FlushInterval: time.Hour, KeepAlive: -1, MemoryLimit: 64 << 10, TempDir: t.TempDir(),
	})
	require.NoError(t, err)
	const total = 64 << 20
	h := sha256.New()
	line := []byte("a line of the build's output, with some bytes to escape: 100% & more = +\n")
	for n := 0; n < total; n += len(line) {
		_, err := w.Write(line)
		require.NoError(t, err)
		h.Write(line)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	require.NoError(t, w.Close())
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("allocated while sending a %d MiB trace whole: %d KiB", w.Stats().Length>>20, allocated>>10)
	assert.Less(t, allocated, uint64(8<<20), "the form body is streamed, not built")
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, int64(updates), w.Stats().FullUpdates)
	assert.Equal(t, w.Stats().Length, gotLen)
	assert.Equal(t, h.Sum(nil), got, "the trace the coordinator decoded")
}

// decodeTraceForm reads an update's form body as it arrives, checks its token and state, and returns the sha256
// and length of its trace field.
func decodeTraceForm(body io.Reader, token string) ([]byte, int64, error) {
	br := bufio.NewReaderSize(body, 64<<10)
	h := sha256.New()
	var n int64
	var key []byte
	var fields = map[string]string{}
	inKey, isTrace := true, false
	var val []byte
	flushVal := func() {
		if !isTrace {
			fields[string(key)] = string(val)
		}
		key, val, inKey, isTrace = key[:0], val[:0], true, false
	}
	var out [1]byte
	for {
		c, err := br.ReadByte()
		if err == io.EOF {
			flushVal()
			break
		}
		if err != nil {
			return nil, 0, err
		}
		switch {
		case c == '&':
			flushVal()
			continue
		case inKey && c == '=':
			inKey, isTrace = false, string(key) == "trace"
			continue
		case inKey:
			key = append(key, c)
			continue
		}
		switch c {
		case '+':
			c = ' '
		case '%':
			var v byte
			for range 2 {
				d, err := br.ReadByte()
				if err != nil {
					return nil, 0, err
				}
				switch {
				case '0' <= d && d <= '9':
					d -= '0'
				case 'A' <= d && d <= 'F':
					d -= 'A' - 10
				default:
					return nil, 0, fmt.Errorf("bad escape digit %q", d)
				}
				v = v<<4 | d
			}
			c = v
		}
		if isTrace {
			out[0] = c
			h.Write(out[:])
			n++
		} else {
			val = append(val, c)
		}
	}
	if fields["token"] != token || fields["state"] != "running" {
		return nil, 0, fmt.Errorf("form fields %q", fields)
	}
	return h.Sum(nil), n, nil
}

func TestTraceWriterBuildCanceled(t *testing.T) {
	for _, preset := range []string{"", "abc"} {
		name := "on 202"
		if preset != "" {
			name = "on 416"
		}
		t.Run(name, func(t *testing.T) {
			leakCheck(t)
			c := newTraceCoord(t)
			c.trace = []byte(preset)
			c.status = "canceled"
			w := c.writer(t, c.client(t), TraceOptions{})
			select {
			case <-w.Canceled():
				t.Fatal("canceled before any answer")
			default:
			}
			_, err := io.WriteString(w, "abcdef")
			require.NoError(t, err)
			require.NoError(t, w.Flush(context.Background()))
			select {
			case <-w.Canceled():
			default:
				t.Fatal("Canceled not closed after the answer said canceled")
			}
			assert.Equal(t, StateCanceled, w.Status())
			// Writing and delivery go on; a second canceled answer does not close the channel again.
			_, err = io.WriteString(w, "after cancel\n")
			require.NoError(t, err)
			require.NoError(t, w.Close())
			trace, _ := c.snapshot()
			assert.Equal(t, "abcdefafter cancel\n", string(trace))
		})
	}
}

func TestTraceWriterFlushAndClose(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	w := c.writer(t, c.client(t), TraceOptions{})
	for i := range 3 {
		line := fmt.Sprintf("line %d\n", i)
		_, err := io.WriteString(w, line)
		require.NoError(t, err)
		require.NoError(t, w.Flush(context.Background()))
		trace, _ := c.snapshot()
		assert.True(t, strings.HasSuffix(string(trace), line), "Flush returned before the coordinator had the bytes")
		assert.Equal(t, w.Stats().Length, w.Stats().Acknowledged)
	}
	// A Flush bounded by its context returns when it ends, and the writer goes on.
	c.setFault(faultAt(4, coordFault{act: actStall}))
	_, err := io.WriteString(w, "stalled\n")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, w.Flush(ctx), context.DeadlineExceeded)

	// The stalled attempt times out (the client's timeout) only much later; closing waits for it, bounded here.
	cctx, ccancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer ccancel()
	err = w.CloseContext(cctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, err, w.Close(), "Close is idempotent")
	_, err2 := w.Write([]byte("x"))
	assert.Equal(t, err, err2)
}

// Nothing left to send is success: CloseContext with a context that has already ended reports no error when the
// coordinator has acknowledged every byte, and says so again on every call.
func TestTraceWriterCloseContextEndedAfterEverythingAcknowledged(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	w := c.writer(t, c.client(t), TraceOptions{})
	_, err := io.WriteString(w, "all of it\n")
	require.NoError(t, err)
	require.NoError(t, w.Flush(context.Background()))
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	require.NoError(t, w.CloseContext(ended))
	require.NoError(t, w.Close())
	require.NoError(t, w.CloseContext(ended))
	trace, _ := c.snapshot()
	assert.Equal(t, "all of it\n", string(trace))
}

// With something left to send, an ended context is a failure, and it is sticky.
func TestTraceWriterCloseContextEndedWithBytesLeft(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	c.fault = func(*traceCoord, int, int64, []byte) coordFault { return coordFault{act: actStall} }
	w := c.writer(t, c.client(t), TraceOptions{})
	_, err := io.WriteString(w, "never acknowledged\n")
	require.NoError(t, err)
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	err = w.CloseContext(ended)
	require.ErrorIs(t, err, context.Canceled)
	assert.Contains(t, err.Error(), "19 bytes")
	assert.Equal(t, err, w.Close())
}

func TestTraceWriterCloseIdempotentAndErrClosed(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	w := c.writer(t, c.client(t), TraceOptions{})
	_, err := io.WriteString(w, "done\n")
	require.NoError(t, err)
	require.NoError(t, w.Close())
	require.NoError(t, w.Close())
	require.NoError(t, w.CloseContext(context.Background()))
	_, err = w.Write([]byte("late"))
	assert.ErrorIs(t, err, ErrClosed)
	assert.ErrorIs(t, w.Flush(context.Background()), ErrClosed)
	trace, parts := c.snapshot()
	assert.Equal(t, "done\n", string(trace))
	assert.Len(t, parts, 1)
}

// Once the writer's context has ended, a backoff holds the writer no longer than its grace (or not at all when
// StopGrace is negative), and what was not delivered makes Close fail, saying why.
func TestTraceWriterContextCancelStopsBackoff(t *testing.T) {
	for _, grace := range []time.Duration{20 * time.Millisecond, -1} {
		t.Run(grace.String(), func(t *testing.T) {
			leakCheck(t)
			c := newTraceCoord(t)
			c.fault = func(*traceCoord, int, int64, []byte) coordFault {
				return coordFault{act: actStatus, status: http.StatusServiceUnavailable, retryAfter: "3600"}
			}
			cl := c.client(t, WithRetryPolicy(RetryPolicy{MaxRetries: 5, MaxRetryAfter: time.Hour}))
			ctx, cancel := context.WithCancel(context.Background())
			w, err := cl.NewTraceWriter(ctx, coordBuildID, &TraceOptions{FlushInterval: time.Millisecond, KeepAlive: -1, StopGrace: grace})
			require.NoError(t, err)
			_, err = io.WriteString(w, "x\n")
			require.NoError(t, err)
			require.Eventually(t, func() bool { return w.Stats().Requests == 1 }, 5*time.Second, time.Millisecond)
			cancel()
			err = w.Close()
			require.ErrorIs(t, err, context.Canceled)
			assert.Contains(t, err.Error(), "2 bytes")
		})
	}
}

// The README's tour hands NewBuildTraceWriter the context of signal.NotifyContext. Ctrl-C ends that context; the
// runner then writes a last line and calls Close, which must deliver everything: the lines written long before the
// signal, which the default flush interval still held back, and the one written after it.
func TestTraceWriterSignalContextKeepsTrace(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	build := &Build{ID: coordBuildID, Token: coordBuildToken}
	w, err := c.client(t).NewBuildTraceWriter(ctx, build, nil)
	require.NoError(t, err)
	var want strings.Builder
	for i := range 100 {
		line := fmt.Sprintf("step %d done\n", i)
		want.WriteString(line)
		_, err := io.WriteString(w, line)
		require.NoError(t, err)
	}
	p, err := os.FindProcess(os.Getpid())
	require.NoError(t, err)
	if err := p.Signal(os.Interrupt); err != nil {
		stop() // where a process cannot interrupt itself (Windows), end the same context the other way
	}
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the interrupt did not arrive")
	}
	stop()
	_, err = io.WriteString(w, "interrupted\n")
	require.NoError(t, err)
	want.WriteString("interrupted\n")
	require.NoError(t, w.Close())
	trace, _ := c.snapshot()
	assert.Equal(t, want.String(), string(trace))
}

// After its grace the writer has stopped: a Write then fails, and so does Close, since that Write's bytes were
// never sent.
func TestTraceWriterWriteAfterGrace(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	ctx, cancel := context.WithCancel(context.Background())
	w, err := c.client(t).NewTraceWriter(ctx, coordBuildID, &TraceOptions{KeepAlive: -1, StopGrace: time.Millisecond})
	require.NoError(t, err)
	_, err = io.WriteString(w, "before\n")
	require.NoError(t, err)
	require.NoError(t, w.Flush(context.Background()))
	cancel()
	select {
	case <-w.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the writer did not stop after its grace")
	}
	_, err = io.WriteString(w, "after\n")
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, err, w.Close())
}

func TestTraceWriterConcurrentWritesStayContiguous(t *testing.T) {
	// In memory, and through the spool's file: there, the Writes that fill blocks write them to the file while
	// the others go on.
	for _, tc := range []struct {
		name       string
		memLimit   int
		maxPayload int
	}{{"in memory", 0, 200}, {"through the file", 1, 8 << 10}} {
		t.Run(tc.name, func(t *testing.T) {
			leakCheck(t)
			c := newTraceCoord(t)
			w := c.writer(t, c.client(t), TraceOptions{ChunkSize: 4 << 10, FlushInterval: time.Millisecond, MemoryLimit: tc.memLimit})
			const writers, records = 8, 300
			var wg sync.WaitGroup
			for g := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := rand.New(rand.NewPCG(uint64(g), 1))
					for i := range records {
						payload := strings.Repeat(string(rune('a'+g)), r.IntN(tc.maxPayload))
						rec := fmt.Sprintf("<%d:%d:%d:%s>\n", g, i, len(payload), payload)
						n, err := io.WriteString(w, rec)
						assert.NoError(t, err)
						assert.Equal(t, len(rec), n)
					}
				}()
			}
			wg.Wait()
			require.NoError(t, w.Close())
			trace, _ := c.snapshot()
			lines := strings.Split(strings.TrimSuffix(string(trace), "\n"), "\n")
			require.Len(t, lines, writers*records)
			next := make([]int, writers)
			for _, l := range lines {
				var g, i, n int
				var payload string
				_, err := fmt.Sscanf(l, "<%d:%d:%d:%s", &g, &i, &n, &payload)
				require.NoError(t, err, "record %.80q", l)
				payload = strings.TrimSuffix(payload, ">")
				if n == 0 {
					payload = ""
				}
				require.Equal(t, strings.Repeat(string(rune('a'+g)), n), payload, "record %.80q torn", l)
				assert.Equal(t, next[g], i, "records of writer %d out of order", g)
				next[g] = i + 1
			}
			assertContiguous(t, c)
		})
	}
}

// A Close while other goroutines write, with blocks being filed, ends cleanly: Close returns no error, and each
// Write either got its bytes into the trace or was told the writer is closed.
func TestTraceWriterCloseWhileWriting(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	cl := c.client(t)
	for round := range 20 {
		c.mu.Lock()
		c.trace, c.parts = nil, nil
		c.mu.Unlock()
		w := c.writer(t, cl, TraceOptions{MemoryLimit: 1, ChunkSize: 64 << 10})
		var accepted atomic.Int64
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rec := bytes.Repeat([]byte{byte('a' + g)}, 48<<10)
				for {
					n, err := w.Write(rec)
					if err != nil {
						assert.ErrorIs(t, err, ErrClosed, "round %d", round)
						return
					}
					accepted.Add(int64(n))
				}
			}()
		}
		time.Sleep(time.Duration(1+round%5) * time.Millisecond)
		require.NoError(t, w.Close(), "round %d", round)
		wg.Wait()
		trace, _ := c.snapshot()
		assert.Equal(t, accepted.Load(), int64(len(trace)), "round %d: the trace has every accepted byte", round)
	}
}

func TestTraceWriterMasksSecretsAcrossWrites(t *testing.T) {
	leakCheck(t)
	const secret = "hunter2-s3cr3t"
	input := "before " + secret + " middle " + secret + secret + " hun end hunter2-s3cr3"
	want := "before [MASKED] middle [MASKED][MASKED] hun end hunter2-s3cr3"
	c := newTraceCoord(t)
	cl := c.client(t)
	for cut1 := 0; cut1 <= len(input); cut1 += 3 {
		for cut2 := cut1; cut2 <= len(input); cut2 += 5 {
			c.mu.Lock()
			c.trace = nil
			c.mu.Unlock()
			w := c.writer(t, cl, TraceOptions{Secrets: []string{secret}})
			for _, p := range []string{input[:cut1], input[cut1:cut2], input[cut2:]} {
				_, err := io.WriteString(w, p)
				require.NoError(t, err)
			}
			require.NoError(t, w.Close())
			trace, _ := c.snapshot()
			require.Equal(t, want, string(trace), "cuts at %d and %d", cut1, cut2)
		}
	}
}

func TestTraceWriterMasksBuildSecrets(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	b := &Build{
		ID:    coordBuildID,
		Token: coordBuildToken,
		Variables: []Variable{
			{Key: "PUBLIC", Value: "visible-value", Public: true},
			{Key: "PRIVATE", Value: "private-value"},
		},
		RepoURL: "https://gitlab-ci-token:repo-password@example.com/g/p.git",
	}
	w, err := c.client(t, WithBuildToken("")).NewBuildTraceWriter(context.Background(), b, &TraceOptions{Secrets: []string{"extra-secret"}, KeepAlive: -1})
	require.NoError(t, err)
	_, err = fmt.Fprintf(w, "%s %s %s %s %s %s\n", coordBuildToken, "visible-value", "private-value", "repo-password", "extra-secret", coordRunnerToken)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	trace, _ := c.snapshot()
	assert.Equal(t, "[MASKED] visible-value [MASKED] [MASKED] [MASKED] [MASKED]\n", string(trace))
}

// GitLab refuses to mask values shorter than 8 characters: masking "1" would wreck every line. A build's short
// secrets stay in the trace; explicitly given ones are masked whatever their length.
func TestTraceWriterShortBuildSecrets(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	c.buildToken = "ab"
	b := &Build{
		ID:    coordBuildID,
		Token: "ab",
		Variables: []Variable{
			{Key: "DEBUG", Value: "1"},
			{Key: "SEVEN", Value: "7654321"},
			{Key: "EIGHT", Value: "8765432a"},
		},
		RepoURL:     "https://u:pw@example.com/g/p.git",
		Credentials: []Credential{{Type: "registry", URL: "r.example.com", Username: "u", Password: "regpw"}},
	}
	w, err := c.client(t, WithBuildToken("")).NewBuildTraceWriter(context.Background(), b, &TraceOptions{Secrets: []string{"xy"}, KeepAlive: -1})
	require.NoError(t, err)
	_, err = io.WriteString(w, "Step 1 of 10: sha256 ab12cd pw regpw 7654321\nEIGHT=8765432a, given: xy\n")
	require.NoError(t, err)
	require.NoError(t, w.Close())
	trace, _ := c.snapshot()
	assert.Equal(t, "Step 1 of 10: sha256 ab12cd pw regpw 7654321\nEIGHT=[MASKED], given: [MASKED]\n", string(trace))
}

func TestTraceWriterOutputLimit(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	w := c.writer(t, c.client(t), TraceOptions{OutputLimit: 10})
	for range 5 {
		n, err := io.WriteString(w, "0123456")
		require.NoError(t, err)
		assert.Equal(t, 7, n)
	}
	require.NoError(t, w.Close())
	trace, _ := c.snapshot()
	assert.Equal(t, "0123456012\n[runnerapi: the trace was truncated here: it reached its limit of 10 bytes]\n", string(trace))
	assert.Equal(t, int64(35), w.Stats().Written)
}

func TestTraceWriterNeedsBuildToken(t *testing.T) {
	cl, err := NewClient("https://gitlab.example.com")
	require.NoError(t, err)
	_, err = cl.NewTraceWriter(context.Background(), 1, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "build token")
	_, err = cl.NewTraceWriter(context.Background(), 1, &TraceOptions{Token: "t", ChunkSize: -1})
	require.Error(t, err)
	_, err = cl.NewBuildTraceWriter(context.Background(), nil, nil)
	require.Error(t, err)
}

func TestTraceWriterSpoolFileRemovedAndHeapBounded(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	// This coordinator only counts: the test is about the writer's memory, not the coordinator's.
	var got atomic.Int64
	c.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("Range", "0-"+strconv.FormatInt(got.Add(n), 10))
		w.WriteHeader(http.StatusAccepted)
	})
	dir := t.TempDir()
	w := c.writer(t, c.client(t), TraceOptions{TempDir: dir})
	line := bytes.Repeat([]byte("x"), 99)
	line = append(line, '\n')
	const total = 64 << 20
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	var peak uint64
	for i := 0; i < total/len(line); i++ {
		_, err := w.Write(line)
		require.NoError(t, err)
		if i%(8<<20/len(line)) == 0 {
			runtime.GC()
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
		}
	}
	w.mu.Lock()
	assert.NotNil(t, w.spool.file, "the trace beyond the memory limit is in temporary files")
	w.mu.Unlock()
	files, err := os.ReadDir(dir)
	require.NoError(t, err)
	if runtime.GOOS != "windows" { // Windows cannot remove an open file: there the files go at Close
		assert.Empty(t, files, "the temporary files have no name a crash could leave behind")
	}
	require.NoError(t, w.Close())
	files, err = os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, files, "Close removes the temporary files")
	assert.Equal(t, int64(total/len(line)*len(line)), got.Load())
	growth := int64(peak) - int64(base)
	t.Logf("heap growth while writing %d MiB: %d KiB", total>>20, growth>>10)
	assert.Less(t, growth, int64(12<<20), "heap beyond a few chunks")
}

func TestTraceWriterWriteDoesNotAllocate(t *testing.T) {
	for _, secrets := range [][]string{nil, {"a-secret-value"}} {
		t.Run(fmt.Sprint(len(secrets)), func(t *testing.T) {
			leakCheck(t)
			c := newTraceCoord(t)
			// A small memory limit puts the spool in its file; a large chunk keeps the sender, whose requests
			// allocate, quiet while allocations are counted.
			w := c.writer(t, c.client(t), TraceOptions{Secrets: secrets, MemoryLimit: 64 << 10, ChunkSize: 64 << 20, TempDir: t.TempDir()})
			line := append(bytes.Repeat([]byte("y"), 99), '\n')
			for range 1000 {
				_, _ = w.Write(line)
			}
			allocs := testing.AllocsPerRun(50000, func() { _, _ = w.Write(line) })
			assert.Zero(t, allocs)
			assert.Greater(t, w.Stats().Length, int64(2*traceSpoolBlock), "the writes crossed spool blocks")
			require.NoError(t, w.Close())
		})
	}
}

var traceSeeds = 200

func TestTraceWriterRandomFaults(t *testing.T) {
	seeds := traceSeeds
	if testing.Short() {
		seeds = 40
	}
	leakCheck(t)
	c := newTraceCoord(t)
	cl := c.client(t, WithRetryPolicy(RetryPolicy{MaxRetries: 30, MaxRetryAfter: time.Millisecond}))
	var retries, recoveries int64
	for seed := range uint64(seeds) {
		r := rand.New(rand.NewPCG(seed, 99))
		fr := rand.New(rand.NewPCG(seed, 100)) // the coordinator's, used with c.mu held
		c.mu.Lock()
		c.trace, c.parts, c.requests = nil, nil, 0
		c.fault = func(c *traceCoord, n int, start int64, body []byte) coordFault {
			switch x := fr.IntN(100); {
			case x < 6:
				return coordFault{act: actDropBefore}
			case x < 12:
				return coordFault{act: actDropAfter}
			case x < 16:
				return coordFault{act: actStatus, status: http.StatusServiceUnavailable, retryAfter: "1"}
			case x < 20:
				return coordFault{act: actApplyStatus, status: http.StatusInternalServerError}
			case x < 24 && len(body) > 1:
				return coordFault{act: actApplyPartial, keep: fr.IntN(len(body))}
			case x < 28 && len(c.trace) > 0:
				// The coordinator loses a little of its tail.
				c.trace = c.trace[:len(c.trace)-1-fr.IntN(min(len(c.trace), 200))]
			}
			return coordFault{}
		}
		c.mu.Unlock()
		w := c.writer(t, cl, TraceOptions{ChunkSize: 64 + r.IntN(1000), FlushInterval: time.Millisecond, MaxRangeErrors: 1000})
		want := traceText(r.IntN(8000), seed)
		for rest := want; len(rest) > 0; {
			n := min(len(rest), 1+r.IntN(300))
			_, err := w.Write(rest[:n])
			require.NoError(t, err)
			rest = rest[n:]
			if r.IntN(20) == 0 {
				require.NoError(t, w.Flush(context.Background()), "seed %d", seed)
			}
		}
		require.NoError(t, w.Close(), "seed %d", seed)
		trace, _ := c.snapshot()
		require.True(t, bytes.Equal(want, trace), "seed %d: trace of %d bytes differs from the %d written", seed, len(trace), len(want))
		st := w.Stats()
		retries += st.Retries
		recoveries += st.RangeRecoveries
	}
	assertContiguous(t, c)
	// The faults did happen: the test would prove nothing otherwise.
	t.Logf("%d seeds: %d retries, %d recoveries from 416", seeds, retries, recoveries)
	assert.Greater(t, retries, int64(seeds))
	assert.Greater(t, recoveries, int64(seeds))
}

func TestAppendTrace(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	cl := c.client(t)
	ctx := context.Background()
	res, resp, err := cl.Builds.AppendTrace(ctx, coordBuildID, 0, []byte("Running git clone...\n"))
	require.NoError(t, err)
	assert.Equal(t, &TraceAppend{Length: 21, Status: StateRunning}, res)
	assert.Equal(t, http.StatusAccepted, resp.StatusCode)

	// Wrong offset: a *RangeError with the coordinator's length, and the 416 behind it.
	_, _, err = cl.Builds.AppendTrace(ctx, coordBuildID, 5, []byte("x"))
	var re *RangeError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, int64(21), re.Length)
	assert.Equal(t, StateRunning, re.Status)
	var er *ErrorResponse
	require.ErrorAs(t, err, &er)
	assert.Equal(t, http.StatusRequestedRangeNotSatisfiable, er.StatusCode)
	assert.Contains(t, err.Error(), "21 bytes")

	// A keep-alive.
	res, _, err = cl.Builds.AppendTrace(ctx, coordBuildID, 21, nil)
	require.NoError(t, err)
	assert.Equal(t, int64(21), res.Length)

	// Per-call token wins; a bad one is forbidden and not repeated in the error.
	_, _, err = cl.Builds.AppendTrace(ctx, coordBuildID, 21, []byte("y"), WithToken("bad-token-Xy12"))
	require.ErrorIs(t, err, ErrForbidden)
	assert.NotContains(t, err.Error(), "bad-token-Xy12")

	_, _, err = cl.Builds.AppendTrace(ctx, coordBuildID, -1, nil)
	require.Error(t, err)
	cl2, err := NewClient(c.srv.URL)
	require.NoError(t, err)
	_, _, err = cl2.Builds.AppendTrace(ctx, coordBuildID, 0, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "build token")
	_, parts := c.snapshot()
	assert.Equal(t, []receivedPart{{0, 21, 21}, {5, 6, 1}, {21, 21, 0}}, parts)
}

func TestAppendTraceBare202(t *testing.T) {
	leakCheck(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Build-Status", "canceled")
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(srv.Close)
	cl, err := NewClient(srv.URL, WithHTTPClient(srv.Client()), WithBuildToken(coordBuildToken))
	require.NoError(t, err)
	res, _, err := cl.Builds.AppendTrace(context.Background(), 1, 21, []byte("abc"))
	require.NoError(t, err)
	assert.Equal(t, &TraceAppend{Length: 24, Status: StateCanceled, Assumed: true}, res)
}

func TestAppendTraceMalformedRangeOn416(t *testing.T) {
	leakCheck(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Range", "0-")
		w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
		_, _ = io.WriteString(w, `{"error":"416 Range Not Satisfiable"}`)
	}))
	t.Cleanup(srv.Close)
	cl, err := NewClient(srv.URL, WithHTTPClient(srv.Client()), WithBuildToken(coordBuildToken))
	require.NoError(t, err)
	_, _, err = cl.Builds.AppendTrace(context.Background(), 1, 3, []byte("abc"))
	require.ErrorIs(t, err, ErrTraceRange)
	var re *RangeError
	assert.False(t, errors.As(err, &re), "no length to give")
	var er *ErrorResponse
	require.ErrorAs(t, err, &er)
	assert.Equal(t, http.StatusRequestedRangeNotSatisfiable, er.StatusCode)
}

func TestAppendTraceRetriesOnlyWhatWasNotApplied(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	cl := c.client(t)
	c.fault = faultAt(1, coordFault{act: actStatus, status: http.StatusServiceUnavailable})
	res, resp, err := cl.Builds.AppendTrace(context.Background(), coordBuildID, 0, []byte("abc"))
	require.NoError(t, err)
	assert.Equal(t, int64(3), res.Length)
	assert.Equal(t, 2, resp.Attempts)

	c.setFault(faultAt(3, coordFault{act: actApplyStatus, status: http.StatusInternalServerError}))
	_, _, err = cl.Builds.AppendTrace(context.Background(), coordBuildID, 3, []byte("def"))
	var er *ErrorResponse
	require.ErrorAs(t, err, &er)
	assert.Equal(t, http.StatusInternalServerError, er.StatusCode, "a 500 may have been applied: not retried")
}

func TestParseTraceRange(t *testing.T) {
	for _, tt := range []struct {
		values []string
		want   int64
		ok     bool
	}{
		{[]string{"0-0"}, 0, true},
		{[]string{"0-21"}, 21, true},
		{[]string{"0-5368709125"}, 5368709125, true},
		{[]string{"0-9223372036854775807"}, 1<<63 - 1, true},
		{nil, 0, false},
		{[]string{""}, 0, false},
		{[]string{"0-"}, 0, false},
		{[]string{"1-5"}, 0, false},
		{[]string{"0-x"}, 0, false},
		{[]string{"0--1"}, 0, false},
		{[]string{"0-+1"}, 0, false},
		{[]string{"0-9223372036854775808"}, 0, false},
		{[]string{"0-99999999999999999999"}, 0, false},
		{[]string{"0-5 "}, 0, false},
		{[]string{"0-5", "0-5"}, 0, false},
	} {
		h := http.Header{"Range": tt.values}
		n, err := parseTraceRange(h)
		if tt.ok {
			assert.NoError(t, err, "%q", tt.values)
			assert.Equal(t, tt.want, n, "%q", tt.values)
		} else {
			assert.ErrorIs(t, err, ErrTraceRange, "%q", tt.values)
		}
	}
}

func TestAppendTraceLargeOffsets(t *testing.T) {
	leakCheck(t)
	const off = int64(5) << 30
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assert.Equal(t, "5368709120-5368709125", r.Header.Get("Content-Range"))
		w.Header().Set("Range", "0-5368709125")
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(srv.Close)
	cl, err := NewClient(srv.URL, WithHTTPClient(srv.Client()), WithBuildToken(coordBuildToken))
	require.NoError(t, err)
	res, _, err := cl.Builds.AppendTrace(context.Background(), 1, off, []byte("12345"))
	require.NoError(t, err)
	assert.Equal(t, off+5, res.Length)
}

// benchServer answers every PATCH with 202 and the length it counted, and discards the body cheaply.
func benchServer(b *testing.B) (*httptest.Server, *atomic.Int64, *atomic.Int64) {
	var length, requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		requests.Add(1)
		w.Header().Set("Range", "0-"+strconv.FormatInt(length.Add(n), 10))
		w.Header().Set("Build-Status", "running")
		w.WriteHeader(http.StatusAccepted)
	}))
	b.Cleanup(srv.Close)
	return srv, &length, &requests
}

func BenchmarkTraceWriterWrite(b *testing.B) {
	srv, length, _ := benchServer(b)
	cl, err := NewClient(srv.URL, WithHTTPClient(srv.Client()), WithBuildToken(coordBuildToken))
	require.NoError(b, err)
	newWriter := func() *TraceWriter {
		length.Store(0) // a new build's trace
		w, err := cl.NewTraceWriter(context.Background(), 1, nil)
		require.NoError(b, err)
		return w
	}
	// A fresh writer every 64 MiB: millions of Writes would otherwise grow one spool file to gigabytes, and the
	// kernel's throttling of dirty pages, not Write, would be measured.
	const perWriter = 64 << 20 / 100
	w := newWriter()
	line := append(bytes.Repeat([]byte("z"), 99), '\n')
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if i > 0 && i%perWriter == 0 {
			b.StopTimer()
			require.NoError(b, w.Close())
			w = newWriter()
			b.StartTimer()
		}
		if _, err := w.Write(line); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	require.NoError(b, w.Close())
}

// benchSize is the trace each throughput benchmark op sends.
const benchSize = 256 << 20

func BenchmarkTraceThroughput(b *testing.B) {
	// 100-byte lines, as a build writes them; and 64 KiB writes, which show the pipeline without the cost of
	// millions of Write calls.
	for _, size := range []int{100, 64 << 10} {
		b.Run(fmt.Sprintf("TraceWriter/%dB-writes", size), func(b *testing.B) {
			srv, length, requests := benchServer(b)
			cl, err := NewClient(srv.URL, WithHTTPClient(srv.Client()), WithBuildToken(coordBuildToken))
			require.NoError(b, err)
			line := append(bytes.Repeat([]byte("w"), size-1), '\n')
			b.SetBytes(benchSize)
			b.ResetTimer()
			for range b.N {
				length.Store(0)
				w, err := cl.NewTraceWriter(context.Background(), 1, nil)
				require.NoError(b, err)
				for i := 0; i < benchSize; i += len(line) {
					_, _ = w.Write(line[:min(len(line), benchSize-i)])
				}
				require.NoError(b, w.Close())
			}
			b.StopTimer()
			require.Equal(b, int64(benchSize), length.Load())
			b.ReportMetric(float64(requests.Load())/float64(b.N), "requests/op")
		})
	}
	// The sending side alone: the trace is spooled before the clock starts, so this is Close draining 256 MiB.
	b.Run("TraceWriter/spooled-before", func(b *testing.B) {
		srv, length, requests := benchServer(b)
		cl, err := NewClient(srv.URL, WithHTTPClient(srv.Client()), WithBuildToken(coordBuildToken))
		require.NoError(b, err)
		line := append(bytes.Repeat([]byte("s"), 64<<10-1), '\n')
		b.SetBytes(benchSize)
		for range b.N {
			b.StopTimer()
			length.Store(0)
			w, err := cl.NewTraceWriter(context.Background(), 1, &TraceOptions{FlushInterval: time.Hour})
			require.NoError(b, err)
			w.mu.Lock() // record, unlike Write, does not wake the sender: nothing is sent before Close
			for i := 0; i < benchSize; i += len(line) {
				w.record(line)
			}
			w.mu.Unlock()
			b.StartTimer()
			require.NoError(b, w.Close())
		}
		b.StopTimer()
		require.Equal(b, int64(benchSize), length.Load())
		b.ReportMetric(float64(requests.Load())/float64(b.N), "requests/op")
	})
	b.Run("Ceiling", func(b *testing.B) {
		srv, length, requests := benchServer(b)
		hc := srv.Client()
		part := bytes.Repeat([]byte("c"), 1<<20)
		url := srv.URL + "/ci/api/v1/builds/1/trace.txt"
		b.SetBytes(benchSize)
		b.ResetTimer()
		for range b.N {
			length.Store(0)
			for off := int64(0); off < benchSize; off += int64(len(part)) {
				req, err := http.NewRequest(http.MethodPatch, url, bytes.NewReader(part))
				if err != nil {
					b.Fatal(err)
				}
				req.Header.Set("BUILD-TOKEN", coordBuildToken)
				req.Header.Set("Content-Range", strconv.FormatInt(off, 10)+"-"+strconv.FormatInt(off+int64(len(part)), 10))
				resp, err := hc.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					b.Fatal(resp.Status)
				}
			}
		}
		b.StopTimer()
		require.Equal(b, int64(benchSize), length.Load())
		b.ReportMetric(float64(requests.Load())/float64(b.N), "requests/op")
	})
}
