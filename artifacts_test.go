package runnerapi

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jarcoal/httpmock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	testToken    = "build-token-s3cr3t"
	testBasePath = "/gitlab"
	testPath     = testBasePath + "/ci/api/v1/builds/42/artifacts"
)

// testClient returns a client for srvURL with its own transport, the build token, and retries that do not
// wait.
func testClient(t *testing.T, srvURL string, opts ...Option) *Client {
	t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	base := []Option{
		WithHTTPClient(&http.Client{Transport: tr}),
		WithBuildToken(testToken),
		WithRetryPolicy(RetryPolicy{MaxRetries: 3, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond}),
	}
	c, err := NewClient(srvURL+testBasePath, append(base, opts...)...)
	require.NoError(t, err)
	return c
}

// testServer serves handler at the artifacts path of build 42 and 404s everything else, so a path mistake
// fails loudly.
func testServer(t *testing.T, handler http.HandlerFunc) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc(testPath, handler)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// prng yields n bytes of a seeded pseudo-random stream, so large bodies need no memory.
type prng struct {
	c *rand.ChaCha8
	n int64
}

func newArtPRNG(seed byte, n int64) *prng {
	var s [32]byte
	s[0] = seed
	return &prng{c: rand.NewChaCha8(s), n: n}
}

func (r *prng) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.n {
		p = p[:r.n]
	}
	n, _ := r.c.Read(p)
	r.n -= int64(n)
	return n, nil
}

func prngBytes(seed byte, n int64) []byte {
	b, err := io.ReadAll(newArtPRNG(seed, n))
	if err != nil {
		panic(err)
	}
	return b
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func hexDigest(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }

// receivedUpload is what a test server saw of one upload.
type receivedUpload struct {
	method, rawQuery, token, contentType string
	contentLength                        int64
	chunked                              bool
	partName, filename                   string
	size                                 int64
	sum                                  string
	expect                               string
}

// readUpload reads an upload's multipart body part by part, hashing the file without keeping it.
func readUpload(t *testing.T, r *http.Request) (receivedUpload, error) {
	got := receivedUpload{
		method: r.Method, rawQuery: r.URL.RawQuery, token: r.Header.Get("BUILD-TOKEN"),
		contentType: r.Header.Get("Content-Type"), contentLength: r.ContentLength,
		chunked: len(r.TransferEncoding) > 0 && r.TransferEncoding[0] == "chunked", expect: r.Header.Get("Expect"),
	}
	mr, err := r.MultipartReader()
	if err != nil {
		return got, err
	}
	parts := 0
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return got, err
		}
		parts++
		got.partName, got.filename = p.FormName(), p.FileName()
		h := sha256.New()
		n, err := io.Copy(h, p)
		if err != nil {
			return got, err
		}
		got.size, got.sum = n, hexDigest(h)
	}
	if parts != 1 {
		return got, fmt.Errorf("%d parts", parts)
	}
	return got, nil
}

// uploadServer accepts uploads, records them, and answers with a build.
func uploadServer(t *testing.T) (*httptest.Server, func() []receivedUpload) {
	var (
		mu   sync.Mutex
		seen []receivedUpload
	)
	srv := testServer(t, func(w http.ResponseWriter, r *http.Request) {
		got, err := readUpload(t, r)
		mu.Lock()
		seen = append(seen, got)
		mu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id":42,"status":"running","token":%q,"artifacts_file":{"filename":%q,"size":%d}}`, testToken, got.filename, got.size)
	})
	return srv, func() []receivedUpload {
		mu.Lock()
		defer mu.Unlock()
		return append([]receivedUpload(nil), seen...)
	}
}

func TestArtifactsUploadRequestShape(t *testing.T) {
	data := prngBytes(1, 3<<20+17)
	dir := t.TempDir()
	file := filepath.Join(dir, "build output.zip")
	require.NoError(t, os.WriteFile(file, data, 0o644))

	tests := []struct {
		name         string
		call         func(c *Client) (*Build, *Response, error)
		wantFilename string
		wantQuery    string
		wantLength   bool
	}{
		{
			name: "stream of unknown size is chunked",
			call: func(c *Client) (*Build, *Response, error) {
				return c.Artifacts.Upload(context.Background(), 42, bytes.NewReader(data), nil)
			},
			wantFilename: "artifacts.zip",
		},
		{
			name: "stream of known size has an exact length",
			call: func(c *Client) (*Build, *Response, error) {
				return c.Artifacts.Upload(context.Background(), 42, io.MultiReader(bytes.NewReader(data)),
					&UploadOptions{Size: int64(len(data)), Filename: `odd "name".zip`, ExpireIn: "2 weeks"})
			},
			wantFilename: `odd "name".zip`,
			wantQuery:    "expire_in=2+weeks",
			wantLength:   true,
		},
		{
			name: "file",
			call: func(c *Client) (*Build, *Response, error) {
				return c.Artifacts.UploadFile(context.Background(), 42, file, &UploadOptions{ExpireIn: "7d"})
			},
			wantFilename: "build output.zip",
			wantQuery:    "expire_in=7d",
			wantLength:   true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, seen := uploadServer(t)
			c := testClient(t, srv.URL)
			build, resp, err := tt.call(c)
			require.NoError(t, err)
			require.Len(t, seen(), 1)
			got := seen()[0]
			assert.Equal(t, http.MethodPost, got.method)
			assert.Equal(t, testToken, got.token)
			assert.NotContains(t, got.rawQuery, testToken)
			assert.Equal(t, tt.wantQuery, got.rawQuery)
			mt, _, err := mime.ParseMediaType(got.contentType)
			require.NoError(t, err)
			assert.Equal(t, "multipart/form-data", mt)
			assert.Equal(t, "file", got.partName)
			assert.Equal(t, tt.wantFilename, got.filename)
			assert.Equal(t, int64(len(data)), got.size)
			assert.Equal(t, sha256Hex(data), got.sum)
			assert.Equal(t, "100-continue", got.expect)
			if tt.wantLength {
				assert.False(t, got.chunked)
				assert.Greater(t, got.contentLength, int64(len(data)))
			} else {
				assert.True(t, got.chunked)
				assert.Equal(t, int64(-1), got.contentLength)
			}
			require.NotNil(t, build)
			assert.Equal(t, int64(len(data)), build.ArtifactsFile.Size)
			assert.Equal(t, tt.wantFilename, build.ArtifactsFile.Filename)
			assert.Equal(t, http.StatusCreated, resp.StatusCode)
		})
	}
}

