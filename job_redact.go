package runnerapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strconv"
)

// Secrets returns the job's secret values, each once: its token, the credentials in GitInfo.RepoURL (as written
// and percent-decoded), registry passwords, dependencies' tokens, the values of variables (also of services) that
// are masked or not public, and the content of sensitive inputs. Pass them to the trace writer to mask them in the
// log; like Build's, they include secrets too short to mask there, which the writer leaves out.
func (j *Job) Secrets() []string {
	var out []string
	add := func(s string) {
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	add(j.Token)
	for _, c := range repoURLCredentials(j.GitInfo.RepoURL) {
		add(c)
	}
	addVars := func(vs JobVariables) {
		for _, v := range vs {
			if v.Secret() {
				add(v.Value)
			}
		}
	}
	addVars(j.Variables)
	for _, s := range j.Services {
		addVars(s.Variables)
	}
	for _, c := range j.Credentials {
		add(c.Password)
	}
	for _, d := range j.Dependencies {
		add(d.Token)
	}
	for _, in := range j.Inputs {
		if in.Value.Sensitive {
			for _, c := range inputContentSecrets(in.Value.Content) {
				add(c)
			}
		}
	}
	return out
}

// inputContentSecrets returns the secrets of a sensitive input's content as a log may show them: a string as it
// is; other JSON as written, and each string and number in it, since a job may use them one by one.
func inputContentSecrets(content json.RawMessage) []string {
	dec := json.NewDecoder(bytes.NewReader(content))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return []string{string(content)}
	}
	if s, ok := v.(string); ok {
		return []string{s}
	}
	var out []string
	if v != nil {
		out = append(out, string(content))
	}
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case string:
			out = append(out, v)
		case json.Number:
			out = append(out, v.String())
		case []any:
			for _, e := range v {
				walk(e)
			}
		case map[string]any:
			for _, k := range slices.Sorted(maps.Keys(v)) {
				walk(v[k])
			}
		}
	}
	walk(v)
	return out
}

// redacted returns a deep copy of j with every secret masked: the fields that hold one, known keys of an
// unexpected shape kept in Extra (which may hold one), and any secret of at least MinTraceSecret bytes wherever
// else it appears (the job token is also in repo_url and variables such as CI_REPOSITORY_URL).
func (j Job) redacted() Job {
	secrets := j.Secrets()
	r := j
	r.Token = maskNonEmpty(j.Token)
	r.JobInfo.Extra = maskKnownExtra[JobInfo](j.JobInfo.Extra)
	r.GitInfo = j.GitInfo.redacted()
	r.RunnerInfo.Extra = maskKnownExtra[JobRunnerInfo](j.RunnerInfo.Extra)
	r.Variables = convertSlice(j.Variables, JobVariable.redacted)
	r.Steps = convertSlice(j.Steps, func(s JobStep) JobStep {
		s.Extra = maskKnownExtra[JobStep](s.Extra)
		return s
	})
	r.Hooks = convertSlice(j.Hooks, func(h JobHook) JobHook {
		h.Extra = maskKnownExtra[JobHook](h.Extra)
		return h
	})
	r.Image = j.Image.redacted()
	r.Services = convertSlice(j.Services, JobServiceImage.redacted)
	r.Artifacts = convertSlice(j.Artifacts, func(a JobArtifact) JobArtifact {
		a.Extra = maskKnownExtra[JobArtifact](a.Extra)
		return a
	})
	r.Cache = convertSlice(j.Cache, func(c JobCache) JobCache {
		c.Extra = maskKnownExtra[JobCache](c.Extra)
		return c
	})
	r.Credentials = convertSlice(j.Credentials, JobCredential.redacted)
	r.Features.Extra = maskKnownExtra[JobFeatures](j.Features.Extra)
	r.Dependencies = convertSlice(j.Dependencies, JobDependency.redacted)
	r.PolicyOptions.Extra = maskKnownExtra[JobPolicyOptions](j.PolicyOptions.Extra)
	r.Inputs = convertSlice(j.Inputs, JobInput.redacted)
	r.Extra = maskKnownExtra[Job](j.Extra)
	scrubStrings(reflect.ValueOf(&r).Elem(), longSecrets(secrets))
	return r
}

func (g JobGitInfo) redacted() JobGitInfo {
	g.RepoURL = redactRepoURL(g.RepoURL)
	g.Extra = maskKnownExtra[JobGitInfo](g.Extra)
	return g
}

func (v JobVariable) redacted() JobVariable {
	if v.Secret() {
		v.Value = maskNonEmpty(v.Value)
	}
	v.Extra = maskKnownExtra[JobVariable](v.Extra)
	return v
}

func (im JobImage) redacted() JobImage {
	im.Ports = convertSlice(im.Ports, JobPort.redacted)
	im.Extra = maskKnownExtra[JobImage](im.Extra)
	return im
}

func (p JobPort) redacted() JobPort {
	p.Extra = maskKnownExtra[JobPort](p.Extra)
	return p
}

