package runnerapi

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// senderContext returns a sender's context whose request has just asked for a connection, as net/http's GetConn
// hook says before it dials, and the hooks to tell it that the request got one.
func senderContext(t *testing.T, overTLS bool) (context.Context, *httptrace.ClientTrace) {
	t.Helper()
	ctx := newConnWait(context.Background(), overTLS)
	trace := httptrace.ContextClientTrace(ctx)
	require.NotNil(t, trace)
	trace.GetConn("coordinator:443")
	return ctx, trace
}

// openingTo returns how many connections to addr g counts as opening.
func (g *dialGate) openingTo(addr string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if d := g.to[addr]; d != nil {
		return d.opening
	}
	return 0
}

// fill counts n more connections to addr as opening at g, which never end, and returns the channel closed when
// another there ends.
func (g *dialGate) fill(addr string, n int) <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	d := g.dialsTo(addr)
	d.opening += n
	return d.changed
}

type dialResult struct {
	conn net.Conn
	err  error
}

// TestDialGateDropsTheDialOfARequestServedMeanwhile: a sender's dial held while others are opening ends, without
// dialing, once its request got a connection that fell idle; net/http drops that error, since nobody waits for it.
func TestDialGateDropsTheDialOfARequestServedMeanwhile(t *testing.T) {
	var dials atomic.Int64
	g := newDialGate(func(context.Context, string, string) (net.Conn, error) {
		dials.Add(1)
		return nil, errors.New("dialed")
	}, time.Hour)
	g.fill("coordinator:443", maxOpeningDials) // as many dials as the gate lets run are under way, and do not end
	ctx, trace := senderContext(t, false)
	done := make(chan dialResult, 1)
	go func() {
		conn, err := g.dial(ctx, "tcp", "coordinator:443")
		done <- dialResult{conn, err}
	}()
	trace.GotConn(httptrace.GotConnInfo{Reused: true})
	r := <-done
	assert.ErrorIs(t, r.err, errDialNotNeeded)
	assert.Nil(t, r.conn)
	assert.Zero(t, dials.Load(), "no connection dialed for a request that had one")

	// A request served before its dial even started dials nothing either.
	r2, err := g.dial(ctx, "tcp", "coordinator:443")
	assert.ErrorIs(t, err, errDialNotNeeded)
	assert.Nil(t, r2)
	assert.Zero(t, dials.Load())
}

// TestDialGateLetsAHeldDialGoWhenAnotherEnds: past maxOpeningDials dials under way, a sender's dial waits for one
// of them to end, and then dials.
func TestDialGateLetsAHeldDialGoWhenAnotherEnds(t *testing.T) {
	entered, release := make(chan struct{}, maxOpeningDials), make(chan struct{})
	var released, senderDialedAfterRelease atomic.Bool
	senderDialed := make(chan struct{})
	g := newDialGate(func(ctx context.Context, _, _ string) (net.Conn, error) {
		if _, sender := ctx.Value(connWaitKey{}).(*connWait); sender {
			senderDialedAfterRelease.Store(released.Load())
			close(senderDialed)
			return nil, errors.New("sender dialed")
		}
		entered <- struct{}{}
		<-release
		return nil, errors.New("other dialed")
	}, time.Hour)
	others := make(chan error, maxOpeningDials)
	for range maxOpeningDials {
		go func() {
			_, err := g.dial(context.Background(), "tcp", "coordinator:443")
			others <- err
		}()
	}
	for range maxOpeningDials {
		<-entered
	}
	ctx, _ := senderContext(t, false)
	done := make(chan dialResult, 1)
	go func() {
		conn, err := g.dial(ctx, "tcp", "coordinator:443")
		done <- dialResult{conn, err}
	}()
	released.Store(true)
	release <- struct{}{} // one of the others ends
	<-senderDialed
	assert.True(t, senderDialedAfterRelease.Load(), "the sender's dial waited for another to end")
	r := <-done
	assert.EqualError(t, r.err, "sender dialed", "the dial's own result")
	close(release)
	for range maxOpeningDials {
		assert.EqualError(t, <-others, "other dialed")
	}
	assert.Zero(t, g.openingTo("coordinator:443"), "every dial counted out")
}