func TestArtifactsSmallUploadSkipsExpect(t *testing.T) {
	srv, seen := uploadServer(t)
	c := testClient(t, srv.URL)
	_, _, err := c.Artifacts.Upload(context.Background(), 42, strings.NewReader("tiny"), &UploadOptions{Size: 4})
	require.NoError(t, err)
	require.Len(t, seen(), 1)
	assert.Empty(t, seen()[0].expect)
	assert.Equal(t, int64(4), seen()[0].size)
}

func TestArtifactsCallsNeedBuildToken(t *testing.T) {
	mock := httpmock.NewMockTransport()
	c, err := NewClient("https://ci.example.com", WithHTTPClient(&http.Client{Transport: mock}))
	require.NoError(t, err)
	ctx := context.Background()
	_, _, err = c.Artifacts.Upload(ctx, 1, strings.NewReader("x"), nil)
	assert.ErrorContains(t, err, "build token")
	_, _, err = c.Artifacts.Download(ctx, 1, io.Discard, nil)
	assert.ErrorContains(t, err, "build token")
	_, err = c.Artifacts.Delete(ctx, 1)
	assert.ErrorContains(t, err, "build token")
	_, _, err = c.Artifacts.Open(ctx, 1)
	assert.ErrorContains(t, err, "build token")
	assert.Zero(t, mock.GetTotalCallCount())
}

func TestArtifactsUploadSizeMismatch(t *testing.T) {
	tests := []struct {
		name string
		data string
		size int64
		want string
	}{
		{"shorter", "12345", 10, "ended after 5 of the 10 bytes"},
		{"longer", "1234567890EXTRA", 10, "holds more than the 10 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hits atomic.Int32
			srv := testServer(t, func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				_, _ = io.Copy(io.Discard, r.Body)
				w.WriteHeader(http.StatusCreated)
			})
			c := testClient(t, srv.URL)
			_, _, err := c.Artifacts.Upload(context.Background(), 42, strings.NewReader(tt.data), &UploadOptions{Size: tt.size})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.LessOrEqual(t, hits.Load(), int32(1))
		})
	}
}

// heapWatch samples the heap while a transfer runs and reports the highest HeapAlloc seen above the starting
// point, and the bytes allocated in all.
type heapWatch struct {
	stop     chan struct{}
	done     chan struct{}
	base     runtime.MemStats
	peak     uint64
	finished runtime.MemStats
}

func startArtHeapWatch() *heapWatch {
	runtime.GC()
	w := &heapWatch{stop: make(chan struct{}), done: make(chan struct{})}
	runtime.ReadMemStats(&w.base)
	go func() {
		defer close(w.done)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
				runtime.ReadMemStats(&ms)
				if ms.HeapAlloc > w.peak {
					w.peak = ms.HeapAlloc
				}
			}
		}
	}()
	return w
}

// end returns the peak heap growth and the bytes allocated since the start.
func (w *heapWatch) end() (peakGrowth, allocated uint64) {
	close(w.stop)
	<-w.done
	runtime.ReadMemStats(&w.finished)
	if w.finished.HeapAlloc > w.peak {
		w.peak = w.finished.HeapAlloc
	}
	if w.peak > w.base.HeapAlloc {
		peakGrowth = w.peak - w.base.HeapAlloc
	}
	return peakGrowth, w.finished.TotalAlloc - w.base.TotalAlloc
}

const (
	bigSize = 200 << 20
	// heapBudget is how much the heap may grow, and how much may be allocated, while 200 MiB go through.
	heapBudget = 8 << 20
)

func TestArtifactsUpload200MiBInConstantMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 200 MiB")
	}
	for _, known := range []bool{false, true} {
		t.Run("size known "+strconv.FormatBool(known), func(t *testing.T) {
			srv, seen := uploadServer(t)
			c := testClient(t, srv.URL)
			want := sha256.New()
			src := io.TeeReader(newArtPRNG(7, bigSize), want)
			opts := &UploadOptions{}
			if known {
				opts.Size = bigSize
			}
			watch := startArtHeapWatch()
			_, _, err := c.Artifacts.Upload(context.Background(), 42, src, opts)
			growth, allocated := watch.end()
			require.NoError(t, err)
			require.Len(t, seen(), 1)
			assert.Equal(t, int64(bigSize), seen()[0].size)
			assert.Equal(t, hexDigest(want), seen()[0].sum)
			assert.Equal(t, !known, seen()[0].chunked)
			t.Logf("heap growth %d KiB, allocated %d KiB", growth>>10, allocated>>10)
			assert.Less(t, growth, uint64(heapBudget), "heap grew while uploading")
			assert.Less(t, allocated, uint64(heapBudget), "allocated while uploading")
		})
	}
}

