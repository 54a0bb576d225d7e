package runnerapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The plain decoding (decode_plain.go) is a shortcut: on every input it must give what the SDK's own decodings
// give without it, which plainNever leaves on their own (a build's options and environment: a strict
// json.Decoder, then key by key; a job's objects: key by key) and plainShallow takes one object at a time, as the
// SDK did before it decoded a whole job in one pass.

// plainDecodingOutcome is what decoding one input gave: the value, printed with its secrets, and the error with
// its type.
type plainDecodingOutcome struct{ value, err string }

func (o plainDecodingOutcome) String() string { return o.value + " / " + o.err }

// decodeOutcome decodes data as a value of the type new returns (a pointer), by json.Unmarshal or, when direct,
// by calling its UnmarshalJSON as a caller may, with any text.
func decodeOutcome(data []byte, newValue func() any, direct bool) plainDecodingOutcome {
	v := newValue()
	var err error
	if direct {
		err = v.(json.Unmarshaler).UnmarshalJSON(data)
	} else {
		err = json.Unmarshal(data, v)
	}
	out := plainDecodingOutcome{value: fmt.Sprintf("%#v", unredactedForComparison(v))}
	if err != nil {
		out.err = fmt.Sprintf("%T: %v", err, err)
	}
	return out
}

// unredactedForComparison returns what of v a comparison must see: the whole value as nested maps, slices and
// scalars, secrets in clear (a Build or a Job prints them masked, which would hide a difference in them), and a
// field left zero told from a value kept in Extra.
func unredactedForComparison(v any) any { return reflectPlain(reflect.ValueOf(v).Elem()) }

// reflectPlain turns a value into maps, slices and scalars, which %#v prints without the methods that mask. It
// reads unexported fields too (a time.Time's), and tells nil from empty.
func reflectPlain(v reflect.Value) any {
	switch v.Kind() {
	case reflect.Slice, reflect.Map, reflect.Pointer:
		if v.IsNil() {
			return "nil " + v.Type().String()
		}
	}
	switch v.Kind() {
	case reflect.Struct:
		out := map[string]any{}
		for i := range v.NumField() {
			out[v.Type().Field(i).Name] = reflectPlain(v.Field(i))
		}
		return out
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return "bytes " + string(v.Bytes())
		}
		out := make([]any, v.Len())
		for i := range out {
			out[i] = reflectPlain(v.Index(i))
		}
		return out
	case reflect.Map:
		out := map[string]any{}
		for _, k := range v.MapKeys() {
			out[k.String()] = reflectPlain(v.MapIndex(k))
		}
		return out
	case reflect.Pointer:
		return []any{"ptr", reflectPlain(v.Elem())}
	case reflect.Bool:
		return v.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return v.Uint()
	case reflect.Float32, reflect.Float64:
		return v.Float()
	case reflect.String:
		return v.String()
	}
	panic(fmt.Sprintf("no comparison for a %v", v.Type()))
}

// plainDecodingTargets are the types whose decoding goes through decodePlain: a v4 job and a v1 build, and a
// build's options and environment on their own, as a caller may decode them.
var plainDecodingTargets = []struct {
	name     string
	newValue func() any
}{
	{"Job", func() any { return new(Job) }},
	{"Build", func() any { return new(Build) }},
	{"Options", func() any { return new(Options) }},
	{"Environment", func() any { return new(Environment) }},
}

// checkPlainDecodingSame fails t when decoding data into any target, by json.Unmarshal and by a direct
// UnmarshalJSON call, gives another value or error with the plain decoding than without it.
func checkPlainDecodingSame(t testing.TB, data []byte) {
	t.Helper()
	for _, target := range plainDecodingTargets {
		for _, direct := range []bool{false, true} {
			if _, ok := target.newValue().(json.Unmarshaler); direct && !ok {
				continue
			}
			whole := decodeOutcome(data, target.newValue, direct)
			var shallow, never plainDecodingOutcome
			withPlainDecoding(plainShallow, func() { shallow = decodeOutcome(data, target.newValue, direct) })
			withPlainDecoding(plainNever, func() { never = decodeOutcome(data, target.newValue, direct) })
			if whole != never || shallow != never {
				t.Errorf("%s (direct %v) of %q:\nwithout the plain decoding: %v\none object at a time:        %v\nin one pass:                 %v",
					target.name, direct, data, never, shallow, whole)
			}
		}
	}
}