// TestDialGateHoldsADialNoLongerThanItsHold: when no dial ends and no connection comes, a sender's dial goes
// ahead after the hold, so that a burst against a slow coordinator still gets its connections.
func TestDialGateHoldsADialNoLongerThanItsHold(t *testing.T) {
	g := newDialGate(func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("dialed")
	}, time.Millisecond)
	g.fill("coordinator:443", maxOpeningDials)
	ctx, _ := senderContext(t, false)
	_, err := g.dial(ctx, "tcp", "coordinator:443")
	assert.EqualError(t, err, "dialed")
	assert.Equal(t, maxOpeningDials, g.openingTo("coordinator:443"), "the held dial counted out as it ended")
}

// TestDialGateCountsASendersTLSConnectionAsOpeningUntilItsHandshake: over TLS a connection is not ready when its
// dial ends but after its handshake, so a sender's connection counts as opening until the handshake ends (until a
// request has it, for HTTP/2), or the sender's request has a connection, or for the hold at most; a dial that fails, or one to a plain HTTP address,
// counts out as it ends.
func TestDialGateCountsASendersTLSConnectionAsOpeningUntilItsHandshake(t *testing.T) {
	fail := false
	g := newDialGate(func(context.Context, string, string) (net.Conn, error) {
		if fail {
			return nil, errors.New("refused")
		}
		client, server := net.Pipe()
		_ = server.Close()
		return client, nil
	}, time.Hour)
	dial := func(ctx context.Context) {
		t.Helper()
		conn, err := g.dial(ctx, "tcp", "coordinator:443")
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Close() })
	}
	ctx, trace := senderContext(t, true)
	dial(ctx)
	assert.Equal(t, 1, g.openingTo("coordinator:443"), "opening while its handshake runs")
	trace.TLSHandshakeDone(tls.ConnectionState{}, nil)
	assert.Zero(t, g.openingTo("coordinator:443"), "counted out once the handshake ended")
	trace.TLSHandshakeDone(tls.ConnectionState{}, nil)
	trace.GotConn(httptrace.GotConnInfo{})
	assert.Zero(t, g.openingTo("coordinator:443"), "counted out once")

	trace.GetConn("coordinator:443")
	dial(ctx)
	assert.Equal(t, 1, g.openingTo("coordinator:443"))
	trace.TLSHandshakeDone(tls.ConnectionState{NegotiatedProtocol: "h2"}, nil)
	assert.Equal(t, 1, g.openingTo("coordinator:443"), "an HTTP/2 connection is set up after its handshake")
	trace.GotConn(httptrace.GotConnInfo{})
	assert.Zero(t, g.openingTo("coordinator:443"), "counted out once the request has a connection")

	fail = true
	trace.GetConn("coordinator:443")
	_, err := g.dial(ctx, "tcp", "coordinator:443")
	assert.EqualError(t, err, "refused")
	assert.Zero(t, g.openingTo("coordinator:443"), "a failed dial counts out at once")
	fail = false

	plain, _ := senderContext(t, false)
	dial(plain)
	assert.Zero(t, g.openingTo("coordinator:443"), "a plain HTTP connection is ready as its dial ends")

	// Within the hold at most, should nothing else say so.
	g.hold = time.Millisecond
	changed := g.fill("coordinator:443", 1) // kept, so that changed is the one the hold's end closes
	trace.GetConn("coordinator:443")
	dial(ctx)
	<-changed
	assert.Equal(t, 1, g.openingTo("coordinator:443"), "counted out after the hold")
}

// TestDialGateNeverHoldsOtherDials: requests that are not a sender's (register, update, artifacts) dial at once,
// however many dials are under way.
func TestDialGateNeverHoldsOtherDials(t *testing.T) {
	g := newDialGate(func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("dialed")
	}, time.Hour)
	g.fill("coordinator:443", 100*maxOpeningDials)
	_, err := g.dial(context.Background(), "tcp", "coordinator:443")
	assert.EqualError(t, err, "dialed")
}

