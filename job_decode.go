package runnerapi

import (
	"encoding/json"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
)

// The printing types below have no methods, so fmt and encoding/json treat them as plain structs.
type (
	plainJob             Job
	plainJobInfo         JobInfo
	plainJobGitInfo      JobGitInfo
	plainJobRunnerInfo   JobRunnerInfo
	plainJobVariable     JobVariable
	plainJobStep         JobStep
	plainJobHook         JobHook
	plainJobImage        JobImage
	plainJobPort         JobPort
	plainJobServiceImage JobServiceImage
	plainJobArtifact     JobArtifact
	plainJobCache        JobCache
	plainJobCredential   JobCredential
	plainJobDependency   JobDependency
	plainJobFeatures     JobFeatures
	plainJobFile         JobArtifactsFile
	plainJobPolicy       JobPolicyOptions
	plainJobInput        JobInput
	plainJobInputValue   JobInputValue
)

// The JSON decoding of each object of a job: lenient, keeping what it does not know in Extra.

// UnmarshalJSON decodes the job leniently: see Job.
func (j *Job) UnmarshalJSON(data []byte) error { return decodeObject(data, (*plainJob)(j), &j.Extra) }

// UnmarshalJSON decodes the object leniently, keeping what it does not know in Extra.
func (i *JobInfo) UnmarshalJSON(data []byte) error {
	return decodeObject(data, (*plainJobInfo)(i), &i.Extra)
}

// UnmarshalJSON decodes the object leniently, keeping what it does not know in Extra.
func (g *JobGitInfo) UnmarshalJSON(data []byte) error {
	return decodeObject(data, (*plainJobGitInfo)(g), &g.Extra)
}

// UnmarshalJSON decodes the object leniently, keeping what it does not know in Extra.
func (r *JobRunnerInfo) UnmarshalJSON(data []byte) error {
	return decodeObject(data, (*plainJobRunnerInfo)(r), &r.Extra)
}

// UnmarshalJSON decodes the object leniently, keeping what it does not know in Extra.
func (v *JobVariable) UnmarshalJSON(data []byte) error {
	return decodeObject(data, (*plainJobVariable)(v), &v.Extra)
}

// UnmarshalJSON decodes the object leniently, keeping what it does not know in Extra.
func (s *JobStep) UnmarshalJSON(data []byte) error {
	return decodeObject(data, (*plainJobStep)(s), &s.Extra)
}

// UnmarshalJSON decodes the object leniently, keeping what it does not know in Extra.
func (h *JobHook) UnmarshalJSON(data []byte) error {
	return decodeObject(data, (*plainJobHook)(h), &h.Extra)
}

// UnmarshalJSON decodes the object leniently, keeping what it does not know in Extra.
func (im *JobImage) UnmarshalJSON(data []byte) error {
	return decodeObject(data, (*plainJobImage)(im), &im.Extra)
}

// UnmarshalJSON decodes the object leniently, keeping what it does not know in Extra.
func (p *JobPort) UnmarshalJSON(data []byte) error {
	return decodeObject(data, (*plainJobPort)(p), &p.Extra)
}

// UnmarshalJSON decodes the object leniently, keeping what it does not know in Extra.
func (s *JobServiceImage) UnmarshalJSON(data []byte) error {
	return decodeObject(data, (*plainJobServiceImage)(s), &s.Extra)
}

// UnmarshalJSON decodes the object leniently, keeping what it does not know in Extra.
func (a *JobArtifact) UnmarshalJSON(data []byte) error {
	return decodeObject(data, (*plainJobArtifact)(a), &a.Extra)
}

// UnmarshalJSON decodes the object leniently, keeping what it does not know in Extra.
func (c *JobCache) UnmarshalJSON(data []byte) error {
	return decodeObject(data, (*plainJobCache)(c), &c.Extra)
}

// UnmarshalJSON decodes the object leniently, keeping what it does not know in Extra.
func (c *JobCredential) UnmarshalJSON(data []byte) error {
	return decodeObject(data, (*plainJobCredential)(c), &c.Extra)
}

// UnmarshalJSON decodes the object leniently, keeping what it does not know in Extra.
func (d *JobDependency) UnmarshalJSON(data []byte) error {
	return decodeObject(data, (*plainJobDependency)(d), &d.Extra)
}

// UnmarshalJSON decodes the object leniently, keeping what it does not know in Extra.
func (a *JobArtifactsFile) UnmarshalJSON(data []byte) error {
	return decodeObject(data, (*plainJobFile)(a), &a.Extra)
}

// UnmarshalJSON decodes the object leniently, keeping what it does not know in Extra.
func (ft *JobFeatures) UnmarshalJSON(data []byte) error {
	return decodeObject(data, (*plainJobFeatures)(ft), &ft.Extra)
}

// UnmarshalJSON decodes the object leniently, keeping what it does not know in Extra.
func (p *JobPolicyOptions) UnmarshalJSON(data []byte) error {
	return decodeObject(data, (*plainJobPolicy)(p), &p.Extra)
}

// UnmarshalJSON decodes the object leniently, keeping what it does not know in Extra.
func (in *JobInput) UnmarshalJSON(data []byte) error {
	return decodeObject(data, (*plainJobInput)(in), &in.Extra)
}

// UnmarshalJSON decodes the object leniently, keeping what it does not know in Extra.
func (v *JobInputValue) UnmarshalJSON(data []byte) error {
	return decodeObject(data, (*plainJobInputValue)(v), &v.Extra)
}

// objectField is a field of a struct as JSON names it.
type objectField struct {
	name  string
	index int
	omit  bool // omitempty or omitzero: left out when zero or empty
}

