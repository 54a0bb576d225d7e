package runnerapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/jarcoal/httpmock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testErrorResponse runs CheckResponse over an answer with the given status, content type and body.
func testErrorResponse(t *testing.T, status int, contentType, body string) *ErrorResponse {
	t.Helper()
	u, err := url.Parse(testAPIRoot + "builds/1?expire_in=7d")
	require.NoError(t, err)
	r := &http.Response{
		StatusCode: status,
		Header:     http.Header{},
		Body:       io.NopCloser(strings.NewReader(body)),
		Request:    &http.Request{Method: http.MethodPut, URL: u},
	}
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	err = CheckResponse(r)
	var er *ErrorResponse
	require.ErrorAs(t, err, &er)
	return er
}

func TestCheckResponseSuccess(t *testing.T) {
	for _, status := range []int{200, 201, 202, 204, 206} {
		assert.NoError(t, CheckResponse(&http.Response{StatusCode: status, Body: http.NoBody}))
	}
}

func TestCheckResponseParsesMessage(t *testing.T) {
	tests := []struct {
		name        string
		status      int
		contentType string
		body        string
		wantMsg     string
		wantErr     string
	}{
		{"message", 403, "application/json", `{"message":"403 Forbidden"}`, "403 Forbidden",
			"runnerapi: PUT " + testAPIRoot + "builds/1?REDACTED: 403 Forbidden"},
		{"message with two spaces", 403, "application/json", `{"message":"403 Forbidden  - Build has been erased!"}`,
			"403 Forbidden  - Build has been erased!", ": 403 Forbidden  - Build has been erased!"},
		{"message without the status", 404, "application/json", `{"message":"no such build"}`, "no such build",
			": 404 Not Found: no such build"},
		{"error", 416, "application/json", `{"error":"416 Range Not Satisfiable"}`, "416 Range Not Satisfiable",
			": 416 Range Not Satisfiable"},
		{"message wins over error", 400, "", `{"message":"m","error":"e"}`, "m", ": 400 Bad Request: m"},
		{"null message falls back to error", 400, "", `{"message":null,"error":"e"}`, "e", ": 400 Bad Request: e"},
		{"validation object", 400, "application/json", `{"message":{"token":["is missing","is invalid"],"state":["is invalid"]}}`,
			"state is invalid; token is missing; token is invalid", ": 400 Bad Request: state is invalid; token is missing; token is invalid"},
		{"validation object, odd values", 400, "", `{"message":{"a":"bad","b":{"c":["x"]}}}`, "a bad; b c x", "a bad; b c x"},
		{"message number", 400, "", `{"message":42}`, "42", "42"},
		{"plain text", 502, "text/plain", "Bad Gateway\n", "Bad Gateway", ": 502 Bad Gateway: Bad Gateway"},
		{"html page", 502, "text/html", "<html><head><title>502 Bad Gateway</title></head><body><h1>nginx</h1></body></html>",
			"502 Bad Gateway", ": 502 Bad Gateway"},
		{"html without content type", 503, "", "<!DOCTYPE html>\n<html><head>\n<title>\n  GitLab is not\n responding\n</title>",
			"GitLab is not responding", ": 503 Service Unavailable: GitLab is not responding"},
		{"html without title", 500, "text/html; charset=utf-8", "<html><body><p>Oops,</p>\n<p>something broke</p></body></html>",
			"Oops, something broke", ": 500 Internal Server Error: Oops, something broke"},
		{"empty", 500, "", "", "", ": 500 Internal Server Error"},
		{"whitespace", 500, "", " \n\t ", "", ": 500 Internal Server Error"},
		{"broken json", 500, "application/json", `{"message":`, `{"message":`, `{"message":`},
		{"unknown status", 599, "", "", "", ": 599"},
		{"control bytes", 400, "", "bad\x1b[31m\x00thing\r\ninjected", "bad [31m thing  injected", "bad [31m thing  injected"},
		{"invalid utf-8", 400, "", "bad \xff\xfe bytes", "bad \ufffd bytes", "bad \ufffd bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			er := testErrorResponse(t, tt.status, tt.contentType, tt.body)
			assert.Equal(t, tt.status, er.StatusCode)
			assert.Equal(t, tt.wantMsg, er.Message)
			assert.Contains(t, er.Error(), tt.wantErr)
			assert.Equal(t, http.MethodPut, er.Method)
			assert.Equal(t, testAPIRoot+"builds/1?REDACTED", er.URL, "the query may hold signatures")
			assert.NotNil(t, er.Response)
			for _, r := range er.Error() {
				assert.False(t, r < 0x20 || r == 0x7f, "control character %q in %q", r, er.Error())
			}
		})
	}
}

