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
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// TraceAppend is the coordinator's answer to an appended part of a trace.
type TraceAppend struct {
	// Length is the trace's length after the part, from the answer's "Range: 0-N".
	Length int64
	// Status is the build's status from the answer's Build-Status header; empty when it had none.
	Status BuildState
}

// ErrTraceRange marks an answer of the trace endpoint whose Range header is missing or malformed. Nothing can be
// concluded about the coordinator's trace from such an answer, least of all that it is empty.
var ErrTraceRange = errors.New("runnerapi: missing or malformed Range header")

// RangeError is a 416 answer to an appended part: the part did not start at the coordinator's trace length, and
// nothing was written. Length says where the next part must start.
type RangeError struct {
	// Length is the coordinator's trace length, from the answer's "Range: 0-N".
	Length int64
	// Status is the build's status from the answer's Build-Status header; empty when it had none.
	Status BuildState
	// Err is the 416 answer.
	Err *ErrorResponse
}

// Error describes the mismatch.
func (e *RangeError) Error() string {
	return e.Err.Error() + " (the coordinator's trace has " + strconv.FormatInt(e.Length, 10) + " bytes)"
}

// Unwrap returns the 416 answer, so errors.As finds the *ErrorResponse.
func (e *RangeError) Unwrap() error { return e.Err }

// AppendTrace appends part to the trace of build id at offset, the length the caller believes the coordinator's
// trace has. It sends the build token (WithToken, else the client's WithBuildToken) in the BUILD-TOKEN header. A
// 416 answer is a *RangeError holding the coordinator's length; an answer without a valid "Range: 0-N" header is
// an error matching ErrTraceRange.
//
// AppendTrace is retried only when the failure shows the coordinator did not act on it, so that a *RangeError
// always means the caller's offset was wrong, not that an earlier attempt of this call was applied. An empty part
// is a keep-alive that learns the build's status.
func (s *BuildsService) AppendTrace(ctx context.Context, id, offset int64, part []byte, reqOpts ...RequestOption) (*TraceAppend, *Response, error) {
	c := s.client
	if offset < 0 {
		return nil, nil, fmt.Errorf("runnerapi: AppendTrace: negative offset %d", offset)
	}
	token, err := c.buildTokenFor(newCallConfig(reqOpts), "AppendTrace")
	if err != nil {
		return nil, nil, err
	}
	// The transport may go on reading a request body after the answer arrived: send a copy, so part is the
	// caller's again as soon as AppendTrace returns.
	part = bytes.Clone(part)
	return c.appendTrace(ctx, id, offset, part, nil, token, call{retry: retryUnsent, small: true, secrets: []string{token}})
}

// tracePath is the trace endpoint of build id, relative to the API root.
func tracePath(id int64) string {
	return "builds/" + strconv.FormatInt(id, 10) + "/trace.txt"
}

// appendTrace sends part at offset; first, when not nil, is the body of the first attempt.
func (c *Client) appendTrace(ctx context.Context, id, offset int64, part []byte, first *traceBodyReader, token string, cl call) (*TraceAppend, *Response, error) {
	req, err := c.NewRequest(ctx, http.MethodPatch, tracePath(id), nil)
	if err != nil {
		return nil, nil, err
	}
	if len(part) > 0 {
		if first == nil {
			first = newTraceBodyReader(part)
		}
		req.Body = first
		req.GetBody = func() (io.ReadCloser, error) { return newTraceBodyReader(part), nil }
		req.ContentLength = int64(len(part))
	}
	req.Header.Set(buildTokenHeader, token)
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("Content-Range", strconv.FormatInt(offset, 10)+"-"+strconv.FormatInt(offset+int64(len(part)), 10))
	resp, err := c.do(req, nil, cl)
	if err != nil {
		var er *ErrorResponse
		if errors.As(err, &er) && er.StatusCode == http.StatusRequestedRangeNotSatisfiable {
			n, rerr := parseTraceRange(er.Response.Header, token)
			if rerr != nil {
				return nil, resp, fmt.Errorf("%w: %w", er, rerr)
			}
			return nil, resp, &RangeError{Length: n, Status: BuildState(er.Response.Header.Get("Build-Status")), Err: er}
		}
		return nil, resp, err
	}
	n, err := parseTraceRange(resp.Header, token)
	if err != nil {
		return nil, resp, fmt.Errorf("runnerapi: PATCH %s: %d answer: %w", redactURL(req.URL), resp.StatusCode, err)
	}
	return &TraceAppend{Length: n, Status: BuildState(resp.Header.Get("Build-Status"))}, resp, nil
}

