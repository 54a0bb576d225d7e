package runnerapi

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTraceWriterCoalescesOneByteWrites(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	w := c.writer(t, c.client(t), TraceOptions{})
	want := traceText(10000, 1)
	for i := range want {
		n, err := w.Write(want[i : i+1])
		require.NoError(t, err)
		require.Equal(t, 1, n)
	}
	require.NoError(t, w.Close())
	trace, parts := c.snapshot()
	assert.Equal(t, want, trace)
	assert.Equal(t, []receivedPart{{start: 0, end: 10000, n: 10000}}, parts)
	st := w.Stats()
	assert.Equal(t, TraceStats{Written: 10000, Length: 10000, Acknowledged: 10000, Requests: 1}, st)
}

func TestTraceWriterLargeWriteBecomesContiguousParts(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	w := c.writer(t, c.client(t), TraceOptions{})
	want := traceText(10<<20, 2)
	n, err := w.Write(want)
	require.NoError(t, err)
	require.Equal(t, len(want), n)
	require.NoError(t, w.Close())
	trace, parts := c.snapshot()
	assert.True(t, bytes.Equal(want, trace), "trace differs")
	require.Len(t, parts, 10)
	for i, p := range parts {
		assert.Equal(t, receivedPart{start: int64(i) << 20, end: int64(i+1) << 20, n: 1 << 20}, p)
	}
	assertContiguous(t, c)
}

func TestTraceWriterFlushesAfterInterval(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	w := c.writer(t, c.client(t), TraceOptions{FlushInterval: 10 * time.Millisecond})
	_, err := w.Write([]byte("hello "))
	require.NoError(t, err)
	_, err = w.Write([]byte("world\n"))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		trace, _ := c.snapshot()
		return string(trace) == "hello world\n"
	}, 5*time.Second, time.Millisecond, "written bytes were not sent without Flush")
	_, parts := c.snapshot()
	assert.Equal(t, []receivedPart{{start: 0, end: 12, n: 12}}, parts)
	require.NoError(t, w.Close())
}

func TestTraceWriterKeepAlive(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	w := c.writer(t, c.client(t), TraceOptions{KeepAlive: 5 * time.Millisecond})
	require.Eventually(t, func() bool {
		_, parts := c.snapshot()
		return len(parts) >= 2
	}, 5*time.Second, time.Millisecond)
	c.mu.Lock()
	c.status = "canceled"
	c.mu.Unlock()
	select {
	case <-w.Canceled():
	case <-time.After(5 * time.Second):
		t.Fatal("a keep-alive did not learn that the build was canceled")
	}
	require.NoError(t, w.Close())
	_, parts := c.snapshot()
	for _, p := range parts {
		assert.Equal(t, receivedPart{}, p, "a keep-alive is an empty part at the trace's length")
	}
	assert.Equal(t, StateCanceled, w.Status())
}

func TestTraceWriterSendsNoEmptyParts(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	w := c.writer(t, c.client(t), TraceOptions{FlushInterval: time.Millisecond, ChunkSize: 64})
	ctx := context.Background()
	require.NoError(t, w.Flush(ctx), "flushing nothing")
	want := traceText(5000, 3)
	for i := 0; i < len(want); i += 37 {
		_, err := w.Write(want[i:min(i+37, len(want))])
		require.NoError(t, err)
		if i%7 == 0 {
			require.NoError(t, w.Flush(ctx))
			require.NoError(t, w.Flush(ctx))
		}
	}
	require.NoError(t, w.Close())
	trace, parts := c.snapshot()
	assert.Equal(t, want, trace)
	for _, p := range parts {
		assert.Positive(t, p.n, "empty part at %d", p.start)
		assert.LessOrEqual(t, p.n, 64)
	}
	assertContiguous(t, c)
}

func TestTraceWriterDoesNotKeepP(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	w := c.writer(t, c.client(t), TraceOptions{})
	p := []byte("first line\n")
	_, err := w.Write(p)
	require.NoError(t, err)
	copy(p, "XXXXXXXXXXX")
	_, err = w.Write(p)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	trace, _ := c.snapshot()
	assert.Equal(t, "first line\nXXXXXXXXXXX", string(trace))
}

