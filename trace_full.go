package runnerapi

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"
)

const (
	// traceFallbackAfter is how many 404s in a row, with no 202 or 416 ever, make a TraceWriter take the
	// coordinator for one without the PATCH endpoint (GitLab before 8.7, which answers 404 to every part): one 404
	// alone may be a proxy's hiccup.
	traceFallbackAfter = 3
	// traceProbeEvery is how often, in whole-trace updates, a writer that fell back tries a part again instead.
	traceProbeEvery = 8
)

// fallBack serves a coordinator without the PATCH endpoint with whole-trace updates, until a probe finds the
// endpoint (sendWhole).
func (w *TraceWriter) fallBack(notFound error) {
	if w.c.runnerToken == "" {
		w.fail(fmt.Errorf("runnerapi: trace of build %d: the coordinator has no trace endpoint, and sending the whole trace instead needs the runner token (WithRunnerToken): %w", w.id, notFound))
		return
	}
	w.mu.Lock()
	w.legacy = true
	w.legacyRounds = 0
	w.mu.Unlock()
	w.sendWhole()
}

// sendWhole sends the whole trace in the fallback or, every traceProbeEvery times, first tries the next part: a
// coordinator that answers it (upgraded, or whose 404s were a proxy's) gets parts again, without the traffic,
// growing with the trace, of whole updates.
func (w *TraceWriter) sendWhole() {
	w.mu.Lock()
	w.legacyRounds++
	probe := w.legacyRounds%traceProbeEvery == 0
	w.mu.Unlock()
	if probe {
		w.sendPart(true)
		w.mu.Lock()
		back := !w.legacy || w.err != nil
		w.mu.Unlock()
		if back {
			return
		}
	}
	w.sendFull(false, nil)
}

// sendFull replaces the coordinator's trace with everything written so far through an update with the runner
// token, and reports whether it did. why says why when the PATCH endpoint's state (forced), or Close, needs it;
// then a missing runner token is an error.
func (w *TraceWriter) sendFull(forced bool, why error) bool {
	if !w.c.wire.wholeTrace {
		w.fail(fmt.Errorf("runnerapi: trace of job %d: %w, and the %s cannot replace a trace", w.id, why, w.c.wire.name))
		return false
	}
	if w.c.runnerToken == "" {
		if why == nil {
			why = errors.New("the trace must be sent whole")
		}
		w.fail(fmt.Errorf("runnerapi: trace of build %d: %w; replacing it needs the runner token (WithRunnerToken)", w.id, why))
		return false
	}
	w.mu.Lock()
	if forced {
		w.noProgress++
		if w.noProgress > w.maxRange {
			w.failLocked(fmt.Errorf("runnerapi: trace of build %d: %w, again after %d full updates", w.id, why, w.noProgress))
			w.mu.Unlock()
			return false
		}
	}
	size := w.spool.size
	cut := time.Now()
	view, err := w.spool.readLater(0, int(size))
	w.mu.Unlock()
	if err != nil {
		w.fail(err)
		return false
	}
	// The form streams from the spool while Write goes on appending: the view's bytes stay as they are until
	// doneReading, and the bodies are stopped before that.
	resp, err := w.putWhole(view, size)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.spool.doneReading()
	if resp != nil && resp.Attempts > 0 {
		w.stats.Requests += int64(resp.Attempts)
		w.stats.Retries += int64(resp.Attempts - 1)
	} else {
		w.stats.Requests++
	}
	w.lastReq = time.Now()
	if err != nil {
		if w.ctx.Err() != nil {
			return false // run stops
		}
		w.failLocked(fmt.Errorf("runnerapi: trace of build %d: replacing the whole trace: %w", w.id, err))
		return false
	}
	w.stats.FullUpdates++
	w.setAckedLocked(size)
	if w.spool.size > w.acked {
		w.pendingSince = cut
	}
	return true
}

