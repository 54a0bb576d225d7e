package runnerapi

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTraceWriterBuildCanceled(t *testing.T) {
	for _, preset := range []string{"", "abc"} {
		name := "on 202"
		if preset != "" {
			name = "on 416"
		}
		t.Run(name, func(t *testing.T) {
			leakCheck(t)
			c := newTraceCoord(t)
			c.trace = []byte(preset)
			c.status = "canceled"
			w := c.writer(t, c.client(t), TraceOptions{})
			select {
			case <-w.Canceled():
				t.Fatal("canceled before any answer")
			default:
			}
			_, err := io.WriteString(w, "abcdef")
			require.NoError(t, err)
			require.NoError(t, w.Flush(context.Background()))
			select {
			case <-w.Canceled():
			default:
				t.Fatal("Canceled not closed after the answer said canceled")
			}
			assert.Equal(t, StateCanceled, w.Status())
			// Writing and delivery go on; a second canceled answer does not close the channel again.
			_, err = io.WriteString(w, "after cancel\n")
			require.NoError(t, err)
			require.NoError(t, w.Close())
			trace, _ := c.snapshot()
			assert.Equal(t, "abcdefafter cancel\n", string(trace))
		})
	}
}

func TestTraceWriterFlushAndClose(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	w := c.writer(t, c.client(t), TraceOptions{})
	for i := range 3 {
		line := fmt.Sprintf("line %d\n", i)
		_, err := io.WriteString(w, line)
		require.NoError(t, err)
		require.NoError(t, w.Flush(context.Background()))
		trace, _ := c.snapshot()
		assert.True(t, strings.HasSuffix(string(trace), line), "Flush returned before the coordinator had the bytes")
		assert.Equal(t, w.Stats().Length, w.Stats().Acknowledged)
	}
	// A Flush bounded by its context returns when it ends, and the writer goes on.
	c.setFault(faultAt(4, coordFault{act: actStall}))
	_, err := io.WriteString(w, "stalled\n")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, w.Flush(ctx), context.DeadlineExceeded)

	// The stalled attempt times out (the client's timeout) only much later; closing waits for it, bounded here.
	cctx, ccancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer ccancel()
	err = w.CloseContext(cctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, err, w.Close(), "Close is idempotent")
	_, err2 := w.Write([]byte("x"))
	assert.Equal(t, err, err2)
}

// Nothing left to send is success: CloseContext with a context that has already ended reports no error when the
// coordinator has acknowledged every byte, and says so again on every call.
func TestTraceWriterCloseContextEndedAfterEverythingAcknowledged(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	w := c.writer(t, c.client(t), TraceOptions{})
	_, err := io.WriteString(w, "all of it\n")
	require.NoError(t, err)
	require.NoError(t, w.Flush(context.Background()))
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	require.NoError(t, w.CloseContext(ended))
	require.NoError(t, w.Close())
	require.NoError(t, w.CloseContext(ended))
	trace, _ := c.snapshot()
	assert.Equal(t, "all of it\n", string(trace))
}

// With something left to send, an ended context is a failure, and it is sticky.
func TestTraceWriterCloseContextEndedWithBytesLeft(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	c.fault = func(*traceCoord, int, int64, []byte) coordFault { return coordFault{act: actStall} }
	w := c.writer(t, c.client(t), TraceOptions{})
	_, err := io.WriteString(w, "never acknowledged\n")
	require.NoError(t, err)
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	err = w.CloseContext(ended)
	require.ErrorIs(t, err, context.Canceled)
	assert.Contains(t, err.Error(), "19 bytes")
	assert.Equal(t, err, w.Close())
}

func TestTraceWriterCloseIdempotentAndErrClosed(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	w := c.writer(t, c.client(t), TraceOptions{})
	_, err := io.WriteString(w, "done\n")
	require.NoError(t, err)
	require.NoError(t, w.Close())
	require.NoError(t, w.Close())
	require.NoError(t, w.CloseContext(context.Background()))
	_, err = w.Write([]byte("late"))
	assert.ErrorIs(t, err, ErrClosed)
	assert.ErrorIs(t, w.Flush(context.Background()), ErrClosed)
	trace, parts := c.snapshot()
	assert.Equal(t, "done\n", string(trace))
	assert.Len(t, parts, 1)
}

// Once the writer's context has ended, a backoff holds the writer no longer than its grace (or not at all when
// StopGrace is negative), and what was not delivered makes Close fail, saying why.
func TestTraceWriterContextCancelStopsBackoff(t *testing.T) {
	for _, grace := range []time.Duration{20 * time.Millisecond, -1} {
		t.Run(grace.String(), func(t *testing.T) {
			leakCheck(t)
			c := newTraceCoord(t)
			c.fault = func(*traceCoord, int, int64, []byte) coordFault {
				return coordFault{act: actStatus, status: http.StatusServiceUnavailable, retryAfter: "3600"}
			}
			cl := c.client(t, WithRetryPolicy(RetryPolicy{MaxRetries: 5, MaxRetryAfter: time.Hour}))
			ctx, cancel := context.WithCancel(context.Background())
			w, err := cl.NewTraceWriter(ctx, coordBuildID, &TraceOptions{FlushInterval: time.Millisecond, KeepAlive: -1, StopGrace: grace})
			require.NoError(t, err)
			_, err = io.WriteString(w, "x\n")
			require.NoError(t, err)
			require.Eventually(t, func() bool { return w.Stats().Requests == 1 }, 5*time.Second, time.Millisecond)
			cancel()
			err = w.Close()
			require.ErrorIs(t, err, context.Canceled)
			assert.Contains(t, err.Error(), "2 bytes")
		})
	}
}

