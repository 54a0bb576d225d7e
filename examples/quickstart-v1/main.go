// Command quickstart takes one build from a coordinator, runs nothing but streams a trace, and reports success:
// the smallest complete conversation a runner has with the CI Builds API.
package main

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/runnerapi/runnerapi"
)

func main() {
	ctx := context.Background()
	c, err := runnerapi.NewClient(os.Getenv("CI_SERVER_URL"), runnerapi.WithRunnerToken(os.Getenv("RUNNER_TOKEN")))
	if err != nil {
		log.Fatal(err)
	}

	// Wait for a build. Once returned, the coordinator has assigned it to this runner.
	build, _, err := c.Builds.Next(ctx, &runnerapi.NextOptions{Info: runnerapi.RunnerInfo{Name: "quickstart"}})
	if err != nil {
		log.Fatal(err)
	}

	// Stream the build's output. Write never blocks on the network; Close delivers every byte.
	trace, err := c.NewBuildTraceWriter(ctx, build, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(trace, "Hello from build %d (%s)\n", build.ID, build.Name)
	if err := trace.Close(); err != nil {
		log.Fatal(err)
	}

	// Report the result.
	if _, err := c.Builds.Update(ctx, build.ID, &runnerapi.UpdateOptions{State: runnerapi.StateSuccess}); err != nil {
		log.Fatal(err)
	}
}
