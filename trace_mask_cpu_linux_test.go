package runnerapi

import (
	"syscall"
	"time"
)

// threadCPUTime returns the CPU time the calling thread has used, and true; on a shared machine it tells a
// benchmark's cost more steadily than the wall clock.
func threadCPUTime() (time.Duration, bool) {
	const rusageThread = 1 // RUSAGE_THREAD
	var ru syscall.Rusage
	if syscall.Getrusage(rusageThread, &ru) != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