// parseTraceRange reads a "Range: 0-N" header strictly: exactly "0-" and decimal digits that fit an int64. A
// malformed value is quoted in the error with the given secrets masked, since a proxy may echo the request into it.
func parseTraceRange(h http.Header, secrets ...string) (int64, error) {
	vs := h.Values("Range")
	if len(vs) != 1 {
		if len(vs) == 0 {
			return 0, ErrTraceRange
		}
		return 0, fmt.Errorf("%w: %d Range headers", ErrTraceRange, len(vs))
	}
	v := vs[0]
	digits, ok := strings.CutPrefix(v, "0-")
	n, ok2 := parseDigits(digits)
	if !ok || !ok2 {
		return 0, fmt.Errorf("%w: %q", ErrTraceRange, headerForError(v, secrets))
	}
	return n, nil
}

// traceBodyReader is a request body that says when the transport is done with it (it closes every body it was
// given, possibly after the answer arrived), so that its bytes may be reused. Its WriteTo lets the transport send a
// part in one write.
type traceBodyReader struct {
	bytes.Reader
	once   sync.Once
	closed chan struct{}
}

func newTraceBodyReader(part []byte) *traceBodyReader {
	r := &traceBodyReader{closed: make(chan struct{})}
	r.Reset(part)
	return r
}

// Close tells that the transport is done with the body.
func (r *traceBodyReader) Close() error {
	r.once.Do(func() { close(r.closed) })
	return nil
}

// Defaults of TraceOptions.
const (
	// DefaultTraceChunkSize is the largest part a TraceWriter sends, and the amount of unsent bytes that makes it
	// send at once.
	DefaultTraceChunkSize = 1 << 20
	// DefaultTraceFlushInterval is how long a TraceWriter lets written bytes wait before sending them.
	DefaultTraceFlushInterval = 3 * time.Second
	// DefaultTraceKeepAlive is how long a TraceWriter stays silent before an empty part asks the build's status.
	DefaultTraceKeepAlive = 30 * time.Second
	// DefaultTraceMemoryLimit is how much of a trace a TraceWriter keeps in memory before moving it to a file.
	DefaultTraceMemoryLimit = 4 << 20
	// DefaultTraceMaxRangeErrors is how many 416 answers in a row without progress make a TraceWriter give up.
	DefaultTraceMaxRangeErrors = 10
)

// ErrClosed is returned by Write and Flush on a TraceWriter that was closed.
var ErrClosed = errors.New("runnerapi: trace writer closed")

// TraceOptions configure a TraceWriter. Zero values mean the defaults.
type TraceOptions struct {
	// Token is the build token; when empty, the Build's (NewBuildTraceWriter) or the client's WithBuildToken.
	Token string
	// Secrets are replaced by "[MASKED]" in the trace, besides the build token, the client's runner token and,
	// for NewBuildTraceWriter, the build's own secrets (Build.Secrets), also when split across Writes (but not
	// across a Flush).
	Secrets []string
	// ChunkSize is the largest part sent at once (DefaultTraceChunkSize).
	ChunkSize int
	// FlushInterval is the longest written bytes wait before they are sent (DefaultTraceFlushInterval).
	FlushInterval time.Duration
	// KeepAlive is the silence after which an empty part asks the build's status (DefaultTraceKeepAlive);
	// negative turns keep-alives off.
	KeepAlive time.Duration
	// MemoryLimit is how many bytes of the trace are kept in memory before the trace moves to temporary files
	// (DefaultTraceMemoryLimit): a few, of growing sizes, so that Close can remove them in parallel.
	MemoryLimit int
	// TempDir is where those files are made (os.TempDir when empty). They are removed on Close.
	TempDir string
	// OutputLimit, when positive, is the most bytes of the trace recorded; past it one line says the trace was
	// truncated and the rest is dropped.
	OutputLimit int64
	// AttemptTimeout bounds each request (the client's WithTimeout, or DefaultTimeout when that is zero).
	AttemptTimeout time.Duration
	// MaxRangeErrors is how many 416 answers in a row without progress end in an error
	// (DefaultTraceMaxRangeErrors).
	MaxRangeErrors int

	// sleep waits out a backoff; tests replace it to record waits instead of spending them.
	sleep func(ctx context.Context, d time.Duration) error
}

