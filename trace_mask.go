package runnerapi

import (
	"bytes"
	"sort"
	"strings"
)

// traceMaskWindow bounds how much of one Write the masker handles at a time, so a huge Write does not grow its
// buffers.
const traceMaskWindow = 32 << 10

// traceMasker replaces secrets in a stream by "[MASKED]", also when a secret is split across writes: it holds back
// the longest tail that could be the start of a secret until more bytes, or the end, tell.
type traceMasker struct {
	secrets [][]byte // longest first, so the longest of secrets starting at one position wins
	anchors []int    // per secret: the position of its rarest byte, the one searches look for
	pend    []byte   // held-back tail, and the working buffer of mask
	next    []int    // per secret: position of its next match in the working buffer, or -1
	// inner marks the bytes that occur in a secret before its last byte. Only a stretch that ends in one of them
	// can end with the start of a secret.
	inner [256]bool
}

// newTraceMasker returns a masker for the non-empty, distinct secrets, or nil when there are none.
func newTraceMasker(secrets []string) *traceMasker {
	seen := make(map[string]bool)
	var list []string
	for _, s := range secrets {
		if s != "" && !seen[s] {
			seen[s] = true
			list = append(list, s)
		}
	}
	if len(list) == 0 {
		return nil
	}
	sort.SliceStable(list, func(i, j int) bool { return len(list[i]) > len(list[j]) })
	m := &traceMasker{next: make([]int, len(list))}
	for _, s := range list {
		m.secrets = append(m.secrets, []byte(s))
		m.anchors = append(m.anchors, traceRarestByte(s))
		for i := range len(s) - 1 {
			m.inner[s[i]] = true
		}
	}
	m.pend = make([]byte, 0, traceMaskWindow+len(m.secrets[0]))
	return m
}

// traceSink receives the masked stream.
type traceSink interface {
	put(b []byte)
}

// write passes to sink what of the stream so far is safe to record, with secrets masked, and keeps the rest.
func (m *traceMasker) write(p []byte, sink traceSink) {
	for len(p) > 0 {
		if len(m.pend) == 0 {
			// Nothing held back: scan p where it is, without copying it.
			if m.clean(p) {
				sink.put(p)
			} else {
				m.scan(p, sink)
			}
			return
		}
		n := min(len(p), traceMaskWindow)
		m.scan(append(m.pend, p[:n]...), sink)
		p = p[n:]
	}
}

// scan passes b to sink with its secrets masked, except for the longest tail that could start a secret, which it
// keeps in pend. b may share pend's array.
func (m *traceMasker) scan(b []byte, sink traceSink) {
	for k := range m.secrets {
		m.next[k] = m.index(b, k)
	}
	// hold is where the earliest unfinished possible secret starts: a match from there on may yet be part of a
	// longer or earlier secret that the next write completes.
	i, hold := 0, len(b)-m.holdBack(b)
	for {
		best, bestLen := -1, 0
		for k, s := range m.secrets {
			if m.next[k] >= 0 && m.next[k] < i {
				if j := m.index(b[i:], k); j >= 0 {
					m.next[k] = i + j
				} else {
					m.next[k] = -1
				}
			}
			if n := m.next[k]; n >= 0 && (best < 0 || n < best) {
				best, bestLen = n, len(s)
			}
		}
		if hold < i {
			hold = len(b) - m.holdBack(b[i:])
		}
		if best < 0 || hold <= best {
			break
		}
		if best > i {
			sink.put(b[i:best])
		}
		sink.put(traceMaskedBytes)
		i = best + bestLen
	}
	if hold > i {
		sink.put(b[i:hold])
	}
	m.pend = append(m.pend[:0], b[hold:]...)
}

var traceMaskedBytes = []byte(masked)

// clean reports whether b holds no secret and does not end in what could start one: the common case, which it
// tells with one vector search per secret instead of a scan's bookkeeping. A line ends in a byte no secret has,
// so the end rarely needs a closer look.
func (m *traceMasker) clean(b []byte) bool {
	for k := range m.secrets {
		if m.index(b, k) >= 0 {
			return false
		}
	}
	return !m.inner[b[len(b)-1]] || m.holdBack(b) == 0
}

// index returns where secret k first occurs in b, or -1. It looks for the secret's rarest byte rather than its
// first, since tokens tend to start with letters that are common in logs. When that byte turns out to be common
// in b too, it leaves the rest to bytes.Index, which stays linear however b and the secret look.
func (m *traceMasker) index(b []byte, k int) int {
	s, a := m.secrets[k], m.anchors[k]
	n := len(s)
	if len(b) < n {
		return -1
	}
	c, stop := s[a], len(b)-n+a+1 // s at i puts c at i+a, and s must fit
	for i, misses := a, 0; i < stop; i++ {
		j := bytes.IndexByte(b[i:stop], c)
		if j < 0 {
			return -1
		}
		i += j
		if bytes.Equal(b[i-a:i-a+n], s) {
			return i - a
		}
		if misses++; misses > 8+i>>4 {
			if j := bytes.Index(b[i-a+1:], s); j >= 0 {
				return i - a + 1 + j
			}
			return -1
		}
	}
	return -1
}

// traceByteCommonness lists bytes by how common they are in build logs, most common first, as a rough guide; bytes
// not listed are taken to be rarer than any listed.
const traceByteCommonness = " etaoinsrlcdhu\n0123456789mpgf.-/_:bywkv,=xTSEARIONLCDP\"'()[]jqzMUBFGHWYKVXJQZ"

// traceRarestByte returns the position of the rarest byte of s by traceByteCommonness, the first of equals.
func traceRarestByte(s string) int {
	best, bestRarity := 0, -1
	for i := range len(s) {
		rarity := strings.IndexByte(traceByteCommonness, s[i])
		if rarity < 0 {
			rarity = len(traceByteCommonness)
		}
		if rarity > bestRarity {
			best, bestRarity = i, rarity
		}
	}
	return best
}

// holdBack returns the length of the longest suffix of b that is a proper prefix of a secret.
func (m *traceMasker) holdBack(b []byte) int {
	hold := 0
	for _, s := range m.secrets {
		l := min(len(s)-1, len(b))
		tail := b[len(b)-l:]
		for j := 0; l-j > hold; j++ {
			k := bytes.IndexByte(tail[j:], s[0])
			if k < 0 {
				break
			}
			j += k
			if l-j <= hold {
				break
			}
			if bytes.Equal(tail[j:], s[:l-j]) {
				hold = l - j
				break
			}
		}
	}
	return hold
}

// flush passes the held-back tail to sink: the stream ends here, or its reader needs everything now.
func (m *traceMasker) flush(sink traceSink) {
	if len(m.pend) > 0 {
		sink.put(m.pend)
		m.pend = m.pend[:0]
	}
}
