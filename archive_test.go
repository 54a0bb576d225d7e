package runnerapi

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"context"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jarcoal/httpmock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// leakCheck makes the test fail if it leaves goroutines behind. It runs after every cleanup registered later,
// so servers and transports are closed by then.
func leakCheck(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

// writeTree creates files (content), directories (a name ending in '/') and symlinks (content "-> target")
// under root with the given modes, setting modes after creation so that the umask does not matter.
func writeTree(t *testing.T, root string, entries []treeEntry) {
	t.Helper()
	for _, e := range entries {
		p := filepath.Join(root, filepath.FromSlash(strings.TrimSuffix(e.name, "/")))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		switch {
		case strings.HasSuffix(e.name, "/"):
			require.NoError(t, os.MkdirAll(p, 0o755))
		case strings.HasPrefix(e.content, "-> "):
			require.NoError(t, os.Symlink(strings.TrimPrefix(e.content, "-> "), p))
			continue
		default:
			require.NoError(t, os.WriteFile(p, []byte(e.content), 0o600))
		}
		require.NoError(t, os.Chmod(p, e.mode))
	}
}

type treeEntry struct {
	name    string
	mode    fs.FileMode
	content string
}

// readTree describes everything under root as "name mode content-or-target", sorted.
func readTree(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		switch {
		case info.IsDir():
			out = append(out, name+"/ "+info.Mode().Perm().String())
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out = append(out, name+" -> "+target)
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out = append(out, name+" "+info.Mode().Perm().String()+" "+string(b))
		}
		return nil
	})
	require.NoError(t, err)
	sort.Strings(out)
	return out
}

// storeServer keeps what is uploaded as build 42's artifacts file and serves it back.
func storeServer(t *testing.T) (srvURL string, stored func() []byte) {
	var (
		mu   sync.Mutex
		file []byte
	)
	srv := testServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPost:
			mr, err := r.MultipartReader()
			if !assert.NoError(t, err) {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			p, err := mr.NextPart()
			if !assert.NoError(t, err) {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			b, err := io.ReadAll(p)
			if !assert.NoError(t, err) {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			mu.Lock()
			file = b
			mu.Unlock()
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, `{"id":42,"artifacts_file":{"filename":"artifacts.zip","size":1}}`)
		case http.MethodGet:
			mu.Lock()
			b := file
			mu.Unlock()
			if b == nil {
				http.Error(w, `{"message":"404 Not Found"}`, http.StatusNotFound)
				return
			}
			w.Header().Set("Content-Disposition", "attachment; filename=artifacts.zip")
			_, _ = w.Write(b)
		}
	})
	return srv.URL, func() []byte {
		mu.Lock()
		defer mu.Unlock()
		return file
	}
}

func zipNames(t *testing.T, b []byte) []string {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	require.NoError(t, err)
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
	}
	return names
}

