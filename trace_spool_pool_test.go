package runnerapi

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A runner writes one trace per build: the spool's memory and the sender's buffer serve the next build's writer
// instead of being allocated anew for each (about 8 MiB for a trace of 3 MB: the memory phase's doublings up to
// 4 MiB, and the buffer of a part).
func TestTraceWritersReuseTheirMemory(t *testing.T) {
	var length atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Discards the parts, so that what is counted is the writer's.
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("Range", "0-"+strconv.FormatInt(length.Add(n), 10))
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(srv.Close)
	cl, err := NewClient(srv.URL, WithHTTPClient(srv.Client()), WithBuildToken(coordBuildToken))
	require.NoError(t, err)
	line := append(bytes.Repeat([]byte("r"), 99), '\n')
	trace := func() {
		w, err := cl.NewTraceWriter(context.Background(), coordBuildID, &TraceOptions{KeepAlive: -1})
		require.NoError(t, err)
		for n := 0; n < 3_000_000; n += len(line) {
			_, err := w.Write(line)
			require.NoError(t, err)
		}
		require.NoError(t, w.Close())
		length.Store(0) // the next build's trace
	}
	trace() // the first writer fills the pools
	const traces = 10
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range traces {
		trace()
	}
	runtime.ReadMemStats(&after)
	perTrace := (after.TotalAlloc - before.TotalAlloc) / traces
	t.Logf("allocated per 3 MB trace: %d KiB", perTrace>>10)
	// Without the pools, 9 MiB; with them, well under 1 MiB (a part's request and answer, the masker's window), or
	// a little more under the race detector, whose pools drop a quarter of what they are given.
	assert.Less(t, perTrace, uint64(4<<20), "a writer's memory comes from the writers before it")
}

// An array read outside the spool's guard when the spool is released is left to the collector: given to the pool,
// the next trace would write over what the reader reads.
func TestTraceSpoolReleaseKeepsPinnedArraysOutOfThePool(t *testing.T) {
	s := traceSpool{memLimit: 1000, dir: t.TempDir()}
	line := bytes.Repeat([]byte("p"), 1000)
	for range 3 * traceSpoolBlock / len(line) {
		require.NoError(t, s.append(line))
	}
	require.NotNil(t, s.file)
	view, err := s.readLater(s.size-10, 10) // a read from mem, pinned
	require.NoError(t, err)
	// (That the others go there is TestTraceWritersReuseTheirMemory's: under the race detector the pool drops
	// some of what it is given.)
	pinned := traceArrayID(view.segs[0].held)
	require.NoError(t, s.release())
	var got [][]byte // kept, so that no address is freed and used again meanwhile
	sawPinned := false
	for range 8 {
		b := traceBlocks.get()
		got = append(got, b)
		sawPinned = sawPinned || traceArrayID(b) == pinned
	}
	runtime.KeepAlive(view)
	runtime.KeepAlive(got)
	assert.False(t, sawPinned, "the pinned array went to the pool")
}

// A small trace's memory, under the default memory limit, comes from the pool too: its first array is a pooled one
// of traceSpoolSmall bytes, not a few KiB doubled up to it (124 KiB a build), and it goes back there.
func TestTraceSpoolSmallTraceReusesItsArray(t *testing.T) {
	line := append(bytes.Repeat([]byte("s"), 99), '\n')
	small := func() {
		s := traceSpool{memLimit: DefaultTraceMemoryLimit}
		for s.size+int64(len(line)) <= traceSpoolSmall {
			require.NoError(t, s.append(line))
		}
		require.Equal(t, traceSpoolSmall, cap(s.mem), "the small trace's array")
		require.NoError(t, s.release())
	}
	small() // fills the pool
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const traces = 20
	for range traces {
		small()
	}
	runtime.ReadMemStats(&after)
	// Under the race detector a pool drops a quarter of what it is given: a few arrays are allocated anew.
	assert.Less(t, (after.TotalAlloc-before.TotalAlloc)/traces, uint64(traceSpoolSmall/2), "bytes allocated per small trace")
}