// plainDecodingOddInputs are texts written to catch what encoding/json does its own way: keys matched without
// regard to case (also by Unicode folding: "\u212a" is the Kelvin sign, which folds to "k"), keys given twice at
// each depth, escaped keys, null where an object or a list is expected, values of other shapes, unknown keys
// deep inside, text that is not JSON or has more after the value.
var plainDecodingOddInputs = []string{
	// v1 options and environment.
	`{"image":"ruby"}`, `{"IMAGE":"ruby"}`, `{"Image":"ruby"}`, `{"IMAGE":"ruby","future":1}`, `{"image":"a","image":"b"}`,
	`{"image":"a","IMAGE":"b"}`, `{"\u0069mage":"ruby"}`, `{"image":{"name":"ruby"}}`, `{"image":null}`, `{"image":7}`,
	`{"services":["a",1]}`, `{"services":null}`, `{"services":"postgres"}`, `{"future":{"a":[1]}}`,
	`{"artifacts":{"name":"a"},"artifacts":{"paths":["p"]}}`, `{"artifacts":{"name":"a","future":1}}`,
	`{"artifacts":{"NAME":"a"}}`, `{"artifacts":{"paths":"p"}}`, `{"artifacts":null}`, `{"artifacts":[]}`,
	`{"cache":{"key":"k","Key":"K"}}`, `{"cache":{"untracked":"yes"}}`, `{"environment":"production"}`,
	`{"environment":{"name":"p","url":"u","action":"stop"}}`, `{"environment":{"NAME":"p"}}`,
	`{"environment":{"name":"p","tier":"production"}}`, `{"environment":{"name":1}}`, `{"environment":null}`,
	`{"environment":["p"]}`, `{"environment":{"name":"a","name":"b"}}`, `{"environment":{"name":"a"},"environment":"b"}`,
	`"production"`, `"prod\u0075ction"`, `{"name":"p"}`, `{"NAME":"p","url":"u"}`, `{"name":"p","future":true}`,
	`{"options":{"image":"ruby"},"OPTIONS":{"services":["s"]}}`, `{"id":1,"options":{"IMAGE":"ruby"}}`,
	`{"options":{"image":"ruby","environment":{"name":"p","name":"q"}}}`, `{"options":"odd"}`, `{"options":null}`,
	`{"image":"ruby"} `, ` {"image":"ruby"}`, "\t{\"image\":\"ruby\"}\n", `{"image":"ruby"} {}`, `{"image":"ruby"}x`,
	`{"image":"ruby"}}`, `{"image":"ruby",}`, `{"image":"ru`, `{"image":tru}`, `{"image":"ruby"`, `{image:"ruby"}`,
	``, ` `, `null`, `{}`, `[]`, `[{}]`, `1`, `true`, `"\ud800"`, `{"image":"\ud800x"}`, `{"image":"\xff"}`,
	`{"\u212amage":"a"}`, `{"artifacts":{"name":"a"},"artifacts":{"paths":["p"],"future":1}}`,
	`{"IMAGE":"x","artifacts":{"future":1}}`, `{"image":"x","image":"y","cache":{"future":1}}`,
	`{"environment":{"name":"a"},"environment":{"url":"u"},"cache":{"Key":"k","future":1}}`, `{"artifacts":{"name":"a"},"cache":{"key":"k"},"after_script":["x"],"dependencies":[]}`,
	// v4 jobs.
	`{"id":1,"ID":2}`, `{"ID":2}`, `{"Id":3,"token":"t"}`, `{"id":1,"id":"x"}`, `{"id":"x","id":1}`,
	`{"job_info":{"name":"a"},"job_info":{"stage":"b"}}`, `{"job_info":{"NAME":"a"}}`, `{"job_info":{"name":"a","name":"b"}}`,
	`{"job_info":{"name":"a","future":1}}`, `{"job_info":{"id":"x"}}`, `{"job_info":"x"}`, `{"job_info":[]}`,
	`{"job_info":null}`, `{"job_info":{"\u0069d":7}}`, `{"job_info":{"i\"d":7}}`, `{"job_info":{}}`,
	`{"variables":[{"key":"A"}],"variables":[{"key":"B"}]}`, `{"variables":[{"KEY":"a","value":"b"}]}`,
	`{"variables":[{"key":"a","key":"b"}]}`, `{"variables":[null,{"key":"A"}]}`, `{"variables":[{"key":"A"},"odd"]}`,
	`{"variables":[{"key":"A"},[]]}`, `{"variables":[{"key":"A","public":"yes"}]}`, `{"variables":[{"\u212aey":"a"}]}`,
	`{"variables":{"key":"A"}}`, `{"variables":null}`, `{"variables":[]}`, `{"variables":[ ]}`, `{"variables":[{} , null ]}`,
	`{"services":[{"name":"s","variables":[{"key":"K","KEY":"L"}]}]}`, `{"services":[{"name":"s","variables":[{"key":"K","x":1}]}]}`,
	`{"services":[{"name":"s","ports":[{"number":80,"Number":81}]}]}`, `{"services":[{"name":"s","ports":[{"number":"80"}]}]}`,
	`{"image":{"name":"ruby","ports":[{"number":80},{"number":81,"name":"b","name":"c"}]}}`, `{"image":null}`,
	`{"image":"ruby"}`, `{"image":{"name":"ruby","executor_opts":{"a":1,"a":2,"A":3}}}`, `{"steps":{}}`,
	`{"dependencies":[{"id":1,"artifacts_file":{"filename":"a","FILENAME":"b"}}]}`, `{"dependencies":[{"artifacts_file":null}]}`,
	`{"dependencies":[{"id":1,"artifacts_file":{"filename":"a","size":"1"}}]}`, `{"features":{"trace_sections":true,"trace_sections":false}}`,
	`{"inputs":[{"key":"k","value":{"content":{"a":[1,2]},"sensitive":true}}]}`, `{"inputs":[{"key":"k","value":{"Content":1}}]}`,
	`{"inputs":[{"key":"k","value":{"content":{"a":1,"a":2}}}]}`, `{"inputs":[{"key":"k","value":null}]}`,
	`{"git_info":{"depth":"20"}}`, `{"git_info":{"protected":true}}`, `{"git_info":{"protected":null}}`,
	`{"git_info":{"depth":1e400}}`, `{"git_info":{"depth":20.5}}`, `{"runner_info":{"timeout":-1}}`,
	`{"policy_options":{"policy_variables_override_allowed":false}}`, `{"secrets":{"a":{}},"secrets":{"b":{}}}`,
	`{"run":"[{\"name\":\"s\"}]","steps":[]}`, `{"token":"\u0074"}`, `{"id":1} `, ` {"id":1}`, `{"id":1}x`,
	`{"job_info":{"name":"a"}`, `{"job_info":{"name":"a"}}}`, `{"variables":[{"key":"A"}}`, `{"variables":[{"key":"A"]}`,
	`{"id":1,"job_info":{"name":"` + "\x00" + `"}}`, `{"variables":[nul]}`, `{"variables":[nullx]}`,
	`{"job_info":nul}`, `{"job_info":null ,"id":1}`, `{"variables":[null,]}`,
	`{"id":1,"job_info":{"id":1,"name":"n"},"git_info":{"ref":"main"},"variables":[{"key":"K","value":"V","public":true}]}`,
}

