package runnerapi

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// retryHolder is a transport whose coordinator refuses the first part read from the spool's file with a 503
// before reading its body, and whose transport keeps that body, unread and unclosed, past the writer's patience;
// it reads the held body only once the retry of the same part went out and was read whole.
type retryHolder struct {
	mu      sync.Mutex
	trace   []byte
	held    io.ReadCloser
	heldAt  int64
	heldLen int64
	late    []byte
	lateErr error
	lateSet bool
}

func (h *retryHolder) RoundTrip(req *http.Request) (*http.Response, error) {
	start, end, _ := strings.Cut(req.Header.Get("Content-Range"), "-")
	from, _ := strconv.ParseInt(start, 10, 64)
	to, _ := strconv.ParseInt(end, 10, 64)
	h.mu.Lock()
	defer h.mu.Unlock()
	_, isFile := req.Body.(syscall.Conn)
	if req.Body != nil && isFile && h.held == nil && !h.lateSet {
		h.held, h.heldAt, h.heldLen = req.Body, from, to-from
		return &http.Response{StatusCode: http.StatusServiceUnavailable, Status: "503 Service Unavailable",
			Header: http.Header{}, Body: http.NoBody, Request: req, ProtoMajor: 1, ProtoMinor: 1}, nil
	}
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		_ = req.Body.Close()
		if err != nil {
			return nil, err
		}
		h.trace = append(h.trace[:from], b...)
		if h.held != nil {
			// The retry went out and was read: now the transport reads the first attempt's body.
			h.late, h.lateErr = io.ReadAll(h.held)
			_ = h.held.Close()
			h.held, h.lateSet = nil, true
		}
	}
	hdr := http.Header{"Range": {"0-" + strconv.Itoa(len(h.trace))}, "Build-Status": {"running"}}
	return &http.Response{StatusCode: http.StatusAccepted, Status: "202 Accepted", Header: hdr, Body: http.NoBody,
		Request: req, ProtoMajor: 1, ProtoMinor: 1}, nil
}