// TraceStats counts what a TraceWriter did.
type TraceStats struct {
	// Written is the number of bytes given to Write.
	Written int64
	// Length is the trace's length: what was written, with secrets masked and the output limit applied. Masking
	// looks at written bytes a window (32 KiB) at a time, so Length can trail Written by up to a window until the
	// window fills, the flush interval passes, or Flush is called.
	Length int64
	// Acknowledged is how much of the trace the coordinator last said it has.
	Acknowledged int64
	// Requests counts the requests sent, keep-alives and full updates included.
	Requests int64
	// Retries counts the requests sent again after a transient failure.
	Retries int64
	// RangeRecoveries counts the 416 answers the writer recovered from.
	RangeRecoveries int64
	// FullUpdates counts the times the whole trace was sent with Update.
	FullUpdates int64
}

// TraceWriter streams one build's trace to the coordinator. Write only copies into the writer's spool; one
// goroutine per writer sends the trace in parts, reconciles with the coordinator's idea of its length, and retries
// through transient failures. Close reports the upload's fate: call it, or cancel the writer's context, so that the
// goroutine and the spool's temporary files go away.
//
// A part that fails transiently is sent again after the client's RetryPolicy backoff (or the coordinator's
// Retry-After); once one part has failed more than RetryPolicy.MaxRetries times in a row, the writer gives up. Its
// first fatal error is sticky: every later Write, Flush and Close returns it.
//
// A TraceWriter is safe for concurrent use; each Write stays contiguous in the trace.
type TraceWriter struct {
	c              *Client
	id             int64
	token          string
	url            string
	secrets        []string // scrubbed from errors
	chunk          int
	interval       time.Duration
	keepAlive      time.Duration
	attemptTimeout time.Duration
	maxRange       int
	limit          int64
	sleep          func(context.Context, time.Duration) error

	ctx      context.Context
	cancel   context.CancelFunc
	wake     chan struct{} // tells the sender to look again; buffered, never blocks
	done     chan struct{} // closed when the sender has stopped
	canceled chan struct{}

	mu           sync.Mutex
	spool        traceSpool
	masker       *traceMasker
	unsettled    bool // the masker has gathered bytes since it last passed on all it could
	truncated    bool
	acked        int64 // the coordinator's trace length as last known; the next part starts here
	highAcked    int64 // the largest acked ever
	flushTo      int64
	pendingSince time.Time // since when unsent bytes wait
	lastReq      time.Time
	closed       bool
	err          error
	status       BuildState
	wasCanceled  bool
	legacy       bool // the coordinator has no PATCH endpoint: send full updates
	answered     bool // a PATCH got a 202 or 416
	noProgress   int
	progress     chan struct{} // closed and replaced whenever acked changes or the writer fails
	stats        TraceStats

	sendBuf []byte // the sender's
}

// NewTraceWriter starts a writer of the trace of build buildID. Its goroutine runs until Close or until ctx ends;
// ctx ending stops every request and wait at once and fails the writer.
func (c *Client) NewTraceWriter(ctx context.Context, buildID int64, opts *TraceOptions) (*TraceWriter, error) {
	var o TraceOptions
	if opts != nil {
		o = *opts
	}
	return c.newTraceWriter(ctx, buildID, o, nil)
}

// NewBuildTraceWriter starts a writer of b's trace, with b's token unless opts gives one, masking b's secrets
// besides those in opts.
func (c *Client) NewBuildTraceWriter(ctx context.Context, b *Build, opts *TraceOptions) (*TraceWriter, error) {
	if b == nil {
		return nil, errors.New("runnerapi: NewBuildTraceWriter: nil build")
	}
	var o TraceOptions
	if opts != nil {
		o = *opts
	}
	if o.Token == "" {
		o.Token = b.Token
	}
	return c.newTraceWriter(ctx, b.ID, o, b.Secrets())
}