func (s JobServiceImage) redacted() JobServiceImage {
	s.Ports = convertSlice(s.Ports, JobPort.redacted)
	s.Variables = convertSlice(s.Variables, JobVariable.redacted)
	s.Extra = maskKnownExtra[JobServiceImage](s.Extra)
	return s
}

func (c JobCredential) redacted() JobCredential {
	c.Password = maskNonEmpty(c.Password)
	c.Extra = maskKnownExtra[JobCredential](c.Extra)
	return c
}

func (d JobDependency) redacted() JobDependency {
	d.Token = maskNonEmpty(d.Token)
	d.ArtifactsFile.Extra = maskKnownExtra[JobArtifactsFile](d.ArtifactsFile.Extra)
	d.Extra = maskKnownExtra[JobDependency](d.Extra)
	return d
}

func (in JobInput) redacted() JobInput {
	if in.Value.Sensitive && len(in.Value.Content) > 0 {
		in.Value.Content = json.RawMessage(strconv.Quote(masked))
	}
	in.Value.Extra = maskKnownExtra[JobInputValue](in.Value.Extra)
	in.Extra = maskKnownExtra[JobInput](in.Extra)
	return in
}

// convertSlice returns s with each element converted; nil stays nil.
func convertSlice[S ~[]T, T any](s S, convert func(T) T) S {
	if s == nil {
		return nil
	}
	out := make(S, len(s))
	for i, v := range s {
		out[i] = convert(v)
	}
	return out
}

// maskKnownExtra returns a copy of extra with the values of T's known keys masked: those came in a shape this SDK
// did not expect, so it cannot tell whether they hold a secret. Unknown keys are shown as they came.
func maskKnownExtra[T any](extra map[string]json.RawMessage) map[string]json.RawMessage {
	if extra == nil {
		return nil
	}
	known := objectFieldsOf(reflect.TypeFor[T]()).index
	out := make(map[string]json.RawMessage, len(extra))
	for k, v := range extra {
		if _, ok := known[k]; ok {
			v = json.RawMessage(strconv.Quote(masked))
		}
		out[k] = v
	}
	return out
}

// longSecrets returns the secrets of at least MinTraceSecret bytes, longest first, so that one holding a shorter
// one is masked whole.
func longSecrets(secrets []string) []string {
	var out []string
	for _, s := range secrets {
		if len(s) >= MinTraceSecret {
			out = append(out, s)
		}
	}
	slices.SortStableFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

// scrubStrings masks the secrets in every string, and every JSON text kept raw, that v holds. v is settable and
// holds no data shared with the job it was copied from: redacted copies every slice and map it walks into.
func scrubStrings(v reflect.Value, secrets []string) {
	if len(secrets) == 0 {
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(scrubText(v.String(), secrets))
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				scrubStrings(v.Field(i), secrets)
			}
		}
	case reflect.Pointer:
		if !v.IsNil() {
			c := reflect.New(v.Type().Elem())
			c.Elem().Set(v.Elem())
			scrubStrings(c.Elem(), secrets)
			v.Set(c)
		}
	case reflect.Slice:
		if v.IsNil() {
			return
		}
		if v.Type().Elem().Kind() == reflect.Uint8 {
			v.SetBytes(scrubJSONText(v.Bytes(), secrets))
			return
		}
		c := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		reflect.Copy(c, v)
		for i := range c.Len() {
			scrubStrings(c.Index(i), secrets)
		}
		v.Set(c)
	case reflect.Map:
		if v.IsNil() {
			return
		}
		c := reflect.MakeMapWithSize(v.Type(), v.Len())
		for iter := v.MapRange(); iter.Next(); {
			k := reflect.New(v.Type().Key()).Elem()
			k.Set(iter.Key())
			scrubStrings(k, secrets)
			e := reflect.New(v.Type().Elem()).Elem()
			e.Set(iter.Value())
			scrubStrings(e, secrets)
			c.SetMapIndex(k, e)
		}
		v.Set(c)
	}
}

// scrubJSONText masks the secrets in the strings (keys and values) of a JSON text kept raw, as decoded, so that an
// escape cannot hide one; the text is re-encoded only when that changed it. One not valid JSON is masked whole.
func scrubJSONText(text []byte, secrets []string) []byte {
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return []byte(strconv.Quote(masked))
	}
	v, changed := scrubJSONValue(v, secrets)
	if !changed {
		return text
	}
	out, err := json.Marshal(v)
	if err != nil {
		return []byte(strconv.Quote(masked))
	}
	return out
}

// scrubJSONValue masks the secrets in the strings of a decoded JSON value, and reports whether it changed any.
func scrubJSONValue(v any, secrets []string) (any, bool) {
	switch v := v.(type) {
	case string:
		s := scrubText(v, secrets)
		return s, s != v
	case []any:
		changed := false
		for i, e := range v {
			var c bool
			v[i], c = scrubJSONValue(e, secrets)
			changed = changed || c
		}
		return v, changed
	case map[string]any:
		out := make(map[string]any, len(v))
		changed := false
		for k, e := range v {
			e, c := scrubJSONValue(e, secrets)
			sk := scrubText(k, secrets)
			out[sk] = e
			changed = changed || c || sk != k
		}
		return out, changed
	}
	return v, false
}

