package runnerapi

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// traceSpoolBlock is how much a file-backed spool buffers in memory before writing to its file. The block last
// written stays in memory too, so a sender that keeps up reads from memory only.
const traceSpoolBlock = 1 << 20

// traceSpool keeps a whole trace so that any part of it can be sent again: in memory up to memLimit bytes, then in
// a temporary file. It is append-only, so what it has once returned never changes. It is not safe for concurrent
// use; the TraceWriter guards it.
type traceSpool struct {
	// mem holds every byte while file is nil; afterwards, the bytes from fileLen on that are not in the file yet.
	mem []byte
	// prev holds a copy of the file's bytes from prevOff on: the block last written.
	prev     []byte
	prevOff  int64
	file     *os.File
	fileLen  int64
	size     int64
	memLimit int
	dir      string
	released bool
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
		off := s.fileLen
		if err := s.writeFile(s.mem); err != nil {
			return err
		}
		s.prev, s.mem, s.prevOff = s.mem, s.prev[:0], off
		if len(p) >= traceSpoolBlock {
			if err := s.writeFile(p); err != nil {
				return err
			}
			s.prev = s.prev[:0]
			s.prevOff = s.fileLen
			s.size += int64(len(p))
			return nil
		}
	}
	s.mem = append(s.mem, p...)
	s.size += int64(len(p))
	return nil
}

// growAppend appends p to b, growing b by doubling but never beyond limit, so the memory phase holds at most
// limit bytes of capacity.
func (s *traceSpool) growAppend(b, p []byte, limit int) []byte {
	need := len(b) + len(p)
	if need > cap(b) {
		c := max(2*cap(b), need, 4<<10)
		c = min(c, max(limit, need))
		nb := make([]byte, len(b), c)
		copy(nb, b)
		b = nb
	}
	return append(b, p...)
}

// toFile moves the spool from memory to a temporary file.
func (s *traceSpool) toFile() error {
	f, err := os.CreateTemp(s.dir, "runnerapi-trace-*")
	if err != nil {
		return fmt.Errorf("runnerapi: spooling the trace: %w", err)
	}
	s.file = f
	if err := s.writeFile(s.mem); err != nil {
		return err
	}
	// Drop the memory phase's large buffer: from now on memory holds two blocks.
	s.mem = make([]byte, 0, traceSpoolBlock)
	s.prev = make([]byte, 0, traceSpoolBlock)
	s.prevOff = s.fileLen
	return nil
}

func (s *traceSpool) writeFile(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if _, err := s.file.WriteAt(p, s.fileLen); err != nil {
		return fmt.Errorf("runnerapi: spooling the trace: %w", err)
	}
	s.fileLen += int64(len(p))
	return nil
}

// readAt fills dst with the bytes at off; off+len(dst) must not be beyond the spool's size.
func (s *traceSpool) readAt(dst []byte, off int64) error {
	if s.released {
		return errors.New("runnerapi: trace spool already released")
	}
	if off < 0 || off+int64(len(dst)) > s.size {
		return fmt.Errorf("runnerapi: trace spool: read of %d bytes at %d beyond its %d bytes", len(dst), off, s.size)
	}
	for len(dst) > 0 && off < s.fileLen {
		var n int
		if off >= s.prevOff && off < s.prevOff+int64(len(s.prev)) {
			n = copy(dst, s.prev[off-s.prevOff:])
		} else {
			n = int(min(int64(len(dst)), s.fileLen-off))
			if off < s.prevOff {
				n = int(min(int64(n), s.prevOff-off))
			}
			if _, err := s.file.ReadAt(dst[:n], off); err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("runnerapi: reading the trace spool: %w", err)
			}
		}
		dst = dst[n:]
		off += int64(n)
	}
	if len(dst) > 0 {
		copy(dst, s.mem[off-s.fileLen:])
	}
	return nil
}

// release frees the memory and removes the temporary file. The spool cannot be used afterwards.
func (s *traceSpool) release() error {
	if s.released {
		return nil
	}
	s.released = true
	s.mem, s.prev = nil, nil
	if s.file == nil {
		return nil
	}
	name := s.file.Name()
	err := s.file.Close()
	if rmErr := os.Remove(name); rmErr != nil && err == nil {
		err = rmErr
	}
	s.file = nil
	if err != nil {
		return fmt.Errorf("runnerapi: removing the trace spool: %w", err)
	}
	return nil
}