func TestArtifactsDownload200MiBInConstantMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 200 MiB")
	}
	sent := make(chan string, 1)
	srv := testServer(t, func(w http.ResponseWriter, r *http.Request) {
		assert.Equal(t, testToken, r.Header.Get("BUILD-TOKEN"))
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", "attachment; filename=big.zip")
		w.Header().Set("Content-Length", strconv.Itoa(bigSize))
		h := sha256.New()
		_, err := io.Copy(io.MultiWriter(w, h), newArtPRNG(9, bigSize))
		assert.NoError(t, err)
		sent <- hexDigest(h)
	})
	c := testClient(t, srv.URL)
	got := sha256.New()
	watch := startArtHeapWatch()
	info, resp, err := c.Artifacts.Download(context.Background(), 42, got, nil)
	growth, allocated := watch.end()
	require.NoError(t, err)
	assert.Equal(t, &ArtifactInfo{Filename: "big.zip", Size: bigSize}, info)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, <-sent, hexDigest(got))
	t.Logf("heap growth %d KiB, allocated %d KiB", growth>>10, allocated>>10)
	assert.Less(t, growth, uint64(heapBudget), "heap grew while downloading")
	assert.Less(t, allocated, uint64(heapBudget), "allocated while downloading")
}

// earlyServer answers every request with status and body as soon as it has read the request's head and, when
// takeBody is positive, that many bytes of the body (after a 100 Continue), reading no more. With takeBody zero it
// then closes the connection at once, as a front proxy refusing an upload on its headers does. Otherwise it closes
// only its sending side and keeps discarding what arrives until the client hangs up, as front proxies do to let a
// client that is still sending see the answer (nginx's lingering close).
func earlyServer(t *testing.T, status int, body string, takeBody int64) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(conn)
				for {
					line, err := br.ReadString('\n')
					if err != nil || line == "\r\n" {
						break
					}
				}
				if takeBody > 0 {
					_, _ = io.WriteString(conn, "HTTP/1.1 100 Continue\r\n\r\n")
					_, _ = io.CopyN(io.Discard, br, takeBody)
				}
				fmt.Fprintf(conn, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
					status, http.StatusText(status), len(body), body)
				if takeBody > 0 {
					_ = conn.(*net.TCPConn).CloseWrite()
					_, _ = io.Copy(io.Discard, br)
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

func TestArtifactsUploadEarlyAnswer(t *testing.T) {
	leakCheck(t)
	big := filepath.Join(t.TempDir(), "big.zip")
	f, err := os.Create(big)
	require.NoError(t, err)
	_, err = io.Copy(f, newArtPRNG(3, 32<<20))
	require.NoError(t, err)
	require.NoError(t, f.Close())

	tests := []struct {
		status  int
		body    string
		target  error
		message string
	}{
		{http.StatusRequestEntityTooLarge, `{"message":"413 Request Entity Too Large"}`, ErrTooLarge, "maximum artifacts size"},
		{http.StatusForbidden, `{"message":"403 Forbidden"}`, ErrForbidden, "only while the build is running"},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.status), func(t *testing.T) {
			c := testClient(t, earlyServer(t, tt.status, tt.body, 0))
			uploads := map[string]func() error{
				"stream": func() error {
					_, _, err := c.Artifacts.Upload(context.Background(), 42, newArtPRNG(4, 64<<20), nil)
					return err
				},
				"file": func() error {
					_, _, err := c.Artifacts.UploadFile(context.Background(), 42, big, nil)
					return err
				},
				"paths": func() error {
					_, _, err := c.Artifacts.UploadPaths(context.Background(), 42, filepath.Dir(big), []string{"big.zip"}, nil)
					return err
				},
			}
			for name, upload := range uploads {
				err := upload()
				require.Error(t, err, name)
				assert.ErrorIs(t, err, tt.target, name)
				assert.Contains(t, err.Error(), tt.message, name)
				assert.NotContains(t, err.Error(), "broken pipe", name)
				assert.NotContains(t, err.Error(), "reset by peer", name)
				var er *ErrorResponse
				assert.True(t, errors.As(err, &er), name)
			}
		})
	}
}

func TestArtifactsUploadRefusedAfterPartOfTheBody(t *testing.T) {
	leakCheck(t)
	// A proxy that asks for the body, refuses it after 1 MiB and reads no further: the answer arrives while the
	// client is still sending, and must win over the write failure that follows.
	c := testClient(t, earlyServer(t, http.StatusRequestEntityTooLarge, `{"message":"413 Request Entity Too Large"}`, 1<<20))
	for i := 0; i < 5; i++ {
		_, _, err := c.Artifacts.Upload(context.Background(), 42, newArtPRNG(5, 64<<20), nil)
		require.Error(t, err)
		assert.ErrorIs(t, err, ErrTooLarge)
	}
}

