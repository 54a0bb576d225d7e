package runnerapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// FuzzJobJSON: whatever a coordinator sends as a v4 job, decoding it does not panic; a job that decodes encodes
// (as an UnredactedJob) to a text that decodes to the same job, which encodes to the same text; and none of its
// secrets long enough to be masked in the log shows in any print, masked JSON or log record of it.
func FuzzJobJSON(f *testing.F) {
	for _, name := range []string{"job_full.json", "job_minimal.json", "job_nulls.json", "job_unknown_fields.json"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		`{"token":"FUZZ-JOB-TOKEN-1","git_info":{"repo_url":"https://u:FUZZ%2FREPO-PW@h/x.git"}}`,
		`{"token":"FUZZ-JOB-TOKEN-1","job_info":{"name":"FUZZ-JOB-TOKEN-1"},"top":"FUZZ-JOB-TOKEN-1"}`,
		`{"token":"FUZZ-JOB-TOKEN-1","x":{"FUZZ-JOB-TOKEN-1":"\u0046UZZ-JOB-TOKEN-1"}}`,
		`{"git_info":{"repo_url":"https://u:pass/word-xyz@h/x.git"},"variables":[{"key":"K","value":"pass/word-xyz","public":true}]}`,
		`{"variables":[{"key":"K","value":"FUZZ-VAR-VALUE","masked":true},{"key":"L","value":"x FUZZ-VAR-VALUE y","public":true}]}`,
		`{"credentials":[{"password":{"p":"FUZZ-REG-PW-22"}}],"dependencies":[{"token":"FUZZ-DEP-TOK-3","id":"1"}]}`,
		`{"inputs":[{"key":"k","value":{"content":{"a":"FUZZ-INPUT-44"},"sensitive":true}}]}`,
		`{"token":"Token:[M","id":1}`, `{"id":1,"ID":2}`, `{"id":1,"id":"x"}`, `null`, `{}`, `[]`, `{"image":{}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var j Job
		if json.Unmarshal(data, &j) != nil {
			return
		}
		first, err := json.Marshal(UnredactedJob(j))
		if err != nil {
			t.Fatalf("a decoded job does not encode: %v", err)
		}
		var again Job
		if err := json.Unmarshal(first, &again); err != nil {
			t.Fatalf("the encoding %s does not decode: %v", first, err)
		}
		second, err := json.Marshal(UnredactedJob(again))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first, second) {
			t.Fatalf("decode, encode, decode is not stable:\n%s\n%s", first, second)
		}
		if fmt.Sprint(j.Secrets()) != fmt.Sprint(again.Secrets()) {
			t.Fatalf("the secrets changed in a round trip: %q, then %q", j.Secrets(), again.Secrets())
		}

		secrets := fuzzCheckedSecrets(j.Secrets())
		check := func(what, out string) {
			t.Helper()
			for _, s := range secrets {
				if strings.Contains(out, s) {
					t.Fatalf("%s shows the secret %q: %s", what, s, out)
				}
			}
		}
		for _, v := range []any{j, &j, []Job{j}, UnredactedJob(j)} {
			for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%+q"} {
				check(verb, fmt.Sprintf(verb, v))
			}
		}

		// Masked JSON: every string in it, key or value, once decoded (JSON's escapes cannot hide a secret).
		masked, err := json.Marshal([]Job{j})
		if err != nil {
			t.Fatalf("the masked job does not encode: %v", err)
		}
		var tree any
		if err := json.Unmarshal(masked, &tree); err != nil {
			t.Fatalf("the masked encoding %s does not decode: %v", masked, err)
		}
		fuzzWalkStrings(tree, func(s string, key bool) {
			// A key that names a field is the encoding's, not the job's.
			if !key || !fuzzFieldNames()[s] {
				check("masked JSON", s)
			}
		})

		// Log records: each value a handler writes, by the real handlers.
		replace := func(_ []string, a slog.Attr) slog.Attr {
			if a.Value.Kind() == slog.KindString {
				check("slog attribute "+a.Key, a.Value.String())
			}
			return a
		}
		for _, h := range []slog.Handler{
			slog.NewTextHandler(io.Discard, &slog.HandlerOptions{ReplaceAttr: replace}),
			slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{ReplaceAttr: replace}),
		} {
			slog.New(h).Info("job", "job", j, "ptr", &j, "vars", j.Variables, "creds", j.Credentials,
				"deps", j.Dependencies, "inputs", j.Inputs, "git", j.GitInfo)
		}
	})
}

// fuzzCheckedSecrets returns the secrets a print must not show: those of at least MinTraceSecret bytes (shorter
// ones are masked only in their own fields, and may occur anywhere by chance) and without "[" or "]", which the
// mask itself could spell out with the text around it.
func fuzzCheckedSecrets(secrets []string) []string {
	var out []string
	for _, s := range secrets {
		if len(s) >= MinTraceSecret && !strings.ContainsAny(s, "[]") {
			out = append(out, s)
		}
	}
	return out
}

// fuzzWalkStrings calls fn with every string of a decoded JSON value, keys included.
func fuzzWalkStrings(v any, fn func(s string, key bool)) {
	switch v := v.(type) {
	case string:
		fn(v, false)
	case []any:
		for _, e := range v {
			fuzzWalkStrings(e, fn)
		}
	case map[string]any:
		for k, e := range v {
			fn(k, true)
			fuzzWalkStrings(e, fn)
		}
	}
}

// fuzzFieldNames returns the JSON names of the fields of a job's objects.
var fuzzFieldNames = sync.OnceValue(func() map[string]bool {
	names := make(map[string]bool)
	for _, v := range []any{Job{}, JobInfo{}, JobGitInfo{}, JobRunnerInfo{}, JobVariable{}, JobStep{}, JobHook{},
		JobImage{}, JobPort{}, JobServiceImage{}, JobArtifact{}, JobCache{}, JobCredential{}, JobDependency{},
		JobArtifactsFile{}, JobFeatures{}, JobPolicyOptions{}, JobInput{}, JobInputValue{}} {
		for _, f := range objectFieldsOf(reflect.TypeOf(v)).list {
			names[f.name] = true
		}
	}
	return names
})