func TestTraceWriterDroppedConnections(t *testing.T) {
	for _, tt := range []struct {
		name  string
		act   coordAction
		parts []receivedPart
	}{
		{"after the part was applied: no duplicate", actDropAfter, []receivedPart{{0, 6, 6}, {0, 6, 6}}},
		{"before the part was applied: no gap", actDropBefore, []receivedPart{{0, 6, 6}, {0, 6, 6}}},
		{"5xx after the part was applied", actApplyStatus, []receivedPart{{0, 6, 6}, {0, 6, 6}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			leakCheck(t)
			c := newTraceCoord(t)
			c.fault = faultAt(1, coordFault{act: tt.act, status: http.StatusBadGateway})
			w := c.writer(t, c.client(t), TraceOptions{})
			_, err := io.WriteString(w, "abcdef")
			require.NoError(t, err)
			require.NoError(t, w.Flush(context.Background()))
			_, err = io.WriteString(w, "ghi")
			require.NoError(t, err)
			require.NoError(t, w.Close())
			trace, parts := c.snapshot()
			assert.Equal(t, "abcdefghi", string(trace))
			assert.Equal(t, append(tt.parts, receivedPart{6, 9, 3}), parts)
			assert.Equal(t, int64(1), w.Stats().Retries)
		})
	}
}

func TestTraceWriterAttemptTimeout(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	c.fault = faultAt(1, coordFault{act: actStall})
	w := c.writer(t, c.client(t), TraceOptions{AttemptTimeout: 20 * time.Millisecond})
	_, err := io.WriteString(w, "slow\n")
	require.NoError(t, err)
	require.NoError(t, w.Close())
	trace, parts := c.snapshot()
	assert.Equal(t, "slow\n", string(trace))
	assert.Equal(t, []receivedPart{{0, 5, 5}, {0, 5, 5}, {5, 5, 0}}, parts, "the part, its resend, Close's confirmation")
	assert.Equal(t, int64(1), w.Stats().Retries)
}

// sleepRecorder records the backoffs a writer asked for, without waiting.
type sleepRecorder struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (s *sleepRecorder) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.waits = append(s.waits, d)
	s.mu.Unlock()
	return ctx.Err()
}

func TestTraceWriterRetriesHonourRetryAfter(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	c.fault = func(_ *traceCoord, n int, _ int64, _ []byte) coordFault {
		switch n {
		case 1:
			return coordFault{act: actStatus, status: http.StatusServiceUnavailable, retryAfter: "7"}
		case 2:
			return coordFault{act: actStatus, status: http.StatusTooManyRequests, retryAfter: "120"}
		case 3:
			return coordFault{act: actStatus, status: http.StatusInternalServerError}
		}
		return coordFault{}
	}
	cl := c.client(t, WithRetryPolicy(RetryPolicy{MaxRetries: 5, BaseDelay: 8 * time.Millisecond, MaxDelay: time.Second, MaxRetryAfter: time.Minute}))
	var sleeps sleepRecorder
	w := c.writer(t, cl, TraceOptions{sleep: sleeps.sleep})
	_, err := io.WriteString(w, "retried\n")
	require.NoError(t, err)
	require.NoError(t, w.Close())
	trace, _ := c.snapshot()
	assert.Equal(t, "retried\n", string(trace))
	require.Len(t, sleeps.waits, 3)
	// Retry-After plus a jitter of up to as long again, so that writers refused together do not retry together.
	assert.True(t, sleeps.waits[0] >= 7*time.Second && sleeps.waits[0] < 14*time.Second, "Retry-After in seconds: %v", sleeps.waits[0])
	assert.True(t, sleeps.waits[1] >= time.Minute && sleeps.waits[1] < 2*time.Minute, "Retry-After capped by MaxRetryAfter: %v", sleeps.waits[1])
	assert.LessOrEqual(t, sleeps.waits[2], 32*time.Millisecond, "third retry: jittered backoff below 4×BaseDelay")
	assert.Equal(t, int64(3), w.Stats().Retries)
	assert.Equal(t, int64(4), w.Stats().Requests)
}

