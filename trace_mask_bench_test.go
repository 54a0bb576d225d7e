package runnerapi

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
)

// benchTraceLog returns about size bytes of build output in 100-byte lines: steps, compiler and test output with
// paths, and hex shas, as a runner's trace holds. The lines are padded with spaces to one length, so that tests
// can place a secret at a known column; benchBuildLog is the more faithful text.
func benchTraceLog(r *rand.Rand, size int) []byte {
	const hex = "0123456789abcdef"
	sha := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = hex[r.IntN(len(hex))]
		}
		return string(b)
	}
	words := []string{"internal", "runner", "network", "cache", "artifacts", "trace", "build", "docker", "helpers",
		"common", "executor", "shell", "archive", "config", "service", "api", "client", "server", "util", "test"}
	word := func() string { return words[r.IntN(len(words))] }
	path := func() string {
		return "/builds/" + word() + "/" + word() + "/" + word() + "/" + word() + "_" + word() + ".go"
	}
	var log strings.Builder
	for log.Len() < size {
		var line string
		switch r.IntN(6) {
		case 0:
			line = fmt.Sprintf("Step %d/%d : RUN go build -o bin/%s ./cmd/%s", r.IntN(20), 20, word(), word())
		case 1:
			line = fmt.Sprintf(" ---> %s", sha(12))
		case 2:
			line = fmt.Sprintf("HEAD is now at %s %s: %s the %s", sha(40), word(), word(), word())
		case 3:
			line = fmt.Sprintf("%s:%d:%d: warning: %s %s is unused", path(), r.IntN(900), r.IntN(80), word(), word())
		case 4:
			line = fmt.Sprintf("ok  	github.com/%s/%s/%s	%d.%03ds	coverage: %d.%d%% of statements", word(), word(), word(),
				r.IntN(10), r.IntN(1000), r.IntN(100), r.IntN(10))
		default:
			line = fmt.Sprintf("Downloading sha256:%s %d kB", sha(64), r.IntN(5000))
		}
		line = (line + strings.Repeat(" ", 100))[:99] + "\n"
		log.WriteString(line)
	}
	return []byte(log.String())
}

// benchBuildLog returns about size bytes of build output as a runner's trace holds it, one line a slice: the
// runner's own section markers and colours, git, docker, Go, npm, Maven and pip output, compiler warnings, stack
// traces and timestamped application logs, with paths, versions, durations and hex digests, in lines of many
// lengths. The lines share one array, as a runner's read of the build's output does.
func benchBuildLog(r *rand.Rand, size int) [][]byte {
	hex := func(n int) string {
		const digits = "0123456789abcdef"
		b := make([]byte, n)
		for i := range b {
			b[i] = digits[r.IntN(len(digits))]
		}
		return string(b)
	}
	pick := func(words ...string) string { return words[r.IntN(len(words))] }
	pkg := func() string {
		return pick("internal", "cmd", "pkg", "api") + "/" + pick("server", "client", "store", "auth", "cache",
			"config", "worker", "queue", "metrics", "http") + "/" + pick("handler", "types", "util", "v1", "codec")
	}
	java := func() string {
		return "org." + pick("springframework", "apache", "hibernate", "junit") + "." + pick("boot", "maven",
			"engine", "core", "context") + "." + pick("SpringApplication", "DefaultLifecycleExecutor",
			"AbstractAutowireCapableBeanFactory", "TestMethodTestDescriptor", "ClassLoader")
	}
	clock := func() string {
		return fmt.Sprintf("2026-12-01T%02d:%02d:%02d.%03dZ", 9+r.IntN(2), r.IntN(60), r.IntN(60), r.IntN(1000))
	}
	lines := []func() string{
		func() string {
			return fmt.Sprintf("section_start:%d:%s\r\x1b[0K\x1b[0K\x1b[36;1m%s\x1b[0;m", 1764581400+r.IntN(3600),
				pick("prepare_executor", "get_sources", "step_script", "upload_artifacts_on_success"),
				pick("Preparing the \"docker\" executor", "Getting source from Git repository",
					"Executing \"step_script\" stage of the job script"))
		},
		func() string {
			return "\x1b[32;1m$ " + pick("go test -race ./...", "npm ci", "mvn -B verify", "make lint") + "\x1b[0;m"
		},
		func() string {
			return fmt.Sprintf("Checking out %s as detached HEAD (ref is %s)...", hex(8), pick("main", "feature/cache-keys"))
		},
		func() string {
			return fmt.Sprintf("Step %d/14 : RUN apt-get update && apt-get install -y %s", 1+r.IntN(14),
				pick("curl git", "ca-certificates", "build-essential"))
		},
		func() string { return " ---> Running in " + hex(12) },
		func() string {
			return hex(12) + ": " + pick("Pull complete", "Verifying Checksum", "Download complete", "Already exists")
		},
		func() string { return "Digest: sha256:" + hex(64) },
		func() string {
			return fmt.Sprintf("=== RUN   Test%s/%s_%d", pick("Handler", "Store", "Codec"), pick("empty", "large_body", "retry"),
				r.IntN(40))
		},
		func() string {
			return fmt.Sprintf("--- PASS: Test%s (%d.%02ds)", pick("Handler", "Store", "Codec", "Queue"), r.IntN(3), r.IntN(100))
		},
		func() string {
			return fmt.Sprintf("ok  \tgitlab.example.com/group/project/%s\t%d.%03ds\tcoverage: %d.%d%% of statements",
				pkg(), r.IntN(10), r.IntN(1000), r.IntN(100), r.IntN(10))
		},
		func() string {
			return fmt.Sprintf("%s/%s.go:%d:%d: %s", pkg(), pick("main", "server", "options"), 1+r.IntN(900), 1+r.IntN(80),
				pick("declared and not used: err", "undefined: ctx", "should have comment or be unexported"))
		},
		func() string {
			return fmt.Sprintf("src/%s.c:%d:%d: warning: unused variable '%s' [-Wunused-variable]",
				pick("main", "parse", "io"), 1+r.IntN(900), 1+r.IntN(40), pick("i", "len", "tmp"))
		},
		func() string {
			return fmt.Sprintf("npm WARN deprecated %s@%d.%d.%d: %s", pick("request", "uuid", "glob", "inflight"),
				r.IntN(10), r.IntN(90), r.IntN(20),
				pick("this library is no longer supported", "Rimraf versions prior to v4 are no longer supported"))
		},
		func() string {
			return fmt.Sprintf("added %d packages, and audited %d packages in %ds", r.IntN(2000), r.IntN(2000), r.IntN(90))
		},
		func() string {
			return fmt.Sprintf("[INFO] Downloaded from central: "+
				"https://repo.maven.apache.org/maven2/org/apache/%s/%d.%d.%d/%s (%d kB at %d kB/s)",
				pick("commons", "maven/plugins", "logging"), r.IntN(5), r.IntN(20), r.IntN(10),
				pick("commons-lang3.pom", "maven-surefire-plugin.jar"), r.IntN(900), r.IntN(9000))
		},
		func() string {
			return fmt.Sprintf("\tat %s.%s(%s.java:%d)", java(), pick("run", "invoke", "doCreateBean", "execute"),
				pick("Main", "Runner"), r.IntN(2000))
		},
		func() string {
			return fmt.Sprintf("%s %s [%s] c.e.%s - %s", clock(), pick("INFO ", "WARN ", "DEBUG", "ERROR"),
				pick("main", "pool-1-thread-3"), pick("OrderService", "HttpClient", "CacheLoader"),
				pick("Started in 3.2 seconds", "GET /api/v4/jobs/1234 200 12ms", "cache miss for key 7f3a"))
		},
		func() string {
			return fmt.Sprintf("Collecting %s==%d.%d.%d (from -r requirements.txt (line %d))",
				pick("requests", "numpy", "pytest"), r.IntN(3), r.IntN(30), r.IntN(10), 1+r.IntN(40))
		},
		func() string { return "" },
		func() string {
			return fmt.Sprintf("Uploading artifacts as \"archive\" to coordinator... 201 Created  id=%d "+
				"responseStatus=201 Created token=%s", r.IntN(1e6), hex(8))
		},
	}
	// The lines in one array, as a runner reads them from the build's output.
	var text []byte
	var ends []int
	for len(text) < size {
		text = append(append(text, lines[r.IntN(len(lines))]()...), '\n')
		ends = append(ends, len(text))
	}
	log := make([][]byte, len(ends))
	for i, end := range ends {
		log[i] = text[:end:end]
		if i > 0 {
			log[i] = log[i][ends[i-1]:]
		}
	}
	return log
}

