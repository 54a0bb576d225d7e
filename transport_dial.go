package runnerapi

import (
	"context"
	"errors"
	"net"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"time"
)

// maxOpeningDials is how many dials for senders' requests may be under way at once without being held: enough
// that a burst of builds starting together opens its first connections at once, few enough that the requests
// answered meanwhile free connections for the rest.
const maxOpeningDials = 4

// dialHold bounds how long a dial is held: a new connection waits at most this long more, and only while others
// are being opened, so that a burst against a distant coordinator still opens all it needs promptly.
const dialHold = 10 * time.Millisecond

// dialGate is the default transport's dialer. net/http starts a dial as soon as a request finds no idle
// connection, and hands the request the first connection to fall idle, dial or not; the dial goes on and its
// connection joins the pool. Builds starting together thus opened up to half as many connections again as there
// were builds, more than the pool keeps (the benchmark's 200 trace writers: 130 to 350). The gate lets
// maxOpeningDials dials of senders' requests (those whose context has a connWait) run at once; the others wait for
// one of them to end, for hold at most, and are dropped when their request has a connection by then. Other dials
// are counted, never held.
type dialGate struct {
	next func(ctx context.Context, network, addr string) (net.Conn, error)
	hold time.Duration

	mu      sync.Mutex
	opening int
	changed chan struct{} // closed, and replaced, when a dial ends
}

// newDialGate returns a gate in front of next that holds a dial for hold at most.
func newDialGate(next func(ctx context.Context, network, addr string) (net.Conn, error), hold time.Duration) *dialGate {
	return &dialGate{next: next, hold: hold, changed: make(chan struct{})}
}

// dial is the transport's DialContext.
func (g *dialGate) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if c, ok := ctx.Value(connWaitKey{}).(*connWait); ok {
		if !g.admit(ctx, c) {
			return nil, errDialNotNeeded
		}
	} else {
		g.mu.Lock()
		g.opening++
		g.mu.Unlock()
	}
	conn, err := g.next(ctx, network, addr)
	g.mu.Lock()
	g.opening--
	close(g.changed)
	g.changed = make(chan struct{})
	g.mu.Unlock()
	return conn, err
}

// admit reports whether c's dial may go ahead, counting it as opening, or is not needed any more.
func (g *dialGate) admit(ctx context.Context, c *connWait) bool {
	var hold *time.Timer
	expired := false
	for {
		if !c.waiting.Load() {
			return false
		}
		g.mu.Lock()
		if g.opening < maxOpeningDials || expired {
			g.opening++
			g.mu.Unlock()
			if hold != nil {
				hold.Stop()
			}
			return true
		}
		changed := g.changed
		g.mu.Unlock()
		if hold == nil {
			hold = time.NewTimer(g.hold)
		}
		select {
		case <-changed:
		case <-c.got:
			// A signal may be left from an earlier request's connection: waiting tells, above.
		case <-hold.C:
			expired = true
		case <-ctx.Done():
			expired = true // the dial then fails as net/http expects
		}
	}
}

// errDialNotNeeded ends a dial whose request was served by a connection that fell idle; net/http drops it without
// a word, since nobody waits for it any more.
var errDialNotNeeded = errors.New("runnerapi: dial not needed: the request was served by an idle connection")

// connWaitKey is the context key of a connWait.
type connWaitKey struct{}

// connWait tells dialGate whether the requests of one sender, which sends them one at a time (a TraceWriter),
// still wait for a connection: GetConn sets waiting, GotConn clears it.
type connWait struct {
	waiting atomic.Bool
	got     chan struct{} // a connection came: holds one signal at most
	trace   httptrace.ClientTrace
}

// newConnWait returns ctx with a connWait whose hooks follow the requests made with it, and any trace ctx has kept.
// The requests must be sent one at a time: a request's connection says that no other needs one.
func newConnWait(ctx context.Context) context.Context {
	c := &connWait{got: make(chan struct{}, 1)}
	c.trace = httptrace.ClientTrace{
		GetConn: func(string) { c.waiting.Store(true) },
		GotConn: func(httptrace.GotConnInfo) {
			c.waiting.Store(false)
			select {
			case c.got <- struct{}{}:
			default:
			}
		},
	}
	return context.WithValue(httptrace.WithClientTrace(ctx, &c.trace), connWaitKey{}, c)
}
