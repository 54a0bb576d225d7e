package runnerapi

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The writer follows X-GitLab-Trace-Update-Interval within bounds (PROTOCOL-v4 §5.3: a value of zero or less is
// ignored, 15 minutes at most), unless its caller fixed a flush interval.
func TestTraceWriterV4FollowsUpdateInterval(t *testing.T) {
	for _, tc := range []struct {
		header string
		fixed  time.Duration
		want   time.Duration
	}{
		{"30", 0, 30 * time.Second},
		{"3", 0, 3 * time.Second},
		{"0", 0, DefaultTraceFlushInterval},
		{"-5", 0, DefaultTraceFlushInterval},
		{"soon", 0, DefaultTraceFlushInterval},
		{"99999999999999999999", 0, DefaultTraceFlushInterval},
		{"86400", 0, 15 * time.Minute},
		{"30", 50 * time.Millisecond, 50 * time.Millisecond},
	} {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n, _ := io.Copy(io.Discard, r.Body)
			w.Header().Set("Range", fmt.Sprintf("0-%d", n))
			w.Header().Set("Job-Status", "running")
			w.Header().Set("X-GitLab-Trace-Update-Interval", tc.header)
			w.WriteHeader(http.StatusAccepted)
		}))
		c, err := NewClient(ts.URL, WithAPI(APIv4))
		require.NoError(t, err)
		w, err := c.NewTraceWriter(context.Background(), 1, &TraceOptions{Token: "job-token", FlushInterval: tc.fixed})
		require.NoError(t, err)
		_, _ = io.WriteString(w, "x")
		require.NoError(t, w.Close())
		w.mu.Lock()
		got := w.interval
		w.mu.Unlock()
		ts.Close()
		assert.Equal(t, tc.want, got, "header %q, fixed %v", tc.header, tc.fixed)
	}
}
