package runnerapi

import (
	"bytes"
	"context"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// crcCoord is a coordinator of many builds that keeps, of each trace, only its length and CRC, appending a part
// where the trace ends and answering 416 with the length otherwise, as GitLab does. Some parts it refuses with a
// 503, after reading them or before (then the transport may still be sending the body after the answer).
type crcCoord struct {
	mu        sync.Mutex
	traces    map[int64]*crcTrace
	rand      *rand.Rand
	badBodies int // parts whose bytes are not those of their build's trace where they start
}

type crcTrace struct {
	length int64
	crc    uint32
}

func (c *crcCoord) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, "/ci/api/v1/builds/")
	idText, _, _ := strings.Cut(rest, "/")
	id, err := strconv.ParseInt(idText, 10, 64)
	if !ok || err != nil || r.Method != http.MethodPatch {
		http.Error(w, `{"message":"404 Not Found"}`, http.StatusNotFound)
		return
	}
	s, _, _ := strings.Cut(r.Header.Get("Content-Range"), "-")
	start, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		http.Error(w, `{"error":"400 Missing header Content-Range"}`, http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	fault := c.rand.IntN(16)
	c.mu.Unlock()
	if fault == 0 {
		// The answer first, the body read after it: the transport goes on sending it from the writer's
		// buffer or file, which must still hold the part.
		rc := http.NewResponseController(w)
		_ = rc.EnableFullDuplex()
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = rc.Flush()
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !bytes.Equal(body, stressTraceBytes(make([]byte, len(body)), id, start)) {
		c.badBodies++
	}
	if fault == 0 {
		return
	}
	t := c.traces[id]
	if t == nil {
		t = &crcTrace{}
		c.traces[id] = t
	}
	w.Header().Set("Build-Status", "running")
	if fault == 1 {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if start != t.length {
		w.Header().Set("Range", "0-"+strconv.FormatInt(t.length, 10))
		w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
		return
	}
	t.crc = crc32.Update(t.crc, crc32.IEEETable, body)
	t.length += int64(len(body))
	w.Header().Set("Range", "0-"+strconv.FormatInt(t.length, 10))
	w.WriteHeader(http.StatusAccepted)
}

func (c *crcCoord) trace(id int64) crcTrace {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t := c.traces[id]; t != nil {
		return *t
	}
	return crcTrace{}
}

// Many writers on one client, build after build, share the pools of spool arrays and part buffers: an array given
// back while a reader, a filer or the transport still uses it, or given back twice, ends up written by another
// build's writer, and some trace reaches its coordinator with bytes that are not its own. The limits are small so
// that the spool files, refills, pins and filing outside the writer's guard happen all the time; some builds end by
// their context mid-trace, some write blocks larger than the spool's, and the coordinator refuses parts now and
// then, before or after reading them.
func TestTraceWritersSharingPoolsKeepEachTraceIntact(t *testing.T) {
	coord := &crcCoord{traces: map[int64]*crcTrace{}, rand: rand.New(rand.NewPCG(1, 2))}
	srv := httptest.NewServer(coord)
	t.Cleanup(srv.Close)
	cl, err := NewClient(srv.URL, WithHTTPClient(srv.Client()), WithBuildToken(coordBuildToken),
		WithRetryPolicy(RetryPolicy{MaxRetries: 20, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond}))
	require.NoError(t, err)
	dir := t.TempDir()

	const (
		writers = 6
		builds  = 3
	)
	type result struct {
		id       int64
		want     crcTrace
		canceled bool // by its context, or by a Close while it wrote
		err      error
	}
	results := make(chan result, writers*builds)
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 99))
			for b := range builds {
				id := int64(1000 + g*builds + b)
				o := &TraceOptions{MemoryLimit: 64 << 10, FlushInterval: time.Millisecond, KeepAlive: -1, TempDir: dir}
				size := 1<<20 + r.IntN(3<<20)
				switch (g + b) % 3 {
				case 1:
					o.ChunkSize = 96 << 10 // parts cut elsewhere than at the spool's blocks, a buffer of its own
				case 2:
					o.MemoryLimit = 0 // the default limit: the memory phase's array from its pool, then the file
					size = DefaultTraceMemoryLimit + r.IntN(2<<20)
				}
				ctx, cancel := context.WithCancel(context.Background())
				cancelAt, closeAt := -1, -1
				switch r.IntN(4) {
				case 0:
					cancelAt = r.IntN(size)
				case 1:
					closeAt = r.IntN(size) // Close from elsewhere while Write goes on, filing blocks
				}
				var closed chan error
				w, err := cl.NewTraceWriter(ctx, id, o)
				if err != nil {
					cancel()
					results <- result{id: id, err: err}
					return
				}
				res := result{id: id}
				chunk := make([]byte, 0, 2<<20)
				for written := 0; written < size; {
					n := 1 + r.IntN(16<<10)
					if r.IntN(64) == 0 {
						n = 1<<20 + r.IntN(1<<20) // larger than a block: straight to the file
					}
					n = min(n, size-written)
					chunk = stressTraceBytes(chunk[:n], id, int64(written))
					if cancelAt >= 0 && written >= cancelAt && !res.canceled {
						cancel()
						res.canceled = true
					}
					if closeAt >= 0 && written >= closeAt && closed == nil {
						closed = make(chan error, 1)
						go func() { closed <- w.Close() }()
						res.canceled = true
					}
					if _, err := w.Write(chunk); err != nil {
						if res.canceled {
							break
						}
						res.err = err
						break
					}
					res.want.crc = crc32.Update(res.want.crc, crc32.IEEETable, chunk)
					res.want.length += int64(n)
					written += n
				}
				if closed != nil {
					if err := <-closed; err != nil {
						res.err = err
					}
				} else if err := w.Close(); err != nil && !res.canceled && res.err == nil {
					res.err = err
				}
				cancel()
				results <- res
			}
		}()
	}
	wg.Wait()
	close(results)
	checked := 0
	for res := range results {
		got := coord.trace(res.id)
		// Whatever landed, of a build ended early too, is the beginning of its own trace.
		assert.Equal(t, stressTraceCRC(res.id, got.length), got.crc, "build %d: the CRC of the %d bytes the coordinator has", res.id, got.length)
		switch {
		case res.err != nil:
			t.Errorf("build %d: %v", res.id, res.err)
		case res.canceled:
			assert.LessOrEqual(t, got.length, res.want.length, "build %d ended early", res.id)
		default:
			checked++
			assert.Equal(t, res.want, got, "build %d: the coordinator's trace (length, CRC)", res.id)
		}
	}
	assert.Positive(t, checked, "builds whose traces were checked whole")
	coord.mu.Lock()
	defer coord.mu.Unlock()
	assert.Zero(t, coord.badBodies, "parts that carried bytes other than their own")
}

