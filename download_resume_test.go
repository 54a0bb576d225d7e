package runnerapi

import (
	"context"
	"net/http"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A coordinator that ignores Range and drops every answer at the same byte makes the download start over each
// time: the bytes it delivers again are no progress, so the retry policy must still end it.
func TestArtifactsDownloadFileRestartsWithoutProgressEnd(t *testing.T) {
	data := artPRNGBytes(7, 1000)
	var requests atomic.Int32
	srv := artTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(data[:500])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})
	c := artTestClient(t, srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	dst := filepath.Join(t.TempDir(), "artifacts.zip")
	_, _, err := c.Artifacts.DownloadFile(ctx, 42, dst, nil)
	require.Error(t, err)
	assert.NoError(t, ctx.Err(), "the download ended only with its context: %v", err)
	assert.LessOrEqual(t, requests.Load(), int32(5), "requests for a file that never arrives whole")
	assert.NoFileExists(t, dst)
}
