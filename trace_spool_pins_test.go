package runnerapi

import (
	"bytes"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// poolHands reports whether the next few arrays pool hands out include the one id names. The arrays are kept
// until the end, so that no address is freed and used again meanwhile. Under the race detector a pool drops some
// of what it is given, so a defect may go unseen in a run there, never the other way round.
func poolHands(pool *traceArrayPool, id *byte) bool {
	var got [][]byte
	seen := false
	for range 8 {
		b := pool.get()
		got = append(got, b)
		seen = seen || traceArrayID(b) == id
	}
	runtime.KeepAlive(got)
	return seen
}

// The memory phase's array, taken from its pool, goes back there when the spool moves to its file, but not while
// the sender copies a part out of it outside the guard: the next trace would write over what it copies.
func TestTraceSpoolToFileKeepsThePinnedMemoryArrayOutOfThePool(t *testing.T) {
	s := traceSpool{memLimit: DefaultTraceMemoryLimit, dir: t.TempDir()}
	line := bytes.Repeat([]byte("m"), 1000)
	for s.size+int64(len(line)) <= int64(traceSpoolSmall)*2 {
		require.NoError(t, s.append(line))
	}
	require.Equal(t, DefaultTraceMemoryLimit, cap(s.mem), "the memory phase holds an array of its pool")
	view, err := s.readLater(0, 10) // the sender's copy, under way
	require.NoError(t, err)
	pinned := traceArrayID(s.mem)
	for s.file == nil {
		require.NoError(t, s.append(line))
	}
	assert.False(t, poolHands(traceMemoryArrays, pinned), "the array the sender reads went to the pool")
	dst := make([]byte, 10)
	require.NoError(t, view.copyTo(dst))
	assert.Equal(t, line[:10], dst, "what the sender copies is still the trace's")
	s.doneReading()
	require.NoError(t, s.release())
}

// A block a Write files outside the guard stays out of the pool when the spool is released meanwhile (a Close that
// ran while the Write was filing): the filer still reads it.
func TestTraceSpoolReleaseKeepsTheFilersBlockOutOfThePool(t *testing.T) {
	s := traceSpool{memLimit: 1000, dir: t.TempDir()}
	line := bytes.Repeat([]byte("f"), 1000)
	for !s.toFileSoon {
		require.NoError(t, s.append(line))
	}
	job, ok := s.fileLater()
	require.True(t, ok, "a full block waits to be filed")
	filing := traceArrayID(s.prev)
	require.NoError(t, s.release())
	assert.False(t, poolHands(traceBlocks, filing), "the block the filer reads went to the pool")
	assert.Equal(t, line[:10], job.block[:10], "the filer's block is still the trace's")
	s.doneFiling()
}

// A block dropped while the sender reads it (prev, as mem fills again) is not refilled, nor given to the pool,
// until the sender is done; then it serves as a spare.
func TestTraceSpoolRefillSkipsAPinnedBlock(t *testing.T) {
	s := traceSpool{memLimit: 1000, dir: t.TempDir()}
	line := bytes.Repeat([]byte("r"), 1000)
	for range 2 * traceSpoolBlock / len(line) {
		require.NoError(t, s.append(line))
	}
	view, err := s.readLater(s.prevOff, 10) // from prev
	require.NoError(t, err)
	pinned := traceArrayID(s.prev)
	end := s.size + 2*traceSpoolBlock
	other := bytes.Repeat([]byte("X"), 1000)
	refilled := false
	for s.size < end {
		require.NoError(t, s.append(other))
		refilled = refilled || traceArrayID(s.mem) == pinned
	}
	assert.False(t, refilled, "the pinned block refilled")
	dst := make([]byte, 10)
	require.NoError(t, view.copyTo(dst))
	assert.Equal(t, line[:10], dst, "what the sender copies is still the trace's")
	require.NoError(t, s.release()) // still pinned: not for the pool
	assert.False(t, poolHands(traceBlocks, pinned), "the block the sender reads went to the pool")
	s.doneReading()
}
