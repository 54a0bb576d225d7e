//go:build unix

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"
)

// logger writes the lines a person reads on stderr: one at a time, each with its time.
type logger struct {
	mu sync.Mutex
	w  io.Writer
}

func newLogger(w io.Writer) *logger { return &logger{w: w} }

// printf writes one line; newlines in what it is given are folded so that each event stays one line.
func (l *logger) printf(format string, args ...any) {
	line := oneLine(fmt.Sprintf(format, args...))
	now := time.Now().UTC().Format("2006-01-02T15:04:05.000Z")
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "%s runner: %s\n", now, line)
}

// fatal writes the line that says why the runner stops, and returns the error that makes run exit with 1.
func (l *logger) fatal(format string, args ...any) error {
	l.printf(format, args...)
	return &fatalError{msg: fmt.Sprintf(format, args...)}
}

// retryLog is an slog.Handler for the client's debug records: it logs each request the SDK sends again, with its
// reason and delay, and drops the others (one per request would be a line per idle poll).
type retryLog struct{ l *logger }

func (h retryLog) Enabled(context.Context, slog.Level) bool { return true }

func (h retryLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "runnerapi: retrying" {
		return nil
	}
	var method, path, reason string
	var wait time.Duration
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "method":
			method = a.Value.String()
		case "path":
			path = a.Value.String()
		case "error":
			reason = a.Value.String()
		case "wait":
			wait = a.Value.Duration()
		}
		return true
	})
	h.l.printf("%s %s failed, trying again in %s: %s", method, path, roundWait(wait), reason)
	return nil
}

func (h retryLog) WithAttrs([]slog.Attr) slog.Handler { return h }

func (h retryLog) WithGroup(string) slog.Handler { return h }

// roundWait rounds a wait for a person to read.
func roundWait(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}

// slogFor is the logger the client is given: it turns the SDK's retries into runner lines.
func slogFor(l *logger) *slog.Logger { return slog.New(retryLog{l}) }
