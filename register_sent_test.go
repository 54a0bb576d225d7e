package runnerapi_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

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

// answerThenEnd answers every request with code, ending the caller's context first: the answer arrives as the
// context ends, as on a loaded machine.
type answerThenEnd struct {
	code int
	end  context.CancelFunc
}

func (a answerThenEnd) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		_ = r.Body.Close()
	}
	a.end()
	body := `{"message":"` + strconv.Itoa(a.code) + " " + http.StatusText(a.code) + `"}`
	return &http.Response{StatusCode: a.code, Status: strconv.Itoa(a.code) + " " + http.StatusText(a.code),
		Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)), Request: r, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}, nil
}

// TestNextEndedAsAPollFailsSaysSo: a poll whose failure Next would wait out (a 409, a 502), answered as ctx ends,
// ends Next with an error that matches ctx's, not with the failure alone; a refused token still says so.
func TestNextEndedAsAPollFailsSaysSo(t *testing.T) {
	for _, c := range []struct {
		code  int
		is    error
		notIs error
	}{
		{http.StatusConflict, context.Canceled, runnerapi.ErrConflict},
		{http.StatusBadGateway, context.Canceled, nil},
		{http.StatusForbidden, runnerapi.ErrForbidden, context.Canceled},
	} {
		t.Run(strconv.Itoa(c.code), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cl, err := runnerapi.NewClient("https://gitlab.example.com/", runnerapi.WithRunnerToken("runner-token"),
				runnerapi.WithHTTPClient(&http.Client{Transport: answerThenEnd{code: c.code, end: cancel}}))
			require.NoError(t, err)
			build, _, err := cl.Builds.Next(ctx, &runnerapi.NextOptions{Interval: time.Hour})
			assert.Nil(t, build)
			require.Error(t, err)
			assert.ErrorIs(t, err, c.is)
			if c.notIs != nil {
				assert.NotErrorIs(t, err, c.notIs)
			}
			assert.False(t, runnerapi.IsTransient(err), "%v", err)
		})
	}
}
