package runnerapi

import (
	"context"
	"net/http"
	"testing"

	"github.com/jarcoal/httpmock"
	"github.com/stretchr/testify/assert"
)

// GitLab's own "no build" is not_found!, which renders {"message":"404 Not Found"}. GitLab's /api catch-all
// (lib/api/api.rb: route :any, '*path' { error!('404 Not Found', 404) }) goes through Grape's error formatter,
// which wraps a string as {"error": ...}: that is the answer of a base URL such as https://gitlab.example.com/api/v4,
// which a user who mixes up the API roots gives, and it never brings a build.
func TestRegisterGrapeCatchAll404IsNotCoordinator(t *testing.T) {
	c, mock := testMockClient(t)
	mock.RegisterResponder(http.MethodPost, testAPIRoot+"builds/register",
		httpmock.NewStringResponder(http.StatusNotFound, `{"error":"404 Not Found"}`).
			HeaderSet(http.Header{"Content-Type": {"application/json"}}))

	build, _, err := c.Builds.Register(context.Background(), nil)
	assert.Nil(t, build)
	assert.ErrorIs(t, err, ErrNotCoordinator)
}
