//go:build !linux

package runnerapi

import "os"

// traceSpoolAllocate does nothing here: only Linux's fallocate is used (see traceSpoolReservation.do).
func traceSpoolAllocate(*os.File, int64, int64) {}
