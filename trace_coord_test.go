package runnerapi

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
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
