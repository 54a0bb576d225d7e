package runnerapitest_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/runnerapi/runnerapi"
	rt "github.com/runnerapi/runnerapi/runnerapitest"
)

func TestSetFaultsRefusesBadRules(t *testing.T) {
	e := newFakeEnv(t)
	cases := map[string][]rt.FaultRule{
		"probability above 1":  {{Kind: rt.FaultInternalError, Probability: 1.5}},
		"negative probability": {{Kind: rt.FaultInternalError, Probability: -0.1}},
		"unknown kind":         {{Kind: "teapot", Probability: 0.1}},
		"unknown endpoint":     {{Endpoint: "jobs", Kind: rt.FaultInternalError, Probability: 0.1}},
		"conflict on update":   {{Endpoint: rt.EndpointUpdate, Kind: rt.FaultConflict, Probability: 0.1}},
		"tail on register":     {{Endpoint: rt.EndpointRegister, Kind: rt.FaultLoseTraceTail, Probability: 0.1}},
		"negative delay":       {{Kind: rt.FaultDelay, Probability: 0.1, Delay: -time.Second}},
		"sum above 1": {
			{Kind: rt.FaultInternalError, Probability: 0.6},
			{Endpoint: rt.EndpointTrace, Kind: rt.FaultDropBefore, Probability: 0.5},
		},
	}
	for name, rules := range cases {
		assert.Error(t, e.srv.SetFaults(1, rules...), name)
	}
	assert.NoError(t, e.srv.SetFaults(1,
		rt.FaultRule{Kind: rt.FaultInternalError, Probability: 0.5},
		rt.FaultRule{Kind: rt.FaultConflict, Probability: 0.5}, // register only: 0.5 + 0.5 there
		rt.FaultRule{Endpoint: rt.EndpointTrace, Kind: rt.FaultLoseTraceTail, Probability: 0.5},
	))
}

// faultRun sends 60 updates that change nothing (state running) and, when withTrace, a keep-alive trace part
// before each, and returns the faults the updates got.
func faultRun(t *testing.T, seed int64, withTrace bool) []rt.FaultKind {
	t.Helper()
	e := newFakeEnv(t)
	id := e.srv.Enqueue(runnerapi.Build{})
	b := e.take(fakeRunnerToken)
	require.NoError(t, e.srv.SetFaults(seed,
		rt.FaultRule{Endpoint: rt.EndpointUpdate, Kind: rt.FaultInternalError, Probability: 0.2},
		rt.FaultRule{Endpoint: rt.EndpointUpdate, Kind: rt.FaultServiceUnavailable, Probability: 0.2},
		rt.FaultRule{Endpoint: rt.EndpointUpdate, Kind: rt.FaultTooManyRequests, Probability: 0.2},
		rt.FaultRule{Endpoint: rt.EndpointTrace, Kind: rt.FaultInternalError, Probability: 0.5},
	))
	for range 60 {
		if withTrace {
			e.patch(id, b.Token, "0-0", "")
		}
		e.update(id, fakeRunnerToken, "running", nil)
	}
	var faults []rt.FaultKind
	counts := map[rt.FaultKind]int{}
	for _, r := range e.srv.Requests() {
		if r.Endpoint == rt.EndpointUpdate {
			faults = append(faults, r.Fault)
			if r.Fault != "" {
				counts[r.Fault]++
			}
		}
	}
	injected := e.srv.FaultsInjected()
	for k, n := range counts {
		if k == rt.FaultInternalError && withTrace {
			assert.Greater(t, injected[k], n, "trace faults counted as well")
			continue
		}
		assert.Equal(t, n, injected[k], k)
	}
	return faults
}

func TestFaultsAreDeterministicPerSeed(t *testing.T) {
	first := faultRun(t, 42, false)
	require.Len(t, first, 60)
	kinds := map[rt.FaultKind]bool{}
	for _, f := range first {
		kinds[f] = true
	}
	assert.Len(t, kinds, 4, "all three faults and clean answers occur in 60 draws: %v", first)

	assert.Equal(t, first, faultRun(t, 42, false), "same seed, same requests")
	assert.Equal(t, first, faultRun(t, 42, true), "requests to another endpoint do not shift the update stream")
	assert.NotEqual(t, first, faultRun(t, 43, false), "another seed")
}

