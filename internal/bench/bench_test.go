package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMain lets the test binary play the launcher and the Go contenders, as the harness binary does.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case launcherCmd:
			os.Exit(launcherMain())
		case childCmd:
			os.Exit(childMain(os.Args[2:]))
		}
	}
	goleak.VerifyTestMain(m)
}

// A trace contender that sends one wrong byte: the harness must catch it.
func init() {
	childFuncs["test-trace-corrupt"] = func(ctx context.Context, p childParams) (childOutput, error) {
		var body bytes.Buffer
		_, _ = forEachTraceChunk(p.Size, func(b []byte) error { body.Write(b); return nil })
		data := body.Bytes()
		data[len(data)/2] ^= 1
		req, err := http.NewRequestWithContext(ctx, http.MethodPatch, traceURL(p), bytes.NewReader(data))
		if err != nil {
			return childOutput{}, err
		}
		req.Header.Set("BUILD-TOKEN", p.BuildToken)
		req.Header.Set("Content-Range", fmt.Sprintf("0-%d", len(data)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return childOutput{}, err
		}
		_ = resp.Body.Close()
		return childOutput{Bytes: p.Size, TransferNS: 1, Writes: 1}, nil
	}
}

func crcOf(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// multipartBody encodes fields and one file part with mime/multipart, the reference encoder.
func multipartBody(t *testing.T, before, after map[string]string, filename string, content []byte) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range before {
		require.NoError(t, mw.WriteField(k, v))
	}
	fw, err := mw.CreateFormFile("file", filename)
	require.NoError(t, err)
	_, err = fw.Write(content)
	require.NoError(t, err)
	for k, v := range after {
		require.NoError(t, mw.WriteField(k, v))
	}
	require.NoError(t, mw.Close())
	return mw.Boundary(), buf.Bytes()
}

func TestScanMultipartFileMatchesEncoder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		size := rng.IntN(5000)
		content := make([]byte, size)
		for j := range content {
			content[j] = byte(rng.IntN(256))
		}
		boundary, body := multipartBody(t, map[string]string{"expire_in": "7d"}, map[string]string{"after": "x"}, "a.zip", content)
		// Plant near-delimiters in the content: the scanner must not stop at them.
		if size > 200 {
			near := []byte("\r\n--" + boundary[:len(boundary)-1])
			copy(content[size/2:], near)
			boundary, body = multipartBody(t, nil, nil, "a.zip", content)
		}
		bufSize := 64 + rng.IntN(400) // small buffers put the delimiter across reads
		cw := &crcWriter{}
		name, n, err := scanMultipartFile(bytes.NewReader(body), boundary, bufSize, cw)
		require.NoError(t, err, "case %d size %d buf %d", i, size, bufSize)
		assert.Equal(t, "a.zip", name)
		assert.Equal(t, int64(size), n)
		assert.Equal(t, crcOf(content), cw.crc, "case %d", i)
	}
}

