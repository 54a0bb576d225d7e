package runnerapitest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/runnerapi/runnerapi"
	"github.com/runnerapi/runnerapi/runnerapitest"
)

// A runner's whole conversation with the fake coordinator, in plain net/http: take a build, append to its trace,
// report success.
func Example() {
	srv := runnerapitest.NewServer()
	defer srv.Close()
	srv.AddRunner("runner-token")
	id := srv.EnqueueCommands("hello", "echo hello")
	hc := srv.Client()
	api := srv.URL + "/ci/api/v1/builds/"

	// Take the build.
	resp, err := hc.PostForm(api+"register", url.Values{"token": {"runner-token"}})
	if err != nil {
		panic(err)
	}
	var build runnerapi.Build
	_ = json.NewDecoder(resp.Body).Decode(&build)
	resp.Body.Close()
	fmt.Println("register:", resp.StatusCode, build.Name, build.Status)

	// Send its output; the answer says how long the trace is and what state the build is in.
	req, _ := http.NewRequest(http.MethodPatch, fmt.Sprintf("%s%d/trace.txt", api, build.ID), strings.NewReader("hello\n"))
	req.Header.Set("BUILD-TOKEN", build.Token)
	req.Header.Set("Content-Range", "0-6")
	resp, err = hc.Do(req)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println("trace:", resp.StatusCode, resp.Header.Get("Range"), resp.Header.Get("Build-Status"))

	// Report success.
	form := url.Values{"token": {"runner-token"}, "state": {"success"}}
	req, _ = http.NewRequest(http.MethodPut, fmt.Sprintf("%s%d", api, build.ID), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err = hc.Do(req)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println("update:", resp.StatusCode)

	state, _ := srv.WaitFinished(context.Background(), id)
	fmt.Printf("build %d: %s, trace %q\n", id, state, srv.Trace(id))
	// Output:
	// register: 201 hello running
	// trace: 202 0-6 running
	// update: 200
	// build 1: success, trace "hello\n"
}

// Fault injection makes a share of the requests to an endpoint fail; the same seed fails the same requests.
func ExampleServer_SetFaults() {
	srv := runnerapitest.NewServer()
	defer srv.Close()
	srv.AddRunner("runner-token")
	err := srv.SetFaults(1,
		runnerapitest.FaultRule{Endpoint: runnerapitest.EndpointRegister, Kind: runnerapitest.FaultServiceUnavailable, Probability: 0.5},
	)
	if err != nil {
		panic(err)
	}
	hc := srv.Client()
	var statuses []int
	for range 8 {
		resp, err := hc.PostForm(srv.URL+"/ci/api/v1/builds/register", url.Values{"token": {"runner-token"}})
		if err != nil {
			panic(err)
		}
		resp.Body.Close()
		statuses = append(statuses, resp.StatusCode)
	}
	fmt.Println(statuses)
	fmt.Println(srv.FaultsInjected()[runnerapitest.FaultServiceUnavailable], "faults injected")
	// Output:
	// [503 404 404 404 503 404 404 404]
	// 2 faults injected
}

// A script of faults makes the next requests to an endpoint fail in a given order: here a runner's start-up meets
// a coordinator that answers the first register with 500 and drops the second's connection, and the third takes
// the build.
func ExampleServer_ScriptFaults() {
	srv := runnerapitest.NewServer()
	defer srv.Close()
	srv.AddRunner("runner-token")
	srv.EnqueueCommands("hello", "echo hello")
	err := srv.ScriptFaults(runnerapitest.EndpointRegister, runnerapitest.FaultInternalError, runnerapitest.FaultDropBefore)
	if err != nil {
		panic(err)
	}
	hc := srv.Client()
	for range 3 {
		resp, err := hc.PostForm(srv.URL+"/ci/api/v1/builds/register", url.Values{"token": {"runner-token"}})
		if err != nil {
			fmt.Println("register: connection dropped")
			continue
		}
		resp.Body.Close()
		fmt.Println("register:", resp.StatusCode)
	}
	fmt.Println(srv.FaultsInjected())
	// Output:
	// register: 500
	// register: connection dropped
	// register: 201
	// map[500:1 drop-before:1]
}

// A runner registers itself with a registration token, as `gitlab-ci-multi-runner register` does, and takes
// builds with the token it is given; the test sees what was registered.
func ExampleServer_AddRegistrationToken() {
	srv := runnerapitest.NewServer()
	defer srv.Close()
	srv.AddRegistrationToken("registration-token")
	hc := srv.Client()

	resp, err := hc.PostForm(srv.URL+"/ci/api/v1/runners/register.json", url.Values{
		"token": {"registration-token"}, "description": {"builder"}, "tag_list": {"docker, linux"},
	})
	if err != nil {
		panic(err)
	}
	var registered struct {
		ID    int64  `json:"id"`
		Token string `json:"token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&registered)
	resp.Body.Close()
	fmt.Println("register:", resp.StatusCode, registered.ID, len(registered.Token) >= 20)

	for _, r := range srv.Runners() {
		fmt.Printf("runner %d %q tags %v untagged %v project %d\n", r.ID, r.Description, r.Tags, r.RunUntagged, r.ProjectID)
	}

	req, _ := http.NewRequest(http.MethodDelete, srv.URL+"/ci/api/v1/runners/delete",
		strings.NewReader(url.Values{"token": {registered.Token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err = hc.Do(req)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println("delete:", resp.StatusCode, len(srv.Runners()), "runners left")
	// Output:
	// register: 201 1 true
	// runner 1 "builder" tags [docker linux] untagged true project 0
	// delete: 200 0 runners left
}
