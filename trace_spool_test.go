package runnerapi

import (
	"bytes"
	"math/rand/v2"
	"os"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTraceSpoolReadsBackEverything(t *testing.T) {
	dir := t.TempDir()
	s := traceSpool{memLimit: 1000, dir: dir}
	r := rand.New(rand.NewPCG(1, 2))
	var want []byte
	for len(want) < 5*traceSpoolBlock {
		n := r.IntN(3000)
		if r.IntN(50) == 0 {
			n = traceSpoolBlock + r.IntN(1000) // a write larger than a block goes straight to the file
		}
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(r.Uint32())
		}
		require.NoError(t, s.append(p))
		want = append(want, p...)
	}
	require.Equal(t, int64(len(want)), s.size)
	require.NotNil(t, s.file, "beyond memLimit the spool is a file")
	assert.LessOrEqual(t, cap(s.mem)+cap(s.prev), 2*traceSpoolBlock+3000)
	for range 500 {
		off := r.Int64N(int64(len(want)))
		n := r.IntN(min(len(want)-int(off), 3*traceSpoolBlock) + 1)
		got := make([]byte, n)
		require.NoError(t, s.readAt(got, off))
		require.True(t, bytes.Equal(want[off:off+int64(n)], got), "read of %d at %d", n, off)
	}
	require.Error(t, s.readAt(make([]byte, 2), s.size-1), "read beyond the end")
	require.Error(t, s.readAt(make([]byte, 1), -1))
	require.NoError(t, s.release())
	files, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, files, "release removes the files")
	require.NoError(t, s.release(), "release is idempotent")
	assert.Error(t, s.append([]byte("x")))
	assert.Error(t, s.readAt(make([]byte, 1), 0))
}

// The spool's files have no name from the start (where the system can unlink an open file), so that a crash
// leaves nothing behind in the temporary directory.
func TestTraceSpoolFilesHaveNoName(t *testing.T) {
	dir := t.TempDir()
	s := traceSpool{memLimit: 1000, dir: dir}
	line := bytes.Repeat([]byte("n"), 1000)
	for range 3 * traceSpoolBlock / len(line) {
		require.NoError(t, s.append(line))
	}
	require.NotNil(t, s.file, "the spool is in its file")
	require.NoError(t, s.file.ensure(3*traceSpoolSeg0), "and in several of them")
	require.Greater(t, s.file.n, 2)
	files, err := os.ReadDir(dir)
	require.NoError(t, err)
	if runtime.GOOS != "windows" { // Windows cannot remove an open file: there the files go at release
		assert.Empty(t, files, "files with a name while the spool is in use")
	}
	got := make([]byte, s.size)
	require.NoError(t, s.readAt(got, 0))
	assert.Equal(t, bytes.Repeat(line, 3*traceSpoolBlock/len(line)), got)
	require.NoError(t, s.release())
	files, err = os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, files)
}

func TestTraceSpoolStaysInMemoryBelowLimit(t *testing.T) {
	dir := t.TempDir()
	s := traceSpool{memLimit: 1 << 20, dir: dir}
	for range 1000 {
		require.NoError(t, s.append(bytes.Repeat([]byte("m"), 1000)))
	}
	assert.Nil(t, s.file)
	assert.LessOrEqual(t, cap(s.mem), 1<<20, "the memory phase never holds more than its limit")
	files, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, files)
	got := make([]byte, 10)
	require.NoError(t, s.readAt(got, 500))
	assert.Equal(t, "mmmmmmmmmm", string(got))
	require.NoError(t, s.release())
}

func TestTraceSpoolBadTempDir(t *testing.T) {
	s := traceSpool{memLimit: 4, dir: "/nonexistent/runnerapi-test"}
	require.NoError(t, s.append([]byte("abcd")))
	err := s.append([]byte("e"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "spooling the trace")
}

// Space the spool reserves ahead of its writes does not show in the file: its size is what was written to it.
func TestTraceSpoolReservesSpaceWithoutGrowingTheFile(t *testing.T) {
	s := traceSpool{memLimit: 1000, dir: t.TempDir()}
	line := bytes.Repeat([]byte("r"), 1000)
	for range 3 * traceSpoolBlock / len(line) {
		require.NoError(t, s.append(line))
	}
	job, ok := s.fileLater()
	require.True(t, ok)
	require.NoError(t, job.write())
	s.filed(job)
	s.doneFiling()
	require.Greater(t, s.reserved, s.fileLen, "space is asked for ahead of the writes")
	var size int64
	for _, seg := range s.file.segs[:s.file.n] {
		fi, err := seg.Stat()
		require.NoError(t, err)
		size += fi.Size()
	}
	assert.Equal(t, s.fileLen, size)
	got := make([]byte, s.size)
	require.NoError(t, s.readAt(got, 0))
	assert.Equal(t, bytes.Repeat(line, 3*traceSpoolBlock/len(line)), got)
	require.NoError(t, s.release())
}

func TestTraceSpoolSegments(t *testing.T) {
	const m = traceSpoolSeg0
	for _, tt := range []struct {
		off         int64
		k           int
		start, size int64
	}{
		{0, 0, 0, m}, {m - 1, 0, 0, m}, {m, 1, m, m}, {2*m - 1, 1, m, m}, {2 * m, 2, 2 * m, 2 * m},
		{4 * m, 3, 4 * m, 2 * m}, {6 * m, 4, 6 * m, 4 * m}, {10 * m, 5, 10 * m, 4 * m},
	} {
		k, start, size := traceSpoolSegment(tt.off)
		assert.Equal(t, []int64{int64(tt.k), tt.start, tt.size}, []int64{int64(k), start, size}, "offset %d", tt.off)
	}
}

// Writes and reads that straddle the boundaries between the spool's files land where they belong, and the
// files are all removed at the end.
func TestTraceSpoolFileAcrossFiles(t *testing.T) {
	dir := t.TempDir()
	f := &traceSpoolFile{dir: dir}
	const m = traceSpoolSeg0
	r := rand.New(rand.NewPCG(5, 6))
	for _, off := range []int64{0, m - 10, 2*m - 3, 4*m - 1000} {
		p := make([]byte, 2000)
		for i := range p {
			p[i] = byte(r.Uint32())
		}
		require.NoError(t, f.ensure(off+int64(len(p))))
		n, err := f.WriteAt(p, off)
		require.NoError(t, err)
		require.Equal(t, len(p), n)
		got := make([]byte, len(p))
		_, err = f.ReadAt(got, off)
		require.NoError(t, err)
		assert.Equal(t, p, got, "at %d", off)
	}
	assert.Equal(t, 4, f.n, "files up to the fourth")
	_, err := f.ReadAt(make([]byte, 10), 8*m)
	assert.Error(t, err, "beyond the files created")
	require.NoError(t, f.remove())
	files, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, files)
}
