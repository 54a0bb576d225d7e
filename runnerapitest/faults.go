package runnerapitest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"time"
)

// Endpoint names an endpoint of the API, for fault rules and the request log.
type Endpoint string

// The endpoints of the CI API v1: the builds endpoints under /ci/api/v1/builds and the runners endpoints under
// /ci/api/v1/runners.
const (
	EndpointRegister       Endpoint = "register"        // POST /builds/register: take a build
	EndpointUpdate         Endpoint = "update"          // PUT /builds/:id
	EndpointTrace          Endpoint = "trace"           // PATCH /builds/:id/trace.txt
	EndpointUpload         Endpoint = "upload"          // POST /builds/:id/artifacts
	EndpointDownload       Endpoint = "download"        // GET /builds/:id/artifacts
	EndpointDelete         Endpoint = "delete"          // DELETE /builds/:id/artifacts
	EndpointRunnerRegister Endpoint = "runner-register" // POST /runners/register: register a new runner
	EndpointRunnerDelete   Endpoint = "runner-delete"   // DELETE /runners/delete: unregister a runner
)

// The endpoints of the runner API v4: the runners endpoints under /api/v4/runners, the jobs endpoints under
// /api/v4/jobs, and the object storage that artifacts downloads may be redirected to (WithObjectStorage).
const (
	EndpointRunnersRegister       Endpoint = "v4-runners-register"        // POST /runners: register with a registration token
	EndpointRunnersVerify         Endpoint = "v4-runners-verify"          // POST /runners/verify
	EndpointRunnersDelete         Endpoint = "v4-runners-delete"          // DELETE /runners
	EndpointRunnersManagersDelete Endpoint = "v4-runners-managers-delete" // DELETE /runners/managers
	EndpointRunnersResetToken     Endpoint = "v4-runners-reset-token"     // POST /runners/reset_authentication_token
	EndpointJobRequest            Endpoint = "v4-job-request"             // POST /jobs/request: take a job
	EndpointJobUpdate             Endpoint = "v4-job-update"              // PUT /jobs/:id
	EndpointJobTrace              Endpoint = "v4-job-trace"               // PATCH /jobs/:id/trace
	EndpointJobArtifactsUpload    Endpoint = "v4-job-artifacts-upload"    // POST /jobs/:id/artifacts
	EndpointJobArtifactsDownload  Endpoint = "v4-job-artifacts-download"  // GET /jobs/:id/artifacts
	EndpointObjectStorage         Endpoint = "object-storage"             // GET of a signed artifacts URL
	EndpointRunnersRouter         Endpoint = "v4-runners-router"          // GET /runners/router/discovery
)

// endpoints lists the endpoints in a fixed order; each has its own random stream, seeded by its position, so new
// endpoints go at the end and leave the streams of the others as they were.
var endpoints = []Endpoint{
	EndpointRegister, EndpointUpdate, EndpointTrace, EndpointUpload, EndpointDownload, EndpointDelete,
	EndpointRunnerRegister, EndpointRunnerDelete,
	EndpointRunnersRegister, EndpointRunnersVerify, EndpointRunnersDelete, EndpointRunnersManagersDelete,
	EndpointRunnersResetToken, EndpointJobRequest, EndpointJobUpdate, EndpointJobTrace, EndpointJobArtifactsUpload,
	EndpointJobArtifactsDownload, EndpointObjectStorage, EndpointRunnersRouter,
}

// FaultKind is a kind of failure the server can inject.
type FaultKind string

