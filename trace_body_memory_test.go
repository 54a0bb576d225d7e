package runnerapi

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// spoolAliasRecorder is a transport that notes, for every part in memory, whether its body reads the writer's
// spool arrays themselves, and reads the body whole.
type spoolAliasRecorder struct {
	w       *TraceWriter
	mu      sync.Mutex
	trace   []byte
	aliased int
	copied  int
	buffers int // parts sent while the sender held a buffer of its own
}

// within reports whether b starts inside the array of arr.
func within(b, arr []byte) bool {
	if len(b) == 0 || cap(arr) == 0 {
		return false
	}
	p, lo := uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&arr[:cap(arr)][0]))
	return p >= lo && p < lo+uintptr(cap(arr))
}

func (r *spoolAliasRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	from, _ := partRange(req)
	if body, ok := req.Body.(*traceBodyReader); ok {
		r.w.mu.Lock()
		spool := within(body.rest, r.w.spool.mem) || within(body.rest, r.w.spool.prev)
		buffer := r.w.sendBuf != nil // RoundTrip runs on the sender's goroutine, the buffer's owner
		r.w.mu.Unlock()
		r.mu.Lock()
		if spool {
			r.aliased++
		} else {
			r.copied++
		}
		if buffer {
			r.buffers++
		}
		r.mu.Unlock()
	}
	var b []byte
	if req.Body != nil {
		var err error
		b, err = io.ReadAll(req.Body)
		_ = req.Body.Close()
		if err != nil {
			return nil, err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.trace = append(r.trace[:from], b...)
	return traceAnswer(req, http.StatusAccepted, len(r.trace)), nil
}

// A part still in the spool's memory is sent from the spool's own arrays, not from a copy in a buffer of the
// sender's: every byte copied once less, and a trace that stays in memory takes no such buffer. The trace arrives
// whole.
func TestTraceWriterSendsMemoryPartsFromTheSpool(t *testing.T) {
	rec := &spoolAliasRecorder{}
	cl, err := NewClient("http://coordinator.example", WithHTTPClient(&http.Client{Transport: rec}), WithBuildToken(coordBuildToken))
	require.NoError(t, err)
	// Parts of 1 MiB of a trace of 3 MB: each is sent from the memory phase's array of 4 MiB, which the spool
	// keeps until it moves to a file.
	w, err := cl.NewTraceWriter(context.Background(), coordBuildID, &TraceOptions{FlushInterval: time.Hour, KeepAlive: -1})
	require.NoError(t, err)
	rec.w = w
	r := rand.New(rand.NewPCG(3, 4))
	var want []byte
	line := make([]byte, 100)
	for range 30000 {
		for i := range line {
			line[i] = 'a' + byte(r.IntN(26))
		}
		want = append(want, line...)
		_, err := w.Write(line)
		require.NoError(t, err)
	}
	require.NoError(t, w.Close())
	rec.mu.Lock()
	defer rec.mu.Unlock()
	assert.True(t, bytes.Equal(want, rec.trace), "the coordinator's trace")
	assert.Positive(t, rec.aliased, "parts sent from the spool's memory")
	assert.Zero(t, rec.copied, "parts copied into the sender's buffer first")
	assert.Zero(t, rec.buffers, "parts sent while the sender held a buffer")
}

// memoryHolder is a transport that keeps the first body of a part past the spool's memory limit unread,
// answering 202 for it at once (the coordinator's trace padded meanwhile), and reads and closes it when the part
// that comes readAfter parts after it does.
type memoryHolder struct {
	mu        sync.Mutex
	limit     int64
	readAfter int
	trace     []byte
	after     int // parts since the held one
	heldBody
}

func (h *memoryHolder) RoundTrip(req *http.Request) (*http.Response, error) {
	from, to := partRange(req)
	h.mu.Lock()
	defer h.mu.Unlock()
	_, isFile := req.Body.(syscall.Conn)
	_, bySection := req.Body.(*traceSectionBody)
	switch {
	case req.Body == nil:
	case !isFile && !bySection && from >= h.limit && h.held == nil && !h.lateSet:
		h.hold(req.Body, from, to)
		h.trace = append(h.trace[:from], make([]byte, to-from)...)
		h.after = 0
	default:
		if h.held != nil && h.after >= h.readAfter {
			h.readHeld()
		}
		h.after++
		b, err := io.ReadAll(req.Body)
		_ = req.Body.Close()
		if err != nil {
			return nil, err
		}
		h.trace = append(h.trace[:from], b...)
	}
	return traceAnswer(req, http.StatusAccepted, len(h.trace)), nil
}

// A body over the spool's memory that the transport keeps past the answer (and the sender's patience) keeps the
// arrays it reads: the spool must not refill them with later blocks while the transport may still read them.
func TestTraceWriterKeepsTheSpoolsArraysToABodyStillRead(t *testing.T) {
	const limit = 64 << 10
	// The held body is read once 16 more parts went out: by then the spool has refilled its blocks several times.
	h := &memoryHolder{limit: 2 * limit, readAfter: 16}
	w, write, want := lateBodyTraceWriter(t, h, limit, 5)
	write(3 * limit)
	write(200 << 10) // the part the transport holds
	for range 6 {
		write(1 << 20) // blocks of the spool filled, filed and refilled meanwhile
	}
	require.NoError(t, w.Close())
	h.mu.Lock()
	defer h.mu.Unlock()
	h.check(t, *want, "a memory body")
	copy(h.trace[h.heldAt:], h.late)
	assert.True(t, bytes.Equal(*want, h.trace), "the trace, once the held part is in")
}

// lateBodyTraceWriter returns a TraceWriter of memoryLimit bytes sending through tr, parts of 256 KiB, a function
// that writes n bytes of random lines and flushes them, so that each part is sent while still in the spool's
// memory, and what it wrote so far.
func lateBodyTraceWriter(t *testing.T, tr http.RoundTripper, memoryLimit int, seed uint64) (*TraceWriter, func(n int), *[]byte) {
	t.Helper()
	cl, err := NewClient("http://coordinator.example", WithHTTPClient(&http.Client{Transport: tr}), WithBuildToken(coordBuildToken))
	require.NoError(t, err)
	w, err := cl.NewTraceWriter(context.Background(), coordBuildID, &TraceOptions{MemoryLimit: memoryLimit,
		ChunkSize: 256 << 10, FlushInterval: time.Hour, KeepAlive: -1, TempDir: t.TempDir()})
	require.NoError(t, err)
	r := rand.New(rand.NewPCG(seed, seed+1))
	want := new([]byte)
	line := make([]byte, 1000)
	write := func(n int) {
		for range n / len(line) {
			for i := range line {
				line[i] = 'a' + byte(r.IntN(26))
			}
			*want = append(*want, line...)
			_, err := w.Write(line)
			require.NoError(t, err)
		}
		require.NoError(t, w.Flush(context.Background()))
	}
	return w, write, want
}
