package runnerapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A redirect the SDK refuses, a loop or one that would send the build token's request body elsewhere, is met
// again by every attempt: a download makes one attempt's worth of hops and fails with an error that is not
// transient, whichever of the download calls meets it.
func TestArtifactsDownloadRedirectLoopIsPermanent(t *testing.T) {
	var hops atomic.Int32
	srv := testServer(t, func(w http.ResponseWriter, r *http.Request) {
		hops.Add(1)
		http.Redirect(w, r, r.URL.Path, http.StatusFound)
	})
	c := testClient(t, srv.URL)
	calls := map[string]func() error{
		"Download": func() error {
			_, _, err := c.Artifacts.Download(context.Background(), 42, &bytes.Buffer{}, nil)
			return err
		},
		"DownloadFile": func() error {
			_, _, err := c.Artifacts.DownloadFile(context.Background(), 42, filepath.Join(t.TempDir(), "a.zip"), nil)
			return err
		},
		"Open": func() error {
			_, _, err := c.Artifacts.Open(context.Background(), 42)
			return err
		},
		"Extract": func() error {
			_, _, err := c.Artifacts.Extract(context.Background(), 42, t.TempDir(), nil)
			return err
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			hops.Store(0)
			err := call()
			require.Error(t, err)
			assert.Contains(t, err.Error(), "10 redirects")
			assert.False(t, IsTransient(err), "a loop is met again by every attempt: %v", err)
			assert.Equal(t, int32(10), hops.Load(), "one attempt of ten hops, not retried")
		})
	}
}

// A resumed download that meets a redirect loop stops at once too, rather than spending the retries on it.
func TestArtifactsDownloadResumeRedirectLoopIsPermanent(t *testing.T) {
	data := prngBytes(3, 100_000)
	var requests atomic.Int32
	srv := testServer(t, func(w http.ResponseWriter, r *http.Request) {
		if requests.Add(1) == 1 {
			w.Header().Set("ETag", `"v1"`)
			w.Header().Set("Content-Length", "100000")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(data[:50_000])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
		http.Redirect(w, r, r.URL.Path, http.StatusFound)
	})
	c := testClient(t, srv.URL)
	_, _, err := c.Artifacts.Download(context.Background(), 42, &bytes.Buffer{}, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "10 redirects")
	assert.False(t, IsTransient(err), "%v", err)
	assert.Equal(t, int32(1+10), requests.Load())
}

// A redirect the caller's own CheckRedirect refuses is refused again on every attempt too: the download fails at
// once with the caller's error, which errors.Is still finds, and not as a transient failure.
func TestArtifactsDownloadCallerRefusedRedirectIsPermanent(t *testing.T) {
	var requests atomic.Int32
	srv := testServer(t, func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	})
	refused := errors.New("no redirects, please")
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	c := testClient(t, srv.URL, WithHTTPClient(&http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
		return refused
	}}))
	_, _, err := c.Artifacts.Download(context.Background(), 42, &bytes.Buffer{}, nil)
	require.Error(t, err)
	assert.ErrorIs(t, err, refused)
	assert.False(t, IsTransient(err), "%v", err)
	assert.Equal(t, int32(1), requests.Load())

	// The same for the other calls, through Do.
	requests.Store(0)
	req, err := c.NewRequest(context.Background(), http.MethodGet, "builds/42/artifacts", nil)
	require.NoError(t, err)
	_, err = c.Do(req, io.Discard)
	require.Error(t, err)
	assert.ErrorIs(t, err, refused)
	assert.False(t, IsTransient(err), "%v", err)
	assert.Equal(t, int32(1), requests.Load())
}