// The faults a Server can inject. Unless said otherwise, a fault answers without applying the request.
const (
	// FaultInternalError answers 500 with GitLab's JSON body.
	FaultInternalError FaultKind = "500"
	// FaultBadGateway answers 502 with an HTML page, as a proxy in front of the coordinator does.
	FaultBadGateway FaultKind = "502"
	// FaultServiceUnavailable answers 503 with an HTML page, as a proxy in front of the coordinator does.
	FaultServiceUnavailable FaultKind = "503"
	// FaultTooManyRequests answers 429 with a Retry-After of FaultRule.RetryAfter seconds.
	FaultTooManyRequests FaultKind = "429"
	// FaultRateLimited answers 429 as GitLab's own rate limiter does (the runner API v4's check_rate_limit!): a JSON
	// body {"message":{"error":"This endpoint has been requested too many times. Try again later."}} and no
	// Retry-After, so the client backs off on its own.
	FaultRateLimited FaultKind = "429-rate-limited"
	// FaultConflict answers register (v1) or jobs/request (v4) with 409, as GitLab does when assigning a build races
	// with another runner.
	FaultConflict FaultKind = "409"
	// FaultDropBefore closes the connection before reading the request.
	FaultDropBefore FaultKind = "drop-before"
	// FaultDropAfter applies the request, then closes the connection without answering, so the client sees a
	// dropped connection though the state changed. On download it sends the headers and the first half of the file
	// first, so the client sees a body cut short.
	FaultDropAfter FaultKind = "drop-after"
	// FaultLoseTraceTail drops the last bytes of the stored trace (FaultRule.TailBytes, or 1 to 256 chosen at
	// random) before the request is handled, as a coordinator that lost acknowledged data would; the request is then
	// answered 416 with the shorter length. It applies only to trace requests for a build whose trace is not empty.
	FaultLoseTraceTail FaultKind = "lose-trace-tail"
	// FaultDelay waits FaultRule.Delay (50ms when zero) before handling the request normally.
	FaultDelay FaultKind = "delay"
	// FaultLateApply models a trace part that stalls inside GitLab 8.x's Ci::Build#append_trace, which checks the
	// part's START against the trace length, then truncates the trace file to START and appends the part. The check
	// passes (or fails with 416) as usual; then the request is held without an answer until the client gives up on
	// it (its request context ends) or FaultRule.Delay passes (with no Delay, only the client or Close ends the
	// wait), and only then is it applied: the trace is cut to START, padded with zero bytes if it has become
	// shorter, as File.truncate does, and the part appended. Whatever the client resent and appended meanwhile
	// is lost: an acknowledged trace goes back. A request answered after Delay gets its 202. It applies only to
	// trace requests whose START is the trace length.
	FaultLateApply FaultKind = "late-apply"
	// FaultNone lets one request of a script (see ScriptFaults) through untouched. It is not a rule's kind and is
	// never counted.
	FaultNone FaultKind = "none"
)

// FaultRule makes requests to an endpoint fail in one way with some probability.
type FaultRule struct {
	// Endpoint is the endpoint the rule applies to; "" applies it to every endpoint its kind makes sense for
	// (FaultConflict: register and jobs/request; FaultLoseTraceTail and FaultLateApply: the trace of either API;
	// the others: all).
	Endpoint Endpoint
	// Kind is the failure.
	Kind FaultKind
	// Probability, from 0 to 1, is the chance that a request gets this fault. The probabilities of the rules for
	// one endpoint add up to at most 1: each request gets at most one fault.
	Probability float64
	// RetryAfter is the Retry-After of FaultTooManyRequests, in seconds (0 sends "0").
	RetryAfter int
	// Delay is the wait of FaultDelay, 50ms when zero, and the longest hold of FaultLateApply, which with zero
	// lasts until the client gives up.
	Delay time.Duration
	// TailBytes is how many bytes FaultLoseTraceTail drops (at most the whole trace); 1 to 256 at random when zero.
	TailBytes int
}

// defaultFaultDelay is the wait of a FaultDelay rule without its own.
const defaultFaultDelay = 50 * time.Millisecond

// faultState holds the rules, one random stream per endpoint, the scripts and the counters.
type faultState struct {
	mu       sync.Mutex
	rules    map[Endpoint][]FaultRule
	rngs     map[Endpoint]*rand.Rand
	scripts  map[Endpoint][]FaultKind
	tailRNG  *rand.Rand // chooses how much a scripted FaultLoseTraceTail drops, apart from the endpoints' streams
	injected map[FaultKind]int
}

