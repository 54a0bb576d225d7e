package runnerapi

import (
	"encoding/json"
	"reflect"
	"strings"
	"sync"
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

// lenientObjectTypes are the types whose UnmarshalJSON is decodeObject's, on a struct of the same fields without
// methods: decodePlain may decode one inside another as that struct, when it holds only its keys.
var lenientObjectTypes = map[reflect.Type]bool{
	reflect.TypeFor[Job](): true, reflect.TypeFor[JobInfo](): true, reflect.TypeFor[JobGitInfo](): true,
	reflect.TypeFor[JobRunnerInfo](): true, reflect.TypeFor[JobVariable](): true, reflect.TypeFor[JobStep](): true,
	reflect.TypeFor[JobHook](): true, reflect.TypeFor[JobImage](): true, reflect.TypeFor[JobPort](): true,
	reflect.TypeFor[JobServiceImage](): true, reflect.TypeFor[JobArtifact](): true, reflect.TypeFor[JobCache](): true,
	reflect.TypeFor[JobCredential](): true, reflect.TypeFor[JobDependency](): true,
	reflect.TypeFor[JobArtifactsFile](): true, reflect.TypeFor[JobFeatures](): true,
	reflect.TypeFor[JobPolicyOptions](): true, reflect.TypeFor[JobInput](): true, reflect.TypeFor[JobInputValue](): true,
}

// decodeObject decodes a JSON object into v, a pointer to a struct without methods, by exact key. A key v has no
// field for, or whose value does not fit its field, is kept in *extra as it came, and its field left zero. null
// decodes to the zero value; anything but an object or null is an error.
func decodeObject(data []byte, v any, extra *map[string]json.RawMessage) error {
	rv := reflect.ValueOf(v).Elem()
	// Most objects hold only known keys, each once, with values of the expected shapes: for those, the plain
	// decoding gives what the lenient one below does, without a map of every value copied out and decoded again.
	// A key given twice would merge into an object's field where the lenient decoding keeps the last.
	if rv.IsZero() && decodePlain(data, v) {
		return nil
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	fields := objectFieldsOf(rv.Type())
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

// unmarshalAnswer decodes a whole answer into v as json.Unmarshal(data, v) does. A job written as an object with
// nothing around it, as coordinators write it, is given to Job.UnmarshalJSON itself: json.Unmarshal would scan the
// text, skip over the object to find its end, and then call it with the same bytes; the decoding it does checks the
// text as json.Unmarshal does, and fails with the same error. Anything else goes to json.Unmarshal, which hands
// UnmarshalJSON the value without the white space around it.
func unmarshalAnswer(data []byte, v any) error {
	if j, ok := v.(*Job); ok && len(data) > 1 && data[0] == '{' && data[len(data)-1] == '}' {
		return j.UnmarshalJSON(data)
	}
	return json.Unmarshal(data, v)
}
