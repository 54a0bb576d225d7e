package runnerapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// TraceAppend is the coordinator's answer to an appended part of a trace.
type TraceAppend struct {
	// Length is the trace's length after the part, from the answer's "Range: 0-N", or the part's offset plus its
	// length when the 202 had no Range (see Assumed).
	Length int64
	// Status is the build's status from the answer's Build-Status (v4: Job-Status) header; empty when it had none.
	Status BuildState
	// UpdateInterval is the answer's X-GitLab-Trace-Update-Interval (runner API v4): how long the coordinator asks
	// the runner to wait before the next part. Zero when it sent none, or no whole positive number of seconds.
	UpdateInterval time.Duration
	// Assumed is true when the 202 had no Range header: a 202 means the part was appended, so Length is taken to
	// be its end. GitLab's own runner reads a 202 that way, and the coordinators in its tests send no Range; a
	// later part's 416 corrects a wrong guess.
	Assumed bool
}

// ErrTraceRange marks an answer of the trace endpoint whose Range header is missing or malformed. Nothing can be
// concluded about the coordinator's trace from such an answer, least of all that it is empty.
var ErrTraceRange = errors.New("runnerapi: missing or malformed Range header")

// RangeError is a 416 answer to an appended part: the part did not start at the coordinator's trace length, and
// nothing was written. Length says where the next part must start.
type RangeError struct {
	// Length is the coordinator's trace length, from the answer's "Range: 0-N".
	Length int64
	// Status is the build's status from the answer's Build-Status header; empty when it had none.
	Status BuildState
	// Err is the 416 answer.
	Err *ErrorResponse
}

// Error describes the mismatch.
func (e *RangeError) Error() string {
	return e.Err.Error() + " (the coordinator's trace has " + strconv.FormatInt(e.Length, 10) + " bytes)"
}

// Unwrap returns the 416 answer, so errors.As finds the *ErrorResponse.
func (e *RangeError) Unwrap() error { return e.Err }

// AppendTrace appends part to the trace of build id at offset, the length the caller believes the coordinator's
// trace has. It sends the build token (WithToken, else the client's WithBuildToken) in the BUILD-TOKEN header. A
// 416 answer is a *RangeError holding the coordinator's length. A 202 without a Range header appended the part
// (TraceAppend.Assumed); any other answer without a valid "Range: 0-N" header, a 416 above all, is an error
// matching ErrTraceRange.
//
// AppendTrace is retried only when the failure shows the coordinator did not act on it, so that a *RangeError
// always means the caller's offset was wrong, not that an earlier attempt of this call was applied. An empty part
// is a keep-alive that learns the build's status.
func (s *BuildsService) AppendTrace(ctx context.Context, id, offset int64, part []byte, reqOpts ...RequestOption) (*TraceAppend, *Response, error) {
	c := s.client
	if offset < 0 {
		return nil, nil, fmt.Errorf("runnerapi: AppendTrace: negative offset %d", offset)
	}
	token, err := c.buildTokenFor(newCallConfig(reqOpts), "AppendTrace")
	if err != nil {
		return nil, nil, err
	}
	// The transport may go on reading a request body after the answer arrived: send a copy, so part is the
	// caller's again as soon as AppendTrace returns.
	p := tracePart{mem: bytes.Clone(part)}
	return c.appendTrace(ctx, id, offset, p, nil, token, call{retry: retryUnsent, small: true, secrets: []string{token}})
}

// appendTrace sends part at offset; first, when not nil, is the body of the first attempt.
func (c *Client) appendTrace(ctx context.Context, id, offset int64, part tracePart, first io.ReadCloser, token string, cl call) (*TraceAppend, *Response, error) {
	req, err := c.NewRequest(ctx, http.MethodPatch, c.wire.tracePath(id), nil)
	if err != nil {
		return nil, nil, err
	}
	n := part.len()
	if n > 0 {
		if first == nil {
			first = part.replay()
		}
		req.Body = first
		req.GetBody = func() (io.ReadCloser, error) { return part.replay(), nil }
		req.ContentLength = int64(n)
	}
	req.Header.Set(c.wire.jobTokenHeader, token)
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("Content-Range", c.wire.contentRange(offset, n))
	resp, err := c.do(req, nil, cl)
	if err != nil {
		var er *ErrorResponse
		if errors.As(err, &er) && er.StatusCode == http.StatusRequestedRangeNotSatisfiable {
			n, rerr := parseTraceRange(er.Response.Header, token)
			if rerr != nil {
				return nil, resp, fmt.Errorf("%w: %w", er, rerr)
			}
			return nil, resp, &RangeError{Length: n, Status: BuildState(er.Response.Header.Get(c.wire.statusHeader)), Err: er}
		}
		return nil, resp, err
	}
	status := BuildState(resp.Header.Get(c.wire.statusHeader))
	interval := parseUpdateInterval(resp.Header.Get("X-GitLab-Trace-Update-Interval"))
	if resp.StatusCode == http.StatusAccepted && len(resp.Header.Values("Range")) == 0 {
		// The part was appended: GitLab checks where it starts before it writes, and answers 416 otherwise.
		return &TraceAppend{Length: offset + int64(n), Status: status, UpdateInterval: interval, Assumed: true}, resp, nil
	}
	length, err := parseTraceRange(resp.Header, token)
	if err != nil {
		return nil, resp, fmt.Errorf("runnerapi: PATCH %s: %d answer: %w", redactURL(req.URL), resp.StatusCode, err)
	}
	return &TraceAppend{Length: length, Status: status, UpdateInterval: interval}, resp, nil
}

// parseUpdateInterval reads X-GitLab-Trace-Update-Interval, whole seconds; anything else, or a value of zero or
// less, is no interval, as gitlab-runner reads it.
func parseUpdateInterval(v string) time.Duration {
	n, ok := parseDigits(v)
	if !ok || n <= 0 || n > int64(maxTraceUpdateInterval/time.Second) {
		if ok && n > 0 {
			return maxTraceUpdateInterval
		}
		return 0
	}
	return time.Duration(n) * time.Second
}

// parseTraceRange reads a "Range: 0-N" header strictly: exactly "0-" and decimal digits that fit an int64. A
// malformed value is quoted in the error with the given secrets masked, since a proxy may echo the request into it.
func parseTraceRange(h http.Header, secrets ...string) (int64, error) {
	vs := h.Values("Range")
	if len(vs) != 1 {
		if len(vs) == 0 {
			return 0, ErrTraceRange
		}
		return 0, fmt.Errorf("%w: %d Range headers", ErrTraceRange, len(vs))
	}
	v := vs[0]
	digits, ok := strings.CutPrefix(v, "0-")
	n, ok2 := parseDigits(digits)
	if !ok || !ok2 {
		return 0, fmt.Errorf("%w: %q", ErrTraceRange, headerForError(v, secrets))
	}
	return n, nil
}