// SetFaults replaces the fault rules and resets the random streams and the counters of FaultsInjected. Each
// endpoint draws from its own stream seeded by seed, so the same seed and the same sequence of requests to an
// endpoint give the same faults, however requests to different endpoints interleave. SetFaults with no rules turns
// random faults off; it leaves the scripts of ScriptFaults as they are.
func (s *Server) SetFaults(seed int64, rules ...FaultRule) error {
	byEndpoint := make(map[Endpoint][]FaultRule)
	sums := make(map[Endpoint]float64)
	for i, r := range rules {
		if r.Probability < 0 || r.Probability > 1 || r.Probability != r.Probability {
			return fmt.Errorf("runnerapitest: fault rule %d: probability %v not between 0 and 1", i, r.Probability)
		}
		if r.RetryAfter < 0 || r.Delay < 0 || r.TailBytes < 0 {
			return fmt.Errorf("runnerapitest: fault rule %d: negative parameter", i)
		}
		if !knownKind(r.Kind) {
			return fmt.Errorf("runnerapitest: fault rule %d: unknown kind %q", i, r.Kind)
		}
		if r.Kind == FaultNone {
			return fmt.Errorf("runnerapitest: fault rule %d: %s is for scripts, not rules", i, r.Kind)
		}
		targets := endpoints
		if r.Endpoint != "" {
			if !knownEndpoint(r.Endpoint) {
				return fmt.Errorf("runnerapitest: fault rule %d: unknown endpoint %q", i, r.Endpoint)
			}
			if !kindApplies(r.Kind, r.Endpoint) {
				return fmt.Errorf("runnerapitest: fault rule %d: %s does not apply to %s", i, r.Kind, r.Endpoint)
			}
			targets = []Endpoint{r.Endpoint}
		}
		for _, ep := range targets {
			if !kindApplies(r.Kind, ep) {
				continue
			}
			byEndpoint[ep] = append(byEndpoint[ep], r)
			sums[ep] += r.Probability
			if sums[ep] > 1+1e-9 {
				return fmt.Errorf("runnerapitest: fault rules for %s add up to a probability above 1", ep)
			}
		}
	}
	s.faults.reset(seed, byEndpoint)
	return nil
}

// ScriptFaults makes the next len(kinds) requests to e get these faults, one each, in order, before any random
// rule of SetFaults is drawn: a scripted request draws nothing from e's random stream. FaultNone lets a request of
// the script through untouched. A scripted fault takes the defaults of FaultRule's parameters: Retry-After 0, a
// 50ms FaultDelay, 1 to 256 bytes lost by FaultLoseTraceTail (which, like FaultLateApply, is used up without effect
// by a request it does not apply to), and a FaultLateApply held until the client gives up. ScriptFaults replaces
// e's script; with no kinds it clears it. SetFaults does not touch scripts.
//
// For example, to make a runner's start-up meet a coordinator that hiccups (the first register answers 500, the
// second loses its connection, the third goes through):
//
//	srv.ScriptFaults(runnerapitest.EndpointRegister, runnerapitest.FaultInternalError, runnerapitest.FaultDropBefore)
func (s *Server) ScriptFaults(e Endpoint, kinds ...FaultKind) error {
	if !knownEndpoint(e) {
		return fmt.Errorf("runnerapitest: script: unknown endpoint %q", e)
	}
	for i, k := range kinds {
		if !knownKind(k) {
			return fmt.Errorf("runnerapitest: script entry %d: unknown kind %q", i, k)
		}
		if !kindApplies(k, e) {
			return fmt.Errorf("runnerapitest: script entry %d: %s does not apply to %s", i, k, e)
		}
	}
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	if len(kinds) == 0 {
		delete(s.faults.scripts, e)
		return nil
	}
	s.faults.scripts[e] = append([]FaultKind(nil), kinds...)
	return nil
}

// FaultsInjected returns how many faults of each kind have been injected since the last SetFaults, scripted or
// drawn. FaultNone is not counted, nor is a fault that had nothing to apply to.
func (s *Server) FaultsInjected() map[FaultKind]int {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	out := make(map[FaultKind]int, len(s.faults.injected))
	for k, n := range s.faults.injected {
		out[k] = n
	}
	return out
}

func knownKind(k FaultKind) bool {
	switch k {
	case FaultInternalError, FaultBadGateway, FaultServiceUnavailable, FaultTooManyRequests, FaultRateLimited, FaultConflict,
		FaultDropBefore, FaultDropAfter, FaultLoseTraceTail, FaultDelay, FaultLateApply, FaultNone:
		return true
	}
	return false
}

func knownEndpoint(ep Endpoint) bool {
	for _, e := range endpoints {
		if e == ep {
			return true
		}
	}
	return false
}

func kindApplies(k FaultKind, ep Endpoint) bool {
	switch k {
	case FaultConflict:
		return ep == EndpointRegister || ep == EndpointJobRequest
	case FaultLoseTraceTail, FaultLateApply:
		return ep == EndpointTrace || ep == EndpointJobTrace
	}
	return true
}

