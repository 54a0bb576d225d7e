package runnerapi

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The README's quick starts are examples/quickstart (v4) and examples/quickstart-v1, which the build compiles and
// vets: they must not drift apart.
func TestREADMEQuickStartsAreTheCompiledExamples(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	_, rest, ok := strings.Cut(string(readme), "## Quick start")
	require.True(t, ok, "README has a quick start")
	for _, path := range []string{"examples/quickstart/main.go", "examples/quickstart-v1/main.go"} {
		program, err := os.ReadFile(path)
		require.NoError(t, err)
		var block string
		_, rest, ok = strings.Cut(rest, "```go\n")
		require.True(t, ok, "the quick start has a Go block for %s", path)
		block, rest, ok = strings.Cut(rest, "```")
		require.True(t, ok, "the Go block of %s is closed", path)
		assert.Equal(t, string(program), block, "README's block for %s", path)
	}
}
