package runnerapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"
)

// BuildState is a build's status as the coordinator names it.
type BuildState string

// The states a build can be in.
const (
	StateCreated  BuildState = "created"
	StatePending  BuildState = "pending"
	StateRunning  BuildState = "running"
	StateSuccess  BuildState = "success"
	StateFailed   BuildState = "failed"
	StateCanceled BuildState = "canceled"
	// StateCanceling is a job asked to stop gracefully (runner API v4): the runner runs after_script and then
	// reports the job as usual, which the coordinator turns into canceled.
	StateCanceling BuildState = "canceling"
	StateSkipped   BuildState = "skipped"
	StateManual    BuildState = "manual"
)

// masked replaces a secret wherever the SDK prints a value.
const masked = "[MASKED]"

// Build is a build as the coordinator hands it to a runner. Fields an older coordinator leaves out or sends as null
// are zero.
//
// Token, RepoURL's password, Credentials' passwords and the values of non-public Variables are secrets: printing a
// Build with fmt (%v, %+v, %#v, %s), logging it with slog (by any handler, also in a slice, a map or a struct) or
// marshaling it to JSON shows them masked. To store a build with its secrets, marshal it as an UnredactedBuild.
type Build struct {
	// ID is the build's ID on the coordinator, which Update, the trace and the artifacts calls take.
	ID int64 `json:"id"`
	// Ref is the branch or tag the build runs for.
	Ref string `json:"ref"`
	// Tag tells that Ref is a tag, not a branch.
	Tag bool `json:"tag"`
	// SHA is the commit the build checks out.
	SHA string `json:"sha"`
	// BeforeSHA is the commit Ref pointed to before the push that started the pipeline; forty zeros for a new ref.
	BeforeSHA string `json:"before_sha"`
	// Status is the build's state when the coordinator handed it over: running, since taking it started it.
	Status BuildState `json:"status"`
	// Name is the job's name in .gitlab-ci.yml, such as "rspec".
	Name string `json:"name"`
	// Stage is the pipeline stage the job belongs to, such as "test".
	Stage string `json:"stage"`
	// Token is the build token, a secret: the trace and artifacts calls of this build authenticate with it
	// (WithToken), and the job's own tooling knows it as CI_BUILD_TOKEN.
	Token string `json:"token"`
	// ProjectID is the ID of the build's project.
	ProjectID int64 `json:"project_id"`
	// ProjectName is the name of the build's project.
	ProjectName string `json:"project_name"`
	// RepoURL is the address to clone the project from. It holds credentials (the user gitlab-ci-token and a token
	// as its password), so it is a secret.
	RepoURL string `json:"repo_url"`
	// Commands is the job's script, before_script first, its lines joined by "\n".
	Commands string `json:"commands"`
	// AllowGitFetch tells that the runner may fetch into a checkout kept from an earlier build instead of cloning
	// afresh.
	AllowGitFetch bool `json:"allow_git_fetch"`
	// Timeout is how long the build may run, in seconds: the runner is to stop it and report it failed after that.
	Timeout int64 `json:"timeout"`
	// Variables are the build's environment variables: GitLab's predefined CI_* ones, those of .gitlab-ci.yml and
	// the project's secret variables. The values of those that are not public are secrets.
	Variables Variables `json:"variables"`
	// Options are the job's options from .gitlab-ci.yml: image, services, artifacts, cache and others.
	Options Options `json:"options"`

	// DependsOnBuilds are the builds of earlier stages whose artifacts this build takes before it runs; each
	// carries the token that downloads them.
	DependsOnBuilds DependentBuilds `json:"depends_on_builds"`
	// ArtifactsFile describes the build's artifacts file; it is zero when there is none, as for a build just taken.
	// The answer to an upload describes the file uploaded.
	ArtifactsFile ArtifactsFile `json:"artifacts_file,omitzero"`
	// ArtifactsExpireAt is when the coordinator deletes the artifacts file; zero when it keeps it, or there is none.
	ArtifactsExpireAt time.Time `json:"artifacts_expire_at,omitzero"`
	// Credentials let the build log in to registries, such as the project's container registry. Their passwords
	// are secrets.
	Credentials Credentials `json:"credentials"`
}

