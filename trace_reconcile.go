package runnerapi

import (
	"errors"
	"fmt"
	"time"
)

// reconcile takes the coordinator's length n, from a 202 (or a 416 when rangeErr) to the part [start, end) sent at
// cut; assumed says that a 202 had no Range, and n is the part's end.
func (w *TraceWriter) reconcile(start, end, n int64, status BuildState, cut time.Time, rangeErr, assumed bool) {
	w.mu.Lock()
	w.answered = true
	// The PATCH endpoint answers: a writer that fell back to whole updates goes back to parts.
	w.legacy = false
	w.observeLocked(status)
	if rangeErr {
		w.stats.RangeRecoveries++
	}
	if !rangeErr {
		switch {
		case n > end:
			// A 202 tells what the part made of the trace, which cannot be more than its end: take the end, and
			// let the next part, or Close's confirmation, ask again rather than skip bytes never sent.
			n = end
			w.confirmOwed = true
		case assumed && end > start:
			w.confirmOwed = true
		case (n == end && !assumed || start == end) && !cut.Before(w.confirmAfter) && (!w.abandonOwed || w.confirming):
			// The coordinator's own word that its trace ends where the writer's part did (an empty part is
			// accepted only there). After an abandoned attempt, only Close's confirmation counts: sent once
			// everything else was, after the delay.
			w.confirmOwed, w.abandonOwed = false, false
		}
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

// takeInterval follows the update interval the coordinator asked for, within bounds, unless the writer was given
// a flush interval of its own.
func (w *TraceWriter) takeInterval(d time.Duration) {
	if d <= 0 || w.fixedInterval {
		return
	}
	w.mu.Lock()
	w.interval = min(max(d, minTraceUpdateInterval), maxTraceUpdateInterval)
	w.mu.Unlock()
}

// observeError takes the job's status from a refusal: the runner API v4 sends Job-Status with its 403s.
func (w *TraceWriter) observeError(err error) {
	var er *ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		w.mu.Lock()
		w.observeLocked(BuildState(er.Response.Header.Get(w.c.wire.statusHeader)))
		w.mu.Unlock()
	}
}

// observeLocked takes the build's status from an answer.
func (w *TraceWriter) observeLocked(status BuildState) {
	if status == "" {
		return
	}
	w.status = status
	if status == StateCanceling && !w.wasCancelRequested {
		w.wasCancelRequested = true
		close(w.cancelRequested)
	}
	if (status == StateCanceled || status == StateFailed) && !w.wasCanceled {
		w.wasCanceled = true
		close(w.canceled)
	}
}
