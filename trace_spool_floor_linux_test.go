package runnerapi

import (
	"os"
	"runtime"
	"syscall"
	"testing"
)

// BenchmarkTraceSpoolFileFloor measures what keeping a trace in a file costs at the least, whatever the writer
// around it does: 1 MiB blocks copied into memory the process keeps, written to a spool file with pwrite (what
// the spool does), or copied into the file mapped into memory, its space allocated first, with and without
// MADV_POPULATE_WRITE. A fresh file every 256 MiB, as a trace's. The cpu-s/GiB metric is the thread's own CPU
// time (user and system): run with -benchtime 1024x or more.
func BenchmarkTraceSpoolFileFloor(b *testing.B) {
	const block, fileSize = 1 << 20, 256 << 20
	src := make([]byte, block)
	for i := range src {
		src[i] = byte(i * 7)
	}
	newFile := func(b *testing.B) *os.File {
		f, named, err := traceSpoolCreate(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		if named {
			b.Cleanup(func() { _ = os.Remove(f.Name()) })
		}
		return f
	}
	measure := func(b *testing.B, each func(i int)) {
		b.SetBytes(block)
		// The thread's CPU time is this goroutine's only while it stays on the thread.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		start, ok := threadCPUTime()
		b.ResetTimer()
		for i := range b.N {
			each(i)
		}
		b.StopTimer()
		if end, ok2 := threadCPUTime(); ok && ok2 {
			b.ReportMetric((end-start).Seconds()/float64(b.N)*float64(1<<30/block), "cpu-s/GiB")
		}
	}
	b.Run("copy into a kept block", func(b *testing.B) {
		dst := make([]byte, block)
		measure(b, func(int) { copy(dst, src) })
	})
	b.Run("pwrite into the file", func(b *testing.B) {
		var f *os.File
		measure(b, func(i int) {
			off := int64(i%(fileSize/block)) * block
			if off == 0 {
				if f != nil {
					_ = f.Close()
				}
				f = newFile(b)
			}
			if _, err := f.WriteAt(src, off); err != nil {
				b.Fatal(err)
			}
		})
		_ = f.Close()
	})
	for _, populate := range []bool{false, true} {
		name := "copy into the file mapped"
		if populate {
			name += ", MADV_POPULATE_WRITE"
		}
		b.Run(name, func(b *testing.B) {
			const madvPopulateWrite = 23
			var f *os.File
			var m []byte
			unmap := func() {
				if m != nil {
					_ = syscall.Munmap(m)
					_ = f.Close()
				}
			}
			measure(b, func(i int) {
				off := i % (fileSize / block) * block
				if off == 0 {
					unmap()
					f = newFile(b)
					if err := syscall.Fallocate(int(f.Fd()), 0, 0, fileSize); err != nil {
						b.Skip("fallocate:", err)
					}
					var err error
					if m, err = syscall.Mmap(int(f.Fd()), 0, fileSize, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED); err != nil {
						b.Skip("mmap:", err)
					}
				}
				if populate {
					if err := syscall.Madvise(m[off:off+block], madvPopulateWrite); err != nil {
						b.Skip("MADV_POPULATE_WRITE:", err)
					}
				}
				copy(m[off:off+block], src)
			})
			unmap()
		})
	}
}
