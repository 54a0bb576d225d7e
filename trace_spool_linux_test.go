package runnerapi

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The spool's reservations reach the file system: the file's allocated blocks cover them.
func TestTraceSpoolAllocatesAhead(t *testing.T) {
	dir := t.TempDir()
	probe, err := os.Create(filepath.Join(dir, "probe"))
	require.NoError(t, err)
	err = syscall.Fallocate(int(probe.Fd()), fallocKeepSize, 0, 1<<20)
	require.NoError(t, probe.Close())
	if errors.Is(err, syscall.EOPNOTSUPP) {
		t.Skipf("the file system of %s cannot allocate ahead: %v", dir, err)
	}
	require.NoError(t, err)

	s := traceSpool{memLimit: 1000, dir: dir}
	line := bytes.Repeat([]byte("a"), 1000)
	for range 2 * traceSpoolBlock / len(line) {
		require.NoError(t, s.append(line))
	}
	require.NotNil(t, s.file)
	var allocated, size int64
	for _, seg := range s.file.segs[:s.file.n] {
		fi, err := seg.Stat()
		require.NoError(t, err)
		allocated += fi.Sys().(*syscall.Stat_t).Blocks * 512
		size += fi.Size()
	}
	assert.GreaterOrEqual(t, allocated, s.reserved)
	assert.Greater(t, s.reserved, size)
	require.NoError(t, s.release())
}

// On Linux the spool's files are made without a name at all (O_TMPFILE), or unlinked at once: none has a link.
func TestTraceSpoolFilesAreUnlinked(t *testing.T) {
	f := &traceSpoolFile{dir: t.TempDir()}
	require.NoError(t, f.ensure(2*traceSpoolSeg0+1))
	require.Equal(t, 3, f.n)
	for k, seg := range f.segs[:f.n] {
		fi, err := seg.Stat()
		require.NoError(t, err)
		assert.Zero(t, fi.Sys().(*syscall.Stat_t).Nlink, "file %d has a name", k)
		assert.False(t, f.named[k])
	}
	n, err := f.WriteAt([]byte("x"), 2*traceSpoolSeg0)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	require.NoError(t, f.remove())
}
