package runnerapi

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// roundBarrier holds every request of a round until all n of them have arrived, so that each round really has n
// requests in flight at once: the case where a pool too small for the concurrency closes and reopens connections.
type roundBarrier struct {
	n, rounds int
	mu        sync.Mutex
	arrived   int
	released  []chan struct{}
}

func newRoundBarrier(n, rounds int) *roundBarrier {
	b := &roundBarrier{n: n, rounds: rounds}
	for range rounds {
		b.released = append(b.released, make(chan struct{}))
	}
	return b
}

// wait blocks the request until its round is complete; requests after the last round pass at once.
func (b *roundBarrier) wait() error {
	b.mu.Lock()
	round := b.arrived / b.n
	b.arrived++
	if round < b.rounds && b.arrived%b.n == 0 {
		close(b.released[round])
	}
	b.mu.Unlock()
	if round >= b.rounds {
		return nil
	}
	select {
	case <-b.released[round]:
		return nil
	case <-time.After(time.Minute): // a generous deadline, only so that a broken test ends
		return fmt.Errorf("round %d never filled", round)
	}
}

// connCounts are the TCP connections a server saw opened, and closed (by either side) while it ran.
type connCounts struct {
	opened, closed atomic.Int64
}

// connCountingServer answers Update and trace PATCHes, and counts the TCP connections clients open to it. With
// refuseSecond, it answers the second part of every trace once with a 416 that carries a body and the trace's
// true length, as a coordinator that lost a race does: the writer sends the part again.
func connCountingServer(t *testing.T, barrier *roundBarrier, refuseSecond bool) (srv *httptest.Server, conns *connCounts) {
	t.Helper()
	conns = new(connCounts)
	var mu sync.Mutex
	traces := map[string]int64{}
	parts := map[string]int{}
	srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := barrier.wait(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		switch r.Method {
		case http.MethodPut:
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte("true"))
		case http.MethodPatch:
			start, end, _ := strings.Cut(r.Header.Get("Content-Range"), "-")
			from, _ := strconv.ParseInt(start, 10, 64)
			to, _ := strconv.ParseInt(end, 10, 64)
			_, _ = io.Copy(io.Discard, r.Body)
			mu.Lock()
			defer mu.Unlock()
			parts[r.URL.Path]++
			if from != traces[r.URL.Path] || refuseSecond && parts[r.URL.Path] == 2 {
				w.Header().Set("Range", "0-"+strconv.FormatInt(traces[r.URL.Path], 10))
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
				_, _ = w.Write([]byte(`{"message":"416 Range Not Satisfiable"}`))
				return
			}
			traces[r.URL.Path] = to
			w.Header().Set("Range", "0-"+strconv.FormatInt(to, 10))
			w.WriteHeader(http.StatusAccepted)
		default:
			http.NotFound(w, r)
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			conns.opened.Add(1)
		case http.StateClosed, http.StateHijacked:
			conns.closed.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, conns
}

// TestDefaultClientReusesConnections: n callers at once, round after round, through the default client open about
// one connection each, not one per request (http.DefaultTransport keeps only 2 idle connections per host).
func TestDefaultClientReusesConnections(t *testing.T) {
	const n, rounds = 32, 10
	// A little room over n: a caller may start its next request a moment before its connection is back in the
	// pool, and the connection dialled meanwhile is kept and reused too.
	const bound = n + n/4
	for name, each := range map[string]func(ctx context.Context, c *Client, id int64) error{
		"updates": func(ctx context.Context, c *Client, id int64) error {
			_, err := c.Builds.Update(ctx, id, &UpdateOptions{State: StateRunning})
			return err
		},
		"trace writers": func(ctx context.Context, c *Client, id int64) error {
			w, err := c.NewTraceWriter(ctx, id, nil)
			if err != nil {
				return err
			}
			for i := range rounds {
				if _, err := fmt.Fprintf(w, "line %d\n", i); err != nil {
					return err
				}
				if err := w.Flush(ctx); err != nil {
					return err
				}
			}
			return w.Close()
		},
	} {
		// Updates are made a round at a time, every caller waiting for the others between rounds, so that all
		// connections fall idle together; each trace writer's own sender makes its rounds.
		calls := rounds
		if name != "updates" {
			calls = 1
		}
		t.Run(name, func(t *testing.T) {
			srv, conns := connCountingServer(t, newRoundBarrier(n, rounds), false)
			opened := &conns.opened
			c, err := NewClient(srv.URL, WithRunnerToken("runner-token"), WithBuildToken("build-token"), WithoutRetries())
			require.NoError(t, err)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			errs := make(chan error, n)
			for range calls {
				for i := range n {
					go func() { errs <- each(ctx, c, int64(i+1)) }()
				}
				for range n {
					require.NoError(t, <-errs)
				}
			}
			t.Logf("%d connections opened", opened.Load())
			assert.LessOrEqual(t, opened.Load(), int64(bound), "connections opened for %d requests from %d callers", n*rounds, n)
		})
	}
}

// TestTraceWritersOpenNoConnectionOnceEachHasOne: n builds at once, each a TraceWriter sending parts as fast as
// the coordinator answers them and then a final Update, open exactly n connections, however their requests
// interleave, and none closes while they run. The first part of every writer is held until all n have arrived, so
// that n connections exist and no request can be handed another's connection while its own dial is under way (net/http
// gives a waiting request the first connection that falls idle, and the dial it started then adds one more to
// the pool: the few extra connections that builds starting all at once may open, and no fault of the client's).
// From then on each build has at most one request in flight, so one of the n connections is always idle when it
// sends the next: a connection opened later is one the client dropped, by closing an answer before reading it to
// its end, say. Every writer's second part is answered once with a 416 that has a body, so that answers with a
// body and error answers are among them.
func TestTraceWritersOpenNoConnectionOnceEachHasOne(t *testing.T) {
	const n, parts = 24, 8
	srv, conns := connCountingServer(t, newRoundBarrier(n, 1), true)
	c, err := NewClient(srv.URL, WithRunnerToken("runner-token"), WithBuildToken("build-token"), WithoutRetries())
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	errs := make(chan error, n)
	for i := range n {
		go func() {
			errs <- func() error {
				id := int64(i + 1)
				w, err := c.NewTraceWriter(ctx, id, &TraceOptions{ChunkSize: 1 << 10})
				if err != nil {
					return err
				}
				for range parts {
					if _, err := w.Write([]byte(strings.Repeat("x", 1<<10))); err != nil {
						return err
					}
				}
				if err := w.Close(); err != nil {
					return err
				}
				if got := w.Stats().Requests; got < parts+1 {
					return fmt.Errorf("build %d: %d requests, want at least %d (every part, one twice)", id, got, parts+1)
				}
				_, err = c.Builds.Update(ctx, id, &UpdateOptions{State: StateSuccess})
				return err
			}()
		}()
	}
	for range n {
		require.NoError(t, <-errs)
	}
	assert.Equal(t, int64(n), conns.opened.Load(), "connections opened by %d builds", n)
	assert.Zero(t, conns.closed.Load(), "connections closed while the builds ran")
}

// TestDialRaceOpensAConnectionMore pins down where the extra connections of builds starting together come from:
// net/http's own dial race, here with a plain dialer (the default transport's dialGate narrows it for senders,
// TestSenderServedByAConnectionFallingIdleOpensNone). Two requests are in flight
// at most, yet three connections open: B dials while A holds the only connection, and is handed A's connection
// when A's answer comes, before its dial ends; A's next request then finds none idle and dials too, and B's dial,
// once it ends, adds a third connection to the pool, which nothing needed.
func TestDialRaceOpensAConnectionMore(t *testing.T) {
	var opened atomic.Int64
	third := make(chan struct{})
	arrived := make(chan string, 3)
	answer := map[string]chan struct{}{"/a1": make(chan struct{}), "/b": make(chan struct{}), "/a2": make(chan struct{})}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- r.URL.Path
		<-answer[r.URL.Path]
		w.WriteHeader(http.StatusAccepted)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew && opened.Add(1) == 3 {
			close(third)
		}
	}
	srv.Start()
	defer srv.Close()

	tr := newDefaultTransport()
	defer tr.CloseIdleConnections()
	var dials atomic.Int64
	secondDial, endSecondDial := make(chan struct{}), make(chan struct{})
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if dials.Add(1) == 2 {
			close(secondDial)
			<-endSecondDial
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	client := &http.Client{Transport: tr}
	send := func(path string, conn *httptrace.GotConnInfo) error {
		ctx := context.Background()
		if conn != nil {
			ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { *conn = i }})
		}
		return getToTheEnd(ctx, client, srv.URL+path)
	}
	a, b := make(chan error, 1), make(chan error, 1)
	go func() { a <- send("/a1", nil) }()
	require.Equal(t, "/a1", <-arrived)
	var bConn httptrace.GotConnInfo
	go func() { b <- send("/b", &bConn) }()
	<-secondDial // B found no idle connection: the second dial is under way
	close(answer["/a1"])
	require.NoError(t, <-a)
	require.Equal(t, "/b", <-arrived, "B is sent on A's connection, its own dial still under way")
	assert.True(t, bConn.Reused, "B was handed A's connection")
	go func() { a <- send("/a2", nil) }()
	require.Equal(t, "/a2", <-arrived)
	assert.Equal(t, int64(3), dials.Load(), "A's next request went out on a connection of a third dial")
	assert.Equal(t, int64(2), opened.Load())
	close(answer["/b"])
	close(answer["/a2"])
	require.NoError(t, <-a)
	require.NoError(t, <-b)
	// Two requests at most were in flight; the second dial, which lost its race, opens a third connection.
	close(endSecondDial)
	select {
	case <-third:
	case <-time.After(time.Minute): // a generous deadline, only so that a broken test ends
		t.Fatalf("%d connections opened; want 3", opened.Load())
	}
}

