package runnerapi

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Sync only adds an fsync: the file still lands whole, with its mode, and no temporary file stays behind.
func TestArtifactsDownloadFileSync(t *testing.T) {
	data := prngBytes(11, 300_000)
	for _, sync := range []bool{false, true} {
		fs := &fileServer{data: data}
		srv := testServer(t, fs.handler(t))
		c := testClient(t, srv.URL)
		dir := t.TempDir()
		path := filepath.Join(dir, "a.zip")
		info, _, err := c.Artifacts.DownloadFile(context.Background(), 42, path, &DownloadOptions{Sync: sync})
		require.NoError(t, err, "sync %v", sync)
		assert.Equal(t, int64(len(data)), info.Size)
		got, err := os.ReadFile(path)
		require.NoError(t, err)
		assert.Equal(t, sha256Hex(data), sha256Hex(got))
		fi, err := os.Stat(path)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o644), fi.Mode().Perm())
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		assert.Len(t, entries, 1, "temporary files left behind")
	}
}
