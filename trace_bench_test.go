package runnerapi

import (
	"bytes"
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// benchServer answers every PATCH with 202 and the length it counted, and discards the body cheaply.
func benchServer(b *testing.B) (*httptest.Server, *atomic.Int64, *atomic.Int64) {
	var length, requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		requests.Add(1)
		w.Header().Set("Range", "0-"+strconv.FormatInt(length.Add(n), 10))
		w.Header().Set("Build-Status", "running")
		w.WriteHeader(http.StatusAccepted)
	}))
	b.Cleanup(srv.Close)
	return srv, &length, &requests
}

func BenchmarkTraceWriterWrite(b *testing.B) {
	srv, length, _ := benchServer(b)
	cl, err := NewClient(srv.URL, WithHTTPClient(srv.Client()), WithBuildToken(coordBuildToken))
	require.NoError(b, err)
	newWriter := func() *TraceWriter {
		length.Store(0) // a new build's trace
		w, err := cl.NewTraceWriter(context.Background(), 1, nil)
		require.NoError(b, err)
		return w
	}
	// A fresh writer every 64 MiB: millions of Writes would otherwise grow one spool file to gigabytes, and the
	// kernel's throttling of dirty pages, not Write, would be measured.
	const perWriter = 64 << 20 / 100
	w := newWriter()
	line := append(bytes.Repeat([]byte("z"), 99), '\n')
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if i > 0 && i%perWriter == 0 {
			b.StopTimer()
			require.NoError(b, w.Close())
			w = newWriter()
			b.StartTimer()
		}
		if _, err := w.Write(line); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	require.NoError(b, w.Close())
}

// benchSize is the trace each throughput benchmark op sends.
const benchSize = 256 << 20

func BenchmarkTraceThroughput(b *testing.B) {
	// 100-byte lines, as a build writes them; and 64 KiB writes, which show the pipeline without the cost of
	// millions of Write calls.
	for _, size := range []int{100, 64 << 10} {
		b.Run(fmt.Sprintf("TraceWriter/%dB-writes", size), func(b *testing.B) {
			srv, length, requests := benchServer(b)
			cl, err := NewClient(srv.URL, WithHTTPClient(srv.Client()), WithBuildToken(coordBuildToken))
			require.NoError(b, err)
			line := append(bytes.Repeat([]byte("w"), size-1), '\n')
			b.SetBytes(benchSize)
			b.ResetTimer()
			for range b.N {
				length.Store(0)
				w, err := cl.NewTraceWriter(context.Background(), 1, nil)
				require.NoError(b, err)
				for i := 0; i < benchSize; i += len(line) {
					_, _ = w.Write(line[:min(len(line), benchSize-i)])
				}
				require.NoError(b, w.Close())
			}
			b.StopTimer()
			require.Equal(b, int64(benchSize), length.Load())
			b.ReportMetric(float64(requests.Load())/float64(b.N), "requests/op")
		})
	}
	// A runner's usual work: many builds, each a trace small enough for the spool's memory (4 MB; gitlab-runner
	// cuts a build's log at 4 MiB by default), each with a writer of its own.
	b.Run("TraceWriter/64-traces-of-4MB", func(b *testing.B) {
		const traces, size = 64, 4_000_000
		srv, length, _ := benchServer(b)
		cl, err := NewClient(srv.URL, WithHTTPClient(srv.Client()), WithBuildToken(coordBuildToken))
		require.NoError(b, err)
		line := append(bytes.Repeat([]byte("w"), 99), '\n')
		b.SetBytes(traces * size)
		b.ReportAllocs()
		for range b.N {
			for range traces {
				length.Store(0)
				w, err := cl.NewTraceWriter(context.Background(), 1, nil)
				require.NoError(b, err)
				for i := 0; i < size; i += len(line) {
					_, _ = w.Write(line[:min(len(line), size-i)])
				}
				require.NoError(b, w.Close())
				require.Equal(b, int64(size), length.Load())
			}
		}
	})
	// The sending side alone: the trace is spooled before the clock starts, so this is Close draining 256 MiB.
	b.Run("TraceWriter/spooled-before", func(b *testing.B) {
		srv, length, requests := benchServer(b)
		cl, err := NewClient(srv.URL, WithHTTPClient(srv.Client()), WithBuildToken(coordBuildToken))
		require.NoError(b, err)
		line := append(bytes.Repeat([]byte("s"), 64<<10-1), '\n')
		b.SetBytes(benchSize)
		for range b.N {
			b.StopTimer()
			length.Store(0)
			w, err := cl.NewTraceWriter(context.Background(), 1, &TraceOptions{FlushInterval: time.Hour})
			require.NoError(b, err)
			w.mu.Lock() // record, unlike Write, does not wake the sender: nothing is sent before Close
			for i := 0; i < benchSize; i += len(line) {
				w.record(line)
			}
			w.mu.Unlock()
			b.StartTimer()
			require.NoError(b, w.Close())
		}
		b.StopTimer()
		require.Equal(b, int64(benchSize), length.Load())
		b.ReportMetric(float64(requests.Load())/float64(b.N), "requests/op")
	})
	b.Run("Ceiling", func(b *testing.B) {
		srv, length, requests := benchServer(b)
		hc := srv.Client()
		part := bytes.Repeat([]byte("c"), 1<<20)
		url := srv.URL + "/ci/api/v1/builds/1/trace.txt"
		b.SetBytes(benchSize)
		b.ResetTimer()
		for range b.N {
			length.Store(0)
			for off := int64(0); off < benchSize; off += int64(len(part)) {
				req, err := http.NewRequest(http.MethodPatch, url, bytes.NewReader(part))
				if err != nil {
					b.Fatal(err)
				}
				req.Header.Set("BUILD-TOKEN", coordBuildToken)
				req.Header.Set("Content-Range", strconv.FormatInt(off, 10)+"-"+strconv.FormatInt(off+int64(len(part)), 10))
				resp, err := hc.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					b.Fatal(resp.Status)
				}
			}
		}
		b.StopTimer()
		require.Equal(b, int64(benchSize), length.Load())
		b.ReportMetric(float64(requests.Load())/float64(b.N), "requests/op")
	})
}

