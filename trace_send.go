package runnerapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// run is the sender: it waits until a part is due, sends it, and stops once closed with everything acknowledged
// (and confirmed, see Close), on a fatal error, or when its context is canceled: after the grace that follows the
// end of the writer's context, or by CloseContext.
func (w *TraceWriter) run() {
	timer := time.NewTimer(time.Hour)
	defer func() {
		timer.Stop()
		w.stopAfter()
		w.mu.Lock()
		w.finished = true
		if w.graceTimer != nil {
			w.graceTimer.Stop()
		}
		if err := w.spool.release(); err != nil {
			w.failLocked(err)
		}
		// Every part's body is closed, or was left to the transport with a buffer of its own.
		traceBlocks.put(w.sendBuf)
		w.sendBuf = nil
		w.mu.Unlock()
		close(w.done)
	}()
	for {
		if w.ctx.Err() != nil {
			w.mu.Lock()
			w.stopLocked()
			w.mu.Unlock()
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
		ending := w.ending
		if w.unsettled && (ending || !now.Before(w.pendingSince.Add(w.interval))) {
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
		// The whole trace is replaced only once it is final, at Close: an update of it that lands late then
		// does no harm.
		confirm := unsent <= 0 && w.confirmOwed && !w.legacy && (w.closed || ending && !w.replaceOwed)
		replace := confirm && w.replaceOwed
		if w.closed && unsent <= 0 && !confirm {
			w.mu.Unlock()
			return
		}
		due := unsent > 0 && (w.closed || ending || w.flushTo > w.acked || !now.Before(w.pendingSince.Add(w.interval)) ||
			(!w.legacy && unsent >= int64(w.chunk)))
		confirmNow := confirm && !now.Before(w.confirmAfter)
		keepAlives := !w.legacy && w.keepAlive > 0 && !ending
		keepAlive := !due && !confirm && unsent <= 0 && keepAlives && !now.Before(w.lastReq.Add(w.keepAlive))
		var wait time.Duration = -1
		switch {
		case due || keepAlive || confirmNow:
		case confirm:
			wait = w.confirmAfter.Sub(now)
		case unsent > 0 || w.unsettled:
			wait = w.pendingSince.Add(w.interval).Sub(now)
		case keepAlives:
			wait = w.lastReq.Add(w.keepAlive).Sub(now)
		}
		legacy := w.legacy
		w.mu.Unlock()

		switch {
		case confirmNow && replace:
			w.replace()
			continue
		case confirmNow:
			w.confirm()
			continue
		case due && legacy:
			w.sendWhole()
			continue
		case due || keepAlive:
			w.sendPart(false)
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

// stopLocked settles the writer's fate once its context stopped the sender: a failure only when something written
// is not known to be acknowledged.
func (w *TraceWriter) stopLocked() {
	if w.err != nil {
		return
	}
	cause := context.Cause(w.ctx)
	// Nothing goes to the masker any more: Write must see that the writer stopped.
	w.unsettled = false
	if owed := w.owedLocked(); owed > 0 {
		w.failLocked(fmt.Errorf("%w (%d bytes of the trace not acknowledged)", cause, owed))
		return
	}
	if w.confirmOwed && !w.legacy {
		w.failLocked(fmt.Errorf("%w (the coordinator's trace length not confirmed after an abandoned attempt or a doubtful answer)", cause))
		return
	}
	w.stopped = cause
}

// owedLocked returns how many bytes written are not acknowledged yet, those the masker holds included.
func (w *TraceWriter) owedLocked() int64 {
	owed := w.spool.size - w.acked
	if w.masker != nil {
		owed += int64(len(w.masker.pend))
	}
	return max(owed, 0)
}

// confirm asks the coordinator's length with an empty part; reconcile takes the answer, and the loop resends what
// the coordinator lost.
func (w *TraceWriter) confirm() {
	w.mu.Lock()
	w.confirmRounds++
	if w.confirmRounds > traceConfirmRounds {
		w.failLocked(fmt.Errorf("runnerapi: trace of build %d: the coordinator's trace length is not confirmed after %d tries; it went back or could not be asked",
			w.id, traceConfirmRounds))
		w.mu.Unlock()
		return
	}
	w.confirming = true
	w.mu.Unlock()
	w.sendPart(false)
	w.mu.Lock()
	w.confirming = false
	w.mu.Unlock()
}

// replace sends the whole, final trace at Close after attempts abandoned at different offsets, and leaves the
// length to confirm after it: every attempt abandoned before has landed by then, as the confirmation assumes.
func (w *TraceWriter) replace() {
	w.mu.Lock()
	w.confirmRounds++
	if w.confirmRounds > traceConfirmRounds {
		w.failLocked(fmt.Errorf("runnerapi: trace of build %d: the coordinator's trace is not confirmed after %d tries", w.id, traceConfirmRounds))
		w.mu.Unlock()
		return
	}
	w.mu.Unlock()
	if w.sendFull(false, errors.New("attempts abandoned at different offsets may land out of order and leave zeros in the trace")) {
		w.mu.Lock()
		w.abandonOwed, w.replaceOwed = false, false
		w.mu.Unlock()
	}
}

// abandoned records an attempt at start given up on while the coordinator may still apply it.
func (w *TraceWriter) abandoned(start int64) {
	w.mu.Lock()
	switch {
	case !w.abandonOwed:
		w.abandonedAt = start
	case start != w.abandonedAt && w.c.wire.wholeTrace:
		w.replaceOwed = true
	}
	w.confirmOwed, w.abandonOwed = true, true
	if t := time.Now().Add(w.confirmDelay); t.After(w.confirmAfter) {
		w.confirmAfter = t
	}
	w.mu.Unlock()
}

// sendPart sends the next part (empty for a keep-alive) from the coordinator's length on, retrying transient
// failures, and reconciles with the answer. A probe, of a writer that fell back to whole updates, is sent once,
// and fails nothing.
func (w *TraceWriter) sendPart(probe bool) {
	w.mu.Lock()
	start := w.acked
	cut := time.Now()
	part, err := w.partLocked(start, min(w.spool.size, start+int64(w.chunk)))
	w.mu.Unlock()
	if err != nil {
		w.fail(err)
		return
	}
	// done unpins the spool's arrays that the part is, once no body of it is read any more: before anything that
	// reads the spool again (a whole update), and at the latest on the way out.
	done := func() {
		if part.spooled {
			part.spooled = false
			w.mu.Lock()
			w.spool.doneReading()
			w.mu.Unlock()
		}
	}
	defer done()
	end := start + int64(part.len())
	for failures, notFound := 0, 0; ; {
		res, resp, err := w.attempt(start, part)
		w.mu.Lock()
		w.stats.Requests++
		w.lastReq = time.Now()
		w.mu.Unlock()
		var re *RangeError
		switch {
		case err == nil:
			done()
			w.reconcile(start, end, res.Length, res.Status, cut, false, res.Assumed)
			w.takeInterval(res.UpdateInterval)
			return
		case errors.As(err, &re):
			done()
			w.reconcile(start, end, re.Length, re.Status, cut, true, false)
			return
		case w.ctx.Err() != nil || probe:
			return // run stops, or the whole trace is sent after all
		case errors.Is(err, ErrNotFound) && !w.isAnswered() && w.c.wire.wholeTrace:
			// GitLab before 8.7 has no PATCH endpoint and answers 404 to every part; one 404 alone may be a
			// proxy's hiccup.
			if notFound++; notFound >= traceFallbackAfter {
				done()
				w.fallBack(err)
				return
			}
		case !IsTransient(err):
			w.observeError(err)
			w.fail(fmt.Errorf("runnerapi: trace of build %d: %w", w.id, err))
			return
		default:
			failures++
			if failures > w.c.retry.MaxRetries {
				w.fail(fmt.Errorf("runnerapi: trace of build %d: giving up after %d attempts: %w", w.id, failures+notFound, err))
				return
			}
		}
		var ra time.Duration
		if resp != nil && resp.Response != nil {
			ra = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		}
		if serr := w.sleep(w.ctx, w.c.retry.backoff(max(failures, notFound), ra)); serr != nil {
			return // run stops
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

// partLocked gathers the part [start, end) to send, or a first stretch of it. A part still in the spool's memory
// is sent from there: its arrays are pinned until the part is done with (sendPart), so that the spool does not
// refill them meanwhile, and Write goes on appending after the part's end, which the part does not read. This
// spares a copy of every byte into the sender's buffer (0.05 to 0.08 CPU s/GiB). A part only the spool's file
// holds is sent from the file itself: the transport hands it to the kernel (sendfile), which sends its cached
// pages without reading them into the process first, unless the transport still reads the last part from the
// file. (Sending from the file what memory still holds costs more: sendfile's pages cost the kernel more than a
// copy from memory does.) It is called with the lock held and returns with it held, releasing it to copy.
func (w *TraceWriter) partLocked(start, end int64) (tracePart, error) {
	view, err := w.spool.view(start, int(end-start))
	if err != nil {
		return tracePart{}, err
	}
	if view.inMemory() && view.n <= 2 {
		w.spool.pinView(view)
		p := tracePart{spooled: true}
		if view.n > 0 {
			p.mem = view.segs[0].mem
		}
		if view.n > 1 {
			p.more = view.segs[1].mem
		}
		return p, nil
	}
	if f, at, n, ok := w.spool.fileRange(start, end); ok && (!w.sendfile || w.fileBodyClosed()) {
		return tracePart{file: f, at: at, n: n}, nil
	}
	if w.sendBuf == nil {
		if w.chunk == traceBlocks.size {
			w.sendBuf = traceBlocks.get()[:w.chunk]
		} else {
			w.sendBuf = make([]byte, w.chunk)
		}
	}
	part := w.sendBuf[:end-start]
	w.spool.pinView(view)
	w.mu.Unlock()
	err = view.copyTo(part)
	w.mu.Lock()
	w.spool.doneReading()
	return tracePart{mem: part}, err
}

// fileBodyClosed tells whether the transport has closed the last part's body read from the spool's file.
func (w *TraceWriter) fileBodyClosed() bool {
	if w.fileBodyOpen == nil {
		return true
	}
	select {
	case <-w.fileBodyOpen:
		w.fileBodyOpen = nil
		return true
	default:
		return false
	}
}

// attempt sends one part once, within the attempt timeout; a timeout of the attempt alone is a transport failure.
func (w *TraceWriter) attempt(start int64, part tracePart) (*TraceAppend, *Response, error) {
	ctx, cancel := context.WithTimeout(w.ctx, w.attemptTimeout)
	defer cancel()
	var body traceBody
	part.replays = &traceReplays{}
	if part.len() > 0 {
		w.mu.Lock()
		atPosition := part.file != nil && w.sendfile && w.fileBodyClosed()
		w.mu.Unlock()
		var err error
		if body, err = part.body(atPosition); err != nil {
			return nil, nil, fmt.Errorf("runnerapi: reading the trace spool: %w", err)
		}
	}
	// A nil traceBody is a nil io.ReadCloser: an empty part has no body.
	res, resp, err := w.c.appendTrace(ctx, w.id, start, part, body, w.token, call{retry: retryNever, secrets: w.secrets})
	if body != nil {
		// The transport may go on reading the body, or a replay of it, after the answer: the sender's buffer is
		// reused, and the spool file's position moved, only once it is done.
		w.waitBodies(part, append([]traceBody{body}, part.replays.all()...))
	}
	var er *ErrorResponse
	switch {
	case err == nil:
	case ctx.Err() != nil:
		// Given up on, by the attempt timeout or the writer's own end: the request may yet land.
		w.abandoned(start)
		if w.ctx.Err() == nil {
			err = &TransportError{Method: http.MethodPatch, URL: w.url, Err: fmt.Errorf("no answer within %v", w.attemptTimeout)}
		}
	case errors.As(err, &er) && er.StatusCode == http.StatusGatewayTimeout:
		// A gateway gave up waiting; the coordinator behind it may still be working on the request.
		w.abandoned(start)
	}
	return res, resp, err
}

// waitBodies waits, a second at most, until the transport has closed the bodies of an attempt, and leaves those
// it still holds to it.
func (w *TraceWriter) waitBodies(part tracePart, bodies []traceBody) {
	t := time.NewTimer(time.Second)
	defer t.Stop()
	late := false
	for _, b := range bodies {
		if !late {
			select {
			case <-b.closed():
				continue
			case <-t.C:
			case <-w.ctx.Done():
			}
			late = true
		}
		select {
		case <-b.closed():
		default:
			w.bodyStillOpen(part, b)
		}
	}
}

// bodyStillOpen leaves a part's body to the transport that has not closed it yet: the spool keeps the arrays it
// reads pinned until the transport closes it, the sender takes a new buffer, or sends no part from the spool's
// file until the body is closed.
func (w *TraceWriter) bodyStillOpen(part tracePart, body traceBody) {
	if part.spooled {
		w.mu.Lock()
		w.spool.holdReading(body.closed())
		w.mu.Unlock()
		return
	}
	if part.file == nil {
		w.sendBuf = nil // the transport's now; the next part that needs one takes another
		return
	}
	if _, ok := body.(*traceFileBody); !ok {
		return // read by offset: the file's position is the other body's
	}
	w.mu.Lock()
	w.fileBodyOpen = body.closed()
	w.mu.Unlock()
}
