package runnerapi

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTraceWriterRange416(t *testing.T) {
	tests := []struct {
		name      string
		preset    string                                                       // the coordinator's trace before the writer starts
		fault     func(c *traceCoord, n int, start int64, b []byte) coordFault // applied on each PATCH
		flush     bool                                                         // after the first 6 bytes
		wantParts []receivedPart
	}{
		{
			name: "coordinator lost its tail: resend",
			fault: func(c *traceCoord, n int, _ int64, _ []byte) coordFault {
				if n == 2 {
					c.trace = c.trace[:3]
				}
				return coordFault{}
			},
			flush:     true,
			wantParts: []receivedPart{{0, 6, 6}, {6, 12, 6}, {3, 12, 9}},
		},
		{
			// An earlier attempt of this run got "abcdefgh" through without the writer learning it.
			name:      "coordinator ahead within the trace: skip",
			preset:    "abcdefgh",
			wantParts: []receivedPart{{0, 12, 12}, {8, 12, 4}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leakCheck(t)
			c := newTraceCoord(t)
			c.trace = []byte(tt.preset)
			c.fault = tt.fault
			w := c.writer(t, c.client(t), TraceOptions{})
			_, err := io.WriteString(w, "abcdef")
			require.NoError(t, err)
			if tt.flush {
				require.NoError(t, w.Flush(context.Background()))
			}
			_, err = io.WriteString(w, "ghijkl")
			require.NoError(t, err)
			require.NoError(t, w.Close())
			trace, parts := c.snapshot()
			assert.Equal(t, "abcdefghijkl", string(trace))
			assert.Equal(t, tt.wantParts, parts)
			assert.Equal(t, int64(1), w.Stats().RangeRecoveries)
		})
	}
}

func TestTraceWriterCoordinatorAheadOfTrace(t *testing.T) {
	t.Run("replaced with a full update", func(t *testing.T) {
		leakCheck(t)
		c := newTraceCoord(t)
		c.trace = []byte("a longer trace left by an earlier attempt of this build\n")
		w := c.writer(t, c.client(t), TraceOptions{})
		_, err := io.WriteString(w, "new run\n")
		require.NoError(t, err)
		require.NoError(t, w.Flush(context.Background()))
		trace, _ := c.snapshot()
		assert.Equal(t, "new run\n", string(trace))
		_, err = io.WriteString(w, "more\n")
		require.NoError(t, err)
		require.NoError(t, w.Close())
		trace, parts := c.snapshot()
		assert.Equal(t, "new run\nmore\n", string(trace))
		assert.Equal(t, []receivedPart{{0, 8, 8}, {8, 13, 5}}, parts)
		st := w.Stats()
		assert.Equal(t, int64(1), st.FullUpdates)
		assert.Equal(t, int64(3), st.Requests)
	})
	t.Run("an error without the runner token", func(t *testing.T) {
		leakCheck(t)
		c := newTraceCoord(t)
		c.trace = []byte("a longer trace left by an earlier attempt of this build\n")
		cl := c.client(t, WithRunnerToken(""))
		w := c.writer(t, cl, TraceOptions{})
		_, err := io.WriteString(w, "new run\n")
		require.NoError(t, err)
		err = w.Close()
		require.Error(t, err)
		assert.Contains(t, err.Error(), "runner token")
		assert.Contains(t, err.Error(), "56 bytes")
		trace, _ := c.snapshot()
		assert.Equal(t, "a longer trace left by an earlier attempt of this build\n", string(trace), "nothing replaced")
	})
}

func TestTraceWriterMalformedRange(t *testing.T) {
	for _, v := range []string{"", "0-", "1-5", "0-x", "0--1", "0-+5", "0-99999999999999999999", "0-9223372036854775808", "bytes 0-5"} {
		t.Run(strconv.Quote(v), func(t *testing.T) {
			leakCheck(t)
			c := newTraceCoord(t)
			c.fault = faultAt(1, coordFault{act: actBadRange, rangeValue: v})
			w := c.writer(t, c.client(t), TraceOptions{})
			_, err := io.WriteString(w, "hello\n")
			require.NoError(t, err)
			err = w.Close()
			require.ErrorIs(t, err, ErrTraceRange)
			_, werr := w.Write([]byte("x"))
			assert.Equal(t, err, werr, "the error is sticky")
			assert.Equal(t, err, w.Close(), "the error is sticky")
		})
	}
}

