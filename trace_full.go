package runnerapi

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

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
			return // run stops
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
