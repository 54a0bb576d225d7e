package runnerapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestScrubMasksEveryForm: a secret is masked as it is, URL-encoded and escaped as %q and JSON quote it, and an
// error that holds none is returned unchanged.
func TestScrubMasksEveryForm(t *testing.T) {
	secret := `t0k/e n+"x"é`
	for _, form := range []string{secret, "t0k%2Fe+n%2B%22x%22%C3%A9", "t0k%2Fe%20n+%22x%22%C3%A9", strconv.Quote(secret),
		strconv.QuoteToASCII(secret)[1:], `"t0k/e n+\"x\"é"`} {
		err := scrub(fmt.Errorf("answer said %s", form), []string{secret})
		assert.NotContains(t, err.Error(), "t0k", "form %s", form)
		assert.Contains(t, err.Error(), "answer said ")
	}
	plain := io.ErrUnexpectedEOF
	assert.Same(t, plain, scrub(plain, []string{secret}), "an error without a secret keeps its identity")
	assert.Nil(t, scrub(nil, []string{secret}))
	assert.Equal(t, "x", scrubText("x", []string{""}), "an empty secret masks nothing")
}

// TestScrubKeepsIdentity: a scrubbed error is still, for errors.Is and errors.As, what it wrapped, and errors.Unwrap
// does not hand back the text with the secret.
func TestScrubKeepsIdentity(t *testing.T) {
	cause := &net.OpError{Op: "dial", Net: "tcp", Err: fmt.Errorf("refused tok-123: %w", context.Canceled)}
	err := scrub(cause, []string{"tok-123"})
	assert.Equal(t, "dial tcp: refused [MASKED]: context canceled", err.Error())
	assert.ErrorIs(t, err, context.Canceled)
	var op *net.OpError
	assert.ErrorAs(t, err, &op)
	assert.Same(t, cause, op)
	assert.Nil(t, errors.Unwrap(err))

	te := newTransportError("GET", "http://h/ci/api/v1/builds/1/artifacts", cause, []string{"tok-123"})
	assert.NotContains(t, te.Error(), "tok-123")
	assert.True(t, IsTransient(te), "a transport failure stays transient")
	assert.True(t, isUnsent(te), "a dial failure is still seen as unsent through the scrubbed cause")
	assert.ErrorIs(t, fmt.Errorf("wrapped: %w", te), context.Canceled)
}

// The secrets scrubbed from a call's errors are its own and the client's tokens, each once, in the order first
// given, for a few secrets as for a build's thousand variables.
func TestCallSecretsEachOnceInOrder(t *testing.T) {
	c, err := NewClient("https://gitlab.example", WithRunnerToken("runner-tok"), WithBuildToken("build-tok"))
	require.NoError(t, err)
	for _, n := range []int{3, 2000} {
		var secrets []string
		for i := range n {
			secrets = append(secrets, fmt.Sprintf("secret-%d", i%(n/2+1)), "")
		}
		secrets = append(secrets, "build-tok")
		want := []string{}
		for _, s := range append(append(secrets, "more-tok", "runner-tok"), "build-tok") {
			if s != "" && !slices.Contains(want, s) {
				want = append(want, s)
			}
		}
		assert.Equal(t, want, c.callSecrets(secrets, "more-tok"), "%d secrets", n)
	}
}
