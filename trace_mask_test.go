package runnerapi

import (
	"bytes"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// collectSink is a traceSink that keeps what it is given.
type collectSink struct{ b []byte }

func (c *collectSink) put(b []byte) { c.b = append(c.b, b...) }

func TestTraceMasker(t *testing.T) {
	tests := []struct {
		name    string
		secrets []string
		in      string
		want    string
	}{
		{"no secret in text", []string{"secret"}, "plain text", "plain text"},
		{"one", []string{"secret"}, "a secret b", "a [MASKED] b"},
		{"adjacent", []string{"secret"}, "secretsecret", "[MASKED][MASKED]"},
		{"adjacent and overlapping", []string{"secret", "etse"}, "secretsecret secret", "[MASKED] [MASKED]"},
		{"apart", []string{"secret"}, "secret secret", "[MASKED] [MASKED]"},
		{"longest at one position", []string{"abc", "abcdef"}, "xabcdefx abcx", "x[MASKED]x [MASKED]x"},
		{"overlapping: both masked", []string{"abcd", "cdef"}, "abcdef", "[MASKED]"},
		{"overlapping tokens", []string{"hunter2", "2topsecret"}, "hunter2topsecret!", "[MASKED]!"},
		{"one inside another", []string{"cd", "abcdef"}, "xabcdefx", "x[MASKED]x"},
		{"self-overlapping", []string{"aba"}, "ababa ab", "[MASKED] ab"},
		{"prefix at the end is released by flush", []string{"secret"}, "the end: secr", "the end: secr"},
		{"self-overlapping prefix", []string{"aab"}, "aaab", "a[MASKED]"},
		{"a secret that starts a longer one, last", []string{"Tr0ub4dor", "Tr0ub4dor&3"},
			"connecting with password Tr0ub4dor", "connecting with password [MASKED]"},
		{"a secret that starts a longer one, then the longer", []string{"Tr0ub4dor", "Tr0ub4dor&3"},
			"Tr0ub4dor Tr0ub4dor&3", "[MASKED] [MASKED]"},
		{"a tail covered by a secret before it", []string{"abcd", "cdXY"}, "abcd", "[MASKED]"},
		{"empty and duplicate secrets ignored", []string{"", "s1", "s1"}, "s1 s2", "[MASKED] s2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newTraceMasker(tt.secrets)
			require.NotNil(t, m)
			// Every way of cutting the input in two gives the same output.
			for cut := 0; cut <= len(tt.in); cut++ {
				var out collectSink
				m.write([]byte(tt.in[:cut]), &out)
				m.write([]byte(tt.in[cut:]), &out)
				m.flush(&out)
				assert.Equal(t, tt.want, string(out.b), "cut at %d", cut)
			}
		})
	}
	assert.Nil(t, newTraceMasker([]string{"", ""}))
}

func TestTraceMaskerHoldsBackOnlyPossibleSecrets(t *testing.T) {
	m := newTraceMasker([]string{"password123"})
	var out collectSink
	m.write([]byte("log line pass"), &out)
	assert.Empty(t, out.b, "bytes gather until a window is full or settle is called")
	m.settle(&out)
	assert.Equal(t, "log line ", string(out.b), "a possible start of the secret is held back")
	m.write([]byte("ing by"), &out)
	m.settle(&out)
	assert.Equal(t, "log line passing by", string(out.b), "released once it cannot be the secret")
}

func TestTraceMaskerSearchesAWindowAtATime(t *testing.T) {
	m := newTraceMasker([]string{"password123"})
	var out collectSink
	line := []byte("a log line of thirty-two bytes.\n")
	for range traceMaskWindow/len(line) - 1 {
		m.write(line, &out)
	}
	assert.Empty(t, out.b, "less than a window: nothing passed on yet")
	m.write(append(line[:len(line):len(line)], "password123"...), &out)
	assert.Equal(t, traceMaskWindow, len(out.b), "a full window is passed on in one piece")
	m.flush(&out)
	assert.Equal(t, strings.Repeat(string(line), traceMaskWindow/len(line))+"[MASKED]", string(out.b))
	assert.Equal(t, traceMaskWindow, cap(m.pend), "the window does not grow")
}

