package runnerapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"testing"

	"github.com/jarcoal/httpmock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recordedLog keeps every record sent to it, with the kind of each attribute.
type recordedLog struct {
	mu      sync.Mutex
	records []loggedRecord
}

type loggedRecord struct {
	message string
	attrs   map[string]slog.Kind
}

func (h *recordedLog) Enabled(context.Context, slog.Level) bool { return true }

func (h *recordedLog) Handle(_ context.Context, r slog.Record) error {
	rec := loggedRecord{message: r.Message, attrs: map[string]slog.Kind{}}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.Kind()
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, rec)
	return nil
}

func (h *recordedLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordedLog) WithGroup(string) slog.Handler      { return h }

func (h *recordedLog) messages() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, r := range h.records {
		out = append(out, r.message)
	}
	return out
}

func (h *recordedLog) first(message string) (loggedRecord, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.records {
		if r.message == message {
			return r, true
		}
	}
	return loggedRecord{}, false
}

// TestLogRecordsAreAsDocumented pins the messages and attributes WithLogger documents: handlers (the example
// runner's among them) pick records out by them, so a change must be a deliberate one.
func TestLogRecordsAreAsDocumented(t *testing.T) {
	request := map[string]slog.Kind{"method": slog.KindString, "path": slog.KindString, "attempt": slog.KindInt64,
		"duration": slog.KindDuration, "status": slog.KindInt64}
	failedRequest := map[string]slog.Kind{"method": slog.KindString, "path": slog.KindString, "attempt": slog.KindInt64,
		"duration": slog.KindDuration, "error": slog.KindString}
	retrying := map[string]slog.Kind{"method": slog.KindString, "path": slog.KindString, "attempt": slog.KindInt64,
		"wait": slog.KindDuration, "error": slog.KindString}

	for _, c := range []struct {
		name string
		call func(*Client) error
		// noAnswer makes the first attempt get no answer at all; Register is not retried after that (the
		// coordinator may have assigned a build), so it gets a 502 instead.
		noAnswer bool
	}{
		// Update retries through the client's loop of attempts, Register through its own.
		{"Update", func(c *Client) error {
			_, err := c.Builds.Update(context.Background(), 3, &UpdateOptions{State: StateSuccess})
			return err
		}, true},
		{"Register", func(c *Client) error {
			_, _, err := c.Builds.Register(context.Background(), nil)
			return err
		}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			log := &recordedLog{}
			cl, mock := testMockClient(t, WithLogger(slog.New(log)),
				WithRetryPolicy(RetryPolicy{MaxRetries: 3, BaseDelay: 1, MaxDelay: 1}))
			calls := 0
			mock.RegisterNoResponder(func(r *http.Request) (*http.Response, error) {
				calls++
				switch calls {
				case 1:
					if c.noAnswer {
						return nil, errors.New("connection refused")
					}
					return httpmock.NewStringResponse(http.StatusBadGateway, "<html>down</html>"), nil
				case 2:
					return httpmock.NewStringResponse(http.StatusServiceUnavailable, "<html>busy</html>"), nil
				}
				return httpmock.NewStringResponse(http.StatusNoContent, ""), nil
			})
			require.NoError(t, c.call(cl))
			require.Equal(t, 3, calls)

			assert.Equal(t, []string{"runnerapi: request", "runnerapi: retrying", "runnerapi: request", "runnerapi: retrying",
				"runnerapi: request"}, log.messages())
			log.mu.Lock()
			first, answered, last := log.records[0], log.records[2], log.records[4]
			log.mu.Unlock()
			if c.noAnswer {
				assert.Equal(t, failedRequest, first.attrs, "an attempt without an answer")
			} else {
				assert.Equal(t, request, first.attrs)
			}
			assert.Equal(t, request, answered.attrs, "an attempt answered 503")
			assert.Equal(t, request, last.attrs)
			retry, _ := log.first("runnerapi: retrying")
			assert.Equal(t, retrying, retry.attrs)
		})
	}
}
