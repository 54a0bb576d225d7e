package runnerapi

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
)

// UnredactedJob is a Job whose JSON encoding holds its secrets, as the coordinator sent them: convert a Job to it
// to store the job and run it later (json.Unmarshal reads it back into a Job). Printing and logging it still mask
// the secrets; only its JSON does not.
type UnredactedJob Job

// MarshalJSON encodes the job with its secrets.
func (j UnredactedJob) MarshalJSON() ([]byte, error) { return Job(j).encodeJSON(true) }

// Format prints the job with its secrets masked, for every verb.
func (j UnredactedJob) Format(f fmt.State, verb rune) { Job(j).Format(f, verb) }

// LogValue logs the fields that identify the job, and no secret.
func (j UnredactedJob) LogValue() slog.Value { return Job(j).LogValue() }

// The JSON encoding of each object of a job: secrets masked (MarshalJSON), or not (UnredactedJob), and Extra
// merged back.

// jobEncoder is an object of a job that encodes itself with its secrets masked, or not.
type jobEncoder interface {
	encodeJSON(unredacted bool) ([]byte, error)
}

func (j Job) encodeJSON(unredacted bool) ([]byte, error) {
	if !unredacted {
		j = j.redacted()
	}
	return encodeObject(plainJob(j), j.Extra, unredacted)
}

func (v JobVariable) encodeJSON(unredacted bool) ([]byte, error) {
	if !unredacted {
		v = v.redacted()
	}
	return encodeObject(plainJobVariable(v), v.Extra, unredacted)
}

func (g JobGitInfo) encodeJSON(unredacted bool) ([]byte, error) {
	if !unredacted {
		g = g.redacted()
	}
	return encodeObject(plainJobGitInfo(g), g.Extra, unredacted)
}

func (s JobServiceImage) encodeJSON(unredacted bool) ([]byte, error) {
	if !unredacted {
		s = s.redacted()
	}
	return encodeObject(plainJobServiceImage(s), s.Extra, unredacted)
}

func (c JobCredential) encodeJSON(unredacted bool) ([]byte, error) {
	if !unredacted {
		c = c.redacted()
	}
	return encodeObject(plainJobCredential(c), c.Extra, unredacted)
}

func (d JobDependency) encodeJSON(unredacted bool) ([]byte, error) {
	if !unredacted {
		d = d.redacted()
	}
	return encodeObject(plainJobDependency(d), d.Extra, unredacted)
}

func (in JobInput) encodeJSON(unredacted bool) ([]byte, error) {
	if !unredacted {
		in = in.redacted()
	}
	return encodeObject(plainJobInput(in), in.Extra, unredacted)
}

// MarshalJSON encodes the job with its secrets masked, so that a log handler or an error report that marshals it,
// alone or in a slice, shows none of them. UnredactedJob encodes them.
func (j Job) MarshalJSON() ([]byte, error) { return j.encodeJSON(false) }

// MarshalJSON encodes the clone information with the credentials of RepoURL masked.
func (g JobGitInfo) MarshalJSON() ([]byte, error) { return g.encodeJSON(false) }

// MarshalJSON encodes the variable with its value masked when it is a secret.
func (v JobVariable) MarshalJSON() ([]byte, error) { return v.encodeJSON(false) }

// MarshalJSON encodes the service with the values of its secret variables masked.
func (s JobServiceImage) MarshalJSON() ([]byte, error) { return s.encodeJSON(false) }

// MarshalJSON encodes the credential with its password masked.
func (c JobCredential) MarshalJSON() ([]byte, error) { return c.encodeJSON(false) }

// MarshalJSON encodes the dependency with its token masked.
func (d JobDependency) MarshalJSON() ([]byte, error) { return d.encodeJSON(false) }

// MarshalJSON encodes the input with its content masked when it is sensitive.
func (in JobInput) MarshalJSON() ([]byte, error) { return in.encodeJSON(false) }

// MarshalJSON encodes the object and the keys kept in Extra.
func (i JobInfo) MarshalJSON() ([]byte, error) { return encodeObject(plainJobInfo(i), i.Extra, false) }

// MarshalJSON encodes the object and the keys kept in Extra.
func (r JobRunnerInfo) MarshalJSON() ([]byte, error) {
	return encodeObject(plainJobRunnerInfo(r), r.Extra, false)
}

