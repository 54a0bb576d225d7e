package runnerapi

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A view taken before appending stays valid however much is appended before it is copied, and blocks the
// sender files out of turn end up in the file as they were.
func TestTraceSpoolBusyViewsAndLateFiling(t *testing.T) {
	s := traceSpool{memLimit: 1000, dir: t.TempDir()}
	r := rand.New(rand.NewPCG(3, 4))
	var want []byte
	add := func(n int) {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(r.Uint32())
		}
		require.NoError(t, s.append(p))
		want = append(want, p...)
	}
	for len(want) < 12*traceSpoolBlock {
		add(1 + r.IntN(5000))
		if r.IntN(200) == 0 {
			add(traceSpoolBlock + r.IntN(1000))
		}
		if r.IntN(50) != 0 {
			continue
		}
		// The sender's turn: take a view and a block to file, let the writer go on for up to three blocks, then
		// copy and file.
		off := r.Int64N(int64(len(want)))
		n := r.IntN(min(len(want)-int(off), 2*traceSpoolBlock) + 1)
		v, err := s.readLater(off, n)
		require.NoError(t, err)
		job, ok := s.fileLater()
		var saved []byte
		if ok {
			saved = bytes.Clone(job.block)
		}
		for k := r.IntN(3 * traceSpoolBlock); k > 0; k -= 4000 {
			add(4000)
		}
		got := make([]byte, n)
		require.NoError(t, v.copyTo(got))
		require.True(t, bytes.Equal(want[off:off+int64(n)], got), "view of %d at %d", n, off)
		if ok {
			require.Equal(t, saved, job.block, "a block being filed was changed")
			require.NoError(t, job.write())
			s.filed(job)
		}
		// The reader and the filer finish in either order.
		if r.IntN(2) == 0 {
			s.doneReading()
			s.doneFiling()
		} else {
			s.doneFiling()
			s.doneReading()
		}
	}
	require.NotNil(t, s.file)
	for range 300 {
		off := r.Int64N(int64(len(want)))
		n := r.IntN(min(len(want)-int(off), 3*traceSpoolBlock) + 1)
		got := make([]byte, n)
		require.NoError(t, s.readAt(got, off))
		require.True(t, bytes.Equal(want[off:off+int64(n)], got), "read of %d at %d", n, off)
	}
	// Everything the spool says is in the file is, byte for byte.
	onDisk := make([]byte, s.fileLen)
	_, err := s.file.ReadAt(onDisk, 0)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(want[:s.fileLen], onDisk))
	held := cap(s.mem) + cap(s.prev)
	for _, b := range append(s.spares[:], s.retired[:]...) {
		held += cap(b)
	}
	assert.LessOrEqual(t, held, 4*traceSpoolBlock)
	require.NoError(t, s.release())
}

// Once the sender is done, the arrays it kept from reuse are reused: appending allocates nothing, even when a
// view pinned both arrays while they turned over.
func TestTraceSpoolBusySpellsDoNotAllocate(t *testing.T) {
	s := traceSpool{memLimit: 1000, dir: t.TempDir()}
	line := bytes.Repeat([]byte("b"), 1000)
	step := func() {
		for range traceSpoolBlock / len(line) {
			require.NoError(t, s.append(line))
		}
		// A view across prev and mem pins both; three blocks go by before the sender is done.
		v, err := s.readLater(s.memOff-5, 10)
		require.NoError(t, err)
		require.Equal(t, 2, v.n)
		for range 3 * traceSpoolBlock / len(line) {
			require.NoError(t, s.append(line))
		}
		s.doneReading()
	}
	for range 4 {
		step()
	}
	allocs := testing.AllocsPerRun(20, step)
	assert.Zero(t, allocs)
	require.NoError(t, s.release())
}
