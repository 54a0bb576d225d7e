package runnerapi

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTraceWriterWithoutPatchEndpoint(t *testing.T) {
	t.Run("full updates at the flush interval", func(t *testing.T) {
		leakCheck(t)
		c := newTraceCoord(t)
		c.noPatch = true
		w := c.writer(t, c.client(t), TraceOptions{ChunkSize: 4})
		_, err := io.WriteString(w, "first part\n")
		require.NoError(t, err)
		require.NoError(t, w.Flush(context.Background()))
		trace, _ := c.snapshot()
		assert.Equal(t, "first part\n", string(trace))
		_, err = io.WriteString(w, "second part, beyond the chunk size\n")
		require.NoError(t, err)
		require.NoError(t, w.Close())
		trace, parts := c.snapshot()
		assert.Equal(t, "first part\nsecond part, beyond the chunk size\n", string(trace))
		assert.Len(t, parts, traceFallbackAfter, "PATCHes until the 404s are evidence, then updates only")
		c.mu.Lock()
		assert.Equal(t, 2, c.updates)
		c.mu.Unlock()
		assert.Equal(t, int64(2), w.Stats().FullUpdates)
	})
	t.Run("full updates of a trace spooled to its file", func(t *testing.T) {
		leakCheck(t)
		c := newTraceCoord(t)
		c.noPatch = true
		w := c.writer(t, c.client(t), TraceOptions{MemoryLimit: 1})
		text := traceText(3<<20+12345, 9)
		for p := text; len(p) > 0; {
			n := min(len(p), 1000)
			_, err := w.Write(p[:n])
			require.NoError(t, err)
			p = p[n:]
		}
		require.NoError(t, w.Close())
		trace, _ := c.snapshot()
		assert.True(t, bytes.Equal(text, trace), "the whole trace, from the file and from memory")
		assert.Positive(t, w.Stats().FullUpdates)
	})
	t.Run("without the runner token", func(t *testing.T) {
		leakCheck(t)
		c := newTraceCoord(t)
		c.noPatch = true
		w := c.writer(t, c.client(t, WithRunnerToken("")), TraceOptions{})
		_, err := io.WriteString(w, "x\n")
		require.NoError(t, err)
		err = w.Close()
		require.ErrorIs(t, err, ErrNotFound)
		assert.Contains(t, err.Error(), "runner token")
	})
	t.Run("build not running", func(t *testing.T) {
		leakCheck(t)
		c := newTraceCoord(t)
		c.noPatch = true
		c.updateStatus = http.StatusNotFound
		w := c.writer(t, c.client(t), TraceOptions{})
		_, err := io.WriteString(w, "x\n")
		require.NoError(t, err)
		require.ErrorIs(t, w.Close(), ErrNotFound)
	})
}

// One 404 is not evidence that the coordinator lacks the PATCH endpoint (GitLab before 8.7 answers 404 to every
// part): the writer goes on with parts, and never sends the whole trace.
func TestTraceWriterOne404IsNoFallback(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	c.fault = faultAt(1, coordFault{act: actStatus, status: http.StatusNotFound})
	w := c.writer(t, c.client(t), TraceOptions{})
	_, err := io.WriteString(w, "first\n")
	require.NoError(t, err)
	require.NoError(t, w.Flush(context.Background()))
	_, err = io.WriteString(w, "second\n")
	require.NoError(t, err)
	require.NoError(t, w.Close())
	trace, parts := c.snapshot()
	assert.Equal(t, "first\nsecond\n", string(trace))
	assert.Equal(t, []receivedPart{{0, 6, 6}, {0, 6, 6}, {6, 13, 7}}, parts)
	c.mu.Lock()
	assert.Zero(t, c.updates)
	c.mu.Unlock()
	assert.Zero(t, w.Stats().FullUpdates)
}

// A writer that fell back to whole-trace updates probes the PATCH endpoint now and then, and goes back to parts
// once it answers: the 404s may have been a proxy's, or the coordinator was upgraded.
func TestTraceWriterProbesPatchAgain(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	c.noPatch = true
	w := c.writer(t, c.client(t), TraceOptions{})
	var want strings.Builder
	write := func(i int) {
		line := fmt.Sprintf("line %d\n", i)
		want.WriteString(line)
		_, err := io.WriteString(w, line)
		require.NoError(t, err)
		require.NoError(t, w.Flush(context.Background()))
	}
	write(0)
	require.Equal(t, int64(1), w.Stats().FullUpdates, "fell back")
	c.mu.Lock()
	c.noPatch = false
	c.mu.Unlock()
	i := 1
	for ; i <= traceProbeEvery; i++ {
		write(i)
	}
	fullUpdates := w.Stats().FullUpdates
	assert.Less(t, fullUpdates, int64(traceProbeEvery+1), "a probe found the endpoint")
	for ; i <= 3*traceProbeEvery; i++ {
		write(i)
	}
	require.NoError(t, w.Close())
	assert.Equal(t, fullUpdates, w.Stats().FullUpdates, "parts only, once the endpoint answered")
	trace, _ := c.snapshot()
	assert.Equal(t, want.String(), string(trace))
}

