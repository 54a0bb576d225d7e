package runnerapi

import "sync"

// traceArrayPool keeps arrays of one size between traces. A runner writes one trace per build, and without the
// pools every build would allocate its spool's memory anew (and the collector free it): the memory phase's array
// of DefaultTraceMemoryLimit, the blocks of the file phase and the sender's buffer. Only arrays nobody reads any
// longer go back: a pinned one (traceSpool.pins) is left to the collector.
type traceArrayPool struct {
	size int
	pool sync.Pool
}

// traceMemoryArrays holds memory phases' arrays for the default memory limit, and traceSmallArrays their first,
// small ones (traceSpoolSmall); traceBlocks holds arrays of one spool block, the default chunk size too.
var (
	traceMemoryArrays = &traceArrayPool{size: DefaultTraceMemoryLimit}
	traceSmallArrays  = &traceArrayPool{size: traceSpoolSmall}
	traceBlocks       = &traceArrayPool{size: traceSpoolBlock}
)

// get returns an empty array of the pool's size.
func (p *traceArrayPool) get() []byte {
	if b, ok := p.pool.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, p.size)
}

// put gives b back, when it is one of the pool's size; b must not be used afterwards.
func (p *traceArrayPool) put(b []byte) {
	if cap(b) == p.size {
		b = b[:0]
		p.pool.Put(&b)
	}
}