// The retry of a part sent from the spool's file, while the transport still holds the first attempt's body, must
// not read the file at its position too: the two bodies would move it under each other, and the first would end
// early or send the wrong bytes.
func TestTraceWriterRetriesAFilePartWithoutTheFilesPosition(t *testing.T) {
	h := &retryHolder{}
	cl, err := NewClient("http://coordinator.example", WithHTTPClient(&http.Client{Transport: h}), WithBuildToken(coordBuildToken),
		WithRetryPolicy(RetryPolicy{MaxRetries: 4, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
	require.NoError(t, err)
	w, err := cl.NewTraceWriter(context.Background(), coordBuildID, &TraceOptions{
		MemoryLimit: 64 << 10, ChunkSize: 256 << 10, FlushInterval: time.Hour, KeepAlive: -1, TempDir: t.TempDir(),
	})
	require.NoError(t, err)
	r := rand.New(rand.NewPCG(7, 8))
	want := make([]byte, 3<<20)
	for i := range want {
		want[i] = 'a' + byte(r.IntN(26))
	}
	w.mu.Lock() // everything is in the file before the sender sends anything
	w.record(want)
	w.mu.Unlock()
	require.NoError(t, w.Close())
	h.mu.Lock()
	defer h.mu.Unlock()
	require.True(t, h.lateSet, "the first attempt's body was held and read after the retry")
	require.NoError(t, h.lateErr)
	assert.True(t, bytes.Equal(want[h.heldAt:h.heldAt+h.heldLen], h.late),
		"the held body read %d bytes, its part is %d", len(h.late), h.heldLen)
	assert.True(t, bytes.Equal(want, h.trace), "the coordinator's trace")
}

// replayHolder is a transport that, like net/http's when a reused connection fails before the request went out,
// closes the first body of the first part and sends a replay from GetBody instead; the coordinator refuses that
// attempt with a 503 before reading it, and the transport goes on holding the replay, reading it only once two
// more parts went out.
type replayHolder struct {
	mu      sync.Mutex
	trace   []byte
	held    io.ReadCloser
	heldAt  int64
	heldLen int64
	parts   int
	late    []byte
	lateErr error
	lateSet bool
}

func (h *replayHolder) RoundTrip(req *http.Request) (*http.Response, error) {
	start, end, _ := strings.Cut(req.Header.Get("Content-Range"), "-")
	from, _ := strconv.ParseInt(start, 10, 64)
	to, _ := strconv.ParseInt(end, 10, 64)
	h.mu.Lock()
	defer h.mu.Unlock()
	if req.Body != nil && h.held == nil && !h.lateSet {
		_ = req.Body.Close()
		replay, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		h.held, h.heldAt, h.heldLen = replay, from, to-from
		return &http.Response{StatusCode: http.StatusServiceUnavailable, Status: "503 Service Unavailable",
			Header: http.Header{}, Body: http.NoBody, Request: req, ProtoMajor: 1, ProtoMinor: 1}, nil
	}
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		_ = req.Body.Close()
		if err != nil {
			return nil, err
		}
		h.trace = append(h.trace[:from], b...)
		if h.parts++; h.held != nil && h.parts == 3 {
			h.late, h.lateErr = io.ReadAll(h.held)
			_ = h.held.Close()
			h.held, h.lateSet = nil, true
		}
	}
	hdr := http.Header{"Range": {"0-" + strconv.Itoa(len(h.trace))}, "Build-Status": {"running"}}
	return &http.Response{StatusCode: http.StatusAccepted, Status: "202 Accepted", Header: hdr, Body: http.NoBody,
		Request: req, ProtoMajor: 1, ProtoMinor: 1}, nil
}

// A replay of a part (GetBody) is a body over the sender's buffer as the first attempt's is: while the transport
// still holds it, the sender must not copy the next parts into that buffer, nor give it to the pool for another
// build's trace.
func TestTraceWriterLeavesTheBufferToAReplayStillRead(t *testing.T) {
	h := &replayHolder{}
	cl, err := NewClient("http://coordinator.example", WithHTTPClient(&http.Client{Transport: h}), WithBuildToken(coordBuildToken),
		WithRetryPolicy(RetryPolicy{MaxRetries: 4, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
	require.NoError(t, err)
	w, err := cl.NewTraceWriter(context.Background(), coordBuildID, &TraceOptions{
		ChunkSize: 256 << 10, FlushInterval: time.Hour, KeepAlive: -1, TempDir: t.TempDir(),
	})
	require.NoError(t, err)
	r := rand.New(rand.NewPCG(9, 10))
	want := make([]byte, 700<<10) // three parts, all in the spool's memory
	for i := range want {
		want[i] = 'a' + byte(r.IntN(26))
	}
	w.mu.Lock()
	w.record(want)
	w.mu.Unlock()
	require.NoError(t, w.Close())
	h.mu.Lock()
	defer h.mu.Unlock()
	require.True(t, h.lateSet, "a replay was held and read after the next parts")
	require.NoError(t, h.lateErr)
	assert.True(t, bytes.Equal(want[h.heldAt:h.heldAt+h.heldLen], h.late), "the held replay read its own part")
	assert.True(t, bytes.Equal(want, h.trace), "the coordinator's trace")
}

// A part sent from the spool's file that would straddle two of its files is cut where the first ends, and the next
// starts there from the second: the coordinator gets every byte once, in order.
func TestTraceWriterCutsFilePartsAtTheSpoolsFiles(t *testing.T) {
	c := newTraceCoord(t)
	rec := &bodyRecorder{next: c.srv.Client().Transport}
	cl := c.client(t, WithHTTPClient(&http.Client{Transport: rec}))
	const chunk = 1<<20 + 4099 // parts that do not divide the files' sizes
	w := c.writer(t, cl, TraceOptions{MemoryLimit: 64 << 10, ChunkSize: chunk, TempDir: t.TempDir()})
	want := stressTraceBytes(make([]byte, traceSpoolSeg0+3*chunk), 21, 0)
	w.mu.Lock() // all of it in the file before the first part
	w.record(want)
	w.mu.Unlock()
	require.NoError(t, w.Close())
	got, parts := c.snapshot()
	require.True(t, bytes.Equal(want, got), "the coordinator's trace: %d bytes, want %d", len(got), len(want))
	cut := false
	for _, p := range parts {
		assert.False(t, p.start < traceSpoolSeg0 && p.end > traceSpoolSeg0, "part %d-%d straddles the first file's end", p.start, p.end)
		cut = cut || p.end == traceSpoolSeg0
	}
	assert.True(t, cut, "a part ends where the first file does")
	rec.mu.Lock()
	defer rec.mu.Unlock()
	assert.Positive(t, rec.file, "parts sent from the spool's file")
}
