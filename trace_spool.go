package runnerapi

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// traceSpoolBlock is how much a file-backed spool buffers in memory before writing to its file. The block before
// the current one stays in memory too, so a sender that keeps up reads from memory only.
const traceSpoolBlock = 1 << 20

// traceSpool keeps a whole trace so that any part of it can be sent again: in memory up to memLimit bytes, then in
// temporary files (traceSpoolFile). It is append-only, so what it has once returned never changes. It is not safe for
// concurrent use; the TraceWriter guards it. Only its view and file methods let one reader (the sender) and one filer
// at a time read and write outside that guard (see pins).
type traceSpool struct {
	// mem holds every byte while file is nil; afterwards, the bytes from memOff on.
	mem    []byte
	memOff int64
	// prev holds the block before mem, the bytes from prevOff on; it is in the file once fileLen reaches its end,
	// else it waits for a filer (fileLater) or the next full block, whichever comes first, to write it there.
	prev    []byte
	prevOff int64
	file    *traceSpoolFile
	// fileLen is where the file's bytes end: it holds every byte before it, and memory every byte from it on
	// (prev and mem), so that filing is always writing the memory's first bytes after it.
	fileLen  int64
	reserved int64 // the file system was asked to allocate the file's space up to here
	size     int64
	memLimit int
	dir      string
	released bool

	// toFileSoon is set when prev becomes a block waiting to be filed, for the TraceWriter to file it outside its
	// guard.
	toFileSoon bool

	// pins are the arrays read or filed outside the guard, which must not be refilled until the reader or filer
	// is done: the reader's two (a read may span prev and mem) and the filer's one, at traceFilerPin. A pinned
	// array dropped goes to retired, and becomes a spare once nobody pins it, so that steady state allocates
	// nothing.
	pins [3]*byte
	// held are arrays the reader pinned for a request body that the transport kept past the sender's patience:
	// they stay pinned until the transport closes the body, which then reads nothing more of them (closeSignal).
	held     []traceHold
	retired  [3][]byte
	nRetired int
	spares   [3][]byte
	nSpares  int
}

// traceFilerPin is the filer's slot in traceSpool.pins; the reader's are those before it.
const traceFilerPin = 2

// traceArrayID identifies the array under b, which must start at the array's start (as mem and prev do), or is
// nil when b has no capacity.
func traceArrayID(b []byte) *byte {
	if cap(b) == 0 {
		return nil
	}
	return &b[:cap(b)][0]
}

// pinRead keeps b's array from being refilled until doneReading.
func (s *traceSpool) pinRead(b []byte) {
	id := traceArrayID(b)
	for i, p := range s.pins[:traceFilerPin] {
		if p == id {
			return
		}
		if p == nil {
			s.pins[i] = id
			return
		}
	}
}

func (s *traceSpool) pinned(b []byte) bool {
	id := traceArrayID(b)
	return id != nil && (s.pins[0] == id || s.pins[1] == id || s.pins[2] == id || s.isHeld(id))
}

// traceHold is an array a body left to the transport reads, until closed.
type traceHold struct {
	id     *byte
	closed <-chan struct{}
}

func (s *traceSpool) isHeld(id *byte) bool {
	for _, h := range s.held {
		if h.id == id {
			return true
		}
	}
	return false
}

// holdReading keeps what the reader pinned pinned until closed, after doneReading too: a body over it is left
// to the transport.
func (s *traceSpool) holdReading(closed <-chan struct{}) {
	for _, p := range s.pins[:traceFilerPin] {
		if p != nil {
			s.held = append(s.held, traceHold{id: p, closed: closed})
		}
	}
}

// dropClosedHolds unpins the arrays of the bodies the transport has closed since they were left to it.
func (s *traceSpool) dropClosedHolds() {
	kept := 0
	for _, h := range s.held {
		select {
		case <-h.closed:
		default:
			s.held[kept] = h
			kept++
		}
	}
	clear(s.held[kept:])
	s.held = s.held[:kept]
}

// append adds p at the end of the spool.
func (s *traceSpool) append(p []byte) error {
	if s.released {
		return errors.New("runnerapi: trace spool already released")
	}
	if len(p) == 0 {
		return nil
	}
	if s.file == nil {
		if len(s.mem)+len(p) <= s.memLimit {
			s.mem = s.growAppend(s.mem, p, s.memLimit)
			s.size += int64(len(p))
			return nil
		}
		if err := s.toFile(); err != nil {
			return err
		}
	}
	if len(s.mem)+len(p) > traceSpoolBlock {
		// mem is complete: it becomes prev, to be filed; the former prev must be in the file by now.
		if err := s.filePrev(); err != nil {
			return err
		}
		old := s.prev
		s.prev, s.prevOff = s.mem, s.memOff
		s.toFileSoon = !s.prevFiled()
		s.memOff += int64(len(s.mem))
		s.mem = s.refill(old)
		if len(p) >= traceSpoolBlock {
			if err := s.filePrev(); err != nil {
				return err
			}
			if err := s.writeFile(p, s.memOff); err != nil {
				return err
			}
			s.memOff += int64(len(p))
			s.size += int64(len(p))
			return nil
		}
	}
	s.mem = append(s.mem, p...)
	s.size += int64(len(p))
	return nil
}