func (f *faultState) reset(seed int64, rules map[Endpoint][]FaultRule) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = rules
	f.rngs = make(map[Endpoint]*rand.Rand, len(endpoints))
	for i, ep := range endpoints {
		f.rngs[ep] = rand.New(rand.NewPCG(uint64(seed), uint64(i+1)))
	}
	f.tailRNG = rand.New(rand.NewPCG(uint64(seed), 0))
	if f.scripts == nil {
		f.scripts = make(map[Endpoint][]FaultKind)
	}
	f.injected = make(map[FaultKind]int)
}

// fault is the decision for one request.
type fault struct {
	rule FaultRule
	tail int // bytes FaultLoseTraceTail drops
}

// draw decides the fault of the next request to ep, or nil: the next entry of ep's script if it has one, else a
// draw from ep's stream, made only when ep has rules.
func (f *faultState) draw(ep Endpoint) *fault {
	f.mu.Lock()
	defer f.mu.Unlock()
	if script := f.scripts[ep]; len(script) > 0 {
		kind := script[0]
		if len(script) == 1 {
			delete(f.scripts, ep)
		} else {
			f.scripts[ep] = script[1:]
		}
		if kind == FaultNone {
			return nil
		}
		ft := &fault{rule: FaultRule{Endpoint: ep, Kind: kind}}
		if kind == FaultLoseTraceTail {
			ft.tail = 1 + f.tailRNG.IntN(256)
		}
		return ft
	}
	rules := f.rules[ep]
	if len(rules) == 0 {
		return nil
	}
	rng := f.rngs[ep]
	u := rng.Float64()
	var acc float64
	for _, r := range rules {
		acc += r.Probability
		if u < acc {
			ft := &fault{rule: r}
			if r.Kind == FaultLoseTraceTail {
				ft.tail = r.TailBytes
				if ft.tail == 0 {
					ft.tail = 1 + rng.IntN(256)
				}
			}
			return ft
		}
	}
	return nil
}

func (f *faultState) count(k FaultKind) {
	f.mu.Lock()
	f.injected[k]++
	f.mu.Unlock()
}

// statusWriter logs the request as soon as its status is known, before any byte of the answer leaves, so a client
// that has its answer always finds its request in Requests.
type statusWriter struct {
	http.ResponseWriter
	log func(status int)
}

func (w *statusWriter) WriteHeader(code int) {
	w.log(code)
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	w.log(http.StatusOK)
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// endpoint wraps the handler of ep with the request log and fault injection. Faults are counted and logged before
// the client can see their effect.
func (s *Server) endpoint(ep Endpoint, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := Request{
			Method: r.Method, Path: r.URL.Path, Endpoint: ep, TokenInQuery: r.URL.Query().Has("token"),
			ContentRange: r.Header.Get("Content-Range"), ContentLength: r.ContentLength, UserAgent: r.UserAgent(),
		}
		logged := false
		log := func(status int) {
			if !logged {
				logged = true
				rec.Status = status
				s.recordRequest(rec)
			}
		}
		// A handler that writes nothing answers 200.
		defer log(http.StatusOK)
		sw := &statusWriter{ResponseWriter: w, log: log}

		var ft *fault
		if ep != "" {
			ft = s.faults.draw(ep)
		}
		if ft != nil && ft.rule.Kind == FaultLoseTraceTail && !s.loseTraceTail(r, ft.tail) {
			ft = nil // nothing to lose
		}
		if ft == nil {
			h(sw, r)
			return
		}
		if ft.rule.Kind == FaultLateApply {
			// Only the trace handler knows whether the part passes the length check; it counts the fault then.
			la := &lateApply{
				delay: ft.rule.Delay,
				injected: func() {
					s.faults.count(FaultLateApply)
					rec.Fault = FaultLateApply
				},
				abandoned: func() {
					log(0)
					dropConnection(w)
				},
			}
			h(sw, r.WithContext(context.WithValue(r.Context(), lateApplyKey{}, la)))
			return
		}
		kind := ft.rule.Kind
		s.faults.count(kind)
		rec.Fault = kind
		switch kind {
		case FaultInternalError:
			writeMessage(sw, http.StatusInternalServerError, msgInternalError)
		case FaultBadGateway, FaultServiceUnavailable:
			code, _ := strconv.Atoi(string(kind))
			writeProxyPage(sw, code)
		case FaultTooManyRequests:
			sw.Header().Set("Retry-After", strconv.Itoa(ft.rule.RetryAfter))
			sw.Header().Set("Content-Type", "text/plain")
			sw.WriteHeader(http.StatusTooManyRequests)
			_, _ = sw.Write([]byte("Retry later\n"))
		case FaultRateLimited:
			writeJSON(sw, http.StatusTooManyRequests, map[string]any{"message": map[string]string{"error": msgRateLimited}})
		case FaultConflict:
			writeMessage(sw, http.StatusConflict, msgConflict)
		case FaultDropBefore:
			log(0)
			dropConnection(w)
		case FaultDropAfter:
			if ep == EndpointDownload || ep == EndpointJobArtifactsDownload || ep == EndpointObjectStorage {
				// Headers and half the file, then the connection goes: the client sees a body cut short.
				log(0)
				h(&cutWriter{statusWriter: sw}, r)
			} else {
				h(httptest.NewRecorder(), r)
				log(0)
			}
			dropConnection(w)
		case FaultLoseTraceTail:
			// The tail is gone already; the handler answers 416 with the shorter length.
			h(sw, r)
		case FaultDelay:
			d := ft.rule.Delay
			if d == 0 {
				d = defaultFaultDelay
			}
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-r.Context().Done():
			case <-s.closed:
			}
			t.Stop()
			h(sw, r)
		}
	})
}

