package runnerapi

import (
	"bytes"
	"errors"
	"io"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// artChunkRecorder records the length of every Write.
type artChunkRecorder struct {
	bytes.Buffer
	writes []int
}

func (r *artChunkRecorder) Write(p []byte) (int, error) {
	r.writes = append(r.writes, len(p))
	return r.Buffer.Write(p)
}

func artChunkTestBody(src io.Reader, size int64) *artUploadBody {
	b := &artUploadBody{}
	b.src = &artSourceReader{what: "the test source", r: src, expected: size, closed: &b.closed}
	b.r = io.MultiReader(bytes.NewReader([]byte("prefix")), b.src, bytes.NewReader([]byte("suffix")))
	return b
}

// A body of unknown size is copied in large writes, which net/http's chunked writer turns into large chunks.
func TestArtifactsChunkedBodyWritesLargeChunks(t *testing.T) {
	data := artPRNGBytes(3, 3*artUploadChunkSize+1000)
	body := artChunkTestBody(bytes.NewReader(data), -1).forTransport()
	wt, ok := body.(io.WriterTo)
	require.True(t, ok, "a chunked body should have WriteTo")
	var rec artChunkRecorder
	n, err := wt.WriteTo(&rec)
	require.NoError(t, err)
	want := append(append([]byte("prefix"), data...), "suffix"...)
	assert.Equal(t, int64(len(want)), n)
	assert.Equal(t, artSum(want), artSum(rec.Bytes()))
	// prefix, three full buffers, the rest, suffix
	assert.Equal(t, []int{6, artUploadChunkSize, artUploadChunkSize, artUploadChunkSize, 1000, 6}, rec.writes)

	_, isWT := artChunkTestBody(bytes.NewReader(data), int64(len(data))).forTransport().(io.WriterTo)
	assert.False(t, isWT, "a body of known size goes through io.LimitReader and needs no WriteTo")
}

// artChunkFailWriter fails every Write.
type artChunkFailWriter struct{}

func (artChunkFailWriter) Write([]byte) (int, error) { return 0, errors.New("peer gone") }

// artChunkCountReader counts the reads of its source.
type artChunkCountReader struct {
	r     io.Reader
	reads atomic.Int32
}

func (c *artChunkCountReader) Read(p []byte) (int, error) {
	c.reads.Add(1)
	return c.r.Read(p)
}

// WriteTo keeps the body's rules: a closed body reads nothing more of its source, a failing writer stops the copy,
// and a source's own failure is remembered as such.
func TestArtifactsChunkedBodyWriteToKeepsRules(t *testing.T) {
	src := &artChunkCountReader{r: bytes.NewReader(make([]byte, 1<<20))}
	b := artChunkTestBody(src, -1)
	require.NoError(t, b.Close())
	_, err := b.forTransport().(io.WriterTo).WriteTo(io.Discard)
	assert.ErrorIs(t, err, errArtBodyClosed)
	assert.Zero(t, src.reads.Load())

	b = artChunkTestBody(bytes.NewReader(make([]byte, 1<<20)), -1)
	n, err := b.forTransport().(io.WriterTo).WriteTo(artChunkFailWriter{})
	assert.EqualError(t, err, "peer gone")
	assert.Zero(t, n)
	assert.NoError(t, b.failure())

	b = artChunkTestBody(io.MultiReader(bytes.NewReader(make([]byte, 1000)), artChunkErrReader{}), -1)
	_, err = b.forTransport().(io.WriterTo).WriteTo(io.Discard)
	assert.EqualError(t, err, "disk failed")
	assert.EqualError(t, b.failure(), "disk failed")
}

type artChunkErrReader struct{}

func (artChunkErrReader) Read([]byte) (int, error) { return 0, errors.New("disk failed") }
