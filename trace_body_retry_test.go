package runnerapi

import (
	"bytes"
	"io"
	"net/http"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// retryHolder is a transport whose coordinator refuses the first part read from the spool's file with a 503
// before reading its body, and whose transport keeps that body, unread and unclosed, past the writer's patience;
// it reads the held body only once the retry of the same part went out and was read whole.
type retryHolder struct {
	mu    sync.Mutex
	trace []byte
	heldBody
}

func (h *retryHolder) RoundTrip(req *http.Request) (*http.Response, error) {
	from, to := partRange(req)
	h.mu.Lock()
	defer h.mu.Unlock()
	_, isFile := req.Body.(syscall.Conn)
	if req.Body != nil && isFile && h.held == nil && !h.lateSet {
		h.hold(req.Body, from, to)
		return traceAnswer(req, http.StatusServiceUnavailable, 0), nil
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
			h.readHeld()
		}
	}
	return traceAnswer(req, http.StatusAccepted, len(h.trace)), nil
}

// The retry of a part sent from the spool's file, while the transport still holds the first attempt's body, must
// not read the file at its position too: the two bodies would move it under each other, and the first would end
// early or send the wrong bytes.
func TestTraceWriterRetriesAFilePartWithoutTheFilesPosition(t *testing.T) {
	h := &retryHolder{}
	want := writeSpooled(t, h, TraceOptions{MemoryLimit: 64 << 10, ChunkSize: 256 << 10}, 3<<20, 7)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.check(t, want, "the first attempt's body")
	assert.True(t, bytes.Equal(want, h.trace), "the coordinator's trace")
}

// replayHolder is a transport that, like net/http's when a reused connection fails before the request went out,
// closes the first body of the first part and sends a replay from GetBody instead; the coordinator refuses that
// attempt with a 503 before reading it, and the transport goes on holding the replay, reading it only once two
// more parts went out.
type replayHolder struct {
	mu    sync.Mutex
	trace []byte
	parts int
	heldBody
}

func (h *replayHolder) RoundTrip(req *http.Request) (*http.Response, error) {
	from, to := partRange(req)
	h.mu.Lock()
	defer h.mu.Unlock()
	if req.Body != nil && h.held == nil && !h.lateSet {
		_ = req.Body.Close()
		replay, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		h.hold(replay, from, to)
		return traceAnswer(req, http.StatusServiceUnavailable, 0), nil
	}
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		_ = req.Body.Close()
		if err != nil {
			return nil, err
		}
		h.trace = append(h.trace[:from], b...)
		if h.parts++; h.held != nil && h.parts == 3 {
			h.readHeld()
		}
	}
	return traceAnswer(req, http.StatusAccepted, len(h.trace)), nil
}

// A replay of a part (GetBody) is a body over the sender's buffer as the first attempt's is: while the transport
// still holds it, the sender must not copy the next parts into that buffer, nor give it to the pool for another
// build's trace.
func TestTraceWriterLeavesTheBufferToAReplayStillRead(t *testing.T) {
	h := &replayHolder{}
	// Three parts, all in the spool's memory.
	want := writeSpooled(t, h, TraceOptions{ChunkSize: 256 << 10}, 700<<10, 9)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.check(t, want, "a replay")
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
