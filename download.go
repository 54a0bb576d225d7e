package runnerapi

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ArtifactInfo describes a downloaded artifacts file.
type ArtifactInfo struct {
	// Filename is the name from the answer's Content-Disposition, reduced to a base name; empty when the answer
	// gave none that can be trusted.
	Filename string
	// Size is the file's length in bytes, or -1 when the answer did not say.
	Size int64
}

// DownloadOptions are the optional parameters of the downloads.
type DownloadOptions struct {
	// MaxSize, when positive, refuses a file larger than this many bytes with an error matching ErrTooLarge: before
	// any byte is read when the answer announces the size, as soon as the limit is passed when it does not.
	MaxSize int64
	// Sync, for DownloadFile, fsyncs the file before renaming it into place, for durability across a machine
	// crash. Off by default: the rename alone already keeps a partial file from ever appearing at the path.
	Sync bool
}

// Open starts downloading build id's artifacts file and returns it as a stream for the caller to read and close.
// A connection dropped mid-file is resumed with a byte range request, as Download does it: only when the file has
// a strong validator. A missing file is an error matching ErrNotFound.
func (s *ArtifactsService) Open(ctx context.Context, id int64, reqOpts ...RequestOption) (io.ReadCloser, *ArtifactInfo, error) {
	d, err := s.startDownload(ctx, "Open", id, newCallConfig(reqOpts), 0, nil)
	if err != nil {
		return nil, nil, err
	}
	info := d.info
	return d, &info, nil
}

// Download streams build id's artifacts file into w and describes it. A connection dropped mid-file is resumed
// with a byte range request, so w receives every byte once and in order. The request names the file by its strong
// ETag, or else by a Last-Modified date that is a strong validator (If-Range), and the rest is taken only from an
// answer that carries the same validator. A file without such a validator cannot be resumed, and a file that
// changed meanwhile, or an answer that does not show it is the same file, is an error: what w received cannot be
// taken back (DownloadFile starts over instead). resp is the last answer. A missing file is an error matching
// ErrNotFound.
func (s *ArtifactsService) Download(ctx context.Context, id int64, w io.Writer, opts *DownloadOptions, reqOpts ...RequestOption) (*ArtifactInfo, *Response, error) {
	if w == nil {
		return nil, nil, errors.New("runnerapi: Download: nil writer")
	}
	if opts == nil {
		opts = &DownloadOptions{}
	}
	d, err := s.startDownload(ctx, "Download", id, newCallConfig(reqOpts), opts.MaxSize, nil)
	if err != nil {
		return nil, d.response(), err
	}
	defer d.Close()
	if err := d.copyTo(w); err != nil {
		return nil, d.resp, err
	}
	info := d.info
	return &info, d.resp, nil
}