// refill returns old emptied for reuse as mem or, while the sender may be using old outside the guard, an array
// nobody uses.
func (s *traceSpool) refill(old []byte) []byte {
	if !s.pinned(old) {
		return old[:0]
	}
	s.retire(old)
	if s.nSpares > 0 {
		s.nSpares--
		sp := s.spares[s.nSpares]
		s.spares[s.nSpares] = nil
		return sp[:0]
	}
	return traceBlocks.get()
}

// retire keeps old, which somebody reads outside the guard, until it can serve as a spare.
func (s *traceSpool) retire(old []byte) {
	if s.nRetired < len(s.retired) {
		s.retired[s.nRetired] = old
		s.nRetired++
	}
}

// traceSpoolSmall is the memory phase's first array under the default memory limit, from traceSmallArrays; a trace
// that outgrows it takes a whole array of the limit from traceMemoryArrays. Most traces stay small, those that do
// not cost one copy of what they hold, and neither allocates once the pools hold arrays: doubling from a few KiB,
// as other limits do, allocated 124 KiB a build, a third of what a writer of a 4 MiB trace allocated.
const traceSpoolSmall = 64 << 10

// growAppend appends p to b, growing b but never beyond limit, so the memory phase holds at most limit bytes of
// capacity.
func (s *traceSpool) growAppend(b, p []byte, limit int) []byte {
	need := len(b) + len(p)
	if need > cap(b) {
		var nb []byte
		switch pooled := limit == traceMemoryArrays.size; {
		case pooled && need <= traceSpoolSmall:
			nb = traceSmallArrays.get()[:len(b)]
		case pooled && need <= limit:
			nb = traceMemoryArrays.get()[:len(b)]
		default:
			c := max(2*cap(b), need, 4<<10)
			nb = make([]byte, len(b), min(c, max(limit, need)))
		}
		copy(nb, b)
		s.pool(b) // unless the sender reads it still
		b = nb
	}
	return append(b, p...)
}

// toFile moves the spool from memory to temporary files.
func (s *traceSpool) toFile() error {
	s.file = &traceSpoolFile{dir: s.dir}
	if err := s.writeFile(s.mem, 0); err != nil {
		return err
	}
	// Drop the memory phase's large buffer: from now on memory holds two blocks. One the sender still reads
	// serves as a spare block once it is done.
	if s.pinned(s.mem) {
		s.retire(s.mem)
	} else {
		s.pool(s.mem)
	}
	s.memOff = int64(len(s.mem))
	s.mem = traceBlocks.get()
	s.prev = traceBlocks.get()
	s.prevOff = s.memOff
	return nil
}

// prevFiled tells whether the file holds prev.
func (s *traceSpool) prevFiled() bool { return s.fileLen >= s.prevOff+int64(len(s.prev)) }

// filePrev writes to the file what it lacks of prev.
func (s *traceSpool) filePrev() error {
	if s.prevFiled() {
		return nil
	}
	return s.writeFile(s.prev[s.fileLen-s.prevOff:], s.fileLen)
}

// writeFile writes p at off, the end of what the file holds.
func (s *traceSpool) writeFile(p []byte, off int64) error {
	if len(p) > 0 {
		if err := s.file.ensure(off + int64(len(p))); err != nil {
			return err
		}
		s.reserve(off + int64(len(p))).do()
		if _, err := s.file.WriteAt(p, off); err != nil {
			return fmt.Errorf("runnerapi: spooling the trace: %w", err)
		}
	}
	s.fileLen = max(s.fileLen, off+int64(len(p)))
	return nil
}

// fileRange finds [start, end) in the file: the file that holds start, start's offset in it, and how many of the
// bytes that one file holds, all of them or those up to its end. ok is false unless the file holds them all.
func (s *traceSpool) fileRange(start, end int64) (f *os.File, at int64, n int, ok bool) {
	if s.released || s.file == nil || start >= end || end > s.fileLen {
		return nil, 0, 0, false
	}
	f, at, n = s.file.stretch(start, end)
	return f, at, n, f != nil
}

