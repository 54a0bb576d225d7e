package runnerapi

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// bodyRecorder is a transport that notes, for every trace part, whether its body offered the transport a file
// descriptor (which net's sendfile looks for), and can hold the first part until released.
type bodyRecorder struct {
	next    http.RoundTripper
	hold    chan struct{} // when not nil, the first PATCH waits for it to be closed
	mu      sync.Mutex
	file    int // bodies offering a descriptor (read at the file's position)
	offset  int // bodies read from the spool's file by offset
	memory  int
	patches int
}

func (b *bodyRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPatch && req.Body != nil {
		b.mu.Lock()
		b.patches++
		first := b.patches == 1
		switch req.Body.(type) {
		case syscall.Conn:
			b.file++
		case *traceSectionBody:
			b.offset++
		default:
			b.memory++
		}
		b.mu.Unlock()
		if first && b.hold != nil {
			<-b.hold
		}
	}
	return b.next.RoundTrip(req)
}

// A part the spool's file holds goes to the transport as the file itself, so that the kernel sends its pages
// (sendfile) instead of the process copying them twice; the coordinator gets the same bytes.
func TestTraceWriterSendsFiledPartsFromTheFile(t *testing.T) {
	c := newTraceCoord(t)
	rec := writeHeldBackTrace(t, c, c.srv.Client().Transport)
	assert.Positive(t, rec.file, "parts sent from the spool's file (%d by offset, %d from memory)", rec.offset, rec.memory)
	assert.Zero(t, rec.offset, "over plain HTTP a file part is the file")
}

// Over TLS net/http reads a body like any other: a part of the spool's file is read by offset, so that no two
// bodies share the file's position, and still without a copy into the sender's buffer.
func TestTraceWriterOverTLSReadsFilePartsByOffset(t *testing.T) {
	c := &traceCoord{t: t, status: "running"}
	c.srv = httptest.NewTLSServer(http.HandlerFunc(c.serve))
	t.Cleanup(c.srv.Close)
	rec := writeHeldBackTrace(t, c, c.srv.Client().Transport)
	assert.Positive(t, rec.offset, "parts read from the spool's file by offset (%d from memory)", rec.memory)
	assert.Zero(t, rec.file, "no body shares the file's position over TLS")
}

// writeHeldBackTrace writes 8 MiB through a writer whose first part the transport holds until everything is
// written, so that the parts after it come from the spool's file, and checks the coordinator's trace.
func writeHeldBackTrace(t *testing.T, c *traceCoord, next http.RoundTripper) *bodyRecorder {
	rec := &bodyRecorder{next: next, hold: make(chan struct{})}
	cl := c.client(t, WithHTTPClient(&http.Client{Transport: rec}))
	w := c.writer(t, cl, TraceOptions{MemoryLimit: 64 << 10, ChunkSize: 256 << 10, FlushInterval: time.Millisecond, TempDir: t.TempDir()})
	r := rand.New(rand.NewPCG(3, 4))
	var want []byte
	for len(want) < 8<<20 {
		line := strconv.AppendUint(nil, r.Uint64(), 36)
		line = append(line, " a line of output\n"...)
		want = append(want, line...)
		_, err := w.Write(line)
		require.NoError(t, err)
	}
	close(rec.hold)
	require.NoError(t, w.Close())
	got, _ := c.snapshot()
	require.True(t, bytes.Equal(want, got), "the coordinator's trace: %d bytes, want %d", len(got), len(want))
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec
}

// heldBody is a body a test transport keeps, unread, to read it later, as a transport that goes on sending a body
// after the answer arrived; and what it read of it then.
type heldBody struct {
	held    io.ReadCloser
	heldAt  int64
	heldLen int64
	late    []byte
	lateErr error
	lateSet bool
}

func (h *heldBody) hold(body io.ReadCloser, from, to int64) {
	h.held, h.heldAt, h.heldLen = body, from, to-from
}

// readHeld reads the held body to its end, and closes it.
func (h *heldBody) readHeld() {
	h.late, h.lateErr = io.ReadAll(h.held)
	_ = h.held.Close()
	h.held, h.lateSet = nil, true
}

// check asserts that the held body, read late, gave its own part of want.
func (h *heldBody) check(t *testing.T, want []byte, what string) {
	t.Helper()
	require.True(t, h.lateSet, "%s was held and read later", what)
	require.NoError(t, h.lateErr)
	assert.True(t, bytes.Equal(want[h.heldAt:h.heldAt+h.heldLen], h.late),
		"%s read %d bytes, its part is %d, or not its own bytes", what, len(h.late), h.heldLen)
}

// partRange reads a part's Content-Range, START-END.
func partRange(req *http.Request) (from, to int64) {
	start, end, _ := strings.Cut(req.Header.Get("Content-Range"), "-")
	from, _ = strconv.ParseInt(start, 10, 64)
	to, _ = strconv.ParseInt(end, 10, 64)
	return from, to
}