// Variables, Credentials and DependentBuilds are a build's lists. They are plain slices with one method more:
// logged with slog, by any handler, they show their elements' secrets masked, as each element does on its own.
type (
	Variables       []Variable
	Credentials     []Credential
	DependentBuilds []DependentBuild
)

// LogValue logs the variables with the values of those that are not public masked.
func (vs Variables) LogValue() slog.Value { return slog.AnyValue(convertAll(vs, Variable.redacted)) }

// LogValue logs the credentials with their passwords masked.
func (cs Credentials) LogValue() slog.Value {
	return slog.AnyValue(convertAll(cs, Credential.redacted))
}

// LogValue logs the dependencies with their tokens masked.
func (ds DependentBuilds) LogValue() slog.Value {
	return slog.AnyValue(convertAll(ds, DependentBuild.redacted))
}

// Variable is one of a build's environment variables. The value of one that is not public is a secret.
type Variable struct {
	// Key is the variable's name, such as "CI_BUILD_REF".
	Key string `json:"key"`
	// Value is the variable's value: a secret unless Public.
	Value string `json:"value"`
	// Public tells that Value may be shown: predefined variables and those of .gitlab-ci.yml are public, a
	// project's secret variables are not.
	Public bool `json:"public"`
}

// ArtifactsFile describes a build's uploaded artifacts file; it is zero when the build has none.
type ArtifactsFile struct {
	// Filename is the name the file was uploaded under, such as "artifacts.zip".
	Filename string `json:"filename"`
	// Size is the file's length in bytes.
	Size int64 `json:"size"`
}

// DependentBuild is a build of an earlier stage whose artifacts this build depends on. Its Token downloads them.
type DependentBuild struct {
	// ID is the earlier build's ID, which Download and the other artifacts calls take.
	ID int64 `json:"id"`
	// Ref is the branch or tag it ran for.
	Ref string `json:"ref"`
	// Tag tells that Ref is a tag, not a branch.
	Tag bool `json:"tag"`
	// SHA is the commit it ran on.
	SHA string `json:"sha"`
	// Status is its state, such as success.
	Status BuildState `json:"status"`
	// Name is its job's name in .gitlab-ci.yml.
	Name string `json:"name"`
	// Token is its build token, a secret: it downloads its artifacts (WithToken).
	Token string `json:"token"`
	// Stage is the pipeline stage it belongs to.
	Stage string `json:"stage"`
	// ProjectID is the ID of its project.
	ProjectID int64 `json:"project_id"`
	// ProjectName is the name of its project.
	ProjectName string `json:"project_name"`
	// ArtifactsFile describes its artifacts file; it is zero when there is none to download.
	ArtifactsFile ArtifactsFile `json:"artifacts_file,omitzero"`
}

// Credential lets a build log in to a registry.
type Credential struct {
	// Type is the kind of credential; "registry", a container registry login, is the only one the API sends.
	Type string `json:"type"`
	// URL is the registry's address, such as "registry.example.com:5005".
	URL string `json:"url"`
	// Username is the name to log in with, such as "gitlab-ci-token".
	Username string `json:"username"`
	// Password is the password to log in with, a secret; for GitLab's own registry it is the build token.
	Password string `json:"password"`
}

// Secrets returns the build's secret values (its token, its dependencies' tokens, the password in RepoURL,
// registry passwords and non-public variable values), for masking them in a trace or a log.
func (b *Build) Secrets() []string {
	var out []string
	add := func(s string) {
		if s != "" {
			out = append(out, s)
		}
	}
	add(b.Token)
	for _, c := range repoURLCredentials(b.RepoURL) {
		add(c)
	}
	for _, v := range b.Variables {
		if !v.Public {
			add(v.Value)
		}
	}
	for _, c := range b.Credentials {
		add(c.Password)
	}
	for _, d := range b.DependsOnBuilds {
		add(d.Token)
	}
	return out
}

