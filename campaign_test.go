package runnerapi_test

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/runnerapi/runnerapi"
	"github.com/runnerapi/runnerapi/runnerapitest"
)

var (
	campaignCount   = flag.Int("campaigns", 200, "number of seeds TestFaultCampaigns runs")
	campaignWorkers = flag.Int("campaign-workers", 8, "campaigns TestFaultCampaigns runs at once")
)

// campaignRunnerToken and the build tokens hold capitals and '-', which campaignTraceText never writes, so masking
// cannot change the trace.
const campaignRunnerToken = "Campaign-Runner-Token"

// campaignResult is what one campaign proved, or the invariant it broke (failure).
type campaignResult struct {
	seed   int64
	faults map[runnerapitest.FaultKind]int
	// outcome is "ok" when the coordinator ended holding everything sent (trace, artifact deleted, final state),
	// or the step that ended in a clear error.
	outcome string
	// written is the trace given to the writer; delivered the bytes of the coordinator's trace equal to it.
	written, delivered int64
	// lost counts bytes acknowledged then missing, or different from what was written: must stay 0. It is counted
	// again once the server has closed, which lands every late-applied part still held.
	lost          int64
	artifactBytes int64
	// answerLost names a step whose request was applied but whose answer the fault dropped, so the call's error
	// (a 404 on its retry, or a register answer never seen) is the protocol's, with the coordinator's state right.
	answerLost string
	// lateApplied says the campaign's trace survived at least one late-applied part: the writer's Close
	// confirmed and, when the part cut the trace back, repaired it.
	lateApplied bool
	// cutBacks counts late-applied parts that made the coordinator's trace shorter when they landed.
	cutBacks int
	// heldAtFailure counts late-applied parts still held when the writer gave up: they land after its end.
	heldAtFailure int
	// errText is the error a campaign that did not end "ok" ended with.
	errText string
	failure string
}

// TestFaultCampaigns runs a build's whole life against the fake coordinator under random faults, once per seed:
// take the build, stream a trace in random-sized writes, upload an artifact, download it, delete it, report success.
// Each campaign must end with the coordinator holding exactly what was sent, or with a clear error and nothing
// corrupted: its trace a prefix of what was written, its artifact whole or absent.
func TestFaultCampaigns(t *testing.T) {
	t.Parallel()
	n := *campaignCount
	if testing.Short() {
		n = min(n, 40)
	}
	seeds := make(chan int64)
	results := make(chan campaignResult)
	var wg sync.WaitGroup
	for range max(1, *campaignWorkers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seed := range seeds {
				results <- campaignRun(t.TempDir(), seed)
			}
		}()
	}
	go func() {
		for seed := range int64(n) {
			seeds <- seed
		}
		close(seeds)
		wg.Wait()
		close(results)
	}()

	faults := make(map[runnerapitest.FaultKind]int)
	outcomes := make(map[string]int)
	answersLost := make(map[string]int)
	var written, delivered, lost, artifactBytes int64
	lateApplied, cutBacks, heldAtFailure := 0, 0, 0
	var errorsSeen []string
	campaigns := 0
	for r := range results {
		campaigns++
		for k, v := range r.faults {
			faults[k] += v
		}
		outcomes[r.outcome]++
		if r.answerLost != "" {
			answersLost[r.answerLost]++
		}
		written += r.written
		delivered += r.delivered
		lost += r.lost
		artifactBytes += r.artifactBytes
		cutBacks += r.cutBacks
		heldAtFailure += r.heldAtFailure
		if r.lateApplied {
			lateApplied++
		}
		assert.Empty(t, r.failure, "seed %d", r.seed)
		if r.outcome != "ok" && len(errorsSeen) < 8 {
			errorsSeen = append(errorsSeen, fmt.Sprintf("seed %d, %s: %s", r.seed, r.outcome, r.errText))
		}
	}

	total := 0
	kinds := make([]string, 0, len(faults))
	for k, v := range faults {
		total += v
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(kinds)
	t.Logf("campaigns run: %d; outcomes: %v", campaigns, outcomes)
	t.Logf("faults injected: %d (%s)", total, strings.Join(kinds, " "))
	t.Logf("trace bytes written: %d, delivered: %d, lost: %d; artifact bytes verified: %d", written, delivered, lost, artifactBytes)
	t.Logf("requests applied whose answer was dropped, by step: %v", answersLost)
	t.Logf("late-applied parts that cut the trace back: %d; campaigns whose trace survived a late-applied part: %d; parts still held when the writer gave up: %d",
		cutBacks, lateApplied, heldAtFailure)
	for _, e := range errorsSeen {
		t.Logf("clear error: %s", e)
	}

	assert.Equal(t, n, campaigns)
	assert.Zero(t, lost, "bytes lost")
	// The campaigns prove something only if every kind of fault did happen.
	for _, k := range []runnerapitest.FaultKind{
		runnerapitest.FaultInternalError, runnerapitest.FaultBadGateway, runnerapitest.FaultServiceUnavailable,
		runnerapitest.FaultTooManyRequests, runnerapitest.FaultConflict, runnerapitest.FaultDropBefore,
		runnerapitest.FaultDropAfter, runnerapitest.FaultLoseTraceTail, runnerapitest.FaultDelay,
		runnerapitest.FaultLateApply,
	} {
		assert.Positive(t, faults[k], "no %s fault was injected", k)
	}
	assert.Greater(t, outcomes["ok"], n/2, "most campaigns should get through their faults")
}