func TestArtifactsUploadFileRetriedAfterTransientFailure(t *testing.T) {
	data := prngBytes(11, 2<<20)
	file := filepath.Join(t.TempDir(), "a.zip")
	require.NoError(t, os.WriteFile(file, data, 0o600))
	var attempts atomic.Int32
	var (
		mu   sync.Mutex
		last receivedUpload
	)
	srv := testServer(t, func(w http.ResponseWriter, r *http.Request) {
		got, err := readUpload(t, r)
		if !assert.NoError(t, err) {
			return
		}
		if attempts.Add(1) == 1 {
			http.Error(w, `{"message":"502 Bad Gateway"}`, http.StatusBadGateway)
			return
		}
		mu.Lock()
		last = got
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"id":42}`)
	})
	c := testClient(t, srv.URL)
	build, resp, err := c.Artifacts.UploadFile(context.Background(), 42, file, nil)
	require.NoError(t, err)
	assert.Equal(t, int64(42), build.ID)
	assert.Equal(t, 2, resp.Attempts)
	assert.Equal(t, int32(2), attempts.Load())
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, sha256Hex(data), last.sum)
	assert.Equal(t, "a.zip", last.filename)
}

func TestArtifactsUploadFileChangedIsNotRetried(t *testing.T) {
	file := filepath.Join(t.TempDir(), "a.zip")
	require.NoError(t, os.WriteFile(file, []byte("first version"), 0o600))
	var attempts atomic.Int32
	srv := testServer(t, func(w http.ResponseWriter, r *http.Request) {
		attempts.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		// The file grows before the retry.
		require.NoError(t, os.WriteFile(file, []byte("second, longer version"), 0o600))
		http.Error(w, "busy", http.StatusServiceUnavailable)
	})
	c := testClient(t, srv.URL)
	_, _, err := c.Artifacts.UploadFile(context.Background(), 42, file, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "changed size")
	assert.Equal(t, int32(1), attempts.Load())
}

func TestArtifactsUploadStreamIsNotRetried(t *testing.T) {
	leakCheck(t)
	var attempts atomic.Int32
	srv := testServer(t, func(w http.ResponseWriter, r *http.Request) {
		attempts.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		http.Error(w, `{"message":"503 Service Unavailable"}`, http.StatusServiceUnavailable)
	})
	c := testClient(t, srv.URL)
	_, resp, err := c.Artifacts.Upload(context.Background(), 42, strings.NewReader("stream"), nil)
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrBodyNotReplayable)
	assert.Contains(t, err.Error(), "cannot be replayed")
	assert.Equal(t, int32(1), attempts.Load())
	require.NotNil(t, resp)
	assert.Equal(t, 1, resp.Attempts)
}

func TestArtifactsUploadReaderFailure(t *testing.T) {
	srv := testServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusCreated)
	})
	c := testClient(t, srv.URL)
	boom := errors.New("disk on fire")
	_, _, err := c.Artifacts.Upload(context.Background(), 42, io.MultiReader(strings.NewReader("part"), iotestErrReader{boom}), nil)
	require.Error(t, err)
	assert.ErrorIs(t, err, boom)
	assert.Contains(t, err.Error(), "reading the artifact stream")
}

type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }

func TestArtifactsDelete(t *testing.T) {
	mock := httpmock.NewMockTransport()
	mock.RegisterResponder(http.MethodDelete, "https://ci.example.com/ci/api/v1/builds/7/artifacts",
		func(r *http.Request) (*http.Response, error) {
			if r.Header.Get("BUILD-TOKEN") != testToken || r.URL.RawQuery != "" {
				return httpmock.NewStringResponse(http.StatusForbidden, `{"message":"403 Forbidden"}`), nil
			}
			return httpmock.NewStringResponse(http.StatusOK, ``), nil
		})
	mock.RegisterResponder(http.MethodDelete, "https://ci.example.com/ci/api/v1/builds/8/artifacts",
		httpmock.NewStringResponder(http.StatusNotFound, `{"message":"404 Not Found"}`))
	c, err := NewClient("https://ci.example.com", WithHTTPClient(&http.Client{Transport: mock}), WithBuildToken(testToken))
	require.NoError(t, err)
	resp, err := c.Artifacts.Delete(context.Background(), 7)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	_, err = c.Artifacts.Delete(context.Background(), 8)
	assert.ErrorIs(t, err, ErrNotFound)
	assert.NotContains(t, err.Error(), testToken)
}

func TestArtifactsDispositionFilename(t *testing.T) {
	tests := []struct{ header, want string }{
		{`attachment; filename=artifacts.zip`, "artifacts.zip"},
		{`attachment; filename="artifacts.zip"`, "artifacts.zip"},
		{`attachment;filename=artifacts.zip;`, "artifacts.zip"},
		{`ATTACHMENT; FILENAME = "a b.zip"`, "a b.zip"},
		{`attachment; filename=my artifacts (1).zip`, "my artifacts (1).zip"},
		{`attachment; filename="quote \"q\".zip"`, `quote "q".zip`},
		{`attachment; filename="a;b.zip"; size=3`, "a;b.zip"},
		{`attachment; filename*=UTF-8''%e2%82%ac%20rates.zip`, "€ rates.zip"},
		{`attachment; filename="fallback.zip"; filename*=utf-8''caf%C3%A9.zip`, "café.zip"},
		{`attachment; filename*=iso-8859-1'en'%A3.zip`, "£.zip"},
		{`attachment; filename="fallback.zip"; filename*=UTF-8''bad%zz`, "fallback.zip"},
		{`attachment; filename*=UTF-8''%ff.zip`, ""},
		{`attachment; filename="../../etc/passwd"`, "passwd"},
		{`attachment; filename="C:\\temp\\x.zip"`, "x.zip"},
		{`attachment; filename=".."`, ""},
		{`attachment; filename="dir/"`, ""},
		{`attachment; filename="a` + "\x01" + `b.zip"`, ""},
		{`attachment; filename="unterminated`, ""},
		{`attachment; filename="a.zip" trailing`, ""},
		{`attachment; filename=a.zip; filename=b.zip`, ""},
		{`attachment; filename`, ""},
		{`attachment; filename=`, ""},
		{`attachment`, ""},
		{``, ""},
		{`; filename=a.zip`, ""},
		{`attachment; filename="` + strings.Repeat("a", 300) + `"`, ""},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, dispositionFilename(tt.header), tt.header)
	}
}