// MarshalJSON encodes the object and the keys kept in Extra.
func (s JobStep) MarshalJSON() ([]byte, error) { return encodeObject(plainJobStep(s), s.Extra, false) }

// MarshalJSON encodes the object and the keys kept in Extra.
func (h JobHook) MarshalJSON() ([]byte, error) { return encodeObject(plainJobHook(h), h.Extra, false) }

// MarshalJSON encodes the object and the keys kept in Extra.
func (im JobImage) MarshalJSON() ([]byte, error) {
	return encodeObject(plainJobImage(im), im.Extra, false)
}

// MarshalJSON encodes the object and the keys kept in Extra.
func (p JobPort) MarshalJSON() ([]byte, error) { return encodeObject(plainJobPort(p), p.Extra, false) }

// MarshalJSON encodes the object and the keys kept in Extra.
func (a JobArtifact) MarshalJSON() ([]byte, error) {
	return encodeObject(plainJobArtifact(a), a.Extra, false)
}

// MarshalJSON encodes the object and the keys kept in Extra.
func (c JobCache) MarshalJSON() ([]byte, error) {
	return encodeObject(plainJobCache(c), c.Extra, false)
}

// MarshalJSON encodes the object and the keys kept in Extra.
func (a JobArtifactsFile) MarshalJSON() ([]byte, error) {
	return encodeObject(plainJobFile(a), a.Extra, false)
}

// MarshalJSON encodes the object and the keys kept in Extra.
func (ft JobFeatures) MarshalJSON() ([]byte, error) {
	return encodeObject(plainJobFeatures(ft), ft.Extra, false)
}

// MarshalJSON encodes the object and the keys kept in Extra.
func (p JobPolicyOptions) MarshalJSON() ([]byte, error) {
	return encodeObject(plainJobPolicy(p), p.Extra, false)
}

// MarshalJSON encodes the object and the keys kept in Extra.
func (v JobInputValue) MarshalJSON() ([]byte, error) {
	return encodeObject(plainJobInputValue(v), v.Extra, false)
}

var jobEncoderType = reflect.TypeFor[jobEncoder]()

// encodeObject encodes v, a struct without methods, as a JSON object with the keys of extra merged in. A kept
// value of a known key is encoded in place of its field when the field is zero, as decodeObject left it, so that
// a value of an unexpected shape goes back as it came. unredacted is passed on to the objects that hold secrets.
func encodeObject(v any, extra map[string]json.RawMessage, unredacted bool) ([]byte, error) {
	rv := reflect.ValueOf(v)
	fields := objectFieldsOf(rv.Type())
	obj := make(map[string]json.RawMessage, len(fields.list)+len(extra))
	for _, f := range fields.list {
		fv := rv.Field(f.index)
		empty := fv.IsZero() || (fv.Kind() == reflect.Slice || fv.Kind() == reflect.Map) && fv.Len() == 0
		if kept, ok := extra[f.name]; ok && empty {
			obj[f.name] = kept
			continue
		}
		if f.omit && empty {
			continue
		}
		raw, err := encodeValue(fv, unredacted)
		if err != nil {
			return nil, err
		}
		obj[f.name] = raw
	}
	for k, raw := range extra {
		if _, known := fields.index[k]; !known {
			obj[k] = raw
		}
	}
	return json.Marshal(obj)
}

// encodeValue encodes a field's value, passing unredacted on to an object that holds secrets, or to each element
// of a slice of them.
func encodeValue(v reflect.Value, unredacted bool) ([]byte, error) {
	if v.Type().Implements(jobEncoderType) {
		return v.Interface().(jobEncoder).encodeJSON(unredacted)
	}
	if v.Kind() == reflect.Slice && v.Type().Elem().Implements(jobEncoderType) {
		if v.IsNil() {
			return []byte("null"), nil
		}
		out := []byte{'['}
		for i := range v.Len() {
			if i > 0 {
				out = append(out, ',')
			}
			raw, err := v.Index(i).Interface().(jobEncoder).encodeJSON(unredacted)
			if err != nil {
				return nil, err
			}
			out = append(out, raw...)
		}
		return append(out, ']'), nil
	}
	return json.Marshal(v.Interface())
}