// GitLab's own runner ignores a 202's Range, and the coordinators in its test suite answer bare 202s: a 202 without
// Range appended the part, and the writer goes on from the part's end.
func TestTraceWriterBare202(t *testing.T) {
	t.Run("every part", func(t *testing.T) {
		leakCheck(t)
		c := newTraceCoord(t)
		c.fault = func(*traceCoord, int, int64, []byte) coordFault { return coordFault{act: actBare202} }
		w := c.writer(t, c.client(t), TraceOptions{ChunkSize: 8})
		want := traceText(100, 11)
		for i := 0; i < len(want); i += 30 {
			_, err := w.Write(want[i:min(i+30, len(want))])
			require.NoError(t, err)
			require.NoError(t, w.Flush(context.Background()))
		}
		require.NoError(t, w.Close())
		trace, parts := c.snapshot()
		assert.Equal(t, string(want), string(trace))
		assert.Greater(t, len(parts), 10, "parts of at most 8 bytes")
		assertContiguous(t, c)
		assert.Equal(t, int64(100), w.Stats().Acknowledged)
		assert.Equal(t, StateRunning, w.Status())
	})
	for _, status := range []string{"failed", "canceled"} {
		t.Run("Build-Status "+status, func(t *testing.T) {
			leakCheck(t)
			c := newTraceCoord(t)
			c.fault = faultAt(1, coordFault{act: actBare202, buildStatus: status})
			w := c.writer(t, c.client(t), TraceOptions{})
			_, err := io.WriteString(w, "first\n")
			require.NoError(t, err)
			require.NoError(t, w.Flush(context.Background()))
			select {
			case <-w.Canceled():
			default:
				t.Fatalf("Canceled not closed by a bare 202 saying %s", status)
			}
			assert.Equal(t, BuildState(status), w.Status())
			_, err = io.WriteString(w, "second\n")
			require.NoError(t, err)
			require.NoError(t, w.Close())
			trace, _ := c.snapshot()
			assert.Equal(t, "first\nsecond\n", string(trace))
		})
	}
	t.Run("a later 416 corrects it", func(t *testing.T) {
		leakCheck(t)
		c := newTraceCoord(t)
		// The coordinator keeps 4 of the 10 bytes and answers a bare 202 all the same.
		c.fault = faultAt(1, coordFault{act: actBare202, keep: 4})
		w := c.writer(t, c.client(t), TraceOptions{})
		_, err := io.WriteString(w, "0123456789")
		require.NoError(t, err)
		require.NoError(t, w.Flush(context.Background()))
		_, err = io.WriteString(w, "abc")
		require.NoError(t, err)
		require.NoError(t, w.Close())
		trace, parts := c.snapshot()
		assert.Equal(t, "0123456789abc", string(trace))
		assert.Equal(t, []receivedPart{{0, 10, 10}, {10, 13, 3}, {4, 13, 9}}, parts)
	})
}

// A 416 stays strict: without a Range, nothing is known of the coordinator's trace, least of all that it is empty.
func TestTraceWriter416WithoutRange(t *testing.T) {
	leakCheck(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
		_, _ = io.WriteString(w, `{"error":"416 Range Not Satisfiable"}`)
	}))
	t.Cleanup(srv.Close)
	cl, err := NewClient(srv.URL, WithHTTPClient(srv.Client()), WithBuildToken(coordBuildToken))
	require.NoError(t, err)
	_, _, err = cl.Builds.AppendTrace(context.Background(), 1, 3, []byte("abc"))
	require.ErrorIs(t, err, ErrTraceRange)
	var re *RangeError
	assert.False(t, errors.As(err, &re), "no length to give")

	w, err := cl.NewTraceWriter(context.Background(), 1, &TraceOptions{KeepAlive: -1})
	require.NoError(t, err)
	_, err = io.WriteString(w, "abc")
	require.NoError(t, err)
	require.ErrorIs(t, w.Close(), ErrTraceRange)
}

