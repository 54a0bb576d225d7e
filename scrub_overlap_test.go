package runnerapi

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// Secrets that overlap in a text are masked in every byte of both, as in the trace: masking one first must not
// leave the rest of the other, which it no longer matches, in the clear. Both orders of the secrets, and both
// texts an error or a job's field may hold.
func TestScrubTextMasksOverlappingSecretsWhole(t *testing.T) {
	const first, second = "prefixpart+sharedcore", "sharedcore+suffixpart" // same length: no order by length
	for _, secrets := range [][]string{{first, second}, {second, first}} {
		got := scrubText("dsn prefixpart+sharedcore+suffixpart end", secrets)
		assert.Equal(t, "dsn [MASKED] end", got, "secrets %q", secrets)
		got = scrubText("a=prefixpart+sharedcore&b=sharedcore+suffixpart", secrets)
		assert.Equal(t, "a=[MASKED]&b=[MASKED]", got, "secrets %q", secrets)
	}
}