// campaignRules draws the fault mix of one seed: an overall rate per request, shared among the kinds. One seed in
// ten is a storm, which exceeds the retry policy often enough to prove the failure path.
func campaignRules(rng *rand.Rand) []runnerapitest.FaultRule {
	rate := 0.05 + 0.25*rng.Float64()
	if rng.IntN(10) == 0 {
		rate = 0.75
	}
	share := rate / 8
	ra := rng.IntN(2)
	return []runnerapitest.FaultRule{
		{Kind: runnerapitest.FaultInternalError, Probability: share},
		{Kind: runnerapitest.FaultBadGateway, Probability: share},
		{Kind: runnerapitest.FaultServiceUnavailable, Probability: share},
		{Kind: runnerapitest.FaultTooManyRequests, Probability: share, RetryAfter: ra},
		{Kind: runnerapitest.FaultDropBefore, Probability: share},
		// A register whose answer is dropped after the build was assigned loses the build for good: keep that rare.
		{Kind: runnerapitest.FaultDropAfter, Probability: share, Endpoint: runnerapitest.EndpointTrace},
		{Kind: runnerapitest.FaultDropAfter, Probability: share, Endpoint: runnerapitest.EndpointUpload},
		{Kind: runnerapitest.FaultDropAfter, Probability: share, Endpoint: runnerapitest.EndpointDownload},
		{Kind: runnerapitest.FaultDropAfter, Probability: share, Endpoint: runnerapitest.EndpointDelete},
		{Kind: runnerapitest.FaultDropAfter, Probability: share, Endpoint: runnerapitest.EndpointUpdate},
		{Kind: runnerapitest.FaultDropAfter, Probability: share / 4, Endpoint: runnerapitest.EndpointRegister},
		{Kind: runnerapitest.FaultConflict, Probability: share},
		{Kind: runnerapitest.FaultLoseTraceTail, Probability: share},
		{Kind: runnerapitest.FaultDelay, Probability: share, Delay: time.Duration(1+rng.IntN(3)) * time.Millisecond},
		// A trace part held until the writer gives up on it (campaignAttemptTimeout), then applied by cutting the
		// trace back to its start: rare, since each one costs an attempt timeout and Close's confirmation.
		{Kind: runnerapitest.FaultLateApply, Probability: share / 4, Endpoint: runnerapitest.EndpointTrace},
	}
}

// campaignAttemptTimeout bounds each trace request, so that a part held by FaultLateApply is given up on soon;
// spurious timeouts under load are retried like any abandoned attempt.
const campaignAttemptTimeout = 300 * time.Millisecond

// campaignConfirmDelay is how long Close waits after an abandoned part before it asks the coordinator's length.
// GitLab's stalled request may land seconds later (DefaultTraceConfirmDelay is 5s); the fake applies a held part
// as soon as it sees the client go, so a delay that outlasts that (under load too) sees every late part.
const campaignConfirmDelay = 50 * time.Millisecond

// campaignTraceText is n bytes of lower-case words, digits and newlines.
func campaignTraceText(rng *rand.Rand, n int) []byte {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789     \n"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return b
}