func TestTraceWriterAccepted202ShorterThanPart(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	c.fault = faultAt(1, coordFault{act: actApplyPartial, keep: 4})
	w := c.writer(t, c.client(t), TraceOptions{})
	_, err := io.WriteString(w, "0123456789")
	require.NoError(t, err)
	require.NoError(t, w.Close())
	trace, parts := c.snapshot()
	assert.Equal(t, "0123456789", string(trace))
	assert.Equal(t, []receivedPart{{0, 10, 10}, {4, 10, 6}}, parts)
}

// GitLab 8.x truncates the trace to a part's start before appending it. A part abandoned at the attempt timeout
// and resent may still land after later parts were acknowledged, and cut them off; Close must see that and repair
// it before it reports success.
func TestTraceWriterLateAppliedPart(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	late := c.lateApply(t, 3) // the first part lands once the third request (the second part) is answered
	c.fault = faultAt(1, coordFault{act: actLateApply, late: late})
	w := c.writer(t, c.client(t), TraceOptions{AttemptTimeout: 50 * time.Millisecond, ConfirmDelay: time.Millisecond})
	_, err := io.WriteString(w, "first part\n")
	require.NoError(t, err)
	require.NoError(t, w.Flush(context.Background()))
	_, err = io.WriteString(w, "second part\n")
	require.NoError(t, err)
	require.NoError(t, w.Close())
	select {
	case <-late.landed:
	case <-time.After(10 * time.Second):
		t.Fatal("the held part never landed")
	}
	trace, parts := c.snapshot()
	assert.Equal(t, "first part\nsecond part\n", string(trace), "the late part cut the trace back")
	assert.Equal(t, []receivedPart{{0, 11, 11}, {0, 11, 11}, {11, 23, 12}, {23, 23, 0}, {11, 23, 12}, {23, 23, 0}}, parts,
		"the part, its resend, the second part, a confirmation answered 416, the repair, a confirmation")
}

// writeWithPartsLandingOutOfOrder writes three parts through a writer of cl. The coordinator holds the first request
// (A, the part at 0) and the fourth (B, the part at 23, sent at Close) past the attempt timeout, and applies them
// once it has answered the fifth, A first. The writer is returned before Close, with the two held parts.
func writeWithPartsLandingOutOfOrder(t *testing.T, c *traceCoord, cl *Client) (w *TraceWriter, first, second *lateApply) {
	t.Helper()
	first = c.lateApply(t, 5)
	second = c.lateApply(t, 5)
	second.follows = first
	c.fault = func(_ *traceCoord, n int, _ int64, _ []byte) coordFault {
		switch n {
		case 1:
			return coordFault{act: actLateApply, late: first}
		case 4:
			return coordFault{act: actLateApply, late: second}
		}
		return coordFault{}
	}
	w = c.writer(t, cl, TraceOptions{AttemptTimeout: 50 * time.Millisecond, ConfirmDelay: time.Millisecond})
	for _, part := range []string{"first part\n", "second part\n"} {
		_, err := io.WriteString(w, part)
		require.NoError(t, err)
		require.NoError(t, w.Flush(context.Background()))
	}
	_, err := io.WriteString(w, "third part\n")
	require.NoError(t, err)
	return w, first, second
}

// Two parts held past the client's patience at different offsets can land in either order. A first, then B: A
// cuts the trace back to its end, and B, whose start lies beyond it, has File.truncate pad the gap with zeros and
// leaves the trace exactly as long as what was written. The length proves nothing then: Close replaces the whole
// trace once the delay has passed, and confirms the length after that.
func TestTraceWriterLateAppliedPartsOutOfOrder(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	w, first, second := writeWithPartsLandingOutOfOrder(t, c, c.client(t))
	require.NoError(t, w.Close())
	for _, l := range []*lateApply{first, second} {
		select {
		case <-l.landed:
		case <-time.After(10 * time.Second):
			t.Fatal("a held part never landed")
		}
	}
	trace, parts := c.snapshot()
	assert.Equal(t, "first part\nsecond part\nthird part\n", string(trace), "the late parts left zeros in the trace")
	assert.Equal(t, []receivedPart{{0, 11, 11}, {0, 11, 11}, {11, 23, 12}, {23, 34, 11}, {23, 34, 11}, {34, 34, 0}}, parts,
		"A, its resend, the second part, B, its resend, the confirmation after the whole trace's update")
	c.mu.Lock()
	assert.Equal(t, 1, c.updates, "one update of the whole trace")
	c.mu.Unlock()
	assert.Equal(t, int64(1), w.Stats().FullUpdates)
}

