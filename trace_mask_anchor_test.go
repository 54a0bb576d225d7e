package runnerapi

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Before any count, a secret is anchored at the byte that build logs hold least of; once a window of the log is
// counted, at the byte this log holds least of, and the secret is still masked.
func TestTraceMaskerAnchorsFollowTheLog(t *testing.T) {
	m := newTraceMasker([]string{"Zeta-ok-ZZ"})
	require.NotNil(t, m.anchors)
	assert.Equal(t, "Z", string(m.anchors.bytes), "upper case is rare in build logs")
	assert.True(t, m.anchors.use)

	// A log full of upper case Z, and without a 'k'.
	line := []byte("ZZ TOP ZZ 0001 Zeta-o ZZZZZZZZ done\n")
	var out collectSink
	for range 2 * traceMaskWindow / len(line) {
		m.write(line, &out)
	}
	assert.Equal(t, "k", string(m.anchors.bytes), "this log holds no 'k'")
	assert.True(t, m.anchors.use)
	m.write([]byte("login Zeta-ok-ZZ\n"), &out)
	m.flush(&out)
	assert.True(t, strings.HasSuffix(string(out.b), "login [MASKED]\n"), "%q", out.b[len(out.b)-40:])
	assert.Equal(t, 1, strings.Count(string(out.b), masked))
}

// Where the anchors cost more than the gram search, they stand aside: secrets of only the commonest bytes of a log,
// and more secrets than traceMaskAnchorMost. Masking is the same either way (TestTraceMaskerMatchesReference).
func TestTraceMaskerAnchorsStandAside(t *testing.T) {
	m := newTraceMasker([]string{"the rest is", "see the tree"})
	require.NotNil(t, m.anchors)
	assert.False(t, m.anchors.use, "spaces and lower case letters are everywhere in a log")

	r := rand.New(rand.NewPCG(7, 7))
	assert.Nil(t, newTraceMasker(benchTraceSecrets(r, traceMaskAnchorMost+1)).anchors)
	assert.NotNil(t, newTraceMasker(benchTraceSecrets(r, traceMaskAnchorMost)).anchors)
}

// Anchors for more secrets than one word of bits holds: each secret has its anchor, and masking matches the
// reference with the anchors looking first, whichever word of the sets a secret's bit is in.
func TestTraceMaskerAnchorsOfManySecrets(t *testing.T) {
	for seed := range uint64(40) {
		r := rand.New(rand.NewPCG(seed, 16))
		secrets := make([]string, 65+r.IntN(traceMaskAnchorMost-64))
		for i := range secrets {
			secrets[i] = randomSecrets(r)[0] + string(rune('A'+i%26)) + string(rune('a'+i/26%26))
		}
		m := newTraceMasker(secrets)
		require.NotNil(t, m.anchors)
		anchored := make([]bool, len(m.starts)-1)
		for g, c := range m.anchors.bytes {
			for _, e := range m.anchors.members[m.anchors.ends[g]:m.anchors.ends[g+1]] {
				s := m.text[e.from:][:e.size]
				require.Equal(t, c, s[e.at], "secret %q anchored at byte %d", s, e.at)
				anchored[slices.Index(m.starts, e.from)] = true
			}
		}
		assert.NotContains(t, anchored, false, "every secret has its anchor")

		var in []byte
		for range 200 {
			if r.IntN(3) == 0 {
				in = append(in, secrets[r.IntN(len(secrets))]...)
			} else {
				in = append(in, "ab2- xQ\n"[r.IntN(8)])
			}
		}
		maskerRun(t, secrets, in, []byte{byte(r.IntN(256)) &^ 3, byte(r.IntN(256))}, r.IntN(300))
	}
}

// The anchors' search, their counts of the log included, allocates nothing, for a few secrets and for the most
// they take.
func TestTraceMaskerAnchorsDoNotAllocate(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	log := benchTraceLog(r, 1<<20)
	for _, secrets := range [][]string{benchTraceTokens, benchTraceSecrets(r, traceMaskAnchorMost)} {
		m := newTraceMasker(secrets)
		require.NotNil(t, m.anchors)
		var out countSink
		allocs := testing.AllocsPerRun(2, func() {
			for line := log; len(line) > 0; line = line[100:] {
				m.write(line[:100], &out)
			}
		})
		assert.Zero(t, allocs, "allocations while masking a MiB for %d secrets", len(secrets))
		m.flush(&out)
		assert.Equal(t, 3*len(log), out.n, "no secret in the log")
	}
}

// The anchors for the most secrets they take stay small beside the secrets: under 64 bytes a secret, besides
// the counts of the 256 bytes.
func TestTraceMaskerAnchorsSize(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	m := newTraceMasker(benchTraceSecrets(r, traceMaskAnchorMost))
	a := m.anchors
	size := 8*cap(a.has) + 8*cap(a.left) + cap(a.bytes) + 8*cap(a.ends) + 16*cap(a.members)
	t.Logf("anchors for %d secrets: %d bytes, and %d of counts", traceMaskAnchorMost, size, 8*len(a.freq))
	assert.Less(t, size, 64*traceMaskAnchorMost)
}

// When the log turns to text in which every byte of the secrets is common (a dump of tokens like them), the
// anchors soon stand aside for the gram search; when it turns back, a later count takes them up again.
func TestTraceMaskerAnchorsFollowAChangingLog(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	log := benchTraceLog(r, 1<<20)
	alphabet := strings.Join(benchTraceTokens, "")
	dump := make([]byte, 1<<20)
	for i := range dump {
		dump[i] = alphabet[r.IntN(len(alphabet))]
		if i%77 == 76 {
			dump[i] = '\n'
		}
	}
	m := newTraceMasker(benchTraceTokens)
	var out countSink
	write := func(text []byte) {
		for line := text; len(line) > 0; line = line[min(100, len(line)):] {
			m.write(line[:min(100, len(line))], &out)
		}
	}
	write(log[:4*traceMaskWindow])
	require.True(t, m.anchors.use, "build output: anchors %q", m.anchors.bytes)
	write(dump[:2*traceMaskRecountSoon*traceMaskWindow])
	assert.False(t, m.anchors.use, "a dump of tokens: anchors %q", m.anchors.bytes)
	for range 3 * traceMaskRecount * traceMaskWindow / len(log) {
		write(log)
	}
	assert.True(t, m.anchors.use, "build output again: anchors %q", m.anchors.bytes)
}
