package runnerapi

import (
	"context"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// writeCountingConn counts the writes made on a connection, and the bytes.
type writeCountingConn struct {
	net.Conn
	writes, bytes *atomic.Int64
}

func (c writeCountingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	c.bytes.Add(int64(len(p)))
	return c.Conn.Write(p)
}

// countingClient is a client whose transport, a clone of http.DefaultTransport, counts its connections' writes.
func countingClient(t *testing.T, s *cannedServer) (c *Client, writes, written *atomic.Int64) {
	writes, written = new(atomic.Int64), new(atomic.Int64)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return writeCountingConn{Conn: conn, writes: writes, bytes: written}, nil
	}
	t.Cleanup(tr.CloseIdleConnections)
	c, err := NewClient(s.url(), WithRunnerToken("runner-token"), WithHTTPClient(&http.Client{Transport: tr}))
	require.NoError(t, err)
	return c, writes, written
}

// TestRegisterWritesItsRequestInOneWrite: the gate on a register request's body leaves net/http to write the
// headers and the body in one piece, as for any request whose body it knows is in memory, rather than sending the
// headers first (a segment and a wake-up of the coordinator more, on every poll).
func TestRegisterWritesItsRequestInOneWrite(t *testing.T) {
	s := newCannedServer(t)
	c, writes, _ := countingClient(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	info := RunnerInfo{Name: "runner", Version: "1.0.0"}
	for i := range 3 {
		before := writes.Load()
		b, _, err := c.Builds.Register(ctx, &RegisterOptions{Info: info})
		require.NoError(t, err)
		require.NotNil(t, b)
		assert.Equal(t, int64(1), writes.Load()-before, "register %d: writes on the connection", i+1)
	}
}

// TestRegisterEndedAsItsHeadersAreWrittenSendsNothing: a caller's context that ends while net/http writes the
// register request's headers (into its buffer) closes the gate before the body: the write fails, and not one byte
// of the request reaches the coordinator, which therefore cannot assign a build for it.
func TestRegisterEndedAsItsHeadersAreWrittenSendsNothing(t *testing.T) {
	s := newCannedServer(t)
	c, _, written := countingClient(t, s)
	// A connection open already, so that the request is written on it without a dial.
	b, _, err := c.Builds.Register(context.Background(), nil)
	require.NoError(t, err)
	require.NotNil(t, b)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var once sync.Once
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteHeaderField: func(string, []string) { once.Do(cancel) },
	})
	before := written.Load()
	b, _, err = c.Builds.Register(ctx, nil)
	assert.Nil(t, b)
	require.Error(t, err)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Contains(t, err.Error(), "before the request was sent")
	assert.Equal(t, before, written.Load(), "bytes of the request written to the connection")
}
