package runnerapi

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/jarcoal/httpmock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRegisterNoBuildBehindAProxyThatRewrites404s(t *testing.T) {
	// GitLab sets X-GitLab-Last-Update before its "no build" 404 (lib/ci/api/builds.rb); a proxy's error_page may
	// replace the body but passes the header: that is a coordinator with no build, not a wrong address.
	page := "<html><head><title>404 Not Found</title></head><body><center>nginx</center></body></html>"
	for _, c := range []struct {
		name   string
		header http.Header
		body   string
	}{
		{"an HTML page", http.Header{"Content-Type": {"text/html"}, "X-Gitlab-Last-Update": {testLastUpdate}}, page},
		{"an empty body", http.Header{"X-Gitlab-Last-Update": {testLastUpdate}}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			c2, mock := testMockClient(t)
			polls := 0
			mock.RegisterResponder(http.MethodPost, testAPIRoot+"builds/register", func(*http.Request) (*http.Response, error) {
				polls++
				if polls == 3 {
					return httpmock.NewStringResponse(http.StatusCreated, `{"id":5,"token":"t"}`), nil
				}
				r := httpmock.NewStringResponse(http.StatusNotFound, c.body)
				r.Header = c.header.Clone()
				return r, nil
			})
			build, resp, err := c2.Builds.Register(context.Background(), nil)
			require.NoError(t, err)
			assert.Nil(t, build)
			assert.Equal(t, testLastUpdate, resp.LastUpdate)

			// Next polls on through such answers until the build comes.
			build, _, err = c2.Builds.Next(context.Background(), &NextOptions{Interval: time.Millisecond})
			require.NoError(t, err)
			require.NotNil(t, build)
			assert.Equal(t, int64(5), build.ID)
		})
	}
}

func TestRegisterHTML404WithoutTheHeaderIsNotACoordinator(t *testing.T) {
	c, mock := testMockClient(t)
	mock.RegisterResponder(http.MethodPost, testAPIRoot+"builds/register",
		httpmock.NewStringResponder(http.StatusNotFound, "<html><title>404 Not Found</title></html>").
			HeaderSet(http.Header{"Content-Type": {"text/html"}}))
	build, _, err := c.Builds.Register(context.Background(), nil)
	assert.Nil(t, build)
	assert.ErrorIs(t, err, ErrNotCoordinator)
}
