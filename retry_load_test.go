package runnerapi

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// herdServer refuses the first request of each of n clients with a 503 and a Retry-After, all at once once every
// client has asked, and stamps each retry with the time it arrives by its own clock.
type herdServer struct {
	n          int
	retryAfter func(refused time.Time) string

	mu       sync.Mutex
	first    map[string]bool
	arrived  int
	all      chan struct{} // closed when every client's first request is in
	refused  time.Time     // when the refusals went out
	header   string        // the Retry-After they carried
	arrivals []time.Time
}

func newHerdServer(n int, retryAfter func(time.Time) string) *herdServer {
	return &herdServer{n: n, retryAfter: retryAfter, first: make(map[string]bool), all: make(chan struct{})}
}

func (s *herdServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Path
	s.mu.Lock()
	if !s.first[id] {
		s.first[id] = true
		s.arrived++
		if s.arrived == s.n {
			s.refused = time.Now()
			s.header = s.retryAfter(s.refused)
			close(s.all)
		}
		s.mu.Unlock()
		select {
		case <-s.all:
		case <-r.Context().Done():
			return
		}
		s.mu.Lock()
		ra := s.header
		s.mu.Unlock()
		w.Header().Set("Retry-After", ra)
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	s.arrivals = append(s.arrivals, time.Now())
	s.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// pauseWatch records when the process left a goroutine that asked to run every millisecond waiting, and for how
// long: while the process (or its scheduler) is held up, requests are stamped late, and then together.
type pauseWatch struct {
	stop chan struct{}
	done chan []pause
}

// pause is a time the watchdog was kept waiting: length, ending at end.
type pause struct {
	end    time.Time
	length time.Duration
}

func startPauseWatch() *pauseWatch {
	p := &pauseWatch{stop: make(chan struct{}), done: make(chan []pause, 1)}
	go func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		var pauses []pause
		last := time.Now()
		for {
			select {
			case <-p.stop:
				p.done <- pauses
				return
			case <-tick.C:
				now := time.Now()
				if d := now.Sub(last) - time.Millisecond; d > time.Millisecond {
					pauses = append(pauses, pause{end: now, length: d})
				}
				last = now
			}
		}
	}()
	return p
}

// longestBetween ends the watch and returns its longest pause that ended between from and to.
func (p *pauseWatch) longestBetween(from, to time.Time) time.Duration {
	close(p.stop)
	var longest time.Duration
	for _, q := range <-p.done {
		if !q.end.Before(from) && !q.end.After(to) {
			longest = max(longest, q.length)
		}
	}
	return longest
}

// busiestWindow returns the most arrivals within any window of length w.
func busiestWindow(arrivals []time.Time, w time.Duration) int {
	sorted := slices.Clone(arrivals)
	slices.SortFunc(sorted, func(a, b time.Time) int { return a.Compare(b) })
	most, j := 0, 0
	for i := range sorted {
		for sorted[i].Sub(sorted[j]) >= w {
			j++
		}
		most = max(most, i-j+1)
	}
	return most
}

// herdRun refuses clients together, each with its own Client and connection, with the Retry-After form makes,
// and returns when their retries arrived, when they were refused, with what, and the longest pause of the process
// while the retries came.
func herdRun(t *testing.T, clients int, form func(refused time.Time) string) (arrivals []time.Time, refused time.Time, header string, pause time.Duration) {
	herd := newHerdServer(clients, form)
	srv := httptest.NewServer(herd)
	defer srv.Close()
	policy := RetryPolicy{MaxRetries: 1, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond, MaxRetryAfter: time.Minute}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	watch := startPauseWatch()
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for i := range clients {
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		c, err := NewClient(srv.URL, WithHTTPClient(&http.Client{Transport: tr}), WithRunnerToken(testRunnerToken),
			WithRetryPolicy(policy))
		require.NoError(t, err)
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Builds.Update(ctx, int64(i+1), &UpdateOptions{State: StateSuccess})
			if err == nil && resp.Attempts != 2 {
				err = fmt.Errorf("client %d: %d attempts", i, resp.Attempts)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	herd.mu.Lock()
	arrivals, refused, header = herd.arrivals, herd.refused, herd.header
	herd.mu.Unlock()
	require.Len(t, arrivals, clients)
	return arrivals, refused, header, watch.longestBetween(refused, slices.MaxFunc(arrivals, time.Time.Compare))
}

// TestRetryAfterSpreadsTheHerd refuses 1,000 runners together with a Retry-After and looks at when their retries
// arrive: spread over the second after the one asked for, not in one burst.
//
// Why load cannot make this flaky: the arrivals are stamped by the server when each retry reaches it, and the
// spread comes from the waits the clients drew, a second wide. Load only ever delays a retry; it never brings one
// forward, and delays that differ from one retry to the next widen the spread. What could bunch retries together
// is a pause of the whole process, after which those that fell due meanwhile are stamped at once: a watchdog
// measures the longest pause of the run, and the bound grows by the share of retries due within it (a pause of p
// bunches at most about p/1s of them). The bound is generous: a window of 50 ms expects 5% of the retries, and 10%
// is over seven standard deviations above that. Without the jitter every retry falls in the same few milliseconds
// (the time the refusals took to go out), so the test tells the two apart by a factor of ten. A run paused for so
// long (400 ms) that the bound would reach half of the retries cannot tell them apart: it is run again, up to three
// times, and the test skips, saying so, only if every run was paused that long.
func TestRetryAfterSpreadsTheHerd(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 2,000 requests over about four seconds")
	}
	const (
		clients = 1000
		window  = 50 * time.Millisecond
		runs    = 3
	)
	forms := map[string]func(refused time.Time) string{
		"seconds": func(time.Time) string { return "1" },
		// A date names a whole second: one at least a second away, so that every client still has to wait.
		"http date": func(refused time.Time) string { return refused.Add(2 * time.Second).UTC().Format(http.TimeFormat) },
	}
	for name, form := range forms {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for run := 1; run <= runs; run++ {
				arrivals, refused, header, pause := herdRun(t, clients, form)
				// Retry-After is honoured: load delays retries, it cannot make one early.
				var notBefore time.Time
				if date, err := http.ParseTime(header); err == nil {
					notBefore = date.Add(-10 * time.Millisecond) // a wall clock's reading, against the monotonic one
				} else {
					secs, err := strconv.Atoi(strings.TrimSpace(header))
					require.NoError(t, err)
					notBefore = refused.Add(time.Duration(secs) * time.Second)
				}
				for _, a := range arrivals {
					require.False(t, a.Before(notBefore), "a retry came %v before Retry-After allowed", notBefore.Sub(a))
				}
				first, last := slices.MinFunc(arrivals, time.Time.Compare), slices.MaxFunc(arrivals, time.Time.Compare)
				busiest := busiestWindow(arrivals, window)
				allowed := clients/10 + int(int64(clients)*int64(pause)/int64(time.Second))
				t.Logf("run %d, Retry-After %q: retries over %v, at most %d in %v (allowed %d; longest pause %v)",
					run, header, last.Sub(first).Round(time.Millisecond), busiest, window, allowed, pause.Round(time.Millisecond))
				if allowed >= clients/2 {
					continue // too paused to tell
				}
				if !assert.LessOrEqual(t, busiest, allowed, "the retries came back in lockstep") {
					bins := make([]int, last.Sub(first)/window+1)
					for _, a := range arrivals {
						bins[a.Sub(first)/window]++
					}
					t.Logf("retries per %v from the first: %v", window, bins)
				}
				return
			}
			t.Skipf("the process was paused for more than 400ms in each of %d runs: too loaded to tell a spread from a herd", runs)
		})
	}
}
