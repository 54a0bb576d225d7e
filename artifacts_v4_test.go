package runnerapi_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runnerapi/runnerapi"
	"github.com/runnerapi/runnerapi/runnerapitest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Several uploads per job, by artifact_type and artifact_format (PROTOCOL-v4 §6.2), through the same Upload.
func TestArtifactsV4UploadTypes(t *testing.T) {
	srv := runnerapitest.NewServer()
	defer srv.Close()
	srv.AddRunner("glrt-artifacts-runner")
	srv.EnqueueCommands("artifacts", "true")
	id, jobToken := takeV4Job(t, srv, "glrt-artifacts-runner")
	c := newV4Client(t, srv, runnerapi.WithBuildToken(jobToken))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, resp, err := c.Artifacts.Upload(ctx, id, strings.NewReader("zip bytes"), &runnerapi.UploadOptions{ExpireIn: "1 week"})
	require.NoError(t, err)
	assert.Equal(t, http.StatusCreated, resp.StatusCode)
	_, _, err = c.Artifacts.Upload(ctx, id, strings.NewReader("<testsuite/>"), &runnerapi.UploadOptions{
		Filename: "junit.xml.gz", ArtifactType: "junit", ArtifactFormat: "gzip"})
	require.NoError(t, err)
	archive, ok := srv.JobArtifact(id, "archive")
	require.True(t, ok)
	assert.Equal(t, "1 week", archive.ExpireIn)
	assert.Equal(t, int64(len("zip bytes")), archive.Size)
	junit, ok := srv.JobArtifact(id, "junit")
	require.True(t, ok)
	assert.Equal(t, "gzip", junit.Format)
	assert.Equal(t, "junit.xml.gz", junit.Filename)
	info, _ := srv.Build(id)
	assert.Equal(t, []string{"archive", "junit"}, info.Job.ArtifactTypes)
	for _, r := range srv.Requests() {
		assert.False(t, r.TokenInQuery)
	}
}

// The raw request is gitlab-runner's: POST jobs/:id/artifacts?artifact_format=&artifact_type=&expire_in= with
// JOB-TOKEN and one file part.
func TestArtifactsV4UploadRawRequest(t *testing.T) {
	var got *http.Request
	var body []byte
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		body, _ = io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, "201")
	}))
	defer ts.Close()
	c, err := runnerapi.NewClient(ts.URL, runnerapi.WithAPI(runnerapi.APIv4))
	require.NoError(t, err)
	b, _, err := c.Artifacts.Upload(context.Background(), 3, strings.NewReader("data"), &runnerapi.UploadOptions{
		ArtifactType: "archive", ArtifactFormat: "zip", ExpireIn: "7d"}, runnerapi.WithToken("glcbt-job-token-secret"))
	require.NoError(t, err)
	assert.NotNil(t, b)
	assert.Equal(t, "/api/v4/jobs/3/artifacts", got.URL.Path)
	assert.Equal(t, "artifact_format=zip&artifact_type=archive&expire_in=7d", got.URL.RawQuery)
	assert.Equal(t, "glcbt-job-token-secret", got.Header.Get("JOB-TOKEN"))
	assert.Empty(t, got.Header.Get("BUILD-TOKEN"))
	assert.Equal(t, 1, bytes.Count(body, []byte("Content-Disposition: form-data")))
	assert.Contains(t, string(body), `name="file"; filename="artifacts.zip"`)
}

// A 307 answer to an upload names the host to send it to (gitlab-runner's handleRedirect): a file on disk is sent
// again there; a stream, which cannot be sent twice, fails.
func TestArtifactsV4UploadRedirect(t *testing.T) {
	srv := runnerapitest.NewServer(runnerapitest.WithUploadRedirect())
	defer srv.Close()
	srv.AddRunner("glrt-artifacts-runner")
	srv.EnqueueCommands("artifacts", "true")
	id, jobToken := takeV4Job(t, srv, "glrt-artifacts-runner")
	c := newV4Client(t, srv, runnerapi.WithBuildToken(jobToken))
	path := filepath.Join(t.TempDir(), "artifacts.zip")
	require.NoError(t, os.WriteFile(path, []byte("zip bytes"), 0o600))
	_, resp, err := c.Artifacts.UploadFile(context.Background(), id, path, nil)
	require.NoError(t, err)
	assert.Equal(t, http.StatusCreated, resp.StatusCode)
	a, ok := srv.JobArtifact(id, "archive")
	require.True(t, ok)
	assert.Equal(t, int64(9), a.Size)

	_, _, err = c.Artifacts.Upload(context.Background(), id, strings.NewReader("stream"), &runnerapi.UploadOptions{ArtifactType: "junit"})
	require.Error(t, err)
	assert.NotContains(t, err.Error(), jobToken)
}

// A 302 to object storage is followed without the job token (the fake storage refuses any token).
func TestArtifactsV4DownloadObjectStorage(t *testing.T) {
	srv := runnerapitest.NewServer(runnerapitest.WithObjectStorage())
	defer srv.Close()
	srv.AddRunner("glrt-artifacts-runner")
	srv.EnqueueCommands("artifacts", "true")
	id, jobToken := takeV4Job(t, srv, "glrt-artifacts-runner")
	_, err := srv.SetArtifact(id, "artifacts.zip", strings.NewReader("the archive"))
	require.NoError(t, err)
	c := newV4Client(t, srv, runnerapi.WithBuildToken(jobToken))
	for _, direct := range []bool{false, true} {
		var opts []runnerapi.RequestOption
		if direct {
			opts = append(opts, runnerapi.WithDirectDownload())
		}
		var buf bytes.Buffer
		_, _, err = c.Artifacts.Download(context.Background(), id, &buf, nil, opts...)
		require.NoError(t, err, "direct %v", direct)
		assert.Equal(t, "the archive", buf.String())
	}
	storage := 0
	for _, r := range srv.Requests() {
		if r.Endpoint == runnerapitest.EndpointObjectStorage {
			storage++
			assert.Equal(t, http.StatusOK, r.Status)
		}
	}
	assert.Equal(t, 1, storage)
}

// v4 has no runner-side delete: Delete says so before sending anything; v1-only options are refused on v1.
func TestArtifactsV4NotInAPI(t *testing.T) {
	sent := 0
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { sent++ }))
	defer ts.Close()
	v4, err := runnerapi.NewClient(ts.URL, runnerapi.WithAPI(runnerapi.APIv4), runnerapi.WithBuildToken("t"))
	require.NoError(t, err)
	_, err = v4.Artifacts.Delete(context.Background(), 1)
	assert.True(t, errors.Is(err, runnerapi.ErrNotInAPI), err)
	assert.False(t, errors.Is(err, runnerapi.ErrNotFound))
	v1, err := runnerapi.NewClient(ts.URL, runnerapi.WithBuildToken("t"))
	require.NoError(t, err)
	_, _, err = v1.Artifacts.Upload(context.Background(), 1, strings.NewReader("x"), &runnerapi.UploadOptions{ArtifactType: "junit"})
	assert.True(t, errors.Is(err, runnerapi.ErrNotInAPI), err)
	_, _, err = v1.Artifacts.Download(context.Background(), 1, io.Discard, nil, runnerapi.WithDirectDownload())
	assert.True(t, errors.Is(err, runnerapi.ErrNotInAPI), err)
	assert.Zero(t, sent)
}