// redacted returns a deep copy of b with every secret masked.
func (b Build) redacted() Build {
	r := b
	r.Token = maskNonEmpty(b.Token)
	r.RepoURL = redactRepoURL(b.RepoURL)
	r.Variables = convertAll(b.Variables, Variable.redacted)
	r.Credentials = convertAll(b.Credentials, Credential.redacted)
	r.DependsOnBuilds = convertAll(b.DependsOnBuilds, DependentBuild.redacted)
	return r
}

func (v Variable) redacted() Variable {
	if !v.Public {
		v.Value = maskNonEmpty(v.Value)
	}
	return v
}

func (c Credential) redacted() Credential {
	c.Password = maskNonEmpty(c.Password)
	return c
}

func (d DependentBuild) redacted() DependentBuild {
	d.Token = maskNonEmpty(d.Token)
	return d
}

func maskNonEmpty(s string) string {
	if s == "" {
		return ""
	}
	return masked
}

// repoURLCredentials returns the secret of a clone URL's userinfo, as decoded and as written when it is
// percent-encoded (a trace may show either): the password, or the user name when there is no password, since a
// token alone can stand in the user's place. A URL Go's parser rejects, or whose authority the parser ends early
// (a "/", "?" or "#" in the password), is split by hand: git and the trace may still show its password.
func repoURLCredentials(s string) []string {
	if u, ok := parseRepoURL(s); ok {
		if u.User == nil {
			return nil
		}
		secret, hasPassword := u.User.Password()
		if !hasPassword {
			secret = u.User.Username()
		}
		if secret == "" {
			return nil
		}
		out := []string{secret}
		// The userinfo as written: between "//" and the authority's last "@".
		rest := s[strings.Index(s, "//")+2:]
		if i := strings.IndexAny(rest, "/?#"); i >= 0 {
			rest = rest[:i]
		}
		userinfo := rest[:max(strings.LastIndex(rest, "@"), 0)]
		written := userinfo
		if hasPassword {
			_, written, _ = strings.Cut(userinfo, ":")
		}
		if written != secret && written != "" {
			out = append(out, written)
		}
		return out
	}
	_, userinfo, _, ok := splitUserinfo(s)
	if !ok {
		return nil
	}
	written := userinfo
	if _, password, hasPassword := strings.Cut(userinfo, ":"); hasPassword {
		written = password
	}
	if written == "" {
		return nil
	}
	out := []string{written}
	if decoded, err := url.PathUnescape(written); err == nil && decoded != written {
		out = append(out, decoded)
	}
	return out
}

// parseRepoURL parses a clone URL, and reports false when the parser failed or when it ended the authority
// before the userinfo's "@" (a password holding "/", "?" or "#" turns the rest into a path, query or fragment).
func parseRepoURL(s string) (*url.URL, bool) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, false
	}
	if u.User != nil {
		return u, true
	}
	_, userinfo, _, found := splitUserinfo(s)
	if !found {
		return u, true
	}
	// A user name holds no "/": an "@" after one is in the path ("https://host/group/p@x.git").
	user, _, _ := strings.Cut(userinfo, ":")
	return u, strings.Contains(user, "/")
}

// splitUserinfo splits a URL at the userinfo as written: between "://" and the last "@". It reports false when
// there is no "@" after "://".
func splitUserinfo(s string) (head, userinfo, tail string, ok bool) {
	i := strings.Index(s, "://")
	if i < 0 {
		return "", "", "", false
	}
	rest := s[i+3:]
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return "", "", "", false
	}
	return s[:i+3], rest[:at], rest[at+1:], true
}