// objectFields are the JSON fields of a struct type, in order and by name.
type objectFields struct {
	list  []objectField
	index map[string]int
}

var objectFieldsCache sync.Map // reflect.Type -> *objectFields

// objectFieldsOf returns the JSON fields of struct type t: its exported fields with a json tag other than "-".
func objectFieldsOf(t reflect.Type) *objectFields {
	if f, ok := objectFieldsCache.Load(t); ok {
		return f.(*objectFields)
	}
	fs := &objectFields{index: make(map[string]int)}
	for i := range t.NumField() {
		sf := t.Field(i)
		tag, ok := sf.Tag.Lookup("json")
		if !ok || tag == "-" || !sf.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		omit := strings.Contains(","+opts+",", ",omitempty,") || strings.Contains(","+opts+",", ",omitzero,")
		fs.index[name] = len(fs.list)
		fs.list = append(fs.list, objectField{name: name, index: i, omit: omit})
	}
	f, _ := objectFieldsCache.LoadOrStore(t, fs)
	return f.(*objectFields)
}

// decodeObject decodes a JSON object into v, a pointer to a struct without methods, by exact key. A key v has no
// field for, or whose value does not fit its field, is kept in *extra as it came, and its field left zero. null
// decodes to the zero value; anything but an object or null is an error.
func decodeObject(data []byte, v any, extra *map[string]json.RawMessage) error {
	rv := reflect.ValueOf(v).Elem()
	fields := objectFieldsOf(rv.Type())
	// Most objects hold only known keys, each once, with values of the expected shapes: for those, decoding v as a
	// plain struct gives what the lenient decoding below does, without a map of every value copied out and decoded
	// again. encoding/json matches keys without regard to case, so each key must be a field's name exactly; a
	// key given twice would merge into an object's field where the lenient decoding keeps the last.
	if !lenientObjectsOnly.Load() && rv.IsZero() && fields.hasOnlyItsKeys(data) {
		err := json.Unmarshal(data, v)
		if err == nil {
			return nil
		}
		if _, syntax := err.(*json.SyntaxError); syntax {
			return err // json.Unmarshal checks the text before it decodes any of it: v is as it was
		}
		rv.SetZero() // a value of an unexpected shape: the lenient decoding keeps it in extra
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	rv.SetZero()
	for k, val := range raw {
		if i, ok := fields.index[k]; ok {
			f := rv.Field(fields.list[i].index)
			p := reflect.New(f.Type())
			if json.Unmarshal(val, p.Interface()) == nil {
				f.Set(p.Elem())
				continue
			}
		}
		if *extra == nil {
			*extra = make(map[string]json.RawMessage)
		}
		(*extra)[k] = val
	}
	return nil
}

// lenientObjectsOnly turns the plain decoding of decodeObject off: tests check it against the lenient one.
var lenientObjectsOnly atomic.Bool

// hasOnlyItsKeys reports whether data is a JSON object whose keys are all names of these fields, each given once
// and written without escapes. It reads no further than it must; a false answer only costs the lenient decoding.
func (fs *objectFields) hasOnlyItsKeys(data []byte) bool {
	if len(fs.list) > 64 {
		return false
	}
	var seen uint64
	s := jsonPrefixScanner{data: data}
	if !s.skipSpace() || s.data[s.pos] != '{' {
		return false
	}
	s.pos++
	if !s.skipSpace() {
		return false
	}
	if s.data[s.pos] != '}' {
		for {
			// A key: a string without escapes, which must name a field not seen yet.
			if s.data[s.pos] != '"' {
				return false
			}
			start, end := s.pos+1, -1
			for i := start; i < len(s.data); i++ {
				if c := s.data[i]; c == '"' {
					end = i
					break
				} else if c == '\\' {
					return false
				}
			}
			if end < 0 {
				return false
			}
			i, ok := fs.index[string(s.data[start:end])]
			if !ok || seen&(1<<i) != 0 {
				return false
			}
			seen |= 1 << i
			s.pos = end + 1
			if !s.skipSpace() || s.data[s.pos] != ':' {
				return false
			}
			s.pos++
			if !s.skipSpace() {
				return false
			}
			if s.pos = skipJSONValue(s.data, s.pos); s.pos < 0 || !s.skipSpace() {
				return false
			}
			if s.data[s.pos] == '}' {
				break
			}
			if s.data[s.pos] != ',' {
				return false
			}
			s.pos++
			if !s.skipSpace() {
				return false
			}
		}
	}
	s.pos++
	return !s.skipSpace()
}

// skipJSONValue returns where the JSON value that starts at data[pos] ends, or -1 when it does not end there or
// nests deeper than maxScanDepth: strings, with their escapes, and nested objects and arrays are skipped whole, a
// number or a literal runs to the next delimiter. It checks no more than that, and copies nothing.
func skipJSONValue(data []byte, pos int) int {
	depth := 0
	for pos < len(data) {
		switch c := data[pos]; c {
		case '"':
			pos++
			for pos < len(data) && data[pos] != '"' {
				if data[pos] == '\\' {
					pos++
				}
				pos++
			}
			if pos >= len(data) {
				return -1
			}
			pos++
		case '{', '[':
			if depth++; depth > maxScanDepth {
				return -1
			}
			pos++
			continue
		case '}', ']':
			if depth == 0 {
				return -1
			}
			depth--
			pos++
		default:
			if depth > 0 {
				pos++
				continue
			}
			start := pos
			for pos < len(data) {
				switch data[pos] {
				case ' ', '\t', '\n', '\r', ',', '}', ']':
					if pos == start {
						return -1
					}
					return pos
				}
				pos++
			}
			return -1
		}
		if depth == 0 {
			return pos
		}
	}
	return -1
}
