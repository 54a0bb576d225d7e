package runnerapi

import (
	"bytes"
	"io"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// HTTP/2's transport closes a request body from a goroutine of its own once the answer ends the stream (a 416
// GitLab sends before it reads the part, say), while its writer may be inside the body's Read, and that writer
// reads the body once more before it looks at the close, dropping what it read. A part in the spool's memory is
// read from the spool's own arrays, which the sender unpins as soon as the body says it is closed; the spool then
// refills them with later bytes, or gives them to the pool for another build. So after its Close the body must
// read nothing of them: the late read raced with the bytes written there (another trace's, once pooled).
func TestTraceBodyReadsNothingOfTheSpoolAfterItsClose(t *testing.T) {
	s := traceSpool{memLimit: 1, dir: t.TempDir()}
	first := bytes.Repeat([]byte("a"), traceSpoolBlock)
	require.NoError(t, s.append(first))
	// The sender's part, as partLocked makes it: the spool's own array, pinned.
	view, err := s.view(0, len(first))
	require.NoError(t, err)
	require.True(t, view.inMemory() && view.n == 1, "the part is in one of the spool's arrays")
	s.pinView(view)
	part := tracePart{mem: view.segs[0].mem, spooled: true}
	body, err := part.body(false)
	require.NoError(t, err)

	buf := make([]byte, 10)
	n, err := body.Read(buf) // the transport's writer, under way
	require.NoError(t, err)
	require.Equal(t, first[:n], buf[:n])
	require.NoError(t, body.Close()) // the transport's other goroutine, on the answer
	<-body.closed()
	s.doneReading() // the sender, once the body says it is closed (sendPart's done)

	later := bytes.Repeat([]byte("b"), 1000)
	for refilled := false; !refilled && s.size < 3*traceSpoolBlock; {
		require.NoError(t, s.append(later))
		refilled = traceArrayID(s.mem) == traceArrayID(view.segs[0].held)
	}
	require.Equal(t, traceArrayID(view.segs[0].held), traceArrayID(s.mem), "the part's array holds later bytes by now")

	n, err = body.Read(buf) // the transport's writer, before it looks at the close
	if err == nil {
		assert.Equal(t, first[10:10+n], buf[:n], "bytes read after the body's Close are not the part's")
	}
	assert.Error(t, err, "a Read after the body's Close")
	assert.Zero(t, n, "bytes read after the body's Close")
	require.NoError(t, s.release())
}

// The same goes for a part read from the spool's file at the file's position: once its body says it is closed,
// the next part's body seeks the file and reads from there (from an offset within the first part, after a 416 that
// said the coordinator has less), and a late Read of the first body would move the position under it: the next
// part would send the bytes of another offset.
func TestTraceFileBodyLeavesTheFilesPositionAloneAfterItsClose(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "spool")
	require.NoError(t, err)
	defer f.Close()
	content := make([]byte, 1000)
	for i := range content {
		content[i] = byte('a' + i%26)
	}
	_, err = f.Write(content)
	require.NoError(t, err)

	first, err := newTraceFileBody(f, 0, 500)
	require.NoError(t, err)
	buf := make([]byte, 10)
	_, err = io.ReadFull(first, buf) // the transport's writer, under way
	require.NoError(t, err)
	require.NoError(t, first.Close()) // the transport's other goroutine, on the answer
	<-first.closed()

	next, err := newTraceFileBody(f, 100, 400) // the next part, at the file's position
	require.NoError(t, err)
	n, err := first.Read(buf) // the first body's writer, before it looks at the close
	assert.Error(t, err, "a Read after the body's Close")
	assert.Zero(t, n, "bytes read after the body's Close")
	got, err := io.ReadAll(next)
	require.NoError(t, err)
	assert.Equal(t, content[100:500], got, "the next part's bytes")
}

// The arrays of a body the transport kept past the sender's patience stay pinned while it may read them, and no
// longer: once the transport has closed it, the spool reuses them (and the pools get them back), rather than
// keeping a mebibyte or more for the writer's life for every such body.
func TestTraceWriterUnpinsTheArraysOfABodyClosedLate(t *testing.T) {
	const limit = 64 << 10
	h := &memoryHolder{limit: 2 * limit} // reads and closes the kept body when the next part comes
	w, write, want := lateBodyTraceWriter(t, h, limit, 7)
	write(3 * limit)
	write(200 << 10) // the part the transport keeps
	w.mu.Lock()
	heldWhileOpen := len(w.spool.held)
	w.mu.Unlock()
	write(100 << 10) // the transport closes the kept body, then reads this part
	write(100 << 10) // another part done with: the spool looks at what it holds
	w.mu.Lock()
	heldAfterClose := len(w.spool.held)
	w.mu.Unlock()
	require.NoError(t, w.Close())

	assert.Positive(t, heldWhileOpen, "arrays pinned for the body the transport keeps")
	assert.Zero(t, heldAfterClose, "arrays still pinned for a body the transport has closed")
	h.mu.Lock()
	defer h.mu.Unlock()
	h.check(t, *want, "the kept body")
	copy(h.trace[h.heldAt:], h.late)
	assert.True(t, bytes.Equal(*want, h.trace), "the trace, once the kept part is in")
}