func TestTraceWriterGivesUpAfterRetryPolicy(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	c.fault = func(*traceCoord, int, int64, []byte) coordFault {
		return coordFault{act: actStatus, status: http.StatusServiceUnavailable}
	}
	cl := c.client(t, WithRetryPolicy(RetryPolicy{MaxRetries: 2, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}))
	w := c.writer(t, cl, TraceOptions{})
	_, err := io.WriteString(w, "never\n")
	require.NoError(t, err)
	err = w.Close()
	require.Error(t, err)
	assert.True(t, IsTransient(err))
	assert.Contains(t, err.Error(), "giving up after 3 attempts")
	assert.Equal(t, int64(3), w.Stats().Requests)
}

func TestTraceWriterFatalStatuses(t *testing.T) {
	for _, tt := range []struct {
		status int
		is     error
	}{
		{http.StatusBadRequest, nil},
		{http.StatusForbidden, ErrForbidden},
		{http.StatusNotFound, ErrNotFound},
		{http.StatusConflict, ErrConflict},
	} {
		t.Run(strconv.Itoa(tt.status), func(t *testing.T) {
			leakCheck(t)
			c := newTraceCoord(t)
			// The first part succeeds, so a later 404 is not the pre-8.7 coordinator's.
			c.fault = faultAt(2, coordFault{act: actStatus, status: tt.status})
			w := c.writer(t, c.client(t), TraceOptions{})
			_, err := io.WriteString(w, "one\n")
			require.NoError(t, err)
			require.NoError(t, w.Flush(context.Background()))
			_, err = io.WriteString(w, "two\n")
			require.NoError(t, err)
			ferr := w.Flush(context.Background())
			require.Error(t, ferr)
			var er *ErrorResponse
			require.ErrorAs(t, ferr, &er)
			assert.Equal(t, tt.status, er.StatusCode)
			if tt.is != nil {
				assert.ErrorIs(t, ferr, tt.is)
			}
			_, werr := w.Write([]byte("three\n"))
			assert.Equal(t, ferr, werr)
			assert.Equal(t, ferr, w.Flush(context.Background()))
			assert.Equal(t, ferr, w.Close())
			assert.Equal(t, ferr, w.Close())
			assert.NotContains(t, ferr.Error(), coordBuildToken)
			_, parts := c.snapshot()
			assert.Len(t, parts, 2, "a fatal status is not retried")
		})
	}
}

func TestTraceWriterBadTokenIsFatalAndSecret(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	w := c.writer(t, c.client(t), TraceOptions{Token: "wrong-token-Ab12Cd"})
	_, err := io.WriteString(w, "x\n")
	require.NoError(t, err)
	err = w.Close()
	require.ErrorIs(t, err, ErrForbidden)
	assert.NotContains(t, err.Error(), "wrong-token-Ab12Cd")
}

func TestTraceWriterMasksSecretsAcrossWrites(t *testing.T) {
	leakCheck(t)
	const secret = "hunter2-s3cr3t"
	input := "before " + secret + " middle " + secret + secret + " hun end hunter2-s3cr3"
	want := "before [MASKED] middle [MASKED][MASKED] hun end hunter2-s3cr3"
	c := newTraceCoord(t)
	cl := c.client(t)
	for cut1 := 0; cut1 <= len(input); cut1 += 3 {
		for cut2 := cut1; cut2 <= len(input); cut2 += 5 {
			c.mu.Lock()
			c.trace = nil
			c.mu.Unlock()
			w := c.writer(t, cl, TraceOptions{Secrets: []string{secret}})
			for _, p := range []string{input[:cut1], input[cut1:cut2], input[cut2:]} {
				_, err := io.WriteString(w, p)
				require.NoError(t, err)
			}
			require.NoError(t, w.Close())
			trace, _ := c.snapshot()
			require.Equal(t, want, string(trace), "cuts at %d and %d", cut1, cut2)
		}
	}
}

