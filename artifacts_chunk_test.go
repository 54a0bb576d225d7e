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

// chunkRecorder records the length of every Write.
type chunkRecorder struct {
	bytes.Buffer
	writes []int
}

func (r *chunkRecorder) Write(p []byte) (int, error) {
	r.writes = append(r.writes, len(p))
	return r.Buffer.Write(p)
}

func chunkTestBody(src io.Reader, size int64) *uploadBody {
	b := &uploadBody{}
	b.src = &sourceReader{what: "the test source", r: src, expected: size, closed: &b.closed}
	b.r = io.MultiReader(bytes.NewReader([]byte("prefix")), b.src, bytes.NewReader([]byte("suffix")))
	return b
}

// A body of unknown size is copied in large writes, which net/http's chunked writer turns into large chunks.
func TestArtifactsChunkedBodyWritesLargeChunks(t *testing.T) {
	data := prngBytes(3, 3*uploadChunkSize+1000)
	body := chunkTestBody(bytes.NewReader(data), -1).forTransport()
	wt, ok := body.(io.WriterTo)
	require.True(t, ok, "a chunked body should have WriteTo")
	var rec chunkRecorder
	n, err := wt.WriteTo(&rec)
	require.NoError(t, err)
	want := append(append([]byte("prefix"), data...), "suffix"...)
	assert.Equal(t, int64(len(want)), n)
	assert.Equal(t, sha256Hex(want), sha256Hex(rec.Bytes()))
	// prefix, three full buffers, the rest, suffix
	assert.Equal(t, []int{6, uploadChunkSize, uploadChunkSize, uploadChunkSize, 1000, 6}, rec.writes)

	_, isWT := chunkTestBody(bytes.NewReader(data), int64(len(data))).forTransport().(io.WriterTo)
	assert.False(t, isWT, "a body of known size goes through io.LimitReader and needs no WriteTo")
}

// chunkFailWriter fails every Write.
type chunkFailWriter struct{}

func (chunkFailWriter) Write([]byte) (int, error) { return 0, errors.New("peer gone") }

// chunkCountReader counts the reads of its source.
type chunkCountReader struct {
	r     io.Reader
	reads atomic.Int32
}

func (c *chunkCountReader) Read(p []byte) (int, error) {
	c.reads.Add(1)
	return c.r.Read(p)
}

// WriteTo keeps the body's rules: a closed body reads nothing more of its source, a failing writer stops the copy,
// and a source's own failure is remembered as such.
func TestArtifactsChunkedBodyWriteToKeepsRules(t *testing.T) {
	src := &chunkCountReader{r: bytes.NewReader(make([]byte, 1<<20))}
	b := chunkTestBody(src, -1)
	require.NoError(t, b.Close())
	_, err := b.forTransport().(io.WriterTo).WriteTo(io.Discard)
	assert.ErrorIs(t, err, errArtBodyClosed)
	assert.Zero(t, src.reads.Load())

	b = chunkTestBody(bytes.NewReader(make([]byte, 1<<20)), -1)
	n, err := b.forTransport().(io.WriterTo).WriteTo(chunkFailWriter{})
	assert.EqualError(t, err, "peer gone")
	assert.Zero(t, n)
	assert.NoError(t, b.failure())

	b = chunkTestBody(io.MultiReader(bytes.NewReader(make([]byte, 1000)), chunkErrReader{}), -1)
	_, err = b.forTransport().(io.WriterTo).WriteTo(io.Discard)
	assert.EqualError(t, err, "disk failed")
	assert.EqualError(t, b.failure(), "disk failed")
}

type chunkErrReader struct{}

func (chunkErrReader) Read([]byte) (int, error) { return 0, errors.New("disk failed") }
