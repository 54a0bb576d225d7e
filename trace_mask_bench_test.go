package runnerapi

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
)

// benchTraceLog returns about size bytes of build output in 100-byte lines: steps, compiler and test output with
// paths, and hex shas, as a runner's trace holds.
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

// BenchmarkTraceMasker is the masking cost of a build log written line by line, by how many secrets a build has:
// it should barely depend on it. MB/cpu-s is the throughput by the CPU time the benchmark's thread used.
func BenchmarkTraceMasker(b *testing.B) {
	r := rand.New(rand.NewPCG(14, 14))
	log := benchTraceLog(r, 1<<20)
	for _, n := range []int{1, 10, 100, 1000} {
		secrets := benchTraceSecrets(r, n)
		b.Run(fmt.Sprintf("secrets=%d", n), func(b *testing.B) {
			m := newTraceMasker(secrets)
			var out countSink
			b.SetBytes(int64(len(log)))
			b.ReportAllocs()
			// The thread's CPU time beside the wall clock's: on a busy machine the benchmark waits for a core.
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			cpu, ok := threadCPUTime()
			for range b.N {
				for line := log; len(line) > 0; line = line[100:] {
					m.write(line[:100], &out)
				}
			}
			if end, _ := threadCPUTime(); ok && end > cpu {
				b.ReportMetric(float64(b.N)*float64(len(log))/1e6/(end-cpu).Seconds(), "MB/cpu-s")
			}
			m.flush(&out)
			if out.n != b.N*len(log) {
				b.Fatalf("%d bytes out of %d: a secret in the log", out.n, b.N*len(log))
			}
		})
	}
}
