package runnerapi

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"strconv"
	"sync"
	"time"
)

// Defaults of TraceOptions.
const (
	// DefaultTraceChunkSize is the largest part a TraceWriter sends, and the amount of unsent bytes that makes it
	// send at once.
	DefaultTraceChunkSize = 1 << 20
	// DefaultTraceFlushInterval is how long a TraceWriter lets written bytes wait before sending them, until the
	// coordinator asks for another interval (the runner API v4's X-GitLab-Trace-Update-Interval).
	DefaultTraceFlushInterval = 3 * time.Second
	// DefaultTraceKeepAlive is how long a TraceWriter stays silent before an empty part asks the build's status.
	DefaultTraceKeepAlive = 30 * time.Second
	// DefaultTraceMemoryLimit is how much of a trace a TraceWriter keeps in memory before moving it to a file.
	DefaultTraceMemoryLimit = 4 << 20
	// DefaultTraceMaxRangeErrors is how many 416 answers in a row without progress make a TraceWriter give up.
	DefaultTraceMaxRangeErrors = 10
	// DefaultTraceStopGrace is how long a TraceWriter goes on delivering the trace once its context has ended:
	// time enough for what a stopped runner's last flush interval held back, and within the 10 seconds that
	// docker stop and most service managers leave between the signal and the kill.
	DefaultTraceStopGrace = 10 * time.Second
	// DefaultTraceConfirmDelay is how long after an abandoned attempt a TraceWriter's Close waits before it asks
	// the coordinator's length (see Close).
	DefaultTraceConfirmDelay = 5 * time.Second
)

// The bounds of an update interval the coordinator asks for: GitLab asks 3 or 30 seconds; gitlab-runner caps what
// it takes at 15 minutes, and a second keeps a hostile answer from making the writer spin.
const (
	minTraceUpdateInterval = time.Second
	maxTraceUpdateInterval = 15 * time.Minute
)

// traceConfirmRounds bounds how often Close asks the coordinator's length, repairing in between.
const traceConfirmRounds = 4

// ErrClosed is returned by Write and Flush on a TraceWriter that was closed.
var ErrClosed = errors.New("runnerapi: trace writer closed")

// TraceOptions configure a TraceWriter. Zero values mean the defaults.
type TraceOptions struct {
	// Token is the build token; when empty, the Build's (NewBuildTraceWriter) or the client's WithBuildToken.
	Token string
	// Secrets are replaced by "[MASKED]" in the trace, besides the build token, the client's runner token and,
	// for NewBuildTraceWriter, the build's own secrets (Build.Secrets), also when split across Writes (but not
	// across a Flush). These are masked whatever their length, as is a token given here or to the client: the
	// caller chose them, and has no other way to keep a short one out of the trace. Only the build's own
	// secrets shorter than MinTraceSecret are left alone.
	Secrets []string
	// ChunkSize is the largest part sent at once (DefaultTraceChunkSize).
	ChunkSize int
	// FlushInterval is the longest written bytes wait before they are sent. When zero, DefaultTraceFlushInterval
	// until the coordinator asks for an interval of its own (runner API v4), which is then followed, between a
	// second and 15 minutes; when set, it is kept whatever the coordinator asks.
	FlushInterval time.Duration
	// KeepAlive is the silence after which an empty part asks the build's status (DefaultTraceKeepAlive);
	// negative turns keep-alives off.
	KeepAlive time.Duration
	// MemoryLimit is how many bytes of the trace are kept in memory before the trace moves to temporary files
	// (DefaultTraceMemoryLimit): a few, of growing sizes, so that Close can free them in parallel.
	MemoryLimit int
	// TempDir is where those files are made (os.TempDir when empty). They have no name there where the system
	// allows it (all but Windows), so that a crash leaves none behind, and are gone after Close.
	TempDir string
	// OutputLimit, when positive, is the most bytes of the trace recorded; past it one line says the trace was
	// truncated and the rest is dropped.
	OutputLimit int64
	// AttemptTimeout bounds each request (the client's WithTimeout, or DefaultTimeout when that is zero).
	AttemptTimeout time.Duration
	// MaxRangeErrors is how many 416 answers in a row without progress end in an error
	// (DefaultTraceMaxRangeErrors).
	MaxRangeErrors int
	// StopGrace is how long the writer goes on delivering what was written once its context has ended
	// (DefaultTraceStopGrace), so that a Close after a signal still delivers the trace; negative stops it at
	// once.
	StopGrace time.Duration
	// ConfirmDelay is how long after an abandoned attempt Close waits before it asks the coordinator's length
	// (DefaultTraceConfirmDelay): the abandoned request may still land, and cut the trace back (see Close).
	ConfirmDelay time.Duration

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
	// FullUpdates counts the times the whole trace was sent in an update (PUT builds/:id), to a coordinator
	// without the PATCH endpoint or one holding more than was written.
	FullUpdates int64
}

