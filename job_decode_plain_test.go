package runnerapi

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// decodeJobBothWays decodes data as a Job with the plain decoding of objects that hold only known keys, and
// without it.
func decodeJobBothWays(data []byte) (plain, lenient Job, plainErr, lenientErr error) {
	plainErr = json.Unmarshal(data, &plain)
	withPlainDecoding(plainNever, func() { lenientErr = json.Unmarshal(data, &lenient) })
	return plain, lenient, plainErr, lenientErr
}

// withPlainDecoding runs fn with decodePlain set to mode.
func withPlainDecoding(mode int32, fn func()) {
	was := plainDecoding.Swap(mode)
	defer plainDecoding.Store(was)
	fn()
}

// mutateJSON changes one thing at random in a decoded JSON tree: a key's case, a value's shape, an unknown key, a
// null, a removed key.
func mutateJSON(rng *rand.Rand, v any) any {
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if len(keys) == 0 || rng.IntN(4) == 0 {
			switch rng.IntN(3) {
			case 0:
				x["future_key"] = map[string]any{"a": 1.0}
			case 1:
				if len(keys) > 0 {
					k := keys[rng.IntN(len(keys))]
					x[strings.ToUpper(k)] = x[k]
					delete(x, k)
				}
			default:
				if len(keys) > 0 {
					delete(x, keys[rng.IntN(len(keys))])
				}
			}
			return x
		}
		k := keys[rng.IntN(len(keys))]
		x[k] = mutateJSON(rng, x[k])
		return x
	case []any:
		if len(x) == 0 {
			return []any{"odd"}
		}
		i := rng.IntN(len(x))
		x[i] = mutateJSON(rng, x[i])
		return x
	}
	return []any{nil, "a string", 12.5, true, map[string]any{}, []any{}}[rng.IntN(6)]
}

// TestJobPlainDecodeIsTheLenientOne: decoding a job's objects as plain structs when they hold only known keys,
// each once, gives the job and the error the lenient decoding gives, for the payloads of testdata, thousands of
// variants of them (a key in other case, a value of another shape, an unknown key, null, a key left out) and
// payloads written to catch what encoding/json does its own way (keys matched without regard to case, keys given
// twice, escaped keys).
func TestJobPlainDecodeIsTheLenientOne(t *testing.T) {
	var payloads []string
	files, err := filepath.Glob(filepath.Join("testdata", "job_*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	rng := rand.New(rand.NewPCG(14, 4))
	for _, name := range files {
		data, err := os.ReadFile(name)
		require.NoError(t, err)
		payloads = append(payloads, string(data))
		for range 500 {
			var tree any
			require.NoError(t, json.Unmarshal(data, &tree))
			for range 1 + rng.IntN(3) {
				tree = mutateJSON(rng, tree)
			}
			b, err := json.Marshal(tree)
			require.NoError(t, err)
			payloads = append(payloads, string(b))
		}
	}
	payloads = append(payloads,
		`{"id":1,"ID":2}`, `{"ID":2}`, `{"Id":3,"token":"t"}`, `{"id":1,"id":"x"}`, `{"id":"x","id":1}`,
		`{"job_info":{"name":"a"},"job_info":{"stage":"b"}}`, `{"variables":[{"key":"A"}],"variables":[{"key":"B"}]}`,
		`{"secrets":{"a":{}},"secrets":{"b":{}}}`, `{"\u0069d":5}`, `{"i\"d":5}`, `{"token":"\u0074"}`,
		`{"job_info":{"\u0069d":7}}`, `{"job_info":{"ID":7}}`, `{"variables":[{"KEY":"a","value":"b"}]}`,
		`{"id":1.5}`, `{"id":-3}`, `{"id":1e3}`, `{"image":null}`, `{"image":"ruby"}`, `{"steps":{}}`, `null`, `{}`,
		`[]`, `"job"`, `{"id":1} `, ` {"id":1}`, `{"inputs":[{"key":"k","value":{"content":{"a":[1,2]},"sensitive":true}}]}`,
		`{"features":{"trace_sections":true,"trace_sections":false}}`, `{"git_info":{"depth":"20"}}`,
		`{"run":"[{\"name\":\"s\"}]","steps":[]}`, `{"k\u212aey":1}`, `{"variables":[{"\u212aey":"a"}]}`)
	for _, p := range payloads {
		plain, lenient, plainErr, lenientErr := decodeJobBothWays([]byte(p))
		assert.Equal(t, fmt.Sprint(lenientErr), fmt.Sprint(plainErr), p)
		if !assert.True(t, reflect.DeepEqual(UnredactedJob(lenient), UnredactedJob(plain)), p) {
			t.Logf("lenient: %+v", UnredactedJob(lenient))
			t.Logf("plain:   %+v", UnredactedJob(plain))
		}
	}
	t.Logf("%d payloads", len(payloads))
}

// TestJobDecodeCalledWithBadJSON: a Job's UnmarshalJSON called directly on text that is not JSON fails as the
// lenient decoding fails, and leaves the job as it was.
func TestJobDecodeCalledWithBadJSON(t *testing.T) {
	for _, p := range []string{`{"id":1,`, `{"id":tru}`, `{"id":1}}`, `{"token":"a`, `{"job_info":{"id":}}`} {
		for _, was := range []Job{{}, {ID: 9, Token: "kept"}} {
			j := was
			err := j.UnmarshalJSON([]byte(p))
			l := was
			var lerr error
			withPlainDecoding(plainNever, func() { lerr = l.UnmarshalJSON([]byte(p)) })
			assert.Error(t, err, p)
			assert.Equal(t, fmt.Sprint(lerr), fmt.Sprint(err), p)
			assert.Equal(t, UnredactedJob(l), UnredactedJob(j), p)
		}
	}
}
