package runnerapi_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/runnerapi/runnerapi"
	"github.com/runnerapi/runnerapi/runnerapitest"
)

// writeWinsConn is a connection whose Close waits until the request being written has gone out or failed: it
// forces the order in which, on a loaded machine, net/http's writer wins the race against the close that cancelling
// a request starts.
type writeWinsConn struct {
	net.Conn
	closing chan struct{} // closed when Close is called
	settled chan struct{} // closed when the write went out or failed
	once    sync.Once
	settle  func()
}

func (c *writeWinsConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.settle()
	return n, err
}

func (c *writeWinsConn) Close() error {
	c.once.Do(func() { close(c.closing) })
	<-c.settled
	return c.Conn.Close()
}

// TestRegisterEndedWhileWritingTheRequestLosesNoBuild ends the caller's context while net/http writes the register
// request, before it is written in full, and lets the writer finish before the cancelled connection closes: then
// either the coordinator never got the request and the build is still pending, or Register returns the build.
// A build assigned while Register reports an error would run for nobody.
func TestRegisterEndedWhileWritingTheRequestLosesNoBuild(t *testing.T) {
	srv := runnerapitest.NewServer()
	defer srv.Close()
	srv.AddRunner("runner-token")
	id := srv.Enqueue(runnerapi.Build{Name: "b", Commands: "make", Token: "build-token"})

	closing := make(chan struct{})
	settled := make(chan struct{})
	var settleOnce sync.Once
	settle := func() { settleOnce.Do(func() { close(settled) }) }
	dialer := &net.Dialer{}
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &writeWinsConn{Conn: c, closing: closing, settled: settled, settle: settle}, nil
	}}
	defer tr.CloseIdleConnections()
	cl, err := runnerapi.NewClient(srv.URL, runnerapi.WithRunnerToken("runner-token"),
		runnerapi.WithHTTPClient(&http.Client{Transport: tr}))
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var headerOnce sync.Once
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		// The first header line is written (to the connection's buffer) before the body and before WroteRequest.
		WroteHeaderField: func(string, []string) {
			headerOnce.Do(func() {
				cancel()
				<-closing // the attempt has been cancelled and its connection is being closed
			})
		},
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err != nil {
				settle() // nothing will be flushed
			}
		},
	})

	build, _, err := cl.Builds.Register(ctx, nil)
	info, ok := srv.Build(id)
	require.True(t, ok)
	if err != nil {
		assert.Nil(t, build)
		assert.Equal(t, runnerapi.StatePending, info.State, "Register failed (%v) but the build was assigned", err)
		assert.ErrorIs(t, err, context.Canceled)
	} else {
		require.NotNil(t, build)
		assert.Equal(t, id, build.ID)
		assert.Equal(t, runnerapi.StateRunning, info.State)
	}
}