// TraceWriter streams one build's trace to the coordinator. Write only copies into the writer's spool; one
// goroutine per writer sends the trace in parts, reconciles with the coordinator's idea of its length, and retries
// through transient failures. Close reports the upload's fate: call it, or cancel the writer's context (the
// goroutine then stops after TraceOptions.StopGrace), so that the goroutine and the spool's temporary files go away.
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
	stopGrace      time.Duration
	confirmDelay   time.Duration
	limit          int64
	sleep          func(context.Context, time.Duration) error

	ctx    context.Context
	cancel context.CancelCauseFunc // stops the sender; the cause says why
	// stopAfter undoes the link from the caller's context to cancel.
	stopAfter func() bool
	wake      chan struct{} // tells the sender to look again; buffered, never blocks
	done      chan struct{} // closed when the sender has stopped
	canceled  chan struct{}
	// cancelRequested is closed when the coordinator asks for a graceful cancel.
	cancelRequested chan struct{}
	// fixedInterval says that interval is the caller's, not to be changed by the coordinator's answers.
	fixedInterval bool

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
	stopped      error // why the sender stopped without a fatal error; a later Write fails with it
	finished     bool  // the sender has stopped
	ending       bool  // the writer's context has ended: send everything now, stop after the grace
	graceTimer   *time.Timer
	// confirmOwed says that the coordinator's length must be asked before Close reports success: an attempt was
	// abandoned (then not before confirmAfter), or a 202 was taken on trust.
	confirmOwed bool
	abandonOwed bool  // for an abandoned attempt
	abandonedAt int64 // the start of the first attempt abandoned since the last proof, when abandonOwed
	// replaceOwed says that attempts at different starts were abandoned since the last proof, on an API that can
	// replace the whole trace: landing out of order they may leave zeros the length does not show, so Close
	// replaces the trace before it confirms the length.
	replaceOwed        bool
	confirming         bool // the part in flight is Close's confirmation
	confirmAfter       time.Time
	confirmRounds      int
	status             BuildState
	wasCanceled        bool
	wasCancelRequested bool
	crc                uint32 // CRC-32 (IEEE) of the spool's bytes, kept as they are recorded
	legacy             bool   // the coordinator has no PATCH endpoint: send full updates
	legacyRounds       int    // full updates sent since the fallback, probes included
	answered           bool   // a PATCH got a 202 or 416
	noProgress         int
	progress           chan struct{} // closed and replaced whenever acked changes or the writer fails
	stats              TraceStats

	// sendBuf is the sender's, for a part it must copy (see partLocked), taken when first needed: a trace that
	// stays in the spool's memory never needs it.
	sendBuf []byte
	// fileBodyOpen, when not nil, is closed once the transport has closed the last part's body read from the
	// spool's file; until then no other part is sent from the file, whose position that body uses.
	fileBodyOpen <-chan struct{}
	// sendfile says the coordinator is spoken to in plain HTTP, over a TCP connection to which net/http hands a
	// file body's descriptor (sendfile). Over TLS a body is read like any other, and a part of the spool's file is
	// read by offset, which shares nothing between bodies.
	sendfile bool
}

// NewTraceWriter starts a writer of the trace of build buildID. Its goroutine runs until Close, or until the grace
// after ctx ends (TraceOptions.StopGrace). Once ctx has ended, keep-alives stop and everything written is sent at
// once, so that a program stopped by a signal (ctx from signal.NotifyContext) still delivers its whole trace with
// Close; when the grace has passed the writer stops, and fails unless the coordinator had acknowledged every byte.
func (c *Client) NewTraceWriter(ctx context.Context, buildID int64, opts *TraceOptions) (*TraceWriter, error) {
	var o TraceOptions
	if opts != nil {
		o = *opts
	}
	return c.newTraceWriter(ctx, buildID, o, "", nil)
}

// MinTraceSecret is the length in bytes below which NewBuildTraceWriter does not mask a secret of the build (its
// token, non-public variables, repo_url credentials, registry passwords) in the trace. GitLab refuses to mask
// values shorter than 8 characters: masking a variable DEBUG=1 would turn "Step 1 of 10" into
// "Step [MASKED] of [MASKED]0", and a 2-character token would eat pieces of every hash in the log.
const MinTraceSecret = 8

// NewBuildTraceWriter starts a writer of b's trace, with b's token unless opts gives one, masking b's secrets
// of MinTraceSecret bytes or more besides those in opts.
func (c *Client) NewBuildTraceWriter(ctx context.Context, b *Build, opts *TraceOptions) (*TraceWriter, error) {
	if b == nil {
		return nil, errors.New("runnerapi: NewBuildTraceWriter: nil build")
	}
	var o TraceOptions
	if opts != nil {
		o = *opts
	}
	var masked []string
	for _, s := range b.Secrets() {
		if len(s) >= MinTraceSecret {
			masked = append(masked, s)
		}
	}
	return c.newTraceWriter(ctx, b.ID, o, b.Token, masked)
}

