package runnerapi

import (
	"bytes"
	"sort"
)

// traceMaskWindow is how many bytes the masker gathers before it looks for secrets in them: one search over many
// lines costs far less than one per line. It also bounds the masker's buffer, whatever the size of a Write.
const traceMaskWindow = 32 << 10

// traceMasker replaces secrets in a stream by "[MASKED]", also when a secret is split across writes. Every byte
// that belongs to an occurrence of any secret is masked, also where occurrences overlap or one secret starts
// another. Overlapping occurrences become one "[MASKED]", so a reader does not learn where one ends; occurrences
// that only touch stay one "[MASKED]" each, as a secret written twice in a row always was. It gathers written bytes in a window and searches the window
// once it is full (or when told to), passing on all but the longest tail that could be the start of a secret,
// which it holds back until more bytes, or the end, tell.
type traceMasker struct {
	secrets [][]byte // longest first
	anchors []int    // per secret: the position of its rarest byte, the one searches look for
	// searched counts the bytes searched so far; anchors are chosen again from what the trace holds once it
	// reaches repickAt.
	searched int64
	repickAt int64
	window   int    // how much pend gathers before a search: traceMaskWindow, or more for long secrets
	pend     []byte // bytes not yet searched, or held back because they could start a secret
	// runEnd is where, in pend, the run of masked bytes that the output ends with ends, or 0 when the output
	// does not end with one reaching into pend: the bytes before it are masked already, and a secret starting
	// before it joins the run.
	runEnd int
	next   []int // per secret: position of its next match in the working buffer, or -1
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
		b := []byte(s)
		m.secrets = append(m.secrets, b)
		m.anchors = append(m.anchors, traceRarestByte(b, nil))
		for i := range len(b) - 1 {
			m.inner[b[i]] = true
		}
	}
	// What a search holds back is shorter than the longest secret, so a window twice as long always has room.
	m.window = max(traceMaskWindow, 2*len(m.secrets[0]))
	m.pend = make([]byte, 0, m.window)
	return m
}

// traceSink receives the masked stream.
type traceSink interface {
	put(b []byte)
}

// write takes p into the stream. It passes to sink, with secrets masked, what is safe to record once a window's
// worth of bytes has gathered, and keeps the rest; settle and flush pass on the rest sooner.
func (m *traceMasker) write(p []byte, sink traceSink) {
	if len(m.pend) == 0 && len(p) >= m.window {
		// A large write with nothing gathered: search it where it is, without copying it.
		m.search(p, false, sink)
		return
	}
	for len(p) > 0 {
		n := min(len(p), m.window-len(m.pend))
		m.pend = append(m.pend, p[:n]...)
		p = p[n:]
		if len(m.pend) == m.window {
			m.settle(sink)
		}
	}
}

// settle passes to sink, with secrets masked, what has gathered, except a tail that could start a secret.
func (m *traceMasker) settle(sink traceSink) {
	if len(m.pend) > 0 {
		m.search(m.pend, false, sink)
	}
}

// flush passes everything to sink, masked like the rest: the stream ends here, or its reader needs everything now.
// A secret split across a flush is not masked, and a run of masked bytes ends at one.
func (m *traceMasker) flush(sink traceSink) {
	if len(m.pend) > 0 {
		m.search(m.pend, true, sink)
	}
	m.runEnd = 0
}

// search passes b to sink with its secrets masked, keeping in pend the tail that could start a secret, unless the
// stream ends with b. b may be pend.
func (m *traceMasker) search(b []byte, end bool, sink traceSink) {
	if m.searched += int64(len(b)); m.searched >= m.repickAt && len(b) >= traceMaskSample {
		m.pickAnchors(b[len(b)-traceMaskSample:])
		m.repickAt = m.searched + traceMaskRepick
	}
	if m.runEnd == 0 && m.clean(b, end) {
		sink.put(b)
		m.pend = m.pend[:0]
		return
	}
	m.scan(b, end, sink)
}

