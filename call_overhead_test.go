package runnerapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"

	"github.com/runnerapi/runnerapi/internal/benchanswers"
	"github.com/runnerapi/runnerapi/internal/handwritten"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The per-call overhead of Register, Update and v4's Request and Update, measured over loopback against a server
// that allocates nothing per request: testing's allocation counts are the whole process's, so they are then the
// client's alone, as in the benchmark harness, whose server runs in another process. The answers are the
// harness's build and job (internal/benchanswers).

// cannedServer answers HTTP/1.1 requests on loopback with fixed bytes, chosen by method and path, reading each
// request into one buffer per connection: no allocation per request once a connection is open.
type cannedServer struct {
	ln      net.Listener
	answers map[string][]byte // "METHOD /path" without the build ID's digits, to the whole answer
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   []net.Conn
}

func newCannedServer(t testing.TB) *cannedServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &cannedServer{ln: ln, answers: map[string][]byte{
		"POST /ci/api/v1/builds/register": cannedAnswer("201 Created", "", overheadBuildJSON(t)),
		"PUT /ci/api/v1/builds/#":         cannedAnswer("200 OK", "", []byte("true")),
		"POST /api/v4/jobs/request":       cannedAnswer("201 Created", "", overheadJobJSON(t)),
		"PUT /api/v4/jobs/#":              cannedAnswer("200 OK", "Job-Status: running\r\n", []byte(`"OK"`)),
	}}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.close)
	return s
}

func cannedAnswer(status, header string, body []byte) []byte {
	head := "HTTP/1.1 " + status + "\r\nContent-Type: application/json\r\n" + header +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
	return append([]byte(head), body...)
}

func (s *cannedServer) url() string { return "http://" + s.ln.Addr().String() }

func (s *cannedServer) close() {
	_ = s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *cannedServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serve(c)
	}
}

// serve answers the requests of one connection until it closes or sends something it does not expect.
func (s *cannedServer) serve(c net.Conn) {
	defer s.wg.Done()
	defer c.Close()
	br := bufio.NewReaderSize(c, 64<<10)
	key := make([]byte, 0, 256)
	notFound := cannedAnswer("404 Not Found", "", []byte(`{"message":"404 Not Found"}`))
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return
		}
		// "METHOD /path HTTP/1.1": the key is method and path, a run of digits standing as "#".
		end := bytes.LastIndexByte(line, ' ')
		if end < 0 {
			return
		}
		key = key[:0]
		for i, b := range line[:end] {
			if '0' <= b && b <= '9' && i > 0 && line[i-1] == '/' {
				key = append(key, '#')
				continue
			}
			if '0' <= b && b <= '9' && len(key) > 0 && key[len(key)-1] == '#' {
				continue
			}
			key = append(key, b)
		}
		length := 0
		for {
			h, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(h) <= 2 {
				break
			}
			const cl = "content-length:"
			if len(h) > len(cl) && bytes.EqualFold(h[:len(cl)], []byte(cl)) {
				for _, b := range bytes.TrimSpace(h[len(cl):]) {
					length = length*10 + int(b-'0')
				}
			}
		}
		if _, err := br.Discard(length); err != nil {
			return
		}
		answer, ok := s.answers[string(key)]
		if !ok {
			answer = notFound
		}
		if _, err := c.Write(answer); err != nil {
			return
		}
	}
}

// overheadBuildJSON is the build the benchmark harness's server answers register with.
func overheadBuildJSON(t testing.TB) []byte {
	b, err := json.Marshal(benchanswers.Build(1, "build-token-0123456789"))
	require.NoError(t, err)
	return b
}

// overheadJobJSON is the job the benchmark harness's server answers a v4 job request with.
func overheadJobJSON(t testing.TB) []byte {
	b, err := json.Marshal(benchanswers.Job(1, "build-token-0123456789"))
	require.NoError(t, err)
	return b
}

// overheadCall is one call through one client, made again and again.
type overheadCall struct {
	name string
	run  func(ctx context.Context) error
}

// overheadCalls are the SDK's calls and the same requests made by the hand-written clients the benchmark harness
// measures too (internal/handwritten), each client on a transport of its own (a clone of http.DefaultTransport, as
// the harness's), against s.
func overheadCalls(t testing.TB, s *cannedServer) []overheadCall {
	t.Helper()
	const runnerToken, jobToken = "runner-token-0123456789", "build-token-0123456789"
	info := RunnerInfo{Name: "bench-runner", Version: "1.0.0", Revision: "0123abcd", Platform: "linux", Architecture: "amd64"}
	transport := func() *http.Transport {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.Proxy = nil
		t.Cleanup(tr.CloseIdleConnections)
		return tr
	}
	v1, err := NewClient(s.url(), WithRunnerToken(runnerToken), WithHTTPClient(&http.Client{Transport: transport()}))
	require.NoError(t, err)
	v4, err := NewClient(s.url(), WithAPI(APIv4), WithRunnerToken(runnerToken), WithBuildToken(jobToken),
		WithHTTPClient(&http.Client{Transport: transport()}))
	require.NoError(t, err)
	hand := &handwritten.Client{HTTP: &http.Client{Transport: transport()}, Base: s.url(), RunnerToken: runnerToken,
		UserAgent: DefaultUserAgent, Info: handwritten.Info(info)}
	handV4 := &handwritten.ClientV4{HTTP: &http.Client{Transport: transport()}, Base: s.url(), RunnerToken: runnerToken,
		JobToken: jobToken, SystemID: "s_0123456789ab", UserAgent: DefaultUserAgent, Info: handwritten.Info(info)}
	ropts := &RegisterOptions{Info: info}
	uopts := &UpdateOptions{State: StateRunning}
	jropts := &JobRequestOptions{SystemID: handV4.SystemID, Info: info}
	juopts := &JobUpdateOptions{State: StateRunning}
	return []overheadCall{
		{"Register/SDK", func(ctx context.Context) error {
			b, _, err := v1.Builds.Register(ctx, ropts)
			if err == nil && (b == nil || b.ID == 0) {
				return fmt.Errorf("no build")
			}
			return err
		}},
		{"Register/hand", func(ctx context.Context) error {
			b, err := hand.Register(ctx)
			if err == nil && b.ID == 0 {
				return fmt.Errorf("no build")
			}
			return err
		}},
		{"Update/SDK", func(ctx context.Context) error {
			_, err := v1.Builds.Update(ctx, 4242, uopts)
			return err
		}},
		{"Update/hand", func(ctx context.Context) error {
			return hand.Update(ctx, 4242, "running")
		}},
		{"JobsRequest/SDK", func(ctx context.Context) error {
			j, _, err := v4.Jobs.Request(ctx, jropts)
			if err == nil && (j == nil || j.ID == 0) {
				return fmt.Errorf("no job")
			}
			return err
		}},
		{"JobsRequest/hand", func(ctx context.Context) error {
			j, err := handV4.Request(ctx)
			if err == nil && j.ID == 0 {
				return fmt.Errorf("no job")
			}
			return err
		}},
		{"JobsUpdate/SDK", func(ctx context.Context) error {
			_, _, err := v4.Jobs.Update(ctx, 4242, juopts)
			return err
		}},
		{"JobsUpdate/hand", func(ctx context.Context) error {
			return handV4.Update(ctx, 4242, "running")
		}},
	}
}

