package runnerapi_test

import (
	"context"
	"fmt"
	"io"
	"log"

	"github.com/runnerapi/runnerapi"
	"github.com/runnerapi/runnerapi/runnerapitest"
)

// A v4 runner's whole job, against the fake coordinator: take the job, stream its trace, and send the final
// update with the trace's checksum, which Jobs.Update resends while the coordinator answers 202.
func ExampleJobsService_Next() {
	srv := runnerapitest.NewServer(runnerapitest.WithFinalUpdateHolds(1), runnerapitest.WithFinalUpdateInterval(1))
	defer srv.Close()
	srv.AddRunner("glrt-example-runner-token")
	id := srv.EnqueueCommands("hello", "echo hello")

	ctx := context.Background()
	c, err := runnerapi.NewClient(srv.URL, runnerapi.WithHTTPClient(srv.Client()),
		runnerapi.WithAPI(runnerapi.APIv4), runnerapi.WithRunnerToken("glrt-example-runner-token"))
	if err != nil {
		log.Fatal(err)
	}
	api, err := c.DetectAPI(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("the coordinator speaks", api)

	job, _, err := c.Jobs.Next(ctx, &runnerapi.JobNextOptions{JobRequestOptions: runnerapi.JobRequestOptions{
		SystemID: "s_0123456789ab", Features: []string{"trace_checksum", "trace_size", "cancelable"}}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("job", job.JobInfo.Name, job.Script())

	w, err := c.NewJobTraceWriter(ctx, job, nil)
	if err != nil {
		log.Fatal(err)
	}
	_, _ = io.WriteString(w, "$ echo hello\nhello\n")
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}
	status, _, err := c.Jobs.Update(ctx, job.ID, &runnerapi.JobUpdateOptions{State: runnerapi.StateSuccess, Output: w.Output()},
		runnerapi.WithToken(job.Token))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("job status:", status)
	fmt.Printf("trace: %q\n", srv.Trace(id))
	// Output:
	// the coordinator speaks v4
	// job hello [echo hello]
	// job status: success
	// trace: "$ echo hello\nhello\n"
}