// The README's tour hands NewBuildTraceWriter the context of signal.NotifyContext. Ctrl-C ends that context; the
// runner then writes a last line and calls Close, which must deliver everything: the lines written long before the
// signal, which the default flush interval still held back, and the one written after it.
func TestTraceWriterSignalContextKeepsTrace(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	build := &Build{ID: coordBuildID, Token: coordBuildToken}
	w, err := c.client(t).NewBuildTraceWriter(ctx, build, nil)
	require.NoError(t, err)
	var want strings.Builder
	for i := range 100 {
		line := fmt.Sprintf("step %d done\n", i)
		want.WriteString(line)
		_, err := io.WriteString(w, line)
		require.NoError(t, err)
	}
	p, err := os.FindProcess(os.Getpid())
	require.NoError(t, err)
	if err := p.Signal(os.Interrupt); err != nil {
		stop() // where a process cannot interrupt itself (Windows), end the same context the other way
	}
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the interrupt did not arrive")
	}
	stop()
	_, err = io.WriteString(w, "interrupted\n")
	require.NoError(t, err)
	want.WriteString("interrupted\n")
	require.NoError(t, w.Close())
	trace, _ := c.snapshot()
	assert.Equal(t, want.String(), string(trace))
}

// After its grace the writer has stopped: a Write then fails, and so does Close, since that Write's bytes were
// never sent.
func TestTraceWriterWriteAfterGrace(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	ctx, cancel := context.WithCancel(context.Background())
	w, err := c.client(t).NewTraceWriter(ctx, coordBuildID, &TraceOptions{KeepAlive: -1, StopGrace: time.Millisecond})
	require.NoError(t, err)
	_, err = io.WriteString(w, "before\n")
	require.NoError(t, err)
	require.NoError(t, w.Flush(context.Background()))
	cancel()
	select {
	case <-w.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the writer did not stop after its grace")
	}
	_, err = io.WriteString(w, "after\n")
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, err, w.Close())
}

func TestTraceWriterConcurrentWritesStayContiguous(t *testing.T) {
	// In memory, and through the spool's file: there, the Writes that fill blocks write them to the file while
	// the others go on.
	for _, tc := range []struct {
		name       string
		memLimit   int
		maxPayload int
	}{{"in memory", 0, 200}, {"through the file", 1, 8 << 10}} {
		t.Run(tc.name, func(t *testing.T) {
			leakCheck(t)
			c := newTraceCoord(t)
			w := c.writer(t, c.client(t), TraceOptions{ChunkSize: 4 << 10, FlushInterval: time.Millisecond, MemoryLimit: tc.memLimit})
			const writers, records = 8, 300
			var wg sync.WaitGroup
			for g := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := rand.New(rand.NewPCG(uint64(g), 1))
					for i := range records {
						payload := strings.Repeat(string(rune('a'+g)), r.IntN(tc.maxPayload))
						rec := fmt.Sprintf("<%d:%d:%d:%s>\n", g, i, len(payload), payload)
						n, err := io.WriteString(w, rec)
						assert.NoError(t, err)
						assert.Equal(t, len(rec), n)
					}
				}()
			}
			wg.Wait()
			require.NoError(t, w.Close())
			trace, _ := c.snapshot()
			lines := strings.Split(strings.TrimSuffix(string(trace), "\n"), "\n")
			require.Len(t, lines, writers*records)
			next := make([]int, writers)
			for _, l := range lines {
				var g, i, n int
				var payload string
				_, err := fmt.Sscanf(l, "<%d:%d:%d:%s", &g, &i, &n, &payload)
				require.NoError(t, err, "record %.80q", l)
				payload = strings.TrimSuffix(payload, ">")
				if n == 0 {
					payload = ""
				}
				require.Equal(t, strings.Repeat(string(rune('a'+g)), n), payload, "record %.80q torn", l)
				assert.Equal(t, next[g], i, "records of writer %d out of order", g)
				next[g] = i + 1
			}
			assertContiguous(t, c)
		})
	}
}

// A Close while other goroutines write, with blocks being filed, ends cleanly: Close returns no error, and each
// Write either got its bytes into the trace or was told the writer is closed.
func TestTraceWriterCloseWhileWriting(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	cl := c.client(t)
	for round := range 20 {
		c.mu.Lock()
		c.trace, c.parts = nil, nil
		c.mu.Unlock()
		w := c.writer(t, cl, TraceOptions{MemoryLimit: 1, ChunkSize: 64 << 10})
		var accepted atomic.Int64
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rec := bytes.Repeat([]byte{byte('a' + g)}, 48<<10)
				for {
					n, err := w.Write(rec)
					if err != nil {
						assert.ErrorIs(t, err, ErrClosed, "round %d", round)
						return
					}
					accepted.Add(int64(n))
				}
			}()
		}
		time.Sleep(time.Duration(1+round%5) * time.Millisecond)
		require.NoError(t, w.Close(), "round %d", round)
		wg.Wait()
		trace, _ := c.snapshot()
		assert.Equal(t, accepted.Load(), int64(len(trace)), "round %d: the trace has every accepted byte", round)
	}
}