// TestSenderServedByAConnectionFallingIdleOpensNone is the race of TestDialRaceOpensAConnectionMore through the
// gate: B's request finds A's only connection busy and dials, held while other dials are under way; A's answer
// hands B that connection, and B's dial ends without opening a second.
func TestSenderServedByAConnectionFallingIdleOpensNone(t *testing.T) {
	var opened atomic.Int64
	arrived := make(chan string, 2)
	answerA := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- r.URL.Path
		if r.URL.Path == "/a" {
			<-answerA
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			opened.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	tr := newDefaultTransport()
	defer tr.CloseIdleConnections()
	g := newDialGate((&net.Dialer{}).DialContext, time.Hour)
	g.fill(srv.Listener.Addr().String(), maxOpeningDials) // other dials under way, which do not end
	bDialing, bDialDone := make(chan struct{}), make(chan error, 1)
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		_, sender := ctx.Value(connWaitKey{}).(*connWait)
		if !sender {
			return g.dial(ctx, network, addr)
		}
		close(bDialing)
		conn, err := g.dial(ctx, network, addr)
		bDialDone <- err
		return conn, err
	}
	client := &http.Client{Transport: tr}
	send := func(ctx context.Context, path string) error { return getToTheEnd(ctx, client, srv.URL+path) }
	a, b := make(chan error, 1), make(chan error, 1)
	go func() { a <- send(context.Background(), "/a") }()
	require.Equal(t, "/a", <-arrived)
	var bConn httptrace.GotConnInfo
	bCtx := httptrace.WithClientTrace(newConnWait(context.Background(), false),
		&httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { bConn = i }})
	go func() { b <- send(bCtx, "/b") }()
	<-bDialing // B found no idle connection
	close(answerA)
	require.NoError(t, <-a)
	require.NoError(t, <-b)
	assert.True(t, bConn.Reused, "B was sent on A's connection")
	assert.ErrorIs(t, <-bDialDone, errDialNotNeeded)
	assert.Equal(t, int64(1), opened.Load(), "connections opened for two requests, one at a time in flight")
}

// TestTraceWriterRequestsTellTheGateTheyWait: every request of a TraceWriter's sender carries its connWait, which
// the default transport's gate reads, whatever transport sends it.
func TestTraceWriterRequestsTellTheGateTheyWait(t *testing.T) {
	var without, with atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Range", "0-"+r.Header.Get("Content-Range")[strings.LastIndex(r.Header.Get("Content-Range"), "-")+1:])
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if _, ok := r.Context().Value(connWaitKey{}).(*connWait); ok {
			with.Add(1)
		} else {
			without.Add(1)
		}
		return http.DefaultTransport.RoundTrip(r)
	})
	c, err := NewClient(srv.URL, WithRunnerToken("runner-token"), WithBuildToken("build-token"), WithoutRetries(),
		WithHTTPClient(&http.Client{Transport: rt}))
	require.NoError(t, err)
	w, err := c.NewTraceWriter(context.Background(), 1, &TraceOptions{ChunkSize: 8})
	require.NoError(t, err)
	_, err = io.WriteString(w, "a trace of a few parts\n")
	require.NoError(t, err)
	require.NoError(t, w.Close())
	assert.Positive(t, with.Load())
	assert.Zero(t, without.Load(), "requests of the sender without its connWait")
}

// roundTripFunc is an http.RoundTripper made of a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

