package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// contender is one entry of a scenario: an external command (curl) or a Go function the harness runs in a child
// process of its own.
type contender struct {
	Name string
	// Ref marks the scenario's reference, which the ratios are taken against.
	Ref bool
	// SDK marks a contender judged against the targets.
	SDK bool
	// Ceiling marks the physical ceiling of a transfer, which the other contenders' CPU and time are set against.
	Ceiling bool
	// Secrets, Writers and DefaultTransport parameterise the scale scenarios' contenders (scale.go).
	Secrets          int
	Writers          int
	DefaultTransport bool
	// TLS makes a concurrent contender talk to the server behind TLS that speaks this protocol (tls.go).
	TLS string
	// Builds makes a trace contender write the trace as that many builds' traces, one after another.
	Builds int
	// judge, when set, replaces the scenario's judge for this contender.
	judge func(c, ref summary) (bool, string)
	// Argv builds an external command line; nil for a Go contender.
	Argv func(p childParams) []string
	// Child names the Go function in childFuncs.
	Child string
}

// The contenders of each process scenario, in the order they alternate; the SDK's are in sdk_contenders.go.
var (
	uploadContenders = []contender{
		{Name: "curl -F", Ref: true, Argv: curlUploadArgv},
		{Name: "net/http by hand", Child: "upload-nethttp"},
		{Name: "SDK UploadFile", SDK: true, Child: "upload-sdk-file"},
		{Name: "SDK Upload (stream)", SDK: true, Child: "upload-sdk-stream"},
		{Name: "SDK v4 UploadFile", SDK: true, Child: "upload-sdk-file-v4"},
		{Name: "ceiling: sendfile to a discarding socket", Ceiling: true, Child: "upload-ceiling"},
	}
	downloadContenders = []contender{
		{Name: "curl -o", Ref: true, Argv: curlDownloadArgv},
		{Name: "net/http by hand", Child: "download-nethttp"},
		{Name: "SDK DownloadFile", SDK: true, Child: "download-sdk-file"},
		{Name: "SDK v4 DownloadFile", SDK: true, Child: "download-sdk-file-v4"},
		{Name: "ceiling: sendfile, spliced to the file", Ceiling: true, Child: "download-ceiling"},
	}
	traceContenders = []contender{
		{Name: "net/http 1 MiB PATCH loop", Ref: true, Child: "trace-ceiling"},
		{Name: "SDK TraceWriter", SDK: true, Child: "trace-sdk-writer"},
		{Name: "SDK v4 TraceWriter", SDK: true, Child: "trace-sdk-writer-v4"},
		// A runner's usual work: many builds, each with a trace the spool keeps in memory (gitlab-runner cuts a
		// build's log at 4 MiB by default), a writer each.
		{Name: "SDK TraceWriter, 4 MiB builds", SDK: true, Child: "trace-sdk-builds", Builds: -1, judge: judgeTraceBuilds},
	}
)

// childParams is what a contender is told about one run.
type childParams struct {
	URL         string // the coordinator's address, without the API path
	BuildToken  string
	RunnerToken string
	Path        string // the file to upload, or where to download to
	Size        int64  // bytes to upload, download or write to the trace
	ID          int64  // the build's id, fresh for every run
	Runs        int    // overhead rounds
	BenchTime   string // overhead: testing's -benchtime
	RawAddr     string // the physical ceiling's server
	Secrets     int    // secrets to mask besides the tokens
	Writers     int    // trace writers at once
	Builds      int    // traces written one after another
	// DefaultTransport makes the SDK contender use the caller's client on http.DefaultTransport.
	DefaultTransport bool
	// ExpectStatus is the error status the call must end in (413 in the toolarge scenario).
	ExpectStatus int
	// V4 makes the SDK contender speak the runner API v4; set in the child by onV4, never on a command line.
	V4 bool
}

// childOutput is the JSON line a Go contender prints on success.
type childOutput struct {
	Bytes      int64         `json:"bytes"`
	TransferNS int64         `json:"transfer_ns"`
	Mallocs    int64         `json:"mallocs"`
	Writes     int64         `json:"writes"`
	Note       string        `json:"note,omitempty"`
	Overhead   []overheadRun `json:"overhead,omitempty"`
}

