package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/runnerapi/runnerapi"
)

// The scenarios of a runner's real scale: a build with many secrets to mask, many builds' traces at once against
// one coordinator, and an upload the coordinator refuses on its headers.

// maskSecretCounts are the mask scenario's contenders: secrets besides the build and runner tokens.
var maskSecretCounts = []int{1, 10, 100, 1000}

func maskContenders() []contender {
	var cs []contender
	for i, n := range maskSecretCounts {
		floor := 1000.0 // MB/s: the goal for 1 and 10 secrets
		if n >= 100 {
			floor = 500
		}
		cs = append(cs, contender{Name: fmt.Sprintf("TraceWriter, %d secret(s)", n), Ref: i == 0, SDK: true,
			Child: "trace-sdk-mask", Secrets: n,
			judge: func(c, ref summary) (bool, string) {
				ok := c.MBps >= floor && c.MBps >= 0.5*ref.MBps
				return ok, fmt.Sprintf("%.0f MB/s, want >= %.0f; %.2fx of 1 secret, want >= 0.5", c.MBps, floor, c.MBps/ref.MBps)
			}})
	}
	return cs
}

// benchSecrets are n secrets of 8 to 64 bytes of letters, digits, - and _, the same in every run; none of them
// occurs in the benchmark's trace, whose lines are digits and one fixed sentence (the server's CRC would show it).
func benchSecrets(n int) []string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
	rng := rand.New(rand.NewPCG(uint64(n), 14))
	out := make([]string, n)
	for i := range out {
		b := make([]byte, 8+rng.IntN(57))
		for j := range b {
			b[j] = alphabet[rng.IntN(len(alphabet))]
		}
		out[i] = string(b)
	}
	return out
}

// maskSize is how much trace each mask contender writes: a quarter of the trace scenario's, since 1,000 secrets
// with a masker whose cost grows with them would otherwise take minutes.
func (h *harness) maskSize() int64 { return max(h.cfg.TraceSize/4, 64<<10) }

func (h *harness) maskScenario() processScenario {
	size := h.maskSize()
	want := traceCRC(size)
	return processScenario{
		Name: "mask", Kind: kindMask,
		Title: fmt.Sprintf("Trace of %s as 100-byte lines through a TraceWriter masking N secrets of 8 to 64 bytes "+
			"besides the build and runner tokens", formatBytes(size)),
		Target: "MB/s >= 1000 with 1 and 10 secrets, >= 500 with 100 and 1,000, and never below half the 1-secret " +
			"figure. Time: the child's own, first Write to Close",
		Bytes: size, Contenders: maskContenders(), ThroughputFromTransfer: true,
		params: func(c contender, id int64) childParams {
			p := h.baseParams(id)
			p.Size, p.Secrets = size, c.Secrets
			return p
		},
		verify: func(_ contender, p childParams, out childOutput, r *runResult) error {
			return h.verifyTrace(p.ID, size, want, out)
		},
	}
}

// verifyTrace checks that the server holds size bytes of the benchmark's trace for build id.
func (h *harness) verifyTrace(id, size int64, want uint32, out childOutput) error {
	length, crc, _, _ := h.srv.traceOf(id)
	if length != size || crc != want {
		return fmt.Errorf("build %d: the server holds %d bytes with CRC-32C %08x; want %d bytes, %08x", id, length, crc, size, want)
	}
	if out.TransferNS <= 0 {
		return errors.New("the contender reported no transfer time")
	}
	return nil
}

// childSDKTraceMask writes the trace through one TraceWriter that masks p.Secrets secrets besides both tokens.
func childSDKTraceMask(ctx context.Context, p childParams) (childOutput, error) {
	c, err := runnerapi.NewClient(p.URL, runnerapi.WithBuildToken(p.BuildToken), runnerapi.WithRunnerToken(p.RunnerToken))
	if err != nil {
		return childOutput{}, err
	}
	secrets := benchSecrets(p.Secrets)
	out, _, err := measureTraceWriter(ctx, c, p, &runnerapi.TraceOptions{Token: p.BuildToken, Secrets: secrets})
	return out, err
}

// measureTraceWriter writes p.Size bytes of trace line by line through a TraceWriter made with opts and closes it,
// which waits for the coordinator to acknowledge every byte. The time and the mallocs it reports run from before
// the writer is made to after it closed; the closed writer is returned for its Stats.
func measureTraceWriter(ctx context.Context, c *runnerapi.Client, p childParams, opts *runnerapi.TraceOptions) (childOutput, *runnerapi.TraceWriter, error) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	w, err := c.NewTraceWriter(ctx, p.ID, opts)
	if err != nil {
		return childOutput{}, nil, err
	}
	writes, err := writeTrace(w, p.Size)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	if err != nil {
		return childOutput{}, nil, err
	}
	return childOutput{Bytes: p.Size, TransferNS: elapsed.Nanoseconds(), Writes: writes,
		Mallocs: int64(after.Mallocs - before.Mallocs)}, w, nil
}