// TestDefaultTransport: the default client's transport is its own clone of http.DefaultTransport, with a pool sized
// for concurrency and everything else kept.
func TestDefaultTransport(t *testing.T) {
	c, err := NewClient("https://gitlab.example.com")
	require.NoError(t, err)
	tr, ok := c.httpClient.Transport.(*http.Transport)
	require.True(t, ok, "%T", c.httpClient.Transport)
	assertDefaultTransport(t, tr)

	c2, err := NewClient("https://other.example.com")
	require.NoError(t, err)
	assert.Same(t, tr, c2.httpClient.Transport, "default clients share one pool")
}

// TestNewTransport: a caller who needs a transport of its own (a private CA's certificate, say) gets the default
// client's settings, pool and dialer in a new one.
func TestNewTransport(t *testing.T) {
	tr := NewTransport()
	assertDefaultTransport(t, tr)
	assert.NotSame(t, sharedTransport(), tr, "a transport of the caller's own")
	assert.NotSame(t, NewTransport(), tr)
}

// TestNewTransportWithDefaultTransportReplaced: a program whose tests replace http.DefaultTransport with a
// RoundTripper of another type (httpmock.Activate does) still gets a transport, set up as http.DefaultTransport
// is documented to be, instead of a panic.
func TestNewTransportWithDefaultTransportReplaced(t *testing.T) {
	def := http.DefaultTransport
	http.DefaultTransport = roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, io.EOF })
	t.Cleanup(func() { http.DefaultTransport = def })
	var tr *http.Transport
	require.NotPanics(t, func() { tr = NewTransport() })
	assert.Equal(t, defaultMaxIdleConnsPerHost, tr.MaxIdleConnsPerHost)
	assert.Zero(t, tr.MaxIdleConns)
	assert.Equal(t, time.Second, tr.ExpectContinueTimeout, "uploads refused on their headers rely on it")
	assert.Equal(t, 90*time.Second, tr.IdleConnTimeout)
	assert.Equal(t, 10*time.Second, tr.TLSHandshakeTimeout)
	assert.True(t, tr.ForceAttemptHTTP2)
	require.NotNil(t, tr.Proxy)
	assert.Equal(t, reflect.ValueOf(http.ProxyFromEnvironment).Pointer(), reflect.ValueOf(tr.Proxy).Pointer())
	require.NotNil(t, tr.DialContext)
	ctx, trace := senderContext(t, false)
	trace.GotConn(httptrace.GotConnInfo{Reused: true})
	_, err := tr.DialContext(ctx, "tcp", "127.0.0.1:1")
	assert.ErrorIs(t, err, errDialNotNeeded, "its dialer is the gate")
}