type childFunc func(ctx context.Context, p childParams) (childOutput, error)

// childFuncs are the Go contenders by name.
var childFuncs = map[string]childFunc{
	"upload-nethttp":    childUploadNetHTTP,
	"download-nethttp":  childDownloadNetHTTP,
	"trace-ceiling":     childTraceCeiling,
	"overhead":          childOverhead,
	"upload-sdk-file":   childSDKUploadFile,
	"upload-sdk-stream": childSDKUploadStream,
	"download-sdk-file": childSDKDownloadFile,
	"trace-sdk-writer":  childSDKTraceWriter,
	"trace-sdk-builds":  childSDKTraceBuilds,
	// The same SDK contenders on the runner API v4, against the server's v4 endpoints.
	"upload-sdk-file-v4":   onV4(childSDKUploadFile),
	"download-sdk-file-v4": onV4(childSDKDownloadFile),
	"trace-sdk-writer-v4":  onV4(childSDKTraceWriter),
	"upload-ceiling":       childUploadCeiling,
	"download-ceiling":     childDownloadCeiling,
	"trace-sdk-mask":       childSDKTraceMask,
	"trace-sdk-many":       childSDKTraceMany,
}

// argv is the command line that runs the Go contender name with p in a child process.
func (p childParams) argv(exe, name string) []string {
	argv := []string{exe, childCmd, "-fn", name, "-url", p.URL, "-build-token", p.BuildToken,
		"-runner-token", p.RunnerToken, "-size", strconv.FormatInt(p.Size, 10), "-id", strconv.FormatInt(p.ID, 10)}
	if p.Path != "" {
		argv = append(argv, "-path", p.Path)
	}
	if name == "overhead" {
		argv = append(argv, "-runs", strconv.Itoa(p.Runs), "-benchtime", p.BenchTime)
	}
	if p.RawAddr != "" {
		argv = append(argv, "-raw", p.RawAddr)
	}
	if p.Secrets > 0 {
		argv = append(argv, "-secrets", strconv.Itoa(p.Secrets))
	}
	if p.Writers > 0 {
		argv = append(argv, "-writers", strconv.Itoa(p.Writers))
	}
	if p.Builds > 0 {
		argv = append(argv, "-builds", strconv.Itoa(p.Builds))
	}
	if p.DefaultTransport {
		argv = append(argv, "-default-transport")
	}
	if p.ExpectStatus > 0 {
		argv = append(argv, "-expect-status", strconv.Itoa(p.ExpectStatus))
	}
	return argv
}