func TestArtifactsZipRoundTrip(t *testing.T) {
	leakCheck(t)
	src := t.TempDir()
	writeTree(t, src, []treeEntry{
		{"build/", 0o750, ""},
		{"build/bin/", 0o755, ""},
		{"build/bin/app", 0o755, "#!/bin/sh\necho hi\n"},
		{"build/lib/empty/", 0o700, ""},
		{"build/lib/nested/deeper/", 0o755, ""},
		{"build/lib/nested/deeper/data.bin", 0o640, strings.Repeat("data ", 20)},
		{"build/readonly/", 0o555, ""},
		{"build/readonly/ro.txt", 0o444, "read only"},
		{"build/link", 0, "-> bin/app"},
		{"build/uplink", 0, "-> ../logs"},
		{"logs/", 0o755, ""},
		{"logs/a.log", 0o600, "log a"},
		{"logs/b.log", 0o644, "log b"},
		{"logs/c.txt", 0o644, "not a log"},
		{"readme.md", 0o644, "not archived"},
	})
	srvURL, stored := storeServer(t)
	c := testClient(t, srvURL)

	build, _, err := c.Artifacts.UploadPaths(context.Background(), 42, src, []string{"build", "logs/*.log", "build/bin/app"}, nil)
	require.NoError(t, err)
	assert.Equal(t, int64(42), build.ID)
	names := zipNames(t, stored())
	assert.Equal(t, []string{
		"build/", "build/bin/", "build/bin/app", "build/lib/", "build/lib/empty/", "build/lib/nested/",
		"build/lib/nested/deeper/", "build/lib/nested/deeper/data.bin", "build/link", "build/readonly/",
		"build/readonly/ro.txt", "build/uplink", "logs/a.log", "logs/b.log",
	}, names)

	dst := filepath.Join(t.TempDir(), "out")
	tmpDir := t.TempDir()
	info, _, err := c.Artifacts.Extract(context.Background(), 42, dst, &ExtractOptions{TempDir: tmpDir})
	require.NoError(t, err)
	assert.Equal(t, "artifacts.zip", info.Filename)
	t.Cleanup(func() { _ = os.Chmod(filepath.Join(dst, "build", "readonly"), 0o755) })

	want := readTree(t, src)
	var kept []string
	for _, e := range want {
		if !strings.HasPrefix(e, "readme.md") && !strings.HasPrefix(e, "logs/c.txt") && !strings.HasPrefix(e, "logs/ ") {
			kept = append(kept, e)
		}
	}
	got := readTree(t, dst)
	// logs/ itself was not archived, only files in it: it is created with the default mode.
	assert.Contains(t, got, "logs/ -rwxr-xr-x")
	assert.Equal(t, kept, without(got, "logs/ -rwxr-xr-x"))
	left, err := os.ReadDir(tmpDir)
	require.NoError(t, err)
	assert.Empty(t, left, "the downloaded archive was not removed")
}

func without(list []string, drop string) []string {
	var out []string
	for _, s := range list {
		if s != drop {
			out = append(out, s)
		}
	}
	return out
}

func TestArtifactsCollectPaths(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600))
	writeTree(t, root, []treeEntry{
		{"a.txt", 0o644, "a"},
		{"b.txt", 0o644, "b"},
		{"c.bin", 0o644, "c"},
		{"dir/", 0o755, ""},
		{"dir/x.txt", 0o644, "x"},
	})
	require.NoError(t, os.Symlink(outside, filepath.Join(root, "out")))

	names := func(entries []zipEntry) []string {
		var out []string
		for _, e := range entries {
			out = append(out, e.name)
		}
		return out
	}
	entries, err := collectFiles(root, []string{"*.txt", "a.txt", "dir/", "missing/*", "out", "./c.bin"})
	require.NoError(t, err)
	assert.Equal(t, []string{"a.txt", "b.txt", "dir/", "dir/x.txt", "out", "c.bin"}, names(entries))

	refused := []struct{ pattern, message string }{
		{"../x", "is not inside"},
		{"dir/../../x", "is not inside"},
		{"/etc/passwd", "is not inside"},
		{"", "is not inside"},
		{"out/secret", "leads outside"},
		{"out/*", "leads outside"},
		{"[", "syntax error in pattern"},
	}
	for _, r := range refused {
		_, err := collectFiles(root, []string{r.pattern})
		if assert.Error(t, err, r.pattern) {
			assert.Contains(t, err.Error(), r.message, r.pattern)
		}
	}
}

func TestArtifactsCollectThroughLinkedRoot(t *testing.T) {
	real := t.TempDir()
	writeTree(t, real, []treeEntry{{"a.txt", 0o644, "a"}, {"d/", 0o755, ""}, {"d/b.txt", 0o644, "b"}})
	link := filepath.Join(t.TempDir(), "link")
	require.NoError(t, os.Symlink(real, link))
	entries, err := collectFiles(link, []string{"."})
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.name)
	}
	assert.Equal(t, []string{"a.txt", "d/", "d/b.txt"}, names)
}

