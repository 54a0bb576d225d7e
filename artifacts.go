package runnerapi

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// ArtifactsService uploads, downloads and deletes a build's artifacts file. Reach it as Client.Artifacts.
//
// Every call authenticates with the build token (WithBuildToken or WithToken), sent in the BUILD-TOKEN header,
// which is dropped when the coordinator redirects to another host. Uploads and downloads stream: memory use does
// not grow with the file.
//
// Upload, UploadFile and UploadPaths return the build the coordinator answers with, whose ArtifactsFile describes
// the stored file. The status decides: a 201 means the file is stored, so the upload succeeds whatever the answer's
// body, and is not sent again. A body that is cut short, unreadable, larger than 16 MiB or endless is read only
// until it ends, fails, reaches that bound or ctx ends, what stopped it is logged at debug level (WithLogger), and
// the build has the fields that could be read: only its ID when the JSON was cut after it, none (ID 0) when it
// holds no build (an empty body, a proxy's page). The build is never nil when the error is nil.
//
// Delete is bounded per attempt like other small calls (DefaultTimeout, WithTimeout). Uploads and downloads are
// bounded by their context alone, since a large file may rightly take hours: with a context that never ends, a
// coordinator that stops answering holds them forever, so give them a deadline or cancel them.
type ArtifactsService service

// DefaultArtifactsFilename is the name an uploaded artifacts file is given unless UploadOptions.Filename says
// otherwise.
const DefaultArtifactsFilename = "artifacts.zip"

// uploadExpectThreshold is the body size from which an upload first asks the coordinator whether it wants the
// body (Expect: 100-continue), so that a refusal arrives as an answer instead of a broken connection.
const uploadExpectThreshold = 1 << 20

// UploadOptions are the optional parameters of the uploads.
type UploadOptions struct {
	// Filename is the name the coordinator keeps for the file: DefaultArtifactsFilename when empty, except for
	// UploadFile, which uses the file's own name.
	Filename string
	// ExpireIn, such as "7d" or "2 weeks", makes the coordinator delete the file after that long; empty keeps the
	// coordinator's default. It is sent as the expire_in query parameter.
	ExpireIn string
	// ArtifactType and ArtifactFormat (runner API v4 only) say what the upload is: "archive" and "zip" by
	// default, or a report such as "junit" with its format ("gzip", "raw", ...), as the job's Artifacts entries
	// give them. A job may have one upload of each type. On the CI API v1, which keeps one file per build, setting
	// them is an error.
	ArtifactType string
	// ArtifactFormat is the upload's artifact_format (runner API v4 only), as ArtifactType says.
	ArtifactFormat string
	// Size, when positive, is the exact number of bytes Upload's reader yields: the request then carries an exact
	// Content-Length instead of chunked encoding, and a reader that yields more or fewer fails the upload.
	// UploadFile and UploadPaths ignore it.
	Size int64
}

// Upload sends the bytes of r as build id's artifacts file and returns the updated build, whose ArtifactsFile
// describes the file (zero when the coordinator's 201 holds no build: see ArtifactsService). The body is streamed. r is read once, so a failed upload is never retried: its error
// matches ErrBodyNotReplayable when a retry would otherwise have been made. Use UploadFile for a file on disk.
//
// A 403 (errors.Is ErrForbidden) means a bad token or a build that is not running; a 413 (ErrTooLarge) means the
// file is not smaller than the coordinator's limit. r is not read after Upload returns, but a Read in progress at
// that moment is left to finish on its own.
func (s *ArtifactsService) Upload(ctx context.Context, id int64, r io.Reader, opts *UploadOptions, reqOpts ...RequestOption) (*Build, *Response, error) {
	if r == nil {
		return nil, nil, errors.New("runnerapi: Upload: nil reader")
	}
	if opts == nil {
		opts = &UploadOptions{}
	}
	size := int64(-1)
	if opts.Size > 0 {
		size = opts.Size
	}
	used := false
	src := uploadSource{
		what: "the artifact stream",
		size: size,
		open: func() (io.Reader, io.Closer, error) {
			if used {
				return nil, nil, ErrBodyNotReplayable
			}
			used = true
			return r, nil, nil
		},
	}
	return s.upload(ctx, "Upload", id, cmp.Or(opts.Filename, DefaultArtifactsFilename), src, opts, reqOpts)
}