// TestPlainDecodingIsTheSDKsOwn: on the odd inputs above, the fixtures of testdata and thousands of variants of
// the job fixtures, decoding with the plain decoding, whole or one object at a time, gives the value and the error
// the SDK's own decodings give.
func TestPlainDecodingIsTheSDKsOwn(t *testing.T) {
	for _, data := range plainDecodingInputs(t) {
		checkPlainDecodingSame(t, []byte(data))
	}
}

// plainDecodingInputs are the odd inputs, the fixtures of testdata, the options of those that are builds, and
// variants of the fixtures.
func plainDecodingInputs(t *testing.T) []string {
	inputs := append([]string(nil), plainDecodingOddInputs...)
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	rng := rand.New(rand.NewPCG(14, 1))
	for _, name := range files {
		data, err := os.ReadFile(name)
		require.NoError(t, err)
		bases := [][]byte{data}
		var build struct {
			Options json.RawMessage `json:"options"`
		}
		if json.Unmarshal(data, &build) == nil && build.Options != nil {
			bases = append(bases, build.Options)
		}
		for _, base := range bases {
			inputs = append(inputs, string(base))
			// Variants: a key in other case, a value of another shape, an unknown key, null, a key left out.
			for range 100 {
				var tree any
				require.NoError(t, json.Unmarshal(base, &tree))
				for range 1 + rng.IntN(3) {
					tree = mutateJSON(rng, tree)
				}
				b, err := json.Marshal(tree)
				require.NoError(t, err)
				inputs = append(inputs, string(b))
			}
		}
	}
	return inputs
}

