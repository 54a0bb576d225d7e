package runnerapi

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: a leaked retry timer, response body reader or
// connection would show up here.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