func TestArtifactsParseContentRange(t *testing.T) {
	tests := []struct {
		v                  string
		first, last, total int64
		ok                 bool
	}{
		{"bytes 10-19/20", 10, 19, 20, true},
		{"bytes 0-0/*", 0, 0, -1, true},
		{"bytes 10-19/15", 0, 0, 0, false},
		{"bytes 19-10/20", 0, 0, 0, false},
		{"bytes -1-3/4", 0, 0, 0, false},
		{"bytes 1-2", 0, 0, 0, false},
		{"items 1-2/3", 0, 0, 0, false},
		{"bytes +1-2/3", 0, 0, 0, false},
		{"bytes 1-99999999999999999999/3", 0, 0, 0, false},
		{"", 0, 0, 0, false},
	}
	for _, tt := range tests {
		first, last, total, ok := parseContentRange(tt.v)
		assert.Equal(t, tt.ok, ok, tt.v)
		if tt.ok {
			assert.Equal(t, []int64{tt.first, tt.last, tt.total}, []int64{first, last, total}, tt.v)
		}
	}
}

// fileServer serves data as build 42's artifacts file the way a coordinator does, honouring byte ranges. When
// dropAt is positive, the first answer is cut off after that many bytes.
type fileServer struct {
	data      []byte
	dropAt    int
	ignoreRng bool
	badRange  string
	noLength  bool
	etag      string
	mu        sync.Mutex
	ranges    []string
	ifRanges  []string
	tokens    []string
	queries   []string
	requests  int
}

func (s *fileServer) handler(t *testing.T) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests++
		n := s.requests
		s.ranges = append(s.ranges, r.Header.Get("Range"))
		s.ifRanges = append(s.ifRanges, r.Header.Get("If-Range"))
		s.tokens = append(s.tokens, r.Header.Get("BUILD-TOKEN"))
		s.queries = append(s.queries, r.URL.RawQuery)
		s.mu.Unlock()
		if r.Method != http.MethodGet {
			http.Error(w, "method", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Disposition", "attachment; filename=artifacts.zip")
		if s.etag != "" {
			h.Set("ETag", s.etag)
		}
		body := s.data
		status := http.StatusOK
		if rng := r.Header.Get("Range"); rng != "" && !s.ignoreRng {
			from, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(rng, "bytes="), "-"))
			if !assert.NoError(t, err) || from >= len(s.data) {
				http.Error(w, "range", http.StatusRequestedRangeNotSatisfiable)
				return
			}
			cr := fmt.Sprintf("bytes %d-%d/%d", from, len(s.data)-1, len(s.data))
			if s.badRange != "" {
				cr = s.badRange
			}
			h.Set("Content-Range", cr)
			body, status = s.data[from:], http.StatusPartialContent
		}
		if !s.noLength {
			h.Set("Content-Length", strconv.Itoa(len(body)))
		}
		w.WriteHeader(status)
		if n == 1 && s.dropAt > 0 {
			_, _ = w.Write(body[:s.dropAt])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
		_, _ = w.Write(body)
	}
}

func (s *fileServer) seen() (ranges, ifRanges, tokens []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ranges...), append([]string(nil), s.ifRanges...), append([]string(nil), s.tokens...)
}

func TestArtifactsDownload(t *testing.T) {
	data := prngBytes(2, 100_000)
	fs := &fileServer{data: data}
	srv := testServer(t, fs.handler(t))
	c := testClient(t, srv.URL)

	var buf bytes.Buffer
	info, resp, err := c.Artifacts.Download(context.Background(), 42, &buf, nil)
	require.NoError(t, err)
	assert.Equal(t, &ArtifactInfo{Filename: "artifacts.zip", Size: int64(len(data))}, info)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, data, buf.Bytes())

	rc, info, err := c.Artifacts.Open(context.Background(), 42)
	require.NoError(t, err)
	got, err := io.ReadAll(rc)
	require.NoError(t, err)
	require.NoError(t, rc.Close())
	assert.Equal(t, data, got)
	assert.Equal(t, int64(len(data)), info.Size)

	_, _, tokens := fs.seen()
	assert.Equal(t, []string{testToken, testToken}, tokens)
	fs.mu.Lock()
	assert.Equal(t, []string{"", ""}, fs.queries, "nothing, least of all the token, goes in the query")
	fs.mu.Unlock()
}

func TestArtifactsUploadFileNeedsARegularFile(t *testing.T) {
	mock := httpmock.NewMockTransport()
	c, err := NewClient("https://ci.example.com", WithHTTPClient(&http.Client{Transport: mock}), WithBuildToken(testToken))
	require.NoError(t, err)
	dir := t.TempDir()
	_, _, err = c.Artifacts.UploadFile(context.Background(), 42, dir, nil)
	assert.ErrorContains(t, err, "is not a regular file")
	_, _, err = c.Artifacts.UploadFile(context.Background(), 42, filepath.Join(dir, "missing.zip"), nil)
	assert.ErrorIs(t, err, os.ErrNotExist)
	assert.Zero(t, mock.GetTotalCallCount())
}