func TestArtifactsUploadPathsNothingToUpload(t *testing.T) {
	mock := httpmock.NewMockTransport()
	c, err := NewClient("https://ci.example.com", WithHTTPClient(&http.Client{Transport: mock}), WithBuildToken(testToken))
	require.NoError(t, err)
	_, _, err = c.Artifacts.UploadPaths(context.Background(), 42, t.TempDir(), []string{"*.zip", "nothing"}, nil)
	assert.ErrorIs(t, err, ErrNoArtifactFiles)
	_, _, err = c.Artifacts.UploadPaths(context.Background(), 42, t.TempDir(), []string{"../up"}, nil)
	assert.ErrorContains(t, err, "is not inside")
	assert.Zero(t, mock.GetTotalCallCount())
}

func TestArtifactsUploadPathsRetriedByRebuildingTheArchive(t *testing.T) {
	leakCheck(t)
	root := t.TempDir()
	writeTree(t, root, []treeEntry{{"f.txt", 0o644, "content"}})
	var (
		mu     sync.Mutex
		bodies [][]byte
	)
	srv := testServer(t, func(w http.ResponseWriter, r *http.Request) {
		mr, err := r.MultipartReader()
		require.NoError(t, err)
		p, err := mr.NextPart()
		require.NoError(t, err)
		b, err := io.ReadAll(p)
		require.NoError(t, err)
		mu.Lock()
		bodies = append(bodies, b)
		n := len(bodies)
		mu.Unlock()
		if n == 1 {
			http.Error(w, "", http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"id":42}`)
	})
	c := testClient(t, srv.URL)
	_, resp, err := c.Artifacts.UploadPaths(context.Background(), 42, root, []string{"f.txt"}, nil)
	require.NoError(t, err)
	assert.Equal(t, 2, resp.Attempts)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, bodies, 2)
	assert.Equal(t, []string{"f.txt"}, zipNames(t, bodies[1]))
	assert.Equal(t, len(bodies[0]), len(bodies[1]))
}

func TestArtifactsUploadPathsStopsItsWriter(t *testing.T) {
	root := t.TempDir()
	f, err := os.Create(filepath.Join(root, "big.bin"))
	require.NoError(t, err)
	_, err = io.Copy(f, newArtPRNG(21, 16<<20))
	require.NoError(t, err)
	require.NoError(t, f.Close())

	t.Run("refused early", func(t *testing.T) {
		leakCheck(t)
		c := testClient(t, earlyServer(t, http.StatusRequestEntityTooLarge, `{"message":"413 Request Entity Too Large"}`, 0))
		_, _, err := c.Artifacts.UploadPaths(context.Background(), 42, root, []string{"big.bin"}, nil)
		assert.ErrorIs(t, err, ErrTooLarge)
	})
	t.Run("refused part way", func(t *testing.T) {
		leakCheck(t)
		c := testClient(t, earlyServer(t, http.StatusForbidden, `{"message":"403 Forbidden"}`, 1<<20))
		_, _, err := c.Artifacts.UploadPaths(context.Background(), 42, root, []string{"big.bin"}, nil)
		assert.ErrorIs(t, err, ErrForbidden)
	})
	t.Run("canceled part way", func(t *testing.T) {
		leakCheck(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		release := make(chan struct{})
		srv := testServer(t, func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.CopyN(io.Discard, r.Body, 1<<20)
			cancel()
			select {
			case <-release:
			case <-time.After(10 * time.Second):
			}
		})
		defer close(release)
		c := testClient(t, srv.URL)
		_, _, err := c.Artifacts.UploadPaths(ctx, 42, root, []string{"big.bin"}, nil)
		assert.ErrorIs(t, err, context.Canceled)
	})
	t.Run("unreadable file", func(t *testing.T) {
		leakCheck(t)
		entries, err := collectFiles(root, []string{"big.bin"})
		require.NoError(t, err)
		entries[0].abs = filepath.Join(root, "vanished")
		z := startZip(entries)
		_, err = io.Copy(io.Discard, z)
		assert.ErrorIs(t, err, fs.ErrNotExist)
		require.NoError(t, z.Close())
	})
	t.Run("reader gone", func(t *testing.T) {
		leakCheck(t)
		entries, err := collectFiles(root, []string{"big.bin"})
		require.NoError(t, err)
		z := startZip(entries)
		_, err = io.CopyN(io.Discard, z, 1000)
		require.NoError(t, err)
		require.NoError(t, z.Close())
	})
}

// zipEntrySpec is one entry of a hand-made archive.
type zipEntrySpec struct {
	name    string
	mode    fs.FileMode
	content []byte
	// claim, when set, is the uncompressed size written in the headers instead of the true one.
	claim uint64
}

// makeZip builds an archive from specs, including ones archive/zip's own writer would not make.
func makeZip(t testing.TB, specs []zipEntrySpec) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, s := range specs {
		hdr := &zip.FileHeader{Name: s.name, Method: zip.Deflate}
		hdr.SetMode(s.mode)
		if s.claim == 0 {
			w, err := zw.CreateHeader(hdr)
			require.NoError(t, err)
			_, err = w.Write(s.content)
			require.NoError(t, err)
			continue
		}
		// A raw entry whose headers lie about its size.
		var comp bytes.Buffer
		cw, err := flate.NewWriter(&comp, flate.BestCompression)
		require.NoError(t, err)
		_, err = cw.Write(s.content)
		require.NoError(t, err)
		require.NoError(t, cw.Close())
		hdr.CompressedSize64 = uint64(comp.Len())
		hdr.UncompressedSize64 = s.claim
		hdr.CRC32 = 0
		w, err := zw.CreateRaw(hdr)
		require.NoError(t, err)
		_, err = w.Write(comp.Bytes())
		require.NoError(t, err)
	}
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

func extractBytes(t *testing.T, b []byte, dir string, maxSize int64, maxFiles int) error {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	require.NoError(t, err)
	return extract(zr, dir, maxSize, maxFiles)
}

func TestArtifactsExtractRefusesUnsafeArchives(t *testing.T) {
	file := func(name string) zipEntrySpec {
		return zipEntrySpec{name: name, mode: 0o644, content: []byte("x")}
	}
	link := func(name, target string) zipEntrySpec {
		return zipEntrySpec{name: name, mode: fs.ModeSymlink | 0o777, content: []byte(target)}
	}
	zeros := make([]byte, 8<<20)
	tests := []struct {
		name     string
		specs    []zipEntrySpec
		maxSize  int64
		maxFiles int
		message  string
		tooLarge bool
		partial  bool // refused while writing: earlier entries may exist
	}{
		{name: "zip slip", specs: []zipEntrySpec{file("ok.txt"), file("../evil.txt")}, message: `paths with ".." are refused`},
		{name: "zip slip inside a path", specs: []zipEntrySpec{file("a/../../evil.txt")}, message: `paths with ".." are refused`},
		{name: "absolute path", specs: []zipEntrySpec{file("/tmp/evil.txt")}, message: "absolute paths are refused"},
		{name: "backslash", specs: []zipEntrySpec{file(`..\evil.txt`)}, message: "may not hold NUL or '\\'"},
		{name: "absolute symlink", specs: []zipEntrySpec{link("l", "/etc")}, message: "points to the absolute path"},
		{name: "symlink up and out", specs: []zipEntrySpec{link("l", "../outside")}, message: "outside the directory"},
		{name: "nested symlink up and out", specs: []zipEntrySpec{link("d/l", "../../outside")}, message: "outside the directory"},
		{name: "symlink with .. after a name", specs: []zipEntrySpec{link("self", "."), link("l", "self/..")}, message: `has ".." after a name`},
		{name: "write through a symlink", specs: []zipEntrySpec{{name: "sub/", mode: fs.ModeDir | 0o755}, link("l", "sub"), file("l/x.txt")}, message: `would be written through "l"`},
		{name: "file under a file", specs: []zipEntrySpec{file("f"), file("f/x")}, message: `would be written through "f"`},
		{name: "duplicate", specs: []zipEntrySpec{file("a"), file("a")}, message: "appears twice"},
		{name: "unsupported type", specs: []zipEntrySpec{{name: "fifo", mode: fs.ModeNamedPipe | 0o644}}, message: "unsupported file type"},
		{name: "too many files", specs: []zipEntrySpec{file("1"), file("2"), file("3")}, maxFiles: 2, message: "3 entries, over the limit of 2", tooLarge: true},
		{name: "bomb", specs: []zipEntrySpec{{name: "zeros", mode: 0o644, content: zeros}}, maxSize: 1 << 20, message: "unpacks to 8388608 bytes, over the limit", tooLarge: true},
		{name: "bomb that lies about its size", specs: []zipEntrySpec{file("first"), {name: "zeros", mode: 0o644, content: zeros, claim: 10}}, maxSize: 1 << 20, message: "zeros", partial: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "dir")
			maxSize, maxFiles := tt.maxSize, tt.maxFiles
			if maxSize == 0 {
				maxSize = DefaultExtractMaxSize
			}
			if maxFiles == 0 {
				maxFiles = DefaultExtractMaxFiles
			}
			err := extractBytes(t, makeZip(t, tt.specs), dir, maxSize, maxFiles)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.message)
			assert.Equal(t, tt.tooLarge, errors.Is(err, ErrTooLarge), "errors.Is ErrTooLarge")
			// Nothing beside dir, and nothing in it unless the refusal came while writing.
			siblings, err := os.ReadDir(parent)
			require.NoError(t, err)
			for _, s := range siblings {
				assert.Equal(t, "dir", s.Name())
			}
			var written int64
			_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err == nil && d.Type().IsRegular() {
					if info, err := d.Info(); err == nil {
						written += info.Size()
					}
				}
				return nil
			})
			assert.LessOrEqual(t, written, maxSize)
			if !tt.partial {
				entries, _ := os.ReadDir(dir)
				assert.Empty(t, entries)
			} else {
				assert.NoFileExists(t, filepath.Join(dir, "zeros"), "a refused file is removed")
			}
		})
	}
}

func TestArtifactsExtractCountsBytesWritten(t *testing.T) {
	// Two files whose claimed sizes fit the limit together only if the count were per file.
	dir := t.TempDir()
	b := makeZip(t, []zipEntrySpec{
		{name: "a", mode: 0o644, content: bytes.Repeat([]byte("a"), 600)},
		{name: "b", mode: 0o644, content: bytes.Repeat([]byte("b"), 600)},
	})
	err := extractBytes(t, b, dir, 1000, 10)
	assert.ErrorIs(t, err, ErrTooLarge)
	err = extractBytes(t, b, dir, 1200, 10)
	assert.NoError(t, err)
}

func TestArtifactsExtractReplacesWithoutFollowing(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	target := filepath.Join(outside, "target")
	require.NoError(t, os.WriteFile(target, []byte("outside"), 0o644))
	require.NoError(t, os.Symlink(target, filepath.Join(dir, "f")))
	require.NoError(t, os.Symlink(outside, filepath.Join(dir, "pre")))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "old"), []byte("old"), 0o644))

	err := extractBytes(t, makeZip(t, []zipEntrySpec{
		{name: "f", mode: 0o600, content: []byte("new f")},
		{name: "old", mode: 0o640, content: []byte("new old")},
	}), dir, 1<<20, 10)
	require.NoError(t, err)
	got, err := os.ReadFile(target)
	require.NoError(t, err)
	assert.Equal(t, "outside", string(got), "a symlink already in dir was written through")
	assert.Equal(t, []string{"f -rw------- new f", "old -rw-r----- new old", "pre -> " + outside}, readTree(t, dir))

	// A symlink already in dir is not a way out either.
	err = extractBytes(t, makeZip(t, []zipEntrySpec{{name: "pre/evil", mode: 0o644, content: []byte("x")}}), dir, 1<<20, 10)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "symbolic link: refusing to write through it")
	assert.NoFileExists(t, filepath.Join(outside, "evil"))
}

func TestArtifactsExtractDownloadFailures(t *testing.T) {
	tmpDir := t.TempDir()
	t.Run("not a zip", func(t *testing.T) {
		srv := testServer(t, (&fileServer{data: []byte("this is not a zip archive")}).handler(t))
		c := testClient(t, srv.URL)
		_, _, err := c.Artifacts.Extract(context.Background(), 42, t.TempDir(), &ExtractOptions{TempDir: tmpDir})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "not a zip archive")
	})
	t.Run("bomb", func(t *testing.T) {
		b := makeZip(t, []zipEntrySpec{{name: "zeros", mode: 0o644, content: make([]byte, 4<<20)}})
		srv := testServer(t, (&fileServer{data: b}).handler(t))
		c := testClient(t, srv.URL)
		dst := t.TempDir()
		_, _, err := c.Artifacts.Extract(context.Background(), 42, dst, &ExtractOptions{TempDir: tmpDir, MaxSize: 1 << 20})
		assert.ErrorIs(t, err, ErrTooLarge)
		entries, _ := os.ReadDir(dst)
		assert.Empty(t, entries)
	})
	t.Run("archive larger than its limits allow", func(t *testing.T) {
		// 64 MiB of anything cannot be an archive of at most 1 KiB in one entry: refused long before it is on disk.
		var served atomic.Int64
		srv := testServer(t, func(w http.ResponseWriter, r *http.Request) {
			chunk := make([]byte, 64<<10)
			for range 1024 {
				n, err := w.Write(chunk)
				served.Add(int64(n))
				if err != nil {
					return
				}
			}
		})
		c := testClient(t, srv.URL)
		dst := t.TempDir()
		_, _, err := c.Artifacts.Extract(context.Background(), 42, dst, &ExtractOptions{TempDir: tmpDir, MaxSize: 1 << 10, MaxFiles: 1})
		assert.ErrorIs(t, err, ErrTooLarge)
		// What the server wrote includes what loopback buffers held when the client stopped reading.
		assert.Less(t, served.Load(), int64(32<<20), "the download stopped near the bound")
		entries, _ := os.ReadDir(dst)
		assert.Empty(t, entries)
	})
	t.Run("not found", func(t *testing.T) {
		srv := testServer(t, func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, `{"message":"404 Not Found"}`, http.StatusNotFound)
		})
		c := testClient(t, srv.URL)
		_, _, err := c.Artifacts.Extract(context.Background(), 42, t.TempDir(), &ExtractOptions{TempDir: tmpDir})
		assert.ErrorIs(t, err, ErrNotFound)
	})
	left, err := os.ReadDir(tmpDir)
	require.NoError(t, err)
	assert.Empty(t, left, "temporary archives left behind")
}

// A collected file swapped for a link before it is archived is not followed: the archive fails instead of
// carrying whatever the link leads to.
func TestArtZipFileRefusesASwappedFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "report.txt")
	require.NoError(t, os.WriteFile(path, []byte("the report"), 0o644))
	entries, err := collectFiles(dir, []string{"report.txt"})
	require.NoError(t, err)
	require.Len(t, entries, 1)
	hdr := &zip.FileHeader{Name: entries[0].name}

	require.NoError(t, zipFile(zip.NewWriter(io.Discard), hdr, entries[0]), "the file as collected")

	outside := filepath.Join(t.TempDir(), "secret.txt")
	require.NoError(t, os.WriteFile(outside, []byte("not for the archive"), 0o600))
	require.NoError(t, os.Remove(path))
	require.NoError(t, os.Symlink(outside, path))
	err = zipFile(zip.NewWriter(io.Discard), hdr, entries[0])
	require.Error(t, err)
	assert.Contains(t, err.Error(), "report.txt changed while it was being archived")
}