func TestTraceMaskerRandomSplits(t *testing.T) {
	secrets := []string{"tok-Ab3", "Ab3Ab3", "xyzzy"}
	r := rand.New(rand.NewPCG(5, 5))
	alphabet := []string{"tok-", "Ab3", "xy", "zzy", "a", " ", "\n", "tok-Ab3", "xyzzy"}
	for range 300 {
		var in strings.Builder
		for range r.IntN(40) {
			in.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		whole := newTraceMasker(secrets)
		var want collectSink
		whole.write([]byte(in.String()), &want)
		whole.flush(&want)
		for _, s := range secrets {
			assert.NotContains(t, string(want.b), s)
		}
		m := newTraceMasker(secrets)
		var got collectSink
		rest := []byte(in.String())
		for len(rest) > 0 {
			n := 1 + r.IntN(len(rest))
			m.write(rest[:n], &got)
			rest = rest[n:]
		}
		m.flush(&got)
		require.Equal(t, string(want.b), string(got.b), "input %q", in.String())
	}
}

func TestTraceMaskerLargeWrite(t *testing.T) {
	m := newTraceMasker([]string{"s3cr3t"})
	var out collectSink
	in := strings.Repeat("x", traceMaskWindow-3) + "s3cr3t" + strings.Repeat("y", 3*traceMaskWindow)
	m.write([]byte("s3c"), &out) // something held back, so the large write goes through the window
	m.write([]byte(in), &out)
	m.flush(&out)
	assert.Equal(t, "s3c"+strings.Repeat("x", traceMaskWindow-3)+"[MASKED]"+strings.Repeat("y", 3*traceMaskWindow), string(out.b))
	assert.LessOrEqual(t, cap(m.pend), traceMaskWindow+len("s3cr3t"), "the held-back buffer does not grow with the write")
}

func TestTraceMaskerHoldBackAgreesWithBruteForce(t *testing.T) {
	// Texts made of the secrets' own bytes end in prefixes of them everywhere.
	r := rand.New(rand.NewPCG(7, 7))
	for range 3000 {
		secrets := randomSecrets(r)
		m := newTraceMasker(secrets)
		b := make([]byte, r.IntN(100))
		for i := range b {
			b[i] = "ab2-x"[r.IntN(5)]
		}
		want := 0
		for _, s := range secrets {
			for l := min(len(s)-1, len(b)); l > want; l-- {
				if string(b[len(b)-l:]) == s[:l] {
					want = l
				}
			}
		}
		require.Equal(t, want, m.holdBack(b), "secrets %q, text %q", secrets, b)
	}
}

// BenchmarkTraceMaskerLine is the masking cost of one 100-byte log line that holds no secret, for tokens of
// several shapes: the line has many of the first bytes of some.
func BenchmarkTraceMaskerLine(b *testing.B) {
	line := []byte("0000012345 Step 3/7 : RUN go test -race ./... ok github.com/runnerapi/runnerapi 1.234s coverage: 91.2%\n")
	for _, tc := range []struct{ name, build, runner string }{
		{"rare-first-bytes", "bench-build-token-0123456789abcdef", "bench-runner-token-0123456789abcdef"},
		{"common-first-bytes", "tok-secret-123456", "runner-secret-xyz"},
		{"hex", "6337ff461c94fd3fa32ba3b1ff4125", "a8b2c1d4e5f6a7b8c9d0"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			m := newTraceMasker([]string{tc.build, tc.runner})
			var out countSink
			b.SetBytes(int64(len(line)))
			b.ReportAllocs()
			for range b.N {
				m.write(line, &out)
			}
			m.flush(&out)
			require.Equal(b, b.N*len(line), out.n, "lines holding no secret pass unchanged")
		})
	}
}

// countSink is a traceSink that counts what it is given.
type countSink struct{ n int }

func (c *countSink) put(b []byte) { c.n += len(b) }

