package main

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
)

// report is everything one invocation measured; -json writes it.
type report struct {
	Date        string            `json:"date"`
	Config      config            `json:"config"`
	Machine     machine           `json:"machine"`
	CurlVersion string            `json:"curl_version,omitempty"`
	Server      string            `json:"server"`
	RSSFloorKiB int64             `json:"rss_floor_kib"`
	Scenarios   []*scenarioResult `json:"scenarios"`
	Failures    []string          `json:"failures"`
}

type machine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model"`
	MemTotal  string `json:"mem_total"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"go_version"`
	GOOSARCH  string `json:"goos_goarch"`
}

// scenarioKind says how a scenario's table is laid out.
type scenarioKind string

const (
	kindTransfer scenarioKind = "transfer"
	kindTrace    scenarioKind = "trace"
	kindMask     scenarioKind = "mask"
	kindMany     scenarioKind = "concurrent"
	kindTooLarge scenarioKind = "toolarge"
	kindOverhead scenarioKind = "overhead"
)

type scenarioResult struct {
	Name                   string             `json:"name"`
	Kind                   scenarioKind       `json:"kind"`
	Title                  string             `json:"title"`
	Target                 string             `json:"target"`
	Bytes                  int64              `json:"bytes,omitempty"`
	ThroughputFromTransfer bool               `json:"throughput_from_transfer,omitempty"`
	Contenders             []*contenderResult `json:"contenders,omitempty"`
	OverheadRuns           []overheadRun      `json:"overhead_runs,omitempty"`
	Overhead               []overheadSummary  `json:"overhead,omitempty"`
	SameRequest            []string           `json:"same_request_verified,omitempty"`
	Failures               []string           `json:"failures,omitempty"`
}

type contenderResult struct {
	Name    string      `json:"name"`
	Ref     bool        `json:"reference,omitempty"`
	SDK     bool        `json:"sdk,omitempty"`
	Ceiling bool        `json:"ceiling,omitempty"`
	Command string      `json:"command"`
	Runs    []runResult `json:"runs"`
	Error   string      `json:"error,omitempty"`
	Summary *summary    `json:"summary,omitempty"`
}

// runResult is one measured run of one contender.
type runResult struct {
	command     string
	stdout      string
	WallNS      int64  `json:"wall_ns"`
	MaxRSSKiB   int64  `json:"maxrss_kib"`
	ClientCPUNS int64  `json:"client_cpu_ns"`
	ServerCPUNS int64  `json:"server_cpu_ns"`
	Requests    int64  `json:"requests"`
	Conns       int64  `json:"connections_opened"`
	TransferNS  int64  `json:"transfer_ns,omitempty"`
	Mallocs     int64  `json:"mallocs,omitempty"`
	Writes      int64  `json:"writes,omitempty"`
	Note        string `json:"note,omitempty"`
}

// summary is a contender's medians (peak RSS: the largest of its runs) and its ratio to the reference.
type summary struct {
	WallNS          float64 `json:"median_wall_ns"`
	TransferNS      float64 `json:"median_transfer_ns,omitempty"`
	MBps            float64 `json:"mb_per_s"`
	PeakRSSKiB      int64   `json:"peak_rss_kib"`
	Requests        float64 `json:"median_requests"`
	ServerCPU       float64 `json:"median_server_cpu_fraction"`
	ClientCPU       float64 `json:"median_client_cpu_fraction"`
	MallocsPerWrite float64 `json:"mallocs_per_write,omitempty"`
	// CPUPerGiB is the median of the run's CPU seconds, client's and server's, per GiB of the scenario's bytes.
	CPUPerGiB float64 `json:"cpu_s_per_gib"`
	// Conns is the median count of connections the server saw opened; ConnsPer1000 the same per 1,000 requests.
	Conns        float64 `json:"median_connections_opened"`
	ConnsPer1000 float64 `json:"connections_per_1000_requests"`
	Ratio        float64 `json:"ratio"`
	// CPURatio is CPUPerGiB over the reference's (transfers: over the physical ceiling's).
	CPURatio float64 `json:"cpu_ratio,omitempty"`
	// CeilingRatio is a transfer's wall time over the physical ceiling's.
	CeilingRatio float64 `json:"ceiling_ratio,omitempty"`
	Target       string  `json:"target,omitempty"`
}

