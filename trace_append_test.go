package runnerapi

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAppendTrace(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	cl := c.client(t)
	ctx := context.Background()
	res, resp, err := cl.Builds.AppendTrace(ctx, coordBuildID, 0, []byte("Running git clone...\n"))
	require.NoError(t, err)
	assert.Equal(t, &TraceAppend{Length: 21, Status: StateRunning}, res)
	assert.Equal(t, http.StatusAccepted, resp.StatusCode)

	// Wrong offset: a *RangeError with the coordinator's length, and the 416 behind it.
	_, _, err = cl.Builds.AppendTrace(ctx, coordBuildID, 5, []byte("x"))
	var re *RangeError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, int64(21), re.Length)
	assert.Equal(t, StateRunning, re.Status)
	var er *ErrorResponse
	require.ErrorAs(t, err, &er)
	assert.Equal(t, http.StatusRequestedRangeNotSatisfiable, er.StatusCode)
	assert.Contains(t, err.Error(), "21 bytes")

	// A keep-alive.
	res, _, err = cl.Builds.AppendTrace(ctx, coordBuildID, 21, nil)
	require.NoError(t, err)
	assert.Equal(t, int64(21), res.Length)

	// Per-call token wins; a bad one is forbidden and not repeated in the error.
	_, _, err = cl.Builds.AppendTrace(ctx, coordBuildID, 21, []byte("y"), WithToken("bad-token-Xy12"))
	require.ErrorIs(t, err, ErrForbidden)
	assert.NotContains(t, err.Error(), "bad-token-Xy12")

	_, _, err = cl.Builds.AppendTrace(ctx, coordBuildID, -1, nil)
	require.Error(t, err)
	cl2, err := NewClient(c.srv.URL)
	require.NoError(t, err)
	_, _, err = cl2.Builds.AppendTrace(ctx, coordBuildID, 0, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "build token")
	_, parts := c.snapshot()
	assert.Equal(t, []receivedPart{{0, 21, 21}, {5, 6, 1}, {21, 21, 0}}, parts)
}

func TestAppendTraceBare202(t *testing.T) {
	leakCheck(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Build-Status", "canceled")
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(srv.Close)
	cl, err := NewClient(srv.URL, WithHTTPClient(srv.Client()), WithBuildToken(coordBuildToken))
	require.NoError(t, err)
	res, _, err := cl.Builds.AppendTrace(context.Background(), 1, 21, []byte("abc"))
	require.NoError(t, err)
	assert.Equal(t, &TraceAppend{Length: 24, Status: StateCanceled, Assumed: true}, res)
}

func TestAppendTraceMalformedRangeOn416(t *testing.T) {
	leakCheck(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Range", "0-")
		w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
		_, _ = io.WriteString(w, `{"error":"416 Range Not Satisfiable"}`)
	}))
	t.Cleanup(srv.Close)
	cl, err := NewClient(srv.URL, WithHTTPClient(srv.Client()), WithBuildToken(coordBuildToken))
	require.NoError(t, err)
	_, _, err = cl.Builds.AppendTrace(context.Background(), 1, 3, []byte("abc"))
	require.ErrorIs(t, err, ErrTraceRange)
	var re *RangeError
	assert.False(t, errors.As(err, &re), "no length to give")
	var er *ErrorResponse
	require.ErrorAs(t, err, &er)
	assert.Equal(t, http.StatusRequestedRangeNotSatisfiable, er.StatusCode)
}

func TestAppendTraceRetriesOnlyWhatWasNotApplied(t *testing.T) {
	leakCheck(t)
	c := newTraceCoord(t)
	cl := c.client(t)
	c.fault = faultAt(1, coordFault{act: actStatus, status: http.StatusServiceUnavailable})
	res, resp, err := cl.Builds.AppendTrace(context.Background(), coordBuildID, 0, []byte("abc"))
	require.NoError(t, err)
	assert.Equal(t, int64(3), res.Length)
	assert.Equal(t, 2, resp.Attempts)

	c.setFault(faultAt(3, coordFault{act: actApplyStatus, status: http.StatusInternalServerError}))
	_, _, err = cl.Builds.AppendTrace(context.Background(), coordBuildID, 3, []byte("def"))
	var er *ErrorResponse
	require.ErrorAs(t, err, &er)
	assert.Equal(t, http.StatusInternalServerError, er.StatusCode, "a 500 may have been applied: not retried")
}

func TestParseTraceRange(t *testing.T) {
	for _, tt := range []struct {
		values []string
		want   int64
		ok     bool
	}{
		{[]string{"0-0"}, 0, true},
		{[]string{"0-21"}, 21, true},
		{[]string{"0-5368709125"}, 5368709125, true},
		{[]string{"0-9223372036854775807"}, 1<<63 - 1, true},
		{nil, 0, false},
		{[]string{""}, 0, false},
		{[]string{"0-"}, 0, false},
		{[]string{"1-5"}, 0, false},
		{[]string{"0-x"}, 0, false},
		{[]string{"0--1"}, 0, false},
		{[]string{"0-+1"}, 0, false},
		{[]string{"0-9223372036854775808"}, 0, false},
		{[]string{"0-99999999999999999999"}, 0, false},
		{[]string{"0-5 "}, 0, false},
		{[]string{"0-5", "0-5"}, 0, false},
	} {
		h := http.Header{"Range": tt.values}
		n, err := parseTraceRange(h)
		if tt.ok {
			assert.NoError(t, err, "%q", tt.values)
			assert.Equal(t, tt.want, n, "%q", tt.values)
		} else {
			assert.ErrorIs(t, err, ErrTraceRange, "%q", tt.values)
		}
	}
}

func TestAppendTraceLargeOffsets(t *testing.T) {
	leakCheck(t)
	const off = int64(5) << 30
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assert.Equal(t, "5368709120-5368709125", r.Header.Get("Content-Range"))
		w.Header().Set("Range", "0-5368709125")
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(srv.Close)
	cl, err := NewClient(srv.URL, WithHTTPClient(srv.Client()), WithBuildToken(coordBuildToken))
	require.NoError(t, err)
	res, _, err := cl.Builds.AppendTrace(context.Background(), 1, off, []byte("12345"))
	require.NoError(t, err)
	assert.Equal(t, off+5, res.Length)
}
