package runnerapi

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"math/bits"
	"slices"
	"sort"
)

// traceMaskWindow is how many bytes the masker gathers before it looks for secrets in them: one search over many
// lines costs far less than one per line. It also bounds the masker's buffer, whatever the size of a Write.
const traceMaskWindow = 32 << 10

// traceMasker replaces secrets in a stream by "[MASKED]", also when a secret is split across writes. Every byte
// that belongs to an occurrence of any secret is masked, also where occurrences overlap or one secret starts
// another. Overlapping occurrences become one "[MASKED]", so a reader does not learn where one ends; occurrences
// that only touch stay one "[MASKED]" each, as a secret written twice in a row always was. It gathers written bytes
// in a window and searches the window once it is full (or when told to), passing on all but the longest tail that
// could be the start of a secret, which it holds back until more bytes, or the end, tell.
//
// The search costs about the same for one secret or thousands: it looks at one gram (traceMaskGram bytes, fewer
// for shorter secrets) every stride bytes, and tests it against a bit set of the grams that occur in the secrets'
// first stride positions, which every occurrence of a secret puts under one of the looked-at grams. Only a gram in
// the set is looked up among the secrets' grams, and only a secret with that gram there is compared. Most windows
// hold no secret: for up to traceMaskAnchorMost secrets, a vector search of each one's rarest byte tells so at
// several times the speed, and the gram search runs only on a window it does not clear (see traceAnchors).
type traceMasker struct {
	// The secrets, sorted, in one array: secret k is text[starts[k]:starts[k+1]].
	text    []byte
	starts  []int32
	longest int
	gram    int // bytes in a gram: traceMaskGram, or the shortest secret's length when shorter
	stride  int // distance between the grams looked at; each secret's grams at offsets 0 to stride-1 are known
	// filter is a bit set of the grams that entries holds (see maybe); shift makes a hash an index into it.
	filter []uint64
	shift  uint
	// entries lists every secret's grams at offsets 0 to stride-1, as secret index << 8 | offset, by gram (see
	// entryGram), then by offset, the largest first, then by secret.
	entries []uint32
	first   [256]bool // the first bytes of the secrets, for holdBack
	window  int       // how much pend gathers before a search: traceMaskWindow, or more for long secrets
	pend    []byte    // bytes not yet searched, or held back because they could start a secret
	// runEnd is where, in pend, the run of masked bytes that the output ends with ends, or 0 when the output
	// does not end with one reaching into pend: the bytes before it are masked already, and a secret starting
	// before it joins the run.
	runEnd int
	// anchors tells a window that holds none of the secrets at once (see traceAnchors); nil for too many.
	anchors *traceAnchors
}

// traceMaskGram is the length of the grams the masker looks at: four bytes load in one go, and a log's 4-byte grams
// are rarely a secret's, so few need a closer look. The stride they allow, traceMaskReach - traceMaskGram + 1, is
// what makes the search fast: it looks at one gram in five. A longer reach would need more grams of every secret.
const (
	traceMaskGram  = 4
	traceMaskReach = 8 // how far into a secret its grams are known: the shortest secret, at most this
)