func TestArtifactsDownloadNotFound(t *testing.T) {
	srv := testServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"message":"404 Not Found"}`)
	})
	c := testClient(t, srv.URL)
	var buf bytes.Buffer
	_, resp, err := c.Artifacts.Download(context.Background(), 42, &buf, nil)
	assert.ErrorIs(t, err, ErrNotFound)
	assert.Zero(t, buf.Len())
	require.NotNil(t, resp)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	_, _, err = c.Artifacts.Open(context.Background(), 42)
	assert.ErrorIs(t, err, ErrNotFound)
}

func TestArtifactsDownloadResumes(t *testing.T) {
	data := prngBytes(3, 1<<20)
	for _, noLength := range []bool{false, true} {
		for _, toFile := range []bool{false, true} {
			t.Run(fmt.Sprintf("length unknown %v, to file %v", noLength, toFile), func(t *testing.T) {
				leakCheck(t)
				fs := &fileServer{data: data, dropAt: 300_000, etag: `"v1"`, noLength: noLength}
				srv := testServer(t, fs.handler(t))
				c := testClient(t, srv.URL)
				var got []byte
				if toFile {
					path := filepath.Join(t.TempDir(), "a.zip")
					_, _, err := c.Artifacts.DownloadFile(context.Background(), 42, path, nil)
					require.NoError(t, err)
					got, err = os.ReadFile(path)
					require.NoError(t, err)
				} else {
					var buf bytes.Buffer
					_, _, err := c.Artifacts.Download(context.Background(), 42, &buf, nil)
					require.NoError(t, err)
					got = buf.Bytes()
				}
				assert.Equal(t, sha256Hex(data), sha256Hex(got))
				ranges, ifRanges, tokens := fs.seen()
				require.Len(t, ranges, 2)
				assert.Empty(t, ranges[0])
				// The client may have received less than was written before the drop, never more.
				from, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(ranges[1], "bytes="), "-"))
				require.NoError(t, err, ranges[1])
				assert.Positive(t, from)
				assert.LessOrEqual(t, from, 300_000)
				assert.Equal(t, `"v1"`, ifRanges[1])
				assert.Equal(t, []string{testToken, testToken}, tokens)
			})
		}
	}
}

func TestArtifactsDownloadRangeIgnored(t *testing.T) {
	// A server that answers the range request with the whole file: a file download starts over, a stream skips
	// what it already delivered, since the file's strong ETag shows it is the same.
	data := prngBytes(4, 1<<20)
	for _, toFile := range []bool{false, true} {
		t.Run("to file "+strconv.FormatBool(toFile), func(t *testing.T) {
			fs := &fileServer{data: data, dropAt: 400_000, ignoreRng: true, etag: `"v1"`}
			srv := testServer(t, fs.handler(t))
			c := testClient(t, srv.URL)
			var calls []int64
			progress := WithProgress(func(done, total int64) { calls = append(calls, done) })
			var got []byte
			if toFile {
				path := filepath.Join(t.TempDir(), "a.zip")
				_, _, err := c.Artifacts.DownloadFile(context.Background(), 42, path, nil, progress)
				require.NoError(t, err)
				got, err = os.ReadFile(path)
				require.NoError(t, err)
			} else {
				var buf bytes.Buffer
				_, _, err := c.Artifacts.Download(context.Background(), 42, &buf, nil, progress)
				require.NoError(t, err)
				got = buf.Bytes()
			}
			assert.Equal(t, sha256Hex(data), sha256Hex(got))
			require.NotEmpty(t, calls)
			assert.Equal(t, int64(len(data)), calls[len(calls)-1])
			ranges, _, _ := fs.seen()
			assert.Len(t, ranges, 2)
		})
	}
}

func TestArtifactsDownloadFileLeavesNothingPartial(t *testing.T) {
	data := prngBytes(5, 1<<20)
	tests := []struct {
		name    string
		fs      *fileServer
		handler http.HandlerFunc
		opts    *DownloadOptions
		copts   []Option
		ctx     func() context.Context
		target  error
		message string
	}{
		{name: "not found", handler: func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, `{"message":"404 Not Found"}`, http.StatusNotFound)
		}, target: ErrNotFound},
		{name: "announced size over the limit", fs: &fileServer{data: data}, opts: &DownloadOptions{MaxSize: 1000}, target: ErrTooLarge},
		{name: "streamed size over the limit", fs: &fileServer{data: data, noLength: true}, opts: &DownloadOptions{MaxSize: 1000}, target: ErrTooLarge},
		{name: "drop without retries", fs: &fileServer{data: data, dropAt: 100_000}, copts: []Option{WithoutRetries()}, message: "connection lost after"},
		{name: "wrong content range", fs: &fileServer{data: data, dropAt: 100_000, etag: `"v1"`, badRange: "bytes 0-99/1048576"}, message: "the answer holds bytes 0-99"},
		{name: "content range echoing the token", fs: &fileServer{data: data, dropAt: 100_000, etag: `"v1"`, badRange: "BUILD-TOKEN: " + testToken}, message: "invalid Content-Range"},
		{name: "canceled", fs: &fileServer{data: data}, ctx: func() context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx
		}, target: context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leakCheck(t)
			h := tt.handler
			if tt.fs != nil {
				h = tt.fs.handler(t)
			}
			srv := testServer(t, h)
			c := testClient(t, srv.URL, tt.copts...)
			dir := t.TempDir()
			path := filepath.Join(dir, "artifacts.zip")
			require.NoError(t, os.WriteFile(path, []byte("previous"), 0o644))
			ctx := context.Background()
			if tt.ctx != nil {
				ctx = tt.ctx()
			}
			_, _, err := c.Artifacts.DownloadFile(ctx, 42, path, tt.opts)
			require.Error(t, err)
			if tt.target != nil {
				assert.ErrorIs(t, err, tt.target)
			}
			if tt.message != "" {
				assert.Contains(t, err.Error(), tt.message)
			}
			assert.NotContains(t, err.Error(), testToken)
			entries, err := os.ReadDir(dir)
			require.NoError(t, err)
			require.Len(t, entries, 1, "temporary files left behind")
			got, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, "previous", string(got))
		})
	}
}

func TestArtifactsDownloadMaxSize(t *testing.T) {
	data := prngBytes(6, 1<<20)
	for _, noLength := range []bool{false, true} {
		t.Run("length unknown "+strconv.FormatBool(noLength), func(t *testing.T) {
			fs := &fileServer{data: data, noLength: noLength}
			srv := testServer(t, fs.handler(t))
			c := testClient(t, srv.URL)
			var buf bytes.Buffer
			_, _, err := c.Artifacts.Download(context.Background(), 42, &buf, &DownloadOptions{MaxSize: 64 << 10})
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrTooLarge)
			if noLength {
				assert.Equal(t, 64<<10, buf.Len(), "exactly the limit is delivered before the refusal")
			} else {
				assert.Zero(t, buf.Len(), "an announced size over the limit is refused before reading")
			}
			// Exactly at the limit is fine.
			buf.Reset()
			_, _, err = c.Artifacts.Download(context.Background(), 42, &buf, &DownloadOptions{MaxSize: int64(len(data))})
			require.NoError(t, err)
			assert.Equal(t, len(data), buf.Len())
		})
	}
}

func TestArtifactsRedirectToAnotherHostDropsToken(t *testing.T) {
	data := []byte("zip bytes from object storage")
	var storageTokens []string
	var storageMu sync.Mutex
	storage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		storageMu.Lock()
		storageTokens = append(storageTokens, r.Header.Get("BUILD-TOKEN"))
		storageMu.Unlock()
		w.Header().Set("Content-Disposition", `attachment; filename="stored.zip"`)
		_, _ = w.Write(data)
	}))
	t.Cleanup(storage.Close)
	var coordTokens []string
	srv := testServer(t, func(w http.ResponseWriter, r *http.Request) {
		storageMu.Lock()
		coordTokens = append(coordTokens, r.Header.Get("BUILD-TOKEN"))
		storageMu.Unlock()
		if r.URL.Query().Get("same") == "" {
			http.Redirect(w, r, storage.URL+"/bucket/obj?X-Signature=abc", http.StatusFound)
			return
		}
		_, _ = w.Write(data)
	})
	c := testClient(t, srv.URL)
	var buf bytes.Buffer
	info, _, err := c.Artifacts.Download(context.Background(), 42, &buf, nil)
	require.NoError(t, err)
	assert.Equal(t, data, buf.Bytes())
	assert.Equal(t, "stored.zip", info.Filename)
	storageMu.Lock()
	assert.Equal(t, []string{testToken}, coordTokens)
	assert.Equal(t, []string{""}, storageTokens, "the build token reached another host")
	storageMu.Unlock()

	// Same origin, the token stays (so the check above can fail).
	sameHost := testServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.RawQuery == "" {
			http.Redirect(w, r, r.URL.Path+"?same=1", http.StatusFound)
			return
		}
		assert.Equal(t, testToken, r.Header.Get("BUILD-TOKEN"))
		_, _ = w.Write(data)
	})
	c2 := testClient(t, sameHost.URL)
	buf.Reset()
	_, _, err = c2.Artifacts.Download(context.Background(), 42, &buf, nil)
	require.NoError(t, err)
	assert.Equal(t, data, buf.Bytes())
}

func TestArtifactsProgress(t *testing.T) {
	data := prngBytes(8, 16<<20)
	check := func(t *testing.T, calls [][2]int64, elapsed time.Duration, total int64) {
		t.Helper()
		require.NotEmpty(t, calls)
		for i, c := range calls {
			assert.Equal(t, total, c[1])
			if i > 0 {
				assert.Greater(t, c[0], calls[i-1][0], "progress went backwards or repeated")
			}
		}
		assert.Equal(t, int64(len(data)), calls[len(calls)-1][0])
		// At most one report per interval, plus the first and the last: not one per read.
		assert.LessOrEqual(t, len(calls), int(elapsed/progressInterval)+2)
	}
	record := func(calls *[][2]int64) RequestOption {
		return WithProgress(func(done, total int64) { *calls = append(*calls, [2]int64{done, total}) })
	}

	t.Run("upload", func(t *testing.T) {
		srv, _ := uploadServer(t)
		c := testClient(t, srv.URL)
		var calls [][2]int64
		start := time.Now()
		_, _, err := c.Artifacts.Upload(context.Background(), 42, bytes.NewReader(data), &UploadOptions{Size: int64(len(data))}, record(&calls))
		elapsed := time.Since(start)
		require.NoError(t, err)
		check(t, calls, elapsed, int64(len(data)))
	})
	t.Run("upload of unknown size", func(t *testing.T) {
		srv, _ := uploadServer(t)
		c := testClient(t, srv.URL)
		var calls [][2]int64
		start := time.Now()
		_, _, err := c.Artifacts.Upload(context.Background(), 42, bytes.NewReader(data), nil, record(&calls))
		elapsed := time.Since(start)
		require.NoError(t, err)
		check(t, calls, elapsed, -1)
	})
	t.Run("download", func(t *testing.T) {
		srv := testServer(t, (&fileServer{data: data}).handler(t))
		c := testClient(t, srv.URL)
		var calls [][2]int64
		start := time.Now()
		_, _, err := c.Artifacts.Download(context.Background(), 42, io.Discard, nil, record(&calls))
		elapsed := time.Since(start)
		require.NoError(t, err)
		check(t, calls, elapsed, int64(len(data)))
	})
}

func TestArtifactsProgressThrottle(t *testing.T) {
	var calls [][2]int64
	p := newArtProgress(func(done, total int64) { calls = append(calls, [2]int64{done, total}) }, 1000)
	now := time.Unix(0, 0)
	p.now = func() time.Time { return now }
	for i := 0; i < 100; i++ {
		p.add(10)
		now = now.Add(10 * time.Millisecond)
	}
	p.finish()
	p.finish()
	// 100 reads over a second: the first, one per 100 ms after it, and the last.
	assert.Equal(t, [][2]int64{{10, 1000}, {110, 1000}, {210, 1000}, {310, 1000}, {410, 1000}, {510, 1000},
		{610, 1000}, {710, 1000}, {810, 1000}, {910, 1000}, {1000, 1000}}, calls)

	var nilFn *progressReporter
	nilFn.add(1)
	nilFn.finish()
	newArtProgress(nil, 5).add(5)
}

func TestArtifactsUploadProgressOnRetryStartsOver(t *testing.T) {
	data := prngBytes(12, 1<<20)
	file := filepath.Join(t.TempDir(), "a.zip")
	require.NoError(t, os.WriteFile(file, data, 0o600))
	var attempts atomic.Int32
	srv := testServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if attempts.Add(1) == 1 {
			http.Error(w, "", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"id":42}`)
	})
	c := testClient(t, srv.URL)
	var last [2]int64
	_, _, err := c.Artifacts.UploadFile(context.Background(), 42, file, nil, WithProgress(func(done, total int64) {
		last = [2]int64{done, total}
	}))
	require.NoError(t, err)
	assert.Equal(t, [2]int64{int64(len(data)), int64(len(data))}, last)
}