func (c *Client) newTraceWriter(ctx context.Context, id int64, o TraceOptions, more []string) (*TraceWriter, error) {
	token, err := c.buildTokenFor(callConfig{token: o.Token}, "TraceWriter")
	if err != nil {
		return nil, err
	}
	if o.ChunkSize < 0 || o.FlushInterval < 0 || o.MemoryLimit < 0 || o.OutputLimit < 0 || o.AttemptTimeout < 0 || o.MaxRangeErrors < 0 {
		return nil, errors.New("runnerapi: TraceOptions: negative value")
	}
	w := &TraceWriter{
		c:              c,
		id:             id,
		token:          token,
		chunk:          cmp.Or(o.ChunkSize, DefaultTraceChunkSize),
		interval:       cmp.Or(o.FlushInterval, DefaultTraceFlushInterval),
		keepAlive:      cmp.Or(o.KeepAlive, DefaultTraceKeepAlive),
		attemptTimeout: cmp.Or(o.AttemptTimeout, cmp.Or(c.timeout, DefaultTimeout)),
		maxRange:       cmp.Or(o.MaxRangeErrors, DefaultTraceMaxRangeErrors),
		limit:          o.OutputLimit,
		sleep:          o.sleep,
		wake:           make(chan struct{}, 1),
		done:           make(chan struct{}),
		canceled:       make(chan struct{}),
		progress:       make(chan struct{}),
		lastReq:        time.Now(),
	}
	if w.sleep == nil {
		w.sleep = sleepCtx
	}
	if u, err := c.baseURL.Parse(tracePath(id)); err == nil {
		w.url = redactURL(u)
	}
	w.spool = traceSpool{memLimit: cmp.Or(o.MemoryLimit, DefaultTraceMemoryLimit), dir: o.TempDir}
	secrets := append(append([]string{token, c.runnerToken}, more...), o.Secrets...)
	w.secrets = secrets
	w.masker = newTraceMasker(secrets)
	w.sendBuf = make([]byte, w.chunk)
	w.ctx, w.cancel = context.WithCancel(ctx)
	go w.run()
	return w, nil
}

// Write records p in the trace and returns len(p), nil. It does no network I/O and does not keep p. Once the trace
// is past the memory limit, the Write that fills a block of the spool (one in about a mebibyte of trace) also
// writes that block to the temporary files, without holding up other Writes. After a fatal error Write returns
// that error; after Close, ErrClosed.
func (w *TraceWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	if m := w.masker; m != nil && w.unsettled && len(p) < m.window-len(m.pend) && w.err == nil && !w.closed {
		// The common case: p only joins the bytes the masker gathers, which the sender already knows to wait
		// for, so there is nothing else to do.
		m.pend = append(m.pend, p...)
		w.stats.Written += int64(len(p))
		w.mu.Unlock()
		return len(p), nil
	}
	n, err := w.writeLocked(p)
	var job traceSpoolBlockToFile
	var fileNow bool
	if w.spool.toFileSoon {
		w.spool.toFileSoon = false
		job, fileNow = w.spool.fileLater()
	}
	w.mu.Unlock()
	if fileNow {
		// The spool filled a block: write it to the spool's file here, outside the lock, so that neither other
		// Writes nor the sender wait for the disk.
		w.fileBlocks(job)
	}
	return n, err
}

// writeLocked is Write under the lock.
func (w *TraceWriter) writeLocked(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.closed {
		return 0, ErrClosed
	}
	written := len(p)
	before := w.spool.size - w.acked
	waited := before > 0 || w.unsettled
	w.stats.Written += int64(written)
	if w.masker == nil {
		w.record(p)
	} else {
		w.masker.write(p, w)
		w.unsettled = true
	}
	if w.err != nil {
		return 0, w.err
	}
	after := w.spool.size - w.acked
	if !waited && (after > 0 || w.unsettled) {
		w.pendingSince = time.Now()
		w.signal()
	} else if before < int64(w.chunk) && after >= int64(w.chunk) {
		w.signal()
	}
	return written, nil
}

