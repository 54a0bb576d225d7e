package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/runnerapi/runnerapi/internal/benchanswers"
)

// castagnoli is CRC-32C, computed in hardware on amd64 and arm64: cheap enough to check every byte the server gets.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// serverDescription says what the server does with the bytes it is sent, for the report.
const serverDescription = "in-process net/http on 127.0.0.1; upload: streams the multipart `file` part through " +
	"CRC-32C (512 KiB reads, no copy kept) and compares size and CRC with the source, and answers 413 on the " +
	"headers for builds from 2^40 on; download: http.ServeContent from the generated file on disk (sendfile); " +
	"trace: checks Content-Range against its length counter, CRC-32Cs the body, discards it; register/update: " +
	"fixed answers; the physical ceiling: a raw TCP socket that discards (upload) or sendfiles the file (download); " +
	"the concurrent scenario's TLS rows: the same handler behind TLS (HTTP/1.1 only, or HTTP/2 offered), with a " +
	"self-signed certificate for 127.0.0.1"

// tooLargeFirstID is the first build id whose artifact upload the server refuses with a 413 (toolarge.go).
const tooLargeFirstID = 1 << 40

// uploadBufSize is the server's read size for upload bodies: large reads keep its syscalls few.
const uploadBufSize = 512 << 10

// benchServer implements the parts of the CI Builds API v1 and the runner API v4 the contenders call, and counts what it sees.
type benchServer struct {
	buildToken  string
	runnerToken string
	// artifactPath is the file served by GET .../artifacts.
	artifactPath string
	registerJSON []byte
	// jobJSON is the v4 job POST /api/v4/jobs/request answers with.
	jobJSON []byte

	requests atomic.Int64 // every request since the last reset
	conns    atomic.Int64 // connections opened since the last reset
	// inFlight is the requests being handled now, peakInFlight the most at once since the last reset: as many
	// connections as that are needed, the least any client can open.
	inFlight, peakInFlight atomic.Int64
	// rawAddr is the physical ceiling's listener (ceiling.go); rawReceived what its last upload brought.
	rawAddr     string
	rawReceived atomic.Int64

	mu         sync.Mutex
	uploads    []uploadRecord
	refused    []int64 // builds whose upload was answered 413 without reading the body
	traces     map[int64]*traceState
	signatures map[string]int // register/update request shapes, to prove two clients sent the same request
	problems   []string       // requests the server refused, for the report
}

// uploadRecord is what the server received in one upload.
type uploadRecord struct {
	ID       int64
	Filename string
	Size     int64
	CRC      uint32
}

// traceState is one build's trace as the server holds it: its length and checksum, never its bytes.
type traceState struct {
	mu       sync.Mutex
	length   int64
	crc      uint32
	requests int64
	rejected int64 // 416 answers
}

func newBenchServer(buildToken, runnerToken, artifactPath string) *benchServer {
	s := &benchServer{
		buildToken:   buildToken,
		runnerToken:  runnerToken,
		artifactPath: artifactPath,
		traces:       make(map[int64]*traceState),
		signatures:   make(map[string]int),
	}
	s.registerJSON = mustJSON(benchanswers.Build(1, buildToken))
	s.jobJSON = mustJSON(benchanswers.Job(1, buildToken))
	return s
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func (s *benchServer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /ci/api/v1/builds/register", s.register)
	mux.HandleFunc("PUT /ci/api/v1/builds/{id}", s.update)
	mux.HandleFunc("POST /ci/api/v1/builds/{id}/artifacts", s.upload)
	mux.HandleFunc("GET /ci/api/v1/builds/{id}/artifacts", s.download)
	mux.HandleFunc("PATCH /ci/api/v1/builds/{id}/trace.txt", s.trace)
	// The runner API v4 (server_v4.go): the same handlers where the wire is the same, with the job token in
	// JOB-TOKEN and an inclusive Content-Range END.
	mux.HandleFunc("POST /api/v4/jobs/request", s.requestJob)
	mux.HandleFunc("PUT /api/v4/jobs/{id}", s.updateJob)
	mux.HandleFunc("POST /api/v4/jobs/{id}/artifacts", s.upload)
	mux.HandleFunc("GET /api/v4/jobs/{id}/artifacts", s.download)
	mux.HandleFunc("PATCH /api/v4/jobs/{id}/trace", s.trace)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		n := s.inFlight.Add(1)
		for peak := s.peakInFlight.Load(); n > peak && !s.peakInFlight.CompareAndSwap(peak, n); peak = s.peakInFlight.Load() {
		}
		defer s.inFlight.Add(-1)
		mux.ServeHTTP(w, r)
	})
}