func TestScanMultipartFileRefusesBadBodies(t *testing.T) {
	boundary, good := multipartBody(t, nil, nil, "a.zip", []byte("hello"))
	noFileBoundary, noFile := func() (string, []byte) {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		require.NoError(t, mw.WriteField("other", "x"))
		require.NoError(t, mw.Close())
		return mw.Boundary(), buf.Bytes()
	}()
	cases := map[string]struct {
		boundary string
		body     []byte
		want     string
	}{
		"truncated inside the part": {boundary, good[:len(good)-20], "ended inside a part"},
		"no opening boundary":       {boundary, []byte("just text\r\n"), "no opening boundary"},
		"no file part":              {noFileBoundary, noFile, `no part named "file"`},
		"wrong boundary":            {"other", good, "no opening boundary"},
		"empty boundary":            {"", good, "bad boundary"},
		"garbage after boundary":    {boundary, bytes.Replace(good, []byte(boundary+"--"), []byte(boundary+"zz"), 1), "garbage"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, _, err := scanMultipartFile(bytes.NewReader(tc.body), tc.boundary, 4096, io.Discard)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func newTestServer(t *testing.T, artifact string) (*benchServer, string) {
	t.Helper()
	s := newBenchServer("btok", "rtok", artifact)
	ts := httptest.NewServer(s.handler())
	t.Cleanup(ts.Close)
	return s, ts.URL + "/ci/api/v1/builds/"
}

func patch(t *testing.T, u, token, contentRange string, body []byte) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPatch, u, bytes.NewReader(body))
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("BUILD-TOKEN", token)
	}
	if contentRange != "" {
		req.Header.Set("Content-Range", contentRange)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp
}

func TestServerTrace(t *testing.T) {
	s, base := newTestServer(t, "")
	u := base + "7/trace.txt"

	resp := patch(t, u, "btok", "0-10", []byte("0123456789"))
	assert.Equal(t, http.StatusAccepted, resp.StatusCode)
	assert.Equal(t, "0-10", resp.Header.Get("Range"))
	assert.Equal(t, "running", resp.Header.Get("Build-Status"))

	resp = patch(t, u, "btok", "0-5", []byte("01234"))
	assert.Equal(t, http.StatusRequestedRangeNotSatisfiable, resp.StatusCode, "a start behind the length")
	assert.Equal(t, "0-10", resp.Header.Get("Range"))
	resp = patch(t, u, "btok", "12-14", []byte("ab"))
	assert.Equal(t, http.StatusRequestedRangeNotSatisfiable, resp.StatusCode, "a start beyond the length")

	resp = patch(t, u, "btok", "10-10", nil)
	assert.Equal(t, http.StatusAccepted, resp.StatusCode, "an empty keep-alive part")
	assert.Equal(t, "0-10", resp.Header.Get("Range"))

	for _, cr := range []string{"", "10-", "-10", "10-x", "10--1", "x-12", "12-10", "99999999999999999999-1"} {
		resp = patch(t, u, "btok", cr, []byte("ab"))
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "Content-Range %q", cr)
	}
	resp = patch(t, u, "btok", "10-13", []byte("ab"))
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "END must match the body")
	resp = patch(t, u, "wrong", "10-12", []byte("ab"))
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	resp = patch(t, base+"x/trace.txt", "btok", "0-2", []byte("ab"))
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)

	length, crc, accepted, rejected := s.traceOf(7)
	assert.Equal(t, int64(10), length, "refused parts change nothing")
	assert.Equal(t, crcOf([]byte("0123456789")), crc)
	assert.Equal(t, int64(2), accepted)
	assert.Equal(t, int64(2), rejected)
	assert.NotEmpty(t, s.takeProblems(), "refusals are reported")
}

func TestServerUploadAndDownload(t *testing.T) {
	content := bytes.Repeat([]byte("artifact-bytes-"), 100_000)
	path := filepath.Join(t.TempDir(), "artifacts.zip")
	require.NoError(t, os.WriteFile(path, content, 0o644))
	s, base := newTestServer(t, path)

	post := func(token string, boundary string, body io.Reader) *http.Response {
		req, err := http.NewRequest(http.MethodPost, base+"9/artifacts", body)
		require.NoError(t, err)
		req.Header.Set("BUILD-TOKEN", token)
		req.Header.Set("Content-Type", "multipart/form-data; boundary="+boundary)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		return resp
	}
	boundary, body := multipartBody(t, nil, nil, "artifacts.zip", content)
	// A reader without Len makes the request chunked, as a streaming upload is.
	resp := post("btok", boundary, struct{ io.Reader }{bytes.NewReader(body)})
	var b struct {
		ID            int64 `json:"id"`
		ArtifactsFile struct {
			Filename string `json:"filename"`
			Size     int64  `json:"size"`
		} `json:"artifacts_file"`
	}
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&b))
	_ = resp.Body.Close()
	assert.Equal(t, int64(9), b.ID)
	assert.Equal(t, "artifacts.zip", b.ArtifactsFile.Filename)
	assert.Equal(t, int64(len(content)), b.ArtifactsFile.Size)
	ups := s.takeUploads()
	require.Len(t, ups, 1)
	assert.Equal(t, uploadRecord{ID: 9, Filename: "artifacts.zip", Size: int64(len(content)), CRC: crcOf(content)}, ups[0])

	resp = post("wrong", boundary, bytes.NewReader(body))
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	_ = resp.Body.Close()
	resp = post("btok", boundary, strings.NewReader("not multipart"))
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	_ = resp.Body.Close()

	get := func(token, rng string) *http.Response {
		req, err := http.NewRequest(http.MethodGet, base+"9/artifacts", nil)
		require.NoError(t, err)
		req.Header.Set("BUILD-TOKEN", token)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		return resp
	}
	resp = get("btok", "")
	got, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, strconv.Itoa(len(content)), resp.Header.Get("Content-Length"))
	assert.Equal(t, "attachment; filename=artifacts.zip", resp.Header.Get("Content-Disposition"))
	assert.Equal(t, "application/octet-stream", resp.Header.Get("Content-Type"))
	assert.True(t, bytes.Equal(content, got))

	resp = get("btok", "bytes=100-")
	got, err = io.ReadAll(resp.Body)
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusPartialContent, resp.StatusCode)
	assert.True(t, bytes.Equal(content[100:], got))

	resp = get("wrong", "")
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	_ = resp.Body.Close()
}

