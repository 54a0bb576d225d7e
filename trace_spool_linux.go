package runnerapi

import (
	"os"
	"syscall"
)

// oTmpFile is O_TMPFILE: __O_TMPFILE (the same on every Linux port of Go but sparc64, where it makes an
// impossible O_RDWR open of a directory, and the caller falls back) with O_DIRECTORY, which differs.
const oTmpFile = 0o20000000 | syscall.O_DIRECTORY

// traceSpoolCreateUnnamed opens a file in dir that has no name, and so cannot outlive the process.
func traceSpoolCreateUnnamed(dir string) (*os.File, error) {
	return os.OpenFile(dir, os.O_RDWR|oTmpFile, 0o600)
}

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
