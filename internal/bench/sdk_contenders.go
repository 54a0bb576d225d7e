package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/runnerapi/runnerapi"
)

// The SDK's artifacts and trace contenders: each is one entry in its scenario's table (contenders.go) and one Go
// function here, run in a child process like the hand-written ones.

// sdkClient is the SDK client every SDK contender uses: defaults, the build token, no proxy.
func sdkClient(p childParams) (*runnerapi.Client, error) {
	return runnerapi.NewClient(p.URL, runnerapi.WithBuildToken(p.BuildToken))
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

// childSDKUploadFile uploads with UploadFile: known size, exact Content-Length, a reopenable body.
func childSDKUploadFile(ctx context.Context, p childParams) (childOutput, error) {
	c, err := sdkClient(p)
	if err != nil {
		return childOutput{}, err
	}
	start := time.Now()
	b, _, err := c.Artifacts.UploadFile(ctx, p.ID, p.Path, nil)
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

// childSDKTraceWriter writes the trace line by line through a TraceWriter and closes it, which waits for the
// coordinator to acknowledge every byte.
func childSDKTraceWriter(ctx context.Context, p childParams) (childOutput, error) {
	c, err := sdkClient(p)
	if err != nil {
		return childOutput{}, err
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	w, err := c.NewTraceWriter(ctx, p.ID, &runnerapi.TraceOptions{Token: p.BuildToken})
	if err != nil {
		return childOutput{}, err
	}
	writes, err := forEachTraceChunk(p.Size, func(line []byte) error {
		n, err := w.Write(line)
		if err == nil && n != len(line) {
			err = io.ErrShortWrite
		}
		return err
	})
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	if err != nil {
		return childOutput{}, err
	}
	return childOutput{Bytes: p.Size, TransferNS: elapsed.Nanoseconds(), Writes: writes,
		Mallocs: int64(after.Mallocs - before.Mallocs), Note: fmt.Sprintf("stats %+v", w.Stats())}, nil
}
