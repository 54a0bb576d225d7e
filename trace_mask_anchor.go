package runnerapi

import (
	"bytes"
	"encoding/binary"
	"math/bits"
)

// traceAnchors tells a window that holds none of up to traceMaskAnchorMost secrets at once, by looking for each
// secret's rarest byte, its anchor, with bytes.IndexByte: a vector search that passes over tens of GB a second
// where the byte is rare, as upper case, '_' and most punctuation are in a log. Secrets that share an anchor share
// the search, and only where the anchor occurs is a secret compared. Which bytes are rare is the log's own count,
// sampled every so many windows, over a static one of build logs; with too many secrets, or only common bytes in
// them, the gram search costs less, and the anchors stand aside.
type traceAnchors struct {
	// has[c*words:][:words] is the set of the secrets that byte c occurs in, secret k as bit k%64 of word k/64.
	has   []uint64
	words int
	left  []uint64 // the secrets choose has not anchored yet
	// The anchors: byte bytes[g] anchors members[ends[g]:ends[g+1]].
	bytes   []byte
	ends    []int
	members []traceAnchor
	use     bool // the anchors cost less than the gram search, by the last count (or are forced)
	// freq is how often each byte occurs in the log, per byte, by the last count and the static one. expected
	// is how many anchor bytes a window holds by it, per byte; a window with many more makes a later one counted
	// again, soon.
	freq     [256]float64
	expected float64
	windows  int  // windows searched since the last count
	recount  bool // a window held far more anchor bytes than expected
	// forced keeps use true whatever the counts: the tests' way to search every window by the anchors first.
	forced bool
}

// traceAnchor is a secret anchored at one of its bytes, at that byte's offset in it. The secret is
// m.text[from:][:size]; head holds its first four bytes (all of them when shorter), so that most places where the
// anchor occurs are told apart from it by one load.
type traceAnchor struct {
	from, size, at int32
	head           uint32
}

// traceMaskAnchorMost is how many secrets a masker may look for by their anchors: more share each anchor byte, and
// beside the gram search they cost more than they save.
const traceMaskAnchorMost = 256

// What the anchors and the gram search cost, in picoseconds, for choosing between them: a pass of IndexByte per
// byte of the window, each occurrence of an anchor (a call of IndexByte, and a comparison per secret there), and
// the gram search per byte. Measured by BenchmarkTraceMasker on amd64; their ratios are what counts.
const (
	traceMaskPassCost   = 12
	traceMaskHitCost    = 15000
	traceMaskMemberCost = 700
	traceMaskGramCost   = 300
)

const (
	// traceMaskSample is how many bytes of a window a count takes, in four pieces from all over it: enough to
	// tell a byte that occurs once in a thousand from one that never does.
	traceMaskSample = 8 << 10
	// traceMaskRecount is how many windows go by before the bytes are counted again: a log changes from one
	// stage of a build to the next. After a window with far more anchor bytes than expected, traceMaskRecountSoon.
	traceMaskRecount     = 64
	traceMaskRecountSoon = 8
	// traceMaskPrior is the weight, in bytes, of the static count beside the sampled one.
	traceMaskPrior = 1 << 10
)

// newTraceAnchors returns the anchors for m's secrets, or nil when there are too many to look for one by one.
func newTraceAnchors(m *traceMasker) *traceAnchors {
	n := len(m.starts) - 1
	if n > traceMaskAnchorMost {
		return nil
	}
	words := (n + 63) / 64
	a := &traceAnchors{has: make([]uint64, 256*words), words: words, left: make([]uint64, words),
		bytes: make([]byte, 0, n), ends: make([]int, 0, n+1), members: make([]traceAnchor, 0, n)}
	for k := range n {
		for _, c := range m.secret(k) {
			a.has[int(c)*words+k/64] |= 1 << (k % 64)
		}
	}
	a.tally(&[256]int{}, 0)
	a.choose(m)
	a.windows = traceMaskRecount // the first window is counted: it tells more than the static count
	return a
}

// tally sets freq by the counts of the bytes of a sample of n bytes and the static count.
func (a *traceAnchors) tally(counts *[256]int, n int) {
	for c := range a.freq {
		a.freq[c] = (float64(counts[c]) + traceMaskPrior*float64(traceLogFrequency[c])/1e5) / float64(n+traceMaskPrior)
	}
}