// Masking allocates nothing once running.
func TestTraceMaskerDoesNotAllocate(t *testing.T) {
	// Secrets longer than the 32 bytes the compiler keeps on the stack for a conversion.
	m := newTraceMasker([]string{"tok-secret-123456", strings.Repeat("runner-secret-xyz-", 4)})
	line := []byte("0000012345 Step 3/7 : RUN go test -race ./... ok github.com/runnerapi/runnerapi 1.234s tok-secret\n")
	var out countSink
	lines := (4 << 20) / len(line)
	allocs := testing.AllocsPerRun(1, func() {
		for range lines {
			m.write(line, &out)
		}
	})
	assert.Zero(t, allocs, "allocations while masking %d lines", lines)
}

// referenceMask is the masking rule written plainly, over a whole segment in memory: every byte of every
// occurrence of every secret is masked, and each run of masked bytes that occurrences hold together (each pair of
// neighbours in one occurrence) becomes one "[MASKED]".
func referenceMask(secrets []string, in []byte) []byte {
	covered := make([]bool, len(in))
	joined := make([]bool, len(in)) // joined[i]: bytes i-1 and i are in one occurrence
	for _, s := range secrets {
		for i := 0; s != "" && i+len(s) <= len(in); i++ {
			if string(in[i:i+len(s)]) == s {
				for j := range len(s) {
					covered[i+j] = true
					joined[i+j] = joined[i+j] || j > 0
				}
			}
		}
	}
	var out []byte
	for i := 0; i < len(in); {
		if !covered[i] {
			out = append(out, in[i])
			i++
			continue
		}
		out = append(out, masked...)
		for i++; i < len(in) && joined[i]; i++ {
		}
	}
	return out
}

// maskerRun drives a masker over in as ops say, and checks what it passes on against referenceMask for each
// segment between flushes: masking does not span a flush. Each op takes the next 1 to 1+op>>2 bytes and writes
// them, then also settles (op&3 == 1), or flushes (op&3 == 2). The window, which bounds the masker's buffer, can
// be made small so that short inputs fill it. It runs twice: as the masker chooses its search, and with the
// anchors of a few secrets forced to look at every window first.
func maskerRun(t *testing.T, secrets []string, in []byte, ops []byte, window int) {
	t.Helper()
	maskerRunSearch(t, secrets, in, ops, window, false)
	maskerRunSearch(t, secrets, in, ops, window, true)
}

// maskerRunSearch is maskerRun's one run, with the anchors forced to look first or not.
func maskerRunSearch(t *testing.T, secrets []string, in []byte, ops []byte, window int, anchored bool) {
	t.Helper()
	m := newTraceMasker(secrets)
	if m == nil {
		return
	}
	if anchored && m.anchors != nil {
		m.anchors.forced, m.anchors.use = true, true
	}
	if window > 0 {
		// The masker needs a window of twice its longest secret.
		longest := 0
		for _, s := range secrets {
			longest = max(longest, len(s))
		}
		m.window = max(window, 2*longest)
	}
	var out collectSink
	segment, flushed := 0, 0
	check := func(end int) {
		t.Helper()
		m.flush(&out)
		want := referenceMask(secrets, in[segment:end])
		if got := out.b[flushed:]; !bytes.Equal(got, want) {
			t.Fatalf("secrets %q, segment %q (bytes %d to %d of %q, ops %v, window %d, anchored %v):\n got %q\nwant %q",
				secrets, in[segment:end], segment, end, in, ops, m.window, anchored, got, want)
		}
		segment, flushed = end, len(out.b)
	}
	at := 0
	for k := 0; at < len(in); k++ {
		op := byte(0)
		if len(ops) > 0 {
			op = ops[k%len(ops)]
		}
		n := min(len(in)-at, 1+int(op>>2))
		m.write(in[at:at+n], &out)
		at += n
		switch op & 3 {
		case 1:
			m.settle(&out)
		case 2:
			check(at)
		}
	}
	check(len(in))
}