// BenchmarkCallOverhead measures each call through the SDK and, where there is one, by hand:
// go test -run '^$' -bench CallOverhead -count 6 | benchstat -col /client -
func BenchmarkCallOverhead(b *testing.B) {
	s := newCannedServer(b)
	// A context that can end, as a runner's (signal.NotifyContext) and the harness's: watches on it cost what
	// they cost there.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, c := range overheadCalls(b, s) {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := c.run(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestCallAllocations bounds the allocations of one call through the SDK by those of the same request made by hand
// (internal/handwritten, the benchmark harness's reference), both through a clone of http.DefaultTransport, in a
// context that can end, against a server that allocates nothing per request. Measured with go1.26: Register 150
// against 149 by hand, Update 68 against 66, v4's Jobs.Update 72 against 66 and Jobs.Request 161 against 158.
// Before a job whose objects hold only their keys was decoded in one pass, and a build's options without a
// json.Decoder: Register 155, Jobs.Request 261. Before the register attempt's grace, gate and timeout shared one
// context, the SDK built its requests from their bytes and decoded a job's objects as plain structs when it could:
// Register 194, Update 78, Jobs.Update 84, Jobs.Request 1,029. The race detector adds a few to both (Register 155
// against 154, Jobs.Request 168 against 165).
func TestCallAllocations(t *testing.T) {
	s := newCannedServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	allocs := map[string]float64{}
	for _, c := range overheadCalls(t, s) {
		require.NoError(t, c.run(ctx), "%s: the first call, which opens the connection", c.name)
		allocs[c.name] = testing.AllocsPerRun(200, func() {
			if err := c.run(ctx); err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
		})
	}
	t.Logf("allocations per call: %v", allocs)
	// The margins leave room for the few allocations the race detector and a loaded machine add to one side more
	// than to the other (Jobs.Request 169 against 164 under -race with both cores busy), and still fail on the
	// regressions above.
	for call, extra := range map[string]float64{"Register": 5, "Update": 5, "JobsUpdate": 10, "JobsRequest": 8} {
		sdk, hand := allocs[call+"/SDK"], allocs[call+"/hand"]
		require.NotZero(t, hand, call)
		assert.LessOrEqual(t, sdk, hand+extra, "%s: %.0f allocations through the SDK, %.0f by hand", call, sdk, hand)
	}
}

// BenchmarkDecodeOverhead measures the decoding alone of the answers BenchmarkCallOverhead's calls get, by the SDK
// (as its client decodes them: from the whole body when it says its length, as it streams when it does not, as a
// chunked body) and into the hand-written clients' plain structs, and by the SDK one object at a time, as it did
// before it decoded a job whole:
// go test -run '^$' -bench DecodeOverhead -count 8 | benchstat -col /decoder -
func BenchmarkDecodeOverhead(b *testing.B) {
	build, job := overheadBuildJSON(b), overheadJobJSON(b)
	for _, c := range []struct {
		name string
		data []byte
		v    func() any
		mode int32
	}{
		{"Register", build, func() any { return new(Build) }, plainWhole},
		{"Register", build, func() any { return new(handwritten.Build) }, plainWhole},
		{"JobsRequest", job, func() any { return new(Job) }, plainWhole},
		{"JobsRequest", job, func() any { return new(Job) }, plainShallow},
		{"JobsRequest", job, func() any { return new(handwritten.Job) }, plainWhole},
	} {
		decoder := "SDK"
		if _, hand := c.v().(*Job); !hand {
			if _, hand = c.v().(*Build); !hand {
				decoder = "hand"
			}
		}
		if c.mode == plainShallow {
			decoder = "objects"
		}
		for _, body := range []string{"length", "chunked"} {
			length := int64(len(c.data))
			if body == "chunked" {
				length = -1
			}
			b.Run(c.name+"/body="+body+"/decoder="+decoder, func(b *testing.B) {
				b.ReportAllocs()
				withPlainDecoding(c.mode, func() {
					for b.Loop() {
						if err := decodeJSON(bytes.NewReader(c.data), length, c.v()); err != nil {
							b.Fatal(err)
						}
					}
				})
			})
		}
	}
}