// fileBlocks writes job, from the spool's fileLater, to the spool's file, and then any block that filled
// meanwhile. It is called without the lock.
func (w *TraceWriter) fileBlocks(job traceSpoolBlockToFile) {
	for {
		err := job.write()
		w.mu.Lock()
		switch {
		case err == nil:
			w.spool.filed(job.off)
		case !w.spool.released:
			// Once released (a Close that finished meanwhile), the spool is gone and the write was moot.
			w.failLocked(err)
		}
		w.spool.doneFiling()
		var more bool
		if err == nil {
			job, more = w.spool.fileLater()
		}
		w.mu.Unlock()
		if !more {
			return
		}
	}
}

// put takes the masker's output.
func (w *TraceWriter) put(b []byte) { w.record(b) }

// record adds masked bytes to the spool, up to the output limit.
func (w *TraceWriter) record(b []byte) {
	if w.limit > 0 {
		room := w.limit - w.spool.size
		if w.truncated {
			return
		}
		if int64(len(b)) > room {
			w.append(b[:room])
			w.truncated = true
			w.append([]byte("\n[runnerapi: the trace was truncated here: it reached its limit of " +
				strconv.FormatInt(w.limit, 10) + " bytes]\n"))
			return
		}
	}
	w.append(b)
}

func (w *TraceWriter) append(b []byte) {
	if err := w.spool.append(b); err != nil {
		w.failLocked(err)
	}
}

// commitTail records what the masker holds back: nothing more is coming, or everything is needed now.
func (w *TraceWriter) commitTail() {
	if w.masker == nil || w.err != nil {
		return
	}
	if w.spool.size == w.acked && !w.unsettled {
		w.pendingSince = time.Now()
	}
	w.masker.flush(w)
	w.unsettled = false
}

func (w *TraceWriter) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// failLocked makes err the writer's sticky error unless it already has one.
func (w *TraceWriter) failLocked(err error) {
	if w.err == nil {
		scrubError(err, w.secrets)
		w.err = err
		close(w.progress)
		w.progress = make(chan struct{})
	}
}

func (w *TraceWriter) fail(err error) {
	w.mu.Lock()
	w.failLocked(err)
	w.mu.Unlock()
}

// Flush returns once everything written before it has been acknowledged by the coordinator, the writer failed, or
// ctx ended. Everything written means everything: the few bytes that masking holds back in case they begin a
// secret are sent too, so a secret split across a Flush is not masked. Flush between whole lines.
func (w *TraceWriter) Flush(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return ErrClosed
	}
	w.commitTail()
	target := w.spool.size
	w.flushTo = max(w.flushTo, target)
	w.signal()
	for {
		if w.err != nil {
			return w.err
		}
		if w.acked >= target {
			return nil
		}
		ch := w.progress
		w.mu.Unlock()
		select {
		case <-ch:
		case <-w.done:
		case <-ctx.Done():
			w.mu.Lock()
			return fmt.Errorf("runnerapi: flushing the trace of build %d: %w", w.id, ctx.Err())
		}
		w.mu.Lock()
	}
}

// Close sends what is left, waits until the coordinator has acknowledged every byte, stops the writer's goroutine
// and removes its temporary files. It returns the writer's first fatal error, on every call. Close is bounded by the
// retry policy and the attempt timeout; CloseContext bounds it further.
func (w *TraceWriter) Close() error {
	return w.CloseContext(context.Background())
}

// CloseContext is Close bounded by ctx: when ctx ends first, sending stops and the error says so.
func (w *TraceWriter) CloseContext(ctx context.Context) error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		w.commitTail()
		w.signal()
	}
	w.mu.Unlock()
	select {
	case <-w.done:
	default:
		// Not finished yet: wait, but no longer than ctx allows.
		select {
		case <-w.done:
		case <-ctx.Done():
			w.fail(fmt.Errorf("runnerapi: closing the trace of build %d: %w", w.id, ctx.Err()))
			w.cancel()
			<-w.done
		}
	}
	w.cancel()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Canceled returns a channel closed once the coordinator says the build was canceled or failed. The writer goes
// on accepting and sending the trace; the caller decides when to stop.
func (w *TraceWriter) Canceled() <-chan struct{} { return w.canceled }

