package runnerapi

import (
	"os"
	"syscall"
)

// fallocKeepSize is FALLOC_FL_KEEP_SIZE: allocate without changing the file's size.
const fallocKeepSize = 0x1

// traceSpoolAllocate asks the file system to allocate [off, off+n) of f, keeping f's size; errors are ignored
// (see traceSpoolReservation.do).
func traceSpoolAllocate(f *os.File, off, n int64) {
	sc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = sc.Control(func(fd uintptr) {
		_ = syscall.Fallocate(int(fd), fallocKeepSize, off, n)
	})
}