func TestTraceWriterMasksBuildSecrets(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	b := &Build{
		ID:    coordBuildID,
		Token: coordBuildToken,
		Variables: []Variable{
			{Key: "PUBLIC", Value: "visible-value", Public: true},
			{Key: "PRIVATE", Value: "private-value"},
		},
		RepoURL: "https://gitlab-ci-token:repo-password@example.com/g/p.git",
	}
	w, err := c.client(t, WithBuildToken("")).NewBuildTraceWriter(context.Background(), b, &TraceOptions{Secrets: []string{"extra-secret"}, KeepAlive: -1})
	require.NoError(t, err)
	_, err = fmt.Fprintf(w, "%s %s %s %s %s %s\n", coordBuildToken, "visible-value", "private-value", "repo-password", "extra-secret", coordRunnerToken)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	trace, _ := c.snapshot()
	assert.Equal(t, "[MASKED] visible-value [MASKED] [MASKED] [MASKED] [MASKED]\n", string(trace))
}

// GitLab refuses to mask values shorter than 8 characters: masking "1" would wreck every line. A build's short
// secrets stay in the trace; explicitly given ones are masked whatever their length.
func TestTraceWriterShortBuildSecrets(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	c.buildToken = "ab"
	b := &Build{
		ID:    coordBuildID,
		Token: "ab",
		Variables: []Variable{
			{Key: "DEBUG", Value: "1"},
			{Key: "SEVEN", Value: "7654321"},
			{Key: "EIGHT", Value: "8765432a"},
		},
		RepoURL:     "https://u:pw@example.com/g/p.git",
		Credentials: []Credential{{Type: "registry", URL: "r.example.com", Username: "u", Password: "regpw"}},
	}
	w, err := c.client(t, WithBuildToken("")).NewBuildTraceWriter(context.Background(), b, &TraceOptions{Secrets: []string{"xy"}, KeepAlive: -1})
	require.NoError(t, err)
	_, err = io.WriteString(w, "Step 1 of 10: sha256 ab12cd pw regpw 7654321\nEIGHT=8765432a, given: xy\n")
	require.NoError(t, err)
	require.NoError(t, w.Close())
	trace, _ := c.snapshot()
	assert.Equal(t, "Step 1 of 10: sha256 ab12cd pw regpw 7654321\nEIGHT=[MASKED], given: [MASKED]\n", string(trace))
}

func TestTraceWriterOutputLimit(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	w := c.writer(t, c.client(t), TraceOptions{OutputLimit: 10})
	for range 5 {
		n, err := io.WriteString(w, "0123456")
		require.NoError(t, err)
		assert.Equal(t, 7, n)
	}
	require.NoError(t, w.Close())
	trace, _ := c.snapshot()
	assert.Equal(t, "0123456012\n[runnerapi: the trace was truncated here: it reached its limit of 10 bytes]\n", string(trace))
	assert.Equal(t, int64(35), w.Stats().Written)
}

func TestTraceWriterNeedsBuildToken(t *testing.T) {
	cl, err := NewClient("https://gitlab.example.com")
	require.NoError(t, err)
	_, err = cl.NewTraceWriter(context.Background(), 1, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "build token")
	_, err = cl.NewTraceWriter(context.Background(), 1, &TraceOptions{Token: "t", ChunkSize: -1})
	require.Error(t, err)
	_, err = cl.NewBuildTraceWriter(context.Background(), nil, nil)
	require.Error(t, err)
}

func TestTraceWriterSpoolFileRemovedAndHeapBounded(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	// This coordinator only counts: the test is about the writer's memory, not the coordinator's.
	var got atomic.Int64
	c.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("Range", "0-"+strconv.FormatInt(got.Add(n), 10))
		w.WriteHeader(http.StatusAccepted)
	})
	dir := t.TempDir()
	w := c.writer(t, c.client(t), TraceOptions{TempDir: dir})
	line := bytes.Repeat([]byte("x"), 99)
	line = append(line, '\n')
	const total = 64 << 20
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	var peak uint64
	for i := 0; i < total/len(line); i++ {
		_, err := w.Write(line)
		require.NoError(t, err)
		if i%(8<<20/len(line)) == 0 {
			runtime.GC()
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
		}
	}
	w.mu.Lock()
	assert.NotNil(t, w.spool.file, "the trace beyond the memory limit is in temporary files")
	w.mu.Unlock()
	files, err := os.ReadDir(dir)
	require.NoError(t, err)
	if runtime.GOOS != "windows" { // Windows cannot remove an open file: there the files go at Close
		assert.Empty(t, files, "the temporary files have no name a crash could leave behind")
	}
	require.NoError(t, w.Close())
	files, err = os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, files, "Close removes the temporary files")
	assert.Equal(t, int64(total/len(line)*len(line)), got.Load())
	growth := int64(peak) - int64(base)
	t.Logf("heap growth while writing %d MiB: %d KiB", total>>20, growth>>10)
	assert.Less(t, growth, int64(12<<20), "heap beyond a few chunks")
}