// In the fallback the form body streams from the spool: a 64 MiB trace is sent whole without the writer
// allocating anything near its size (before, a copy of the trace and its encoded form: over 128 MiB).
func TestTraceWriterFullUpdateStreamsFromTheSpool(t *testing.T) {
	leakCheck(t)
	var (
		mu      sync.Mutex
		got     []byte // sha256 of the trace field of the last update
		updates int
		gotLen  int64
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPatch {
			_, _ = io.Copy(io.Discard, r.Body)
			http.Error(w, `{"message":"404 Not Found"}`, http.StatusNotFound)
			return
		}
		sum, n, err := decodeTraceForm(r.Body, coordRunnerToken)
		if err != nil {
			http.Error(w, `{"message":"400 Bad Request"}`, http.StatusBadRequest)
			return
		}
		mu.Lock()
		got, gotLen = sum, n
		updates++
		mu.Unlock()
		_, _ = io.WriteString(w, "true")
	}))
	t.Cleanup(srv.Close)
	cl, err := NewClient(srv.URL, WithHTTPClient(srv.Client()), WithBuildToken(coordBuildToken), WithRunnerToken(coordRunnerToken),
		WithRetryPolicy(RetryPolicy{MaxRetries: 3, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
	require.NoError(t, err)
	w, err := cl.NewTraceWriter(context.Background(), coordBuildID, &TraceOptions{
		FlushInterval: time.Hour, KeepAlive: -1, MemoryLimit: 64 << 10, TempDir: t.TempDir(),
	})
	require.NoError(t, err)
	const total = 64 << 20
	h := sha256.New()
	line := []byte("a line of the build's output, with some bytes to escape: 100% & more = +\n")
	for n := 0; n < total; n += len(line) {
		_, err := w.Write(line)
		require.NoError(t, err)
		h.Write(line)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	require.NoError(t, w.Close())
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("allocated while sending a %d MiB trace whole: %d KiB", w.Stats().Length>>20, allocated>>10)
	assert.Less(t, allocated, uint64(8<<20), "the form body is streamed, not built")
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, int64(updates), w.Stats().FullUpdates)
	assert.Equal(t, w.Stats().Length, gotLen)
	assert.Equal(t, h.Sum(nil), got, "the trace the coordinator decoded")
}

// decodeTraceForm reads an update's form body as it arrives, checks its token and state, and returns the sha256
// and length of its trace field.
func decodeTraceForm(body io.Reader, token string) ([]byte, int64, error) {
	br := bufio.NewReaderSize(body, 64<<10)
	h := sha256.New()
	var n int64
	var key []byte
	var fields = map[string]string{}
	inKey, isTrace := true, false
	var val []byte
	flushVal := func() {
		if !isTrace {
			fields[string(key)] = string(val)
		}
		key, val, inKey, isTrace = key[:0], val[:0], true, false
	}
	var out [1]byte
	for {
		c, err := br.ReadByte()
		if err == io.EOF {
			flushVal()
			break
		}
		if err != nil {
			return nil, 0, err
		}
		switch {
		case c == '&':
			flushVal()
			continue
		case inKey && c == '=':
			inKey, isTrace = false, string(key) == "trace"
			continue
		case inKey:
			key = append(key, c)
			continue
		}
		switch c {
		case '+':
			c = ' '
		case '%':
			var v byte
			for range 2 {
				d, err := br.ReadByte()
				if err != nil {
					return nil, 0, err
				}
				switch {
				case '0' <= d && d <= '9':
					d -= '0'
				case 'A' <= d && d <= 'F':
					d -= 'A' - 10
				default:
					return nil, 0, fmt.Errorf("bad escape digit %q", d)
				}
				v = v<<4 | d
			}
			c = v
		}
		if isTrace {
			out[0] = c
			h.Write(out[:])
			n++
		} else {
			val = append(val, c)
		}
	}
	if fields["token"] != token || fields["state"] != "running" {
		return nil, 0, fmt.Errorf("form fields %q", fields)
	}
	return h.Sum(nil), n, nil
}
