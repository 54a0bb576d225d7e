package runnerapi_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/runnerapi/runnerapi"
	"github.com/runnerapi/runnerapi/runnerapitest"
	"github.com/stretchr/testify/assert"
)

// campaignRulesV4 is campaignRules for the v4 endpoints: the same faults, with answers dropped after the request
// was applied on the trace, upload and update, and rarely on the job request, which would strand the job.
func campaignRulesV4(rng *rand.Rand) []runnerapitest.FaultRule {
	var rules []runnerapitest.FaultRule
	for _, r := range campaignRules(rng) {
		if r.Kind == runnerapitest.FaultDropAfter {
			switch r.Endpoint {
			case runnerapitest.EndpointTrace:
				r.Endpoint = runnerapitest.EndpointJobTrace
			case runnerapitest.EndpointUpload:
				r.Endpoint = runnerapitest.EndpointJobArtifactsUpload
			case runnerapitest.EndpointUpdate:
				r.Endpoint = runnerapitest.EndpointJobUpdate
			case runnerapitest.EndpointRegister:
				r.Endpoint = runnerapitest.EndpointJobRequest
			default:
				continue
			}
		}
		rules = append(rules, r)
	}
	return rules
}

// TestFaultCampaignsV4 runs a v4 job's life against the fake coordinator under random faults, once per seed: take
// the job, stream its trace, upload an artifact, send the final update with the trace's checksum. Each campaign
// must end with the coordinator holding exactly what was sent and the job finished with a matching checksum, or
// with a clear error and nothing corrupted.
func TestFaultCampaignsV4(t *testing.T) {
	t.Parallel()
	n := 60
	if testing.Short() {
		n = 20
	}
	faults := make(map[runnerapitest.FaultKind]int)
	outcomes := make(map[string]int)
	var lost int64
	for seed := range int64(n) {
		r := campaignRunV4(t.TempDir(), seed)
		for k, v := range r.faults {
			faults[k] += v
		}
		outcomes[r.outcome]++
		lost += r.lost
		assert.Empty(t, r.failure, "seed %d", r.seed)
	}
	t.Logf("v4 campaigns: %d; outcomes: %v; faults: %v", n, outcomes, faults)
	assert.Zero(t, lost, "bytes lost")
	for _, k := range []runnerapitest.FaultKind{runnerapitest.FaultInternalError, runnerapitest.FaultDropBefore,
		runnerapitest.FaultDropAfter, runnerapitest.FaultLoseTraceTail, runnerapitest.FaultConflict} {
		assert.Positive(t, faults[k], "no %s fault was injected", k)
	}
	assert.Greater(t, outcomes["ok"], n/2, "most campaigns should get through their faults")
}