// assertDefaultTransport checks tr is set up as the default client's transport.
func assertDefaultTransport(t *testing.T, tr *http.Transport) {
	t.Helper()
	def := http.DefaultTransport.(*http.Transport)
	assert.NotSame(t, def, tr, "http.DefaultTransport is not modified in place")
	assert.Equal(t, 0, def.MaxIdleConnsPerHost, "http.DefaultTransport is left as it was")
	assert.Equal(t, defaultMaxIdleConnsPerHost, tr.MaxIdleConnsPerHost)
	assert.Zero(t, tr.MaxIdleConns, "no total below the per-host bound")
	assert.Equal(t, def.ExpectContinueTimeout, tr.ExpectContinueTimeout, "uploads refused on their headers rely on it")
	assert.Positive(t, tr.ExpectContinueTimeout)
	assert.Equal(t, def.IdleConnTimeout, tr.IdleConnTimeout)
	assert.True(t, tr.ForceAttemptHTTP2)
	require.NotNil(t, tr.Proxy)
	assert.Equal(t, reflect.ValueOf(http.ProxyFromEnvironment).Pointer(), reflect.ValueOf(tr.Proxy).Pointer(),
		"proxies come from the environment")
	// Its dialer is the gate: it drops the dial of a sender's request that already has a connection.
	require.NotNil(t, tr.DialContext)
	ctx, trace := senderContext(t, false)
	trace.GotConn(httptrace.GotConnInfo{Reused: true})
	_, err := tr.DialContext(ctx, "tcp", "127.0.0.1:1")
	assert.ErrorIs(t, err, errDialNotNeeded)
}