func campaignRun(dir string, seed int64) (res campaignResult) {
	res = campaignResult{seed: seed, outcome: "ok"}
	defer func() {
		if p := recover(); p != nil {
			res.failure = fmt.Sprintf("panic: %v", p)
		}
	}()
	rng := rand.New(rand.NewPCG(uint64(seed), 0xca))
	late := newCampaignLateParts()
	srv := runnerapitest.NewServer(runnerapitest.WithLogger(late.logger()))
	late.srv = srv
	tr := late.transport()
	var (
		id          int64
		want        []byte // the trace written, once it has been
		traceFailed bool
		heldAtClose int // late-applied parts injected but not landed when Close returned
	)
	defer func() {
		// Closing the server lands every late-applied part still held: only then is the trace final.
		late.finish()
		srv.Close()
		tr.CloseIdleConnections()
		res.faults = srv.FaultsInjected()
		res.cutBacks = late.cutBacks
		if late.err != nil && res.failure == "" {
			res.failure = late.err.Error()
		}
		if want == nil || res.failure != "" {
			return
		}
		got := srv.Trace(id)
		switch {
		case !traceFailed && !bytes.Equal(got, want):
			res.lost += int64(len(want) - campaignCommonPrefix(got, want))
			res.failure = fmt.Sprintf("final trace: %d bytes on the coordinator, %d written and acknowledged, equal for %d", len(got), len(want), campaignCommonPrefix(got, want))
		case traceFailed && heldAtClose > 0:
			// A part still held when the writer gave up lands when it will; no client can repair that, and one
			// landing beyond a trace the coordinator shortened meanwhile pads it with zero bytes (File.truncate).
			res.heldAtFailure = heldAtClose
		case traceFailed && !bytes.HasPrefix(want, got):
			res.lost += int64(len(got) - campaignCommonPrefix(got, want))
			c := campaignCommonPrefix(got, want)
			res.failure = fmt.Sprintf("final trace: %d bytes on the coordinator, not a prefix of the %d written: equal for %d, then %q; requests: %s", len(got), len(want), c, got[c:min(len(got), c+16)], campaignRequests(srv))
		}
		res.lateApplied = !traceFailed && res.faults[runnerapitest.FaultLateApply] > 0
	}()
	srv.AddRunner(campaignRunnerToken)
	id = srv.Enqueue(runnerapi.Build{Name: "campaign", Commands: "make", Token: fmt.Sprintf("Campaign-Build-Token-%d", seed)})
	late.id = id
	if err := srv.SetFaults(seed, campaignRules(rng)...); err != nil {
		res.failure = err.Error()
		return res
	}
	cl, err := runnerapi.NewClient(srv.URL,
		runnerapi.WithRunnerToken(campaignRunnerToken),
		runnerapi.WithRetryPolicy(runnerapi.RetryPolicy{MaxRetries: 6, BaseDelay: 100 * time.Microsecond, MaxDelay: 2 * time.Millisecond, MaxRetryAfter: 2 * time.Millisecond}),
		runnerapi.WithTimeout(10*time.Second),
		runnerapi.WithHTTPClient(&http.Client{Transport: tr}))
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

	// Take the build.
	nextCtx, nextCancel := context.WithTimeout(ctx, 300*time.Millisecond)
	build, _, err := cl.Builds.Next(nextCtx, &runnerapi.NextOptions{Interval: time.Millisecond})
	nextCancel()
	if err != nil {
		info, _ := srv.Build(id)
		if !clearError("register", err) {
			return fail("register: unclear error %v", err)
		}
		if info.State == runnerapi.StateRunning && srv.FaultsInjected()[runnerapitest.FaultDropAfter] > 0 {
			res.answerLost = "register"
		} else if info.State != runnerapi.StatePending {
			return fail("register failed (%v) but the build is %s; requests: %s", err, info.State, campaignRequests(srv))
		}
		if len(srv.Trace(id)) != 0 {
			return fail("register failed but the build has a trace")
		}
		return res
	}
	if build.ID != id {
		return fail("got build %d, want %d", build.ID, id)
	}
	tok := runnerapi.WithToken(build.Token)

	// Stream its trace.
	size := 16<<10 + rng.IntN(384<<10)
	if seed%25 == 0 {
		size = 3 << 20
	}
	want = campaignTraceText(rng, size)
	res.written = int64(len(want))
	w, err := cl.NewBuildTraceWriter(ctx, build, &runnerapi.TraceOptions{
		ChunkSize:      4<<10 + rng.IntN(60<<10),
		FlushInterval:  time.Millisecond,
		KeepAlive:      -1,
		MemoryLimit:    64<<10 + rng.IntN(1<<20),
		TempDir:        dir,
		AttemptTimeout: campaignAttemptTimeout,
		ConfirmDelay:   campaignConfirmDelay,
	})
	if err != nil {
		return fail("trace writer: %v", err)
	}
	for rest := want; len(rest) > 0; {
		n := min(len(rest), 1+rng.IntN(8<<10))
		if _, err := w.Write(rest[:n]); err != nil {
			break // sticky: Close reports it
		}
		rest = rest[n:]
		if rng.IntN(64) == 0 {
			_ = w.Flush(ctx)
		}
	}
	traceErr := w.Close()
	traceFailed = traceErr != nil
	heldAtClose = late.held()
	got := srv.Trace(id)
	common := campaignCommonPrefix(got, want)
	res.delivered = int64(common)
	res.lost = int64(len(got) - common) // bytes the coordinator holds that were never written there
	if traceErr == nil {
		res.lost += int64(len(want) - common)
		if !bytes.Equal(got, want) {
			return fail("trace: %d bytes on the coordinator, %d written, equal for %d, then %q; requests: %s", len(got), len(want), common, got[common:min(len(got), common+8)], campaignRequests(srv))
		}
	} else {
		if !clearError("trace", traceErr) {
			return fail("trace: unclear error %v", traceErr)
		}
		if !bytes.HasPrefix(want, got) {
			return fail("trace failed (%v) and the coordinator's trace is not a prefix of what was written", traceErr)
		}
		return campaignFinish(ctx, srv, cl, id, runnerapi.StateFailed, res)
	}

	// Upload an artifact: a file, or a tree zipped on the fly.
	var wantHash string
	var wantFiles map[string][]byte
	if seed%2 == 0 {
		data := campaignTraceText(rng, 1+rng.IntN(512<<10))
		path := filepath.Join(dir, "artifact.bin")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return fail("%v", err)
		}
		sum := sha256.Sum256(data)
		wantHash = hex.EncodeToString(sum[:])
		_, _, err = cl.Artifacts.UploadFile(ctx, id, path, nil, tok)
	} else {
		wantFiles = map[string][]byte{
			"out/a.txt":     campaignTraceText(rng, rng.IntN(64<<10)),
			"out/sub/b.log": campaignTraceText(rng, rng.IntN(128<<10)),
		}
		for name, data := range wantFiles {
			p := filepath.Join(dir, "tree", name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return fail("%v", err)
			}
			if err := os.WriteFile(p, data, 0o644); err != nil {
				return fail("%v", err)
			}
		}
		_, _, err = cl.Artifacts.UploadPaths(ctx, id, filepath.Join(dir, "tree"), []string{"out"}, nil, tok)
	}
	art, stored := srv.Artifact(id)
	if err != nil {
		if !clearError("upload", err) {
			return fail("upload: unclear error %v", err)
		}
		if stored && wantHash != "" && art.SHA256 != wantHash {
			return fail("upload failed (%v) and left a different file", err)
		}
		return campaignFinish(ctx, srv, cl, id, runnerapi.StateFailed, res)
	}
	if !stored || wantHash != "" && art.SHA256 != wantHash {
		return fail("upload succeeded but the coordinator holds %+v", art)
	}

	// Download it, to memory or to a file, and check its hash.
	var data []byte
	if rng.IntN(2) == 0 {
		var buf bytes.Buffer
		_, _, err = cl.Artifacts.Download(ctx, id, &buf, nil, tok)
		data = buf.Bytes()
	} else {
		path := filepath.Join(dir, "downloaded")
		_, _, err = cl.Artifacts.DownloadFile(ctx, id, path, nil, tok)
		var rerr error
		data, rerr = os.ReadFile(path)
		if err != nil && !errors.Is(rerr, os.ErrNotExist) {
			return fail("download failed (%v) and left a file", err)
		}
	}
	sum := sha256.Sum256(data)
	if err != nil {
		if !clearError("download", err) {
			return fail("download: unclear error %v", err)
		}
		return campaignFinish(ctx, srv, cl, id, runnerapi.StateFailed, res)
	}
	if hex.EncodeToString(sum[:]) != art.SHA256 || int64(len(data)) != art.Size {
		return fail("downloaded %d bytes whose hash differs from the %d uploaded", len(data), art.Size)
	}
	if wantFiles != nil {
		if msg := campaignCheckZip(data, wantFiles); msg != "" {
			return fail("downloaded zip: %s", msg)
		}
	}
	res.artifactBytes = art.Size

	// Delete it.
	dropsBefore := srv.FaultsInjected()[runnerapitest.FaultDropAfter]
	_, err = cl.Artifacts.Delete(ctx, id, tok)
	art2, still := srv.Artifact(id)
	switch {
	case err == nil && still:
		return fail("delete succeeded but the file is still there")
	case err != nil && still:
		if !clearError("delete", err) {
			return fail("delete: unclear error %v", err)
		}
		if art2.SHA256 != art.SHA256 {
			return fail("delete failed and changed the file")
		}
		return campaignFinish(ctx, srv, cl, id, runnerapi.StateFailed, res)
	case err != nil:
		// Gone, yet an error: only a dropped answer to a delete the coordinator applied may explain that.
		if srv.FaultsInjected()[runnerapitest.FaultDropAfter] == dropsBefore {
			return fail("delete: file gone but error %v", err)
		}
		res.answerLost = "delete"
	}

	res = campaignFinish(ctx, srv, cl, id, runnerapi.StateSuccess, res)
	if res.failure == "" && !bytes.Equal(srv.Trace(id), want) {
		return fail("trace changed by the final update")
	}
	return res
}