// DownloadFile downloads build id's artifacts file to path. It writes a temporary file beside path and renames it
// into place only once it is complete and as long as announced, so path never holds a partial file: on failure it
// is left as it was. A connection dropped mid-file is resumed with a byte range request when the file has a strong
// validator and the answer shows it is the same file (see Download); otherwise the download starts over from the
// first byte, so path never holds the start of one version and the end of another. The file gets mode 0644.
// It is not fsynced unless opts.Sync asks for it.
func (s *ArtifactsService) DownloadFile(ctx context.Context, id int64, path string, opts *DownloadOptions, reqOpts ...RequestOption) (*ArtifactInfo, *Response, error) {
	if opts == nil {
		opts = &DownloadOptions{}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.part")
	if err != nil {
		return nil, nil, fmt.Errorf("runnerapi: DownloadFile: %w", err)
	}
	keep := false
	defer func() {
		if !keep {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	d, err := s.downloadToTemp(ctx, "DownloadFile", id, tmp, opts.MaxSize, newCallConfig(reqOpts))
	if err != nil {
		return nil, d.response(), err
	}
	if err := tmp.Chmod(0o644); err != nil {
		return nil, d.resp, fmt.Errorf("runnerapi: DownloadFile: %w", err)
	}
	if opts.Sync {
		if err := tmp.Sync(); err != nil {
			return nil, d.resp, fmt.Errorf("runnerapi: DownloadFile: %w", err)
		}
	}
	if err := tmp.Close(); err != nil {
		return nil, d.resp, fmt.Errorf("runnerapi: DownloadFile: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return nil, d.resp, fmt.Errorf("runnerapi: DownloadFile: %w", err)
	}
	keep = true
	info := d.info
	return &info, d.resp, nil
}

// downloadToTemp downloads into the empty file tmp, which is rewritten from the start if the coordinator answers
// a range request with the whole file, and checks that it ends up as long as announced. It does not sync it: a
// temporary file needs no durability, and DownloadFile syncs only when asked to.
func (s *ArtifactsService) downloadToTemp(ctx context.Context, name string, id int64, tmp *os.File, limit int64, cc callConfig) (*downloader, error) {
	restart := func() error {
		if err := tmp.Truncate(0); err != nil {
			return err
		}
		_, err := tmp.Seek(0, io.SeekStart)
		return err
	}
	d, err := s.startDownload(ctx, name, id, cc, limit, restart)
	if err != nil {
		return d, err
	}
	defer d.Close()
	if err := d.copyTo(tmp); err != nil {
		return d, err
	}
	fi, err := tmp.Stat()
	if err != nil {
		return d, fmt.Errorf("runnerapi: %s: %w", name, err)
	}
	if fi.Size() != d.off || (d.size >= 0 && fi.Size() != d.size) {
		return d, fmt.Errorf("runnerapi: %s: build %d: wrote %d bytes where %d were announced", name, id, fi.Size(), d.size)
	}
	return d, nil
}

// downloader is one download: a stream over as many requests as it takes to get the whole file.
type downloader struct {
	c        *Client
	ctx      context.Context
	name     string
	id       int64
	token    string
	limit    int64
	restart  func() error // nil: a whole-file answer to a range request is skipped ahead instead
	direct   bool         // ask for a redirect to object storage (v4's direct_download)
	progress *progressReporter

	resp     *Response // the last answer
	requests int
	failures int   // consecutive failed requests or drops with no new byte in between
	reached  int64 // the furthest offset ever delivered: bytes delivered again after a restart are no progress
	url      string

	body    io.ReadCloser
	off     int64  // bytes delivered
	skip    int64  // bytes of the current body to discard before delivering
	pending error  // the current body's failure, returned with data and not yet handled
	size    int64  // -1: unknown
	etag    string // the file's strong ETag, or ""
	// lastModified is the file's Last-Modified when there is no strong ETag and the date is a strong validator:
	// at least a second before the answer's Date, so the file cannot have changed twice within it.
	lastModified string
	info         ArtifactInfo
	err          error // sticky
}

// startDownload sends the first request and checks what the answer announces.
func (s *ArtifactsService) startDownload(ctx context.Context, name string, id int64, cc callConfig, limit int64, restart func() error) (*downloader, error) {
	c := s.client
	token, err := c.buildTokenFor(cc, name)
	if err != nil {
		return nil, err
	}
	if cc.directDownload && !c.wire.jobArtifacts {
		return nil, c.notInAPI(name, "has no direct download")
	}
	d := &downloader{
		c: c, ctx: ctx, name: name, id: id, token: token, limit: limit, restart: restart, direct: cc.directDownload,
		progress: newArtProgress(cc.progress, -1),
	}
	hr, err := d.fetch()
	if err != nil {
		return d, err
	}
	if hr.StatusCode != http.StatusOK {
		_ = hr.Body.Close()
		return d, fmt.Errorf("runnerapi: GET %s: unexpected status %d for a download", d.url, hr.StatusCode)
	}
	if err := d.begin(hr); err != nil {
		_ = hr.Body.Close()
		return d, err
	}
	return d, nil
}

// response is the last answer, nil-safe.
func (d *downloader) response() *Response {
	if d == nil {
		return nil
	}
	return d.resp
}

// begin takes a whole-file answer as the start of the download.
func (d *downloader) begin(hr *http.Response) error {
	d.size = hr.ContentLength
	if d.size < 0 {
		d.size = -1
	}
	d.etag = strongETag(hr.Header.Get("ETag"))
	d.lastModified = ""
	if d.etag == "" {
		d.lastModified = strongLastModified(hr.Header)
	}
	d.info = ArtifactInfo{Filename: dispositionFilename(hr.Header.Get("Content-Disposition")), Size: d.size}
	if d.limit > 0 && d.size > d.limit {
		return d.tooLarge(d.size)
	}
	d.off, d.skip, d.pending = 0, 0, nil
	d.progress.reset(d.size)
	d.body = hr.Body
	return nil
}

func (d *downloader) tooLarge(size int64) error {
	what := "more than " + strconv.FormatInt(d.limit, 10)
	if size >= 0 {
		what = strconv.FormatInt(size, 10)
	}
	return fmt.Errorf("runnerapi: %s: build %d: the artifacts file has %s bytes, over the limit of %d: %w", d.name, d.id, what, d.limit, ErrTooLarge)
}

// fetch requests the file from d.off on, retrying transient failures by the client's policy.
func (d *downloader) fetch() (*http.Response, error) {
	c := d.c
	for {
		hr, err := d.get()
		if err == nil {
			return hr, nil
		}
		d.failures++
		wait, retry := c.shouldRetry(d.resp, err, retryTransient, d.failures)
		if !retry {
			return nil, err
		}
		if ctxErr := sleepCtx(d.ctx, wait); ctxErr != nil {
			return nil, fmt.Errorf("runnerapi: GET %s: %w while waiting to retry after: %w", d.url, ctxErr, err)
		}
	}
}

// get sends one request for the file from d.off on.
func (d *downloader) get() (*http.Response, error) {
	c := d.c
	path := c.wire.artifactsPath(d.id)
	if d.direct {
		path += "?direct_download=true"
	}
	req, err := c.NewRequest(d.ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	d.url = redactURL(req.URL)
	req.Header.Set(c.wire.jobTokenHeader, d.token)
	req.Header.Set("Accept", "*/*")
	// Offsets must count the file's own bytes, not those of a compressed rendering of it.
	req.Header.Set("Accept-Encoding", "identity")
	if v := d.validator(); d.off > 0 && v != "" {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(d.off, 10)+"-")
		// The coordinator sends the rest only if the file is still the same, else all of it.
		req.Header.Set("If-Range", v)
	}
	d.requests++
	start := time.Now()
	hr, err := c.httpClient.Do(req)
	if err != nil {
		// A redirect the SDK refuses is met again by every attempt: it is no TransportError, which is transient.
		var re *redirectError
		if ctxErr := d.ctx.Err(); ctxErr != nil {
			err = fmt.Errorf("runnerapi: GET %s: %w", d.url, ctxErr)
		} else if errors.As(err, &re) {
			err = fmt.Errorf("runnerapi: GET %s: %w", d.url, re)
		} else {
			err = newTransportError(http.MethodGet, d.url, err, d.c.callSecrets(nil, d.token))
		}
		c.logAttempt(req, d.requests, 0, time.Since(start), err)
		return nil, err
	}
	c.logAttempt(req, d.requests, hr.StatusCode, time.Since(start), nil)
	d.resp = newResponse(hr, d.requests)
	if err := CheckResponse(hr); err != nil {
		scrubError(err, d.c.callSecrets(nil, d.token))
		return nil, err
	}
	return hr, nil
}

// Read delivers the file's bytes, resuming after a dropped connection.
func (d *downloader) Read(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	for {
		var (
			n   int
			err error
		)
		if d.pending != nil {
			err, d.pending = d.pending, nil
		} else {
			n, err = d.body.Read(p)
		}
		if n < 0 || n > len(p) {
			n, err = 0, errors.New("impossible read count")
		}
		if d.skip > 0 && n > 0 {
			k := int(min(int64(n), d.skip))
			d.skip -= int64(k)
			n = copy(p, p[k:n])
		}
		if n > 0 {
			if d.size >= 0 && d.off+int64(n) > d.size {
				// A transport that does not hold the body to its length: what follows is not the file.
				n = int(d.size - d.off)
				d.err = fmt.Errorf("runnerapi: %s: build %d: the answer holds more than the %d bytes announced", d.name, d.id, d.size)
			}
			if d.limit > 0 && d.off+int64(n) > d.limit {
				n = int(d.limit - d.off)
				d.err = d.tooLarge(-1)
			}
			d.off += int64(n)
			if d.off > d.reached {
				d.reached, d.failures = d.off, 0
			}
			d.progress.add(int64(n))
			if err != nil && d.err == nil {
				// Handled on the next Read: a body need not repeat its failure, and a truncated stream of
				// unknown length would otherwise pass for a complete one.
				d.pending = err
			}
			return n, d.err
		}
		switch {
		case err == nil:
			return 0, nil
		case err == io.EOF && d.skip == 0 && (d.size < 0 || d.off == d.size):
			d.err = io.EOF
			d.progress.finish()
			return 0, io.EOF
		case d.ctx.Err() != nil:
			d.err = fmt.Errorf("runnerapi: GET %s: %w", d.url, d.ctx.Err())
			return 0, d.err
		case err == io.EOF:
			err = io.ErrUnexpectedEOF
		}
		if rerr := d.resume(err); rerr != nil {
			d.err = rerr
			return 0, rerr
		}
	}
}

// resume asks for the rest of the file after the connection broke with cause.
func (d *downloader) resume(cause error) error {
	_ = d.body.Close()
	d.failures++
	dropped := newTransportError(http.MethodGet, d.url, cause, d.c.callSecrets(nil, d.token))
	wait, retry := d.c.shouldRetry(nil, dropped, retryTransient, d.failures)
	if !retry {
		return fmt.Errorf("runnerapi: %s: build %d: connection lost after %d bytes: %w", d.name, d.id, d.off, dropped)
	}
	if d.off > 0 && d.validator() == "" && d.restart == nil {
		// Nothing could show that the rest is of the same file, and what was delivered cannot be taken back.
		return fmt.Errorf("runnerapi: %s: build %d: connection lost after %d bytes of a file with no strong ETag or Last-Modified, which cannot be resumed without risking the rest of another version: %w",
			d.name, d.id, d.off, dropped)
	}
	if err := sleepCtx(d.ctx, wait); err != nil {
		return fmt.Errorf("runnerapi: GET %s: %w while waiting to resume after: %w", d.url, err, dropped)
	}
	if d.off > 0 && d.validator() == "" {
		return d.startOver()
	}
	hr, err := d.fetch()
	if err != nil {
		return fmt.Errorf("runnerapi: %s: build %d: resuming at byte %d: %w", d.name, d.id, d.off, err)
	}
	switch {
	case hr.StatusCode == http.StatusPartialContent && d.off > 0:
		if err := d.checkPartial(hr); err != nil {
			_ = hr.Body.Close()
			if errors.Is(err, errNotSameFile) && d.restart != nil {
				return d.startOver()
			}
			return err
		}
		d.body = hr.Body
		return nil
	case hr.StatusCode == http.StatusOK && d.restart != nil:
		// The coordinator sends the whole file again: start over.
		if err := d.restart(); err != nil {
			_ = hr.Body.Close()
			return fmt.Errorf("runnerapi: %s: starting over: %w", d.name, err)
		}
		if err := d.begin(hr); err != nil {
			_ = hr.Body.Close()
			return err
		}
		return nil
	case hr.StatusCode == http.StatusOK:
		// What was delivered cannot be taken back: skip it, if this is the same file.
		if d.size >= 0 && hr.ContentLength != d.size || d.changed(hr.Header) {
			_ = hr.Body.Close()
			return fmt.Errorf("runnerapi: %s: build %d: the artifacts file changed while it was being downloaded", d.name, d.id)
		}
		d.body, d.skip = hr.Body, d.off
		return nil
	default:
		_ = hr.Body.Close()
		return fmt.Errorf("runnerapi: %s: build %d: unexpected status %d when resuming at byte %d", d.name, d.id, hr.StatusCode, d.off)
	}
}

// startOver downloads the file again from its first byte, into a destination rewound by d.restart: the way to
// finish a file whose rest could not be shown to be of the same version.
func (d *downloader) startOver() error {
	if err := d.restart(); err != nil {
		return fmt.Errorf("runnerapi: %s: starting over: %w", d.name, err)
	}
	d.off, d.skip, d.pending = 0, 0, nil
	hr, err := d.fetch()
	if err != nil {
		return fmt.Errorf("runnerapi: %s: build %d: starting over: %w", d.name, d.id, err)
	}
	if hr.StatusCode != http.StatusOK {
		_ = hr.Body.Close()
		return fmt.Errorf("runnerapi: %s: build %d: unexpected status %d when starting over", d.name, d.id, hr.StatusCode)
	}
	if err := d.begin(hr); err != nil {
		_ = hr.Body.Close()
		return err
	}
	return nil
}

// errNotSameFile marks an answer to a range request that does not show it holds the rest of the same file.
var errNotSameFile = errors.New("not shown to be the same file")

// checkPartial makes sure a 206 answer holds the file from d.off on and is of the same file: it must carry the
// validator the download resumed by, since a server that ignores If-Range sends the range of whatever it has.
func (d *downloader) checkPartial(hr *http.Response) error {
	first, last, total, ok := parseContentRange(hr.Header.Get("Content-Range"))
	switch {
	case !ok:
		return fmt.Errorf("runnerapi: %s: build %d: resuming at byte %d: invalid Content-Range %q", d.name, d.id, d.off, headerForError(hr.Header.Get("Content-Range"), d.c.callSecrets(nil, d.token)))
	case first != d.off,
		d.size >= 0 && total != d.size,
		total >= 0 && last != total-1,
		hr.ContentLength >= 0 && hr.ContentLength != last-first+1:
		return fmt.Errorf("runnerapi: %s: build %d: resuming at byte %d: the answer holds bytes %d-%d/%d of a %d-byte file", d.name, d.id, d.off, first, last, total, d.size)
	case d.partialValidator(hr.Header) == "":
		return fmt.Errorf("runnerapi: %s: build %d: resuming at byte %d: the answer does not carry the file's validator, so its bytes may be of another version: %w",
			d.name, d.id, d.off, errNotSameFile)
	case d.partialValidator(hr.Header) != d.validator():
		return fmt.Errorf("runnerapi: %s: build %d: the artifacts file changed while it was being downloaded: %w", d.name, d.id, errNotSameFile)
	}
	if d.size < 0 && total >= 0 {
		d.size = total
	}
	return nil
}

// validator is what identifies the file the download began with, for If-Range: its strong ETag, or else its
// Last-Modified date when that is a strong validator; "" when it has neither.
func (d *downloader) validator() string {
	return cmp.Or(d.etag, d.lastModified)
}

// partialValidator is the validator of the kind the download began with that the answer h carries, or "".
func (d *downloader) partialValidator(h http.Header) string {
	if d.etag != "" {
		return strongETag(h.Get("ETag"))
	}
	return h.Get("Last-Modified")
}

// copyBufferSize is the buffer of a download into a writer: larger than io.Copy's 32 KiB, so that a fast
// connection takes fewer read and write calls per megabyte.
const copyBufferSize = 256 << 10

// copyTo streams the rest of the download into w, telling read and write failures apart.
func (d *downloader) copyTo(w io.Writer) error {
	ew := &errWriter{w: w}
	if _, err := io.CopyBuffer(ew, d, make([]byte, copyBufferSize)); err != nil {
		if ew.err != nil {
			return fmt.Errorf("runnerapi: %s: build %d: writing: %w", d.name, d.id, ew.err)
		}
		return err
	}
	return nil
}

// Close ends the download.
func (d *downloader) Close() error {
	if d.err == nil || d.err == io.EOF {
		d.err = errors.New("runnerapi: read from a closed download")
	}
	if d.body != nil {
		return d.body.Close()
	}
	return nil
}

// errWriter remembers its writer's failure. It also hides any ReadFrom of the writer, so that io.Copy reads
// through the download's own Read.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil {
		e.err = err
	}
	return n, err
}

// changed reports whether a whole-file answer may be of another file than the download began with: it lacks the
// download's validator or carries another one.
func (d *downloader) changed(h http.Header) bool {
	return d.validator() != "" && d.partialValidator(h) != d.validator()
}

// strongLastModified returns the answer's Last-Modified if it is a strong validator, usable in If-Range: at
// least a second before the answer's Date (RFC 9110, 8.8.2.2). Otherwise, or when either is missing or malformed,
// it returns "".
func strongLastModified(h http.Header) string {
	lm := h.Get("Last-Modified")
	modified, err1 := http.ParseTime(lm)
	date, err2 := http.ParseTime(h.Get("Date"))
	if err1 != nil || err2 != nil || date.Sub(modified) < time.Second {
		return ""
	}
	return lm
}

// strongETag returns etag if it is a strong validator, usable in If-Range, and "" otherwise.
func strongETag(etag string) string {
	if len(etag) < 2 || etag[0] != '"' || etag[len(etag)-1] != '"' || strings.ContainsAny(etag[1:len(etag)-1], "\"\r\n") {
		return ""
	}
	return etag
}

// parseContentRange parses "bytes FIRST-LAST/TOTAL", where TOTAL may be "*" (returned as -1).
func parseContentRange(v string) (first, last, total int64, ok bool) {
	rest, found := strings.CutPrefix(strings.TrimSpace(v), "bytes ")
	if !found {
		return 0, 0, 0, false
	}
	span, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, 0, false
	}
	a, b, found := strings.Cut(span, "-")
	if !found {
		return 0, 0, 0, false
	}
	first, ok1 := parseDigits(a)
	last, ok2 := parseDigits(b)
	if !ok1 || !ok2 || last < first {
		return 0, 0, 0, false
	}
	total = -1
	if tot != "*" {
		t, ok3 := parseDigits(tot)
		if !ok3 || last >= t {
			return 0, 0, 0, false
		}
		total = t
	}
	return first, last, total, true
}

// maxFilename bounds a file name taken from an answer.
const maxFilename = 255

// dispositionFilename returns the file name a Content-Disposition value gives (filename*= wins over
// filename=), reduced to its last path element, or "" when there is none that can be trusted.
func dispositionFilename(v string) string {
	params, ok := parseDisposition(v)
	if !ok {
		return ""
	}
	var name string
	if ext, found := params["filename*"]; found {
		name, _ = decodeExtValue(ext)
	}
	if name == "" {
		name = params["filename"]
	}
	return safeBaseName(name)
}

// parseDisposition splits a Content-Disposition value into its parameters, with lower-cased names. Values are
// quoted strings or, as coordinators send them, unquoted text up to the next ';'. Anything malformed or ambiguous
// (a repeated parameter) fails the whole value.
func parseDisposition(v string) (map[string]string, bool) {
	typ, s, _ := strings.Cut(v, ";")
	if !isToken(strings.TrimSpace(typ)) {
		return nil, false
	}
	params := make(map[string]string)
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return params, true
		}
		if s[0] == ';' {
			s = s[1:]
			continue
		}
		eq := strings.IndexByte(s, '=')
		if semi := strings.IndexByte(s, ';'); eq < 0 || semi >= 0 && semi < eq {
			return nil, false
		}
		name := strings.ToLower(strings.TrimRight(s[:eq], " \t"))
		if !isToken(name) {
			return nil, false
		}
		s = strings.TrimLeft(s[eq+1:], " \t")
		var val string
		if strings.HasPrefix(s, `"`) {
			var ok bool
			if val, s, ok = unquote(s); !ok {
				return nil, false
			}
			if s = strings.TrimLeft(s, " \t"); s != "" && s[0] != ';' {
				return nil, false
			}
		} else {
			end := strings.IndexByte(s, ';')
			if end < 0 {
				end = len(s)
			}
			val, s = strings.TrimRight(s[:end], " \t"), s[end:]
			if val == "" || strings.ContainsRune(val, '"') || hasControl(val) {
				return nil, false
			}
		}
		if _, dup := params[name]; dup {
			return nil, false
		}
		params[name] = val
	}
}

