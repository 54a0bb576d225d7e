package main

import (
	"context"
	"errors"
	"net/http"

	"github.com/runnerapi/runnerapi"
	"github.com/runnerapi/runnerapi/internal/handwritten"
)

// overheadSystemID is the system_id both clients send when they ask for a v4 job.
const overheadSystemID = "s_0123456789ab"

// overheadCasesV4 are Jobs.Request and Jobs.Update through the SDK on the runner API v4, each beside the same
// request made by hand.
func overheadCasesV4(p childParams) ([]overheadCase, error) {
	sdk, err := runnerapi.NewClient(p.URL, runnerapi.WithAPI(runnerapi.APIv4), runnerapi.WithRunnerToken(p.RunnerToken),
		runnerapi.WithBuildToken(p.BuildToken), runnerapi.WithHTTPClient(&http.Client{Transport: benchTransport()}))
	if err != nil {
		return nil, err
	}
	hand := &handwritten.ClientV4{HTTP: &http.Client{Transport: benchTransport()}, Base: p.URL, RunnerToken: p.RunnerToken,
		JobToken: p.BuildToken, SystemID: overheadSystemID, UserAgent: runnerapi.DefaultUserAgent, Info: handwritten.Info(overheadInfo)}
	ropts := &runnerapi.JobRequestOptions{SystemID: overheadSystemID, Info: overheadInfo}
	uopts := &runnerapi.JobUpdateOptions{State: runnerapi.StateRunning}
	return []overheadCase{
		{Call: "v4 Jobs.Request", Client: overheadSDK, SDK: true, run: func(ctx context.Context) error {
			j, _, err := sdk.Jobs.Request(ctx, ropts)
			if err == nil && (j == nil || j.ID == 0) {
				err = errors.New("request: no job")
			}
			return err
		}},
		{Call: "v4 Jobs.Request", Client: overheadHand, Ref: true, run: func(ctx context.Context) error {
			j, err := hand.Request(ctx)
			if err == nil && j.ID == 0 {
				err = errors.New("request: no job")
			}
			return err
		}},
		{Call: "v4 Jobs.Update", Client: overheadSDK, SDK: true, run: func(ctx context.Context) error {
			_, _, err := sdk.Jobs.Update(ctx, overheadBuildID, uopts)
			return err
		}},
		{Call: "v4 Jobs.Update", Client: overheadHand, Ref: true, run: func(ctx context.Context) error {
			return hand.Update(ctx, overheadBuildID, "running")
		}},
	}, nil
}
