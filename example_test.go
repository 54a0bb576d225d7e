package runnerapi_test

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/runnerapi/runnerapi"
	"github.com/runnerapi/runnerapi/runnerapitest"
)

// exampleSetup starts a fake coordinator that knows the runner token "runner-token", and a client for it.
func exampleSetup() (*runnerapitest.Server, *runnerapi.Client) {
	srv := runnerapitest.NewServer()
	srv.AddRunner("runner-token")
	c, err := runnerapi.NewClient(srv.URL, runnerapi.WithRunnerToken("runner-token"))
	if err != nil {
		log.Fatal(err)
	}
	return srv, c
}

// exampleTake queues b and takes it, as a runner does: it is then running, and its token moves its trace and
// artifacts.
func exampleTake(srv *runnerapitest.Server, c *runnerapi.Client, b runnerapi.Build) *runnerapi.Build {
	srv.Enqueue(b)
	build, _, err := c.Builds.Register(context.Background(), nil)
	if err != nil || build == nil {
		log.Fatalf("no build: %v", err)
	}
	return build
}

// exampleBuildToken returns the token of a build of srv, which the artifacts endpoints accept whatever the build's
// state.
func exampleBuildToken(srv *runnerapitest.Server, id int64) string {
	info, ok := srv.Build(id)
	if !ok {
		log.Fatalf("no build %d", id)
	}
	return info.Build.Token
}