// unquote reads the quoted string at the start of s and returns its value and what follows it.
func unquote(s string) (val, rest string, ok bool) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			return b.String(), s[i+1:], true
		case c == '\\':
			if i+1 == len(s) {
				return "", "", false
			}
			i++
			b.WriteByte(s[i])
		case c < 0x20 && c != '\t' || c == 0x7f:
			return "", "", false
		default:
			b.WriteByte(c)
		}
	}
	return "", "", false
}

// decodeExtValue decodes an RFC 8187 value, charset'language'percent-encoded, in UTF-8 or ISO-8859-1.
func decodeExtValue(v string) (string, bool) {
	parts := strings.SplitN(v, "'", 3)
	if len(parts) != 3 {
		return "", false
	}
	charset := strings.ToLower(parts[0])
	if charset != "utf-8" && charset != "iso-8859-1" {
		return "", false
	}
	enc := parts[2]
	raw := make([]byte, 0, len(enc))
	for i := 0; i < len(enc); i++ {
		c := enc[i]
		switch {
		case c == '%':
			if i+2 >= len(enc) {
				return "", false
			}
			hi, ok1 := unhex(enc[i+1])
			lo, ok2 := unhex(enc[i+2])
			if !ok1 || !ok2 {
				return "", false
			}
			raw = append(raw, hi<<4|lo)
			i += 2
		case isAttrChar(c):
			raw = append(raw, c)
		default:
			return "", false
		}
	}
	if charset == "utf-8" {
		if !utf8.Valid(raw) {
			return "", false
		}
		return string(raw), true
	}
	runes := make([]rune, len(raw))
	for i, c := range raw {
		runes[i] = rune(c)
	}
	return string(runes), true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// isAttrChar reports whether c may appear unencoded in an RFC 8187 value.
func isAttrChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$&+-.^_`|~", c) >= 0
}

// isToken reports whether s is a non-empty RFC 7230 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return true
		}
	}
	return false
}

// safeBaseName reduces a name from the network to a plain file name: its last element after any '/' or '\', or
// "" when that is empty, "." or "..", too long, not UTF-8 or holds control characters.
func safeBaseName(name string) string {
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	if name == "" || name == "." || name == ".." || len(name) > maxFilename || !utf8.ValidString(name) || hasControl(name) {
		return ""
	}
	return name
}