func TestFaultAnswers(t *testing.T) {
	cases := []struct {
		kind        rt.FaultKind
		status      int
		contentType string
		body        string
	}{
		{rt.FaultInternalError, 500, "application/json", `{"message":"500 Internal Server Error"}`},
		{rt.FaultBadGateway, 502, "text/html", "<title>502 Bad Gateway</title>"},
		{rt.FaultServiceUnavailable, 503, "text/html", "<title>503 Service Unavailable</title>"},
		{rt.FaultTooManyRequests, 429, "text/plain", "Retry later"},
	}
	for _, tc := range cases {
		t.Run(string(tc.kind), func(t *testing.T) {
			e := newFakeEnv(t)
			id := e.srv.Enqueue(runnerapi.Build{})
			e.take(fakeRunnerToken)
			require.NoError(t, e.srv.SetFaults(7, rt.FaultRule{Kind: tc.kind, Probability: 1, RetryAfter: 2}))
			resp, body := e.update(id, fakeRunnerToken, "success", nil)
			assert.Equal(t, tc.status, resp.StatusCode)
			assert.Equal(t, tc.contentType, resp.Header.Get("Content-Type"))
			assert.Contains(t, body, tc.body)
			if tc.kind == rt.FaultTooManyRequests {
				assert.Equal(t, "2", resp.Header.Get("Retry-After"))
			}
			info, _ := e.srv.Build(id)
			assert.Equal(t, runnerapi.StateRunning, info.State, "the request was not applied")
			assert.Equal(t, map[rt.FaultKind]int{tc.kind: 1}, e.srv.FaultsInjected())
			reqs := e.srv.Requests()
			last := reqs[len(reqs)-1]
			assert.Equal(t, fmt.Sprintf("%s/%d", fakeAPI, id), last.Path)
			assert.Equal(t, rt.EndpointUpdate, last.Endpoint)
			assert.Equal(t, tc.status, last.Status)
			assert.Equal(t, tc.kind, last.Fault)

			require.NoError(t, e.srv.SetFaults(7))
			resp, _ = e.update(id, fakeRunnerToken, "success", nil)
			assert.Equal(t, http.StatusOK, resp.StatusCode, "faults off")
			assert.Empty(t, e.srv.FaultsInjected(), "SetFaults resets the counters")
		})
	}
}

