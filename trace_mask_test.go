package runnerapi

import (
	"bytes"
	"math/rand/v2"
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

func TestTraceMaskerIndexAgreesWithBytesIndex(t *testing.T) {
	// Texts made of the secrets' own bytes put the rarest byte everywhere, so the search goes through its misses,
	// its hand-over to bytes.Index, and matches at both ends of the text.
	secrets := []string{"zzzzzq", "abcab", "6337ff461c94", "x"}
	m := newTraceMasker(secrets)
	r := rand.New(rand.NewPCG(7, 7))
	for range 3000 {
		k := r.IntN(len(m.secrets))
		s := m.secrets[k]
		m.anchors[k] = r.IntN(len(s)) // any anchor finds the same first match
		b := make([]byte, r.IntN(300))
		for i := range b {
			b[i] = s[r.IntN(len(s))]
		}
		if len(b) >= len(s) && r.IntN(3) == 0 {
			copy(b[r.IntN(len(b)-len(s)+1):], s)
		}
		require.Equal(t, bytes.Index(b, s), m.index(b, k), "secret %q in %q", s, b)
	}
}

func TestTraceMaskerPicksAnchorsFromTheTrace(t *testing.T) {
	m := newTraceMasker([]string{"zq-abc"})
	require.Equal(t, 0, m.anchors[0], "z: the rarest by the table")
	var out countSink
	text := strings.Repeat("qqzzq-ab \n", traceMaskWindow/10+1)
	m.write([]byte(text), &out)
	assert.Equal(t, 5, m.anchors[0], "c: the only byte of the secret this trace lacks")
	m.write([]byte("zq-abc\n"), &out)
	m.flush(&out)
	assert.Equal(t, len(text)+len("[MASKED]\n"), out.n, "the secret is found by its new anchor")
}

func TestTraceRarestByte(t *testing.T) {
	assert.Equal(t, 3, traceRarestByte([]byte("tot-set"), nil), "the dash, not the common t")
	assert.Equal(t, 2, traceRarestByte([]byte("ab\x00cd"), nil), "a byte not listed is the rarest")
	assert.Equal(t, 0, traceRarestByte([]byte("eee"), nil), "the first of equals")
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

// Masking allocates nothing once running, choosing anchors again included.
func TestTraceMaskerDoesNotAllocate(t *testing.T) {
	// Secrets longer than the 32 bytes the compiler keeps on the stack for a conversion.
	m := newTraceMasker([]string{"tok-secret-123456", strings.Repeat("runner-secret-xyz-", 4)})
	line := []byte("0000012345 Step 3/7 : RUN go test -race ./... ok github.com/runnerapi/runnerapi 1.234s\n")
	var out countSink
	lines := 4 * traceMaskRepick / len(line)
	allocs := testing.AllocsPerRun(1, func() {
		for range lines {
			m.write(line, &out)
		}
	})
	assert.Zero(t, allocs, "allocations while masking %d lines", lines)
	assert.Greater(t, m.repickAt, int64(3*traceMaskRepick), "anchors were chosen again meanwhile")
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
// be made small so that short inputs fill it.
func maskerRun(t *testing.T, secrets []string, in []byte, ops []byte, window int) {
	t.Helper()
	m := newTraceMasker(secrets)
	if m == nil {
		return
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
			t.Fatalf("secrets %q, segment %q (bytes %d to %d of %q, ops %v, window %d):\n got %q\nwant %q",
				secrets, in[segment:end], segment, end, in, ops, m.window, got, want)
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