// benchTraceSecrets returns n distinct tokens of 8 to 64 random bytes of the base64url alphabet, as secret variables
// and generated tokens look.
func benchTraceSecrets(r *rand.Rand, n int) []string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	secrets := make([]string, n)
	for i := range secrets {
		b := make([]byte, 8+r.IntN(57))
		for j := range b {
			b[j] = alphabet[r.IntN(len(alphabet))]
		}
		secrets[i] = string(b)
	}
	return secrets
}

// benchTraceTokens are the build and runner tokens a TraceWriter always masks, of the shapes GitLab gives them:
// 20 bytes of the base64url alphabet, the runner's with its prefix.
var benchTraceTokens = []string{"xKp2-Vn8sLq_4RtWz9aE", "glrt-t3Zk8wQ_pLm2vXcN5bYe"}

// BenchmarkTraceMasker is the masking cost of a build log written line by line, by how many secrets the writer
// masks: the build and runner tokens, and 0, 1, 10, 100 or 1,000 secret variables. It should barely depend on
// their number. MB/cpu-s is the throughput by the CPU time the benchmark's thread used. log=build is benchBuildLog,
// log=padded benchTraceLog's 100-byte lines.
func BenchmarkTraceMasker(b *testing.B) {
	r := rand.New(rand.NewPCG(14, 14))
	padded := benchTraceLog(r, 1<<20)
	var lines [][]byte
	for line := padded; len(line) > 0; line = line[100:] {
		lines = append(lines, line[:100])
	}
	logs := []struct {
		name  string
		lines [][]byte
	}{{"build", benchBuildLog(r, 1<<20)}, {"padded", lines}}
	for _, log := range logs {
		size := 0
		for _, line := range log.lines {
			size += len(line)
		}
		for _, n := range []int{0, 1, 10, 100, 1000} {
			secrets := append(benchTraceSecrets(r, n), benchTraceTokens...)
			b.Run(fmt.Sprintf("log=%s/secrets=%d", log.name, len(secrets)), func(b *testing.B) {
				m := newTraceMasker(secrets)
				var out countSink
				b.ResetTimer()
				b.SetBytes(int64(size))
				b.ReportAllocs()
				// The thread's CPU time beside the wall clock's: on a busy machine the benchmark waits for a core.
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				cpu, ok := threadCPUTime()
				for range b.N {
					for _, line := range log.lines {
						m.write(line, &out)
					}
				}
				if end, _ := threadCPUTime(); ok && end > cpu {
					b.ReportMetric(float64(b.N)*float64(size)/1e6/(end-cpu).Seconds(), "MB/cpu-s")
				}
				m.flush(&out)
				if out.n != b.N*size {
					b.Fatalf("%d bytes out of %d: a secret in the log", out.n, b.N*size)
				}
			})
		}
	}
}