// TestDefaultTransportSpeaksHTTP2: the clone still negotiates HTTP/2 over TLS, as http.DefaultTransport does.
func TestDefaultTransportSpeaksHTTP2(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprint(w, r.Proto)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	tr := newDefaultTransport()
	defer tr.CloseIdleConnections()
	tr.TLSClientConfig = &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs, MinVersion: tls.VersionTLS12}
	resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, 2, resp.ProtoMajor)
}

// TestWithHTTPClientKeepsCallersTransport: a caller's client keeps exactly its transport, untouched, even none.
func TestWithHTTPClientKeepsCallersTransport(t *testing.T) {
	tr := &http.Transport{MaxIdleConnsPerHost: 3}
	c, err := NewClient("https://gitlab.example.com", WithHTTPClient(&http.Client{Transport: tr}))
	require.NoError(t, err)
	assert.Same(t, tr, c.httpClient.Transport)
	assert.Equal(t, 3, tr.MaxIdleConnsPerHost)
	assert.Zero(t, tr.MaxIdleConns)

	c, err = NewClient("https://gitlab.example.com", WithHTTPClient(&http.Client{}))
	require.NoError(t, err)
	assert.Nil(t, c.httpClient.Transport, "a client without a transport keeps using http.DefaultTransport")
}

// getToTheEnd GETs url and reads the answer to its end, so that its connection falls idle.
func getToTheEnd(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}
