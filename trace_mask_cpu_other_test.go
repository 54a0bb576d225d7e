//go:build !linux

package runnerapi

import "time"

// threadCPUTime reports false: only Linux tells a thread's own CPU time.
func threadCPUTime() (time.Duration, bool) { return 0, false }
