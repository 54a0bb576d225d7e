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
		{"longest at one position wins", []string{"abc", "abcdef"}, "xabcdefx abcx", "x[MASKED]x [MASKED]x"},
		{"overlapping: leftmost wins", []string{"abcd", "cdef"}, "abcdef", "[MASKED]ef"},
		{"prefix at the end is released by flush", []string{"secret"}, "the end: secr", "the end: secr"},
		{"self-overlapping prefix", []string{"aab"}, "aaab", "a[MASKED]"},
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
