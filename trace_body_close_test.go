package runnerapi

import (
	"bytes"
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