func campaignRunV4(dir string, seed int64) (res campaignResult) {
	res = campaignResult{seed: seed, outcome: "ok"}
	defer func() {
		if p := recover(); p != nil {
			res.failure = fmt.Sprintf("panic: %v", p)
		}
	}()
	rng := rand.New(rand.NewPCG(uint64(seed), 0x44))
	srv := runnerapitest.NewServer(runnerapitest.WithFinalUpdateInterval(1), runnerapitest.WithFinalUpdateAcceptTimeout(3*time.Second))
	defer srv.Close()
	defer func() { res.faults = srv.FaultsInjected() }()
	srv.AddRunner("glrt-" + campaignRunnerToken)
	id := srv.Enqueue(runnerapi.Build{Name: "campaign", Commands: "make", Token: fmt.Sprintf("Campaign-Job-Token-%d", seed)})
	if err := srv.SetFaults(seed, campaignRulesV4(rng)...); err != nil {
		res.failure = err.Error()
		return res
	}
	cl, err := runnerapi.NewClient(srv.URL, runnerapi.WithAPI(runnerapi.APIv4),
		runnerapi.WithRunnerToken("glrt-"+campaignRunnerToken),
		runnerapi.WithRetryPolicy(runnerapi.RetryPolicy{MaxRetries: 6, BaseDelay: 100 * time.Microsecond, MaxDelay: 2 * time.Millisecond, MaxRetryAfter: 2 * time.Millisecond}),
		runnerapi.WithTimeout(10*time.Second))
	if err != nil {
		res.failure = err.Error()
		return res
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	fail := func(format string, args ...any) campaignResult {
		res.failure = fmt.Sprintf(format, args...)
		return res
	}
	clearError := func(step string, err error) bool {
		res.outcome = step
		res.errText = fmt.Sprint(err)
		return err != nil && strings.HasPrefix(err.Error(), "runnerapi: ")
	}
	finish := func(state runnerapi.BuildState, output runnerapi.TraceOutput) campaignResult {
		dropsBefore := srv.FaultsInjected()[runnerapitest.FaultDropAfter]
		_, _, err := cl.Jobs.Update(ctx, id, &runnerapi.JobUpdateOptions{State: state, Output: output}, runnerapi.WithToken(fmt.Sprintf("Campaign-Job-Token-%d", seed)))
		info, _ := srv.Build(id)
		switch {
		case err == nil && info.State != state:
			return fail("update to %s succeeded but the job is %s", state, info.State)
		case err == nil && state == runnerapi.StateSuccess && info.Job.ChecksumMismatch:
			return fail("the job finished with a trace that does not match its checksum")
		case err != nil && info.State == state:
			if srv.FaultsInjected()[runnerapitest.FaultDropAfter] == dropsBefore {
				return fail("update applied but error %v", err)
			}
			res.answerLost = "update"
		case err != nil:
			if !clearError("update", err) {
				return fail("update: unclear error %v", err)
			}
			if info.State != runnerapi.StateRunning {
				return fail("update failed (%v) and the job is %s", err, info.State)
			}
		}
		return res
	}

	nextCtx, nextCancel := context.WithTimeout(ctx, 300*time.Millisecond)
	job, _, err := cl.Jobs.Next(nextCtx, &runnerapi.JobNextOptions{Interval: time.Millisecond})
	nextCancel()
	if err != nil {
		info, _ := srv.Build(id)
		if !clearError("request", err) {
			return fail("request: unclear error %v", err)
		}
		if info.State == runnerapi.StateRunning && srv.FaultsInjected()[runnerapitest.FaultDropAfter] > 0 {
			res.answerLost = "request"
		} else if info.State != runnerapi.StatePending {
			return fail("request failed (%v) but the job is %s", err, info.State)
		}
		return res
	}
	if job.ID != id {
		return fail("got job %d, want %d", job.ID, id)
	}

	want := campaignTraceText(rng, 16<<10+rng.IntN(256<<10))
	res.written = int64(len(want))
	w, err := cl.NewJobTraceWriter(ctx, job, &runnerapi.TraceOptions{ChunkSize: 4<<10 + rng.IntN(60<<10),
		FlushInterval: time.Millisecond, KeepAlive: -1, TempDir: dir})
	if err != nil {
		return fail("trace writer: %v", err)
	}
	for rest := want; len(rest) > 0; {
		k := min(len(rest), 1+rng.IntN(8<<10))
		if _, err := w.Write(rest[:k]); err != nil {
			break
		}
		rest = rest[k:]
	}
	traceErr := w.Close()
	got := srv.Trace(id)
	common := campaignCommonPrefix(got, want)
	res.delivered = int64(common)
	res.lost = int64(len(got) - common)
	if traceErr != nil {
		if !clearError("trace", traceErr) {
			return fail("trace: unclear error %v", traceErr)
		}
		if !bytes.HasPrefix(want, got) {
			return fail("trace failed (%v) and the coordinator's trace is not a prefix of what was written", traceErr)
		}
		return finish(runnerapi.StateFailed, runnerapi.TraceOutput{})
	}
	res.lost += int64(len(want) - common)
	if !bytes.Equal(got, want) {
		return fail("trace: %d bytes on the coordinator, %d written, equal for %d", len(got), len(want), common)
	}
	if out := w.Output(); out.Bytesize != int64(len(want)) {
		return fail("output says %d bytes, %d written", out.Bytesize, len(want))
	}

	data := campaignTraceText(rng, 1+rng.IntN(256<<10))
	path := filepath.Join(dir, "artifact.bin")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fail("%v", err)
	}
	sum := sha256.Sum256(data)
	_, _, err = cl.Artifacts.UploadFile(ctx, id, path, &runnerapi.UploadOptions{ArtifactType: "archive", ArtifactFormat: "zip"}, runnerapi.WithToken(job.Token))
	art, stored := srv.JobArtifact(id, "archive")
	if err != nil {
		if !clearError("upload", err) {
			return fail("upload: unclear error %v", err)
		}
		if stored && art.SHA256 != hex.EncodeToString(sum[:]) {
			return fail("upload failed (%v) and left a different file", err)
		}
		return finish(runnerapi.StateFailed, w.Output())
	}
	if !stored || art.SHA256 != hex.EncodeToString(sum[:]) {
		return fail("upload succeeded but the coordinator holds %+v", art)
	}
	res.artifactBytes = int64(len(data))
	return finish(runnerapi.StateSuccess, w.Output())
}