// RoundTrip calls f.
func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestDialGateCountsASenderOutAtTheGateThatCountedIt: a sender's connections counted at two gates (a
// RoundTripper sending through two default transports, say) are counted out each at its own, so that neither is
// left holding dials forever nor counts below zero and lets more through than it should.
func TestDialGateCountsASenderOutAtTheGateThatCountedIt(t *testing.T) {
	dial := func(context.Context, string, string) (net.Conn, error) {
		client, server := net.Pipe()
		_ = server.Close()
		return client, nil
	}
	first, second := newDialGate(dial, time.Hour), newDialGate(dial, time.Hour)
	ctx, trace := senderContext(t, true)
	for _, g := range []*dialGate{first, second} {
		trace.GetConn("coordinator:443")
		conn, err := g.dial(ctx, "tcp", "coordinator:443")
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Close() })
	}
	trace.GotConn(httptrace.GotConnInfo{})
	assert.Zero(t, first.openingTo("coordinator:443"), "the first gate's count")
	assert.Zero(t, second.openingTo("coordinator:443"), "the second gate's count")
}

// TestDialGateHoldsNoDialForDialsToAnotherAddress: dials under way to one address (another coordinator, an object
// store an artifact is redirected to) open no connection that could serve a request to another, so they hold no
// dial to it.
func TestDialGateHoldsNoDialForDialsToAnotherAddress(t *testing.T) {
	entered, release := make(chan struct{}, maxOpeningDials), make(chan struct{})
	g := newDialGate(func(_ context.Context, _, addr string) (net.Conn, error) {
		if addr == "busy:443" {
			entered <- struct{}{}
			<-release
		}
		return nil, errors.New("dialed " + addr)
	}, time.Hour)
	others := make(chan error, maxOpeningDials)
	for range maxOpeningDials {
		ctx, _ := senderContext(t, false)
		go func() {
			_, err := g.dial(ctx, "tcp", "busy:443")
			others <- err
		}()
	}
	for range maxOpeningDials {
		<-entered
	}
	ctx, _ := senderContext(t, false)
	done := make(chan error, 1)
	go func() {
		_, err := g.dial(ctx, "tcp", "coordinator:443")
		done <- err
	}()
	select {
	case err := <-done:
		assert.EqualError(t, err, "dialed coordinator:443")
	case <-time.After(30 * time.Second):
		t.Error("a dial to coordinator:443 held by dials to busy:443")
	}
	close(release)
	for range maxOpeningDials {
		assert.EqualError(t, <-others, "dialed busy:443")
	}
	if t.Failed() {
		<-done
	}
}

// TestTraceWritersOfOneContextWaitEachOnItsOwn: two TraceWriters made with one context have a connWait each, since
// one's connection says nothing of whether the other's request still waits for one.
func TestTraceWritersOfOneContextWaitEachOnItsOwn(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Range", "0-"+r.Header.Get("Content-Range")[strings.LastIndex(r.Header.Get("Content-Range"), "-")+1:])
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	var (
		mu    sync.Mutex
		waits = map[string]map[*connWait]bool{}
	)
	rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		c, _ := r.Context().Value(connWaitKey{}).(*connWait)
		mu.Lock()
		if waits[r.URL.Path] == nil {
			waits[r.URL.Path] = map[*connWait]bool{}
		}
		waits[r.URL.Path][c] = true
		mu.Unlock()
		return http.DefaultTransport.RoundTrip(r)
	})
	c, err := NewClient(srv.URL, WithRunnerToken("runner-token"), WithBuildToken("build-token"), WithoutRetries(),
		WithHTTPClient(&http.Client{Transport: rt}))
	require.NoError(t, err)
	ctx := context.Background()
	var writers []*TraceWriter
	for id := int64(1); id <= 2; id++ {
		w, err := c.NewTraceWriter(ctx, id, &TraceOptions{ChunkSize: 8})
		require.NoError(t, err)
		writers = append(writers, w)
	}
	for _, w := range writers {
		_, err := io.WriteString(w, "a trace of a few parts\n")
		require.NoError(t, err)
	}
	for _, w := range writers {
		require.NoError(t, w.Close())
	}
	require.Len(t, waits, 2, "requests of both writers")
	var all []*connWait
	for path, cs := range waits {
		require.Len(t, cs, 1, "the requests of %s carry one connWait", path)
		for c := range cs {
			require.NotNil(t, c, path)
			all = append(all, c)
		}
	}
	assert.NotSame(t, all[0], all[1], "each writer has its own")
}