func TestFaultConflictOnRegister(t *testing.T) {
	e := newFakeEnv(t)
	id := e.srv.Enqueue(runnerapi.Build{})
	require.NoError(t, e.srv.SetFaults(1, rt.FaultRule{Kind: rt.FaultConflict, Probability: 1}))
	resp, body := e.register(fakeRunnerToken, fakeMultiUA, nil)
	assert.Equal(t, http.StatusConflict, resp.StatusCode)
	assert.Equal(t, `{"message":"409 Conflict"}`, body)
	info, _ := e.srv.Build(id)
	assert.Equal(t, runnerapi.StatePending, info.State)
	// Conflict applies only to register: the update stream has no rule.
	resp, _ = e.update(id, fakeRunnerToken, "running", nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
}

// dropped says whether err is what a client sees when the server drops its connection.
func dropped(err error) bool {
	return err != nil && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe"))
}

func TestFaultDropBeforeDoesNotApply(t *testing.T) {
	e := newFakeEnv(t)
	id := e.srv.Enqueue(runnerapi.Build{})
	b := e.take(fakeRunnerToken)
	require.NoError(t, e.srv.SetFaults(1, rt.FaultRule{Kind: rt.FaultDropBefore, Probability: 1}))

	_, err := e.send(http.MethodPut, fmt.Sprintf("%s/%d", fakeAPI, id), formHeader(""),
		strings.NewReader(url.Values{"token": {fakeRunnerToken}, "state": {"success"}}.Encode()))
	assert.True(t, dropped(err), "got %v", err)
	_, err = e.send(http.MethodPatch, fmt.Sprintf("%s/%d/trace.txt", fakeAPI, id), http.Header{"BUILD-TOKEN": {b.Token}, "Content-Range": {"0-3"}}, strings.NewReader("abc"))
	assert.True(t, dropped(err), "got %v", err)
	ct, body := multipartBody(t, nil, "a.zip", []byte("zip"))
	_, err = e.send(http.MethodPost, e.artifactsPath(id), http.Header{"BUILD-TOKEN": {b.Token}, "Content-Type": {ct}}, body)
	assert.True(t, dropped(err), "got %v", err)

	info, _ := e.srv.Build(id)
	assert.Equal(t, runnerapi.StateRunning, info.State)
	assert.Empty(t, e.srv.Trace(id))
	_, ok := e.srv.Artifact(id)
	assert.False(t, ok)
	assert.Equal(t, map[rt.FaultKind]int{rt.FaultDropBefore: 3}, e.srv.FaultsInjected())
	for _, r := range e.srv.Requests()[1:] {
		assert.Equal(t, 0, r.Status)
		assert.Equal(t, rt.FaultDropBefore, r.Fault)
	}
}

func TestFaultDropAfterApplies(t *testing.T) {
	e := newFakeEnv(t)
	id := e.srv.Enqueue(runnerapi.Build{})
	other := e.srv.Enqueue(runnerapi.Build{})
	require.NoError(t, e.srv.SetFaults(1, rt.FaultRule{Kind: rt.FaultDropAfter, Probability: 1}))

	_, err := e.send(http.MethodPost, fakeAPI+"/register", formHeader(fakeMultiUA), strings.NewReader("token="+fakeRunnerToken))
	assert.True(t, dropped(err), "got %v", err)
	info, _ := e.srv.Build(id)
	assert.Equal(t, runnerapi.StateRunning, info.State, "the build was assigned though the runner never heard")
	token := info.Build.Token

	_, err = e.send(http.MethodPatch, fmt.Sprintf("%s/%d/trace.txt", fakeAPI, id), http.Header{"BUILD-TOKEN": {token}, "Content-Range": {"0-3"}}, strings.NewReader("abc"))
	assert.True(t, dropped(err), "got %v", err)
	assert.Equal(t, "abc", string(e.srv.Trace(id)))

	ct, body := multipartBody(t, nil, "a.zip", []byte("0123456789"))
	_, err = e.send(http.MethodPost, e.artifactsPath(id), http.Header{"BUILD-TOKEN": {token}, "Content-Type": {ct}}, body)
	assert.True(t, dropped(err), "got %v", err)
	art, ok := e.srv.Artifact(id)
	require.True(t, ok)
	assert.Equal(t, int64(10), art.Size)

	// A download is cut short: full headers, half the body.
	resp, err := e.send(http.MethodGet, e.artifactsPath(id), tokenHeader(token), nil)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, int64(10), resp.ContentLength)
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
	assert.Equal(t, "01234", string(data))

	_, err = e.send(http.MethodDelete, e.artifactsPath(id), tokenHeader(token), nil)
	assert.True(t, dropped(err), "got %v", err)
	_, ok = e.srv.Artifact(id)
	assert.False(t, ok)

	_, err = e.send(http.MethodPut, fmt.Sprintf("%s/%d", fakeAPI, id), formHeader(""),
		strings.NewReader(url.Values{"token": {fakeRunnerToken}, "state": {"failed"}}.Encode()))
	assert.True(t, dropped(err), "got %v", err)
	info, _ = e.srv.Build(id)
	assert.Equal(t, runnerapi.StateFailed, info.State)

	assert.Equal(t, map[rt.FaultKind]int{rt.FaultDropAfter: 6}, e.srv.FaultsInjected())
	info, _ = e.srv.Build(other)
	assert.Equal(t, runnerapi.StatePending, info.State)
}

