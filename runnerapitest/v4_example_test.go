package runnerapitest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"net/http"
	"strings"

	"github.com/runnerapi/runnerapi/runnerapitest"
)

// A runner's conversation with the fake coordinator over the runner API v4, in plain net/http: verify a runner
// created in the UI, take a job, append to its log, and send the final update, which is answered 202 until the
// server has the whole log.
func Example_v4() {
	srv := runnerapitest.NewServer(runnerapitest.WithFinalUpdateHolds(1))
	defer srv.Close()
	srv.AddRunner("glrt-example-runner")
	id := srv.EnqueueCommands("hello", "echo hello")
	hc := srv.Client()
	api := srv.URL + "/api/v4/"
	send := func(method, path, token string, header map[string]string, body string) *http.Response {
		req, _ := http.NewRequest(method, api+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("JOB-TOKEN", token)
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := hc.Do(req)
		if err != nil {
			panic(err)
		}
		return resp
	}

	resp := send(http.MethodPost, "runners/verify", "", nil, `{"token":"glrt-example-runner","system_id":"s_0123456789ab"}`)
	resp.Body.Close()
	fmt.Println("verify:", resp.StatusCode)

	resp = send(http.MethodPost, "jobs/request", "", nil,
		`{"token":"glrt-example-runner","info":{"features":{"cancel_gracefully":true}}}`)
	var job struct {
		ID      int64  `json:"id"`
		Token   string `json:"token"`
		JobInfo struct {
			Name string `json:"name"`
		} `json:"job_info"`
		Steps []struct {
			Script []string `json:"script"`
		} `json:"steps"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&job)
	resp.Body.Close()
	fmt.Println("request:", resp.StatusCode, job.JobInfo.Name, job.Steps[0].Script)

	log := "hello\n"
	path := fmt.Sprintf("jobs/%d", job.ID)
	resp = send(http.MethodPatch, path+"/trace", job.Token, map[string]string{"Content-Range": "0-5"}, log)
	resp.Body.Close()
	fmt.Println("trace:", resp.StatusCode, resp.Header.Get("Range"), resp.Header.Get("Job-Status"))

	final := fmt.Sprintf(`{"token":%q,"state":"success","output":{"checksum":"crc32:%08x","bytesize":%d}}`,
		job.Token, crc32.ChecksumIEEE([]byte(log)), len(log))
	for {
		resp = send(http.MethodPut, path, job.Token, nil, final)
		resp.Body.Close()
		fmt.Printf("update: %d %s, interval %q\n", resp.StatusCode, resp.Header.Get("Job-Status"),
			resp.Header.Get("X-GitLab-Trace-Update-Interval"))
		if resp.StatusCode != http.StatusAccepted {
			break
		}
		// A runner waits X-GitLab-Trace-Update-Interval seconds here.
	}

	state, _ := srv.WaitFinished(context.Background(), id)
	info, _ := srv.Build(id)
	fmt.Printf("job %d: %s, trace %q, checksum %s\n", id, state, srv.Trace(id), info.Job.Checksum)
	// Output:
	// verify: 200
	// request: 201 hello [echo hello]
	// trace: 202 0-6 running
	// update: 202 running, interval "1"
	// update: 200 success, interval ""
	// job 1: success, trace "hello\n", checksum crc32:363a3020
}
