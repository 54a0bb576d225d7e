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