func TestFaultLoseTraceTail(t *testing.T) {
	e := newFakeEnv(t)
	id := e.srv.Enqueue(runnerapi.Build{})
	b := e.take(fakeRunnerToken)
	require.NoError(t, e.srv.SetFaults(3, rt.FaultRule{Kind: rt.FaultLoseTraceTail, Probability: 1, TailBytes: 4}))

	// Nothing to lose yet: the part is taken, and no fault is counted.
	resp, _ := e.patch(id, b.Token, "0-10", "0123456789")
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	assert.Empty(t, e.srv.FaultsInjected())

	resp, body := e.patch(id, b.Token, "10-15", "abcde")
	assert.Equal(t, http.StatusRequestedRangeNotSatisfiable, resp.StatusCode)
	assert.Equal(t, "0-6", resp.Header.Get("Range"), "the tail was lost")
	assert.Equal(t, `{"error":"416 Range Not Satisfiable"}`, body)
	assert.Equal(t, "012345", string(e.srv.Trace(id)))
	assert.Equal(t, map[rt.FaultKind]int{rt.FaultLoseTraceTail: 1}, e.srv.FaultsInjected())

	require.NoError(t, e.srv.SetFaults(3))
	resp, _ = e.patch(id, b.Token, "6-15", "6789abcde")
	assert.Equal(t, http.StatusAccepted, resp.StatusCode, "resent from the length the 416 named")
	assert.Equal(t, "0-15", resp.Header.Get("Range"))
	assert.Equal(t, "0123456789abcde", string(e.srv.Trace(id)))

	// Without TailBytes, 1 to 256 bytes go, never more than there is.
	require.NoError(t, e.srv.SetFaults(9, rt.FaultRule{Kind: rt.FaultLoseTraceTail, Probability: 1}))
	resp, _ = e.patch(id, b.Token, "15-15", "")
	assert.Equal(t, http.StatusRequestedRangeNotSatisfiable, resp.StatusCode)
	var n int
	_, err := fmt.Sscanf(resp.Header.Get("Range"), "0-%d", &n)
	require.NoError(t, err)
	assert.Less(t, n, 15)
	assert.GreaterOrEqual(t, n, 0)
	assert.Len(t, e.srv.Trace(id), n)
}

func TestFaultDelay(t *testing.T) {
	e := newFakeEnv(t)
	id := e.srv.Enqueue(runnerapi.Build{})
	b := e.take(fakeRunnerToken)
	const delay = 30 * time.Millisecond
	require.NoError(t, e.srv.SetFaults(5, rt.FaultRule{Endpoint: rt.EndpointTrace, Kind: rt.FaultDelay, Probability: 1, Delay: delay}))
	start := time.Now()
	resp, _ := e.patch(id, b.Token, "0-2", "ok")
	assert.GreaterOrEqual(t, time.Since(start), delay, "answered no sooner than the delay")
	assert.Equal(t, http.StatusAccepted, resp.StatusCode, "then handled normally")
	assert.Equal(t, "ok", string(e.srv.Trace(id)))
	assert.Equal(t, map[rt.FaultKind]int{rt.FaultDelay: 1}, e.srv.FaultsInjected())
	reqs := e.srv.Requests()
	assert.Equal(t, rt.FaultDelay, reqs[len(reqs)-1].Fault)
	assert.Equal(t, http.StatusAccepted, reqs[len(reqs)-1].Status)
}