// truncBody hands over its data together with a failure, then only io.EOF, as a body may after a drop.
type truncBody struct {
	data []byte
	done bool
}

func (b *truncBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	b.done = true
	return copy(p, b.data), io.ErrUnexpectedEOF
}

func (b *truncBody) Close() error { return nil }

func TestArtifactsDownloadDropReportedWithData(t *testing.T) {
	// A stream of unknown length whose failure comes with its last bytes must not pass for complete.
	data := prngBytes(13, 200)
	mock := httpmock.NewMockTransport()
	var ranges []string
	mock.RegisterResponder(http.MethodGet, "https://ci.example.com/ci/api/v1/builds/42/artifacts",
		func(r *http.Request) (*http.Response, error) {
			ranges = append(ranges, r.Header.Get("Range"))
			if r.Header.Get("Range") == "" {
				return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Etag": {`"v1"`}}, ContentLength: -1,
					Body: &truncBody{data: data[:100]}, Request: r}, nil
			}
			resp := httpmock.NewBytesResponse(http.StatusPartialContent, data[100:])
			resp.Header.Set("Content-Range", "bytes 100-199/200")
			resp.Header.Set("ETag", `"v1"`)
			resp.ContentLength = 100
			return resp, nil
		})
	c, err := NewClient("https://ci.example.com", WithHTTPClient(&http.Client{Transport: mock}), WithBuildToken(testToken),
		WithRetryPolicy(RetryPolicy{MaxRetries: 1}))
	require.NoError(t, err)
	var buf bytes.Buffer
	info, _, err := c.Artifacts.Download(context.Background(), 42, &buf, nil)
	require.NoError(t, err)
	assert.Equal(t, data, buf.Bytes())
	assert.Equal(t, []string{"", "bytes=100-"}, ranges)
	assert.Equal(t, int64(-1), info.Size, "the size was not announced at the start")
}