// traceAnswer is a coordinator's answer to a part: a 202 with the trace's length, or another status.
func traceAnswer(req *http.Request, status, length int) *http.Response {
	h := http.Header{}
	if status == http.StatusAccepted {
		h = http.Header{"Range": {"0-" + strconv.Itoa(length)}, "Build-Status": {"running"}}
	}
	return &http.Response{StatusCode: status, Status: strconv.Itoa(status) + " " + http.StatusText(status), Header: h,
		Body: http.NoBody, Request: req, ProtoMajor: 1, ProtoMinor: 1}
}

// writeSpooled writes n random letters through a writer of a client on rt, all of them spooled (and, past the
// memory limit o gives, filed) before the sender sends anything, closes the writer and returns what it wrote.
func writeSpooled(t *testing.T, rt http.RoundTripper, o TraceOptions, n int, seed uint64) []byte {
	t.Helper()
	cl, err := NewClient("http://coordinator.example", WithHTTPClient(&http.Client{Transport: rt}), WithBuildToken(coordBuildToken),
		WithRetryPolicy(RetryPolicy{MaxRetries: 4, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
	require.NoError(t, err)
	o.FlushInterval, o.KeepAlive, o.TempDir = time.Hour, -1, t.TempDir()
	w, err := cl.NewTraceWriter(context.Background(), coordBuildID, &o)
	require.NoError(t, err)
	r := rand.New(rand.NewPCG(seed, seed+1))
	want := make([]byte, n)
	for i := range want {
		want[i] = 'a' + byte(r.IntN(26))
	}
	w.mu.Lock() // record, unlike Write, does not wake the sender
	w.record(want)
	w.mu.Unlock()
	require.NoError(t, w.Close())
	return want
}

// lateReader is a transport that answers a part at once, as a coordinator that answers before it has read the
// body, and reads the first file body only after the writer sent the next part: while a body reads the spool's
// file at the file's position, the writer must not send another part from the file.
type lateReader struct {
	mu    sync.Mutex
	trace []byte
	heldBody
}

func (l *lateReader) RoundTrip(req *http.Request) (*http.Response, error) {
	from, to := partRange(req)
	l.mu.Lock()
	defer l.mu.Unlock()
	_, isFile := req.Body.(syscall.Conn)
	switch {
	case req.Body == nil:
	case isFile && l.held == nil && !l.lateSet:
		// Keep this body unread: the answer goes first.
		l.hold(req.Body, from, to)
		l.trace = append(l.trace, make([]byte, to-from)...)
	default:
		b, err := io.ReadAll(req.Body)
		_ = req.Body.Close()
		if err != nil {
			return nil, err
		}
		l.trace = append(l.trace[:from], b...)
		if l.held != nil {
			// The next part went out: now read the one held, which must still be its own bytes.
			l.readHeld()
		}
	}
	return traceAnswer(req, http.StatusAccepted, len(l.trace)), nil
}

func TestTraceWriterSendsNoFilePartWhileTheLastIsStillRead(t *testing.T) {
	l := &lateReader{}
	want := writeSpooled(t, l, TraceOptions{MemoryLimit: 64 << 10, ChunkSize: 256 << 10}, 3<<20, 5)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.check(t, want, "a file body")
	copy(l.trace[l.heldAt:], l.late)
	assert.True(t, bytes.Equal(want, l.trace), "the trace, once the held part is in")
}

// A file body reads from the file's position, which the kernel moves when it sends the file's pages itself; it
// ends at the part's end whatever the transport read of it before.
func TestTraceFileBodyEndsAtThePartsEnd(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "spool")
	require.NoError(t, err)
	defer f.Close()
	content := []byte(strings.Repeat("0123456789", 20))
	_, err = f.Write(content)
	require.NoError(t, err)

	b, err := newTraceFileBody(f, 10, 100)
	require.NoError(t, err)
	head := make([]byte, 30)
	n, err := b.Read(head)
	require.NoError(t, err)
	assert.Equal(t, content[10:40], head[:n])
	// As sendfile would: 30 more bytes sent by the kernel.
	_, err = f.Seek(70, io.SeekStart)
	require.NoError(t, err)
	rest, err := io.ReadAll(b)
	require.NoError(t, err)
	assert.Equal(t, content[70:110], rest, "the part's last bytes, and nothing after them")
	require.NoError(t, b.Close())
	select {
	case <-b.closed():
	default:
		t.Fatal("Close is told")
	}

	// A file shorter than the part is an error, never a short body in silence.
	short, err := newTraceFileBody(f, 190, 20)
	require.NoError(t, err)
	_, err = io.ReadAll(short)
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
}