// NewClient takes the coordinator's address as a user types it.
func ExampleNewClient() {
	for _, addr := range []string{"https://gitlab.example.com", "https://example.com/gitlab/", "https://gitlab.example.com/ci/api/v1"} {
		c, err := runnerapi.NewClient(addr, runnerapi.WithRunnerToken("runner-token"))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(c.BaseURL())
	}

	// A client for a fake coordinator, as in tests.
	srv := runnerapitest.NewServer()
	defer srv.Close()
	srv.AddRunner("runner-token")
	c, err := runnerapi.NewClient(srv.URL, runnerapi.WithRunnerToken("runner-token"), runnerapi.WithTimeout(10*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	build, _, err := c.Builds.Register(context.Background(), nil)
	fmt.Println("no build queued:", build == nil, err)
	// Output:
	// https://gitlab.example.com/ci/api/v1/
	// https://example.com/gitlab/ci/api/v1/
	// https://gitlab.example.com/ci/api/v1/
	// no build queued: true <nil>
}

// Register asks once; "no build" is a nil build and a nil error, with a value to send back for long polling.
func ExampleBuildsService_Register() {
	srv, c := exampleSetup()
	defer srv.Close()
	ctx := context.Background()

	build, resp, err := c.Builds.Register(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("no build:", build == nil, "long-polling value:", resp.LastUpdate != "")

	srv.EnqueueCommands("unit", "go test ./...")
	build, _, err = c.Builds.Register(ctx, &runnerapi.RegisterOptions{
		LastUpdate: resp.LastUpdate,
		Info:       runnerapi.RunnerInfo{Name: "my-runner", Version: "1.0.0"},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("build %d (%s): %s, commands %q\n", build.ID, build.Name, build.Status, build.Commands)
	runner, _ := srv.Runner("runner-token")
	fmt.Println("the coordinator knows the runner as", runner.Info.Name)
	// Output:
	// no build: true long-polling value: true
	// build 1 (unit): running, commands "go test ./..."
	// the coordinator knows the runner as my-runner
}

// Next polls until a build arrives.
func ExampleBuildsService_Next() {
	srv, c := exampleSetup()
	defer srv.Close()

	queued := make(chan struct{})
	go func() {
		defer close(queued)
		time.Sleep(30 * time.Millisecond) // a few polls find nothing
		srv.EnqueueCommands("lint", "go vet ./...")
	}()
	build, _, err := c.Builds.Next(context.Background(), &runnerapi.NextOptions{Interval: 10 * time.Millisecond})
	<-queued
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("build %d (%s): %s\n", build.ID, build.Name, build.Status)
	// Output:
	// build 1 (lint): running
}

// Update reports a build's result. Once the build is no longer running, the coordinator refuses updates, and the
// runner should stop working on it.
func ExampleBuildsService_Update() {
	srv, c := exampleSetup()
	defer srv.Close()
	ctx := context.Background()
	build := exampleTake(srv, c, runnerapi.Build{Name: "unit"})

	if _, err := c.Builds.Update(ctx, build.ID, &runnerapi.UpdateOptions{State: runnerapi.StateSuccess}); err != nil {
		log.Fatal(err)
	}
	state, _ := srv.WaitFinished(ctx, build.ID)
	fmt.Println("the coordinator says:", state)

	_, err := c.Builds.Update(ctx, build.ID, &runnerapi.UpdateOptions{State: runnerapi.StateFailed})
	fmt.Println("no longer running:", errors.Is(err, runnerapi.ErrNotFound))
	// Output:
	// the coordinator says: success
	// no longer running: true
}

// A build's trace writer masks the build's secrets (of runnerapi.MinTraceSecret bytes or more) in its output.
func ExampleClient_NewBuildTraceWriter() {
	srv, c := exampleSetup()
	defer srv.Close()
	build := exampleTake(srv, c, runnerapi.Build{
		Name:      "deploy",
		Variables: []runnerapi.Variable{{Key: "DEPLOY_PASSWORD", Value: "hunter2-s3cr3t", Public: false}},
	})

	w, err := c.NewBuildTraceWriter(context.Background(), build, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintln(w, "logging in with hunter2-s3cr3t")
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s", srv.Trace(build.ID))
	// Output:
	// logging in with [MASKED]
}

// Write only records the output; the writer sends it in the background, so a build's output can be copied into it
// from anywhere.
func ExampleTraceWriter_Write() {
	srv, c := exampleSetup()
	defer srv.Close()
	build := exampleTake(srv, c, runnerapi.Build{Name: "unit"})
	w, err := c.NewBuildTraceWriter(context.Background(), build, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()

	fmt.Fprintf(w, "$ %s\n", "go test ./...")
	if _, err := io.Copy(w, strings.NewReader("ok  \texample.com/pkg\t0.01s\n")); err != nil {
		log.Fatal(err)
	}
	if err := w.Flush(context.Background()); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s", srv.Trace(build.ID))
	// Output:
	// $ go test ./...
	// ok  	example.com/pkg	0.01s
}

// Close sends what is left and reports whether the coordinator has the whole trace.
func ExampleTraceWriter_Close() {
	srv, c := exampleSetup()
	defer srv.Close()
	build := exampleTake(srv, c, runnerapi.Build{Name: "unit"})
	w, err := c.NewBuildTraceWriter(context.Background(), build, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintln(w, "all tests passed")

	err = w.Close()
	stats := w.Stats()
	fmt.Println("close:", err, "length:", stats.Length, "acknowledged:", stats.Acknowledged)
	_, err = w.Write([]byte("too late\n"))
	fmt.Println("write after close:", errors.Is(err, runnerapi.ErrClosed))
	// Output:
	// close: <nil> length: 17 acknowledged: 17
	// write after close: true
}

// A runner learns that a build was canceled from the coordinator's answers to its trace parts. A short
// FlushInterval sends output soon, and a short KeepAlive asks for the build's status even while the build is silent.
func ExampleTraceWriter_Canceled() {
	srv, c := exampleSetup()
	defer srv.Close()
	build := exampleTake(srv, c, runnerapi.Build{Name: "long"})
	w, err := c.NewBuildTraceWriter(context.Background(), build, &runnerapi.TraceOptions{
		FlushInterval: 10 * time.Millisecond,
		KeepAlive:     10 * time.Millisecond,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintln(w, "working...")

	if err := srv.Cancel(build.ID); err != nil { // someone presses "cancel" in GitLab
		log.Fatal(err)
	}
	select {
	case <-w.Canceled():
		fmt.Fprintln(w, "stopping") // the trace is still accepted after the cancellation
		fmt.Println("canceled; the coordinator says", w.Status())
	case <-time.After(10 * time.Second):
		fmt.Println("no cancellation seen")
	}
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s", srv.Trace(build.ID))
	// Output:
	// canceled; the coordinator says canceled
	// working...
	// stopping
}

// Upload streams any reader; Size, when known, gives the request an exact Content-Length.
func ExampleArtifactsService_Upload() {
	srv, c := exampleSetup()
	defer srv.Close()
	build := exampleTake(srv, c, runnerapi.Build{Name: "report"})

	report := "coverage: 87%\n"
	updated, _, err := c.Artifacts.Upload(context.Background(), build.ID, strings.NewReader(report),
		&runnerapi.UploadOptions{Filename: "coverage.txt", ExpireIn: "1 week", Size: int64(len(report))},
		runnerapi.WithToken(build.Token))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s, %d bytes\n", updated.ArtifactsFile.Filename, updated.ArtifactsFile.Size)
	a, _ := srv.Artifact(build.ID)
	fmt.Println("expires in", a.ExpireIn)
	// Output:
	// coverage.txt, 14 bytes
	// expires in 1 week
}

// UploadFile sends a file on disk under its own name, and retries it through transient failures.
func ExampleArtifactsService_UploadFile() {
	srv, c := exampleSetup()
	defer srv.Close()
	build := exampleTake(srv, c, runnerapi.Build{Name: "package"})
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "app.tar.gz")
	if err := os.WriteFile(path, make([]byte, 4096), 0o644); err != nil {
		log.Fatal(err)
	}

	updated, _, err := c.Artifacts.UploadFile(context.Background(), build.ID, path, nil, runnerapi.WithToken(build.Token))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s, %d bytes\n", updated.ArtifactsFile.Filename, updated.ArtifactsFile.Size)
	// Output:
	// app.tar.gz, 4096 bytes
}

// UploadPaths zips a build's artifacts paths, as its options.artifacts.paths name them, straight into the upload.
func ExampleArtifactsService_UploadPaths() {
	srv, c := exampleSetup()
	defer srv.Close()
	build := exampleTake(srv, c, runnerapi.Build{
		Name:    "compile",
		Options: runnerapi.Options{Artifacts: runnerapi.ArtifactsOptions{Paths: []string{"bin/", "*.log"}}},
	})
	root, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(root)
	for name, content := range map[string]string{"bin/app": "binary", "build.log": "log", "src/main.go": "package main"} {
		_ = os.MkdirAll(filepath.Join(root, filepath.Dir(name)), 0o755)
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			log.Fatal(err)
		}
	}

	updated, _, err := c.Artifacts.UploadPaths(context.Background(), build.ID, root, build.Options.Artifacts.Paths, nil,
		runnerapi.WithToken(build.Token))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("uploaded", updated.ArtifactsFile.Filename)

	// What the coordinator received:
	rc, err := srv.OpenArtifact(build.ID)
	if err != nil {
		log.Fatal(err)
	}
	data, _ := io.ReadAll(rc)
	rc.Close()
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		log.Fatal(err)
	}
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
	}
	slices.Sort(names)
	fmt.Println(names)
	// Output:
	// uploaded artifacts.zip
	// [bin/ bin/app build.log]
}

// Download streams the artifacts file of a build into any writer: here, the artifacts of a build this one depends
// on, with that build's own token.
func ExampleArtifactsService_Download() {
	srv, c := exampleSetup()
	defer srv.Close()
	id := srv.EnqueueCommands("report", "true")
	if _, err := srv.SetArtifact(id, "report.txt", strings.NewReader("all green\n")); err != nil {
		log.Fatal(err)
	}

	info, _, err := c.Artifacts.Download(context.Background(), id, os.Stdout, nil,
		runnerapi.WithToken(exampleBuildToken(srv, id)))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s, %d bytes\n", info.Filename, info.Size)
	// Output:
	// all green
	// report.txt, 10 bytes
}

// DownloadFile puts the file in place only once it is complete.
func ExampleArtifactsService_DownloadFile() {
	srv, c := exampleSetup()
	defer srv.Close()
	id := srv.EnqueueCommands("report", "true")
	if _, err := srv.SetArtifact(id, "report.txt", strings.NewReader("all green\n")); err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	path := filepath.Join(dir, "report.txt")
	if _, _, err := c.Artifacts.DownloadFile(context.Background(), id, path, nil, runnerapi.WithToken(exampleBuildToken(srv, id))); err != nil {
		log.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	fmt.Printf("%s", data)
	// Output:
	// all green
}

// Open hands over the file as a stream, for a caller that reads it itself.
func ExampleArtifactsService_Open() {
	srv, c := exampleSetup()
	defer srv.Close()
	id := srv.EnqueueCommands("report", "true")
	if _, err := srv.SetArtifact(id, "report.txt", strings.NewReader("line 1\nline 2\n")); err != nil {
		log.Fatal(err)
	}

	rc, info, err := c.Artifacts.Open(context.Background(), id, runnerapi.WithToken(exampleBuildToken(srv, id)))
	if err != nil {
		log.Fatal(err)
	}
	defer rc.Close()
	fmt.Println(info.Filename)
	if _, err := io.Copy(os.Stdout, rc); err != nil {
		log.Fatal(err)
	}
	// Output:
	// report.txt
	// line 1
	// line 2
}

// Extract unpacks a build's artifacts archive into a directory, refusing entries that would land outside it.
func ExampleArtifactsService_Extract() {
	srv, c := exampleSetup()
	defer srv.Close()
	id := srv.EnqueueCommands("compile", "true")
	var archive bytes.Buffer
	zw := zip.NewWriter(&archive)
	for name, content := range map[string]string{"bin/app": "binary", "VERSION": "1.2.3\n"} {
		f, _ := zw.Create(name)
		_, _ = f.Write([]byte(content))
	}
	if err := zw.Close(); err != nil {
		log.Fatal(err)
	}
	if _, err := srv.SetArtifact(id, "artifacts.zip", &archive); err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	if _, _, err := c.Artifacts.Extract(context.Background(), id, dir, nil, runnerapi.WithToken(exampleBuildToken(srv, id))); err != nil {
		log.Fatal(err)
	}
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, path)
			fmt.Println(filepath.ToSlash(rel))
		}
		return err
	})
	// Output:
	// VERSION
	// bin/app
}

// Delete removes a build's artifacts file; downloading it then fails with ErrNotFound.
func ExampleArtifactsService_Delete() {
	srv, c := exampleSetup()
	defer srv.Close()
	id := srv.EnqueueCommands("report", "true")
	if _, err := srv.SetArtifact(id, "report.txt", strings.NewReader("all green\n")); err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	token := runnerapi.WithToken(exampleBuildToken(srv, id))

	if _, err := c.Artifacts.Delete(ctx, id, token); err != nil {
		log.Fatal(err)
	}
	_, stored := srv.Artifact(id)
	fmt.Println("stored:", stored)
	_, _, err := c.Artifacts.Download(ctx, id, io.Discard, nil, token)
	fmt.Println("download:", errors.Is(err, runnerapi.ErrNotFound))
	// Output:
	// stored: false
	// download: true
}

// exampleRunOne is the code under test in Example_runnerapitest: a tiny runner that takes one build, "runs" it and
// reports success.
func exampleRunOne(ctx context.Context, c *runnerapi.Client) error {
	build, _, err := c.Builds.Next(ctx, &runnerapi.NextOptions{Interval: 10 * time.Millisecond})
	if err != nil {
		return err
	}
	w, err := c.NewBuildTraceWriter(ctx, build, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "running %q\n", build.Commands)
	if err := w.Close(); err != nil {
		return err
	}
	_, err = c.Builds.Update(ctx, build.ID, &runnerapi.UpdateOptions{State: runnerapi.StateSuccess})
	return err
}

// The runnerapitest package is a fake coordinator for testing code built on this SDK: set the scene, run the code
// against it, and check what the coordinator saw.
func Example_runnerapitest() {
	srv := runnerapitest.NewServer()
	defer srv.Close()
	srv.AddRunner("runner-token")
	id := srv.EnqueueCommands("unit", "go test ./...")
	// The code under test should survive a flaky network: about half the registers answer 503.
	if err := srv.SetFaults(1, runnerapitest.FaultRule{
		Endpoint: runnerapitest.EndpointRegister, Kind: runnerapitest.FaultServiceUnavailable, Probability: 0.5,
	}); err != nil {
		log.Fatal(err)
	}

	c, err := runnerapi.NewClient(srv.URL, runnerapi.WithRunnerToken("runner-token"),
		runnerapi.WithRetryPolicy(runnerapi.RetryPolicy{MaxRetries: 5, BaseDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond}))
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := exampleRunOne(ctx, c); err != nil {
		log.Fatal(err)
	}

	state, err := srv.WaitFinished(ctx, id)
	fmt.Println("state:", state, err)
	fmt.Printf("trace: %s", srv.Trace(id))
	var endpoints []string
	for _, r := range srv.Requests() {
		if r.Fault == "" {
			endpoints = append(endpoints, string(r.Endpoint))
		}
	}
	fmt.Println("answered:", endpoints, "after", srv.FaultsInjected()[runnerapitest.FaultServiceUnavailable], "injected 503")
	// Output:
	// state: success <nil>
	// trace: running "go test ./..."
	// answered: [register trace update] after 1 injected 503
}