// Status returns the build's status from the coordinator's last answer; empty before the first.
func (w *TraceWriter) Status() BuildState {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.status
}

// Format prints the writer as the build it writes for, for every verb: never its token or the secrets it masks,
// which fmt would otherwise show from its fields.
func (w *TraceWriter) Format(f fmt.State, verb rune) {
	_, _ = fmt.Fprintf(f, "runnerapi.TraceWriter{build %d}", w.id)
}

// plainTraceOptions has no methods, so fmt and encoding/json treat it as a plain struct.
type plainTraceOptions TraceOptions

// redacted returns the options with the token and the secrets masked.
func (o TraceOptions) redacted() plainTraceOptions {
	r := plainTraceOptions(o)
	r.Token = maskNonEmpty(o.Token)
	r.Secrets = convertAll(o.Secrets, maskNonEmpty)
	return r
}

// Format prints the options with the token and the secrets masked, for every verb.
func (o TraceOptions) Format(f fmt.State, verb rune) {
	_, _ = fmt.Fprintf(f, fmt.FormatString(f, verb), o.redacted())
}

// LogValue logs the options with the token and the secrets masked.
func (o TraceOptions) LogValue() slog.Value { return slog.AnyValue(o.redacted()) }

// MarshalJSON encodes the options with the token and the secrets masked, for log handlers that marshal values.
func (o TraceOptions) MarshalJSON() ([]byte, error) { return json.Marshal(o.redacted()) }

// Stats returns counts of what the writer did so far.
func (w *TraceWriter) Stats() TraceStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.stats
	s.Length = w.spool.size
	s.Acknowledged = w.acked
	return s
}

// run is the sender: it waits until a part is due, sends it, and stops once closed and everything is
// acknowledged, on a fatal error, or when the writer's context ends.
func (w *TraceWriter) run() {
	timer := time.NewTimer(time.Hour)
	defer func() {
		timer.Stop()
		w.mu.Lock()
		if err := w.spool.release(); err != nil {
			w.failLocked(err)
		}
		w.mu.Unlock()
		close(w.done)
	}()
	for {
		if err := w.ctx.Err(); err != nil {
			w.fail(fmt.Errorf("runnerapi: trace of build %d: %w", w.id, context.Cause(w.ctx)))
			return
		}
		w.mu.Lock()
		if w.err != nil {
			w.mu.Unlock()
			return
		}
		if job, ok := w.spool.fileLater(); ok {
			// A full block nobody has filed yet: one that filled while the sender settled the masker, or while
			// a Write was filing the one before.
			w.mu.Unlock()
			w.fileBlocks(job)
			continue
		}
		now := time.Now()
		if w.unsettled && !now.Before(w.pendingSince.Add(w.interval)) {
			// Bytes have waited long enough in the masker's window: search them now, so they can be sent.
			w.unsettled = false
			w.masker.settle(w)
			if w.spool.toFileSoon || w.err != nil {
				// Look again: a block to file, or a failure.
				w.spool.toFileSoon = false
				w.mu.Unlock()
				continue
			}
		}
		unsent := w.spool.size - w.acked
		if w.closed && unsent <= 0 {
			w.mu.Unlock()
			return
		}
		due := unsent > 0 && (w.closed || w.flushTo > w.acked || !now.Before(w.pendingSince.Add(w.interval)) ||
			(!w.legacy && unsent >= int64(w.chunk)))
		keepAlive := !due && unsent <= 0 && !w.legacy && w.keepAlive > 0 && !now.Before(w.lastReq.Add(w.keepAlive))
		var wait time.Duration = -1
		switch {
		case due || keepAlive:
		case unsent > 0 || w.unsettled:
			wait = w.pendingSince.Add(w.interval).Sub(now)
		case !w.legacy && w.keepAlive > 0:
			wait = w.lastReq.Add(w.keepAlive).Sub(now)
		}
		legacy := w.legacy
		w.mu.Unlock()

		switch {
		case due && legacy:
			w.sendFull(false, nil)
			continue
		case due || keepAlive:
			w.sendPart()
			continue
		}
		var tc <-chan time.Time
		if wait >= 0 {
			timer.Reset(wait)
			tc = timer.C
		}
		select {
		case <-w.wake:
		case <-tc:
		case <-w.ctx.Done():
		}
		timer.Stop()
	}
}