// TestPlainDecodingPinned pins what the decodings give where encoding/json and the SDK's own rules part, so that
// keeping the plain decoding the same as them cannot drift with them: a build's options take a key in another case
// when the strict pass accepts the whole object (encoding/json, strict or not, matches keys without regard to case,
// and DisallowUnknownFields refuses only keys that match no field), and keep it in Extra when something else sends
// the options to be decoded key by key; a job's objects keep such keys in Extra always.
func TestPlainDecodingPinned(t *testing.T) {
	options := func(s string) Options {
		var o Options
		require.NoError(t, json.Unmarshal([]byte(s), &o), s)
		return o
	}
	assert.Equal(t, Options{Image: "ruby"}, options(`{"IMAGE":"ruby"}`))
	assert.Equal(t, Options{Extra: map[string]json.RawMessage{"IMAGE": json.RawMessage(`"ruby"`),
		"future": json.RawMessage(`1`)}}, options(`{"IMAGE":"ruby","future":1}`))
	assert.Equal(t, Options{Image: "b"}, options(`{"image":"a","image":"b"}`))
	// The strict pass decodes the second object into the first.
	assert.Equal(t, Options{Artifacts: ArtifactsOptions{Name: "a", Paths: []string{"p"}}},
		options(`{"artifacts":{"name":"a"},"artifacts":{"paths":["p"]}}`))
	// An unknown key inside artifacts fails the strict pass; decoded key by key, artifacts ignores it.
	assert.Equal(t, Options{Artifacts: ArtifactsOptions{Name: "a"}}, options(`{"artifacts":{"name":"a","future":1}}`))
	assert.Equal(t, Options{Extra: map[string]json.RawMessage{"image": json.RawMessage(`{"name":"ruby"}`)}},
		options(`{"image":{"name":"ruby"}}`))
	assert.Equal(t, Options{Environment: Environment{Name: "p"}}, options(`{"environment":{"NAME":"p"}}`))

	job := func(s string) Job {
		var j Job
		require.NoError(t, json.Unmarshal([]byte(s), &j), s)
		return j
	}
	assert.Equal(t, JobInfo{Extra: map[string]json.RawMessage{"NAME": json.RawMessage(`"a"`)}},
		job(`{"job_info":{"NAME":"a"}}`).JobInfo)
	assert.Equal(t, map[string]json.RawMessage{"ID": json.RawMessage(`2`)}, job(`{"ID":2}`).Extra)
	// Given twice, an object's key keeps the last value, whole.
	assert.Equal(t, JobInfo{Stage: "b"}, job(`{"job_info":{"name":"a"},"job_info":{"stage":"b"}}`).JobInfo)
	assert.Equal(t, JobVariables{{Key: "b"}}, job(`{"variables":[{"key":"a","key":"b"}]}`).Variables)
	assert.Equal(t, JobVariables{{}, {Key: "A"}}, job(`{"variables":[null,{"key":"A"}]}`).Variables)
	assert.Equal(t, JobVariables{{Key: "K", Extra: map[string]json.RawMessage{"KEY": json.RawMessage(`"L"`)}}},
		job(`{"services":[{"name":"s","variables":[{"key":"K","KEY":"L"}]}]}`).Services[0].Variables)
	assert.Equal(t, map[string]json.RawMessage{"image": json.RawMessage(`"ruby"`)}, job(`{"image":"ruby"}`).Extra)
}