// newTraceMasker returns a masker for the non-empty, distinct secrets, or nil when there are none.
func newTraceMasker(secrets []string) *traceMasker {
	var list []string
	for _, s := range secrets {
		if s != "" {
			list = append(list, s)
		}
	}
	if len(list) == 0 {
		return nil
	}
	slices.Sort(list)
	list = slices.Compact(list)
	total := 0
	for _, s := range list {
		total += len(s)
	}
	m := &traceMasker{text: make([]byte, 0, total), starts: make([]int32, 0, len(list)+1)}
	shortest := len(list[0])
	for _, s := range list {
		m.starts = append(m.starts, int32(len(m.text)))
		m.text = append(m.text, s...)
		m.longest = max(m.longest, len(s))
		shortest = min(shortest, len(s))
		m.first[s[0]] = true
	}
	m.starts = append(m.starts, int32(len(m.text)))
	m.gram = min(traceMaskGram, shortest)
	m.stride = min(traceMaskReach, shortest) - m.gram + 1
	m.entries = make([]uint32, 0, len(list)*m.stride)
	for k := range list {
		for j := range m.stride {
			m.entries = append(m.entries, uint32(k)<<8|uint32(j))
		}
	}
	slices.SortFunc(m.entries, func(a, b uint32) int {
		// By key, then by secret, which is the secrets' order.
		return cmp.Or(cmp.Compare(m.entryKey(a), m.entryKey(b)), cmp.Compare(a, b))
	})
	// 32 bits or more for every entry, at least 16 words: a gram not in the set passes the test about once in
	// 300 times. The top bits of a hash (18 at most) choose the word, bits 40 to 45 and 34 to 39 two bits in it.
	words := min(1<<18, max(16, 1<<bits.Len(uint(len(m.entries)-1)>>1)))
	m.filter = make([]uint64, words)
	m.shift = uint(64 - bits.TrailingZeros(uint(words)))
	for _, e := range m.entries {
		h := uint64(m.entryGram(e)) * traceMaskHash
		m.filter[h>>m.shift] |= 1<<(h>>40&63) | 1<<(h>>34&63)
	}
	// What a search holds back is shorter than the longest secret, so a window twice as long always has room.
	m.window = max(traceMaskWindow, 2*m.longest)
	m.pend = make([]byte, 0, m.window)
	m.anchors = newTraceAnchors(m)
	return m
}

// secret returns secret k.
func (m *traceMasker) secret(k int) []byte { return m.text[m.starts[k]:m.starts[k+1]] }

// entryGram returns the gram that entry e stands for.
func (m *traceMasker) entryGram(e uint32) uint32 {
	return m.gramOf(m.text[int(m.starts[e>>8])+int(e&0xff):])
}

// gramOf returns the gram that b starts with; b holds at least m.gram bytes.
func (m *traceMasker) gramOf(b []byte) uint32 {
	if m.gram == 4 {
		return binary.LittleEndian.Uint32(b)
	}
	var g uint32
	for i := range m.gram {
		g |= uint32(b[i]) << (8 * i)
	}
	return g
}

// traceSink receives the masked stream.
type traceSink interface {
	put(b []byte)
}

// write takes p into the stream. It passes to sink, with secrets masked, what is safe to record once a window's
// worth of bytes has gathered, and keeps the rest; settle and flush pass on the rest sooner.
func (m *traceMasker) write(p []byte, sink traceSink) {
	if len(p) < m.window-len(m.pend) {
		// The common case, small enough to inline into the writer's Write: p only joins the window.
		m.pend = append(m.pend, p...)
		return
	}
	m.writeMore(p, sink)
}