// A 201 says the coordinator stored the file, whatever its body: a proxy or an older coordinator may send no build
// back, or one this SDK cannot read. The upload succeeded; the build is what could be read of the answer.
func TestArtifactsUploadCreatedWithoutABuild(t *testing.T) {
	tests := []struct {
		name        string
		contentType string
		body        string
		wantID      int64 // 0: no build; negative: only that ID
	}{
		{"empty", "application/json", "", 0},
		{"empty without a type", "", "", 0},
		{"whitespace", "application/json", "\n", 0},
		{"null", "application/json", "null", 0},
		{"true", "application/json", "true", 0},
		{"HTML", "text/html", "<html><body>Created</body></html>", 0},
		{"plain text", "text/plain", "201 Created", 0},
		// Only the ID, read from the prefix: the rest of the build is lost with the tail.
		{"cut short", "application/json", `{"id":42,"artifacts_file":{"filena`, -42},
		{"a field of the wrong type", "application/json",
			`{"id":42,"name":7,"artifacts_file":{"filename":"artifacts.zip","size":4}}`, 42},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := testServer(t, func(w http.ResponseWriter, r *http.Request) {
				_, err := readUpload(t, r)
				assert.NoError(t, err)
				if tt.contentType != "" {
					w.Header().Set("Content-Type", tt.contentType)
				}
				w.WriteHeader(http.StatusCreated)
				_, _ = io.WriteString(w, tt.body)
			})
			c := testClient(t, srv.URL)
			build, resp, err := c.Artifacts.Upload(context.Background(), 42, strings.NewReader("data"), &UploadOptions{Size: 4})
			require.NoError(t, err, "the file is stored: the upload succeeded")
			require.NotNil(t, resp)
			assert.Equal(t, http.StatusCreated, resp.StatusCode)
			require.NotNil(t, build, "a nil build would panic a caller that reads ArtifactsFile")
			if tt.wantID == 0 {
				assert.Equal(t, Build{}, *build, "no build could be read from the answer")
				return
			}
			if tt.wantID < 0 {
				assert.Equal(t, Build{ID: -tt.wantID}, *build, "only the ID could be read")
				return
			}
			assert.Equal(t, tt.wantID, build.ID)
			assert.Equal(t, ArtifactsFile{Filename: "artifacts.zip", Size: 4}, build.ArtifactsFile)
			assert.Empty(t, build.Name, "the field that could not be read")
		})
	}

	t.Run("UploadFile and UploadPaths", func(t *testing.T) {
		srv := testServer(t, func(w http.ResponseWriter, r *http.Request) {
			_, err := readUpload(t, r)
			assert.NoError(t, err)
			w.WriteHeader(http.StatusCreated)
		})
		c := testClient(t, srv.URL)
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, "out.txt"), []byte("data"), 0o644))
		build, _, err := c.Artifacts.UploadFile(context.Background(), 42, filepath.Join(dir, "out.txt"), nil)
		assert.NoError(t, err)
		assert.Equal(t, &Build{}, build)
		build, _, err = c.Artifacts.UploadPaths(context.Background(), 42, dir, []string{"out.txt"}, nil)
		assert.NoError(t, err)
		assert.Equal(t, &Build{}, build)
	})
}