// putWhole sends PUT builds/:id with state=running and the size bytes of view as the trace, as Update does, but
// streaming the form from the view instead of building it in memory.
func (w *TraceWriter) putWhole(view traceSpoolView, size int64) (*Response, error) {
	token := w.c.runnerToken
	head := "state=" + string(StateRunning) + "&token=" + url.QueryEscape(token) + "&trace="
	length, err := traceFormLength(&view, size, make([]byte, traceFormRead))
	if err != nil {
		return nil, err
	}
	req, err := w.c.NewRequest(w.ctx, http.MethodPut, w.c.wire.jobPath(w.id), nil)
	if err != nil {
		return nil, err
	}
	// Each attempt has a body of its own: the transport may still be reading one when the next is opened.
	var (
		mu     sync.Mutex
		bodies []*traceFormBody
	)
	open := func() *traceFormBody {
		b := &traceFormBody{head: head, view: &view, size: size}
		mu.Lock()
		bodies = append(bodies, b)
		mu.Unlock()
		return b
	}
	req.Body = open()
	req.GetBody = func() (io.ReadCloser, error) { return open(), nil }
	req.ContentLength = int64(len(head)) + length
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	// Each attempt is bounded by the client's timeout, and transient failures are retried, as for Update.
	resp, err := w.c.do(req, nil, call{retry: retryTransient, small: true, secrets: []string{token}})
	// The transport may still be reading a body after the answer came: stop them all, so that the spool's
	// arrays they read can be reused.
	mu.Lock()
	for _, b := range bodies {
		b.stop()
	}
	mu.Unlock()
	return resp, err
}

// traceFormRead is how much of the trace a form body reads at a time; its encoding is at most three times as
// long.
const traceFormRead = 32 << 10

// traceFormBody is the body of a whole-trace update: head, then the trace's bytes form-encoded as they are read
// from the spool. Its methods are safe for concurrent use, so that stop can end it while the transport reads.
type traceFormBody struct {
	mu      sync.Mutex
	head    string
	view    *traceSpoolView
	off     int64 // of the next trace byte to read
	size    int64
	raw     []byte // read buffer
	enc     []byte // encoded bytes not yet returned, in encBuf
	encBuf  []byte
	stopped bool
}

// Read returns the form's next bytes.
func (b *traceFormBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return 0, errors.New("runnerapi: trace form body read after its request ended")
	}
	if len(b.head) > 0 {
		n := copy(p, b.head)
		b.head = b.head[n:]
		return n, nil
	}
	if len(b.enc) == 0 {
		if b.off >= b.size {
			return 0, io.EOF
		}
		if b.raw == nil {
			b.raw, b.encBuf = make([]byte, traceFormRead), make([]byte, 0, 3*traceFormRead)
		}
		raw := b.raw[:min(int64(len(b.raw)), b.size-b.off)]
		if err := b.view.readAt(raw, b.off); err != nil {
			return 0, err
		}
		b.off += int64(len(raw))
		b.enc = appendFormEscaped(b.encBuf[:0], raw)
	}
	n := copy(p, b.enc)
	b.enc = b.enc[n:]
	return n, nil
}

// Close does nothing: stop ends the body.
func (b *traceFormBody) Close() error { return nil }

// stop makes every later Read fail; once it returns, no Read is under way.
func (b *traceFormBody) stop() {
	b.mu.Lock()
	b.stopped = true
	b.mu.Unlock()
}

// traceFormLength returns the length of the form encoding of the size bytes of view, reading them through buf.
func traceFormLength(view *traceSpoolView, size int64, buf []byte) (int64, error) {
	var n int64
	for off := int64(0); off < size; {
		raw := buf[:min(int64(len(buf)), size-off)]
		if err := view.readAt(raw, off); err != nil {
			return 0, err
		}
		for _, c := range raw {
			n += int64(traceFormWidth[c])
		}
		off += int64(len(raw))
	}
	return n, nil
}

// traceFormWidth is the length of each byte in a form encoding (url.QueryEscape's): 1 for letters, digits and
// "-_.~", and for a space (a '+'); 3 for any other byte (%XX).
var traceFormWidth = func() (t [256]uint8) {
	for c := range t {
		t[c] = 3
	}
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~ ") {
		t[c] = 1
	}
	return t
}()

// appendFormEscaped appends the form encoding of p to dst.
func appendFormEscaped(dst, p []byte) []byte {
	const hex = "0123456789ABCDEF"
	for _, c := range p {
		switch {
		case c == ' ':
			dst = append(dst, '+')
		case traceFormWidth[c] == 1:
			dst = append(dst, c)
		default:
			dst = append(dst, '%', hex[c>>4], hex[c&15])
		}
	}
	return dst
}