type overheadSummary struct {
	Call        string  `json:"call"`
	Client      string  `json:"client"`
	NsPerOp     float64 `json:"median_ns_per_op"`
	AllocsPerOp float64 `json:"median_allocs_per_op"`
	BytesPerOp  float64 `json:"median_bytes_per_op"`
	Ratio       float64 `json:"ratio"`
	Target      string  `json:"target,omitempty"`
}

// median of xs; xs is sorted in place.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	sort.Float64s(xs)
	m := len(xs) / 2
	if len(xs)%2 == 1 {
		return xs[m]
	}
	return (xs[m-1] + xs[m]) / 2
}

func medianOf(runs []runResult, f func(runResult) float64) float64 {
	xs := make([]float64, len(runs))
	for i, r := range runs {
		xs[i] = f(r)
	}
	return median(xs)
}

// summarize computes each contender's summary and its ratio to the reference: wall time for transfers, MB/s for
// the trace (ThroughputFromTransfer); CPU per GiB against the physical ceiling when the scenario has one, or the
// reference. judges[i], when not nil, judges SDK contender i.
func summarize(sr *scenarioResult, judges []func(c, ref summary) (bool, string)) {
	var ref, ceiling *summary
	for _, c := range sr.Contenders {
		if len(c.Runs) == 0 {
			continue
		}
		s := &summary{
			WallNS:     medianOf(c.Runs, func(r runResult) float64 { return float64(r.WallNS) }),
			TransferNS: medianOf(c.Runs, func(r runResult) float64 { return float64(r.TransferNS) }),
			Requests:   medianOf(c.Runs, func(r runResult) float64 { return float64(r.Requests) }),
			ServerCPU:  medianOf(c.Runs, func(r runResult) float64 { return float64(r.ServerCPUNS) / float64(r.WallNS) }),
			ClientCPU:  medianOf(c.Runs, func(r runResult) float64 { return float64(r.ClientCPUNS) / float64(r.WallNS) }),
			Conns:      medianOf(c.Runs, func(r runResult) float64 { return float64(r.Conns) }),
		}
		if sr.Bytes > 0 {
			s.CPUPerGiB = medianOf(c.Runs, func(r runResult) float64 {
				return float64(r.ClientCPUNS+r.ServerCPUNS) / 1e9 / (float64(sr.Bytes) / (1 << 30))
			})
		}
		if s.Requests > 0 {
			s.ConnsPer1000 = medianOf(c.Runs, func(r runResult) float64 { return 1000 * float64(r.Conns) / float64(max(r.Requests, 1)) })
		}
		for _, r := range c.Runs {
			s.PeakRSSKiB = max(s.PeakRSSKiB, r.MaxRSSKiB)
		}
		if c.Runs[0].Writes > 0 {
			s.MallocsPerWrite = medianOf(c.Runs, func(r runResult) float64 { return float64(r.Mallocs) / float64(r.Writes) })
		}
		t := s.WallNS
		if sr.ThroughputFromTransfer {
			t = s.TransferNS
		}
		if t > 0 {
			s.MBps = float64(sr.Bytes) / t * 1e3 // bytes/ns * 1e9 / 1e6
		}
		c.Summary = s
		if c.Ref {
			ref = s
		}
		if c.Ceiling {
			ceiling = s
		}
	}
	cpuRef := cmp.Or(ceiling, ref)
	for i, c := range sr.Contenders {
		s := c.Summary
		if s == nil {
			continue
		}
		if cpuRef != nil && cpuRef.CPUPerGiB > 0 {
			s.CPURatio = s.CPUPerGiB / cpuRef.CPUPerGiB
		}
		if ceiling != nil {
			s.CeilingRatio = s.WallNS / ceiling.WallNS
		}
		if ref == nil {
			continue
		}
		if sr.ThroughputFromTransfer {
			s.Ratio = s.MBps / ref.MBps
		} else {
			s.Ratio = s.WallNS / ref.WallNS
		}
		if c.SDK && i < len(judges) && judges[i] != nil {
			ok, why := judges[i](*s, *ref)
			s.Target = verdict(ok) + " (" + why + ")"
		}
	}
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// The overhead clients' names, as childOverhead reports them.
const (
	overheadSDK  = "SDK"
	overheadHand = "net/http+encoding/json"
)

func summarizeOverhead(sr *scenarioResult) {
	type key struct{ call, client string }
	var order []key
	groups := map[key][]overheadRun{}
	for _, r := range sr.OverheadRuns {
		k := key{r.Call, r.Client}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	med := func(runs []overheadRun, f func(overheadRun) int64) float64 {
		xs := make([]float64, len(runs))
		for i, r := range runs {
			xs[i] = float64(f(r))
		}
		return median(xs)
	}
	refNs := map[string]float64{}
	for _, k := range order {
		g := groups[k]
		s := overheadSummary{Call: k.call, Client: k.client,
			NsPerOp:     med(g, func(r overheadRun) int64 { return r.NsPerOp }),
			AllocsPerOp: med(g, func(r overheadRun) int64 { return r.AllocsPerOp }),
			BytesPerOp:  med(g, func(r overheadRun) int64 { return r.BytesPerOp })}
		if k.client == overheadHand {
			refNs[k.call] = s.NsPerOp
		}
		sr.Overhead = append(sr.Overhead, s)
	}
	for i := range sr.Overhead {
		s := &sr.Overhead[i]
		if ref := refNs[s.Call]; ref > 0 {
			s.Ratio = s.NsPerOp / ref
			if s.Client == overheadSDK {
				s.Target = verdict(s.Ratio <= 1.05)
			}
		}
	}
}

func describeMachine() machine {
	m := machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), GOOSARCH: runtime.GOOS + "/" + runtime.GOARCH}
	m.CPUModel = procField("/proc/cpuinfo", "model name")
	if kb, err := strconv.ParseInt(strings.TrimSuffix(procField("/proc/meminfo", "MemTotal"), " kB"), 10, 64); err == nil {
		m.MemTotal = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// procField returns the value of the first "key: value" line of a /proc file.
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

func printHeader(w io.Writer, rep *report) {
	m := rep.Machine
	c := rep.Config
	fmt.Fprintf(w, "runnerapi benchmark, %s mode, %s\n", c.Mode, rep.Date)
	fmt.Fprintf(w, "machine:  %d CPUs (%s), %s RAM, Linux %s\n", m.CPUs, m.CPUModel, m.MemTotal, m.Kernel)
	fmt.Fprintf(w, "go:       %s %s\n", m.GoVersion, m.GOOSARCH)
	if rep.CurlVersion != "" {
		fmt.Fprintf(w, "curl:     %s\n", rep.CurlVersion)
	}
	fmt.Fprintf(w, "sizes:    upload/download %s, trace %s; %d measured runs per contender after %d warm-up round(s), alternated run by run (A B A B ...); medians\n",
		formatBytes(c.Size), formatBytes(c.TraceSize), c.Runs, c.Warmup)
	fmt.Fprintf(w, "server:   %s\n", rep.Server)
	fmt.Fprintf(w, "rss:      peak RSS: ru_maxrss of each contender's own process, largest over its runs. Floor %.1f MiB: Linux counts\n"+
		"          the launcher's peak in a vforked child's ru_maxrss, so a figure at the floor means 'at most the floor'\n",
		float64(rep.RSSFloorKiB)/1024)
}

func printScenario(w io.Writer, sr *scenarioResult) {
	fmt.Fprintf(w, "\n== %s: %s\n", sr.Name, sr.Title)
	fmt.Fprintf(w, "   target: %s\n", sr.Target)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(c *contenderResult, cells func(s *summary) string) {
		if s := c.Summary; s != nil {
			fmt.Fprintf(tw, "%s\t%s\t%s\t\n", c.Name, cells(s), s.Target)
		} else {
			fmt.Fprintf(tw, "%s\tFAILED\t\n", c.Name)
		}
	}
	rss := func(s *summary) string { return fmt.Sprintf("%.1f", float64(s.PeakRSSKiB)/1024) }
	switch sr.Kind {
	case kindOverhead:
		fmt.Fprintln(tw, "call\tclient\tns/op\tallocs/op\tB/op\tx hand-written\ttarget\t")
		for _, s := range sr.Overhead {
			fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.0f\t%.0f\t%.3f\t%s\t\n", s.Call, s.Client, s.NsPerOp, s.AllocsPerOp, s.BytesPerOp, s.Ratio, s.Target)
		}
	case kindTrace, kindMask:
		against := "x ceiling"
		if sr.Kind == kindMask {
			against = "x 1 secret"
		}
		fmt.Fprintf(tw, "contender\ttime\tMB/s\t%s\tCPU s/GiB\tCPU %s\trequests\tmallocs/line\tpeak RSS MiB\tsrv CPU\truns (s)\ttarget\t\n", against, against)
		for _, c := range sr.Contenders {
			row(c, func(s *summary) string {
				return fmt.Sprintf("%.3fs\t%.0f\t%.3f\t%.2f\t%.2f\t%.0f\t%.4f\t%s\t%.0f%%\t%s", s.TransferNS/1e9, s.MBps, s.Ratio,
					s.CPUPerGiB, s.CPURatio, s.Requests, s.MallocsPerWrite, rss(s), 100*s.ServerCPU, runList(c.Runs, true))
			})
		}
	case kindMany:
		fmt.Fprintln(tw, "contender\ttime\tMB/s\tx 1 writer\tCPU s/GiB\trequests\tconnections\tper 1000 requests\tpeak RSS MiB\truns (s)\ttarget\t")
		for _, c := range sr.Contenders {
			row(c, func(s *summary) string {
				return fmt.Sprintf("%.3fs\t%.0f\t%.3f\t%.2f\t%.0f\t%.0f\t%.1f\t%s\t%s", s.TransferNS/1e9, s.MBps, s.Ratio,
					s.CPUPerGiB, s.Requests, s.Conns, s.ConnsPer1000, rss(s), runList(c.Runs, true))
			})
		}
	case kindTooLarge:
		fmt.Fprintln(tw, "contender\ttime to the error\tx curl\tthe call alone\tpeak RSS MiB\tclient CPU\truns (s)\ttarget\t")
		for _, c := range sr.Contenders {
			row(c, func(s *summary) string {
				call := "-"
				if s.TransferNS > 0 {
					call = fmt.Sprintf("%.4fs", s.TransferNS/1e9)
				}
				return fmt.Sprintf("%.4fs\t%.3f\t%s\t%s\t%.0f%%\t%s", s.WallNS/1e9, s.Ratio, call, rss(s), 100*s.ClientCPU, runList(c.Runs, false))
			})
		}
	default:
		fmt.Fprintln(tw, "contender\twall\tMB/s\tx curl\tx ceiling\tCPU s/GiB\tCPU x ceiling\tpeak RSS MiB\trequests\tsrv CPU\tclient CPU\truns (s)\ttarget\t")
		for _, c := range sr.Contenders {
			row(c, func(s *summary) string {
				return fmt.Sprintf("%.3fs\t%.0f\t%.3f\t%.3f\t%.2f\t%.2f\t%s\t%.0f\t%.0f%%\t%.0f%%\t%s", s.WallNS/1e9, s.MBps, s.Ratio,
					s.CeilingRatio, s.CPUPerGiB, s.CPURatio, rss(s), s.Requests, 100*s.ServerCPU, 100*s.ClientCPU, runList(c.Runs, false))
			})
		}
	}
	_ = tw.Flush()
	if sr.Kind != kindOverhead {
		for _, c := range sr.Contenders {
			fmt.Fprintf(w, "   %s: %s\n", c.Name, c.Command)
		}
		fmt.Fprintln(w, "   MB/s is 10^6 bytes per second; srv/client CPU are CPU time over wall time (100% = one core); CPU s/GiB\n"+
			"   is the client's and the server's CPU seconds together per GiB of the scenario's bytes")
	} else if len(sr.SameRequest) > 0 {
		fmt.Fprintf(w, "   verified at the server: both clients sent byte-identical %s requests (method, path, headers, body)\n",
			strings.Join(sr.SameRequest, " and "))
	}
	for _, f := range sr.Failures {
		fmt.Fprintf(w, "   FAILED: %s\n", f)
	}
}

func runList(runs []runResult, transfer bool) string {
	parts := make([]string, len(runs))
	for i, r := range runs {
		t := r.WallNS
		if transfer {
			t = r.TransferNS
		}
		parts[i] = fmt.Sprintf("%.3f", float64(t)/1e9)
	}
	return strings.Join(parts, " ")
}
