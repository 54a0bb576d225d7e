package runnerapi_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/runnerapi/runnerapi/runnerapitest"
)

// campaignLateParts makes a trace part held by FaultLateApply land as a stalled GitLab request does: after the
// writer gave up on it, resent it and had the part after it acknowledged, but before Close's confirmation, as
// the writer's ConfirmDelay assumes. The fake applies a held part when it sees the client go, which, left alone, is
// at once: before the resend, so that nothing is cut back. So the client's connections close for the coordinator
// only when a second trace part with data is answered (the answer waits until the held part has landed, and
// tells the length from before), or before an empty part (the confirmation) is sent.
type campaignLateParts struct {
	srv *runnerapitest.Server
	id  int64

	mu       sync.Mutex
	pending  []net.Conn // connections the client closed, not yet closed for the coordinator
	acks     int        // trace parts with data answered since the oldest pending connection closed
	finished bool
	landed   int           // held parts that have landed
	landing  chan struct{} // closed and replaced when one lands
	cutBacks int           // landings that made the trace shorter
	err      error
}

func newCampaignLateParts() *campaignLateParts {
	return &campaignLateParts{landing: make(chan struct{})}
}

// transport dials connections whose Close waits for the release.
func (l *campaignLateParts) transport() *http.Transport {
	dialer := &net.Dialer{}
	return &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &campaignHeldConn{Conn: c, late: l}, nil
	}}
}

// logger watches the coordinator's requests.
func (l *campaignLateParts) logger() *slog.Logger { return slog.New(campaignLogHandler{l}) }

// hold keeps c open for the coordinator until the next release; it reports false once the campaign is over.
func (l *campaignLateParts) hold(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.finished {
		return false
	}
	if len(l.pending) == 0 {
		l.acks = 0
	}
	l.pending = append(l.pending, c)
	return true
}

// release closes the held connections and waits until every held part has landed.
func (l *campaignLateParts) release() {
	l.mu.Lock()
	pending := l.pending
	l.pending = nil
	before := len(l.srv.Trace(l.id))
	l.mu.Unlock()
	for _, c := range pending {
		_ = c.Close()
	}
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		done := l.landed >= l.srv.FaultsInjected()[runnerapitest.FaultLateApply]
		wait := l.landing
		l.mu.Unlock()
		if done {
			break
		}
		select {
		case <-wait:
		case <-deadline.C:
			l.mu.Lock()
			l.err = fmt.Errorf("a late-applied part did not land once its connection closed")
			l.mu.Unlock()
			return
		}
	}
	if len(pending) > 0 && len(l.srv.Trace(l.id)) < before {
		l.mu.Lock()
		l.cutBacks++
		l.mu.Unlock()
	}
}

// held counts the late-applied parts injected that have not landed.
func (l *campaignLateParts) held() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.srv.FaultsInjected()[runnerapitest.FaultLateApply] - l.landed
}

// finish closes every held connection, now and from now on.
func (l *campaignLateParts) finish() {
	l.mu.Lock()
	l.finished = true
	pending := l.pending
	l.pending = nil
	l.mu.Unlock()
	for _, c := range pending {
		_ = c.Close()
	}
}

// campaignHeldConn is a client connection whose Close the coordinator sees only at the next release.
type campaignHeldConn struct {
	net.Conn
	late *campaignLateParts
	once sync.Once
}

func (c *campaignHeldConn) Write(p []byte) (int, error) {
	if bytes.HasPrefix(p, []byte("PATCH ")) && bytes.Contains(p, []byte("\r\nContent-Length: 0\r\n")) {
		c.late.release() // the confirmation sees every held part landed
	}
	return c.Conn.Write(p)
}

func (c *campaignHeldConn) Close() error {
	c.once.Do(func() {
		if !c.late.hold(c.Conn) {
			_ = c.Conn.Close()
		}
	})
	return nil
}

// campaignLogHandler sees each request the coordinator answers, as it answers it.
type campaignLogHandler struct{ late *campaignLateParts }

func (h campaignLogHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h campaignLogHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h campaignLogHandler) WithGroup(string) slog.Handler            { return h }

func (h campaignLogHandler) Handle(_ context.Context, r slog.Record) error {
	var method, path, fault string
	var status int64
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "method":
			method = a.Value.String()
		case "path":
			path = a.Value.String()
		case "fault":
			fault = a.Value.String()
		case "status":
			status = a.Value.Int64()
		}
		return true
	})
	l := h.late
	switch {
	case fault == string(runnerapitest.FaultLateApply) && status == 0:
		// Abandoned, and applied already: it has landed.
		l.mu.Lock()
		l.landed++
		close(l.landing)
		l.landing = make(chan struct{})
		l.mu.Unlock()
	case method == http.MethodPatch && strings.HasSuffix(path, "/trace.txt") && status == http.StatusAccepted && h.lastPartHadData():
		l.mu.Lock()
		l.acks++
		due := l.acks >= 2
		l.mu.Unlock()
		if due {
			l.release()
		}
	}
	return nil
}

// lastPartHadData reports whether the trace part being answered carried bytes: an empty part is the writer's
// confirmation of the length, which must see what landed before it.
func (h campaignLogHandler) lastPartHadData() bool {
	reqs := h.late.srv.Requests()
	for i := len(reqs) - 1; i >= 0; i-- {
		if reqs[i].Endpoint == runnerapitest.EndpointTrace {
			return reqs[i].ContentLength > 0
		}
	}
	return false
}
