// Command quickstart takes one job from a GitLab coordinator over the runner API v4, runs nothing but streams a
// trace, and reports success: the smallest complete conversation a runner has with today's GitLab.
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
	c, err := runnerapi.NewClient(os.Getenv("CI_SERVER_URL"),
		runnerapi.WithAPI(runnerapi.APIv4), runnerapi.WithRunnerToken(os.Getenv("RUNNER_TOKEN")))
	if err != nil {
		log.Fatal(err)
	}

	// Wait for a job. Once returned, the coordinator has assigned it to this runner. Advertise only the features
	// the runner implements: the coordinator drops jobs that need one it lacks.
	job, _, err := c.Jobs.Next(ctx, &runnerapi.JobNextOptions{JobRequestOptions: runnerapi.JobRequestOptions{
		Info:     runnerapi.RunnerInfo{Name: "quickstart"},
		Features: []string{"trace_checksum", "trace_size"},
	}})
	if err != nil {
		log.Fatal(err)
	}

	// Stream the job's log; the job token and secret variables are masked. Write never blocks on the network;
	// Close delivers every byte.
	trace, err := c.NewJobTraceWriter(ctx, job, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(trace, "Hello from job %d (%s)\n", job.ID, job.JobInfo.Name)
	if err := trace.Close(); err != nil {
		log.Fatal(err)
	}

	// Report the result, with the trace's checksum: the coordinator answers 202 until it has stored the whole
	// trace, and Update waits that out.
	if _, _, err := c.Jobs.Update(ctx, job.ID, &runnerapi.JobUpdateOptions{State: runnerapi.StateSuccess,
		Output: trace.Output()}, runnerapi.WithToken(job.Token)); err != nil {
		log.Fatal(err)
	}
}
