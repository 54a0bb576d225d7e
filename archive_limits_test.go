package runnerapi

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The directories an entry's name implies are created too, so they count against MaxFiles: otherwise a few deep
// names would create any number of them.
func TestArtifactsExtractCountsImpliedDirectories(t *testing.T) {
	deep := strings.Repeat("d/", 50) + "f"
	b := artMakeZip(t, []artZipEntrySpec{{name: deep, mode: 0o644, content: []byte("x")}})

	dir := filepath.Join(t.TempDir(), "dir")
	err := artExtractBytes(t, b, dir, 1<<20, 10)
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrTooLarge)
	entries, _ := os.ReadDir(dir)
	assert.Empty(t, entries, "nothing is written when the count is over")

	ok := filepath.Join(t.TempDir(), "dir")
	require.NoError(t, artExtractBytes(t, b, ok, 1<<20, 51))
	assert.FileExists(t, filepath.Join(ok, filepath.FromSlash(deep)))
}
