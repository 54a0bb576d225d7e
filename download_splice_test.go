package runnerapi

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// versionServer serves a file that is replaced by another version of the same size while it downloads: the first
// answer, of v1, is cut off at half; every later one is of v2. It honours Range but not If-Range, as a server or
// cache that does not know it, so only the validators on its answers can tell the client that the file changed.
type versionServer struct {
	v1, v2 []byte
	// validators returns the validator headers of an answer of version v (1 or 2), whole or partial.
	validators func(v int, partial bool) http.Header

	mu       sync.Mutex
	requests int
	ranges   []string
	ifRanges []string
}

func (s *versionServer) handler(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	n := s.requests
	s.ranges = append(s.ranges, r.Header.Get("Range"))
	s.ifRanges = append(s.ifRanges, r.Header.Get("If-Range"))
	s.mu.Unlock()
	data, v := s.v2, 2
	if n == 1 {
		data, v = s.v1, 1
	}
	body, status := data, http.StatusOK
	if rng := r.Header.Get("Range"); rng != "" {
		from, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(rng, "bytes="), "-"))
		if err != nil || from >= len(data) {
			http.Error(w, "range", http.StatusRequestedRangeNotSatisfiable)
			return
		}
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, len(data)-1, len(data)))
		body, status = data[from:], http.StatusPartialContent
	}
	for k, vs := range s.validators(v, status == http.StatusPartialContent) {
		w.Header()[k] = vs
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if n == 1 {
		_, _ = w.Write(body[:len(body)/2])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	_, _ = w.Write(body)
}

func (s *versionServer) seen() (ranges, ifRanges []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ranges...), append([]string(nil), s.ifRanges...)
}

// A download resumed after a dropped connection continues the same file only when a strong validator proves it:
// sent in If-Range and matched by the 206 that answers. Otherwise the rest may be of another version, and a file
// download starts over from zero (getting the new version whole), while a stream, whose writer cannot take back
// what it received, fails and says why. Never v1's first half and v2's second.
func TestArtifactsDownloadNeverSplicesVersions(t *testing.T) {
	v1, v2 := prngBytes(21, 400_000), prngBytes(22, 400_000)
	etags := func(weak bool, on206 func(v int) string) func(int, bool) http.Header {
		return func(v int, partial bool) http.Header {
			etag := `"v` + strconv.Itoa(v) + `"`
			if weak {
				etag = "W/" + etag
			}
			if partial {
				etag = on206(v)
			}
			if etag == "" {
				return http.Header{}
			}
			return http.Header{"Etag": {etag}}
		}
	}
	tests := []struct {
		name       string
		validators func(v int, partial bool) http.Header
		message    string // of the stream's error
	}{
		{name: "no validator", validators: func(int, bool) http.Header { return http.Header{} },
			message: "no strong ETag or Last-Modified"},
		{name: "206 without the ETag", validators: etags(false, func(int) string { return "" }),
			message: "does not carry the file's validator"},
		{name: "206 with another ETag", validators: etags(false, func(v int) string { return `"v` + strconv.Itoa(v) + `"` }),
			message: "changed while it was being downloaded"},
		{name: "weak ETag", validators: etags(true, func(v int) string { return `W/"v` + strconv.Itoa(v) + `"` }),
			message: "no strong ETag or Last-Modified"},
		{name: "Last-Modified in the second of the answer", validators: func(int, bool) http.Header {
			// Both versions were modified within the second the answers were made: a weak validator.
			now := time.Now().UTC().Format(http.TimeFormat)
			return http.Header{"Last-Modified": {now}, "Date": {now}}
		}, message: "no strong ETag or Last-Modified"},
	}
	for _, tt := range tests {
		t.Run(tt.name+", to a file: started over", func(t *testing.T) {
			s := &versionServer{v1: v1, v2: v2, validators: tt.validators}
			c := testClient(t, testServer(t, s.handler).URL)
			path := filepath.Join(t.TempDir(), "a.zip")
			_, _, err := c.Artifacts.DownloadFile(context.Background(), 42, path, nil)
			require.NoError(t, err)
			got, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, sha256Hex(v2), sha256Hex(got), "v2 whole, not v1's start and v2's end")
			ranges, _ := s.seen()
			assert.Empty(t, ranges[len(ranges)-1], "the last request asks for the whole file")
		})
		t.Run(tt.name+", to a stream: an error", func(t *testing.T) {
			s := &versionServer{v1: v1, v2: v2, validators: tt.validators}
			c := testClient(t, testServer(t, s.handler).URL)
			var buf bytes.Buffer
			_, _, err := c.Artifacts.Download(context.Background(), 42, &buf, nil)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.message)
			assert.Less(t, buf.Len(), len(v1))
			assert.True(t, bytes.HasPrefix(v1, buf.Bytes()), "the writer received bytes that are not v1's")

			rc, _, err := c.Artifacts.Open(context.Background(), 42)
			require.NoError(t, err) // v2 from now on: a fresh start is no splice
			require.NoError(t, rc.Close())
		})
	}

	// With a strong validator that the 206 matches, the download resumes and sends it in If-Range.
	t.Run("206 with the same ETag: resumed", func(t *testing.T) {
		s := &versionServer{v1: v1, v2: v1, validators: etags(false, func(int) string { return `"v1"` })}
		c := testClient(t, testServer(t, s.handler).URL)
		var buf bytes.Buffer
		_, _, err := c.Artifacts.Download(context.Background(), 42, &buf, nil)
		require.NoError(t, err)
		assert.Equal(t, sha256Hex(v1), sha256Hex(buf.Bytes()))
		ranges, ifRanges := s.seen()
		require.Len(t, ranges, 2)
		assert.NotEmpty(t, ranges[1])
		assert.Equal(t, `"v1"`, ifRanges[1])
	})
}
