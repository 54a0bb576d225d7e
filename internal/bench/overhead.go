package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/runnerapi/runnerapi"
	"github.com/runnerapi/runnerapi/internal/handwritten"
)

// overheadRun is one testing.Benchmark result of one call through one client.
type overheadRun struct {
	Call        string `json:"call"`
	Client      string `json:"client"`
	Round       int    `json:"round"`
	N           int    `json:"n"`
	NsPerOp     int64  `json:"ns_per_op"`
	AllocsPerOp int64  `json:"allocs_per_op"`
	BytesPerOp  int64  `json:"bytes_per_op"`
}

// overheadCase is one call made by one client, b.N times. Its error, if any, fails the scenario.
type overheadCase struct {
	Call, Client string
	Ref          bool // the hand-written client, the reference
	SDK          bool
	run          func(ctx context.Context) error
}

// overheadInfo is the runner description both clients send on register.
var overheadInfo = runnerapi.RunnerInfo{Name: "bench-runner", Version: "1.0.0", Revision: "0123abcd", Platform: "linux", Architecture: "amd64"}

// overheadBuildID is the build the Update calls address.
const overheadBuildID = 4242

// overheadCases are the calls of the overhead scenario, v1's then v4's (overhead_v4.go), in the order they alternate within a round.
func overheadCases(p childParams) ([]overheadCase, error) {
	sdk, err := runnerapi.NewClient(p.URL, runnerapi.WithRunnerToken(p.RunnerToken),
		runnerapi.WithHTTPClient(&http.Client{Transport: benchTransport()}))
	if err != nil {
		return nil, err
	}
	hand := &handwritten.Client{HTTP: &http.Client{Transport: benchTransport()}, Base: p.URL, RunnerToken: p.RunnerToken,
		UserAgent: runnerapi.DefaultUserAgent, Info: handwritten.Info(overheadInfo)}
	ropts := &runnerapi.RegisterOptions{Info: overheadInfo}
	uopts := &runnerapi.UpdateOptions{State: runnerapi.StateRunning}
	cases := []overheadCase{
		{Call: "Register", Client: overheadSDK, SDK: true, run: func(ctx context.Context) error {
			b, _, err := sdk.Builds.Register(ctx, ropts)
			if err == nil && (b == nil || b.ID == 0) {
				err = errors.New("register: no build")
			}
			return err
		}},
		{Call: "Register", Client: overheadHand, Ref: true, run: func(ctx context.Context) error {
			b, err := hand.Register(ctx)
			if err == nil && b.ID == 0 {
				err = errors.New("register: no build")
			}
			return err
		}},
		{Call: "Update", Client: overheadSDK, SDK: true, run: func(ctx context.Context) error {
			_, err := sdk.Builds.Update(ctx, overheadBuildID, uopts)
			return err
		}},
		{Call: "Update", Client: overheadHand, Ref: true, run: func(ctx context.Context) error {
			return hand.Update(ctx, overheadBuildID, "running")
		}},
	}
	v4, err := overheadCasesV4(p)
	if err != nil {
		return nil, err
	}
	return append(cases, v4...), nil
}

// childOverhead measures every overhead case with testing.Benchmark, alternating the cases within each round.
func childOverhead(ctx context.Context, p childParams) (childOutput, error) {
	testing.Init()
	if err := flag.Set("test.benchtime", p.BenchTime); err != nil {
		return childOutput{}, fmt.Errorf("benchtime %q: %w", p.BenchTime, err)
	}
	cases, err := overheadCases(p)
	if err != nil {
		return childOutput{}, err
	}
	var out childOutput
	for round := 0; round < p.Runs; round++ {
		for _, c := range cases {
			var (
				once     sync.Once
				firstErr error
			)
			res := testing.Benchmark(func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if err := c.run(ctx); err != nil {
						once.Do(func() { firstErr = err })
						return
					}
				}
			})
			if firstErr != nil {
				return childOutput{}, fmt.Errorf("%s through %s: %w", c.Call, c.Client, firstErr)
			}
			if res.N == 0 {
				return childOutput{}, fmt.Errorf("%s through %s: benchmark did not run", c.Call, c.Client)
			}
			out.Overhead = append(out.Overhead, overheadRun{Call: c.Call, Client: c.Client, Round: round, N: res.N,
				NsPerOp: res.NsPerOp(), AllocsPerOp: res.AllocsPerOp(), BytesPerOp: res.AllocedBytesPerOp()})
		}
	}
	return out, nil
}
