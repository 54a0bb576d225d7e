//go:build unix

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/runnerapi/runnerapi"
)

// apiChoice is the -api flag: the API to speak, or 0 to ask the coordinator which it speaks.
type apiChoice runnerapi.API

// apiAuto is -api auto.
const apiAuto apiChoice = 0

func (a *apiChoice) String() string {
	if *a == apiAuto {
		return "auto"
	}
	return runnerapi.API(*a).String()
}

func (a *apiChoice) Set(s string) error {
	switch s {
	case "auto":
		*a = apiAuto
	case "v1":
		*a = apiChoice(runnerapi.APIv1)
	case "v4":
		*a = apiChoice(runnerapi.APIv4)
	default:
		return fmt.Errorf("want v1, v4 or auto, not %q", s)
	}
	return nil
}

// defineAPI defines the -api flag on fs.
func defineAPI(fs *flag.FlagSet, a *apiChoice) {
	fs.Var(a, "api", "the API to speak: v1 (the CI Builds API of GitLab 8.x and 9.x), v4 (the runner API of every GitLab since) or auto (ask the coordinator, with one request)")
}

// errStoppedBeforeAPI is connect's error when ctx ended before the coordinator said which API it speaks.
var errStoppedBeforeAPI = errors.New("stopped before the coordinator said which API it speaks")

// connect makes the client the runner talks through, in the API choice says. For auto it first asks the
// coordinator which API it speaks, logging the answer, and waits out failures that may pass as at any start-up,
// until ctx ends (errStoppedBeforeAPI); a failure that waiting cannot mend is logged and returned.
func connect(ctx context.Context, choice apiChoice, url, token string, interval, timeout time.Duration, log *logger, tokenKind string) (*runnerapi.Client, error) {
	api := runnerapi.API(choice)
	if choice == apiAuto {
		probe, err := newClient(url, "", runnerapi.APIv1, interval, timeout, log)
		if err != nil {
			return nil, err
		}
		wait := waiter{interval: interval}
		for {
			api, err = probe.DetectAPI(ctx)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return nil, errStoppedBeforeAPI
			}
			if reason := lastingReason(probe, err, tokenKind); reason != "" {
				return nil, log.fatal("%s", reason)
			}
			d := wait.next(nil)
			log.printf("asking the coordinator which API it speaks failed, trying again in %s: %v", roundWait(d), err)
			if sleep(ctx, d) != nil {
				return nil, errStoppedBeforeAPI
			}
		}
		log.printf("the coordinator at %s speaks the runner API %s", where(probe), api)
	}
	return newClient(url, token, api, interval, timeout, log)
}