// redactRepoURL masks the credentials of a clone URL (the password, or a user name standing alone), also of one
// the parser rejects, or the whole URL when it cannot be parsed and has no userinfo to mask.
func redactRepoURL(s string) string {
	if s == "" || s == masked {
		return s
	}
	u, ok := parseRepoURL(s)
	if !ok {
		head, userinfo, tail, found := splitUserinfo(s)
		if !found {
			return masked
		}
		if user, _, hasPassword := strings.Cut(userinfo, ":"); hasPassword {
			return head + user + ":" + masked + "@" + tail
		}
		return head + masked + "@" + tail
	}
	if u.User == nil {
		return u.String()
	}
	if _, hasPassword := u.User.Password(); hasPassword {
		// Redacted writes the password as "xxxxx"; say it the way the rest of the SDK does.
		return strings.Replace(u.Redacted(), ":xxxxx@", ":"+masked+"@", 1)
	}
	u.User = nil
	return strings.Replace(u.String(), "//", "//"+masked+"@", 1)
}

// The printing types below have no methods, so fmt prints their fields as it would a plain struct.
type (
	plainBuild          Build
	plainVariable       Variable
	plainCredential     Credential
	plainDependentBuild DependentBuild
)

// Format prints the build with its secrets masked, for every verb.
func (b Build) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, fmt.FormatString(f, verb), plainBuild(b.redacted()))
}

// Format prints the variable with its value masked unless it is public.
func (v Variable) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, fmt.FormatString(f, verb), plainVariable(v.redacted()))
}

// Format prints the credential with its password masked.
func (c Credential) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, fmt.FormatString(f, verb), plainCredential(c.redacted()))
}

// Format prints the dependency with its token masked.
func (d DependentBuild) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, fmt.FormatString(f, verb), plainDependentBuild(d.redacted()))
}

// MarshalJSON encodes the build with its secrets masked, so that a log handler or an error report that marshals
// it, alone or in a slice, shows none of them. UnredactedBuild encodes them.
func (b Build) MarshalJSON() ([]byte, error) { return json.Marshal(plainBuild(b.redacted())) }

// MarshalJSON encodes the variable with its value masked unless it is public.
func (v Variable) MarshalJSON() ([]byte, error) { return json.Marshal(plainVariable(v.redacted())) }

// MarshalJSON encodes the credential with its password masked.
func (c Credential) MarshalJSON() ([]byte, error) { return json.Marshal(plainCredential(c.redacted())) }

// MarshalJSON encodes the dependency with its token masked.
func (d DependentBuild) MarshalJSON() ([]byte, error) {
	return json.Marshal(plainDependentBuild(d.redacted()))
}

// UnredactedBuild is a Build whose JSON encoding holds its secrets, as the coordinator sent them: convert a Build
// to it to store the build and run it later (json.Unmarshal reads it back into a Build). Printing and logging it
// still mask the secrets; only its JSON does not.
type UnredactedBuild Build

// MarshalJSON encodes the build with its secrets.
func (b UnredactedBuild) MarshalJSON() ([]byte, error) {
	// The lists' elements would mask their secrets: these fields, shallower than the embedded build's, win.
	return json.Marshal(struct {
		plainBuild
		Variables       []plainVariable       `json:"variables"`
		DependsOnBuilds []plainDependentBuild `json:"depends_on_builds"`
		Credentials     []plainCredential     `json:"credentials"`
	}{
		plainBuild(b),
		convertAll(b.Variables, func(v Variable) plainVariable { return plainVariable(v) }),
		convertAll(b.DependsOnBuilds, func(d DependentBuild) plainDependentBuild { return plainDependentBuild(d) }),
		convertAll(b.Credentials, func(c Credential) plainCredential { return plainCredential(c) }),
	})
}

// Format prints the build with its secrets masked, for every verb.
func (b UnredactedBuild) Format(f fmt.State, verb rune) { Build(b).Format(f, verb) }

// LogValue logs the fields that identify the build, and no secret.
func (b UnredactedBuild) LogValue() slog.Value { return Build(b).LogValue() }

// convertAll returns s with each element converted; nil stays nil.
func convertAll[T, U any](s []T, convert func(T) U) []U {
	if s == nil {
		return nil
	}
	out := make([]U, len(s))
	for i, v := range s {
		out[i] = convert(v)
	}
	return out
}

