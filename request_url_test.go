package runnerapi

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRequestURLMatchesParse: the fast resolution gives the very URL base.Parse does, for plain paths and others,
// against roots with and without dot segments, escapes, ports and user info.
func TestRequestURLMatchesParse(t *testing.T) {
	bases := []string{
		"https://gitlab.example.com", "http://127.0.0.1:8080/gitlab/", "https://example.com/a%20b/ci",
		"https://example.com/x/./y/../ci/api/v1", "http://[::1]:9000/", "http://host:/", "https://h/%2Fodd/",
		"https://h/p~q_r-s.t/",
	}
	paths := []string{
		"builds/register", "builds/42", "builds/42/trace.txt", "builds/42/artifacts", "a/b/", "x.y/..z/.w~",
		"builds/./42", "builds/../42", "..", ".", "builds/42?x=1", "builds/42#f", "a b", "%41", "a:b", "",
		"builds//42", "ünï",
	}
	for _, b := range bases {
		base, err := normalizeBaseURL(b, &wireV1)
		require.NoError(t, err, b)
		for _, p := range paths {
			want, werr := base.Parse(p)
			got, gerr := requestURL(base, p)
			if werr != nil {
				assert.Error(t, gerr, "%s + %q", b, p)
				continue
			}
			require.NoError(t, gerr, "%s + %q", b, p)
			assert.Equal(t, want, got, "%s + %q", b, p)
			assert.Equal(t, want.String(), got.String(), "%s + %q", b, p)
		}
	}
}

// TestNewRequestURLAndHost: the request carries the resolved URL and a Host as http.NewRequest would set them.
func TestNewRequestURLAndHost(t *testing.T) {
	for _, b := range []string{"https://gitlab.example.com/gitlab", "http://host:/", "http://[::1]:9000/"} {
		c, err := NewClient(b)
		require.NoError(t, err)
		req, err := c.NewRequest(context.Background(), http.MethodPut, "builds/7", nil)
		require.NoError(t, err)
		want, err := http.NewRequest(http.MethodPut, c.baseURL.String()+"builds/7", nil)
		require.NoError(t, err)
		assert.Equal(t, want.URL.String(), req.URL.String(), b)
		assert.Equal(t, want.Host, req.Host, b)
		assert.Equal(t, want.URL.Host, req.URL.Host, b)
	}
}