func TestFaultDelayEndsOnClose(t *testing.T) {
	e := newFakeEnv(t)
	require.NoError(t, e.srv.SetFaults(5, rt.FaultRule{Kind: rt.FaultDelay, Probability: 1, Delay: time.Hour}))
	errc := make(chan error)
	go func() {
		resp, err := e.send(http.MethodPost, fakeAPI+"/register", formHeader(""), strings.NewReader("token="+fakeRunnerToken))
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	for len(e.srv.FaultsInjected()) == 0 {
		time.Sleep(time.Millisecond)
	}
	e.srv.Close() // must not wait an hour
	<-errc
}

func TestScriptFaults(t *testing.T) {
	e := newFakeEnv(t)
	first := e.srv.Enqueue(runnerapi.Build{})
	second := e.srv.Enqueue(runnerapi.Build{})
	require.NoError(t, e.srv.ScriptFaults(rt.EndpointRegister,
		rt.FaultInternalError, rt.FaultNone, rt.FaultDropBefore, rt.FaultTooManyRequests))

	resp, body := e.register(fakeRunnerToken, fakeMultiUA, nil)
	assert.Equal(t, http.StatusInternalServerError, resp.StatusCode)
	assert.Equal(t, `{"message":"500 Internal Server Error"}`, body)
	info, _ := e.srv.Build(first)
	assert.Equal(t, runnerapi.StatePending, info.State, "the scripted 500 applied nothing")

	assert.Equal(t, first, e.take(fakeRunnerToken).ID, "FaultNone lets the second through")

	_, err := e.send(http.MethodPost, fakeAPI+"/register", formHeader(fakeMultiUA), strings.NewReader("token="+fakeRunnerToken))
	assert.True(t, dropped(err), "got %v", err)
	info, _ = e.srv.Build(second)
	assert.Equal(t, runnerapi.StatePending, info.State)

	resp, _ = e.register(fakeRunnerToken, fakeMultiUA, nil)
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	assert.Equal(t, "0", resp.Header.Get("Retry-After"), "a scripted fault takes FaultRule's defaults")

	assert.Equal(t, second, e.take(fakeRunnerToken).ID, "the script is used up")
	resp, _ = e.register(fakeRunnerToken, fakeMultiUA, nil)
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)

	assert.Equal(t, map[rt.FaultKind]int{rt.FaultInternalError: 1, rt.FaultDropBefore: 1, rt.FaultTooManyRequests: 1},
		e.srv.FaultsInjected(), "FaultNone is not counted")
	var faults []rt.FaultKind
	for _, r := range e.srv.Requests() {
		faults = append(faults, r.Fault)
	}
	assert.Equal(t, []rt.FaultKind{rt.FaultInternalError, "", rt.FaultDropBefore, rt.FaultTooManyRequests, "", ""}, faults)
}

func TestScriptFaultsComeBeforeRulesAndOutliveSetFaults(t *testing.T) {
	e := newFakeEnv(t)
	id := e.srv.Enqueue(runnerapi.Build{})
	e.take(fakeRunnerToken)
	require.NoError(t, e.srv.ScriptFaults(rt.EndpointUpdate, rt.FaultBadGateway, rt.FaultNone))
	require.NoError(t, e.srv.SetFaults(1, rt.FaultRule{Endpoint: rt.EndpointUpdate, Kind: rt.FaultInternalError, Probability: 1}))

	resp, _ := e.update(id, fakeRunnerToken, "running", nil)
	assert.Equal(t, http.StatusBadGateway, resp.StatusCode, "the script first")
	resp, _ = e.update(id, fakeRunnerToken, "running", nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "FaultNone draws no rule either")
	resp, _ = e.update(id, fakeRunnerToken, "running", nil)
	assert.Equal(t, http.StatusInternalServerError, resp.StatusCode, "then the rules")

	// SetFaults leaves scripts alone; ScriptFaults with no kinds clears one.
	require.NoError(t, e.srv.ScriptFaults(rt.EndpointUpdate, rt.FaultServiceUnavailable, rt.FaultServiceUnavailable))
	require.NoError(t, e.srv.SetFaults(2))
	resp, _ = e.update(id, fakeRunnerToken, "running", nil)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, map[rt.FaultKind]int{rt.FaultServiceUnavailable: 1}, e.srv.FaultsInjected())
	require.NoError(t, e.srv.ScriptFaults(rt.EndpointUpdate))
	resp, _ = e.update(id, fakeRunnerToken, "running", nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}