// campaignFinish reports the build's final state and checks the coordinator's.
func campaignFinish(ctx context.Context, srv *runnerapitest.Server, cl *runnerapi.Client, id int64, state runnerapi.BuildState, res campaignResult) campaignResult {
	dropsBefore := srv.FaultsInjected()[runnerapitest.FaultDropAfter]
	_, err := cl.Builds.Update(ctx, id, &runnerapi.UpdateOptions{State: state})
	info, _ := srv.Build(id)
	switch {
	case err == nil && info.State != state:
		res.failure = fmt.Sprintf("update to %s succeeded but the build is %s", state, info.State)
	case err != nil && info.State == state:
		// Only a dropped answer to an attempt the coordinator applied may explain that; the retries then meet a
		// finished build (404) or further faults.
		if srv.FaultsInjected()[runnerapitest.FaultDropAfter] == dropsBefore {
			res.failure = fmt.Sprintf("update applied but error %v", err)
		}
		res.answerLost = "update"
	case err != nil:
		if !strings.HasPrefix(err.Error(), "runnerapi: ") {
			res.failure = fmt.Sprintf("update: unclear error %v", err)
		}
		if info.State != runnerapi.StateRunning {
			res.failure = fmt.Sprintf("update failed (%v) and the build is %s", err, info.State)
		}
		if res.outcome == "ok" {
			res.outcome = "update"
		}
	}
	return res
}