// Format prints the job with its secrets masked, for every verb.
func (j Job) Format(f fmt.State, verb rune) {
	secrets := longSecrets(j.Secrets())
	out := fmt.Sprintf(fmt.FormatString(f, verb), plainJob(j.redacted()))
	// What the fields cannot hide: a secret that the printed text itself spells out across fields.
	_, _ = fmt.Fprint(f, scrubText(out, secrets))
}

// Format prints the clone information with the credentials of RepoURL masked.
func (g JobGitInfo) Format(f fmt.State, verb rune) {
	_, _ = fmt.Fprintf(f, fmt.FormatString(f, verb), plainJobGitInfo(g.redacted()))
}

// Format prints the variable with its value masked when it is a secret.
func (v JobVariable) Format(f fmt.State, verb rune) {
	_, _ = fmt.Fprintf(f, fmt.FormatString(f, verb), plainJobVariable(v.redacted()))
}

// Format prints the service with the values of its secret variables masked.
func (s JobServiceImage) Format(f fmt.State, verb rune) {
	_, _ = fmt.Fprintf(f, fmt.FormatString(f, verb), plainJobServiceImage(s.redacted()))
}

// Format prints the credential with its password masked.
func (c JobCredential) Format(f fmt.State, verb rune) {
	_, _ = fmt.Fprintf(f, fmt.FormatString(f, verb), plainJobCredential(c.redacted()))
}

// Format prints the dependency with its token masked.
func (d JobDependency) Format(f fmt.State, verb rune) {
	_, _ = fmt.Fprintf(f, fmt.FormatString(f, verb), plainJobDependency(d.redacted()))
}

// Format prints the input with its content masked when it is sensitive.
func (in JobInput) Format(f fmt.State, verb rune) {
	_, _ = fmt.Fprintf(f, fmt.FormatString(f, verb), plainJobInput(in.redacted()))
}

// LogValue logs the fields that identify the job, and no secret.
func (j Job) LogValue() slog.Value {
	secrets := longSecrets(j.Secrets())
	s := func(key, v string) slog.Attr { return slog.String(key, scrubText(v, secrets)) }
	return slog.GroupValue(
		slog.Int64("id", j.ID),
		s("name", j.JobInfo.Name),
		s("stage", j.JobInfo.Stage),
		slog.Int64("pipeline_id", j.JobInfo.PipelineID),
		slog.Int64("project_id", j.JobInfo.ProjectID),
		s("project_full_path", j.JobInfo.ProjectFullPath),
		s("ref", j.GitInfo.Ref),
		s("sha", j.GitInfo.SHA),
	)
}

// LogValue logs the clone information with the credentials of RepoURL masked.
func (g JobGitInfo) LogValue() slog.Value {
	r := g.redacted()
	return slog.GroupValue(slog.String("repo_url", r.RepoURL), slog.String("ref", r.Ref),
		slog.String("sha", r.SHA), slog.String("ref_type", r.RefType))
}

// LogValue logs the variable with its value masked when it is a secret.
func (v JobVariable) LogValue() slog.Value {
	r := v.redacted()
	return slog.GroupValue(slog.String("key", r.Key), slog.String("value", r.Value), slog.Bool("public", r.Public),
		slog.Bool("masked", r.Masked))
}

// LogValue logs the service's image and alias, and not its variables.
func (s JobServiceImage) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", s.Name), slog.String("alias", s.Alias))
}

// LogValue logs the credential with its password masked.
func (c JobCredential) LogValue() slog.Value {
	r := c.redacted()
	return slog.GroupValue(slog.String("type", r.Type), slog.String("url", r.URL),
		slog.String("username", r.Username), slog.String("password", r.Password))
}

// LogValue logs the fields that identify the dependency, and not its token.
func (d JobDependency) LogValue() slog.Value {
	return slog.GroupValue(slog.Int64("id", d.ID), slog.String("name", d.Name))
}

// LogValue logs the input with its content masked when it is sensitive.
func (in JobInput) LogValue() slog.Value {
	r := in.redacted()
	return slog.GroupValue(slog.String("key", r.Key), slog.String("type", r.Value.Type),
		slog.String("content", string(r.Value.Content)), slog.Bool("sensitive", r.Value.Sensitive))
}

// LogValue logs the variables with the values of the secret ones masked.
func (vs JobVariables) LogValue() slog.Value {
	return slog.AnyValue(convertSlice(vs, JobVariable.redacted))
}

// LogValue logs the credentials with their passwords masked.
func (cs JobCredentials) LogValue() slog.Value {
	return slog.AnyValue(convertSlice(cs, JobCredential.redacted))
}

// LogValue logs the dependencies with their tokens masked.
func (ds JobDependencies) LogValue() slog.Value {
	return slog.AnyValue(convertSlice(ds, JobDependency.redacted))
}

// LogValue logs the inputs with the content of the sensitive ones masked.
func (is JobInputs) LogValue() slog.Value { return slog.AnyValue(convertSlice(is, JobInput.redacted)) }
