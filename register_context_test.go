package runnerapi

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"

	"github.com/jarcoal/httpmock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// GitLab's own "no build" is not_found!, which renders {"message":"404 Not Found"}. GitLab's /api catch-all
// (lib/api/api.rb: route :any, '*path' { error!('404 Not Found', 404) }) goes through Grape's error formatter,
// which wraps a string as {"error": ...}: that is the answer of a base URL such as https://gitlab.example.com/api/v4,
// which a user who mixes up the API roots gives, and it never brings a build.
func TestRegisterGrapeCatchAll404IsNotCoordinator(t *testing.T) {
	c, mock := testMockClient(t)
	mock.RegisterResponder(http.MethodPost, testAPIRoot+"builds/register",
		httpmock.NewStringResponder(http.StatusNotFound, `{"error":"404 Not Found"}`).
			HeaderSet(http.Header{"Content-Type": {"application/json"}}))

	build, _, err := c.Builds.Register(context.Background(), nil)
	assert.Nil(t, build)
	assert.ErrorIs(t, err, ErrNotCoordinator)
}

// A register request that was never sent cannot have had a build assigned: when the caller's context ends while
// the connection is still being made (a coordinator that drops packets, a TLS handshake that stalls), Register
// ends at once instead of holding an operator's Ctrl-C for the whole grace.
func TestRegisterUnsentEndsWithContext(t *testing.T) {
	dialing := make(chan struct{})
	released := make(chan struct{})
	t.Cleanup(func() { close(released) })
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		select {
		case dialing <- struct{}{}:
		default:
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-released:
			return nil, errors.New("test over")
		}
	}}
	t.Cleanup(tr.CloseIdleConnections)
	c, err := NewClient("http://coordinator.invalid", WithRunnerToken(testRunnerToken),
		WithHTTPClient(&http.Client{Transport: tr}), WithoutRetries())
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, _, err := c.Builds.Register(ctx, nil)
		done <- err
	}()
	<-dialing
	cancel()
	err = <-done
	assert.ErrorIs(t, err, context.Canceled)
	assert.False(t, IsTransient(err))
	assert.Contains(t, err.Error(), "before the request was sent", "not after waiting out the grace")
}

// When the caller's context ends while a register attempt is in flight and the coordinator then answers a failure
// that would be retried (a 500 here), the call ends for the context: errors.Is reports context.Canceled and
// IsTransient says no, as for a 503 or a dropped connection, so a caller's "retry what is transient" loop does not
// read the end of its own context as a hiccup.
func TestRegisterTransientAnswerAfterContextEndIsTheContexts(t *testing.T) {
	c, mock := testMockClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mock.RegisterResponder(http.MethodPost, testAPIRoot+"builds/register", func(*http.Request) (*http.Response, error) {
		cancel()
		return httpmock.NewStringResponse(http.StatusInternalServerError, `{"message":"500 Internal Server Error"}`), nil
	})
	build, _, err := c.Builds.Register(ctx, nil)
	assert.Nil(t, build)
	assert.ErrorIs(t, err, context.Canceled)
	assert.False(t, IsTransient(err))
}