// start serves on a loopback port until the returned function is called.
func (s *benchServer) start() (baseURL string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: s.handler(), ReadHeaderTimeout: 10 * time.Second, ConnState: s.countConn}
	go func() { _ = srv.Serve(ln) }()
	stopRaw, err := s.startRaw()
	if err != nil {
		_ = srv.Close()
		return "", nil, err
	}
	return "http://" + ln.Addr().String(), func() { _ = srv.Close(); stopRaw() }, nil
}

// countConn counts the connections opened, as http.Server.ConnState.
func (s *benchServer) countConn(_ net.Conn, st http.ConnState) {
	if st == http.StateNew {
		s.conns.Add(1)
	}
}

// resetRun clears what the server counts for one run.
func (s *benchServer) resetRun() {
	s.requests.Store(0)
	s.conns.Store(0)
	s.peakInFlight.Store(s.inFlight.Load())
	s.rawReceived.Store(-1)
	s.mu.Lock()
	s.uploads = nil
	s.refused = nil
	s.signatures = make(map[string]int)
	s.problems = nil
	s.mu.Unlock()
}

func (s *benchServer) takeUploads() []uploadRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uploadRecord(nil), s.uploads...)
}

func (s *benchServer) takeRefused() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int64(nil), s.refused...)
}

func (s *benchServer) takeProblems() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.problems...)
}

func (s *benchServer) takeSignatures() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.signatures))
	for k, v := range s.signatures {
		out[k] = v
	}
	return out
}

// traceOf returns a build's trace length, checksum, accepted requests and 416 answers.
func (s *benchServer) traceOf(id int64) (length int64, crc uint32, requests, rejected int64) {
	s.mu.Lock()
	t := s.traces[id]
	s.mu.Unlock()
	if t == nil {
		return 0, 0, 0, 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.length, t.crc, t.requests, t.rejected
}

func (s *benchServer) problem(r *http.Request, format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.problems) < 20 {
		s.problems = append(s.problems, r.Method+" "+r.URL.Path+": "+fmt.Sprintf(format, args...))
	}
}

func writeJSONStatus(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// buildID parses the {id} path segment; only positive decimal ids exist.
func buildID(r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	return id, err == nil && id > 0
}

// checkBuildToken answers 403 unless the request carries the build token in BUILD-TOKEN (v1) or JOB-TOKEN (v4).
func (s *benchServer) checkBuildToken(w http.ResponseWriter, r *http.Request) bool {
	header := "BUILD-TOKEN"
	if isV4(r) {
		header = "JOB-TOKEN"
	}
	if r.Header.Get(header) != s.buildToken {
		s.problem(r, "missing or wrong %s", header)
		writeJSONStatus(w, http.StatusForbidden, `{"message":"403 Forbidden"}`)
		return false
	}
	return true
}

// readForm reads a small url-encoded body, records the request's shape, and checks the runner token.
func (s *benchServer) readForm(w http.ResponseWriter, r *http.Request) (url.Values, bool) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		writeJSONStatus(w, http.StatusBadRequest, `{"message":"400 Bad request"}`)
		return nil, false
	}
	s.recordSignature(r, body)
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/x-www-form-urlencoded" {
		s.problem(r, "Content-Type %q", r.Header.Get("Content-Type"))
		writeJSONStatus(w, http.StatusBadRequest, `{"message":"400 Bad request"}`)
		return nil, false
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		s.problem(r, "bad form")
		writeJSONStatus(w, http.StatusBadRequest, `{"message":"400 Bad request"}`)
		return nil, false
	}
	if form.Get("token") != s.runnerToken {
		s.problem(r, "missing or wrong runner token")
		writeJSONStatus(w, http.StatusForbidden, `{"message":"403 Forbidden"}`)
		return nil, false
	}
	return form, true
}