// traceSpoolView is where the bytes of one read are: slices of the spool's arrays and a range of its file, which
// stay as they are while they are pinned.
type traceSpoolView struct {
	file *traceSpoolFile
	segs [4]traceSpoolSeg
	n    int
}

// traceSpoolSeg is one stretch of a read: from mem, a part of the array held, when not nil, else from the file
// at off.
type traceSpoolSeg struct {
	mem  []byte
	held []byte
	off  int64
	len  int
}

// view finds the bytes [off, off+n) of the spool.
func (s *traceSpool) view(off int64, n int) (traceSpoolView, error) {
	v := traceSpoolView{file: s.file}
	if s.released {
		return v, errors.New("runnerapi: trace spool already released")
	}
	if off < 0 || n < 0 || off+int64(n) > s.size {
		return v, fmt.Errorf("runnerapi: trace spool: read of %d bytes at %d beyond its %d bytes", n, off, s.size)
	}
	end := off + int64(n)
	for off < end {
		var seg traceSpoolSeg
		switch {
		case off >= s.memOff:
			seg.mem, seg.held = s.mem[off-s.memOff:end-s.memOff], s.mem
		case off >= s.prevOff && off < s.prevOff+int64(len(s.prev)):
			seg.mem, seg.held = s.prev[off-s.prevOff:min(end-s.prevOff, int64(len(s.prev)))], s.prev
		default:
			// In the file only: up to the next stretch held in memory.
			stop := min(end, s.memOff)
			if off < s.prevOff {
				stop = min(stop, s.prevOff)
			}
			seg.off, seg.len = off, int(stop-off)
		}
		if seg.mem != nil {
			seg.len = len(seg.mem)
		}
		v.segs[v.n] = seg
		v.n++
		off += int64(seg.len)
	}
	return v, nil
}

// copyTo fills dst, as long as the view, with its bytes.
func (v *traceSpoolView) copyTo(dst []byte) error {
	for _, seg := range v.segs[:v.n] {
		if seg.mem != nil {
			copy(dst, seg.mem)
		} else if _, err := v.file.ReadAt(dst[:seg.len], seg.off); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("runnerapi: reading the trace spool: %w", err)
		}
		dst = dst[seg.len:]
	}
	return nil
}

// readAt fills dst with the view's bytes from off on, off counted from the view's start.
func (v *traceSpoolView) readAt(dst []byte, off int64) error {
	for _, seg := range v.segs[:v.n] {
		if len(dst) == 0 {
			return nil
		}
		if off >= int64(seg.len) {
			off -= int64(seg.len)
			continue
		}
		n := int(min(int64(len(dst)), int64(seg.len)-off))
		if seg.mem != nil {
			copy(dst[:n], seg.mem[off:])
		} else if _, err := v.file.ReadAt(dst[:n], seg.off+off); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("runnerapi: reading the trace spool: %w", err)
		}
		dst, off = dst[n:], 0
	}
	if len(dst) > 0 {
		return fmt.Errorf("runnerapi: trace spool: read of %d bytes beyond its view", len(dst))
	}
	return nil
}

// readAt fills dst with the bytes at off; off+len(dst) must not be beyond the spool's size.
func (s *traceSpool) readAt(dst []byte, off int64) error {
	v, err := s.view(off, len(dst))
	if err != nil {
		return err
	}
	return v.copyTo(dst)
}

// readLater returns the view of [off, off+n) and pins the arrays it uses: the caller may release the guard, copy
// the view, and must then call done under the guard.
func (s *traceSpool) readLater(off int64, n int) (traceSpoolView, error) {
	v, err := s.view(off, n)
	if err != nil {
		return v, err
	}
	s.pinView(v)
	return v, nil
}

// pinView pins the arrays of v, from view, as readLater does.
func (s *traceSpool) pinView(v traceSpoolView) {
	for _, seg := range v.segs[:v.n] {
		if seg.mem != nil {
			s.pinRead(seg.held)
		}
	}
}

// inMemory tells whether every byte of the view is in memory.
func (v *traceSpoolView) inMemory() bool {
	for _, seg := range v.segs[:v.n] {
		if seg.mem == nil {
			return false
		}
	}
	return true
}

// traceSpoolReserveStep is how far ahead of the writes the spool has the file system allocate the file's space.
// Writing into allocated space costs the kernel about half the CPU of allocating as it goes (ext4: 25 instead of
// 48 ms per 256 MiB), and 16 MiB steps did better than 4 or 64.
const traceSpoolReserveStep = 16 << 20