func TestCheckResponseShortensLongMessages(t *testing.T) {
	er := testErrorResponse(t, 500, "text/plain", strings.Repeat("é", 2000))
	assert.LessOrEqual(t, len(er.Message), maxMessageLen+len("…"))
	assert.True(t, strings.HasSuffix(er.Message, "…"))
	assert.True(t, strings.ToValidUTF8(er.Message, "?") == er.Message, "cut inside a rune")
}

func TestCheckResponseReadsAtMost1MiB(t *testing.T) {
	c, mock := testMockClient(t)
	body := &testCountingBody{size: 10 << 20, fill: 'x'}
	mock.RegisterResponder(http.MethodPut, testAPIRoot+"builds/1", func(*http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: http.StatusBadRequest, Body: body, Header: http.Header{}}, nil
	})
	_, err := c.Builds.Update(context.Background(), 1, &UpdateOptions{State: StateSuccess})
	var er *ErrorResponse
	require.ErrorAs(t, err, &er)
	assert.Equal(t, http.StatusBadRequest, er.StatusCode)
	assert.Equal(t, int64(maxErrorBody), body.n.Load(), "an error body is read up to 1 MiB and no further")
	assert.LessOrEqual(t, len(er.Error()), 1024)
}

func TestErrorResponseIs(t *testing.T) {
	sentinels := map[int]error{403: ErrForbidden, 404: ErrNotFound, 409: ErrConflict, 413: ErrTooLarge}
	all := []error{ErrForbidden, ErrNotFound, ErrConflict, ErrTooLarge, ErrBodyNotReplayable, io.EOF}
	for _, status := range []int{400, 401, 403, 404, 405, 409, 413, 416, 429, 500, 502, 503} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			var err error = &ErrorResponse{StatusCode: status}
			err = fmt.Errorf("wrapped: %w", err)
			for _, target := range all {
				if target == sentinels[status] {
					assert.ErrorIs(t, err, target)
				} else {
					assert.NotErrorIs(t, err, target)
				}
			}
			var er *ErrorResponse
			require.ErrorAs(t, err, &er)
			assert.Equal(t, status, er.StatusCode)
		})
	}
	assert.NotErrorIs(t, &TransportError{Err: io.EOF}, ErrNotFound)
	assert.ErrorIs(t, &TransportError{Err: io.EOF}, io.EOF)
}

func TestErrorsNeverCarryTheRunnerToken(t *testing.T) {
	const token = "glrt-5ecret-Runner+Token/42"
	tests := []struct{ name, body string }{
		{"json message", `{"message":"403 Forbidden - token ` + token + ` is not valid"}`},
		{"json escaped", `{"message":"token \u0067lrt-5ecret-Runner+Token\/42 is not valid"}`},
		{"validation", `{"message":{"token":["` + token + ` is invalid"]}}`},
		{"plain text echo of the form", "bad request: token=" + url.QueryEscape(token) + "&state=success"},
		{"html", "<html><head><title>Invalid token " + token + "</title></head></html>"},
		// The token straddles the point where a long message is cut.
		{"at the cut", strings.Repeat("x", maxMessageLen-16) + token + " tail"},
		{"beyond the cut, url-encoded", strings.Repeat("y", maxMessageLen-16) + url.QueryEscape(token)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, mock := testMockClient(t, WithRunnerToken(token))
			mock.RegisterResponder(http.MethodPut, testAPIRoot+"builds/1", httpmock.NewStringResponder(403, tt.body))
			_, err := c.Builds.Update(context.Background(), 1, &UpdateOptions{State: StateSuccess})
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrForbidden)
			msg := err.Error()
			for _, leak := range []string{token, url.QueryEscape(token), token[:12], url.QueryEscape(token)[:12]} {
				assert.NotContains(t, msg, leak)
			}
		})
	}
}

