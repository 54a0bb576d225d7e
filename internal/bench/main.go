// Command bench measures the runnerapi SDK side by side with curl, hand-written net/http clients and the physical
// ceiling of a transfer, on loopback, in one invocation: artifact upload and download, trace streaming, masking
// many secrets, many trace writers at once, an upload refused on its headers, and the per-call overhead of
// Register and Update. Run it from the repository root:
//
//	go run ./internal/bench          # full mode: 1 GiB transfers, 256 MiB trace, 7 alternated runs
//	go run ./internal/bench -quick   # CI mode: small sizes, 3 runs, well under a minute
//
// Every contender runs in a child process of its own, started by a small launcher process, so its wall time and
// peak RSS come from that child's rusage.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case launcherCmd:
			os.Exit(launcherMain())
		case childCmd:
			os.Exit(childMain(os.Args[2:]))
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := harnessMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// The tokens of the benchmark's builds; they guard nothing but prove the contenders send them.
const (
	benchBuildToken  = "bench-build-token-0123456789abcdef"
	benchRunnerToken = "bench-runner-token-0123456789abcdef"
)

// config is what one invocation measures.
type config struct {
	Mode      string        `json:"mode"`
	Size      int64         `json:"size"`
	TraceSize int64         `json:"trace_size"`
	Runs      int           `json:"runs"`
	Warmup    int           `json:"warmup"`
	BenchTime string        `json:"benchtime"`
	Only      []string      `json:"only,omitempty"`
	JSONPath  string        `json:"-"`
	Timeout   time.Duration `json:"-"`
}

var scenarioNames = []string{"upload", "download", "trace", "mask", "concurrent", "toolarge", "overhead"}

func (c config) wants(name string) bool {
	if len(c.Only) == 0 {
		return true
	}
	for _, n := range c.Only {
		if n == name {
			return true
		}
	}
	return false
}

func parseConfig(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quick := fs.Bool("quick", false, "CI mode: small sizes and few runs, well under a minute")
	size := fs.String("size", "", "upload and download size (default 1GiB, quick 64MiB)")
	traceSize := fs.String("trace-size", "", "trace size (default 256MiB, quick 16MiB)")
	runs := fs.Int("runs", 0, "measured runs per contender (default 7, quick 3)")
	warmup := fs.Int("warmup", -1, "unmeasured rounds first (default 1, quick 0)")
	benchTime := fs.String("benchtime", "", "testing -benchtime of each overhead measurement (default 1s, quick 100ms)")
	only := fs.String("only", "", "comma-separated scenarios to run: "+strings.Join(scenarioNames, ","))
	jsonPath := fs.String("json", "", "also write the raw results to this file")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: go run ./internal/bench [-quick] [-json FILE] [flags]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	c := config{Mode: "full", Size: 1 << 30, TraceSize: 256 << 20, Runs: 7, Warmup: 1, BenchTime: "1s", Timeout: 10 * time.Minute}
	if *quick {
		c = config{Mode: "quick", Size: 64 << 20, TraceSize: 16 << 20, Runs: 3, Warmup: 0, BenchTime: "100ms", Timeout: time.Minute}
	}
	var err error
	if *size != "" {
		if c.Size, err = parseSize(*size); err != nil {
			return config{}, fmt.Errorf("-size: %w", err)
		}
	}
	if *traceSize != "" {
		if c.TraceSize, err = parseSize(*traceSize); err != nil {
			return config{}, fmt.Errorf("-trace-size: %w", err)
		}
	}
	if *runs < 0 {
		return config{}, errors.New("-runs must not be negative")
	}
	if *runs > 0 {
		c.Runs = *runs
	}
	if *warmup >= 0 {
		c.Warmup = *warmup
	}
	if *benchTime != "" {
		c.BenchTime = *benchTime
	}
	if *only != "" {
		for _, n := range strings.Split(*only, ",") {
			n = strings.TrimSpace(n)
			if !contains(scenarioNames, n) {
				return config{}, fmt.Errorf("-only: unknown scenario %q (have %s)", n, strings.Join(scenarioNames, ","))
			}
			c.Only = append(c.Only, n)
		}
	}
	if *size != "" || *traceSize != "" || *runs > 0 || *warmup >= 0 || *benchTime != "" {
		c.Mode += " (custom)"
	}
	c.JSONPath = *jsonPath
	return c, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// parseSize reads a byte count such as 1073741824, 64MiB, 1GiB or 512KiB.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > (1<<50)/mult {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}

// harness is the state of one invocation.
type harness struct {
	cfg      config
	exe      string
	dir      string
	srv      *benchServer
	baseURL  string
	launcher *launcher
	tls      *tlsServers // the concurrent scenario's servers behind TLS
	out      io.Writer
	errOut   io.Writer

	dataPath string
	dataCRC  uint32
	nextID   int64
}

// harnessMain runs every selected scenario and prints the report; it returns the process's exit code.
func harnessMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseConfig(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}
	rep, err := runHarness(ctx, cfg, stdout, stderr)
	if rep != nil && cfg.JSONPath != "" {
		if werr := writeJSON(cfg.JSONPath, rep); werr != nil {
			fmt.Fprintln(stderr, "bench: writing -json:", werr)
			return 1
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "bench: FAILED:", err)
		return 1
	}
	if len(rep.Failures) > 0 {
		fmt.Fprintf(stdout, "\nFAILED: %d problem(s):\n", len(rep.Failures))
		for _, f := range rep.Failures {
			fmt.Fprintln(stdout, "  -", f)
		}
		return 1
	}
	fmt.Fprintln(stdout, "\nOK: every contender ran and every transfer was verified.")
	return 0
}

