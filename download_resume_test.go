package runnerapi

import (
	"bytes"
	"context"
	"net/http"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jarcoal/httpmock"
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

// A transport that does not hold a body to its Content-Length (net/http's own does) must not get more bytes into
// the caller's writer than the file has.
func TestArtifactsDownloadBodyLongerThanAnnounced(t *testing.T) {
	mock := httpmock.NewMockTransport()
	mock.RegisterResponder(http.MethodGet, "https://ci.example.com/ci/api/v1/builds/42/artifacts",
		func(*http.Request) (*http.Response, error) {
			resp := httpmock.NewBytesResponse(http.StatusOK, []byte("0123456789"))
			resp.ContentLength = 5
			return resp, nil
		})
	c, err := NewClient("https://ci.example.com", WithHTTPClient(&http.Client{Transport: mock}), WithBuildToken(artTestToken),
		WithRetryPolicy(RetryPolicy{MaxRetries: 2, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
	require.NoError(t, err)
	var buf bytes.Buffer
	_, _, err = c.Artifacts.Download(context.Background(), 42, &buf, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "more than the 5 bytes announced")
	assert.LessOrEqual(t, buf.Len(), 5)
}