func TestTraceWriterWriteDoesNotAllocate(t *testing.T) {
	for _, secrets := range [][]string{nil, {"a-secret-value"}} {
		t.Run(fmt.Sprint(len(secrets)), func(t *testing.T) {
			leakCheck(t)
			c := newTraceCoord(t)
			// A small memory limit puts the spool in its file; a large chunk keeps the sender, whose requests
			// allocate, quiet while allocations are counted.
			w := c.writer(t, c.client(t), TraceOptions{Secrets: secrets, MemoryLimit: 64 << 10, ChunkSize: 64 << 20, TempDir: t.TempDir()})
			line := append(bytes.Repeat([]byte("y"), 99), '\n')
			for range 1000 {
				_, _ = w.Write(line)
			}
			allocs := testing.AllocsPerRun(50000, func() { _, _ = w.Write(line) })
			assert.Zero(t, allocs)
			assert.Greater(t, w.Stats().Length, int64(2*traceSpoolBlock), "the writes crossed spool blocks")
			require.NoError(t, w.Close())
		})
	}
}

var traceSeeds = 200

func TestTraceWriterRandomFaults(t *testing.T) {
	seeds := traceSeeds
	if testing.Short() {
		seeds = 40
	}
	leakCheck(t)
	c := newTraceCoord(t)
	cl := c.client(t, WithRetryPolicy(RetryPolicy{MaxRetries: 30, MaxRetryAfter: time.Millisecond}))
	var retries, recoveries int64
	for seed := range uint64(seeds) {
		r := rand.New(rand.NewPCG(seed, 99))
		fr := rand.New(rand.NewPCG(seed, 100)) // the coordinator's, used with c.mu held
		c.mu.Lock()
		c.trace, c.parts, c.requests = nil, nil, 0
		c.fault = func(c *traceCoord, n int, start int64, body []byte) coordFault {
			switch x := fr.IntN(100); {
			case x < 6:
				return coordFault{act: actDropBefore}
			case x < 12:
				return coordFault{act: actDropAfter}
			case x < 16:
				return coordFault{act: actStatus, status: http.StatusServiceUnavailable, retryAfter: "1"}
			case x < 20:
				return coordFault{act: actApplyStatus, status: http.StatusInternalServerError}
			case x < 24 && len(body) > 1:
				return coordFault{act: actApplyPartial, keep: fr.IntN(len(body))}
			case x < 28 && len(c.trace) > 0:
				// The coordinator loses a little of its tail.
				c.trace = c.trace[:len(c.trace)-1-fr.IntN(min(len(c.trace), 200))]
			}
			return coordFault{}
		}
		c.mu.Unlock()
		w := c.writer(t, cl, TraceOptions{ChunkSize: 64 + r.IntN(1000), FlushInterval: time.Millisecond, MaxRangeErrors: 1000})
		want := traceText(r.IntN(8000), seed)
		for rest := want; len(rest) > 0; {
			n := min(len(rest), 1+r.IntN(300))
			_, err := w.Write(rest[:n])
			require.NoError(t, err)
			rest = rest[n:]
			if r.IntN(20) == 0 {
				require.NoError(t, w.Flush(context.Background()), "seed %d", seed)
			}
		}
		require.NoError(t, w.Close(), "seed %d", seed)
		trace, _ := c.snapshot()
		require.True(t, bytes.Equal(want, trace), "seed %d: trace of %d bytes differs from the %d written", seed, len(trace), len(want))
		st := w.Stats()
		retries += st.Retries
		recoveries += st.RangeRecoveries
	}
	assertContiguous(t, c)
	// The faults did happen: the test would prove nothing otherwise.
	t.Logf("%d seeds: %d retries, %d recoveries from 416", seeds, retries, recoveries)
	assert.Greater(t, retries, int64(seeds))
	assert.Greater(t, recoveries, int64(seeds))
}
