package runnerapi

import (
	"context"
	"crypto/tls"
	"errors"
	"math"
	"net"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"time"
)

// maxOpeningDials is how many connections for senders' requests may be opening to one address at once without
// their dials being held: enough that a burst of builds starting together gets its first connections at once, few
// enough that the requests answered meanwhile free connections for the rest. Over HTTP/2 the first connection
// serves them all.
const maxOpeningDials = 4

// dialHold bounds how long a dial is held, and how long a sender's connection counts as opening: a new connection
// waits at most this long more, and only while others are opening, so that a burst against a distant coordinator
// still opens all it needs promptly.
const dialHold = 250 * time.Millisecond

// dialGate is the default transport's dialer. net/http starts a dial as soon as a request finds no idle
// connection, and hands the request the first connection to fall idle, dial or not; the dial goes on and its
// connection joins the pool. Builds starting together thus opened up to half as many connections again as there
// were builds on plain HTTP (the benchmark's 200 trace writers: 130 to 350), and two to three times as many over
// TLS, where a dial and its handshake take longest (64 writers in a test: 100 to 220). The gate lets
// maxOpeningDials connections of senders' requests (those whose context has a connWait) to one address open at
// once, each counting as opening until its sender's request has a connection (after a TLS handshake, if any); the
// others wait for one of them, for hold at most, and are dropped when their request has a connection by then.
// Other dials are counted while they dial, never held. Dials to one address do not hold those to another, whose
// requests their connections cannot serve (a second coordinator, an object store).
type dialGate struct {
	next func(ctx context.Context, network, addr string) (net.Conn, error)
	hold time.Duration

	mu sync.Mutex
	to map[string]*dialsTo // by address, those with connections opening
}

// dialsTo counts the connections to one address that are opening.
type dialsTo struct {
	gate    *dialGate
	addr    string
	opening int           // guarded by gate.mu
	changed chan struct{} // closed, and replaced, when one ends
}

// newDialGate returns a gate in front of next that holds a dial for hold at most.
func newDialGate(next func(ctx context.Context, network, addr string) (net.Conn, error), hold time.Duration) *dialGate {
	return &dialGate{next: next, hold: hold, to: make(map[string]*dialsTo)}
}

// dial is the transport's DialContext.
func (g *dialGate) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, sender := ctx.Value(connWaitKey{}).(*connWait)
	var d *dialsTo
	if sender {
		if d = g.admit(ctx, c, addr); d == nil {
			return nil, errDialNotNeeded
		}
	} else {
		g.mu.Lock()
		d = g.dialsTo(addr)
		d.opening++
		g.mu.Unlock()
	}
	conn, err := g.next(ctx, network, addr)
	// Over TLS the connection is not ready before its handshake, which takes longer than the dial: it counts as
	// opening until the handshake ends (for HTTP/2, until a request has it), or the sender's request has a
	// connection, and hold at most.
	if !sender || err != nil || !c.handshakes || !c.opened(d) {
		d.ended()
	}
	return conn, err
}

// dialsTo returns the count of addr's opening connections; g.mu is held.
func (g *dialGate) dialsTo(addr string) *dialsTo {
	d := g.to[addr]
	if d == nil {
		d = &dialsTo{gate: g, addr: addr, changed: make(chan struct{})}
		g.to[addr] = d
	}
	return d
}

// ended counts one opening connection out, and wakes the dials held; the last one out forgets the address.
func (d *dialsTo) ended() {
	g := d.gate
	g.mu.Lock()
	d.opening--
	close(d.changed)
	d.changed = make(chan struct{})
	if d.opening == 0 && g.to[d.addr] == d {
		delete(g.to, d.addr)
	}
	g.mu.Unlock()
}

// admit returns the count at which c's dial to addr may go ahead, having counted it as opening there, or nil when
// the dial is not needed any more.
func (g *dialGate) admit(ctx context.Context, c *connWait, addr string) *dialsTo {
	var hold *time.Timer
	defer func() {
		if hold != nil {
			hold.Stop()
		}
	}()
	expired := false
	for {
		if !c.waiting.Load() {
			return nil
		}
		g.mu.Lock()
		d := g.dialsTo(addr)
		if d.opening < maxOpeningDials || expired {
			d.opening++
			g.mu.Unlock()
			return d
		}
		changed := d.changed
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
	// handshakes is set when the sender's connections are TLS ones, which are ready only after a handshake.
	handshakes bool
	// mu guards opening, the connections dialed for the sender still counted as opening, and at, where they
	// are counted: the two change together, so that each connection is counted out where it was counted.
	mu      sync.Mutex
	opening int32
	at      *dialsTo
}

// newConnWait returns ctx with a connWait whose hooks follow the requests made with it, and any trace ctx has kept.
// The requests must be sent one at a time: a request's connection says that no other needs one. overTLS says that
// they go to an https address.
func newConnWait(ctx context.Context, overTLS bool) context.Context {
	c := &connWait{got: make(chan struct{}, 1), handshakes: overTLS}
	c.trace = httptrace.ClientTrace{
		TLSHandshakeDone: func(cs tls.ConnectionState, err error) {
			// An HTTP/2 connection serves every waiting request once net/http has set it up, after the
			// handshake: until a request has it, it still counts as opening.
			if err != nil || cs.NegotiatedProtocol != "h2" {
				c.countOut(1)
			}
		},
		GetConn: func(string) { c.waiting.Store(true) },
		GotConn: func(httptrace.GotConnInfo) {
			c.waiting.Store(false)
			c.countOut(math.MaxInt32)
			select {
			case c.got <- struct{}{}:
			default:
			}
		},
	}
	return context.WithValue(httptrace.WithClientTrace(ctx, &c.trace), connWaitKey{}, c)
}

// opened keeps a connection dialed for the sender, counted at d, as opening until countOut, the hold later at
// most, and reports whether it does: while others of the sender's are opening at another count (another address,
// or another gate when its requests go through two transports), the caller counts it out at once instead.
func (c *connWait) opened(d *dialsTo) bool {
	c.mu.Lock()
	if c.opening > 0 && c.at != d {
		c.mu.Unlock()
		return false
	}
	c.at = d
	c.opening++
	c.mu.Unlock()
	time.AfterFunc(d.gate.hold, func() { c.countOut(1) })
	return true
}

// countOut ends up to n of the sender's opening connections where they are counted.
func (c *connWait) countOut(n int32) {
	c.mu.Lock()
	k := min(c.opening, n)
	c.opening -= k
	d := c.at
	c.mu.Unlock()
	for range k {
		d.ended()
	}
}
