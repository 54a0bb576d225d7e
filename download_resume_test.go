package runnerapi

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
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
	data := prngBytes(7, 1000)
	var requests atomic.Int32
	srv := testServer(t, func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(data[:500])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})
	c := testClient(t, srv.URL)
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
	c, err := NewClient("https://ci.example.com", WithHTTPClient(&http.Client{Transport: mock}), WithBuildToken(testToken),
		WithRetryPolicy(RetryPolicy{MaxRetries: 2, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
	require.NoError(t, err)
	var buf bytes.Buffer
	_, _, err = c.Artifacts.Download(context.Background(), 42, &buf, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "more than the 5 bytes announced")
	assert.LessOrEqual(t, buf.Len(), 5)
}

// datedServer serves a file with a Last-Modified date and no ETag through http.ServeContent, which honours
// Range and If-Range as a coordinator's front server does. The first answer is cut off at dropAt; before the
// second, the file may be replaced by next, a file of the same size modified later. When ignoreIfRange, it
// answers every range request with a 206, as a server that does not know If-Range would.
type datedServer struct {
	data, next    []byte
	modified      time.Time
	dropAt        int
	ignoreIfRange bool

	mu       sync.Mutex
	requests int
	ifRanges []string
}

func (s *datedServer) handler(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	n := s.requests
	s.ifRanges = append(s.ifRanges, r.Header.Get("If-Range"))
	data, modified := s.data, s.modified
	if n > 1 && s.next != nil {
		data, modified = s.next, s.modified.Add(time.Minute)
	}
	s.mu.Unlock()
	if s.ignoreIfRange {
		r.Header.Del("If-Range")
	}
	w.Header().Set("Content-Disposition", "attachment; filename=artifacts.zip")
	if n == 1 {
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.Header().Set("Last-Modified", modified.UTC().Format(http.TimeFormat))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(data[:s.dropAt])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	http.ServeContent(w, r, "artifacts.zip", modified, bytes.NewReader(data))
}

func (s *datedServer) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ifRanges...)
}

// Without an ETag, a download resumes on the file's Last-Modified date, so a file replaced meanwhile is not
// spliced onto the start of the old one.
func TestArtifactsDownloadResumesOnLastModified(t *testing.T) {
	data := prngBytes(11, 1<<20)
	modified := time.Now().Add(-time.Hour).Truncate(time.Second)
	lastModified := modified.UTC().Format(http.TimeFormat)

	t.Run("same file: the rest of it", func(t *testing.T) {
		s := &datedServer{data: data, modified: modified, dropAt: 300_000}
		c := testClient(t, testServer(t, s.handler).URL)
		var buf bytes.Buffer
		_, _, err := c.Artifacts.Download(context.Background(), 42, &buf, nil)
		require.NoError(t, err)
		assert.Equal(t, sha256Hex(data), sha256Hex(buf.Bytes()))
		assert.Equal(t, []string{"", lastModified}, s.seen())
	})
	next := prngBytes(12, 1<<20)
	t.Run("replaced file, to a file: started over", func(t *testing.T) {
		s := &datedServer{data: data, next: next, modified: modified, dropAt: 300_000}
		c := testClient(t, testServer(t, s.handler).URL)
		path := filepath.Join(t.TempDir(), "a.zip")
		_, _, err := c.Artifacts.DownloadFile(context.Background(), 42, path, nil)
		require.NoError(t, err)
		got, err := os.ReadFile(path)
		require.NoError(t, err)
		assert.Equal(t, sha256Hex(next), sha256Hex(got), "the new file whole, not the old one's start and the new one's end")
	})
	t.Run("replaced file, to a stream: an error", func(t *testing.T) {
		s := &datedServer{data: data, next: next, modified: modified, dropAt: 300_000}
		c := testClient(t, testServer(t, s.handler).URL)
		var buf bytes.Buffer
		_, _, err := c.Artifacts.Download(context.Background(), 42, &buf, nil)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "changed while it was being downloaded")
	})
	t.Run("replaced file, a server without If-Range, to a file: started over", func(t *testing.T) {
		s := &datedServer{data: data, next: next, modified: modified, dropAt: 300_000, ignoreIfRange: true}
		c := testClient(t, testServer(t, s.handler).URL)
		path := filepath.Join(t.TempDir(), "a.zip")
		_, _, err := c.Artifacts.DownloadFile(context.Background(), 42, path, nil)
		require.NoError(t, err)
		got, err := os.ReadFile(path)
		require.NoError(t, err)
		assert.Equal(t, sha256Hex(next), sha256Hex(got), "the 206 of the new file is not spliced onto the old one")
	})
	t.Run("replaced file, a server without If-Range, to a stream: an error", func(t *testing.T) {
		s := &datedServer{data: data, next: next, modified: modified, dropAt: 300_000, ignoreIfRange: true}
		c := testClient(t, testServer(t, s.handler).URL)
		var buf bytes.Buffer
		_, _, err := c.Artifacts.Download(context.Background(), 42, &buf, nil)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "changed while it was being downloaded")
		assert.True(t, bytes.HasPrefix(data, buf.Bytes()))
	})
}

func TestArtStrongLastModified(t *testing.T) {
	at := func(d time.Duration) string {
		return time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC).Add(d).Format(http.TimeFormat)
	}
	h := func(lm, date string) http.Header { return http.Header{"Last-Modified": {lm}, "Date": {date}} }
	assert.Equal(t, at(0), strongLastModified(h(at(0), at(time.Second))))
	assert.Empty(t, strongLastModified(h(at(0), at(0))), "modified in the second of the answer: weak")
	assert.Empty(t, strongLastModified(h(at(0), "")), "no Date")
	assert.Empty(t, strongLastModified(h("yesterday", at(time.Hour))), "malformed")
}
