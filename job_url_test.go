package runnerapi

import (
	"math"
	"net/url"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestJobURLIsRequestURL: a job's endpoint built in one piece is the URL requestURL resolves for the same path,
// whatever the API root and the ID.
func TestJobURLIsRequestURL(t *testing.T) {
	roots := []string{
		"https://gitlab.example.com/ci/api/v1/",
		"http://127.0.0.1:8080/api/v4/",
		"https://example.com/git%20lab/ci/api/v1/",
		"https://example.com/a/./b/../ci/api/v1/",
		"https://example.com:/ci/api/v1/",
	}
	for _, root := range roots {
		base, err := url.Parse(root)
		require.NoError(t, err)
		for _, prefix := range []string{"builds/", "jobs/", "odd path/", "x"} {
			for _, id := range []int64{0, 1, 4242, -7, math.MaxInt64, math.MinInt64} {
				want, wantErr := requestURL(base, prefix+strconv.FormatInt(id, 10))
				got, err := jobURL(base, prefix, id)
				assert.Equal(t, wantErr, err, "%s %s %d", root, prefix, id)
				assert.Equal(t, want, got, "%s %s %d", root, prefix, id)
			}
		}
	}
}