func writeJSON(path string, rep *report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// runHarness sets up the server, the launcher and the data, then runs the scenarios. Temporary files are removed
// whatever happens.
func runHarness(ctx context.Context, cfg config, stdout, stderr io.Writer) (*report, error) {
	needCurl := cfg.wants("upload") || cfg.wants("download") || cfg.wants("toolarge")
	var curlVersion string
	if needCurl {
		path, err := exec.LookPath("curl")
		if err != nil {
			return nil, errors.New("curl not found in PATH: it is the reference of the upload and download " +
				"scenarios, so the harness cannot run them (install curl, e.g. apt-get install curl, or pass " +
				"-only trace,mask,concurrent,overhead)")
		}
		if v, err := exec.Command(path, "--version").Output(); err == nil {
			curlVersion, _, _ = strings.Cut(string(v), "\n")
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding the harness's own executable: %w", err)
	}
	dir, err := os.MkdirTemp("", "runnerapi-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	h := &harness{cfg: cfg, exe: exe, dir: dir, out: stdout, errOut: stderr, nextID: 1000}
	rep := &report{Config: cfg, Machine: describeMachine(), CurlVersion: curlVersion, Date: time.Now().UTC().Format(time.RFC3339),
		Server: serverDescription, Failures: []string{}}

	if needCurl {
		h.dataPath = filepath.Join(dir, "artifacts.zip")
		start := time.Now()
		if h.dataCRC, err = generateFile(h.dataPath, cfg.Size); err != nil {
			return nil, fmt.Errorf("generating the artifact: %w", err)
		}
		fmt.Fprintf(stderr, "bench: generated %s in %v\n", formatBytes(cfg.Size), time.Since(start).Round(time.Millisecond))
	}
	h.srv = newBenchServer(benchBuildToken, benchRunnerToken, h.dataPath)
	base, stopServer, err := h.srv.start()
	if err != nil {
		return nil, err
	}
	defer stopServer()
	h.baseURL = base

	// The launcher gets an environment without proxies, so curl talks to the loopback server directly.
	env := proxyFreeEnv()
	if cfg.wants("concurrent") {
		ts, err := h.srv.startTLS(dir)
		if err != nil {
			return nil, fmt.Errorf("starting the TLS servers: %w", err)
		}
		defer ts.close()
		h.tls = ts
		env = append(env, "SSL_CERT_FILE="+ts.CAFile)
	}
	l, err := startLauncherEnv(exe, env)
	if err != nil {
		return nil, err
	}
	defer l.close()
	h.launcher = l
	rep.RSSFloorKiB = h.rssFloor(ctx)

	printHeader(stdout, rep)
	for _, name := range scenarioNames {
		if !cfg.wants(name) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		var sr *scenarioResult
		switch name {
		case "upload":
			sr = h.runProcessScenario(ctx, h.uploadScenario())
		case "download":
			sr = h.runProcessScenario(ctx, h.downloadScenario())
		case "trace":
			sr = h.runProcessScenario(ctx, h.traceScenario())
		case "mask":
			sr = h.runProcessScenario(ctx, h.maskScenario())
		case "concurrent":
			sr = h.runProcessScenario(ctx, h.manyScenario())
		case "toolarge":
			sr = h.runProcessScenario(ctx, h.tooLargeScenario())
		case "overhead":
			sr = h.runOverhead(ctx)
		}
		rep.Scenarios = append(rep.Scenarios, sr)
		rep.Failures = append(rep.Failures, sr.Failures...)
		printScenario(stdout, sr)
	}
	return rep, ctx.Err()
}

// proxyFreeEnv is the harness's environment without proxy settings.
func proxyFreeEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToLower(k) {
		case "http_proxy", "https_proxy", "all_proxy", "no_proxy":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// rssFloor is the ru_maxrss of `true` started by the launcher: the least any contender can show.
func (h *harness) rssFloor(ctx context.Context) int64 {
	path, err := exec.LookPath("true")
	if err != nil {
		return 0
	}
	res, err := h.launcher.run(ctx, []string{path}, 10*time.Second)
	if err != nil || res.ExitCode != 0 {
		return 0
	}
	return res.MaxRSSKiB
}

// generateFile writes size bytes from a seeded ChaCha8 stream to path, syncs it, and returns their CRC-32C.
func generateFile(path string, size int64) (uint32, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	rng := rand.NewChaCha8([32]byte{'r', 'u', 'n', 'n', 'e', 'r', 'a', 'p', 'i'})
	buf := make([]byte, 1<<20)
	cw := &crcWriter{}
	for left := size; left > 0; {
		b := buf[:min(int64(len(buf)), left)]
		_, _ = rng.Read(b)
		_, _ = cw.Write(b)
		if _, err := f.Write(b); err != nil {
			_ = f.Close()
			return 0, err
		}
		left -= int64(len(b))
	}
	// Flushed now, so the kernel's writeback of these pages does not compete with the measured runs.
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return 0, err
	}
	return cw.crc, f.Close()
}

// fileCRC reads path and returns its length and CRC-32C.
func fileCRC(path string) (int64, uint32, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	cw := &crcWriter{}
	_, err = io.CopyBuffer(cw, struct{ io.Reader }{f}, make([]byte, 1<<20))
	return cw.n, cw.crc, err
}

// processScenario describes a scenario whose contenders are processes.
type processScenario struct {
	Name, Title, Target string
	Kind                scenarioKind
	Bytes               int64
	Contenders          []contender
	// ThroughputFromTransfer takes MB/s from the child's own transfer time rather than its process wall time.
	ThroughputFromTransfer bool
	params                 func(c contender, id int64) childParams
	// verify checks one run of contender c after it exited 0 and returns the requests to report.
	verify func(c contender, p childParams, out childOutput, r *runResult) error
	// judge says whether an SDK contender meets the target, given its and the reference's summaries.
	judge func(c, ref summary) (bool, string)
}

func (h *harness) baseParams(id int64) childParams {
	return childParams{URL: h.baseURL, BuildToken: benchBuildToken, RunnerToken: benchRunnerToken, ID: id, Runs: 1,
		BenchTime: h.cfg.BenchTime}
}

func (h *harness) uploadScenario() processScenario {
	return processScenario{
		Name: "upload", Kind: kindTransfer, Title: fmt.Sprintf("Artifact upload of %s (POST .../artifacts, multipart)", formatBytes(h.cfg.Size)),
		Target: "SDK wall time <= 1.05x curl's, SDK peak RSS < 32 MiB", Bytes: h.cfg.Size, Contenders: uploadContenders,
		params: func(c contender, id int64) childParams {
			p := h.baseParams(id)
			p.Path, p.Size = h.dataPath, h.cfg.Size
			return p
		},
		verify: func(c contender, p childParams, _ childOutput, r *runResult) error {
			if c.Ceiling {
				if got := h.srv.rawReceived.Load(); got != p.Size {
					return fmt.Errorf("the ceiling's server received %d bytes; want %d", got, p.Size)
				}
				r.Note = "server counted every byte"
				return nil
			}
			ups := h.srv.takeUploads()
			if len(ups) == 0 {
				return errors.New("the server received no upload")
			}
			last := ups[len(ups)-1]
			if last.ID != p.ID || last.Size != p.Size || last.CRC != h.dataCRC {
				return fmt.Errorf("the server received build %d, %d bytes, CRC-32C %08x; want build %d, %d bytes, %08x",
					last.ID, last.Size, last.CRC, p.ID, p.Size, h.dataCRC)
			}
			if last.Filename == "" {
				return errors.New("the file part has no filename")
			}
			r.Note = fmt.Sprintf("server got %d bytes as %q, CRC ok", last.Size, last.Filename)
			return nil
		},
		judge: judgeTransfer,
	}
}

func (h *harness) downloadScenario() processScenario {
	return processScenario{
		Name: "download", Kind: kindTransfer, Title: fmt.Sprintf("Artifact download of %s (GET .../artifacts)", formatBytes(h.cfg.Size)),
		Target: "SDK wall time <= 1.05x curl's, SDK peak RSS < 32 MiB", Bytes: h.cfg.Size, Contenders: downloadContenders,
		params: func(c contender, id int64) childParams {
			p := h.baseParams(id)
			p.Path, p.Size = filepath.Join(h.dir, fmt.Sprintf("download-%d.zip", id)), h.cfg.Size
			return p
		},
		verify: func(_ contender, p childParams, _ childOutput, r *runResult) error {
			defer os.Remove(p.Path)
			n, crc, err := fileCRC(p.Path)
			if err != nil {
				return fmt.Errorf("reading the download: %w", err)
			}
			if n != p.Size || crc != h.dataCRC {
				return fmt.Errorf("downloaded %d bytes with CRC-32C %08x; want %d bytes, %08x", n, crc, p.Size, h.dataCRC)
			}
			leftovers, _ := filepath.Glob(filepath.Join(h.dir, ".download-*"))
			if len(leftovers) > 0 {
				for _, f := range leftovers {
					_ = os.Remove(f)
				}
				return fmt.Errorf("left %d temporary file(s) beside the destination", len(leftovers))
			}
			r.Note = "size and CRC ok"
			return nil
		},
		judge: judgeTransfer,
	}
}

func (h *harness) traceScenario() processScenario {
	want := traceCRC(h.cfg.TraceSize)
	maxReq := (h.cfg.TraceSize+tracePartSize-1)/tracePartSize + 2
	return processScenario{
		Name: "trace", Kind: kindTrace, Title: fmt.Sprintf("Trace of %s as 100-byte lines (PATCH .../trace.txt; v4: .../trace, inclusive END)", formatBytes(h.cfg.TraceSize)),
		Target: fmt.Sprintf("TraceWriter MB/s >= 95%% of the ceiling's and CPU per GiB (client and server) <= 1.3x its, "+
			"<= %d requests; for 0 allocs per Write, the whole process's mallocs per line written (sender included) "+
			"< 0.01. Time: the child's own, first Write to Close", maxReq),
		Bytes: h.cfg.TraceSize, Contenders: traceContenders, ThroughputFromTransfer: true,
		params: func(c contender, id int64) childParams {
			p := h.baseParams(id)
			p.Size = h.cfg.TraceSize
			if c.Builds != 0 {
				p.Builds = int(max(1, h.cfg.TraceSize/traceBuildSize))
			}
			return p
		},
		verify: func(_ contender, p childParams, out childOutput, r *runResult) error {
			if out.TransferNS <= 0 {
				return errors.New("the contender reported no transfer time")
			}
			ids, size, crc := []int64{p.ID}, p.Size, want
			if p.Builds > 0 {
				ids, size = nil, p.Size/int64(p.Builds)
				for i := range p.Builds {
					ids = append(ids, manyWriterID(p.ID, i))
				}
				crc = traceCRC(size)
			}
			var accepted, rejected int64
			for _, id := range ids {
				length, got, a, rj := h.srv.traceOf(id)
				if length != size || got != crc {
					return fmt.Errorf("the server holds %d bytes with CRC-32C %08x for build %d; want %d bytes, %08x", length, got, id, size, crc)
				}
				accepted, rejected = accepted+a, rejected+rj
			}
			r.Requests = accepted + rejected
			r.Note = fmt.Sprintf("%d build(s), %d accepted, %d answered 416; trace sizes and CRCs ok", len(ids), accepted, rejected)
			return nil
		},
		judge: func(c, ref summary) (bool, string) {
			cpu := c.CPUPerGiB / ref.CPUPerGiB
			ok := c.MBps >= 0.95*ref.MBps && cpu <= 1.3 && c.Requests <= float64(maxReq) && c.MallocsPerWrite < 0.01
			return ok, fmt.Sprintf("%.0f%% of ceiling, %.2fx its CPU, %.0f requests, %.4f mallocs/line",
				100*c.MBps/ref.MBps, cpu, c.Requests, c.MallocsPerWrite)
		},
	}
}

// traceBuildSize is the trace of each build of the trace scenario's many-builds contender.
const traceBuildSize = 4 << 20

// judgeTraceBuilds judges the many-builds contender on the trace targets of throughput and CPU; its requests and
// mallocs include each build's own (a writer, its first and last parts), which one long trace has once.
func judgeTraceBuilds(c, ref summary) (bool, string) {
	cpu := c.CPUPerGiB / ref.CPUPerGiB
	return c.MBps >= 0.95*ref.MBps && cpu <= 1.3, fmt.Sprintf("%.0f%% of ceiling, %.2fx its CPU", 100*c.MBps/ref.MBps, cpu)
}

func judgeTransfer(c, ref summary) (bool, string) {
	ratio := c.WallNS / ref.WallNS
	ok := ratio <= 1.05 && c.PeakRSSKiB < 32<<10
	return ok, fmt.Sprintf("%.3fx curl, %.1f MiB", ratio, float64(c.PeakRSSKiB)/1024)
}

// runProcessScenario runs every contender cfg.Runs times (after cfg.Warmup unmeasured rounds), alternating them
// run by run: A B A B ...
func (h *harness) runProcessScenario(ctx context.Context, sc processScenario) *scenarioResult {
	sr := &scenarioResult{Name: sc.Name, Kind: sc.Kind, Title: sc.Title, Target: sc.Target, Bytes: sc.Bytes,
		ThroughputFromTransfer: sc.ThroughputFromTransfer}
	judges := make([]func(c, ref summary) (bool, string), len(sc.Contenders))
	for i, c := range sc.Contenders {
		sr.Contenders = append(sr.Contenders, &contenderResult{Name: c.Name, Ref: c.Ref, SDK: c.SDK, Ceiling: c.Ceiling})
		judges[i] = sc.judge
		if c.judge != nil {
			judges[i] = c.judge
		}
	}
	for round := -h.cfg.Warmup; round < h.cfg.Runs; round++ {
		for i, c := range sc.Contenders {
			cr := sr.Contenders[i]
			if cr.Error != "" || ctx.Err() != nil {
				continue
			}
			r, err := h.runOnce(ctx, sc, c)
			if err != nil {
				cr.Error = err.Error()
				sr.Failures = append(sr.Failures, fmt.Sprintf("%s / %s: %v", sc.Name, c.Name, err))
				continue
			}
			if round >= 0 {
				cr.Runs = append(cr.Runs, r)
			}
			if cr.Command == "" {
				cr.Command = r.command
			}
			label := fmt.Sprintf("run %d/%d", round+1, h.cfg.Runs)
			if round < 0 {
				label = "warm-up"
			}
			fmt.Fprintf(h.errOut, "bench: %-8s %-28s %-9s %7.3fs wall %6.1f MiB\n", sc.Name, c.Name, label,
				float64(r.WallNS)/1e9, float64(r.MaxRSSKiB)/1024)
		}
	}
	summarize(sr, judges)
	return sr
}

// runOnce runs one contender once and verifies what it did.
func (h *harness) runOnce(ctx context.Context, sc processScenario, c contender) (runResult, error) {
	h.nextID++
	p := sc.params(c, h.nextID)
	if c.Ceiling {
		p.RawAddr = h.srv.rawAddr
	}
	argv := p.argv(h.exe, c.Child)
	if c.Argv != nil {
		argv = c.Argv(p)
	}
	h.srv.resetRun()
	cpu0 := selfCPU()
	res, err := h.launcher.run(ctx, argv, h.cfg.Timeout)
	cpu1 := selfCPU()
	if err != nil {
		return runResult{}, err
	}
	r := runResult{command: strings.Join(redactArgv(argv, h.exe), " "), WallNS: res.WallNS, MaxRSSKiB: res.MaxRSSKiB, ClientCPUNS: res.UserNS + res.SysNS,
		ServerCPUNS: (cpu1 - cpu0).Nanoseconds(), Requests: h.srv.requests.Load(), Conns: h.srv.conns.Load(), stdout: res.Stdout}
	if res.ExitCode != 0 || res.Err != "" {
		return r, fmt.Errorf("exit %d %s: %s", res.ExitCode, res.Err, firstLines(res.Stderr, 5))
	}
	if probs := h.srv.takeProblems(); len(probs) > 0 {
		return r, fmt.Errorf("the server refused requests: %s", strings.Join(probs, "; "))
	}
	var out childOutput
	if c.Argv == nil {
		if err := json.Unmarshal([]byte(lastLine(res.Stdout)), &out); err != nil {
			return r, fmt.Errorf("reading the contender's result %q: %w", firstLines(res.Stdout, 2), err)
		}
		r.TransferNS, r.Mallocs, r.Writes = out.TransferNS, out.Mallocs, out.Writes
		if out.Note != "" {
			r.Note = out.Note
		}
	}
	note := r.Note
	if err := sc.verify(c, p, out, &r); err != nil {
		return r, fmt.Errorf("verification: %w", err)
	}
	if note != "" && note != r.Note {
		r.Note = r.Note + "; " + note
	}
	return r, nil
}

// selfCPU is the harness process's CPU time so far: during a run, that is the server's.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// redactArgv shortens a command line for the report: the tokens masked, the harness's own path named.
func redactArgv(argv []string, exe string) []string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if a == exe {
			a = "bench"
		}
		a = strings.ReplaceAll(a, benchBuildToken, "$BUILD_TOKEN")
		a = strings.ReplaceAll(a, benchRunnerToken, "$RUNNER_TOKEN")
		if strings.ContainsAny(a, " $") {
			a = strconv.Quote(a)
		}
		out[i] = a
	}
	return out
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(strings.TrimSpace(s), "\n", n+1)
	if len(lines) > n {
		lines = append(lines[:n], "...")
	}
	return strings.Join(lines, " | ")
}

// runOverhead measures Register and Update through the SDK and by hand in one child, alternating within each
// round, and checks at the server that both clients sent byte-identical requests.
func (h *harness) runOverhead(ctx context.Context) *scenarioResult {
	sr := &scenarioResult{Name: "overhead", Kind: kindOverhead, Title: "Per-call overhead of Register and Update, and of v4's Jobs.Request and Jobs.Update (testing.Benchmark, -benchtime " + h.cfg.BenchTime + ")",
		Target: "SDK time/op <= 1.05x the hand-written client's"}
	fail := func(format string, args ...any) *scenarioResult {
		sr.Failures = append(sr.Failures, "overhead: "+fmt.Sprintf(format, args...))
		return sr
	}
	p := h.baseParams(overheadBuildID)
	p.Runs = h.cfg.Runs
	h.srv.resetRun()
	timeout := time.Duration(h.cfg.Runs)*4*20*time.Second + time.Minute
	res, err := h.launcher.run(ctx, p.argv(h.exe, "overhead"), timeout)
	if err != nil {
		return fail("%v", err)
	}
	if res.ExitCode != 0 || res.Err != "" {
		return fail("exit %d %s: %s", res.ExitCode, res.Err, firstLines(res.Stderr, 5))
	}
	if probs := h.srv.takeProblems(); len(probs) > 0 {
		return fail("the server refused requests: %s", strings.Join(probs, "; "))
	}
	var out childOutput
	if err := json.Unmarshal([]byte(lastLine(res.Stdout)), &out); err != nil {
		return fail("reading the result: %v", err)
	}
	sr.OverheadRuns = out.Overhead
	// Same request from both clients: the server must have seen exactly one shape per call.
	sigs := h.srv.takeSignatures()
	byCall := map[string][]string{}
	for s := range sigs {
		call := "Update"
		switch {
		case strings.Contains(s, "/builds/register"):
			call = "Register"
		case strings.HasPrefix(s, "POST /api/v4/jobs/request"):
			call = "v4 Jobs.Request"
		case strings.HasPrefix(s, "PUT /api/v4/jobs/"):
			call = "v4 Jobs.Update"
		}
		byCall[call] = append(byCall[call], s)
	}
	for _, call := range []string{"Register", "Update", "v4 Jobs.Request", "v4 Jobs.Update"} {
		shapes := byCall[call]
		sort.Strings(shapes)
		switch len(shapes) {
		case 1:
			sr.SameRequest = append(sr.SameRequest, call)
		case 0:
			return fail("the server saw no %s request", call)
		default:
			return fail("the SDK and the hand-written client sent different %s requests:\n%s", call, strings.Join(shapes, "\n---\n"))
		}
	}
	summarizeOverhead(sr)
	return sr
}

// startLauncherEnv starts the launcher with env as its environment, which its children inherit.
func startLauncherEnv(exe string, env []string) (*launcher, error) {
	return startLauncherWith(exe, func(cmd *exec.Cmd) { cmd.Env = env })
}