// LogValue logs the fields that identify the build, and no secret.
func (b Build) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Int64("id", b.ID),
		slog.String("name", b.Name),
		slog.String("stage", b.Stage),
		slog.String("status", string(b.Status)),
		slog.String("ref", b.Ref),
		slog.String("sha", b.SHA),
		slog.Int64("project_id", b.ProjectID),
		slog.String("project_name", b.ProjectName),
	)
}

// LogValue logs the variable with its value masked unless it is public.
func (v Variable) LogValue() slog.Value {
	r := v.redacted()
	return slog.GroupValue(slog.String("key", r.Key), slog.String("value", r.Value), slog.Bool("public", r.Public))
}

// LogValue logs the credential with its password masked.
func (c Credential) LogValue() slog.Value {
	r := c.redacted()
	return slog.GroupValue(slog.String("type", r.Type), slog.String("url", r.URL),
		slog.String("username", r.Username), slog.String("password", r.Password))
}

// LogValue logs the fields that identify the dependency, and not its token.
func (d DependentBuild) LogValue() slog.Value {
	return slog.GroupValue(slog.Int64("id", d.ID), slog.String("name", d.Name), slog.String("stage", d.Stage),
		slog.String("status", string(d.Status)))
}

// Options are a build's options from .gitlab-ci.yml. Keys this SDK does not know, and known keys whose value has
// a shape it does not expect, are kept in Extra as the coordinator sent them, and marshaled back.
type Options struct {
	// Image is the Docker image the job runs in (image:).
	Image string `json:"image,omitempty"`
	// Services are the Docker images of the services the job runs beside (services:).
	Services []string `json:"services,omitempty"`
	// Artifacts say which files the job uploads as its artifacts, and when (artifacts:).
	Artifacts ArtifactsOptions `json:"artifacts,omitzero"`
	// Cache says which files the job keeps for later runs (cache:).
	Cache CacheOptions `json:"cache,omitzero"`
	// Dependencies are the names of the earlier jobs whose artifacts the job takes (dependencies:); the builds
	// themselves, with their tokens, are in Build.DependsOnBuilds.
	Dependencies []string `json:"dependencies,omitempty"`
	// AfterScript are the commands to run after the script, whether it succeeded or failed (after_script:).
	AfterScript []string `json:"after_script,omitempty"`
	// Environment is the environment the job deploys to (environment:).
	Environment Environment `json:"environment,omitzero"`

	// Extra holds the options this SDK does not know, by key.
	Extra map[string]json.RawMessage `json:"-"`
}

// ArtifactsOptions say which files a build uploads as its artifacts, and when.
type ArtifactsOptions struct {
	// Name names the archive, without its ".zip"; empty leaves the default name (DefaultArtifactsFilename).
	Name string `json:"name,omitempty"`
	// Untracked asks for every file git does not track to be archived too (see UploadPaths).
	Untracked bool `json:"untracked,omitempty"`
	// Paths are the files and directories to archive, relative to the project's checkout; they may be patterns.
	Paths []string `json:"paths,omitempty"`
	// When says after which outcome of the script the artifacts are uploaded: "on_success" (also when empty),
	// "on_failure" or "always".
	When string `json:"when,omitempty"`
	// ExpireIn is how long the coordinator keeps the file, such as "7d" or "2 weeks"; empty keeps its default.
	// Pass it on as UploadOptions.ExpireIn.
	ExpireIn string `json:"expire_in,omitempty"`
}

// CacheOptions say which files a build caches between runs.
type CacheOptions struct {
	// Key names the cache: builds with the same key share it. Empty leaves the choice to the runner.
	Key string `json:"key,omitempty"`
	// Untracked asks for every file git does not track to be cached too.
	Untracked bool `json:"untracked,omitempty"`
	// Paths are the files and directories to cache, relative to the project's checkout; they may be patterns.
	Paths []string `json:"paths,omitempty"`
}