// recordSignature counts the request's method, path, headers and body, with the runner and job tokens masked.
func (s *benchServer) recordSignature(r *http.Request, body []byte) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s\n", r.Method, r.URL.RequestURI())
	keys := make([]string, 0, len(r.Header))
	for k := range r.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s: %s\n", k, strings.Join(r.Header[k], ", "))
	}
	fmt.Fprintf(&b, "(content-length %d, transfer-encoding %v)\n%s", r.ContentLength, r.TransferEncoding, body)
	sig := strings.ReplaceAll(b.String(), url.QueryEscape(s.runnerToken), "[MASKED]")
	sig = strings.ReplaceAll(sig, s.buildToken, "[MASKED]") // the v4 job token, in JSON bodies and JOB-TOKEN
	s.mu.Lock()
	s.signatures[sig]++
	s.mu.Unlock()
}

func (s *benchServer) register(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.readForm(w, r); !ok {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(s.registerJSON)
}

func (s *benchServer) update(w http.ResponseWriter, r *http.Request) {
	if _, ok := buildID(r); !ok {
		writeJSONStatus(w, http.StatusNotFound, `{"message":"404 Not Found"}`)
		return
	}
	form, ok := s.readForm(w, r)
	if !ok {
		return
	}
	switch form.Get("state") {
	case "running", "success", "failed":
	default:
		s.problem(r, "state %q", form.Get("state"))
		writeJSONStatus(w, http.StatusBadRequest, `{"message":{"state":["is invalid"]}}`)
		return
	}
	writeJSONStatus(w, http.StatusOK, "true")
}

func (s *benchServer) upload(w http.ResponseWriter, r *http.Request) {
	id, ok := buildID(r)
	if !ok {
		writeJSONStatus(w, http.StatusNotFound, `{"message":"404 Not Found"}`)
		return
	}
	if !s.checkBuildToken(w, r) {
		return
	}
	if id >= tooLargeFirstID {
		// As a coordinator or its proxy refusing a body over its limit: on the headers, without reading it.
		s.mu.Lock()
		s.refused = append(s.refused, id)
		s.mu.Unlock()
		writeJSONStatus(w, http.StatusRequestEntityTooLarge, `{"message":"413 Request Entity Too Large"}`)
		return
	}
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		s.problem(r, "Content-Type %q is not multipart/form-data with a boundary", r.Header.Get("Content-Type"))
		writeJSONStatus(w, http.StatusBadRequest, `{"message":"400 Bad request"}`)
		return
	}
	cw := &crcWriter{}
	filename, n, err := scanMultipartFile(r.Body, params["boundary"], uploadBufSize, cw)
	if err != nil {
		s.problem(r, "%v", err)
		writeJSONStatus(w, http.StatusBadRequest, `{"message":"400 Bad request"}`)
		return
	}
	s.mu.Lock()
	s.uploads = append(s.uploads, uploadRecord{ID: id, Filename: filename, Size: n, CRC: cw.crc})
	s.mu.Unlock()
	b := benchanswers.Build(id, s.buildToken)
	b["artifacts_file"] = map[string]any{"filename": filename, "size": n}
	b["artifacts_expire_at"] = time.Now().Add(7 * 24 * time.Hour).UTC().Format(time.RFC3339)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(mustJSON(b))
}

