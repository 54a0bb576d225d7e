package runnerapi

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"sync"
)

// traceSpoolFile is where a spool keeps what no longer fits in memory: the trace's bytes, split across temporary
// files of growing sizes (64 MiB, 64 MiB, 128 MiB, 128 MiB, 256 MiB, ...). The files have no name: made without
// one (Linux's O_TMPFILE) or unlinked as soon as made, so that a crash leaves nothing behind; only where an open
// file cannot be removed (Windows) do they keep their name until the end. Freeing a file's cached pages, when its
// last descriptor closes, takes a good part of the time writing them did (about 20 ms for 256 MiB here), and one
// file frees on one core: closing several at once, at Close, spreads that over the machine's cores (about 11 ms
// for 256 MiB in four files on two cores). Growing sizes keep the number of files, and of open descriptors, small:
// 13 for 10 GiB.
//
// Files are created under the spool's guard, before any range in them is handed out; their bytes may then be
// written and read outside it, as the spool's pins allow.
type traceSpoolFile struct {
	dir   string
	segs  [traceSpoolMaxSegs]*os.File
	named [traceSpoolMaxSegs]bool // segs[k] still has a name, to remove at the end
	n     int                     // files created: segs[:n]
}

const (
	// traceSpoolSeg0 is the size of the first two files; each following pair is twice as large.
	traceSpoolSeg0 = 64 << 20
	// traceSpoolMaxSegs files hold about 2^59 bytes, far beyond any trace.
	traceSpoolMaxSegs = 64
)

// traceSpoolSegment returns the file that holds offset off of the trace, where it starts and how much it holds.
func traceSpoolSegment(off int64) (k int, start, size int64) {
	for k = 0; ; k++ {
		size = int64(traceSpoolSeg0) << (k / 2)
		if off < start+size || k == traceSpoolMaxSegs-1 {
			return k, start, size
		}
		start += size
	}
}

// ensure creates the files that hold the trace up to end.
func (f *traceSpoolFile) ensure(end int64) error {
	if end <= 0 {
		return nil
	}
	k, _, _ := traceSpoolSegment(end - 1)
	for f.n <= k {
		seg, named, err := traceSpoolCreate(f.dir)
		if err != nil {
			return fmt.Errorf("runnerapi: spooling the trace: %w", err)
		}
		f.segs[f.n], f.named[f.n] = seg, named
		f.n++
	}
	return nil
}

// traceSpoolCreate makes a temporary file in dir (os.TempDir when empty) without a name where it can; named says
// when the file has one, which its user must remove.
func traceSpoolCreate(dir string) (f *os.File, named bool, err error) {
	if f, err := traceSpoolCreateUnnamed(cmp.Or(dir, os.TempDir())); err == nil {
		return f, false, nil
	}
	f, err = os.CreateTemp(dir, "runnerapi-trace-*")
	if err != nil {
		return nil, false, err
	}
	if os.Remove(f.Name()) == nil {
		return f, false, nil
	}
	return f, true, nil
}

// each calls fn for every stretch of [off, off+n) that one file holds, with the file, the stretch's offset in it,
// and its bounds within [0, n).
func (f *traceSpoolFile) each(off int64, n int, fn func(seg *os.File, at int64, lo, hi int) error) error {
	for done := 0; done < n; {
		pos := off + int64(done)
		k, start, size := traceSpoolSegment(pos)
		m := int(min(int64(n-done), start+size-pos))
		if f.segs[k] == nil {
			return fmt.Errorf("runnerapi: trace spool: no file for byte %d", pos)
		}
		if err := fn(f.segs[k], pos-start, done, done+m); err != nil {
			return err
		}
		done += m
	}
	return nil
}

// stretch returns the file that holds off, off's offset in it, and how many bytes of [off, end) it holds; f is nil
// when that file was not created.
func (f *traceSpoolFile) stretch(off, end int64) (seg *os.File, at int64, n int) {
	k, start, size := traceSpoolSegment(off)
	return f.segs[k], off - start, int(min(end, start+size) - off)
}

// WriteAt writes p at off; the files for that range must have been created.
func (f *traceSpoolFile) WriteAt(p []byte, off int64) (int, error) {
	err := f.each(off, len(p), func(seg *os.File, at int64, lo, hi int) error {
		_, err := seg.WriteAt(p[lo:hi], at)
		return err
	})
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// ReadAt fills p with the bytes at off.
func (f *traceSpoolFile) ReadAt(p []byte, off int64) (int, error) {
	err := f.each(off, len(p), func(seg *os.File, at int64, lo, hi int) error {
		_, err := seg.ReadAt(p[lo:hi], at)
		return err
	})
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// allocate asks the file systems to allocate [off, off+n) of the files that exist (see traceSpoolReservation).
func (f *traceSpoolFile) allocate(off, n int64) {
	for n > 0 {
		k, start, size := traceSpoolSegment(off)
		m := min(n, start+size-off)
		if f.segs[k] == nil {
			return
		}
		traceSpoolAllocate(f.segs[k], off-start, m)
		off, n = off+m, n-m
	}
}

// remove closes every file, several at once, removes those that still have a name, and returns the failures.
func (f *traceSpoolFile) remove() error {
	errs := make([]error, f.n)
	var wg sync.WaitGroup
	for k, seg := range f.segs[:f.n] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := seg.Close()
			if f.named[k] {
				if rmErr := os.Remove(seg.Name()); err == nil {
					err = rmErr
				}
			}
			errs[k] = err
		}()
	}
	wg.Wait()
	f.n = 0
	return errors.Join(errs...)
}