func TestServerRegisterUpdateAndSignatures(t *testing.T) {
	s, base := newTestServer(t, "")
	send := func(method, path string, form url.Values, ua string) *http.Response {
		req, err := http.NewRequest(method, base+path, strings.NewReader(form.Encode()))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("User-Agent", ua)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		return resp
	}
	resp := send(http.MethodPost, "register", url.Values{"token": {"rtok"}}, "a")
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	var b map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&b))
	_ = resp.Body.Close()
	assert.EqualValues(t, 1, b["id"])
	assert.Equal(t, "btok", b["token"])

	resp = send(http.MethodPost, "register", url.Values{"token": {"rtok"}}, "a")
	_ = resp.Body.Close()
	sigs := s.takeSignatures()
	require.Len(t, sigs, 1, "two identical requests have one shape")
	for sig, n := range sigs {
		assert.Equal(t, 2, n)
		assert.NotContains(t, sig, "rtok", "the runner token is masked")
	}
	resp = send(http.MethodPost, "register", url.Values{"token": {"rtok"}}, "b")
	_ = resp.Body.Close()
	assert.Len(t, s.takeSignatures(), 2, "a different header is a different shape")

	resp = send(http.MethodPost, "register", url.Values{"token": {"nope"}}, "a")
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)

	resp = send(http.MethodPut, "5", url.Values{"token": {"rtok"}, "state": {"running"}}, "a")
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "true", string(body))
	resp = send(http.MethodPut, "5", url.Values{"token": {"rtok"}, "state": {"bogus"}}, "a")
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
}

func TestTraceLines(t *testing.T) {
	for _, size := range []int64{1, 99, 100, 101, 12345} {
		var all bytes.Buffer
		writes, err := forEachTraceChunk(size, func(p []byte) error {
			assert.LessOrEqual(t, len(p), traceLineLen)
			all.Write(p)
			return nil
		})
		require.NoError(t, err)
		assert.Equal(t, size, int64(all.Len()))
		assert.Equal(t, (size+traceLineLen-1)/traceLineLen, writes)
		assert.Equal(t, crcOf(all.Bytes()), traceCRC(size))
	}
	lines := newTraceLines()
	first := string(lines.next())
	second := string(lines.next())
	assert.True(t, strings.HasPrefix(first, "0000000000 "))
	assert.True(t, strings.HasPrefix(second, "0000000001 "))
	assert.True(t, strings.HasSuffix(second, "\n"))
}

