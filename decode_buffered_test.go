package runnerapi

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// chunkedBody hands out data a few bytes a read, then fails with err (io.EOF for a body that ends).
type chunkedBody struct {
	data  string
	chunk int
	err   error
}

func (b *chunkedBody) Read(p []byte) (int, error) {
	if b.data == "" {
		return 0, b.err
	}
	n := copy(p[:min(len(p), b.chunk)], b.data)
	b.data = b.data[n:]
	return n, nil
}

// TestBufferedDecodeIsTheStreamedOne: a small answer read whole and decoded with json.Unmarshal ends as
// json.Decoder on the body itself ends it (the streamed decode, decodeStreamedJSON): the same value, the same
// error, the same ID recovered from an answer cut short, whatever the body holds, whether it is longer or
// shorter than it says, and however its reads fail.
func TestBufferedDecodeIsTheStreamedOne(t *testing.T) {
	bodies := map[string]string{
		"build":                   `{"id":7,"token":"t","name":"b","variables":[{"key":"K","value":"v","public":true}],"options":{"image":"i"}}`,
		"build, spaces around":    " \n{\"id\":7,\"name\":\"b\"}\n\t ",
		"trailing bytes":          `{"id":7,"name":"b"} trailing`,
		"two values":              `{"id":7}{"id":8}`,
		"cut short":               `{"id":7,"name":"b","commands":"ma`,
		"cut before the ID ends":  `{"name":"b","id":7`,
		"ID after a cut":          `{"name":"b"`,
		"not JSON":                `not json`,
		"whitespace only":         " \n ",
		"wrong shape":             `{"id":"seven","name":"b"}`,
		"wrong shape, later ID":   `{"name":5,"id":7}`,
		"unknown options":         `{"id":7,"options":{"image":"i","new_option":{"a":1}}}`,
		"array":                   `[1,2,3]`,
		"null":                    `null`,
		"true":                    `true`,
		"string with a brace":     `{"id":7,"name":"}{"}`,
		"nested ID only":          `{"options":{"id":9}}`,
		"invalid UTF-8 in string": "{\"id\":7,\"name\":\"\xff\"}",
	}
	failures := map[string]error{
		"ends":           io.EOF,
		"cut":            io.ErrUnexpectedEOF,
		"fails its read": errors.New("connection reset by peer"),
	}
	for name, body := range bodies {
		for how, end := range failures {
			// The length the answer says: right, shorter than the body (it goes on), longer (it stops early) and
			// none (-1, a chunked body).
			for _, said := range []int{len(body), max(1, len(body)/2), len(body) + 10, -1} {
				for _, chunk := range []int{1, 7, 1 << 20} {
					label := fmt.Sprintf("%s, %s, says %d of %d, reads of %d", name, how, said, len(body), chunk)
					var streamed, buffered Build
					errStreamed := decodeStreamedJSON(&chunkedBody{data: body, chunk: chunk, err: end}, &streamed, &streamed.ID)
					errBuffered := decodeJSON(&chunkedBody{data: body, chunk: chunk, err: end}, int64(said), &buffered)
					assert.Equal(t, fmt.Sprint(errStreamed), fmt.Sprint(errBuffered), label)
					assert.Equal(t, UnredactedBuild(streamed), UnredactedBuild(buffered), label)

					var streamedJob, bufferedJob Job
					errStreamed = decodeStreamedJSON(&chunkedBody{data: body, chunk: chunk, err: end}, &streamedJob, &streamedJob.ID)
					errBuffered = decodeJSON(&chunkedBody{data: body, chunk: chunk, err: end}, int64(said), &bufferedJob)
					assert.Equal(t, fmt.Sprint(errStreamed), fmt.Sprint(errBuffered), "job: "+label)
					assert.Equal(t, streamedJob.ID, bufferedJob.ID, "job: "+label)
					assert.Equal(t, fmt.Sprintf("%+v", streamedJob), fmt.Sprintf("%+v", bufferedJob), "job: "+label)

					var streamedAny, bufferedAny any
					errStreamed = decodeStreamedJSON(&chunkedBody{data: body, chunk: chunk, err: end}, &streamedAny, nil)
					errBuffered = decodeJSON(&chunkedBody{data: body, chunk: chunk, err: end}, int64(said), &bufferedAny)
					assert.Equal(t, fmt.Sprint(errStreamed), fmt.Sprint(errBuffered), "any: "+label)
					assert.Equal(t, streamedAny, bufferedAny, "any: "+label)
				}
			}
		}
	}
}

// TestBufferedDecodeBounds: an answer that says it is small but goes on past the JSON bound is cut there, as a
// streamed one; one that says it is large is streamed.
func TestBufferedDecodeBounds(t *testing.T) {
	huge := `{"id":3,"name":"` + strings.Repeat("a", maxJSONBody) + `"}`
	for _, said := range []int64{100, maxBufferedAnswer - 1, maxBufferedAnswer, int64(len(huge)), -1} {
		var b Build
		err := decodeJSON(&chunkedBody{data: huge, chunk: 32 << 10, err: io.EOF}, said, &b)
		require.Error(t, err, "says %d", said)
		assert.Contains(t, err.Error(), "larger than", "says %d", said)
		assert.Equal(t, int64(3), b.ID, "says %d: the ID is read from the start", said)
	}
}