// Without the runner token the whole trace cannot be replaced: after attempts abandoned at different offsets,
// Close says so rather than vouch for a trace that may hold zeros.
func TestTraceWriterLateAppliedPartsWithoutRunnerToken(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	w, _, _ := writeWithPartsLandingOutOfOrder(t, c, c.client(t, WithRunnerToken("")))
	err := w.Close()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "zeros")
	assert.Contains(t, err.Error(), "runner token")
	c.mu.Lock()
	assert.Zero(t, c.updates)
	c.mu.Unlock()
}

// Attempts abandoned at one offset land on a trace at least that long, whatever their order: the length proves
// the trace, and Close replaces nothing.
func TestTraceWriterAbandonedTwiceAtOneOffset(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	c.fault = func(_ *traceCoord, n int, _ int64, _ []byte) coordFault {
		if n <= 2 {
			return coordFault{act: actStall}
		}
		return coordFault{}
	}
	w := c.writer(t, c.client(t), TraceOptions{AttemptTimeout: 20 * time.Millisecond})
	_, err := io.WriteString(w, "slow\n")
	require.NoError(t, err)
	require.NoError(t, w.Close())
	trace, parts := c.snapshot()
	assert.Equal(t, "slow\n", string(trace))
	assert.Equal(t, []receivedPart{{0, 5, 5}, {0, 5, 5}, {0, 5, 5}, {5, 5, 0}}, parts, "the part, twice abandoned, its resend, the confirmation")
	c.mu.Lock()
	assert.Zero(t, c.updates)
	c.mu.Unlock()
}

// An abandoned attempt is confirmed only after ConfirmDelay: an answer sent sooner proves nothing about a request
// that may still be on its way.
func TestTraceWriterConfirmationWaitsConfirmDelay(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	c.fault = faultAt(1, coordFault{act: actStall})
	w := c.writer(t, c.client(t), TraceOptions{AttemptTimeout: 20 * time.Millisecond, ConfirmDelay: time.Hour})
	_, err := io.WriteString(w, "slow\n")
	require.NoError(t, err)
	require.NoError(t, w.Flush(context.Background()), "acknowledged by the second attempt")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err = w.CloseContext(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded, "Close waits the delay before it confirms")
	assert.Contains(t, err.Error(), "confirm")
	trace, parts := c.snapshot()
	assert.Equal(t, "slow\n", string(trace))
	assert.Len(t, parts, 2, "no confirmation before the delay")
}

// A 202 that claims more than the part's end is not believed: the bytes after the part are sent all the same,
// and the coordinator's next answer tells.
func TestTraceWriter202BeyondThePart(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	c.fault = faultAt(1, coordFault{act: actBadRange, rangeValue: "0-20"})
	w := c.writer(t, c.client(t), TraceOptions{ChunkSize: 10})
	_, err := io.WriteString(w, "0123456789abcdefghij")
	require.NoError(t, err)
	require.NoError(t, w.Close())
	trace, parts := c.snapshot()
	assert.Equal(t, "0123456789abcdefghij", string(trace))
	assert.Equal(t, []receivedPart{{0, 10, 10}, {10, 20, 10}}, parts)
}

// A bare 202 to the last part is only assumed to have appended it: Close confirms the length, and repairs.
func TestTraceWriterBare202OnTheLastPartIsConfirmed(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	c.fault = func(_ *traceCoord, n int, _ int64, _ []byte) coordFault {
		if n == 1 {
			return coordFault{act: actBare202, keep: 4} // the coordinator kept 4 bytes of 10
		}
		return coordFault{act: actBare202}
	}
	w := c.writer(t, c.client(t), TraceOptions{})
	_, err := io.WriteString(w, "0123456789")
	require.NoError(t, err)
	require.NoError(t, w.Close())
	trace, parts := c.snapshot()
	assert.Equal(t, "0123456789", string(trace))
	assert.Equal(t, []receivedPart{{0, 10, 10}, {10, 10, 0}, {4, 10, 6}, {10, 10, 0}}, parts)
}
