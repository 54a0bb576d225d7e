package runnerapi

import (
	"errors"
	"io"
	"os"
	"sync"
	"syscall"
)

// tracePart is a part of the trace to append: its bytes in memory, mem followed by more, or the stretch of the
// spool's file that holds them, n bytes from at.
type tracePart struct {
	mem  []byte
	more []byte
	// spooled says that mem and more are the spool's own arrays, pinned until the sender is done with the part
	// (see TraceWriter.partLocked), rather than a buffer of the part's own.
	spooled bool
	file    *os.File
	at      int64
	n       int
	// replays, when not nil, keeps the replays made of the part, for the sender to wait until the transport has
	// closed them as it waits for the first body.
	replays *traceReplays
}

// traceReplays are the bodies a part's GetBody made; net/http may call it from its own goroutines.
type traceReplays struct {
	mu     sync.Mutex
	bodies []traceBody
}

func (r *traceReplays) add(b traceBody) {
	r.mu.Lock()
	r.bodies = append(r.bodies, b)
	r.mu.Unlock()
}

func (r *traceReplays) all() []traceBody {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]traceBody(nil), r.bodies...)
}

func (p tracePart) len() int {
	if p.file != nil {
		return p.n
	}
	return len(p.mem) + len(p.more)
}

// body returns the body of one attempt at sending p, which tells when the transport is done with it: it closes
// every body it was given, possibly after the answer arrived. A part of the file is read at the file's position
// only when atPosition says no other body uses it (a retry while the transport still holds the first attempt's
// body); otherwise by offset.
func (p tracePart) body(atPosition bool) (traceBody, error) {
	switch {
	case p.file == nil:
		return newTraceBodyReader(p.mem, p.more), nil
	case !atPosition:
		return &traceSectionBody{SectionReader: io.NewSectionReader(p.file, p.at, int64(p.n)), closeSignal: newCloseSignal()}, nil
	}
	return newTraceFileBody(p.file, p.at, p.n)
}

// replay returns a body of p that reads by offset, for the transport to send p again (GetBody) while the first
// body may still be read.
func (p tracePart) replay() io.ReadCloser {
	b, _ := p.body(false) // by offset: it fails only at the file's position
	if p.replays != nil {
		p.replays.add(b)
	}
	return b
}

// traceBody is a part's request body that says when the transport closed it.
type traceBody interface {
	io.ReadCloser
	closed() <-chan struct{}
}

// closeSignal is the Close of a part's body: the transport closes every body it was given, possibly after the
// answer arrived, and closed tells the sender when its bytes may be reused. HTTP/2's transport closes a body from
// a goroutine of its own while its writer may be reading it, and reads it once more before it looks at the close:
// a body whose bytes (or file position) the sender reuses reads under mu, and nothing once closed, so that Close
// waits for a Read under way and no Read reads them after it.
type closeSignal struct {
	mu       sync.Mutex
	isClosed bool
	done     chan struct{}
}

func newCloseSignal() closeSignal { return closeSignal{done: make(chan struct{})} }

// Close tells that the transport is done with the body, once no Read guarded by mu is under way.
func (c *closeSignal) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.isClosed {
		c.isClosed = true
		close(c.done)
	}
	return nil
}

func (c *closeSignal) closed() <-chan struct{} { return c.done }

// errTraceBodyClosed is what a part's body read after its Close returns: its bytes may be another part's by then.
var errTraceBodyClosed = errors.New("runnerapi: trace part's body read after it was closed")

// traceBodyReader is a part's body in memory, rest and then next, whose bytes may be reused once the transport
// closed it.
type traceBodyReader struct {
	rest, next []byte
	closeSignal
}

func newTraceBodyReader(part, next []byte) *traceBodyReader {
	return &traceBodyReader{rest: part, next: next, closeSignal: newCloseSignal()}
}

// Read copies the next of the part's bytes into p, unless the body is closed: the spool's arrays, or the
// sender's buffer, may hold other bytes by then.
func (r *traceBodyReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.isClosed {
		return 0, errTraceBodyClosed
	}
	if len(r.rest) == 0 {
		if len(r.next) == 0 {
			return 0, io.EOF
		}
		r.rest, r.next = r.next, nil
	}
	n := copy(p, r.rest)
	r.rest = r.rest[n:]
	return n, nil
}

// traceSectionBody is a part's body read from the spool's file by offset, leaving the file's position alone.
type traceSectionBody struct {
	*io.SectionReader
	closeSignal
}

// traceFileBody is a part's body read from the spool's file at the file's own position, from the part's start to
// end. Its SyscallConn lets the transport hand the file to the kernel (sendfile on Linux), which sends its cached
// pages without copying them through the process: a part costs the sender a few system calls instead of two copies
// of its bytes. Only one traceFileBody of a file may be open at a time, since they share its position.
type traceFileBody struct {
	f           *os.File
	end         int64
	closeSignal // Close leaves the file to the spool
}

func newTraceFileBody(f *os.File, at int64, n int) (*traceFileBody, error) {
	if _, err := f.Seek(at, io.SeekStart); err != nil {
		return nil, err
	}
	return &traceFileBody{f: f, end: at + int64(n), closeSignal: newCloseSignal()}, nil
}

// Read reads from the file's position up to the part's end. The position says what is left, since the kernel
// moves it when it sends the file's pages itself. Once the body is closed it reads nothing: the next part's body
// may have the position by then.
func (b *traceFileBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.isClosed {
		return 0, errTraceBodyClosed
	}
	pos, err := b.f.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, err
	}
	if pos >= b.end {
		return 0, io.EOF
	}
	if int64(len(p)) > b.end-pos {
		p = p[:b.end-pos]
	}
	n, err := b.f.Read(p)
	if err == io.EOF && n == 0 {
		// The file is shorter than the part: it never is, but a body must not end early in silence.
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// SyscallConn gives the file's descriptor to the transport (net's sendfile looks for it).
func (b *traceFileBody) SyscallConn() (syscall.RawConn, error) { return b.f.SyscallConn() }