// randomSecrets returns secrets from a small alphabet that share prefixes and suffixes and overlap each other:
// pieces of one base string, some extended.
func randomSecrets(r *rand.Rand) []string {
	const alphabet = "ab2-"
	word := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		return string(b)
	}
	base := word(4 + r.IntN(20))
	secrets := make([]string, 1+r.IntN(6))
	for i := range secrets {
		from := r.IntN(len(base))
		to := from + 1 + r.IntN(len(base)-from)
		s := base[from:to]
		switch r.IntN(4) {
		case 0:
			s += word(r.IntN(4))
		case 1:
			s = word(r.IntN(4)) + s
		}
		if r.IntN(8) == 0 {
			s = word(1 + r.IntN(70)) // a long one
		}
		secrets[i] = s
	}
	return secrets
}

// The streaming masker passes on what the reference does, however the stream is cut into writes, settles and
// flushes.
func TestTraceMaskerMatchesReference(t *testing.T) {
	for seed := range uint64(3000) {
		r := rand.New(rand.NewPCG(seed, 12))
		secrets := randomSecrets(r)
		if seed%2 == 1 {
			// Secrets of 8 bytes or more, as builds have: the search takes its fastest path.
			for i := range secrets {
				for len(secrets[i]) < 8 {
					secrets[i] += secrets[i]
				}
			}
		}
		var in []byte
		for range r.IntN(60) {
			if r.IntN(2) == 0 {
				in = append(in, secrets[r.IntN(len(secrets))]...)
			} else {
				in = append(in, "ab2- x\n"[r.IntN(7)])
			}
		}
		ops := make([]byte, 1+r.IntN(8))
		for i := range ops {
			ops[i] = byte(r.IntN(256))
			if r.IntN(3) != 0 {
				ops[i] &^= 3 // mostly plain writes
			}
		}
		window := 0
		if r.IntN(2) == 0 {
			window = 1 + r.IntN(40)
		}
		maskerRun(t, secrets, in, ops, window)
	}
}

// The same, with a full window: large writes are searched where they are and long stretches pass unchanged.
func TestTraceMaskerMatchesReferenceLong(t *testing.T) {
	for seed := range uint64(40) {
		r := rand.New(rand.NewPCG(seed, 13))
		secrets := randomSecrets(r)
		if seed%2 == 1 {
			for i := range secrets {
				for len(secrets[i]) < 8 {
					secrets[i] += secrets[i]
				}
			}
		}
		var in []byte
		for len(in) < 3*traceMaskWindow {
			if r.IntN(200) == 0 {
				in = append(in, secrets[r.IntN(len(secrets))]...)
			} else {
				in = append(in, "the build log x\n"[r.IntN(16)])
			}
		}
		ops := []byte{byte(r.IntN(64)) << 2, 255 &^ 3, byte(r.IntN(256)), 255 &^ 3}
		maskerRun(t, secrets, in, ops, 0)
		// And one write of it all.
		maskerRun(t, secrets, in, []byte{255}, 0)
	}
}

// With a thousand secrets, as a project with many variables has, a Write still allocates nothing, and neither
// does masking a log a window at a time, lines with the start of a secret included.
func TestTraceWriterWithManySecretsDoesNotAllocate(t *testing.T) {
	leakCheck(t)
	r := rand.New(rand.NewPCG(1000, 1000))
	secrets := benchTraceSecrets(r, 1000)
	log := benchTraceLog(r, 1<<20)
	for i, k := 0, 0; i+100 <= len(log); i, k = i+1700, k+1 {
		for len(secrets[k%len(secrets)]) < 12 {
			k++
		}
		copy(log[i+50:i+60], secrets[k%len(secrets)]) // the start of a secret, not all of it
	}
	m := newTraceMasker(secrets)
	var out countSink
	allocs := testing.AllocsPerRun(1, func() {
		out.n = 0
		for line := log; len(line) > 0; line = line[100:] {
			m.write(line[:100], &out)
		}
		m.flush(&out)
	})
	assert.Zero(t, allocs, "allocations while masking %d bytes", len(log))
	require.Equal(t, len(log), out.n, "no secret in the log")

	c := newTraceCoord(t)
	// A small memory limit puts the spool in its file; a large chunk keeps the sender, whose requests allocate,
	// quiet while allocations are counted.
	w := c.writer(t, c.client(t), TraceOptions{Secrets: secrets, MemoryLimit: 64 << 10, ChunkSize: 64 << 20, TempDir: t.TempDir()})
	for line := log; len(line) > 0; line = line[100:] {
		_, _ = w.Write(line[:100])
	}
	line := log
	allocs = testing.AllocsPerRun(20000, func() {
		if len(line) == 0 {
			line = log
		}
		_, _ = w.Write(line[:100])
		line = line[100:]
	})
	assert.Zero(t, allocs, "allocations per Write")
	require.NoError(t, w.Close())
}

