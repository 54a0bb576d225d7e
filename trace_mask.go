package runnerapi

import (
	"bytes"
	"sort"
)

// traceMaskWindow bounds how much of one Write the masker handles at a time, so a huge Write does not grow its
// buffers.
const traceMaskWindow = 32 << 10

// traceMasker replaces secrets in a stream by "[MASKED]", also when a secret is split across writes: it holds back
// the longest tail that could be the start of a secret until more bytes, or the end, tell.
type traceMasker struct {
	secrets [][]byte // longest first, so the longest of secrets starting at one position wins
	pend    []byte   // held-back tail, and the working buffer of mask
	next    []int    // per secret: position of its next match in the working buffer, or -1
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
	}
	m.pend = make([]byte, 0, traceMaskWindow+len(m.secrets[0]))
	return m
}

// mask appends to dst what of the stream so far is safe to record, with secrets masked, and keeps the rest.
// len(p) must not exceed traceMaskWindow.
func (m *traceMasker) mask(dst, p []byte) []byte {
	buf := append(m.pend, p...)
	for k := range m.next {
		m.next[k] = bytes.Index(buf, m.secrets[k])
	}
	i := 0
	for {
		best, bestLen := -1, 0
		for k, s := range m.secrets {
			if m.next[k] >= 0 && m.next[k] < i {
				if j := bytes.Index(buf[i:], s); j >= 0 {
					m.next[k] = i + j
				} else {
					m.next[k] = -1
				}
			}
			if n := m.next[k]; n >= 0 && (best < 0 || n < best) {
				best, bestLen = n, len(s)
			}
		}
		if best < 0 {
			break
		}
		dst = append(dst, buf[i:best]...)
		dst = append(dst, masked...)
		i = best + bestLen
	}
	hold := m.holdBack(buf[i:])
	dst = append(dst, buf[i:len(buf)-hold]...)
	m.pend = buf[:copy(buf, buf[len(buf)-hold:])]
	return dst
}

// holdBack returns the length of the longest suffix of b that is a proper prefix of a secret.
func (m *traceMasker) holdBack(b []byte) int {
	hold := 0
	for _, s := range m.secrets {
		for k := min(len(s)-1, len(b)); k > hold; k-- {
			if b[len(b)-k] == s[0] && bytes.Equal(b[len(b)-k:], s[:k]) {
				hold = k
				break
			}
		}
	}
	return hold
}

// flush appends the held-back tail to dst: the stream ends here, or its reader needs everything now.
func (m *traceMasker) flush(dst []byte) []byte {
	dst = append(dst, m.pend...)
	m.pend = m.pend[:0]
	return dst
}