// TestPlainDecodingTakesOnePass: the shortcut is there to be taken. Every lenient object's type has a struct
// without methods of its layout, and the job of the benchmark harness and the full fixture are decoded in one
// pass, with no job object's UnmarshalJSON called: the allocations of TestCallAllocations count on it.
func TestPlainDecodingTakesOnePass(t *testing.T) {
	for typ := range lenientObjectTypes {
		assert.NotNil(t, plainShapeOf(typ).whole, "%v has no struct of its layout", typ)
	}
	shape := plainShapeOf(reflect.TypeFor[plainJob]())
	require.NotNil(t, shape.whole)
	full, err := os.ReadFile(filepath.Join("testdata", "job_full.json"))
	require.NoError(t, err)
	for name, data := range map[string][]byte{"harness": overheadJobJSON(t), "job_full.json": full} {
		assert.True(t, shape.holdsOnlyItsKeys(data, true), name)
		var j Job
		allocs := testing.AllocsPerRun(20, func() {
			j = Job{}
			require.NoError(t, json.Unmarshal(data, &j))
		})
		var shallow float64
		withPlainDecoding(plainShallow, func() {
			shallow = testing.AllocsPerRun(20, func() {
				j = Job{}
				require.NoError(t, json.Unmarshal(data, &j))
			})
		})
		// Each object decoded on its own costs a decoder and a scanner's stack at least.
		assert.Less(t, allocs, shallow-20, "%s: %.0f allocations in one pass, %.0f an object at a time", name, allocs, shallow)
	}
}

// FuzzPlainDecoding: on any text, decoding a job, a build, options or an environment gives the same value and
// error with the plain decoding, whole or one object at a time, as without it, and as before; the client's
// decoding of a job gives what json.Unmarshal gives.
func FuzzPlainDecoding(f *testing.F) {
	for _, s := range plainDecodingOddInputs {
		f.Add([]byte(s))
	}
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkPlainDecodingSame(t, data)
		checkBuildDecodingAsBefore(t, data)
		checkUnmarshalAnswer(t, data)
	})
}

// The decoding of a build's options and environment as the SDK wrote it before the plain decoding, kept here as
// the reference the SDK's must match: a strict json.Decoder per object, then, when that fails, key by key.

// environmentBefore is an Environment decoded the way it was.
type environmentBefore Environment

func (e *environmentBefore) UnmarshalJSON(data []byte) error {
	*e = environmentBefore{}
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) > 0 && t[0] == '"' {
		return json.Unmarshal(data, &e.Name)
	}
	type plain environmentBefore
	if strictBefore(data, (*plain)(e)) == nil {
		return nil
	}
	*e = environmentBefore{}
	extra, err := knownBefore(data, map[string]any{"name": &e.Name, "url": &e.URL, "action": &e.Action})
	e.Extra = extra
	return err
}

// optionsBefore is Options decoded the way they were, their environment too.
type optionsBefore struct {
	Image        string                     `json:"image,omitempty"`
	Services     []string                   `json:"services,omitempty"`
	Artifacts    ArtifactsOptions           `json:"artifacts,omitzero"`
	Cache        CacheOptions               `json:"cache,omitzero"`
	Dependencies []string                   `json:"dependencies,omitempty"`
	AfterScript  []string                   `json:"after_script,omitempty"`
	Environment  environmentBefore          `json:"environment,omitzero"`
	Extra        map[string]json.RawMessage `json:"-"`
}

func (o *optionsBefore) UnmarshalJSON(data []byte) error {
	type plain optionsBefore
	*o = optionsBefore{}
	if strictBefore(data, (*plain)(o)) == nil {
		return nil
	}
	*o = optionsBefore{}
	extra, err := knownBefore(data, map[string]any{
		"image": &o.Image, "services": &o.Services, "artifacts": &o.Artifacts, "cache": &o.Cache,
		"dependencies": &o.Dependencies, "after_script": &o.AfterScript, "environment": &o.Environment,
	})
	o.Extra = extra
	return err
}

func strictBefore(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func knownBefore(data []byte, known map[string]any) (map[string]json.RawMessage, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, err
	}
	var extra map[string]json.RawMessage
	for k, v := range raw {
		if dst, ok := known[k]; ok && json.Unmarshal(v, dst) == nil {
			continue
		} else if ok {
			reflect.ValueOf(dst).Elem().SetZero()
		}
		if extra == nil {
			extra = make(map[string]json.RawMessage)
		}
		extra[k] = v
	}
	return extra, nil
}

