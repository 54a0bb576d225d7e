//go:build unix

package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/runnerapi/runnerapi"
	"github.com/runnerapi/runnerapi/runnerapitest"
)

// demo runs a two-build pipeline on an embedded runnerapitest coordinator, which speaks both APIs (-api auto finds
// the runner API v4): "compile" writes output and an artifact, "check" depends on it and reads the artifact. The
// script reads the job's identity from the variables of either API. Then it prints each trace as the coordinator received it, and a
// summary.
func demo(ctx context.Context, cfg config, e env) error {
	out := e.stdout
	srv := runnerapitest.NewServer()
	defer srv.Close()
	const token = "demo-runner-token"
	srv.AddRunner(token)
	compile := srv.Enqueue(runnerapi.Build{
		Name:  "compile",
		Stage: "build",
		Commands: `echo "Compiling on $(uname -s)..."
mkdir -p out
echo "hello from build ${CI_JOB_ID:-$CI_BUILD_ID} (${CI_JOB_NAME:-$CI_BUILD_NAME})" > out/greeting.txt
echo "Wrote out/greeting.txt"`,
		Options: runnerapi.Options{Artifacts: runnerapi.ArtifactsOptions{Paths: []string{"out/"}}},
	})
	check := srv.Enqueue(runnerapi.Build{
		Name:  "check",
		Stage: "test",
		Commands: `echo "The artifact of the compile build says:"
cat out/greeting.txt
grep -q hello out/greeting.txt`,
		DependsOnBuilds: []runnerapi.DependentBuild{{ID: compile}},
	})
	fmt.Fprintf(out, "Demo: a two-build pipeline on an embedded coordinator (runnerapitest) at %s\n\n", srv.URL)

	// The runner stops taking builds once the last build has finished ("check" is skipped if "compile" fails), as
	// on SIGQUIT; the operator's own signals still reach it.
	outer, signals := e.signals, make(chan os.Signal, 1)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	forwarded := make(chan struct{})
	go func() {
		defer close(forwarded)
		finished := make(chan struct{})
		go func() {
			defer close(finished)
			_, _ = srv.WaitFinished(wctx, check)
		}()
		for {
			select {
			case sig := <-outer:
				signals <- sig
			case <-finished:
				if wctx.Err() == nil {
					signals <- pipelineDone
				}
				return
			}
		}
	}()
	cfg.url, cfg.token, cfg.limit = srv.URL, token, 0
	cfg.interval = min(cfg.interval, 100*time.Millisecond)
	e.signals = signals
	err := serve(ctx, cfg, e)
	cancel()
	<-forwarded
	if err != nil {
		return err
	}

	var states []string
	for _, id := range []int64{compile, check} {
		info, _ := srv.Build(id)
		fmt.Fprintf(out, "\n--- trace of build %d (%s), as the coordinator received it ---\n%s", id, info.Build.Name, srv.Trace(id))
		states = append(states, fmt.Sprintf("%s %s", info.Build.Name, info.State))
	}
	fmt.Fprintf(out, "\nSummary: %s", strings.Join(states, ", "))
	if a, ok := srv.Artifact(compile); ok {
		fmt.Fprintf(out, "; compile uploaded %s (%d bytes)", a.Filename, a.Size)
		downloaded := func(r runnerapitest.Request) bool {
			id := strconv.FormatInt(compile, 10)
			return r.Status == 200 && (r.Endpoint == runnerapitest.EndpointDownload && strings.Contains(r.Path, "/builds/"+id+"/") ||
				r.Endpoint == runnerapitest.EndpointJobArtifactsDownload && strings.Contains(r.Path, "/jobs/"+id+"/"))
		}
		for _, r := range srv.Requests() {
			if downloaded(r) {
				fmt.Fprint(out, ", which check downloaded")
				break
			}
		}
	}
	fmt.Fprintf(out, ".\nTo take builds from a real coordinator: TOKEN=$(go run ./examples/runner register -url https://gitlab.example.com -registration-token ...), then RUNNER_TOKEN=$TOKEN go run ./examples/runner -url https://gitlab.example.com (-api v1|v4|auto, auto by default)\n")
	return nil
}