// NewJobTraceWriter starts a writer of a v4 job's trace, with the job's token unless opts gives one, masking the
// job's secrets (Job.Secrets) of MinTraceSecret bytes or more besides those in opts, as NewBuildTraceWriter does
// for a build.
func (c *Client) NewJobTraceWriter(ctx context.Context, j *Job, opts *TraceOptions) (*TraceWriter, error) {
	if j == nil {
		return nil, errors.New("runnerapi: NewJobTraceWriter: nil job")
	}
	var o TraceOptions
	if opts != nil {
		o = *opts
	}
	return c.newTraceWriter(ctx, j.ID, o, j.Token, longSecrets(j.Secrets()))
}

// newTraceWriter starts a writer of build id's trace. buildToken is the build's own token, used when o gives
// none; masked are the build's secrets to mask.
func (c *Client) newTraceWriter(ctx context.Context, id int64, o TraceOptions, buildToken string, masked []string) (*TraceWriter, error) {
	tokenGiven := o.Token != "" || buildToken == ""
	token, err := c.buildTokenFor(callConfig{token: cmp.Or(o.Token, buildToken)}, "TraceWriter")
	if err != nil {
		return nil, err
	}
	if o.ChunkSize < 0 || o.FlushInterval < 0 || o.MemoryLimit < 0 || o.OutputLimit < 0 || o.AttemptTimeout < 0 || o.MaxRangeErrors < 0 ||
		o.ConfirmDelay < 0 {
		return nil, errors.New("runnerapi: TraceOptions: negative value")
	}
	w := &TraceWriter{
		c:               c,
		sendfile:        c.baseURL.Scheme == "http",
		id:              id,
		token:           token,
		chunk:           cmp.Or(o.ChunkSize, DefaultTraceChunkSize),
		interval:        cmp.Or(o.FlushInterval, DefaultTraceFlushInterval),
		keepAlive:       cmp.Or(o.KeepAlive, DefaultTraceKeepAlive),
		attemptTimeout:  cmp.Or(o.AttemptTimeout, cmp.Or(c.timeout, DefaultTimeout)),
		maxRange:        cmp.Or(o.MaxRangeErrors, DefaultTraceMaxRangeErrors),
		stopGrace:       cmp.Or(o.StopGrace, DefaultTraceStopGrace),
		confirmDelay:    cmp.Or(o.ConfirmDelay, DefaultTraceConfirmDelay),
		limit:           o.OutputLimit,
		sleep:           o.sleep,
		wake:            make(chan struct{}, 1),
		done:            make(chan struct{}),
		canceled:        make(chan struct{}),
		cancelRequested: make(chan struct{}),
		fixedInterval:   o.FlushInterval > 0,
		progress:        make(chan struct{}),
		lastReq:         time.Now(),
	}
	if w.sleep == nil {
		w.sleep = sleepCtx
	}
	if u, err := c.baseURL.Parse(c.wire.tracePath(id)); err == nil {
		w.url = redactURL(u)
	}
	w.spool = traceSpool{memLimit: cmp.Or(o.MemoryLimit, DefaultTraceMemoryLimit), dir: o.TempDir}
	// Errors are scrubbed of the tokens whatever their length, since requests carry them and answers may echo
	// them; the trace only of what is masked there.
	secrets := append(append([]string{c.runnerToken}, masked...), o.Secrets...)
	if tokenGiven || len(token) >= MinTraceSecret {
		secrets = append(secrets, token)
	}
	w.secrets = append(secrets, token)
	w.masker = newTraceMasker(secrets)
	// The sender's context is its own, so that every reason to stop it comes with a cause that says why.
	w.ctx, w.cancel = context.WithCancelCause(newConnWait(context.WithoutCancel(ctx), c.baseURL.Scheme == "https"))
	w.stopAfter = context.AfterFunc(ctx, func() { w.contextEnded(ctx) })
	go w.run()
	return w, nil
}

// contextEnded makes everything written due at once, and stops the sender after the grace: a program stopped by
// a signal ends the writer's context, and then calls Close.
func (w *TraceWriter) contextEnded(ctx context.Context) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.finished {
		return
	}
	if w.stopGrace < 0 {
		w.cancel(fmt.Errorf("runnerapi: trace of build %d: %w", w.id, contextError(ctx)))
		return
	}
	w.ending = true
	w.signal()
	w.graceTimer = time.AfterFunc(w.stopGrace, func() {
		w.cancel(fmt.Errorf("runnerapi: trace of build %d: its context ended %v ago: %w", w.id, w.stopGrace, contextError(ctx)))
	})
}