// campaignRequests lists what the coordinator saw, for a failure's message.
func campaignRequests(srv *runnerapitest.Server) string {
	var b strings.Builder
	for _, r := range srv.Requests() {
		fmt.Fprintf(&b, "[%s %s %d %s %s %d] ", r.Method, r.Endpoint, r.Status, r.Fault, r.ContentRange, r.ContentLength)
	}
	return b.String()
}

func campaignCommonPrefix(a, b []byte) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// campaignCheckZip says how the archive differs from the files it should hold, or "" when it holds them exactly.
func campaignCheckZip(data []byte, want map[string][]byte) string {
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return err.Error()
	}
	seen := 0
	for _, f := range zr.File {
		if f.FileInfo().IsDir() {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			return err.Error()
		}
		got, err := io.ReadAll(rc)
		_ = rc.Close()
		if err != nil {
			return err.Error()
		}
		w, ok := want[f.Name]
		if !ok {
			return "unexpected entry " + f.Name
		}
		if !bytes.Equal(got, w) {
			return "entry " + f.Name + " differs"
		}
		seen++
	}
	if seen != len(want) {
		return fmt.Sprintf("%d entries, want %d", seen, len(want))
	}
	return ""
}

func TestCampaignRulesAreValid(t *testing.T) {
	srv := runnerapitest.NewServer()
	defer srv.Close()
	for seed := range uint64(50) {
		require.NoError(t, srv.SetFaults(int64(seed), campaignRules(rand.New(rand.NewPCG(seed, 0xca)))...))
	}
}