func TestMedianAndSummarize(t *testing.T) {
	assert.Equal(t, 2.0, median([]float64{3, 1, 2}))
	assert.Equal(t, 2.5, median([]float64{4, 1, 3, 2}))
	assert.Equal(t, 0.0, median(nil))

	sr := &scenarioResult{Bytes: 1e9, Contenders: []*contenderResult{
		{Name: "ref", Ref: true, Runs: []runResult{{WallNS: 1e9, MaxRSSKiB: 100}, {WallNS: 3e9, MaxRSSKiB: 300}, {WallNS: 2e9, MaxRSSKiB: 200}}},
		{Name: "sdk", SDK: true, Runs: []runResult{{WallNS: 2.1e9, MaxRSSKiB: 40 << 10}, {WallNS: 2.1e9, MaxRSSKiB: 10}}},
	}}
	summarize(sr, []func(c, ref summary) (bool, string){judgeTransfer, judgeTransfer})
	ref, sdk := sr.Contenders[0].Summary, sr.Contenders[1].Summary
	assert.Equal(t, 2e9, ref.WallNS)
	assert.Equal(t, int64(300), ref.PeakRSSKiB, "peak RSS is the largest run")
	assert.InDelta(t, 500, ref.MBps, 1e-9)
	assert.InDelta(t, 1.05, sdk.Ratio, 1e-9)
	assert.True(t, strings.HasPrefix(sdk.Target, "MISSED"), "40 MiB misses the 32 MiB target: %s", sdk.Target)
}

