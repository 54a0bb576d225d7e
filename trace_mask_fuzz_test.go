package runnerapi

import (
	"strings"
	"testing"
)

// FuzzTraceMasker: the streaming masker passes on what referenceMask does for each flushed segment, whatever the
// secrets (one a line of the first argument), the text, and the cuts into writes, settles and flushes.
func FuzzTraceMasker(f *testing.F) {
	f.Add("Tr0ub4dor\nTr0ub4dor&3", []byte("connecting with password Tr0ub4dor"), []byte{0}, uint8(0))
	f.Add("hunter2\n2topsecret", []byte("hunter2topsecret hunter2"), []byte{4, 9, 2}, uint8(5))
	f.Add("aab\nab\nb2", []byte("aaab2aab aabab"), []byte{1, 2, 0, 17}, uint8(3))
	f.Add("abcd\ncdXY", []byte("xabcdXYabcd"), []byte{16, 1}, uint8(0))
	f.Fuzz(func(t *testing.T, secrets string, text, ops []byte, window uint8) {
		list := strings.Split(secrets, "\n")
		if len(list) > 16 || len(text) > 4096 {
			return
		}
		maskerRun(t, list, text, ops, int(window))
	})
}