func TestScriptFaultsLeaveTheRandomStreamAlone(t *testing.T) {
	run := func(script bool) []rt.FaultKind {
		e := newFakeEnv(t)
		id := e.srv.Enqueue(runnerapi.Build{})
		e.take(fakeRunnerToken)
		require.NoError(t, e.srv.SetFaults(42, rt.FaultRule{Endpoint: rt.EndpointUpdate, Kind: rt.FaultInternalError, Probability: 0.5}))
		if script {
			require.NoError(t, e.srv.ScriptFaults(rt.EndpointUpdate, rt.FaultBadGateway, rt.FaultNone))
		}
		for range 30 {
			e.update(id, fakeRunnerToken, "running", nil)
		}
		var out []rt.FaultKind
		for _, r := range e.srv.Requests()[1:] {
			out = append(out, r.Fault)
		}
		if script {
			assert.Equal(t, []rt.FaultKind{rt.FaultBadGateway, ""}, out[:2])
			out = out[2:]
		}
		return out[:28]
	}
	assert.Equal(t, run(false), run(true), "the draws after a script are those without it")
}

func TestScriptFaultsRefusesBadScripts(t *testing.T) {
	e := newFakeEnv(t)
	assert.Error(t, e.srv.ScriptFaults("jobs", rt.FaultInternalError), "unknown endpoint")
	assert.Error(t, e.srv.ScriptFaults(rt.EndpointUpdate, rt.FaultNone, "teapot"), "unknown kind")
	assert.Error(t, e.srv.ScriptFaults(rt.EndpointUpdate, rt.FaultConflict), "conflict is register's")
	assert.Error(t, e.srv.ScriptFaults(rt.EndpointRegister, rt.FaultLateApply), "late apply is the trace's")
	assert.Error(t, e.srv.SetFaults(1, rt.FaultRule{Kind: rt.FaultNone, Probability: 0.5}), "none is for scripts")
	assert.NoError(t, e.srv.ScriptFaults(rt.EndpointRunnerRegister, rt.FaultInternalError, rt.FaultDropAfter))
	assert.NoError(t, e.srv.ScriptFaults(rt.EndpointTrace, rt.FaultLoseTraceTail, rt.FaultLateApply))
}

// sendTracePart sends a trace part with ctx in the background and returns where its outcome arrives.
func (e *fakeEnv) sendTracePart(ctx context.Context, id int64, token, contentRange, part string) <-chan error {
	done := make(chan error, 1)
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, fmt.Sprintf("%s%s/%d/trace.txt", e.srv.URL, fakeAPI, id), strings.NewReader(part))
	require.NoError(e.t, err)
	req.Header.Set("BUILD-TOKEN", token)
	req.Header.Set("Content-Range", contentRange)
	go func() {
		resp, err := e.hc.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	return done
}

// waitUntil waits, with a generous deadline, until cond holds.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, 20*time.Second, time.Millisecond, what)
}

func TestFaultLateApplyCutsBackAnAcknowledgedTrace(t *testing.T) {
	e := newFakeEnv(t)
	id := e.srv.Enqueue(runnerapi.Build{})
	b := e.take(fakeRunnerToken)
	require.NoError(t, e.srv.ScriptFaults(rt.EndpointTrace, rt.FaultLateApply))

	ctx, giveUp := context.WithCancel(context.Background())
	defer giveUp()
	stalled := e.sendTracePart(ctx, id, b.Token, "0-6", "hello ")
	waitUntil(t, "the part passed the length check and is held", func() bool {
		return e.srv.FaultsInjected()[rt.FaultLateApply] == 1
	})

	// The client resends the part and carries on; both are acknowledged.
	resp, _ := e.patch(id, b.Token, "0-6", "hello ")
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	assert.Equal(t, "0-6", resp.Header.Get("Range"))
	resp, _ = e.patch(id, b.Token, "6-12", "world\n")
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	assert.Equal(t, "0-12", resp.Header.Get("Range"))
	assert.Equal(t, "hello world\n", string(e.srv.Trace(id)))

	// The client gives up on the stalled part; only then does it land: truncate to START, append.
	giveUp()
	require.Error(t, <-stalled)
	waitUntil(t, "the late part is applied and logged", func() bool { return len(e.srv.Requests()) == 4 })
	assert.Equal(t, "hello ", string(e.srv.Trace(id)), "the acknowledged trace went back to 6 bytes")
	late := e.srv.Requests()[3]
	assert.Equal(t, rt.FaultLateApply, late.Fault, "logged once applied")
	assert.Equal(t, 0, late.Status, "never answered")
	assert.Equal(t, map[rt.FaultKind]int{rt.FaultLateApply: 1}, e.srv.FaultsInjected())

	// The next part learns the shorter length.
	resp, _ = e.patch(id, b.Token, "12-12", "")
	assert.Equal(t, http.StatusRequestedRangeNotSatisfiable, resp.StatusCode)
	assert.Equal(t, "0-6", resp.Header.Get("Range"))
}