// traceSpoolReservation is a range of the spool's file to allocate, or nothing when file is nil.
type traceSpoolReservation struct {
	file   *traceSpoolFile
	off, n int64
}

// reserve returns the reservation needed before writing up to end, and records it as made.
func (s *traceSpool) reserve(end int64) traceSpoolReservation {
	if end <= s.reserved || s.file == nil {
		return traceSpoolReservation{}
	}
	r := traceSpoolReservation{file: s.file, off: s.reserved, n: end - s.reserved + traceSpoolReserveStep}
	if s.file.ensure(r.off+r.n) != nil {
		// Only advice: the write that needs the file will say what is wrong.
		return traceSpoolReservation{}
	}
	s.reserved = r.off + r.n
	return r
}

// do makes the reservation. It is only advice to the file system: where it cannot (another system, a file system
// without it, a full disk), the writes that follow do as they would have done, and report any error.
func (r traceSpoolReservation) do() {
	if r.file != nil {
		r.file.allocate(r.off, r.n)
	}
}

// traceSpoolBlockToFile is a full block of the spool, or what the file lacks of it, at off, that waits to be
// written to the spool's file.
type traceSpoolBlockToFile struct {
	block   []byte
	off     int64
	file    *traceSpoolFile
	reserve traceSpoolReservation
}

// write writes the block. Writing it twice, once here and once by append, does no harm: the bytes are the same.
func (b traceSpoolBlockToFile) write() error {
	b.reserve.do()
	if _, err := b.file.WriteAt(b.block, b.off); err != nil {
		return fmt.Errorf("runnerapi: spooling the trace: %w", err)
	}
	return nil
}

// fileLater returns what the file lacks of prev, pinning it: the caller may release the guard, write it, and must
// then call filed and doneFiling under the guard. ok is false when there is nothing to file, or another caller is
// filing.
func (s *traceSpool) fileLater() (b traceSpoolBlockToFile, ok bool) {
	end := s.prevOff + int64(len(s.prev))
	if s.released || s.file == nil || s.fileLen >= end || s.pins[traceFilerPin] != nil || s.file.ensure(end) != nil {
		// Nothing to file, someone filing, or no file to write to: the next full block files this one where
		// it can say why.
		return b, false
	}
	s.pins[traceFilerPin] = traceArrayID(s.prev)
	return traceSpoolBlockToFile{block: s.prev[s.fileLen-s.prevOff:], off: s.fileLen, file: s.file,
		reserve: s.reserve(end)}, true
}

// filed records that b, from fileLater, is in the file.
func (s *traceSpool) filed(b traceSpoolBlockToFile) {
	if b.off <= s.fileLen {
		s.fileLen = max(s.fileLen, b.off+int64(len(b.block)))
	}
}

// doneReading unpins what readLater pinned.
func (s *traceSpool) doneReading() {
	s.pins[0], s.pins[1] = nil, nil
	s.recycle()
}

// doneFiling unpins what fileLater pinned.
func (s *traceSpool) doneFiling() {
	s.pins[traceFilerPin] = nil
	s.recycle()
}

// recycle makes the retired arrays nobody pins any longer spares.
func (s *traceSpool) recycle() {
	s.dropClosedHolds()
	kept := 0
	for _, b := range s.retired[:s.nRetired] {
		switch {
		case s.pinned(b):
			s.retired[kept] = b
			kept++
		case s.nSpares < len(s.spares):
			s.spares[s.nSpares] = b
			s.nSpares++
		}
	}
	clear(s.retired[kept:])
	s.nRetired = kept
}

// pool gives b to its pool unless somebody reads it outside the guard.
func (s *traceSpool) pool(b []byte) {
	if b != nil && !s.pinned(b) {
		traceMemoryArrays.put(b)
		traceBlocks.put(b)
		traceSmallArrays.put(b)
	}
}

// release frees the memory and removes the temporary files. The spool cannot be used afterwards.
func (s *traceSpool) release() error {
	if s.released {
		return nil
	}
	s.released = true
	// The arrays nobody reads any longer serve the next trace.
	s.dropClosedHolds()
	s.pool(s.mem)
	s.pool(s.prev)
	for _, b := range s.retired[:s.nRetired] {
		s.pool(b)
	}
	for _, b := range s.spares[:s.nSpares] {
		s.pool(b)
	}
	s.mem, s.prev, s.retired, s.spares, s.nRetired, s.nSpares = nil, nil, [3][]byte{}, [3][]byte{}, 0, 0
	if s.file == nil {
		return nil
	}
	err := s.file.remove()
	s.file = nil
	if err != nil {
		return fmt.Errorf("runnerapi: removing the trace spool: %w", err)
	}
	return nil
}