// childMain runs one Go contender and prints its childOutput; any failure exits non-zero with the reason on stderr.
func childMain(args []string) int {
	fs := flag.NewFlagSet(childCmd, flag.ContinueOnError)
	var p childParams
	name := fs.String("fn", "", "contender")
	fs.StringVar(&p.URL, "url", "", "")
	fs.StringVar(&p.BuildToken, "build-token", "", "")
	fs.StringVar(&p.RunnerToken, "runner-token", "", "")
	fs.StringVar(&p.Path, "path", "", "")
	fs.Int64Var(&p.Size, "size", 0, "")
	fs.Int64Var(&p.ID, "id", 0, "")
	fs.IntVar(&p.Runs, "runs", 1, "")
	fs.StringVar(&p.BenchTime, "benchtime", "1s", "")
	fs.StringVar(&p.RawAddr, "raw", "", "")
	fs.IntVar(&p.Secrets, "secrets", 0, "")
	fs.IntVar(&p.Writers, "writers", 0, "")
	fs.IntVar(&p.Builds, "builds", 0, "")
	fs.BoolVar(&p.DefaultTransport, "default-transport", false, "")
	fs.IntVar(&p.ExpectStatus, "expect-status", 0, "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fn := childFuncs[*name]
	if fn == nil {
		fmt.Fprintf(os.Stderr, "unknown contender %q\n", *name)
		return 2
	}
	out, err := fn(context.Background(), p)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// curlUploadArgv is the upload reference. -q ignores any ~/.curlrc; -f turns an HTTP error into a failing exit;
// the answer (a small build JSON) goes to /dev/null.
func curlUploadArgv(p childParams) []string {
	return []string{"curl", "-q", "-sS", "-f", "-o", os.DevNull, "-F", "file=@" + p.Path,
		"-H", "BUILD-TOKEN: " + p.BuildToken, artifactsURL(p)}
}

// curlDownloadArgv is the download reference.
func curlDownloadArgv(p childParams) []string {
	return []string{"curl", "-q", "-sS", "-f", "-o", p.Path, "-H", "BUILD-TOKEN: " + p.BuildToken, artifactsURL(p)}
}

func artifactsURL(p childParams) string {
	return fmt.Sprintf("%s/ci/api/v1/builds/%d/artifacts", p.URL, p.ID)
}

func traceURL(p childParams) string {
	return fmt.Sprintf("%s/ci/api/v1/builds/%d/trace.txt", p.URL, p.ID)
}

// benchTransport is the transport every Go contender starts from: net/http's defaults, no proxy.
func benchTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	return t
}

// childUploadNetHTTP uploads the file the way a careful hand-written client would: a multipart body assembled
// from a prefix, the file and a suffix, with an exact Content-Length, and no goroutine or pipe.
func childUploadNetHTTP(ctx context.Context, p childParams) (childOutput, error) {
	f, err := os.Open(p.Path)
	if err != nil {
		return childOutput{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return childOutput{}, err
	}
	const boundary = "runnerapi-bench-2f1d0c5e8a7b4c39"
	head := "--" + boundary + "\r\n" +
		`Content-Disposition: form-data; name="file"; filename="` + filepath.Base(p.Path) + "\"\r\n" +
		"Content-Type: application/octet-stream\r\n\r\n"
	tail := "\r\n--" + boundary + "--\r\n"
	body := io.MultiReader(strings.NewReader(head), f, strings.NewReader(tail))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, artifactsURL(p), body)
	if err != nil {
		return childOutput{}, err
	}
	req.ContentLength = int64(len(head)) + fi.Size() + int64(len(tail))
	req.Header.Set("Content-Type", "multipart/form-data; boundary="+boundary)
	req.Header.Set("BUILD-TOKEN", p.BuildToken)
	start := time.Now()
	resp, err := (&http.Client{Transport: benchTransport()}).Do(req)
	if err != nil {
		return childOutput{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return childOutput{}, fmt.Errorf("upload: status %s", resp.Status)
	}
	var build struct {
		ArtifactsFile struct {
			Size int64 `json:"size"`
		} `json:"artifacts_file"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&build); err != nil {
		return childOutput{}, fmt.Errorf("upload: decoding the answer: %w", err)
	}
	if build.ArtifactsFile.Size != fi.Size() {
		return childOutput{}, fmt.Errorf("upload: coordinator has %d bytes, sent %d", build.ArtifactsFile.Size, fi.Size())
	}
	return childOutput{Bytes: fi.Size(), TransferNS: time.Since(start).Nanoseconds()}, nil
}

// childDownloadNetHTTP downloads into a temporary file beside the destination and renames it into place once its
// length matches Content-Length.
func childDownloadNetHTTP(ctx context.Context, p childParams) (childOutput, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, artifactsURL(p), nil)
	if err != nil {
		return childOutput{}, err
	}
	req.Header.Set("BUILD-TOKEN", p.BuildToken)
	start := time.Now()
	resp, err := (&http.Client{Transport: benchTransport()}).Do(req)
	if err != nil {
		return childOutput{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return childOutput{}, fmt.Errorf("download: status %s", resp.Status)
	}
	tmp, err := os.CreateTemp(filepath.Dir(p.Path), ".download-*")
	if err != nil {
		return childOutput{}, err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	n, err := io.CopyBuffer(struct{ io.Writer }{tmp}, resp.Body, make([]byte, 256<<10))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return childOutput{}, fmt.Errorf("download: %w", err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return childOutput{}, fmt.Errorf("download: got %d bytes, Content-Length says %d", n, resp.ContentLength)
	}
	if err := os.Rename(tmp.Name(), p.Path); err != nil {
		return childOutput{}, err
	}
	return childOutput{Bytes: n, TransferNS: time.Since(start).Nanoseconds()}, nil
}

// traceLineLen is the length of every line of the benchmark's trace, newline included.
const traceLineLen = 100

// traceLines produces the benchmark's trace: numbered 100-byte lines, without allocating.
type traceLines struct {
	line [traceLineLen]byte
	n    int64
}

func newTraceLines() *traceLines {
	t := &traceLines{}
	const text = " Step 3/7 : RUN go test -race ./... ok github.com/runnerapi/runnerapi 1.234s coverage: 91.2% of statements"
	copy(t.line[10:], text)
	t.line[traceLineLen-1] = '\n'
	return t
}

// next returns the next line; it is valid until the following call.
func (t *traceLines) next() []byte {
	v := t.n
	for i := 9; i >= 0; i-- {
		t.line[i] = '0' + byte(v%10)
		v /= 10
	}
	t.n++
	return t.line[:]
}

// forEachTraceChunk calls fn with the first size bytes of the trace, one line at a time (the last may be short).
func forEachTraceChunk(size int64, fn func(p []byte) error) (writes int64, err error) {
	t := newTraceLines()
	for size > 0 {
		p := t.next()
		if int64(len(p)) > size {
			p = p[:size]
		}
		if err := fn(p); err != nil {
			return writes, err
		}
		writes++
		size -= int64(len(p))
	}
	return writes, nil
}

// traceCRC is the CRC-32C of the first size bytes of the trace: what the server must end up with.
func traceCRC(size int64) uint32 {
	cw := &crcWriter{}
	_, _ = forEachTraceChunk(size, func(p []byte) error { _, err := cw.Write(p); return err })
	return cw.crc
}

// tracePartSize is the ceiling's part size, and the TraceWriter's default chunk.
const tracePartSize = 1 << 20

// childTraceCeiling is the trace reference: the lines copied into a 1 MiB buffer, each full buffer sent as one
// PATCH with its Content-Range, the answer's Range checked; nothing else.
func childTraceCeiling(ctx context.Context, p childParams) (childOutput, error) {
	hc := &http.Client{Transport: benchTransport()}
	u := traceURL(p)
	part := make([]byte, 0, tracePartSize)
	var offset int64
	send := func() error {
		end := offset + int64(len(part))
		req, err := http.NewRequestWithContext(ctx, http.MethodPatch, u, bytes.NewReader(part))
		if err != nil {
			return err
		}
		req.Header.Set("BUILD-TOKEN", p.BuildToken)
		req.Header.Set("Content-Type", "text/plain")
		req.Header.Set("Content-Range", strconv.FormatInt(offset, 10)+"-"+strconv.FormatInt(end, 10))
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("trace: part %d-%d: status %s", offset, end, resp.Status)
		}
		if got := resp.Header.Get("Range"); got != "0-"+strconv.FormatInt(end, 10) {
			return fmt.Errorf("trace: part %d-%d: Range %q", offset, end, got)
		}
		offset = end
		part = part[:0]
		return nil
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	writes, err := forEachTraceChunk(p.Size, func(line []byte) error {
		for len(line) > 0 {
			k := copy(part[len(part):cap(part)], line)
			part = part[:len(part)+k]
			line = line[k:]
			if len(part) == cap(part) {
				if err := send(); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err == nil && len(part) > 0 {
		err = send()
	}
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	if err != nil {
		return childOutput{}, err
	}
	if offset != p.Size {
		return childOutput{}, errors.New("trace: sent " + strconv.FormatInt(offset, 10) + " bytes")
	}
	return childOutput{Bytes: offset, TransferNS: elapsed.Nanoseconds(), Writes: writes,
		Mallocs: int64(after.Mallocs - before.Mallocs)}, nil
}
