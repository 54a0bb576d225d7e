package runnerapi

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// trcCollect is a traceSink that keeps what it is given.
type trcCollect struct{ b []byte }

func (c *trcCollect) put(b []byte) { c.b = append(c.b, b...) }

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
				var out trcCollect
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
	var out trcCollect
	m.write([]byte("log line pass"), &out)
	assert.Equal(t, "log line ", string(out.b), "a possible start of the secret is held back")
	m.write([]byte("ing by"), &out)
	assert.Equal(t, "log line passing by", string(out.b), "released once it cannot be the secret")
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
		var want trcCollect
		whole.write([]byte(in.String()), &want)
		whole.flush(&want)
		for _, s := range secrets {
			assert.NotContains(t, string(want.b), s)
		}
		m := newTraceMasker(secrets)
		var got trcCollect
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
	var out trcCollect
	in := strings.Repeat("x", traceMaskWindow-3) + "s3cr3t" + strings.Repeat("y", 3*traceMaskWindow)
	m.write([]byte("s3c"), &out) // something held back, so the large write goes through the window
	m.write([]byte(in), &out)
	m.flush(&out)
	assert.Equal(t, "s3c"+strings.Repeat("x", traceMaskWindow-3)+"[MASKED]"+strings.Repeat("y", 3*traceMaskWindow), string(out.b))
	assert.LessOrEqual(t, cap(m.pend), traceMaskWindow+len("s3cr3t"), "the held-back buffer does not grow with the write")
}
