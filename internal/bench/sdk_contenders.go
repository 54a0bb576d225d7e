package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"time"

	"github.com/runnerapi/runnerapi"
)

// The SDK's artifacts and trace contenders: each is one entry in its scenario's table (contenders.go) and one Go
// function here, run in a child process like the hand-written ones.

// sdkClient is the SDK client every SDK contender uses: defaults, the build token, no proxy; on the runner API
// v4 when p.V4 says so.
func sdkClient(p childParams) (*runnerapi.Client, error) {
	opts := []runnerapi.Option{runnerapi.WithBuildToken(p.BuildToken)}
	if p.V4 {
		opts = append(opts, runnerapi.WithAPI(runnerapi.APIv4))
	}
	return runnerapi.NewClient(p.URL, opts...)
}

// onV4 is the contender f made on the runner API v4: the same calls, the same client otherwise.
func onV4(f childFunc) childFunc {
	return func(ctx context.Context, p childParams) (childOutput, error) {
		p.V4 = true
		return f(ctx, p)
	}
}

// checkUploaded checks the build the coordinator answered with.
func checkUploaded(b *runnerapi.Build, size int64) error {
	if b == nil {
		return errors.New("upload: no build in the answer")
	}
	if b.ArtifactsFile.Size != size {
		return fmt.Errorf("upload: coordinator has %d bytes, sent %d", b.ArtifactsFile.Size, size)
	}
	return nil
}

// expectRefused turns the refusal the toolarge scenario expects into a success, timed from start, and anything
// else into a failure.
func expectRefused(err error, status int, start time.Time) (childOutput, error) {
	elapsed := time.Since(start)
	var er *runnerapi.ErrorResponse
	if !errors.As(err, &er) || er.StatusCode != status {
		return childOutput{}, fmt.Errorf("upload: want an error with status %d, got %v", status, err)
	}
	if status == http.StatusRequestEntityTooLarge && !errors.Is(err, runnerapi.ErrTooLarge) {
		return childOutput{}, fmt.Errorf("upload: a 413 that is not ErrTooLarge: %v", err)
	}
	return childOutput{TransferNS: elapsed.Nanoseconds(), Note: fmt.Sprintf("refused after %v", elapsed.Round(time.Microsecond))}, nil
}

// childSDKUploadFile uploads with UploadFile: known size, exact Content-Length, a reopenable body.
func childSDKUploadFile(ctx context.Context, p childParams) (childOutput, error) {
	c, err := sdkClient(p)
	if err != nil {
		return childOutput{}, err
	}
	start := time.Now()
	b, _, err := c.Artifacts.UploadFile(ctx, p.ID, p.Path, nil)
	if p.ExpectStatus != 0 {
		return expectRefused(err, p.ExpectStatus, start)
	}
	if err != nil {
		return childOutput{}, err
	}
	if err := checkUploaded(b, p.Size); err != nil {
		return childOutput{}, err
	}
	return childOutput{Bytes: p.Size, TransferNS: time.Since(start).Nanoseconds()}, nil
}

// childSDKUploadStream uploads with Upload from a plain io.Reader of unknown size (chunked), as a runner streaming
// an archive it is still writing would.
func childSDKUploadStream(ctx context.Context, p childParams) (childOutput, error) {
	c, err := sdkClient(p)
	if err != nil {
		return childOutput{}, err
	}
	f, err := os.Open(p.Path)
	if err != nil {
		return childOutput{}, err
	}
	defer f.Close()
	start := time.Now()
	// struct{ io.Reader } hides *os.File, so the SDK cannot learn the size or reopen the body.
	b, _, err := c.Artifacts.Upload(ctx, p.ID, struct{ io.Reader }{f}, &runnerapi.UploadOptions{Filename: "artifacts.zip"})
	if p.ExpectStatus != 0 {
		return expectRefused(err, p.ExpectStatus, start)
	}
	if err != nil {
		return childOutput{}, err
	}
	if err := checkUploaded(b, p.Size); err != nil {
		return childOutput{}, err
	}
	return childOutput{Bytes: p.Size, TransferNS: time.Since(start).Nanoseconds()}, nil
}

// childSDKDownloadFile downloads with DownloadFile.
func childSDKDownloadFile(ctx context.Context, p childParams) (childOutput, error) {
	c, err := sdkClient(p)
	if err != nil {
		return childOutput{}, err
	}
	start := time.Now()
	info, _, err := c.Artifacts.DownloadFile(ctx, p.ID, p.Path, nil)
	if err != nil {
		return childOutput{}, err
	}
	return childOutput{Bytes: p.Size, TransferNS: time.Since(start).Nanoseconds(), Note: fmt.Sprintf("%+v", info)}, nil
}

// childSDKTraceBuilds writes the trace as p.Builds builds' traces one after another, each line by line through a
// TraceWriter of its own, closed before the next build starts, as a runner's builds come.
func childSDKTraceBuilds(ctx context.Context, p childParams) (childOutput, error) {
	c, err := sdkClient(p)
	if err != nil {
		return childOutput{}, err
	}
	if p.Builds <= 0 {
		return childOutput{}, errors.New("no builds")
	}
	per := p.Size / int64(p.Builds)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	var writes int64
	for i := range p.Builds {
		w, err := c.NewTraceWriter(ctx, manyWriterID(p.ID, i), &runnerapi.TraceOptions{Token: p.BuildToken})
		if err != nil {
			return childOutput{}, err
		}
		n, err := writeTrace(w, per)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return childOutput{}, fmt.Errorf("build %d of %d: %w", i+1, p.Builds, err)
		}
		writes += n
	}
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	return childOutput{Bytes: per * int64(p.Builds), TransferNS: elapsed.Nanoseconds(), Writes: writes,
		Mallocs: int64(after.Mallocs - before.Mallocs)}, nil
}

// childSDKTraceWriter writes the trace line by line through a TraceWriter and closes it, which waits for the
// coordinator to acknowledge every byte.
func childSDKTraceWriter(ctx context.Context, p childParams) (childOutput, error) {
	c, err := sdkClient(p)
	if err != nil {
		return childOutput{}, err
	}
	out, w, err := measureTraceWriter(ctx, c, p, &runnerapi.TraceOptions{Token: p.BuildToken})
	if err != nil {
		return childOutput{}, err
	}
	out.Note = fmt.Sprintf("stats %+v", w.Stats())
	return out, nil
}
