package runnerapitest

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/runnerapi/runnerapi"
)

// TestDownloadResumesByLastModified: the fake serves artifacts as GitLab's Workhorse does, with the file's
// modification time as Last-Modified, so the SDK resumes a download cut short with a range request naming it in
// If-Range, instead of failing or starting over.
func TestDownloadResumesByLastModified(t *testing.T) {
	srv := NewServer()
	t.Cleanup(srv.Close)
	const runnerToken = "resume-runner-token-0001"
	srv.AddRunner(runnerToken)
	id := srv.Enqueue(runnerapi.Build{Name: "build"})
	cl, err := runnerapi.NewClient(srv.URL, runnerapi.WithRunnerToken(runnerToken))
	require.NoError(t, err)
	b, _, err := cl.Builds.Register(context.Background(), nil)
	require.NoError(t, err)
	require.NotNil(t, b)

	content := bytes.Repeat([]byte("0123456789abcdef"), 16<<10)
	_, err = srv.SetArtifact(id, "artifacts.zip", bytes.NewReader(content))
	require.NoError(t, err)
	// A Last-Modified less than a second before the answer's Date is a weak validator (RFC 9110, 8.8.2.2): the file
	// is given the age a stored artifact has by the time another build downloads it.
	srv.mu.Lock()
	path := srv.builds[id].artifact.path
	srv.mu.Unlock()
	stored := time.Now().Add(-time.Hour).Truncate(time.Second)
	require.NoError(t, os.Chtimes(path, stored, stored))

	require.NoError(t, srv.ScriptFaults(EndpointDownload, FaultDropAfter))
	var got bytes.Buffer
	_, _, err = cl.Artifacts.Download(context.Background(), id, &got, nil, runnerapi.WithToken(b.Token))
	require.NoError(t, err)
	assert.True(t, bytes.Equal(content, got.Bytes()), "every byte once, in order")

	var downloads []Request
	for _, r := range srv.Requests() {
		if r.Endpoint == EndpointDownload {
			downloads = append(downloads, r)
		}
	}
	require.Len(t, downloads, 2)
	assert.Equal(t, FaultDropAfter, downloads[0].Fault)
	assert.Equal(t, http.StatusPartialContent, downloads[1].Status, "the rest, by a range request")
}

// TestDownloadLastModifiedIsTheFilesModificationTime: Workhorse's sendfile takes Last-Modified from the file on
// disk, and sends no ETag.
func TestDownloadLastModifiedIsTheFilesModificationTime(t *testing.T) {
	srv := NewServer()
	t.Cleanup(srv.Close)
	id := srv.Enqueue(runnerapi.Build{Name: "build", Token: "download-build-token-0001"})
	_, err := srv.SetArtifact(id, "artifacts.zip", bytes.NewReader([]byte("zip")))
	require.NoError(t, err)
	srv.mu.Lock()
	path := srv.builds[id].artifact.path
	srv.mu.Unlock()
	stored := time.Date(2017, 3, 22, 10, 4, 5, 0, time.UTC)
	require.NoError(t, os.Chtimes(path, stored, stored))

	req, err := http.NewRequest(http.MethodGet, srv.URL+"/ci/api/v1/builds/"+strconv.FormatInt(id, 10)+"/artifacts", nil)
	require.NoError(t, err)
	req.Header.Set("BUILD-TOKEN", "download-build-token-0001")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "Wed, 22 Mar 2017 10:04:05 GMT", resp.Header.Get("Last-Modified"))
	assert.Empty(t, resp.Header.Values("ETag"))
	assert.Equal(t, "bytes", resp.Header.Get("Accept-Ranges"))
}