// BenchmarkTraceWriterStages is what each stage of a TraceWriter costs per 100-byte line, alone, beside what the
// whole writer costs (BenchmarkTraceWriterWrite): the lock any io.Writer safe for concurrent use takes per Write
// (with the copy of the line), the masking of the build and runner tokens, the spool's copy of the masked bytes and
// their write to its file, and the CRC-32 of the output. The ceiling of BenchmarkTraceThroughput pays none of them.
func BenchmarkTraceWriterStages(b *testing.B) {
	line := append(bytes.Repeat([]byte("s"), 99), '\n')
	const window = 64 << 10 // a masker's window: the unit the later stages take
	chunk := bytes.Repeat(line, window/len(line))
	perLine := func(b *testing.B) {
		b.SetBytes(int64(len(line)))
		b.ReportAllocs()
	}
	b.Run("lock-and-copy", func(b *testing.B) {
		var mu sync.Mutex
		buf := make([]byte, 0, window)
		perLine(b)
		for range b.N {
			mu.Lock()
			if len(buf)+len(line) > cap(buf) {
				buf = buf[:0]
			}
			buf = append(buf, line...)
			mu.Unlock()
		}
	})
	b.Run("mask-tokens", func(b *testing.B) {
		m := newTraceMasker([]string{coordBuildToken, coordRunnerToken})
		var out countSink
		perLine(b)
		for range b.N {
			m.write(line, &out)
		}
	})
	b.Run("spool-to-file", func(b *testing.B) {
		var s traceSpool
		var written int64
		perLine(b)
		for i := 0; i < b.N; i += len(chunk) / len(line) {
			if written >= 256<<20 {
				// A new trace every 256 MiB, as BenchmarkTraceWriterWrite does every 64 MiB.
				require.NoError(b, s.release())
				written = 0
			}
			if written == 0 {
				s = traceSpool{memLimit: DefaultTraceMemoryLimit, dir: b.TempDir()}
			}
			require.NoError(b, s.append(chunk))
			if s.toFileSoon {
				s.toFileSoon = false
				if job, ok := s.fileLater(); ok {
					require.NoError(b, job.write())
					s.filed(job)
					s.doneFiling()
				}
			}
			written += int64(len(chunk))
		}
		require.NoError(b, s.release())
	})
	b.Run("crc32", func(b *testing.B) {
		var sum uint32
		perLine(b)
		for i := 0; i < b.N; i += len(chunk) / len(line) {
			sum = crc32.Update(sum, crc32.IEEETable, chunk)
		}
	})
}