// writeTrace writes the first size bytes of the benchmark's trace to w, a line per Write.
func writeTrace(w io.Writer, size int64) (int64, error) {
	return forEachTraceChunk(size, func(line []byte) error {
		n, err := w.Write(line)
		if err == nil && n != len(line) {
			err = io.ErrShortWrite
		}
		return err
	})
}

// manyChunkSize is the part size of the concurrent writers: smaller than the default, so that each writer sends
// many parts and the connections' reuse shows in a run of seconds.
const manyChunkSize = 64 << 10

// manyWriterCounts are the concurrent scenario's writer counts; the last is also run on http.DefaultTransport.
var manyWriterCounts = []int{1, 10, 200}

func manyContenders() []contender {
	var cs []contender
	for i, n := range manyWriterCounts {
		cs = append(cs, contender{Name: fmt.Sprintf("%d writer(s), SDK default client", n), Ref: i == 0, SDK: true,
			Child: "trace-sdk-many", Writers: n, judge: judgeConns(n)})
	}
	last := manyWriterCounts[len(manyWriterCounts)-1]
	cs = append(cs, contender{Name: fmt.Sprintf("%d writers, caller's client on http.DefaultTransport", last),
		Child: "trace-sdk-many", Writers: last, DefaultTransport: true})
	for _, proto := range []string{tlsHTTP1, tlsHTTP2} {
		cs = append(cs, contender{Name: fmt.Sprintf("%d writers, SDK default client, TLS, %s", last, proto), SDK: true,
			Child: "trace-sdk-many", Writers: last, TLS: proto, judge: judgeConns(last)})
	}
	return cs
}

// judgeConns judges n writers' connections: about one per writer, no more than needed. Over HTTP/2, where one
// serves them all, the same bound holds, and the figure shows how far below it they are.
func judgeConns(n int) func(c, _ summary) (bool, string) {
	return func(c, _ summary) (bool, string) {
		bound := float64(n) + max(2, float64(n)/10)
		return c.Conns <= bound, fmt.Sprintf("%.0f connections, want <= %.0f", c.Conns, bound)
	}
}

// manySize is the whole trace the concurrent writers share: half the trace scenario's.
func (h *harness) manySize() int64 { return max(h.cfg.TraceSize/2, 256<<10) }

// manyWriterID is the build of writer i of a run whose build is base.
func manyWriterID(base int64, i int) int64 { return base*1000 + int64(i) + 1 }