// scan passes b to sink with its secrets masked, except for the longest tail that could start a secret, which it
// keeps in pend, unless the stream ends with b. b may share pend's array.
func (m *traceMasker) scan(b []byte, end bool, sink traceSink) {
	// hold is where the earliest unfinished possible secret starts: a secret from there on may yet be part of a
	// longer one that the next write completes, so it is left for the next search, which sees those bytes again.
	hold := len(b)
	if !end {
		hold -= m.holdBack(b)
	}
	// done is how far b is accounted for in the output: passed on, or masked by the run the output ends with,
	// which ends at runEnd.
	runEnd := m.runEnd
	done := runEnd
	for k := range m.secrets {
		m.next[k] = m.index(b, k)
	}
	for {
		// The next occurrence, of any secret, by where it starts.
		best, bestEnd := -1, 0
		for k, s := range m.secrets {
			if n := m.next[k]; n >= 0 && (best < 0 || n < best) {
				best, bestEnd = n, n+len(s)
			}
		}
		if best < 0 || best >= hold {
			break
		}
		if best >= runEnd {
			// A new run of masked bytes: this occurrence overlaps no earlier one.
			sink.put(b[done:best])
			sink.put(traceMaskedBytes)
		}
		runEnd = max(runEnd, bestEnd)
		done = max(done, runEnd)
		// Every occurrence counts, overlapping ones too, so secrets that start at best are looked for from
		// best+1 on.
		for k := range m.secrets {
			if m.next[k] == best {
				if j := m.index(b[best+1:], k); j >= 0 {
					m.next[k] = best + 1 + j
				} else {
					m.next[k] = -1
				}
			}
		}
	}
	if done < hold {
		sink.put(b[done:hold])
		done = hold
	}
	// What the next search needs to know: how far the run of masked bytes reaches into the held tail.
	m.runEnd = 0
	if runEnd > hold && !end {
		m.runEnd = runEnd - hold
	}
	m.pend = append(m.pend[:0], b[hold:]...)
}

var traceMaskedBytes = []byte(masked)

// clean reports whether b holds no secret and does not end in what could start one: the common case, which it
// tells with one vector search per secret instead of a scan's bookkeeping. Only when b's last byte is one that a
// secret has before its own last byte does the end need a closer look.
func (m *traceMasker) clean(b []byte, end bool) bool {
	for k := range m.secrets {
		if m.index(b, k) >= 0 {
			return false
		}
	}
	return end || !m.inner[b[len(b)-1]] || m.holdBack(b) == 0
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

// Anchors are chosen again every traceMaskRepick bytes, by counting bytes in the last traceMaskSample bytes
// searched: the rarest byte of a secret is the rarest in this trace, which no fixed table can know.
const (
	traceMaskRepick = 1 << 20
	traceMaskSample = 4 << 10
)

// pickAnchors chooses each secret's anchor by how often its bytes occur in sample.
func (m *traceMasker) pickAnchors(sample []byte) {
	var counts [256]int32
	for _, c := range sample {
		counts[c]++
	}
	for k, s := range m.secrets {
		m.anchors[k] = traceRarestByte(s, &counts)
	}
}

// traceByteCommonness lists bytes by how common they are in build logs, most common first, as a rough guide; bytes
// not listed are taken to be rarer than any listed.
const traceByteCommonness = " etaoinsrlcdhu\n0123456789mpgf.-/_:bywkv,=xTSEARIONLCDP\"'()[]jqzMUBFGHWYKVXJQZ"

// traceByteRarity ranks bytes by traceByteCommonness: the higher, the rarer.
var traceByteRarity = func() (r [256]int32) {
	for c := range r {
		r[c] = int32(len(traceByteCommonness))
	}
	for i := range len(traceByteCommonness) {
		r[traceByteCommonness[i]] = int32(i)
	}
	return r
}()

// traceRarestByte returns the position in s of its rarest byte: the least counted when counts is not nil, else,
// or among equals, the rarest by traceByteCommonness; the first of equals. Only the first 256 bytes of a long
// secret are considered, which is plenty to find a rare one.
func traceRarestByte(s []byte, counts *[256]int32) int {
	best := 0
	for i := 1; i < min(len(s), 256); i++ {
		c, b := s[i], s[best]
		if counts != nil && counts[c] != counts[b] {
			if counts[c] < counts[b] {
				best = i
			}
			continue
		}
		if traceByteRarity[c] > traceByteRarity[b] {
			best = i
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
