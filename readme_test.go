package runnerapi

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The README's quick start is examples/quickstart, which the build compiles and vets: they must not drift apart.
func TestREADMEQuickStartIsTheCompiledExample(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	program, err := os.ReadFile("examples/quickstart/main.go")
	require.NoError(t, err)

	_, rest, ok := strings.Cut(string(readme), "## Quick start")
	require.True(t, ok, "README has a quick start")
	_, block, ok := strings.Cut(rest, "```go\n")
	require.True(t, ok, "the quick start has a Go block")
	block, _, ok = strings.Cut(block, "```")
	require.True(t, ok, "the Go block is closed")
	assert.Equal(t, string(program), block)
}