func TestTransportAndNotReplayedErrors(t *testing.T) {
	cause := errors.New("connection refused")
	te := &TransportError{Method: "POST", URL: testAPIRoot + "builds/register", Err: cause}
	assert.Equal(t, "runnerapi: POST "+testAPIRoot+"builds/register: connection refused", te.Error())
	assert.ErrorIs(t, te, cause)
	assert.True(t, IsTransient(te))

	nr := &notReplayedError{err: te}
	assert.ErrorIs(t, nr, ErrBodyNotReplayable)
	assert.ErrorIs(t, nr, cause)
	assert.Contains(t, nr.Error(), "connection refused")
	assert.Contains(t, nr.Error(), "not retried")
}

func TestCheckResponseDeeplyNestedMessage(t *testing.T) {
	// Two levels of a validation object are flattened; anything deeper is kept as it came.
	er := testErrorResponse(t, 400, "application/json", `{"message":{"a":{"b":{"c":{"d":"x"}}}}}`)
	assert.Equal(t, `a b {"c":{"d":"x"}}`, er.Message)

	// A 1 MiB answer nested thousands deep is parsed a bounded number of times (unbounded, this took minutes
	// of CPU and the test times out).
	const depth = 9000
	body := `{"message":` + strings.Repeat(`{"a":`, depth) + `"` + strings.Repeat("x", maxErrorBody-6*depth-32) + `"` +
		strings.Repeat("}", depth) + `}`
	er = testErrorResponse(t, 400, "application/json", body)
	assert.True(t, strings.HasPrefix(er.Message, `a a {"a":{"a":`), er.Message[:40])
	assert.LessOrEqual(t, len(er.Message), maxMessageLen+len("…"))
}

func TestDoMasksEchoedBuildToken(t *testing.T) {
	const buildToken = "BUILD-TOKEN-echoed-4411"
	c, mock := testMockClient(t)
	mock.RegisterResponder(http.MethodGet, testAPIRoot+"builds/1/artifacts", func(r *http.Request) (*http.Response, error) {
		resp := httpmock.NewStringResponse(http.StatusForbidden,
			`{"message":"403 Forbidden - token `+r.Header.Get(wireV1.jobTokenHeader)+` has expired"}`)
		resp.Request = r
		return resp, nil
	})
	req, err := c.NewRequest(context.Background(), http.MethodGet, "builds/1/artifacts", nil)
	require.NoError(t, err)
	req.Header.Set(wireV1.jobTokenHeader, buildToken)
	_, err = c.Do(req, io.Discard)
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrForbidden)
	assert.NotContains(t, err.Error(), buildToken)
	assert.Contains(t, err.Error(), masked)
	assert.Contains(t, err.Error(), "GET "+testAPIRoot+"builds/1/artifacts")
}

func TestScrubErrorCutTail(t *testing.T) {
	tests := []struct{ msg, secret, want string }{
		{"abc glrt-12…", "glrt-1234", "abc [MASKED]…"},
		{"abc glrt-1234 d…", "glrt-1234", "abc glrt-1234 d…"}, // whole occurrences are ReplaceAll's work
		{"abc glrt-12", "glrt-1234", "abc glrt-12"},           // not cut: nothing hides there
		{"abc…", "zzz", "abc…"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, maskCutTail(tt.msg, tt.secret), tt.msg)
	}
	// CheckResponse callers outside do (the trace writer, downloads) rely on scrubError alone.
	er := &ErrorResponse{StatusCode: 403, Message: "x token=a%2Bb+c and a+b c and a%2B…"}
	scrubError(fmt.Errorf("wrapped: %w", er), []string{"a+b c", ""})
	assert.Equal(t, "x token=[MASKED] and [MASKED] and [MASKED]…", er.Message)
	assert.NotPanics(t, func() { scrubError(errors.New("plain"), []string{"x"}) })
}

// ErrNotCoordinator is register's verdict alone: a 404 page from object storage on a download is a missing file,
// not a wrong address.
func TestErrNotCoordinatorOnlyFromRegister(t *testing.T) {
	for _, body := range []string{"<html><title>404 Not Found</title></html>", "", `{"message":"404 Not Found"}`} {
		er := testErrorResponse(t, http.StatusNotFound, "", body)
		assert.ErrorIs(t, er, ErrNotFound)
		assert.NotErrorIs(t, er, ErrNotCoordinator)
	}
}