// UploadFile sends the regular file at path as build id's artifacts file, under the file's own name unless
// opts.Filename is set, with an exact Content-Length. The file is reopened for each attempt, so transient failures
// are retried; a file that changes size during the upload fails it.
func (s *ArtifactsService) UploadFile(ctx context.Context, id int64, path string, opts *UploadOptions, reqOpts ...RequestOption) (*Build, *Response, error) {
	if opts == nil {
		opts = &UploadOptions{}
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, nil, fmt.Errorf("runnerapi: UploadFile: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("runnerapi: UploadFile: %s is not a regular file", path)
	}
	size := fi.Size()
	src := uploadSource{
		what:       "the file " + path,
		size:       size,
		replayable: true,
		open: func() (io.Reader, io.Closer, error) {
			f, err := os.Open(path)
			if err != nil {
				return nil, nil, err
			}
			fi, err := f.Stat()
			if err == nil && fi.Size() != size {
				err = fmt.Errorf("%s changed size from %d to %d bytes since the upload started", path, size, fi.Size())
			}
			if err != nil {
				_ = f.Close()
				return nil, nil, err
			}
			return f, f, nil
		},
	}
	return s.upload(ctx, "UploadFile", id, cmp.Or(opts.Filename, filepath.Base(path)), src, opts, reqOpts)
}

// uploadSource is where an upload's file content comes from.
type uploadSource struct {
	// what names the source in errors.
	what string
	// size is the content's exact length, or -1 when unknown.
	size int64
	// replayable sources may be opened again for a retry.
	replayable bool
	// open returns the content and what to close once it has been sent (nil when the caller owns it).
	open func() (io.Reader, io.Closer, error)
}

// upload sends one multipart request whose only part, "file", holds the source's content.
func (s *ArtifactsService) upload(ctx context.Context, name string, id int64, filename string, src uploadSource, opts *UploadOptions, reqOpts []RequestOption) (*Build, *Response, error) {
	c := s.client
	cc := newCallConfig(reqOpts)
	token, err := c.buildTokenFor(cc, name)
	if err != nil {
		return nil, nil, err
	}
	prefix, suffix, contentType, err := multipartEnvelope(filename)
	if err != nil {
		return nil, nil, fmt.Errorf("runnerapi: %s: %w", name, err)
	}
	path := c.wire.artifactsPath(id)
	query := url.Values{}
	if opts.ExpireIn != "" {
		query.Set("expire_in", opts.ExpireIn)
	}
	if opts.ArtifactType != "" || opts.ArtifactFormat != "" {
		if !c.wire.jobArtifacts {
			return nil, nil, c.notInAPI(name, "keeps one artifacts file per build, with no artifact_type or artifact_format")
		}
		if opts.ArtifactType != "" {
			query.Set("artifact_type", opts.ArtifactType)
		}
		if opts.ArtifactFormat != "" {
			query.Set("artifact_format", opts.ArtifactFormat)
		}
	}
	if len(query) > 0 {
		path += "?" + query.Encode()
	}
	if c.wire.jobArtifacts {
		// A 307 names the host to upload to (gitlab-runner follows it so); see checkRedirect.
		ctx = context.WithValue(ctx, uploadRedirectKey{}, true)
	}

	var cur *uploadBody
	newBody := func() (*uploadBody, error) {
		r, closer, err := src.open()
		if err != nil {
			return nil, err
		}
		b := &uploadBody{closer: closer}
		b.src = &sourceReader{what: src.what, r: r, expected: src.size, progress: newArtProgress(cc.progress, src.size), closed: &b.closed}
		b.r = io.MultiReader(bytes.NewReader(prefix), b.src, bytes.NewReader(suffix))
		cur = b
		return b, nil
	}
	body, err := newBody()
	if err != nil {
		return nil, nil, fmt.Errorf("runnerapi: %s: %w", name, err)
	}
	req, err := c.NewRequest(ctx, http.MethodPost, path, body.forTransport())
	if err != nil {
		_ = body.Close()
		return nil, nil, err
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set(c.wire.jobTokenHeader, token)
	if src.size >= 0 {
		req.ContentLength = int64(len(prefix)) + src.size + int64(len(suffix))
	} else {
		req.ContentLength = -1
	}
	if src.size < 0 || src.size >= uploadExpectThreshold {
		req.Header.Set("Expect", "100-continue")
	}
	if src.replayable {
		req.GetBody = func() (io.ReadCloser, error) {
			// A failure of the source itself (unreadable, changed) would only repeat.
			if err := cur.failure(); err != nil {
				return nil, err
			}
			_ = cur.Close()
			b, err := newBody()
			if err != nil {
				return nil, err
			}
			return b.forTransport(), nil
		}
	}
	answer := new(uploadAnswer)
	resp, err := c.do(req, answer, call{retry: retryTransient, secrets: []string{token}})
	_ = cur.Close()
	if ferr := cur.failure(); ferr != nil {
		return nil, resp, fmt.Errorf("runnerapi: %s: build %d: reading %s: %w", name, id, src.what, ferr)
	}
	if err != nil && resp != nil && resp.Response != nil && resp.StatusCode/100 == 2 {
		// Only reading the body can fail a 2xx, through a body that bypasses ReadFrom (a custom RoundTripper's):
		// the status decides all the same.
		answer.stopped, err = err, nil
	}
	if err != nil {
		switch {
		case errors.Is(err, ErrForbidden):
			err = fmt.Errorf("%w (artifacts are accepted only while the build is running, and only with its build token)", err)
		case errors.Is(err, ErrTooLarge):
			err = fmt.Errorf("%w (the file is not smaller than the coordinator's maximum artifacts size)", err)
		}
		return nil, resp, err
	}
	cur.src.progress.finish()
	build, derr := answer.build()
	if (answer.stopped != nil || derr != nil) && c.logger.Enabled(ctx, slog.LevelDebug) {
		reason := ""
		if answer.stopped != nil {
			// Scrubbed: a transport error may quote what the coordinator sent.
			reason = "reading stopped: " + scrubText(answer.stopped.Error(), c.callSecrets([]string{token})) + "; "
		}
		if derr != nil {
			reason += decodeFailure(derr)
		} else {
			reason += "the part read decoded"
		}
		c.logger.LogAttrs(ctx, slog.LevelDebug, "runnerapi: the upload succeeded, but its answer could not be read in full",
			slog.Int64("build", id), slog.Int("status", resp.StatusCode), slog.String("reason", reason))
	}
	return build, resp, nil
}

// decodeFailure says why an answer could not be decoded without quoting it: the answer may echo secrets, and some
// decoding errors (a time that does not parse) repeat the value.
func decodeFailure(err error) string {
	var typ *json.UnmarshalTypeError
	var syntax *json.SyntaxError
	switch {
	case errors.As(err, &typ):
		return fmt.Sprintf("a %s where %s takes a %s", typ.Value, typ.Field, typ.Type)
	case errors.As(err, &syntax):
		return fmt.Sprintf("not JSON, from byte %d", syntax.Offset)
	case errors.Is(err, errNoJSONObject):
		return err.Error()
	}
	return "a field of an unexpected form"
}

// errNoJSONObject is an upload answer whose body is not a JSON object.
var errNoJSONObject = errors.New("no JSON object")

// uploadAnswer holds the body of an upload's 2xx answer, at most maxJSONBody bytes of it, for decoding once the
// status has said the file is stored. Since the status decides, the body cannot fail the upload: reading it stops
// at the bound, at the body's end or at its first read error (a connection dropped, the context ended), and what
// stopped it is kept to be logged.
type uploadAnswer struct {
	buf bytes.Buffer
	// stopped says why the body was not read to its end, or is nil.
	stopped error
}

// ReadFrom reads the answer's body; io.Copy, which the client uses to hand a body to an io.Writer, calls it. It
// never fails: see uploadAnswer.
func (a *uploadAnswer) ReadFrom(r io.Reader) (int64, error) {
	// Read through a chunk, not into the buffer's spare room: the buffer then never grows past the bound.
	chunk := make([]byte, 32<<10)
	var total int64
	for {
		n, err := r.Read(chunk)
		total += int64(n)
		if n > 0 {
			if _, werr := a.Write(chunk[:n]); werr != nil {
				return total, nil
			}
		}
		switch {
		case err == io.EOF:
			return total, nil
		case err != nil:
			a.stopped = err
			return total, nil
		}
	}
}

// Write keeps p, up to the bound: a caller that writes rather than calls ReadFrom is stopped there.
func (a *uploadAnswer) Write(p []byte) (int, error) {
	if a.buf.Len()+len(p) > maxJSONBody {
		a.stopped = fmt.Errorf("answer larger than %d bytes", maxJSONBody)
		return 0, a.stopped
	}
	return a.buf.Write(p)
}

// build decodes the build the answer holds, never nil: it is zero when the answer holds no JSON object (an empty
// body, a page from a proxy), has only its ID when the JSON was cut short after it, and has the fields that could
// be read when some of them have an unexpected type. The error says what could not be read.
func (a *uploadAnswer) build() (*Build, error) {
	data := bytes.TrimSpace(a.buf.Bytes())
	if len(data) == 0 || data[0] != '{' {
		return new(Build), errNoJSONObject
	}
	b := new(Build)
	err := json.Unmarshal(data, b)
	var syntax *json.SyntaxError
	if errors.As(err, &syntax) || errors.Is(err, io.ErrUnexpectedEOF) {
		b = new(Build)
		b.ID, _ = scanTopLevelID(data)
	}
	return b, err
}

// multipartEnvelope returns what goes before and after the file's bytes in a multipart/form-data body whose
// only part is the file, and the body's Content-Type. Knowing both lets the body be streamed with an exact length.
func multipartEnvelope(filename string) (prefix, suffix []byte, contentType string, err error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	if _, err := mw.CreateFormFile("file", filename); err != nil {
		return nil, nil, "", err
	}
	prefix = bytes.Clone(buf.Bytes())
	buf.Reset()
	if err := mw.Close(); err != nil {
		return nil, nil, "", err
	}
	return prefix, bytes.Clone(buf.Bytes()), mw.FormDataContentType(), nil
}

// errArtBodyClosed is what reading an upload body returns once the call is over.
var errArtBodyClosed = errors.New("upload body closed")

// uploadBody is the body of one upload attempt. It is read by the transport's goroutine, possibly even after the
// call returned, so it stops reading its source once closed.
type uploadBody struct {
	r      io.Reader
	src    *sourceReader
	closer io.Closer
	closed atomic.Bool
	once   sync.Once
}

func (b *uploadBody) Read(p []byte) (int, error) {
	if b.closed.Load() {
		return 0, errArtBodyClosed
	}
	return b.r.Read(p)
}

// forTransport is the body to hand net/http. A body of unknown size goes out in chunked encoding, where net/http
// copies it with io.Copy and flushes every chunk: a WriteTo with a larger buffer makes fewer, larger chunks and so
// fewer system calls. A body of known size gets no WriteTo, since net/http hides it behind an io.LimitReader
// anyway and would only use it to check for extra bytes at the end.
func (b *uploadBody) forTransport() io.ReadCloser {
	if b.src.expected < 0 {
		return chunkedUploadBody{b}
	}
	return b
}

// uploadChunkSize is the buffer, and so the largest chunk, of a chunked upload body.
const uploadChunkSize = 256 << 10

// chunkedUploadBody is an upload body of unknown size.
type chunkedUploadBody struct {
	*uploadBody
}

// WriteTo copies the body to w through a buffer of uploadChunkSize, one Read per Write, so that bytes a slow
// source yields go out at once.
func (b chunkedUploadBody) WriteTo(w io.Writer) (int64, error) {
	buf := make([]byte, uploadChunkSize)
	var total int64
	for {
		n, err := b.Read(buf)
		if n > 0 {
			nw, werr := w.Write(buf[:n])
			total += int64(nw)
			if werr != nil {
				return total, werr
			}
			if nw != n {
				return total, io.ErrShortWrite
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// Close ends the body; it does not wait for a Read in progress.
func (b *uploadBody) Close() error {
	b.closed.Store(true)
	b.once.Do(func() {
		if b.closer != nil {
			_ = b.closer.Close()
		}
	})
	return nil
}

// failure is the source's own failure, if it had one.
func (b *uploadBody) failure() error {
	b.src.mu.Lock()
	defer b.src.mu.Unlock()
	return b.src.err
}

// sourceReader reads an upload's content, holding it to its announced size, and remembers the source's own
// failure so that it is reported as such instead of as a transport error.
type sourceReader struct {
	what     string
	r        io.Reader
	expected int64 // -1: unknown
	n        int64
	progress *progressReporter
	closed   *atomic.Bool // the body's: failures after it closed are its doing, not the source's

	mu  sync.Mutex
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	if s.expected >= 0 {
		rem := s.expected - s.n
		if rem == 0 {
			return 0, s.checkExhausted()
		}
		if int64(len(p)) > rem {
			p = p[:rem]
		}
	}
	n, err := s.r.Read(p)
	if n < 0 || n > len(p) {
		return 0, s.fail(fmt.Errorf("%s returned an impossible count %d", s.what, n))
	}
	s.n += int64(n)
	s.progress.add(int64(n))
	switch {
	case err == io.EOF && s.expected >= 0 && s.n < s.expected:
		return n, s.fail(fmt.Errorf("%s ended after %d of the %d bytes announced", s.what, s.n, s.expected))
	case err == io.EOF:
		return n, io.EOF
	case err != nil:
		return n, s.fail(err)
	}
	return n, nil
}

// checkExhausted makes sure a source of known size has nothing beyond it.
func (s *sourceReader) checkExhausted() error {
	var one [1]byte
	n, err := io.ReadAtLeast(s.r, one[:], 1)
	switch {
	case n > 0:
		return s.fail(fmt.Errorf("%s holds more than the %d bytes announced", s.what, s.expected))
	case err == io.EOF:
		return io.EOF
	default:
		return s.fail(err)
	}
}

func (s *sourceReader) fail(err error) error {
	if s.closed.Load() {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
	return s.err
}

// Delete removes build id's artifacts file.
func (s *ArtifactsService) Delete(ctx context.Context, id int64, reqOpts ...RequestOption) (*Response, error) {
	c := s.client
	if c.wire.jobArtifacts {
		return nil, c.notInAPI("Delete", "has no runner-side delete of artifacts; the user API's DELETE /projects/:id/jobs/:job_id/artifacts, with a personal access token, does it")
	}
	token, err := c.buildTokenFor(newCallConfig(reqOpts), "Delete")
	if err != nil {
		return nil, err
	}
	req, err := c.NewRequest(ctx, http.MethodDelete, c.wire.artifactsPath(id), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set(c.wire.jobTokenHeader, token)
	return c.do(req, nil, call{retry: retryTransient, small: true, secrets: []string{token}})
}

// progressInterval is the least time between two progress reports of one transfer, apart from the last.
const progressInterval = 100 * time.Millisecond

// progressReporter reports a transfer's progress to a ProgressFunc at most once per progressInterval, and once at
// the end. It is safe for concurrent use, and every method is a no-op when there is no ProgressFunc.
type progressReporter struct {
	fn  ProgressFunc
	now func() time.Time

	mu       sync.Mutex
	total    int64
	done     int64
	last     time.Time
	reported int64 // -1: nothing reported since the last reset
}

func newArtProgress(fn ProgressFunc, total int64) *progressReporter {
	return &progressReporter{fn: fn, now: time.Now, total: total, reported: -1}
}

func (p *progressReporter) add(n int64) {
	if p == nil || p.fn == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += n
	if t := p.now(); p.reported < 0 || t.Sub(p.last) >= progressInterval {
		p.last = t
		p.reported = p.done
		p.fn(p.done, p.total)
	}
}

// reset starts the count again, for a transfer that starts over.
func (p *progressReporter) reset(total int64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total, p.done, p.reported = total, 0, -1
}

// finish reports the final count, unless it was just reported.
func (p *progressReporter) finish() {
	if p == nil || p.fn == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reported != p.done {
		p.reported = p.done
		p.fn(p.done, p.total)
	}
}