func TestFaultLateApplyAfterDelayIsAnswered(t *testing.T) {
	e := newFakeEnv(t)
	id := e.srv.Enqueue(runnerapi.Build{})
	b := e.take(fakeRunnerToken)
	require.NoError(t, e.srv.SetFaults(1, rt.FaultRule{Kind: rt.FaultLateApply, Probability: 1, Delay: time.Millisecond}))

	resp, _ := e.patch(id, b.Token, "0-4", "abcd")
	assert.Equal(t, http.StatusAccepted, resp.StatusCode)
	assert.Equal(t, "0-4", resp.Header.Get("Range"))
	assert.Equal(t, "running", resp.Header.Get("Build-Status"))
	assert.Equal(t, "abcd", string(e.srv.Trace(id)))

	// A part that fails the length check is answered 416 at once, and no fault is counted.
	resp, _ = e.patch(id, b.Token, "0-4", "abcd")
	assert.Equal(t, http.StatusRequestedRangeNotSatisfiable, resp.StatusCode)
	assert.Equal(t, map[rt.FaultKind]int{rt.FaultLateApply: 1}, e.srv.FaultsInjected())
	reqs := e.srv.Requests()
	assert.Equal(t, rt.FaultLateApply, reqs[1].Fault)
	assert.Equal(t, http.StatusAccepted, reqs[1].Status)
	assert.Equal(t, rt.FaultKind(""), reqs[2].Fault)
}

func TestFaultLateApplyOverAShorterTracePads(t *testing.T) {
	e := newFakeEnv(t)
	id := e.srv.Enqueue(runnerapi.Build{})
	b := e.take(fakeRunnerToken)
	resp, _ := e.patch(id, b.Token, "0-4", "abcd")
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	require.NoError(t, e.srv.ScriptFaults(rt.EndpointTrace, rt.FaultLateApply))

	ctx, giveUp := context.WithCancel(context.Background())
	defer giveUp()
	stalled := e.sendTracePart(ctx, id, b.Token, "4-6", "ef")
	waitUntil(t, "held", func() bool { return e.srv.FaultsInjected()[rt.FaultLateApply] == 1 })
	// Meanwhile the whole trace is replaced by a shorter one.
	short := "ab"
	resp, _ = e.update(id, fakeRunnerToken, "running", &short)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	giveUp()
	<-stalled
	waitUntil(t, "applied", func() bool { return len(e.srv.Trace(id)) != 2 })
	assert.Equal(t, "ab\x00\x00ef", string(e.srv.Trace(id)), "File.truncate pads a shorter file with zero bytes")
}

func TestFaultLateApplyEndsOnClose(t *testing.T) {
	e := newFakeEnv(t)
	id := e.srv.Enqueue(runnerapi.Build{})
	b := e.take(fakeRunnerToken)
	require.NoError(t, e.srv.ScriptFaults(rt.EndpointTrace, rt.FaultLateApply))
	stalled := e.sendTracePart(context.Background(), id, b.Token, "0-1", "x")
	waitUntil(t, "held", func() bool { return e.srv.FaultsInjected()[rt.FaultLateApply] == 1 })
	e.srv.Close() // must not wait for a client that never gives up
	assert.Error(t, <-stalled)
}