// contextError is ctx's error, with its cause when that says more.
func contextError(ctx context.Context) error {
	err := ctx.Err()
	if cause := context.Cause(ctx); cause != nil && cause != err {
		return fmt.Errorf("%w: %w", err, cause)
	}
	return err
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
	if w.stopped != nil {
		// Nobody will send p: the writer fails, so that Close does not report a trace without it as whole.
		w.failLocked(w.stopped)
		return 0, w.err
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
		err := w.fileJob(job)
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

// fileJob writes job, from the spool's fileLater, to the spool's file and records it done. It is called without
// the lock and returns with it held.
func (w *TraceWriter) fileJob(job traceSpoolBlockToFile) error {
	err := job.write()
	w.mu.Lock()
	switch {
	case err == nil:
		w.spool.filed(job)
	case !w.spool.released:
		// Once released (a Close that finished meanwhile), the spool is gone and the write was moot.
		w.failLocked(err)
	}
	w.spool.doneFiling()
	return err
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
		return
	}
	w.crc = crc32.Update(w.crc, crc32.IEEETable, b)
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
	if w.stopped != nil {
		// Stopped with nothing owed (else it would have failed), and every later Write fails.
		return nil
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
// retry policy, the attempt timeout and, after an abandoned attempt, ConfirmDelay; by StopGrace once the writer's
// context has ended; CloseContext bounds it further.
//
// An attempt abandoned at the attempt timeout (or answered 504 by a gateway) may still reach the coordinator, and
// GitLab 8.x applies a part by cutting the trace back to the part's start before appending it (padding with zero
// bytes a trace shorter than that start): such a late part silently removes everything sent after it. So after
// any abandoned attempt, Close waits until ConfirmDelay has passed since the last one, asks the coordinator's
// length with an empty part, and resends what it lost, up to 4 times. It does the same without waiting after a
// 202 it could not take at its word (without Range, or claiming more than the part's end).
//
// The length proves the trace while the attempts abandoned since the last proof all started at one offset: the
// coordinator's check had its trace that long, and nothing shortens it below that but such a part, so each lands
// on a trace at least that long and leaves a correct prefix ending at the part's end, which is short of what was
// written, and seen, whenever anything was sent after it. Attempts abandoned at two offsets can land in either
// order, and the earlier one first leaves the later one's start beyond the end: zeros fill the gap, and the length
// can come out right. Then, on the API v1, Close replaces the whole trace (PUT builds/:id, with the runner token;
// an error without one) once ConfirmDelay has passed, and confirms the length after it; an attempt of that update
// abandoned in turn carries the whole, final trace, so it does no harm whenever it lands. The API v4 cannot
// replace a trace, and its GitLab appends without cutting back, so there Close confirms the length only.
//
// A request that lands later than Close's confirmation still goes unseen: no client can rule it out.
func (w *TraceWriter) Close() error {
	return w.CloseContext(context.Background())
}

// CloseContext is Close bounded by ctx: when ctx ends first, sending stops, and the error says so unless the
// coordinator had acknowledged every byte by then: nothing left to send is success, even with an ended ctx.
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
	case <-ctx.Done():
		// The sender decides, once stopped, whether anything was left undone (stopLocked).
		w.cancel(fmt.Errorf("runnerapi: closing the trace of build %d: %w", w.id, ctx.Err()))
		<-w.done
	}
	w.cancel(nil)
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Canceled returns a channel closed once the coordinator says the build was canceled or failed. The writer goes
// on accepting and sending the trace; the caller decides when to stop.
func (w *TraceWriter) Canceled() <-chan struct{} { return w.canceled }

// CancelRequested returns a channel closed once the coordinator asks for a graceful cancel (the runner API v4's
// Job-Status: canceling): stop the script, run after_script, and report the job as usual, which the coordinator
// turns into canceled. It is distinct from Canceled, which says the job is over already; watch both.
func (w *TraceWriter) CancelRequested() <-chan struct{} { return w.cancelRequested }

// TraceOutput is what a final update of the runner API v4 says of the trace, for the coordinator to check it
// against what it stored.
type TraceOutput struct {
	// Checksum is "crc32:" and the CRC-32 (IEEE) of the trace's bytes in 8 lowercase hex digits.
	Checksum string `json:"checksum,omitempty"`
	// Bytesize is the trace's length in bytes.
	Bytesize int64 `json:"bytesize,omitempty"`
}

// Output returns the checksum and length of the trace recorded so far: the bytes sent, secrets masked and the
// output limit applied, computed as they were recorded. Call it after Close, for the final update.
func (w *TraceWriter) Output() TraceOutput {
	w.mu.Lock()
	defer w.mu.Unlock()
	return TraceOutput{Checksum: fmt.Sprintf("crc32:%08x", w.crc), Bytesize: w.spool.size}
}

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