// buildBefore is the type of a Build whose options are decoded the way they were: Build's fields, its Options
// an optionsBefore.
var buildBefore = func() reflect.Type {
	t := reflect.TypeFor[Build]()
	fields := make([]reflect.StructField, t.NumField())
	for i := range fields {
		f := t.Field(i)
		if f.Name == "Options" {
			f.Type = reflect.TypeFor[optionsBefore]()
		}
		fields[i] = reflect.StructField{Name: f.Name, Type: f.Type, Tag: f.Tag}
	}
	return reflect.StructOf(fields)
}()

// TestBuildDecodingIsAsBefore: on the odd inputs, the fixtures and their options, a build, its options and its
// environment decode, by json.Unmarshal and by a direct UnmarshalJSON call, to the values and errors the decoding
// before the plain one gave.
func TestBuildDecodingIsAsBefore(t *testing.T) {
	for _, data := range plainDecodingInputs(t) {
		checkBuildDecodingAsBefore(t, []byte(data))
	}
}

// checkBuildDecodingAsBefore fails t when a build, options or an environment decode from data otherwise than
// they did before the plain decoding.
func checkBuildDecodingAsBefore(t testing.TB, data []byte) {
	t.Helper()
	for _, pair := range []struct {
		name        string
		now, before func() any
		direct      bool
	}{
		{"Build", func() any { return new(Build) }, func() any { return reflect.New(buildBefore).Interface() }, false},
		{"Options", func() any { return new(Options) }, func() any { return new(optionsBefore) }, false},
		{"Options", func() any { return new(Options) }, func() any { return new(optionsBefore) }, true},
		{"Environment", func() any { return new(Environment) }, func() any { return new(environmentBefore) }, false},
		{"Environment", func() any { return new(Environment) }, func() any { return new(environmentBefore) }, true},
	} {
		now, before := decodeOutcome(data, pair.now, pair.direct), decodeOutcome(data, pair.before, pair.direct)
		// encoding/json names the type it decodes in its errors, and the reference's has no name.
		before.err = strings.ReplaceAll(before.err, buildBefore.String(), "runnerapi.Build")
		before.err = strings.ReplaceAll(before.err, "Go struct field .", "Go struct field Build.")
		if now != before {
			t.Errorf("%s (direct %v) of %q:\nbefore: %v\nnow:    %v", pair.name, pair.direct, data, before, now)
		}
	}
}

// TestUnmarshalAnswerIsJSONUnmarshal: the client's decoding of a whole answer into a job, which calls its
// UnmarshalJSON itself when it can, gives the value and the very error (its offset too) json.Unmarshal gives, into
// a zero job and into one already filled, on the inputs above, with and without white space around them.
func TestUnmarshalAnswerIsJSONUnmarshal(t *testing.T) {
	for _, data := range plainDecodingInputs(t) {
		for _, text := range []string{data, " " + data, data + "\n", "\t" + data + " "} {
			checkUnmarshalAnswer(t, []byte(text))
		}
	}
}

// checkUnmarshalAnswer fails t when unmarshalAnswer and json.Unmarshal decode data into a job differently.
func checkUnmarshalAnswer(t testing.TB, data []byte) {
	t.Helper()
	for _, was := range []Job{{}, {ID: 9, Token: "kept", Variables: JobVariables{{Key: "K"}}}} {
		viaAnswer, viaUnmarshal := was, was
		errAnswer, errUnmarshal := unmarshalAnswer(data, &viaAnswer), json.Unmarshal(data, &viaUnmarshal)
		a := plainDecodingOutcome{value: fmt.Sprintf("%#v", unredactedForComparison(&viaAnswer)), err: fmt.Sprintf("%#v", errAnswer)}
		u := plainDecodingOutcome{value: fmt.Sprintf("%#v", unredactedForComparison(&viaUnmarshal)), err: fmt.Sprintf("%#v", errUnmarshal)}
		if a != u {
			t.Errorf("%q into %v:\njson.Unmarshal:  %v\nunmarshalAnswer: %v", data, UnredactedJob(was), u, a)
		}
	}
}
