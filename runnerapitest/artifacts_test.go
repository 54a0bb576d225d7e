package runnerapitest_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/runnerapi/runnerapi"
	"github.com/runnerapi/runnerapi/runnerapitest"
)

func TestArtifactsUploadDownloadDelete(t *testing.T) {
	e := newFakeEnv(t)
	id := e.srv.Enqueue(runnerapi.Build{})
	b := e.take(fakeRunnerToken)
	content := []byte("PK\x03\x04 not really a zip, but bytes all the same")
	sum := sha256.Sum256(content)

	before := time.Now()
	resp, body := e.upload(id, b.Token, "?expire_in=7d", "artifacts.zip", content)
	require.Equal(t, http.StatusCreated, resp.StatusCode, body)
	var got runnerapi.Build
	require.NoError(t, json.Unmarshal([]byte(body), &got))
	assert.Equal(t, id, got.ID)
	assert.Equal(t, runnerapi.StateRunning, got.Status)
	assert.Equal(t, runnerapi.ArtifactsFile{Filename: "artifacts.zip", Size: int64(len(content))}, got.ArtifactsFile)
	week := 7 * 24 * time.Hour
	assert.WithinRange(t, got.ArtifactsExpireAt, before.Add(week).Add(-time.Second), time.Now().Add(week).Add(time.Second))

	art, ok := e.srv.Artifact(id)
	require.True(t, ok)
	assert.Equal(t, "artifacts.zip", art.Filename)
	assert.Equal(t, int64(len(content)), art.Size)
	assert.Equal(t, hex.EncodeToString(sum[:]), art.SHA256)
	assert.Equal(t, "7d", art.ExpireIn)
	assert.Equal(t, got.ArtifactsExpireAt, art.ExpireAt)
	rc, err := e.srv.OpenArtifact(id)
	require.NoError(t, err)
	stored, err := io.ReadAll(rc)
	require.NoError(t, rc.Close())
	require.NoError(t, err)
	assert.Equal(t, content, stored)
	info, _ := e.srv.Build(id)
	assert.Equal(t, got.ArtifactsFile, info.Build.ArtifactsFile)

	resp, body = e.do(http.MethodGet, e.artifactsPath(id), tokenHeader(b.Token), nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "application/octet-stream", resp.Header.Get("Content-Type"))
	assert.Equal(t, "attachment; filename=artifacts.zip", resp.Header.Get("Content-Disposition"))
	assert.Equal(t, fmt.Sprint(len(content)), resp.Header.Get("Content-Length"))
	assert.Equal(t, string(content), body)

	resp, body = e.do(http.MethodGet, e.artifactsPath(id), http.Header{"BUILD-TOKEN": {b.Token}, "Range": {"bytes=3-9"}}, nil)
	assert.Equal(t, http.StatusPartialContent, resp.StatusCode)
	assert.Equal(t, fmt.Sprintf("bytes 3-9/%d", len(content)), resp.Header.Get("Content-Range"))
	assert.Equal(t, "7", resp.Header.Get("Content-Length"))
	assert.Equal(t, string(content[3:10]), body)
	resp, body = e.do(http.MethodGet, e.artifactsPath(id), http.Header{"BUILD-TOKEN": {b.Token}, "Range": {"bytes=40-"}}, nil)
	assert.Equal(t, http.StatusPartialContent, resp.StatusCode)
	assert.Equal(t, string(content[40:]), body)

	resp, body = e.do(http.MethodGet, e.artifactsPath(id), tokenHeader("wrong"), nil)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	assert.Equal(t, `{"message":"403 Forbidden"}`, body)
	resp, body = e.do(http.MethodDelete, e.artifactsPath(id), tokenHeader("wrong"), nil)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	assert.Equal(t, `{"message":"403 Forbidden"}`, body)
	resp, body = e.do(http.MethodDelete, e.artifactsPath(id+1), tokenHeader(b.Token), nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	assert.Equal(t, `{"message":"404 Not Found"}`, body)

	resp, _ = e.do(http.MethodDelete, e.artifactsPath(id), tokenHeader(b.Token), nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	_, ok = e.srv.Artifact(id)
	assert.False(t, ok)
	_, err = e.srv.OpenArtifact(id)
	assert.Error(t, err)
	resp, body = e.do(http.MethodGet, e.artifactsPath(id), tokenHeader(b.Token), nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, "no file any more")
	assert.Equal(t, `{"message":"404 Not Found"}`, body)
	resp, _ = e.do(http.MethodDelete, e.artifactsPath(id), tokenHeader(b.Token), nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "deleting nothing is fine")
}

func TestArtifactsUploadErrors(t *testing.T) {
	e := newFakeEnv(t, runnerapitest.WithMaxArtifactSize(10))
	running := e.srv.Enqueue(runnerapi.Build{Name: "first"})
	waiting := e.srv.Enqueue(runnerapi.Build{Name: "second"})
	require.Equal(t, running, e.take(fakeRunnerToken).ID)
	info, _ := e.srv.Build(waiting)
	require.Equal(t, runnerapi.StatePending, info.State)
	token := info.Build.Token

	resp, body := e.upload(waiting, token, "", "a.zip", []byte("x"))
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "a pending build")
	assert.Equal(t, `{"message":"403 Forbidden  - Build is not running!"}`, body)

	rinfo, _ := e.srv.Build(running)
	resp, body = e.upload(running, rinfo.Build.Token, "", "a.zip", bytes.Repeat([]byte("x"), 10))
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, "not smaller than the limit")
	assert.Equal(t, `{"message":"413 Request Entity Too Large"}`, body)
	_, ok := e.srv.Artifact(running)
	assert.False(t, ok)
	resp, body = e.upload(running, rinfo.Build.Token, "", "a.zip", bytes.Repeat([]byte("x"), 9))
	assert.Equal(t, http.StatusCreated, resp.StatusCode, body)

	cases := []struct {
		name   string
		token  string
		query  string
		file   string
		status int
		body   string
	}{
		{"bad token", "wrong", "", "a.zip", 403, `{"message":"403 Forbidden"}`},
		{"no token", "", "", "a.zip", 403, `{"message":"403 Forbidden"}`},
		{"no file part", rinfo.Build.Token, "", "", 400, `{"message":"400 (Bad request) \"Missing artifacts file!\" not given"}`},
		{"unknown build", rinfo.Build.Token, "", "a.zip", 404, `{"message":"404 Not Found"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			target := running
			if tc.status == 404 {
				target = 12345
			}
			resp, body := e.upload(target, tc.token, tc.query, tc.file, []byte("y"))
			assert.Equal(t, tc.status, resp.StatusCode)
			assert.Equal(t, tc.body, body)
			art, ok := e.srv.Artifact(running)
			require.True(t, ok)
			assert.Equal(t, int64(9), art.Size, "a refused upload keeps the file there was")
		})
	}

	resp, body = e.do(http.MethodPost, e.artifactsPath(running), http.Header{"BUILD-TOKEN": {rinfo.Build.Token}, "Content-Type": {"text/plain"}}, strings.NewReader("y"))
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "not multipart")
	assert.Equal(t, `{"message":"400 (Bad request) \"Missing artifacts file!\" not given"}`, body)

	resp, _ = e.update(running, fakeRunnerToken, "success", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp, body = e.upload(running, rinfo.Build.Token, "", "a.zip", []byte("y"))
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "a finished build")
	assert.Equal(t, `{"message":"403 Forbidden  - Build is not running!"}`, body)
}

func TestArtifactsUploadTokenAndExpireAsFormFields(t *testing.T) {
	e := newFakeEnv(t)
	id := e.srv.Enqueue(runnerapi.Build{})
	b := e.take(fakeRunnerToken)

	post := func(header http.Header, fields map[string]string) (*http.Response, string) {
		t.Helper()
		ct, body := multipartBody(t, fields, "out.tar.gz", []byte("data"))
		if header == nil {
			header = http.Header{}
		}
		header.Set("Content-Type", ct)
		return e.do(http.MethodPost, e.artifactsPath(id), header, body)
	}
	resp, body := post(nil, map[string]string{"token": b.Token, "expire_in": "2 weeks"})
	require.Equal(t, http.StatusCreated, resp.StatusCode, body)
	art, _ := e.srv.Artifact(id)
	assert.Equal(t, "out.tar.gz", art.Filename)
	assert.Equal(t, "2 weeks", art.ExpireIn)
	assert.WithinDuration(t, time.Now().Add(14*24*time.Hour), art.ExpireAt, 5*time.Second)

	// The parameter wins over the header.
	resp, _ = post(http.Header{"BUILD-TOKEN": {b.Token}}, map[string]string{"token": "wrong"})
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	resp, _ = post(http.Header{"BUILD-TOKEN": {"wrong"}}, map[string]string{"token": b.Token})
	assert.Equal(t, http.StatusCreated, resp.StatusCode)
	art, _ = e.srv.Artifact(id)
	assert.Empty(t, art.ExpireIn)
	assert.True(t, art.ExpireAt.IsZero(), "no expire_in: kept")

	// A token field after the file part still counts.
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, err := mw.CreateFormFile("file", "late.zip")
	require.NoError(t, err)
	_, _ = fw.Write([]byte("late"))
	require.NoError(t, mw.WriteField("token", "wrong"))
	require.NoError(t, mw.Close())
	resp, _ = e.do(http.MethodPost, e.artifactsPath(id), http.Header{"BUILD-TOKEN": {b.Token}, "Content-Type": {mw.FormDataContentType()}}, &buf)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	art, _ = e.srv.Artifact(id)
	assert.Equal(t, "out.tar.gz", art.Filename)
}

func TestSetArtifactServesDownloads(t *testing.T) {
	e := newFakeEnv(t, runnerapitest.WithMaxArtifactSize(100))
	id := e.srv.Enqueue(runnerapi.Build{})
	info, _ := e.srv.Build(id)
	art, err := e.srv.SetArtifact(id, "../dir/seeded.zip", strings.NewReader("seeded"))
	require.NoError(t, err)
	assert.Equal(t, "seeded.zip", art.Filename, "only the base name is kept")
	resp, body := e.do(http.MethodGet, e.artifactsPath(id), tokenHeader(info.Build.Token), nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "seeded", body)
	assert.Equal(t, "attachment; filename=seeded.zip", resp.Header.Get("Content-Disposition"))

	_, err = e.srv.SetArtifact(id, "big.zip", bytes.NewReader(make([]byte, 100)))
	assert.Error(t, err)
	_, err = e.srv.SetArtifact(999, "x.zip", strings.NewReader("x"))
	assert.Error(t, err)
}

// fakeZeroReader yields n zero bytes without allocating.
type fakeZeroReader struct{ n int64 }

func (z *fakeZeroReader) Read(p []byte) (int, error) {
	if z.n <= 0 {
		return 0, io.EOF
	}
	m := int64(len(p))
	if m > z.n {
		m = z.n
	}
	clear(p[:m])
	z.n -= m
	return int(m), nil
}

// TestArtifactsUploadIsStreamedToDisk uploads 32 MiB and checks that the process did not allocate anything near
// that, that the file landed in the server's temporary directory, and that Close removed the directory. Not parallel:
// it finds the directory by listing the system's temporary directory.
func TestArtifactsUploadIsStreamedToDisk(t *testing.T) {
	const size = 32 << 20
	dirsBefore, err := filepath.Glob(filepath.Join(os.TempDir(), "runnerapitest-*"))
	require.NoError(t, err)
	e := newFakeEnv(t)
	dirsAfter, err := filepath.Glob(filepath.Join(os.TempDir(), "runnerapitest-*"))
	require.NoError(t, err)
	var dir string
	for _, d := range dirsAfter {
		if !contains(dirsBefore, d) {
			dir = d
		}
	}
	require.NotEmpty(t, dir, "the server's temporary directory")

	id := e.srv.Enqueue(runnerapi.Build{})
	b := e.take(fakeRunnerToken)

	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		fw, err := mw.CreateFormFile("file", "big.bin")
		if err == nil {
			_, err = io.Copy(fw, &fakeZeroReader{n: size})
		}
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
	}()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	resp, body := e.do(http.MethodPost, e.artifactsPath(id), http.Header{"BUILD-TOKEN": {b.Token}, "Content-Type": {mw.FormDataContentType()}}, pr)
	runtime.ReadMemStats(&after)
	require.Equal(t, http.StatusCreated, resp.StatusCode, body)
	allocated := after.TotalAlloc - before.TotalAlloc
	assert.Less(t, allocated, uint64(size/8), "bytes allocated while uploading %d bytes", size)
	t.Logf("allocated %d bytes while uploading %d", allocated, size)

	art, ok := e.srv.Artifact(id)
	require.True(t, ok)
	assert.Equal(t, int64(size), art.Size)
	zeros := sha256.New()
	_, _ = io.Copy(zeros, &fakeZeroReader{n: size})
	assert.Equal(t, hex.EncodeToString(zeros.Sum(nil)), art.SHA256)
	files, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, files, 1)
	fi, err := files[0].Info()
	require.NoError(t, err)
	assert.Equal(t, int64(size), fi.Size())

	e.srv.Close()
	_, err = os.Stat(dir)
	assert.True(t, os.IsNotExist(err), "Close removes the temporary directory")
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestArtifactsUploadTooLargeStopsReading checks that an upload far above the limit is refused with 413 without the
// server reading it all, and that the client still sees the 413.
func TestArtifactsUploadTooLargeStopsReading(t *testing.T) {
	e := newFakeEnv(t, runnerapitest.WithMaxArtifactSize(1<<20))
	id := e.srv.Enqueue(runnerapi.Build{})
	b := e.take(fakeRunnerToken)
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	sent := make(chan int64, 1)
	go func() {
		fw, err := mw.CreateFormFile("file", "big.bin")
		var n int64
		if err == nil {
			n, err = io.Copy(fw, &fakeZeroReader{n: 64 << 20})
		}
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
		sent <- n
	}()
	resp, err := e.send(http.MethodPost, e.artifactsPath(id), http.Header{"BUILD-TOKEN": {b.Token}, "Content-Type": {mw.FormDataContentType()}}, pr)
	pr.CloseWithError(errors.New("request over"))
	if err != nil {
		t.Logf("client saw %v rather than the 413", err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
		assert.Equal(t, `{"message":"413 Request Entity Too Large"}`, string(body))
	}
	assert.Less(t, <-sent, int64(64<<20), "the server stopped reading")
	_, ok := e.srv.Artifact(id)
	assert.False(t, ok)
	reqs := e.srv.Requests()
	assert.Equal(t, http.StatusRequestEntityTooLarge, reqs[len(reqs)-1].Status)
}