// sendPart sends the next part (empty for a keep-alive) from the coordinator's length on, retrying transient
// failures, and reconciles with the answer.
func (w *TraceWriter) sendPart() {
	w.mu.Lock()
	start := w.acked
	end := min(w.spool.size, start+int64(w.chunk))
	part := w.sendBuf[:end-start]
	cut := time.Now()
	view, err := w.spool.readLater(start, len(part))
	if err != nil {
		w.mu.Unlock()
		w.fail(err)
		return
	}
	// Copy the part without holding up Write.
	w.mu.Unlock()
	err = view.copyTo(part)
	w.mu.Lock()
	w.spool.doneReading()
	w.mu.Unlock()
	if err != nil {
		w.fail(err)
		return
	}
	for failures := 0; ; {
		res, resp, err := w.attempt(start, part)
		w.mu.Lock()
		w.stats.Requests++
		w.lastReq = time.Now()
		w.mu.Unlock()
		var re *RangeError
		switch {
		case err == nil:
			w.reconcile(start, end, res.Length, res.Status, cut, false)
			return
		case errors.As(err, &re):
			w.reconcile(start, end, re.Length, re.Status, cut, true)
			return
		case w.ctx.Err() != nil:
			w.fail(fmt.Errorf("runnerapi: trace of build %d: %w", w.id, context.Cause(w.ctx)))
			return
		case errors.Is(err, ErrNotFound) && start == 0 && !w.isAnswered():
			w.fallBack(err)
			return
		case !IsTransient(err):
			w.fail(fmt.Errorf("runnerapi: trace of build %d: %w", w.id, err))
			return
		}
		failures++
		if failures > w.c.retry.MaxRetries {
			w.fail(fmt.Errorf("runnerapi: trace of build %d: giving up after %d attempts: %w", w.id, failures, err))
			return
		}
		var ra time.Duration
		if resp != nil && resp.Response != nil {
			ra = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		}
		if serr := w.sleep(w.ctx, w.c.retry.backoff(failures, ra)); serr != nil {
			w.fail(fmt.Errorf("runnerapi: trace of build %d: %w while waiting to retry after: %w", w.id, serr, err))
			return
		}
		w.mu.Lock()
		w.stats.Retries++
		w.mu.Unlock()
	}
}

func (w *TraceWriter) isAnswered() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.answered
}

// attempt sends one part once, within the attempt timeout; a timeout of the attempt alone is a transport failure.
func (w *TraceWriter) attempt(start int64, part []byte) (*TraceAppend, *Response, error) {
	ctx, cancel := context.WithTimeout(w.ctx, w.attemptTimeout)
	defer cancel()
	var body *traceBodyReader
	if len(part) > 0 {
		body = newTraceBodyReader(part)
	}
	res, resp, err := w.c.appendTrace(ctx, w.id, start, part, body, w.token, call{retry: retryNever, secrets: w.secrets})
	if body != nil {
		// part is the sender's buffer: reuse it only once the transport is done with it.
		t := time.NewTimer(time.Second)
		select {
		case <-body.closed:
		case <-t.C:
			w.sendBuf = make([]byte, w.chunk)
		case <-w.ctx.Done():
			w.sendBuf = make([]byte, w.chunk)
		}
		t.Stop()
	}
	if err != nil && w.ctx.Err() == nil && ctx.Err() != nil {
		err = &TransportError{Method: http.MethodPatch, URL: w.url, Err: fmt.Errorf("no answer within %v", w.attemptTimeout)}
	}
	return res, resp, err
}