// The masker's memory does not grow with the trace: after the first MiB, masking 63 more allocates nothing and
// its buffer stays one window.
func TestTraceMaskerMemoryDoesNotGrowWithTheTrace(t *testing.T) {
	r := rand.New(rand.NewPCG(64, 64))
	secrets := benchTraceSecrets(r, 1000)
	log := benchTraceLog(r, 1<<20)
	copy(log[len(log)/2:], secrets[0]) // one secret a MiB, so the masked path runs too
	m := newTraceMasker(secrets)
	var out countSink
	mib := func() {
		for line := log; len(line) > 0; line = line[100:] {
			m.write(line[:100], &out)
		}
	}
	mib()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 63 {
		mib()
	}
	runtime.ReadMemStats(&after)
	assert.Less(t, after.Mallocs-before.Mallocs, uint64(16), "allocations over 63 MiB")
	assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(4<<10), "bytes allocated over 63 MiB")
	assert.Equal(t, m.window, cap(m.pend), "the window does not grow")
	m.flush(&out)
	assert.Equal(t, 64*(len(log)-len(secrets[0])+len(masked)), out.n, "a secret a MiB masked")
}

// The masker for a thousand secrets of 64 bytes, the most a build is expected to have, stays small beside them:
// what it keeps besides the window and the secrets' own bytes is under 64 bytes a secret.
func TestTraceMaskerSize(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	secrets := benchTraceSecrets(r, 1000)
	for i := range secrets {
		secrets[i] = (secrets[i] + strings.Repeat("x", 64))[:64]
	}
	m := newTraceMasker(secrets)
	size := cap(m.text) + 4*cap(m.starts) + 4*cap(m.entries) + 8*cap(m.filter) + len(m.first)
	t.Logf("masker for %d secrets of 64 bytes: %d bytes besides its %d-byte window", len(secrets), size, cap(m.pend))
	assert.Less(t, size-64*len(secrets), 64*len(secrets))
	assert.Equal(t, traceMaskWindow, cap(m.pend))
}

// Many secrets with a common start, as keys that all start with "-----BEGIN" or tokens of one kind are, share
// their first grams: the masker tells them apart, near misses and secrets that start others included.
func TestTraceMaskerSharedPrefixes(t *testing.T) {
	for seed := range uint64(300) {
		r := rand.New(rand.NewPCG(seed, 15))
		prefix := []string{"-----BEGIN KEY-----\n", "glpat-", "ab", ""}[r.IntN(4)]
		secrets := make([]string, 1+r.IntN(60))
		for i := range secrets {
			secrets[i] = prefix + randomSecrets(r)[0]
			if len(secrets[i]) < 8 {
				secrets[i] += "--------"[:8-len(secrets[i])]
			}
		}
		var in []byte
		for range r.IntN(40) {
			s := secrets[r.IntN(len(secrets))]
			switch r.IntN(4) {
			case 0:
				in = append(in, s...)
			case 1:
				in = append(in, s[:r.IntN(len(s))]...) // a near miss
			case 2:
				in = append(in, "-------- "...)
			default:
				in = append(in, "ab2- x\n"[r.IntN(7)])
			}
		}
		maskerRun(t, secrets, in, []byte{byte(r.IntN(256)) &^ 3, byte(r.IntN(256))}, 0)
	}
}