func TestParseSizeAndConfig(t *testing.T) {
	for in, want := range map[string]int64{"1GiB": 1 << 30, "64MiB": 64 << 20, "512K": 512 << 10, "1000": 1000} {
		got, err := parseSize(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "0", "-1MiB", "1TiB", "x"} {
		_, err := parseSize(in)
		assert.Error(t, err, in)
	}
	c, err := parseConfig([]string{"-quick"}, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "quick", c.Mode)
	assert.Equal(t, int64(64<<20), c.Size)
	assert.Equal(t, 3, c.Runs)
	c, err = parseConfig(nil, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, int64(1<<30), c.Size)
	assert.Equal(t, 7, c.Runs)
	_, err = parseConfig([]string{"-only", "nothing"}, io.Discard)
	assert.Error(t, err)
}

// runHarnessForTest runs the whole harness at tiny sizes and returns its exit code, output and JSON report.
func runHarnessForTest(t *testing.T, extra ...string) (int, string, *report) {
	t.Helper()
	// Race-enabled children otherwise sleep a second at exit; a race in one still fails its run (exit 66).
	t.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=20"))
	jsonPath := filepath.Join(t.TempDir(), "out.json")
	args := append([]string{"-size", "2MiB", "-trace-size", "1MiB", "-runs", "2", "-warmup", "0", "-benchtime", "20x", "-json", jsonPath}, extra...)
	var out, errOut bytes.Buffer
	code := harnessMain(context.Background(), args, &out, &errOut)
	var rep report
	if b, err := os.ReadFile(jsonPath); err == nil {
		require.NoError(t, json.Unmarshal(b, &rep))
	}
	return code, out.String() + errOut.String(), &rep
}

func TestHarnessEndToEnd(t *testing.T) {
	var only []string
	if _, err := exec.LookPath("curl"); err != nil {
		t.Log("curl is not installed: the upload and download scenarios are left out of this test")
		only = []string{"-only", "trace,mask,concurrent,overhead"}
	}
	code, out, rep := runHarnessForTest(t, only...)
	require.Equal(t, 0, code, out)
	seen := map[string]bool{}
	assert.Empty(t, rep.Failures)
	for _, sr := range rep.Scenarios {
		if sr.Name == "overhead" {
			assert.Len(t, sr.Overhead, 8)
			assert.ElementsMatch(t, []string{"Register", "Update", "v4 Jobs.Request", "v4 Jobs.Update"}, sr.SameRequest)
			for _, o := range sr.Overhead {
				assert.Positive(t, o.NsPerOp, "%s %s", o.Call, o.Client)
				assert.Positive(t, o.AllocsPerOp, "%s %s", o.Call, o.Client)
			}
			continue
		}
		require.NotEmpty(t, sr.Contenders, sr.Name)
		seen[sr.Name] = true
		for _, c := range sr.Contenders {
			assert.Empty(t, c.Error, "%s / %s", sr.Name, c.Name)
			assert.Len(t, c.Runs, 2, "%s / %s", sr.Name, c.Name)
			require.NotNil(t, c.Summary, "%s / %s", sr.Name, c.Name)
			assert.Positive(t, c.Summary.PeakRSSKiB)
			assert.Positive(t, c.Summary.MBps)
			assert.Positive(t, c.Summary.CPUPerGiB, "%s / %s", sr.Name, c.Name)
			if c.Ceiling {
				assert.Zero(t, c.Summary.Requests, "the ceiling speaks no HTTP")
				assert.Equal(t, 1.0, c.Summary.CeilingRatio)
			} else {
				assert.Positive(t, c.Summary.Requests, "%s / %s", sr.Name, c.Name)
				assert.Positive(t, c.Summary.Conns, "%s / %s", sr.Name, c.Name)
			}
			if sr.Kind == kindTransfer {
				assert.Positive(t, c.Summary.CeilingRatio, "%s / %s", sr.Name, c.Name)
			}
		}
	}
	for _, name := range scenarioNames {
		if name != "overhead" && (only == nil || strings.Contains(only[1], name)) {
			assert.True(t, seen[name], "scenario %s ran", name)
		}
	}
	assert.Contains(t, out, "OK: every contender ran")
	assert.NotContains(t, out, benchBuildToken, "tokens are masked in the report")
}

func TestHarnessFailsOnAWrongTrace(t *testing.T) {
	saved := traceContenders
	t.Cleanup(func() { traceContenders = saved })
	traceContenders = append(append([]contender(nil), saved...), contender{Name: "corrupt", Child: "test-trace-corrupt"})
	code, out, rep := runHarnessForTest(t, "-only", "trace")
	assert.Equal(t, 1, code, out)
	require.Len(t, rep.Failures, 1)
	assert.Contains(t, rep.Failures[0], "corrupt")
	assert.Contains(t, rep.Failures[0], "CRC-32C")
	assert.Contains(t, out, "FAILED")
}

func TestHarnessNeedsCurlForTransfers(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	code, out, _ := runHarnessForTest(t, "-only", "upload")
	assert.Equal(t, 1, code)
	assert.Contains(t, out, "curl not found")
}

func TestCeilingTransfers(t *testing.T) {
	content := bytes.Repeat([]byte("ceiling-bytes-"), 300_000)
	dir := t.TempDir()
	path := filepath.Join(dir, "artifacts.zip")
	require.NoError(t, os.WriteFile(path, content, 0o644))
	s := newBenchServer("btok", "rtok", path)
	_, stop, err := s.start()
	require.NoError(t, err)
	defer stop()
	s.resetRun()

	p := childParams{RawAddr: s.rawAddr, Path: path, Size: int64(len(content))}
	out, err := childUploadCeiling(context.Background(), p)
	require.NoError(t, err)
	assert.Equal(t, int64(len(content)), out.Bytes)
	assert.Equal(t, int64(len(content)), s.rawReceived.Load())

	_, err = childUploadCeiling(context.Background(), childParams{RawAddr: s.rawAddr, Path: path, Size: 1})
	assert.Error(t, err, "a size the server did not count fails the run")

	p.Path = filepath.Join(dir, "download.zip")
	out, err = childDownloadCeiling(context.Background(), p)
	require.NoError(t, err)
	got, err := os.ReadFile(p.Path)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(content, got))
	assert.Equal(t, int64(len(content)), out.Bytes)
	leftovers, _ := filepath.Glob(filepath.Join(dir, ".download-*"))
	assert.Empty(t, leftovers)
}