// Environment is the environment a build deploys to. It is free-form: keys beyond name, url and action are kept
// in Extra.
type Environment struct {
	// Name is the environment's name, such as "production" or "review/my-branch".
	Name string `json:"name,omitempty"`
	// URL is where the deployed environment can be seen.
	URL string `json:"url,omitempty"`
	// Action is "start" (also when empty), which deploys to the environment, or "stop", which stops it.
	Action string `json:"action,omitempty"`

	// Extra holds the keys this SDK does not know, by key.
	Extra map[string]json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes options leniently: a value of an unexpected shape is kept in Extra, not an error, since the
// build has already been assigned to the runner by the time it is decoded.
func (o *Options) UnmarshalJSON(data []byte) error {
	// Most builds carry only known options of the expected shapes: the plain decoding, or else one strict pass,
	// decodes those. A key in another case than the field's (which encoding/json takes for the field) or given
	// twice is the strict pass's to decode.
	type plain Options
	*o = Options{}
	if decodePlain(data, (*plain)(o)) || decodeStrict(data, (*plain)(o)) == nil {
		return nil
	}
	*o = Options{}
	extra, err := decodeKnown(data, map[string]any{
		"image":        &o.Image,
		"services":     &o.Services,
		"artifacts":    &o.Artifacts,
		"cache":        &o.Cache,
		"dependencies": &o.Dependencies,
		"after_script": &o.AfterScript,
		"environment":  &o.Environment,
	})
	o.Extra = extra
	return err
}

// MarshalJSON encodes the known options and those kept in Extra.
func (o Options) MarshalJSON() ([]byte, error) {
	type plain Options
	return encodeWithExtra(plain(o), o.Extra)
}

// UnmarshalJSON decodes an environment given as an object, or as a bare name as GitLab 8.9 and 8.10 sent it.
func (e *Environment) UnmarshalJSON(data []byte) error {
	*e = Environment{}
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) > 0 && t[0] == '"' {
		return json.Unmarshal(data, &e.Name)
	}
	type plain Environment
	if decodePlain(data, (*plain)(e)) || decodeStrict(data, (*plain)(e)) == nil {
		return nil
	}
	*e = Environment{}
	extra, err := decodeKnown(data, map[string]any{"name": &e.Name, "url": &e.URL, "action": &e.Action})
	e.Extra = extra
	return err
}

// MarshalJSON encodes the known keys and those kept in Extra.
func (e Environment) MarshalJSON() ([]byte, error) {
	type plain Environment
	return encodeWithExtra(plain(e), e.Extra)
}

// decodeStrict decodes data into v and fails on any key v has no field for.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// decodeKnown decodes a JSON object into the fields named in known; what is not known, or does not fit its field,
// is returned by key. null decodes to nothing.
func decodeKnown(data []byte, known map[string]any) (map[string]json.RawMessage, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, err
	}
	var extra map[string]json.RawMessage
	for k, v := range raw {
		if dst, ok := known[k]; ok && json.Unmarshal(v, dst) == nil {
			continue
		} else if ok {
			// Undo a partial decode so the field is zero rather than half-filled.
			clearPointee(dst)
		}
		if extra == nil {
			extra = make(map[string]json.RawMessage)
		}
		extra[k] = v
	}
	return extra, nil
}

// clearPointee sets *p to its zero value for the pointer types decodeKnown is given.
func clearPointee(p any) {
	switch d := p.(type) {
	case *string:
		*d = ""
	case *[]string:
		*d = nil
	case *ArtifactsOptions:
		*d = ArtifactsOptions{}
	case *CacheOptions:
		*d = CacheOptions{}
	case *Environment:
		*d = Environment{}
	}
}

// encodeWithExtra marshals v, a struct without methods, and merges the extra keys into the object. Known keys win.
func encodeWithExtra(v any, extra map[string]json.RawMessage) ([]byte, error) {
	data, err := json.Marshal(v)
	if err != nil || len(extra) == 0 {
		return data, err
	}
	var merged map[string]json.RawMessage
	if err := json.Unmarshal(data, &merged); err != nil {
		return nil, err
	}
	for k, raw := range extra {
		if _, known := merged[k]; !known {
			merged[k] = raw
		}
	}
	return json.Marshal(merged)
}