// writeMore is write for a p that fills the window.
func (m *traceMasker) writeMore(p []byte, sink traceSink) {
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

// search passes b to sink with its secrets masked, except for the longest tail that could start a secret, which it
// keeps in pend, unless the stream ends with b. b may share pend's array.
func (m *traceMasker) search(b []byte, end bool, sink traceSink) {
	// hold is where the earliest unfinished possible secret starts: a secret from there on may yet be part of a
	// longer one that the next write completes, so it is left for the next search, which sees those bytes again.
	hold := len(b)
	if !end {
		hold -= m.holdBack(b)
	}
	if m.anchors != nil && m.runEnd == 0 && m.anchors.clean(m, b) {
		// No secret occurs in b: the search below would pass on b up to hold, and find nothing.
		sink.put(b[:hold])
		m.keep(b, hold)
		return
	}
	// done is how far b is accounted for in the output: passed on, or masked by the run the output ends with,
	// which ends at runEnd.
	runEnd := m.runEnd
	done := runEnd
	lastGram, lastFirst := uint32(0), m.firstEntry(0)
	for p := m.nextHit(b, 0); p >= 0; p = m.nextHit(b, p+m.stride) {
		// The secrets that have this gram at offset j start at p-j: by where they start, as entries lists them.
		g := m.gramOf(b[p:])
		if g != lastGram {
			// A run of one byte, or a repeated pattern, hits with the same gram again and again.
			lastGram, lastFirst = g, m.firstEntry(uint64(g)<<8)
		}
		for lo := lastFirst; lo < len(m.entries) && m.entryGram(m.entries[lo]) == g; {
			// The group of entries with gram g at offset j; the secrets they stand for start at p-j.
			j := int(m.entries[lo] & 0xff)
			hi := m.groupEnd(lo)
			start := p - j
			n := 0
			if start >= 0 && start < hold {
				n = m.longestAt(b[start:], lo, hi, j+m.gram)
			}
			lo = hi
			if n == 0 {
				continue
			}
			if start >= runEnd {
				// A new run of masked bytes: this occurrence overlaps no earlier one.
				sink.put(b[done:start])
				sink.put(traceMaskedBytes)
			}
			runEnd = max(runEnd, start+n)
			done = max(done, runEnd)
		}
	}
	if done < hold {
		sink.put(b[done:hold])
	}
	// What the next search needs to know: how far the run of masked bytes reaches into the held tail.
	m.runEnd = 0
	if runEnd > hold && !end {
		m.runEnd = runEnd - hold
	}
	m.keep(b, hold)
}

// keep holds b from hold on in pend for the next search.
func (m *traceMasker) keep(b []byte, hold int) {
	if hold == len(b) {
		m.pend = m.pend[:0]
	} else {
		m.pend = append(m.pend[:0], b[hold:]...)
	}
}

var traceMaskedBytes = []byte(masked)

// entryKey orders entries: by gram, then by offset, the largest first.
func (m *traceMasker) entryKey(e uint32) uint64 {
	return uint64(m.entryGram(e))<<8 | uint64(255-e&0xff)
}

// firstEntry returns the index of the first entry whose key is key or more.
func (m *traceMasker) firstEntry(key uint64) int {
	lo, hi := 0, len(m.entries)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if m.entryKey(m.entries[mid]) < key {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// groupEnd returns the end of the group of entries with the key of entry lo: most groups hold one entry, so it
// looks at the next few before it halves.
func (m *traceMasker) groupEnd(lo int) int {
	key := m.entryKey(m.entries[lo])
	i, step := lo+1, 1
	for i < len(m.entries) && m.entryKey(m.entries[i]) == key {
		i, step = i+step, 2*step
	}
	// The group ends in (i-step/2, i], or at the end of entries.
	l, h := i-step/2, min(i, len(m.entries))
	for l < h {
		mid := int(uint(l+h) >> 1)
		if m.entryKey(m.entries[mid]) == key {
			l = mid + 1
		} else {
			h = mid
		}
	}
	return l
}

// longestAt returns the length of the longest secret that t starts with among those of entries[lo:hi], which
// are in order and all have the same gram at the same offset, so that none is shorter than least; or 0.
// Thousands of secrets may share a gram (keys that start with "-----BEGIN", tokens with a common prefix), so
// this is a search in their order rather than a comparison with each.
func (m *traceMasker) longestAt(t []byte, lo, hi, least int) int {
	for lo < hi && len(t) >= least && bytes.Compare(m.secret(int(m.entries[lo]>>8)), t) <= 0 {
		// The last secret not after t (the first one is not): if t starts with it, no longer one does, since a
		// longer secret that t starts with would sort after it.
		i, j := lo, hi
		for i < j {
			mid := int(uint(i+j) >> 1)
			if bytes.Compare(m.secret(int(m.entries[mid]>>8)), t) <= 0 {
				i = mid + 1
			} else {
				j = mid
			}
		}
		s := m.secret(int(m.entries[i-1] >> 8))
		if bytes.HasPrefix(t, s) {
			return len(s)
		}
		// A secret that t starts with sorts between it and t, so it is a prefix of both: search again for the
		// prefix they share, among the secrets before s.
		n := 0
		for n < len(s) && n < len(t) && s[n] == t[n] {
			n++
		}
		t, hi = t[:n], i-1
	}
	return 0
}

// nextHit returns the first position from p on, in steps of the stride, whose gram passes the filter, or -1.
func (m *traceMasker) nextHit(b []byte, p int) int {
	filter, shift, stride := m.filter, m.shift, m.stride
	if m.gram == 4 && stride == 5 {
		// The common case, secrets of 8 bytes or more, with the stride known to the compiler.
		for ; p+19 <= len(b); p += 20 {
			c := b[p : p+19]
			h0 := uint64(binary.LittleEndian.Uint32(c[0:])) * traceMaskHash
			h1 := uint64(binary.LittleEndian.Uint32(c[5:])) * traceMaskHash
			h2 := uint64(binary.LittleEndian.Uint32(c[10:])) * traceMaskHash
			h3 := uint64(binary.LittleEndian.Uint32(c[15:])) * traceMaskHash
			w0, w1, w2, w3 := filter[h0>>shift], filter[h1>>shift], filter[h2>>shift], filter[h3>>shift]
			if (w0>>(h0>>40&63)&(w0>>(h0>>34&63))|w1>>(h1>>40&63)&(w1>>(h1>>34&63))|
				w2>>(h2>>40&63)&(w2>>(h2>>34&63))|w3>>(h3>>40&63)&(w3>>(h3>>34&63)))&1 != 0 {
				break
			}
		}
	} else if m.gram == 4 {
		// Four grams at a time, tested together: the loads and hashes of one do not wait for the test of another.
		for ; p+3*stride+4 <= len(b); p += 4 * stride {
			h0 := uint64(binary.LittleEndian.Uint32(b[p:])) * traceMaskHash
			h1 := uint64(binary.LittleEndian.Uint32(b[p+stride:])) * traceMaskHash
			h2 := uint64(binary.LittleEndian.Uint32(b[p+2*stride:])) * traceMaskHash
			h3 := uint64(binary.LittleEndian.Uint32(b[p+3*stride:])) * traceMaskHash
			w0, w1, w2, w3 := filter[h0>>shift], filter[h1>>shift], filter[h2>>shift], filter[h3>>shift]
			if (w0>>(h0>>40&63)&(w0>>(h0>>34&63))|w1>>(h1>>40&63)&(w1>>(h1>>34&63))|
				w2>>(h2>>40&63)&(w2>>(h2>>34&63))|w3>>(h3>>40&63)&(w3>>(h3>>34&63)))&1 != 0 {
				break
			}
		}
	}
	for ; p+m.gram <= len(b); p += stride {
		if m.maybe(m.gramOf(b[p:])) {
			return p
		}
	}
	return -1
}

// traceMaskHash spreads a gram over the bits of its product with it: the odd 64-bit constant closest to 2^64
// over the golden ratio.
const traceMaskHash = 0x9e3779b97f4a7c15

// maybe reports whether gram g may be one that entries lists: whether the two bits hash(g) picks in one word of
// the filter are set. Two bits in one word cost one load and cut the false hits by about ten.
func (m *traceMasker) maybe(g uint32) bool {
	h := uint64(g) * traceMaskHash
	w := m.filter[h>>m.shift]
	return w>>(h>>40&63)&(w>>(h>>34&63))&1 != 0
}

// holdBack returns the length of the longest suffix of b that is a proper prefix of a secret.
func (m *traceMasker) holdBack(b []byte) int {
	for j := max(0, len(b)-m.longest+1); j < len(b); j++ {
		t := b[j:]
		if !m.first[t[0]] {
			continue
		}
		if len(t) >= m.gram {
			// A gram a secret starts with is in the filter.
			if !m.maybe(m.gramOf(t)) {
				continue
			}
		}
		// The first secret after t in order has t as a proper prefix if any has: one that has sorts after t and
		// before any that does not.
		n := len(m.starts) - 1
		k := sort.Search(n, func(k int) bool { return bytes.Compare(m.secret(k), t) > 0 })
		if k < n && bytes.HasPrefix(m.secret(k), t) {
			return len(t)
		}
	}
	return 0
}