func (h *harness) manyScenario() processScenario {
	size := h.manySize()
	crcs := map[int64]uint32{}
	return processScenario{
		Name: "concurrent", Kind: kindMany,
		Title: fmt.Sprintf("%s of trace split over N TraceWriters at once, one build each, against one server "+
			"(%s parts)", formatBytes(size), formatBytes(manyChunkSize)),
		Target: "about one connection per concurrent writer, no more than needed: <= N + max(2, N/10). Time: the " +
			"child's own, first NewTraceWriter to last Close",
		Bytes: size, Contenders: manyContenders(), ThroughputFromTransfer: true,
		params: func(c contender, id int64) childParams {
			p := h.baseParams(id)
			p.Size, p.Writers, p.DefaultTransport = size, c.Writers, c.DefaultTransport
			if c.TLS != "" {
				p.URL = h.tls.URLs[c.TLS]
			}
			return p
		},
		verify: func(c contender, p childParams, out childOutput, r *runResult) error {
			r.Note = fmt.Sprintf("server: at most %d requests in flight at once", h.srv.peakInFlight.Load())
			per := p.Size / int64(p.Writers)
			want, ok := crcs[per]
			if !ok {
				want = traceCRC(per)
				crcs[per] = want
			}
			for i := range p.Writers {
				if err := h.verifyTrace(manyWriterID(p.ID, i), per, want, out); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

// childSDKTraceMany writes p.Size bytes of trace through p.Writers TraceWriters at once, one build each, through
// one client: the SDK's default, or one on http.DefaultTransport (-default-transport).
func childSDKTraceMany(ctx context.Context, p childParams) (childOutput, error) {
	opts := []runnerapi.Option{runnerapi.WithBuildToken(p.BuildToken)}
	if p.DefaultTransport {
		opts = append(opts, runnerapi.WithHTTPClient(&http.Client{}))
	}
	c, err := runnerapi.NewClient(p.URL, opts...)
	if err != nil {
		return childOutput{}, err
	}
	if p.Writers <= 0 {
		return childOutput{}, errors.New("no writers")
	}
	per := p.Size / int64(p.Writers)
	tally := &connTally{writers: int64(p.Writers)}
	type result struct {
		writes int64
		err    error
	}
	results := make(chan result, p.Writers)
	start := time.Now()
	for i := range p.Writers {
		go func() {
			id := manyWriterID(p.ID, i)
			ctx := httptrace.WithClientTrace(ctx, tally.trace())
			w, err := c.NewTraceWriter(ctx, id, &runnerapi.TraceOptions{Token: p.BuildToken, ChunkSize: manyChunkSize})
			if err != nil {
				results <- result{err: err}
				return
			}
			writes, err := writeTrace(w, per)
			if cerr := w.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				err = fmt.Errorf("writer of build %d: %w", id, err)
			}
			results <- result{writes, err}
		}()
	}
	var writes int64
	var firstErr error
	for range p.Writers {
		r := <-results
		writes += r.writes
		if firstErr == nil {
			firstErr = r.err
		}
	}
	elapsed := time.Since(start)
	if firstErr != nil {
		return childOutput{}, firstErr
	}
	return childOutput{Bytes: per * int64(p.Writers), TransferNS: elapsed.Nanoseconds(), Writes: writes, Note: tally.String()}, nil
}

// connTally counts, on the client's side (net/http/httptrace), how the concurrent writers came by their
// connections, to tell what a connection opened beyond the writers' need was: a dial that lost its race (net/http
// hands a request that is dialing the first connection to fall idle, and pools the one it dialed), a connection
// the client did not keep, or one opened once every writer was under way.
type connTally struct {
	writers int64
	// dialed counts the connections opened; ownDial the requests that got the connection their own dial opened.
	dialed, ownDial atomic.Int64
	// notKept counts connections the transport refused to pool after an answer (over MaxIdleConnsPerHost, say).
	notKept atomic.Int64
	// answered counts the writers that have had a first answer; lateDials the dials started after all had.
	answered, lateDials atomic.Int64
}

// trace returns the hooks for one writer's requests.
func (t *connTally) trace() *httptrace.ClientTrace {
	var answered atomic.Bool
	return &httptrace.ClientTrace{
		ConnectStart: func(string, string) {
			if t.answered.Load() == t.writers {
				t.lateDials.Add(1)
			}
		},
		ConnectDone: func(_, _ string, err error) {
			if err == nil {
				t.dialed.Add(1)
			}
		},
		GotConn: func(info httptrace.GotConnInfo) {
			if !info.Reused {
				t.ownDial.Add(1)
			}
		},
		PutIdleConn: func(err error) {
			if err != nil {
				t.notKept.Add(1)
			}
		},
		GotFirstResponseByte: func() {
			if answered.CompareAndSwap(false, true) {
				t.answered.Add(1)
			}
		},
	}
}

func (t *connTally) String() string {
	dialed, own := t.dialed.Load(), t.ownDial.Load()
	return fmt.Sprintf("client: %d connections dialed, %d used first by the request that dialed them, %d dials lost "+
		"the race to a connection handed back, %d connections not kept after an answer, %d dials started once every "+
		"writer had its first answer", dialed, own, dialed-own, t.notKept.Load(), t.lateDials.Load())
}

// tooLargeContenders upload to a build the server refuses with a 413 on the headers.
var tooLargeContenders = []contender{
	{Name: "curl -F", Ref: true, Argv: curlTooLargeArgv},
	{Name: "SDK UploadFile", SDK: true, Child: "upload-sdk-file"},
	{Name: "SDK Upload (stream)", SDK: true, Child: "upload-sdk-stream"},
}

// curlTooLargeArgv uploads without -f, printing the status code, so that the refusal is an exit 0 to check.
func curlTooLargeArgv(p childParams) []string {
	return []string{"curl", "-q", "-sS", "-o", os.DevNull, "-w", "%{http_code}", "-F", "file=@" + p.Path,
		"-H", "BUILD-TOKEN: " + p.BuildToken, artifactsURL(p)}
}

func (h *harness) tooLargeScenario() processScenario {
	var next int64
	return processScenario{
		Name: "toolarge", Kind: kindTooLarge,
		Title: fmt.Sprintf("Artifact upload of %s that the server answers 413 on its headers", formatBytes(h.cfg.Size)),
		Target: "the error arrives without the body being sent: the SDK's time to it <= 1.05x curl's (both send " +
			"Expect: 100-continue and wait for the answer)",
		Bytes: h.cfg.Size, Contenders: tooLargeContenders,
		params: func(c contender, id int64) childParams {
			next++
			p := h.baseParams(tooLargeFirstID + next)
			p.Path, p.Size, p.ExpectStatus = h.dataPath, h.cfg.Size, http.StatusRequestEntityTooLarge
			return p
		},
		verify: func(c contender, p childParams, out childOutput, r *runResult) error {
			refused := h.srv.takeRefused()
			if len(refused) != 1 || refused[0] != p.ID {
				return fmt.Errorf("the server refused builds %v; want exactly build %d", refused, p.ID)
			}
			if len(h.srv.takeUploads()) > 0 {
				return errors.New("the server accepted an upload")
			}
			if c.Argv != nil {
				if got := lastLine(r.stdout); got != strconv.Itoa(http.StatusRequestEntityTooLarge) {
					return fmt.Errorf("curl ended with status %q; want 413", got)
				}
				r.Note = "curl got 413"
			}
			return nil
		},
		judge: func(c, ref summary) (bool, string) {
			ratio := c.WallNS / ref.WallNS
			return ratio <= 1.05, fmt.Sprintf("%.3fx curl", ratio)
		},
	}
}