// reconcile takes the coordinator's length n, from a 202 (or a 416 when rangeErr) to the part [start, end).
func (w *TraceWriter) reconcile(start, end, n int64, status BuildState, cut time.Time, rangeErr bool) {
	w.mu.Lock()
	w.answered = true
	w.observeLocked(status)
	if rangeErr {
		w.stats.RangeRecoveries++
	}
	// A 202 that grew the trace is progress; a 416 only when it says more than ever before, so that answers going
	// back and forth between two lengths end.
	switch {
	case !rangeErr && (n > start || start == end && n == start):
		w.noProgress = 0
	case rangeErr && n > w.highAcked:
		w.noProgress = 0
	default:
		w.noProgress++
		if w.noProgress > w.maxRange {
			w.failLocked(fmt.Errorf("runnerapi: trace of build %d: %d answers in a row without progress; the coordinator's trace has %d bytes, the part started at %d",
				w.id, w.noProgress, n, start))
			w.mu.Unlock()
			return
		}
	}
	size := w.spool.size
	if n > size {
		w.mu.Unlock()
		// The coordinator holds more than was written: a trace from an earlier attempt of the build.
		w.sendFull(true, fmt.Errorf("the coordinator's trace has %d bytes, more than the %d written", n, size))
		return
	}
	w.setAckedLocked(n)
	if w.spool.size > w.acked {
		w.pendingSince = cut
	}
	w.mu.Unlock()
}

func (w *TraceWriter) setAckedLocked(n int64) {
	w.highAcked = max(w.highAcked, n)
	if n != w.acked {
		w.acked = n
		close(w.progress)
		w.progress = make(chan struct{})
	}
}

// observeLocked takes the build's status from an answer.
func (w *TraceWriter) observeLocked(status BuildState) {
	if status == "" {
		return
	}
	w.status = status
	if (status == StateCanceled || status == StateFailed) && !w.wasCanceled {
		w.wasCanceled = true
		close(w.canceled)
	}
}

// fallBack serves a coordinator without the PATCH endpoint (GitLab before 8.7 answers its first part with 404)
// with full-trace updates from now on.
func (w *TraceWriter) fallBack(notFound error) {
	if w.c.runnerToken == "" {
		w.fail(fmt.Errorf("runnerapi: trace of build %d: the coordinator has no trace endpoint, and sending the whole trace instead needs the runner token (WithRunnerToken): %w", w.id, notFound))
		return
	}
	w.mu.Lock()
	w.legacy = true
	w.mu.Unlock()
	w.sendFull(false, nil)
}

// sendFull replaces the coordinator's trace with everything written so far through Update with the runner token.
// why says why when the PATCH endpoint's state forced it; then a missing runner token is an error.
func (w *TraceWriter) sendFull(forced bool, why error) {
	if w.c.runnerToken == "" {
		if why == nil {
			why = errors.New("the trace must be sent whole")
		}
		w.fail(fmt.Errorf("runnerapi: trace of build %d: %w; replacing it needs the runner token (WithRunnerToken)", w.id, why))
		return
	}
	w.mu.Lock()
	if forced {
		w.noProgress++
		if w.noProgress > w.maxRange {
			w.failLocked(fmt.Errorf("runnerapi: trace of build %d: %w, again after %d full updates", w.id, why, w.noProgress))
			w.mu.Unlock()
			return
		}
	}
	size := w.spool.size
	cut := time.Now()
	view, err := w.spool.readLater(0, int(size))
	w.mu.Unlock()
	if err != nil {
		w.fail(err)
		return
	}
	// Gather the whole trace without holding up Write, which goes on appending meanwhile.
	var sb strings.Builder
	sb.Grow(int(size))
	err = view.writeTo(&sb, w.sendBuf)
	w.mu.Lock()
	w.spool.doneReading()
	w.mu.Unlock()
	if err != nil {
		w.fail(err)
		return
	}
	trace := sb.String()
	// Update bounds each of its attempts with the client's timeout and retries transient failures itself.
	resp, err := w.c.Builds.Update(w.ctx, w.id, &UpdateOptions{State: StateRunning, Trace: &trace})
	w.mu.Lock()
	defer w.mu.Unlock()
	if resp != nil && resp.Attempts > 0 {
		w.stats.Requests += int64(resp.Attempts)
		w.stats.Retries += int64(resp.Attempts - 1)
	} else {
		w.stats.Requests++
	}
	w.lastReq = time.Now()
	if err != nil {
		if w.ctx.Err() != nil {
			err = context.Cause(w.ctx)
		}
		w.failLocked(fmt.Errorf("runnerapi: trace of build %d: replacing the whole trace: %w", w.id, err))
		return
	}
	w.stats.FullUpdates++
	w.setAckedLocked(size)
	if w.spool.size > w.acked {
		w.pendingSince = cut
	}
}