func (s *benchServer) download(w http.ResponseWriter, r *http.Request) {
	if _, ok := buildID(r); !ok {
		writeJSONStatus(w, http.StatusNotFound, `{"message":"404 Not Found"}`)
		return
	}
	if !s.checkBuildToken(w, r) {
		return
	}
	f, err := os.Open(s.artifactPath)
	if err != nil {
		writeJSONStatus(w, http.StatusNotFound, `{"message":"404 Not Found"}`)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		writeJSONStatus(w, http.StatusInternalServerError, `{"message":"500 Internal Server Error"}`)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", "attachment; filename=artifacts.zip")
	// ServeContent sets Content-Length, serves Range requests with 206, and copies with sendfile.
	http.ServeContent(w, r, "", fi.ModTime(), f)
}

// parseContentRange parses "START-END" with both parts decimal int64 and START <= END.
func parseContentRange(v string) (start, end int64, err error) {
	a, b, ok := strings.Cut(v, "-")
	if !ok || a == "" || b == "" || strings.Trim(a, "0123456789") != "" || strings.Trim(b, "0123456789") != "" {
		return 0, 0, fmt.Errorf("malformed Content-Range %q", v)
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || end < start {
		return 0, 0, fmt.Errorf("malformed Content-Range %q", v)
	}
	return start, end, nil
}

// traceBufPool holds the buffers trace bodies are read through.
var traceBufPool = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

func (s *benchServer) trace(w http.ResponseWriter, r *http.Request) {
	id, ok := buildID(r)
	if !ok {
		writeJSONStatus(w, http.StatusNotFound, `{"message":"404 Not Found"}`)
		return
	}
	if !s.checkBuildToken(w, r) {
		return
	}
	cr := r.Header.Get("Content-Range")
	if cr == "" {
		s.problem(r, "no Content-Range")
		writeJSONStatus(w, http.StatusBadRequest, `{"error":"400 Missing header Content-Range"}`)
		return
	}
	start, end, err := parseContentRange(cr)
	if err != nil {
		s.problem(r, "%v", err)
		writeJSONStatus(w, http.StatusBadRequest, `{"error":"400 Bad Content-Range"}`)
		return
	}
	s.mu.Lock()
	t := s.traces[id]
	if t == nil {
		t = &traceState{}
		s.traces[id] = t
	}
	s.mu.Unlock()

	t.mu.Lock()
	defer t.mu.Unlock()
	w.Header().Set("Build-Status", "running")
	w.Header().Set("Job-Status", "running")
	if start != t.length {
		t.rejected++
		w.Header().Set("Range", "0-"+strconv.FormatInt(t.length, 10))
		writeJSONStatus(w, http.StatusRequestedRangeNotSatisfiable, `{"error":"416 Range Not Satisfiable"}`)
		return
	}
	bp := traceBufPool.Get().(*[]byte)
	defer traceBufPool.Put(bp)
	// Checksum on a copy of the running CRC: a refused part must leave the trace as it was.
	cw := &crcWriter{crc: t.crc}
	want := end - start
	if isV4(r) {
		// v4's END is the part's last byte (gitlab-runner sends START-(START+len-1)), v1's one past it; an empty
		// v4 part, which no inclusive END can span, says START-START.
		want++
	}
	// One byte more than the part's length, to see a body longer than its Content-Range.
	n, err := io.CopyBuffer(cw, io.LimitReader(r.Body, want+1), *bp)
	if err != nil {
		s.problem(r, "reading body: %v", err)
		writeJSONStatus(w, http.StatusBadRequest, `{"error":"400 Bad request"}`)
		return
	}
	if n != want && !(isV4(r) && n == 0 && start == end) {
		// A part whose END does not match its length is a client bug: refuse it rather than guess.
		s.problem(r, "Content-Range %q but a body of %d bytes", cr, n)
		w.Header().Set("Range", "0-"+strconv.FormatInt(t.length, 10))
		writeJSONStatus(w, http.StatusBadRequest, `{"error":"400 Content-Range does not match the body"}`)
		return
	}
	t.length += n
	t.crc = cw.crc
	t.requests++
	w.Header().Set("Range", "0-"+strconv.FormatInt(t.length, 10))
	w.WriteHeader(http.StatusAccepted)
}

// crcWriter extends a CRC-32C with everything written to it.
type crcWriter struct {
	crc uint32
	n   int64
}

func (c *crcWriter) Write(p []byte) (int, error) {
	c.crc = crc32.Update(c.crc, castagnoli, p)
	c.n += int64(len(p))
	return len(p), nil
}

// scanMultipartFile reads a multipart/form-data body and streams the content of the first part named "file" into
// sink, skipping any other part. It returns the part's filename and length. It reads through one buffer of bufSize
// bytes and scans each byte once, so it keeps up with loopback transfers.
func scanMultipartFile(body io.Reader, boundary string, bufSize int, sink io.Writer) (filename string, n int64, err error) {
	if len(boundary) == 0 || len(boundary) > 70 {
		return "", 0, errors.New("multipart: bad boundary")
	}
	delim := []byte("\r\n--" + boundary)
	if bufSize < 4*len(delim) {
		bufSize = 4 * len(delim)
	}
	br := bufio.NewReaderSize(body, bufSize)
	dash := delim[2:]

	// The preamble, if any, ends at the first boundary line.
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return "", 0, fmt.Errorf("multipart: no opening boundary: %w", err)
		}
		line = bytes.TrimRight(line, " \t\r\n")
		if bytes.Equal(line, dash) {
			break
		}
		if bytes.HasPrefix(line, dash) && bytes.Equal(line[len(dash):], []byte("--")) {
			return "", 0, errors.New(`multipart: no part named "file"`)
		}
	}
	found := false
	for {
		name, fname, err := readPartHeader(br)
		if err != nil {
			return "", 0, err
		}
		var w io.Writer = io.Discard
		isFile := name == "file" && !found
		if isFile {
			w = sink
		}
		m, err := scanPart(br, delim, w)
		if err != nil {
			return "", 0, err
		}
		if isFile {
			found, filename, n = true, fname, m
		}
		// After a delimiter: "--" ends the body, otherwise optional padding and CRLF start the next part.
		tail, err := br.ReadSlice('\n')
		if bytes.HasPrefix(tail, []byte("--")) || (err != nil && bytes.Equal(tail, []byte("--"))) {
			break
		}
		if err != nil {
			return "", 0, fmt.Errorf("multipart: after a boundary: %w", err)
		}
		if len(bytes.TrimRight(tail, " \t\r\n")) != 0 {
			return "", 0, errors.New("multipart: garbage after a boundary")
		}
	}
	if !found {
		return "", 0, errors.New(`multipart: no part named "file"`)
	}
	// Whatever follows the closing boundary (an epilogue) is read so the connection can be reused.
	_, _ = io.Copy(io.Discard, br)
	return filename, n, nil
}

