//go:build !linux

package runnerapi

import (
	"errors"
	"os"
)

// traceSpoolAllocate does nothing here: only Linux's fallocate is used (see traceSpoolReservation.do).
func traceSpoolAllocate(*os.File, int64, int64) {}

// traceSpoolCreateUnnamed is not supported here: the caller makes a named file and unlinks it.
func traceSpoolCreateUnnamed(string) (*os.File, error) { return nil, errors.ErrUnsupported }