// TestServerRefusesTooLargeOnHeaders: an upload to a build from tooLargeFirstID on is answered 413 before its body
// is read, so a client that sends Expect: 100-continue never sends it.
func TestServerRefusesTooLargeOnHeaders(t *testing.T) {
	s, base := newTestServer(t, "")
	body := &countingReader{r: bytes.NewReader(make([]byte, 4<<20))}
	req, err := http.NewRequest(http.MethodPost, base+strconv.FormatInt(tooLargeFirstID+1, 10)+"/artifacts", body)
	require.NoError(t, err)
	req.ContentLength = 4 << 20
	req.Header.Set("BUILD-TOKEN", "btok")
	req.Header.Set("Content-Type", "multipart/form-data; boundary=x")
	req.Header.Set("Expect", "100-continue")
	tr := benchTransport()
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	assert.Zero(t, body.n.Load(), "the body was not sent")
	assert.Equal(t, []int64{tooLargeFirstID + 1}, s.takeRefused())
	assert.Empty(t, s.takeUploads())
}

type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func TestBenchSecrets(t *testing.T) {
	a, b := benchSecrets(100), benchSecrets(100)
	assert.Equal(t, a, b, "the same secrets every run")
	var trace bytes.Buffer
	_, _ = forEachTraceChunk(1<<20, func(p []byte) error { trace.Write(p); return nil })
	for _, s := range benchSecrets(1000) {
		assert.GreaterOrEqual(t, len(s), 8)
		assert.LessOrEqual(t, len(s), 64)
		assert.False(t, bytes.Contains(trace.Bytes(), []byte(s)), "secret %q occurs in the trace", s)
	}
}

func TestSummarizeCPUAndConnections(t *testing.T) {
	sr := &scenarioResult{Bytes: 1 << 30, Contenders: []*contenderResult{
		{Name: "ref", Ref: true, Runs: []runResult{{WallNS: 2e9, ClientCPUNS: 1e9, ServerCPUNS: 1e9, Requests: 2000, Conns: 4}}},
		{Name: "ceiling", Ceiling: true, Runs: []runResult{{WallNS: 1e9, ClientCPUNS: 0.5e9, ServerCPUNS: 0.5e9}}},
	}}
	summarize(sr, nil)
	ref, ceiling := sr.Contenders[0].Summary, sr.Contenders[1].Summary
	assert.InDelta(t, 2.0, ref.CPUPerGiB, 1e-9)
	assert.InDelta(t, 2.0, ref.CPURatio, 1e-9, "CPU against the ceiling's")
	assert.InDelta(t, 2.0, ref.CeilingRatio, 1e-9)
	assert.InDelta(t, 2.0, ref.ConnsPer1000, 1e-9)
	assert.Equal(t, 4.0, ref.Conns)
	assert.InDelta(t, 0.5, ceiling.Ratio, 1e-9)
}

// TestServerTraceV4ContentRange: on v4 the server takes a part whose Content-Range END is its last byte
// (START-(START+len-1)), and an empty part as START-START, as GitLab does; a part sent with v1's exclusive END is
// refused, so that the v4 trace row cannot pass with v1's convention.
func TestServerTraceV4ContentRange(t *testing.T) {
	s := newBenchServer(benchBuildToken, benchRunnerToken, "")
	srv := httptest.NewServer(s.handler())
	defer srv.Close()
	patch := func(id int64, cr, body string) (int, string) {
		req, err := http.NewRequest(http.MethodPatch, fmt.Sprintf("%s/api/v4/jobs/%d/trace", srv.URL, id), strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("JOB-TOKEN", benchBuildToken)
		req.Header.Set("Content-Range", cr)
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Range")
	}
	status, rng := patch(1, "0-4", "hello")
	assert.Equal(t, http.StatusAccepted, status)
	assert.Equal(t, "0-5", rng)
	status, rng = patch(1, "5-5", "")
	assert.Equal(t, http.StatusAccepted, status, "an empty part")
	assert.Equal(t, "0-5", rng)
	status, rng = patch(1, "5-6", "!")
	assert.Equal(t, http.StatusBadRequest, status, "v1's exclusive END on v4")
	assert.Equal(t, "0-5", rng)
	length, crc, _, _ := s.traceOf(1)
	assert.Equal(t, int64(5), length)
	assert.Equal(t, crcOf([]byte("hello")), crc)
	assert.Len(t, s.takeProblems(), 1)
}