// readPartHeader reads one part's header lines and returns the form name and filename from Content-Disposition.
func readPartHeader(br *bufio.Reader) (name, filename string, err error) {
	for i := 0; ; i++ {
		if i > 50 {
			return "", "", errors.New("multipart: too many header lines")
		}
		line, err := br.ReadSlice('\n')
		if err != nil {
			return "", "", fmt.Errorf("multipart: reading a part header: %w", err)
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			return name, filename, nil
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok || !strings.EqualFold(string(bytes.TrimSpace(k)), "Content-Disposition") {
			continue
		}
		disp, params, err := mime.ParseMediaType(string(bytes.TrimSpace(v)))
		if err != nil || disp != "form-data" {
			return "", "", fmt.Errorf("multipart: bad Content-Disposition %q", v)
		}
		name, filename = params["name"], params["filename"]
	}
}

// scanPart copies a part's content, up to the delimiter, into w and consumes the delimiter.
func scanPart(br *bufio.Reader, delim []byte, w io.Writer) (int64, error) {
	var n int64
	keep := len(delim) - 1
	for {
		data, perr := br.Peek(br.Size())
		if i := bytes.Index(data, delim); i >= 0 {
			if _, err := w.Write(data[:i]); err != nil {
				return n, err
			}
			n += int64(i)
			_, _ = br.Discard(i + len(delim))
			return n, nil
		}
		if perr != nil {
			if perr == io.EOF {
				return n, errors.New("multipart: body ended inside a part")
			}
			return n, fmt.Errorf("multipart: %w", perr)
		}
		// The last keep bytes may be the start of a delimiter split across reads: scan them again.
		m := len(data) - keep
		if _, err := w.Write(data[:m]); err != nil {
			return n, err
		}
		n += int64(m)
		_, _ = br.Discard(m)
	}
}