// stressPattern is the text the builds' traces are cut from, each at an offset of its own: its length is prime,
// so that a stretch of one build's trace is found nowhere else in it, or in another build's, within a megabyte.
var stressPattern = func() []byte {
	r := rand.New(rand.NewPCG(11, 12))
	p := make([]byte, 1<<20+7)
	for i := range p {
		p[i] = 'a' + byte(r.IntN(26))
		if r.IntN(80) == 0 {
			p[i] = '\n'
		}
	}
	return p
}()

// stressTraceBytes fills b with the bytes of build id's trace from off on.
func stressTraceBytes(b []byte, id, off int64) []byte {
	pos := int((off + id*7919) % int64(len(stressPattern)))
	for done := 0; done < len(b); {
		n := copy(b[done:], stressPattern[pos:])
		done, pos = done+n, 0
	}
	return b
}

// stressTraceCRC is the CRC of the first n bytes of build id's trace.
func stressTraceCRC(id, n int64) uint32 {
	var crc uint32
	buf := make([]byte, 256<<10)
	for off := int64(0); off < n; {
		m := int(min(int64(len(buf)), n-off))
		crc = crc32.Update(crc, crc32.IEEETable, stressTraceBytes(buf[:m], id, off))
		off += int64(m)
	}
	return crc
}