// lateApplyKey is the context key of a trace request's *lateApply.
type lateApplyKey struct{}

// lateApply is a FaultLateApply decided for a trace request, handed to the trace handler in the request context.
type lateApply struct {
	delay     time.Duration // the longest hold; zero holds until the client gives up
	injected  func()        // counts and logs the fault, once the part has passed the length check
	abandoned func()        // logs the request as answered by a dropped connection, and drops it
}

// hold waits until the client gives up, the delay passes or the server closes; it reports whether the client is
// still waiting for an answer.
func (la *lateApply) hold(ctx context.Context, closed <-chan struct{}) bool {
	var timeout <-chan time.Time
	if la.delay > 0 {
		t := time.NewTimer(la.delay)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-timeout:
		return true
	case <-ctx.Done():
	case <-closed:
	}
	return false
}

// loseTraceTail drops up to n bytes from the end of the trace of the request's build; it reports whether any went.
func (s *Server) loseTraceTail(r *http.Request, n int) bool {
	id, ok := pathID(r)
	if !ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.builds[id]
	if b == nil || len(b.trace) == 0 {
		return false
	}
	b.trace = b.trace[:len(b.trace)-min(n, len(b.trace))]
	return true
}

// writeProxyPage answers code with an HTML error page, as nginx in front of GitLab does.
func writeProxyPage(w http.ResponseWriter, code int) {
	text := strconv.Itoa(code) + " " + http.StatusText(code)
	page := "<html>\r\n<head><title>" + text + "</title></head>\r\n<body>\r\n<center><h1>" + text +
		"</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
	w.Header().Set("Content-Type", "text/html")
	w.Header().Set("Content-Length", strconv.Itoa(len(page)))
	w.WriteHeader(code)
	_, _ = w.Write([]byte(page))
}

// dropConnection closes the request's connection without an answer.
func dropConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Not hijackable (HTTP/2): abort the stream instead.
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

// errCut stops a download that FaultDropAfter cuts short.
var errCut = errors.New("runnerapitest: download cut short")

// cutWriter passes a download's headers and the first half of its body, then stops writing.
type cutWriter struct {
	*statusWriter
	limit   int64 // -1 until the headers are known
	written int64
	started bool
}

func (c *cutWriter) WriteHeader(code int) {
	if !c.started {
		c.started = true
		c.limit = 0
		if n, err := strconv.ParseInt(c.Header().Get("Content-Length"), 10, 64); err == nil {
			c.limit = n / 2
		}
	}
	c.statusWriter.WriteHeader(code)
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if !c.started {
		c.WriteHeader(http.StatusOK)
	}
	room := c.limit - c.written
	if room <= 0 {
		_ = http.NewResponseController(c.statusWriter).Flush()
		return 0, errCut
	}
	if int64(len(p)) > room {
		p = p[:room]
	}
	n, err := c.statusWriter.Write(p)
	c.written += int64(n)
	if err == nil && c.written >= c.limit {
		_ = http.NewResponseController(c.statusWriter).Flush()
		return n, errCut
	}
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (c *cutWriter) Unwrap() http.ResponseWriter { return c.statusWriter }