// choose picks the anchors by the counts: greedily, the byte that costs least per secret it anchors among those
// not yet anchored, until every secret has one; and whether they cost less than the gram search.
func (a *traceAnchors) choose(m *traceMasker) {
	a.bytes, a.ends, a.members = a.bytes[:0], append(a.ends[:0], 0), a.members[:0]
	n := len(m.starts) - 1
	for i := range a.left {
		a.left[i] = ^uint64(0)
	}
	a.left[len(a.left)-1] = ^uint64(0) >> (a.words*64 - n)
	cost := 0.0
	a.expected = 0
	for remaining := n; remaining > 0; {
		best, bestRatio, bestCost := 0, 0.0, 0.0
		for c := range 256 {
			covers := 0
			for i, w := range a.has[c*a.words:][:a.words] {
				covers += bits.OnesCount64(w & a.left[i])
			}
			if covers == 0 {
				continue
			}
			f := a.freq[c]
			cc := traceMaskPassCost + f*(traceMaskHitCost+traceMaskMemberCost*float64(covers))
			if r := cc / float64(covers); bestRatio == 0 || r < bestRatio {
				best, bestRatio, bestCost = c, r, cc
			}
		}
		if bestRatio == 0 {
			// Cannot be, since every secret has a byte; were it so, the gram search alone finds them all.
			a.use = false
			return
		}
		a.bytes = append(a.bytes, byte(best))
		for i, w := range a.has[best*a.words:][:a.words] {
			for set := w & a.left[i]; set != 0; set &= set - 1 {
				k := i*64 + bits.TrailingZeros64(set)
				s := m.secret(k)
				e := traceAnchor{from: m.starts[k], size: int32(len(s)), at: int32(bytes.IndexByte(s, byte(best)))}
				for i, c := range s[:min(4, len(s))] {
					e.head |= uint32(c) << (8 * i)
				}
				a.members = append(a.members, e)
				remaining--
			}
			a.left[i] &^= w
		}
		a.ends = append(a.ends, len(a.members))
		cost += bestCost
		a.expected += a.freq[best]
	}
	a.use = a.forced || cost < traceMaskGramCost
}

// count takes the counts of the bytes from the middle of b, when b holds enough of them to tell.
func (a *traceAnchors) count(m *traceMasker, b []byte) {
	if len(b) < traceMaskSample/8 {
		return
	}
	var counts [256]int
	n := 0
	piece := min(len(b), traceMaskSample/4)
	for i := range 4 {
		// Four pieces from the start of b to its end, which overlap when b is short.
		for _, c := range b[i*(len(b)-piece)/3:][:piece] {
			counts[c]++
		}
		n += piece
	}
	a.tally(&counts, n)
	a.windows, a.recount = 0, false
	a.choose(m)
}

// clean reports whether no secret occurs in b, as far as the anchors tell; false when they stand aside.
func (a *traceAnchors) clean(m *traceMasker, b []byte) bool {
	if a.windows++; a.windows >= traceMaskRecount || a.recount && a.windows >= traceMaskRecountSoon {
		a.count(m, b)
	}
	if !a.use {
		return false
	}
	hits := 0
	for g, c := range a.bytes {
		members := a.members[a.ends[g]:a.ends[g+1]]
		for i := 0; ; {
			j := bytes.IndexByte(b[i:], c)
			if j < 0 {
				break
			}
			p := i + j
			hits++
			for _, e := range members {
				start, size := p-int(e.at), int(e.size)
				if start < 0 || start > len(b)-size {
					continue
				}
				if size >= 4 && binary.LittleEndian.Uint32(b[start:]) != e.head {
					continue
				}
				if bytes.Equal(b[start:start+size], m.text[e.from:][:size]) {
					return false
				}
			}
			i = p + 1
		}
	}
	// Far more anchor bytes than the count told: the log changed, count again with the next window.
	a.recount = a.recount || float64(hits) > 4*a.expected*float64(len(b))+16
	return true
}

// traceLogFrequency is how often each byte occurs in build logs, per 100,000 bytes, roughly: the prior of the
// anchors' counts, so that a byte a small sample missed by chance, or the first window before any count, is not
// taken for rare. Spaces and lower case dominate; digits and punctuation of paths and versions follow; upper case
// is rare, and control bytes besides the line's end and the colours' escape rarer still. A CPython build's log and
// an apt log agree on the rarest: J, Z, K, Q and X, under 15 in 100,000.
var traceLogFrequency = func() [256]uint16 {
	var f [256]uint16
	for c := range 256 {
		f[c] = 1
	}
	for c := byte(' '); c < 0x7f; c++ {
		f[c] = 30
	}
	// English letter frequencies, per 10,000 letters, from 'a' to 'z'.
	letters := [26]uint16{817, 149, 278, 425, 1270, 223, 202, 609, 697, 15, 77, 403, 241, 675, 751, 193, 10, 599,
		633, 906, 276, 98, 236, 15, 197, 7}
	for i, l := range letters {
		f['a'+i] = max(1, l*5)    // lower case, about half the text
		f['A'+i] = max(1, l*4/10) // upper case, about 4%
	}
	for c := byte('0'); c <= '9'; c++ {
		f[c] = 900
	}
	f['0'], f['1'], f['2'] = 1200, 1200, 1000
	for c, n := range map[byte]uint16{' ': 13000, '\n': 1500, '.': 1500, '/': 1200, '-': 2000, ':': 700, '_': 1000,
		'=': 200, ',': 300, '"': 200, '\'': 100, '(': 150, ')': 150, '[': 150, ']': 150, '\t': 150, '@': 50,
		'\x1b': 60, '\r': 20, ';': 80, '%': 60, '+': 60, '#': 40, '$': 40, '*': 40, '<': 40, '>': 60} {
		f[c] = n
	}
	return f
}()
