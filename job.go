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
	"strings"
	"sync"
)

// Job is a job as a coordinator speaking the runner API v4 hands it to a runner: the 201 answer of
// POST /api/v4/jobs/request. Fields a coordinator leaves out or sends as null are zero. Keys this SDK does not
// know, and known keys whose value has a shape it does not expect, are kept in the Extra field of the object they
// came in, and encoded back: GitLab adds fields often, and a job already assigned must not fail to decode.
//
// Token, GitInfo.RepoURL's password, Credentials' passwords, Dependencies' tokens, the values of Variables that are
// masked or not public (also those of Services) and sensitive Inputs are secrets (see Secrets). Printing a Job with
// fmt (every verb), logging it with slog (by any handler, also in a slice or a struct) or marshaling it to JSON
// shows them masked. To store a job with its secrets, marshal it as an UnredactedJob.
type Job struct {
	// ID is the job's ID, which the job endpoints (/api/v4/jobs/:id) take.
	ID int64 `json:"id"`
	// Token is the job token, a secret: the update, trace and artifacts calls of this job authenticate with it, and
	// it is the password in GitInfo.RepoURL.
	Token string `json:"token"`
	// AllowGitFetch tells that the runner may fetch into a checkout kept from an earlier job instead of cloning.
	AllowGitFetch bool `json:"allow_git_fetch"`
	// JobInfo names the job, its pipeline and its project.
	JobInfo JobInfo `json:"job_info"`
	// GitInfo says what to check out, and from where.
	GitInfo JobGitInfo `json:"git_info"`
	// RunnerInfo holds the job's timeout and its interactive session's address.
	RunnerInfo JobRunnerInfo `json:"runner_info"`
	// Variables are the job's environment variables, sorted and expanded by the coordinator. The values of those
	// that are masked or not public are secrets.
	Variables JobVariables `json:"variables"`
	// Steps are the scripts to run in order ("script", "after_script", ...); the coordinator leaves them out when
	// the job has Run instead.
	Steps []JobStep `json:"steps,omitempty"`
	// Hooks are scripts to run around fetching the sources, such as "pre_get_sources_script".
	Hooks []JobHook `json:"hooks,omitempty"`
	// Image is the container image the job runs in; zero when the job names none (null).
	Image JobImage `json:"image,omitzero"`
	// Services are the images of the services the job runs beside.
	Services []JobService `json:"services"`
	// Artifacts say what the job uploads: the archive, and each report as an entry of its own.
	Artifacts []JobArtifact `json:"artifacts"`
	// Cache says which files the job keeps between runs, one entry per cache.
	Cache []JobCache `json:"cache"`
	// Credentials let the job log in to registries. Their passwords are secrets.
	Credentials JobCredentials `json:"credentials"`
	// Features are what the coordinator expects of the runner for this job.
	Features JobFeatures `json:"features"`
	// Dependencies are the earlier jobs whose artifacts this job downloads, each with the token to download them.
	Dependencies JobDependencies `json:"dependencies"`
	// Run is the job's GitLab Steps as the coordinator sends them: a JSON array encoded in a string. It is set only
	// for jobs using run: in .gitlab-ci.yml, which then have no Steps.
	Run string `json:"run,omitempty"`
	// ExternalSecrets are the job's secrets from an external manager (Vault, GCP, Azure, AWS, GitLab's own), by
	// name, as the coordinator sent them. They say where to fetch each secret, not its value.
	ExternalSecrets map[string]json.RawMessage `json:"secrets,omitempty"`
	// PolicyOptions are set for a job that a security policy added to the pipeline.
	PolicyOptions JobPolicyOptions `json:"policy_options,omitzero"`
	// Inputs are the job's inputs. The content of a sensitive one is a secret.
	Inputs JobInputs `json:"inputs,omitempty"`

	// Extra holds the keys this SDK does not know, and known keys of an unexpected shape, as they came.
	Extra map[string]json.RawMessage `json:"-"`
}

// JobInfo names a job, its pipeline and its project.
type JobInfo struct {
	// ID is the job's ID.
	ID int64 `json:"id"`
	// Name is the job's name in .gitlab-ci.yml, such as "rspec".
	Name string `json:"name"`
	// Stage is the pipeline stage the job belongs to, such as "test".
	Stage string `json:"stage"`
	// PipelineID is the ID of the job's pipeline.
	PipelineID int64 `json:"pipeline_id,omitempty"`
	// ProjectID is the ID of the job's project.
	ProjectID int64 `json:"project_id"`
	// ProjectName is the name of the job's project.
	ProjectName string `json:"project_name"`
	// ProjectFullPath is the project's path with its namespaces, such as "gitlab-org/gitlab".
	ProjectFullPath string `json:"project_full_path,omitempty"`
	// NamespaceID is the ID of the project's namespace.
	NamespaceID int64 `json:"namespace_id,omitempty"`
	// RootNamespaceID is the ID of the top-level group the project is in.
	RootNamespaceID int64 `json:"root_namespace_id,omitempty"`
	// OrganizationID is the ID of the project's organization.
	OrganizationID int64 `json:"organization_id,omitempty"`
	// InstanceID identifies the GitLab instance.
	InstanceID string `json:"instance_id,omitempty"`
	// InstanceUUID is the GitLab instance's UUID.
	InstanceUUID string `json:"instance_uuid,omitempty"`
	// UserID is the ID of the user the job runs for.
	UserID int64 `json:"user_id,omitempty"`
	// ScopedUserID is the ID of the user a composite identity scopes the job to; zero when none (null).
	ScopedUserID int64 `json:"scoped_user_id,omitempty"`
	// TimeInQueueSeconds is how long the job waited for a runner, in seconds; it may be fractional.
	TimeInQueueSeconds float64 `json:"time_in_queue_seconds,omitempty"`
	// ProjectJobsRunningOnInstanceRunnersCount is a string, not a number: "+Inf" for a runner that is not an
	// instance runner, "N", or "<max>+".
	ProjectJobsRunningOnInstanceRunnersCount string `json:"project_jobs_running_on_instance_runners_count,omitempty"`
	// QueueSize is how many jobs were queued for the runner when it took this one.
	QueueSize int64 `json:"queue_size,omitempty"`
	// QueueDepth is how deep into that queue this job was.
	QueueDepth int64 `json:"queue_depth,omitempty"`

	// Extra holds the keys this SDK does not know, and known keys of an unexpected shape, as they came.
	Extra map[string]json.RawMessage `json:"-"`
}

// JobGitInfo says what a job checks out, and from where.
type JobGitInfo struct {
	// RepoURL is the HTTP address to clone from. It holds credentials (the user gitlab-ci-token and the job token
	// as its password), so it is a secret.
	RepoURL string `json:"repo_url"`
	// Ref is the branch or tag the job runs for.
	Ref string `json:"ref"`
	// SHA is the commit the job checks out.
	SHA string `json:"sha"`
	// BeforeSHA is the commit Ref pointed to before the push; forty zeros for a new ref.
	BeforeSHA string `json:"before_sha"`
	// RefType is "branch" or "tag".
	RefType string `json:"ref_type"`
	// Refspecs are what to fetch: the pipeline's persistent ref, then the branch or tag.
	Refspecs []string `json:"refspecs"`
	// Depth is the depth to clone or fetch at; 0 for the full history.
	Depth int64 `json:"depth"`
	// RepoObjectFormat is the repository's hash, "sha1" or "sha256"; empty from coordinators that do not say.
	RepoObjectFormat string `json:"repo_object_format,omitempty"`
	// Protected tells that Ref is protected; nil when the coordinator does not say (null or missing).
	Protected *bool `json:"protected,omitempty"`

	// Extra holds the keys this SDK does not know, and known keys of an unexpected shape, as they came.
	Extra map[string]json.RawMessage `json:"-"`
}

// JobRunnerInfo holds what the coordinator tells a runner about how to run a job.
type JobRunnerInfo struct {
	// UUID identifies the runner manager the job was assigned to.
	UUID string `json:"uuid,omitempty"`
	// Timeout is how long the job may run, in seconds.
	Timeout int64 `json:"timeout"`
	// RunnerSessionURL is the address of the job's interactive web terminal session; empty when none (null).
	RunnerSessionURL string `json:"runner_session_url,omitempty"`

	// Extra holds the keys this SDK does not know, and known keys of an unexpected shape, as they came.
	Extra map[string]json.RawMessage `json:"-"`
}

// JobVariable is one of a job's environment variables. Its value is a secret when it is masked or not public.
type JobVariable struct {
	// Key is the variable's name, such as "CI_JOB_ID".
	Key string `json:"key"`
	// Value is the variable's value; for a File variable, the file's content.
	Value string `json:"value"`
	// Public tells that the value may be shown: predefined variables and those of .gitlab-ci.yml are public, the
	// project's and group's CI/CD variables are not.
	Public bool `json:"public"`
	// Masked tells that the value must not appear in the job's log.
	Masked bool `json:"masked,omitempty"`
	// File tells that the runner is to write the value to a file and set the variable to the file's path.
	File bool `json:"file,omitempty"`
	// Raw tells that the value is not to be expanded.
	Raw bool `json:"raw,omitempty"`

	// Extra holds the keys this SDK does not know, and known keys of an unexpected shape, as they came.
	Extra map[string]json.RawMessage `json:"-"`
}

// Secret tells that the variable's value is a secret: it is masked, or it is not public. GitLab masks only the
// first kind in the log; this SDK masks both, since a value that is not public is one the project keeps to itself.
func (v JobVariable) Secret() bool { return v.Masked || !v.Public }

// The step names of the scripts every job has.
const (
	StepScript      = "script"
	StepAfterScript = "after_script"
)

// JobStep is one script of a job, run in its turn.
type JobStep struct {
	// Name is the step's name: StepScript (before_script and script joined), StepAfterScript, or another.
	Name string `json:"name"`
	// Script are the step's commands, one a line.
	Script []string `json:"script"`
	// Timeout is how long the step may run, in seconds.
	Timeout int64 `json:"timeout"`
	// When says after which outcome of the steps before it the step runs: "on_success", "on_failure" or "always".
	When string `json:"when"`
	// AllowFailure tells that the step's failure does not fail the job.
	AllowFailure bool `json:"allow_failure"`

	// Extra holds the keys this SDK does not know, and known keys of an unexpected shape, as they came.
	Extra map[string]json.RawMessage `json:"-"`
}

// JobHook is a script the runner runs at a point of a job, such as before or after fetching the sources.
type JobHook struct {
	// Name says when the hook runs: "pre_get_sources_script" or "post_get_sources_script".
	Name string `json:"name"`
	// Script are the hook's commands, one a line.
	Script []string `json:"script"`

	// Extra holds the keys this SDK does not know, and known keys of an unexpected shape, as they came.
	Extra map[string]json.RawMessage `json:"-"`
}

// JobImage is the container image a job runs in.
type JobImage struct {
	// Name is the image, such as "ruby:3.3".
	Name string `json:"name"`
	// Entrypoint overrides the image's entrypoint; nil keeps it.
	Entrypoint []string `json:"entrypoint"`
	// Ports are the ports the image exposes.
	Ports []JobPort `json:"ports,omitempty"`
	// ExecutorOpts are options for the executor, by executor ("docker", "kubernetes"), as the coordinator sent them.
	ExecutorOpts map[string]json.RawMessage `json:"executor_opts,omitempty"`
	// PullPolicy are the pull policies the job allows, such as "always" or "if-not-present".
	PullPolicy []string `json:"pull_policy,omitempty"`

	// Extra holds the keys this SDK does not know, and known keys of an unexpected shape, as they came.
	Extra map[string]json.RawMessage `json:"-"`
}

// JobPort is a port an image or a service exposes.
type JobPort struct {
	// Number is the port's number.
	Number int64 `json:"number"`
	// Protocol is "http" or "https".
	Protocol string `json:"protocol,omitempty"`
	// Name names the port.
	Name string `json:"name,omitempty"`

	// Extra holds the keys this SDK does not know, and known keys of an unexpected shape, as they came.
	Extra map[string]json.RawMessage `json:"-"`
}

// JobService is the image of a service a job runs beside, such as a database.
type JobService struct {
	// Name is the image, such as "postgres:16".
	Name string `json:"name"`
	// Entrypoint overrides the image's entrypoint; nil keeps it.
	Entrypoint []string `json:"entrypoint"`
	// Ports are the ports the service exposes.
	Ports []JobPort `json:"ports,omitempty"`
	// ExecutorOpts are options for the executor, by executor, as the coordinator sent them.
	ExecutorOpts map[string]json.RawMessage `json:"executor_opts,omitempty"`
	// PullPolicy are the pull policies the job allows for the service.
	PullPolicy []string `json:"pull_policy,omitempty"`
	// Alias is the host name the job reaches the service by; it may be several, separated by commas or spaces.
	Alias string `json:"alias,omitempty"`
	// Command overrides the image's command.
	Command []string `json:"command,omitempty"`
	// Variables are the service's own environment variables; secrets as a job's are.
	Variables JobVariables `json:"variables,omitempty"`

	// Extra holds the keys this SDK does not know, and known keys of an unexpected shape, as they came.
	Extra map[string]json.RawMessage `json:"-"`
}

// JobArtifact is one upload a job makes: the archive, or a report.
type JobArtifact struct {
	// Name names the archive, without its extension; empty leaves the default.
	Name string `json:"name,omitempty"`
	// Untracked asks for every file git does not track to be uploaded too.
	Untracked bool `json:"untracked,omitempty"`
	// Paths are the files and directories to upload, relative to the checkout; they may be patterns.
	Paths []string `json:"paths"`
	// Exclude are the paths to leave out of Paths' matches.
	Exclude []string `json:"exclude,omitempty"`
	// When says after which outcome of the job the upload is made: "on_success", "on_failure" or "always".
	When string `json:"when"`
	// ExpireIn is how long the coordinator keeps the upload, such as "1 week"; empty keeps its default.
	ExpireIn string `json:"expire_in,omitempty"`
	// ArtifactType is "archive" for the archive, or the report's type, such as "junit" or "dotenv". The upload
	// passes it on.
	ArtifactType string `json:"artifact_type"`
	// ArtifactFormat is how the upload is packed: "zip" for the archive, "gzip" or "raw" for most reports.
	ArtifactFormat string `json:"artifact_format"`

	// Extra holds the keys this SDK does not know, and known keys of an unexpected shape, as they came.
	Extra map[string]json.RawMessage `json:"-"`
}

// JobCache is one cache a job restores before it runs and saves after.
type JobCache struct {
	// Key names the cache: jobs with the same key share it.
	Key string `json:"key"`
	// Untracked asks for every file git does not track to be cached too.
	Untracked bool `json:"untracked"`
	// Paths are the files and directories to cache, relative to the checkout; they may be patterns.
	Paths []string `json:"paths"`
	// Policy is "pull-push" (also when empty), "pull" or "push".
	Policy string `json:"policy"`
	// When says after which outcome of the job the cache is saved: "on_success", "on_failure" or "always".
	When string `json:"when"`
	// FallbackKeys are the keys to restore from, in order, when Key has no cache yet.
	FallbackKeys []string `json:"fallback_keys"`

	// Extra holds the keys this SDK does not know, and known keys of an unexpected shape, as they came.
	Extra map[string]json.RawMessage `json:"-"`
}

// JobCredential lets a job log in to a registry.
type JobCredential struct {
	// Type is the kind of credential, such as "registry".
	Type string `json:"type"`
	// URL is the registry's address, such as "registry.example.com".
	URL string `json:"url"`
	// Username is the name to log in with, such as "gitlab-ci-token".
	Username string `json:"username"`
	// Password is the password to log in with, a secret; for GitLab's own registry it is the job token.
	Password string `json:"password"`

	// Extra holds the keys this SDK does not know, and known keys of an unexpected shape, as they came.
	Extra map[string]json.RawMessage `json:"-"`
}

// JobDependency is an earlier job whose artifacts a job downloads.
type JobDependency struct {
	// ID is the earlier job's ID, which the download takes.
	ID int64 `json:"id"`
	// Name is the earlier job's name.
	Name string `json:"name"`
	// Token downloads the earlier job's artifacts, a secret. Current GitLab sends the running job's own token.
	Token string `json:"token"`
	// ArtifactsFile describes the artifacts to download; it is zero when the earlier job has none.
	ArtifactsFile JobArtifactsFile `json:"artifacts_file,omitzero"`

	// Extra holds the keys this SDK does not know, and known keys of an unexpected shape, as they came.
	Extra map[string]json.RawMessage `json:"-"`
}

// JobArtifactsFile describes the artifacts file of a job's dependency.
type JobArtifactsFile struct {
	// Filename is the file's name, such as "artifacts.zip".
	Filename string `json:"filename"`
	// Size is the file's length in bytes.
	Size int64 `json:"size"`

	// Extra holds the keys this SDK does not know, and known keys of an unexpected shape, as they came.
	Extra map[string]json.RawMessage `json:"-"`
}

// JobFeatures are what the coordinator expects of the runner for a job.
type JobFeatures struct {
	// TraceSections tells that the log may hold collapsible sections.
	TraceSections bool `json:"trace_sections"`
	// FailureReasons are the failure reasons the coordinator accepts in the final update.
	FailureReasons []string `json:"failure_reasons,omitempty"`
	// TokenMaskPrefixes are the prefixes of tokens to mask in the log wherever they appear, such as "glpat-".
	TokenMaskPrefixes []string `json:"token_mask_prefixes,omitempty"`

	// Extra holds the keys this SDK does not know, and known keys of an unexpected shape, as they came.
	Extra map[string]json.RawMessage `json:"-"`
}

// JobPolicyOptions describe a job a security policy added to the pipeline.
type JobPolicyOptions struct {
	// ExecutionPolicyJob tells that a pipeline execution policy added the job.
	ExecutionPolicyJob bool `json:"execution_policy_job,omitempty"`
	// PolicyName is the policy's name.
	PolicyName string `json:"policy_name,omitempty"`
	// PolicyVariablesOverrideAllowed tells whether the project's variables may override the policy's; nil when
	// the coordinator does not say.
	PolicyVariablesOverrideAllowed *bool `json:"policy_variables_override_allowed,omitempty"`
	// PolicyVariablesOverrideExceptions are the variables excepted from PolicyVariablesOverrideAllowed.
	PolicyVariablesOverrideExceptions []string `json:"policy_variables_override_exceptions,omitempty"`

	// Extra holds the keys this SDK does not know, and known keys of an unexpected shape, as they came.
	Extra map[string]json.RawMessage `json:"-"`
}

// JobInput is one of a job's inputs.
type JobInput struct {
	// Key is the input's name.
	Key string `json:"key"`
	// Value is the input's type and content.
	Value JobInputValue `json:"value"`

	// Extra holds the keys this SDK does not know, and known keys of an unexpected shape, as they came.
	Extra map[string]json.RawMessage `json:"-"`
}

// JobInputValue is an input's type and content.
type JobInputValue struct {
	// Type is the content's type, such as "string", "number", "boolean" or "array".
	Type string `json:"type"`
	// Content is the input's value as JSON; a secret when Sensitive.
	Content json.RawMessage `json:"content,omitempty"`
	// Sensitive tells that Content is a secret.
	Sensitive bool `json:"sensitive,omitempty"`

	// Extra holds the keys this SDK does not know, and known keys of an unexpected shape, as they came.
	Extra map[string]json.RawMessage `json:"-"`
}

// JobVariables, JobCredentials, JobDependencies and JobInputs are a job's lists that hold secrets. They are plain
// slices with one method more: logged with slog, they show their elements' secrets masked, as each element does.
type (
	JobVariables    []JobVariable
	JobCredentials  []JobCredential
	JobDependencies []JobDependency
	JobInputs       []JobInput
)

// Script returns the commands of the step StepScript (before_script and script), or nil when there is none.
func (j *Job) Script() []string {
	s, _ := j.Step(StepScript)
	return s.Script
}

// AfterScript returns the commands of the step StepAfterScript, or nil when there is none.
func (j *Job) AfterScript() []string {
	s, _ := j.Step(StepAfterScript)
	return s.Script
}

// Step returns the first step of the given name, and whether there is one.
func (j *Job) Step(name string) (JobStep, bool) {
	for _, s := range j.Steps {
		if s.Name == name {
			return s, true
		}
	}
	return JobStep{}, false
}

// Variable returns the variable of the given key, and whether there is one. When the key is defined more than once
// the last definition wins, as in the environment the job sees.
func (j *Job) Variable(key string) (JobVariable, bool) {
	for i := len(j.Variables) - 1; i >= 0; i-- {
		if j.Variables[i].Key == key {
			return j.Variables[i], true
		}
	}
	return JobVariable{}, false
}

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
	r.Services = convertSlice(j.Services, JobService.redacted)
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

func (s JobService) redacted() JobService {
	s.Ports = convertSlice(s.Ports, JobPort.redacted)
	s.Variables = convertSlice(s.Variables, JobVariable.redacted)
	s.Extra = maskKnownExtra[JobService](s.Extra)
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

// The printing types below have no methods, so fmt and encoding/json treat them as plain structs.
type (
	plainJob           Job
	plainJobInfo       JobInfo
	plainJobGitInfo    JobGitInfo
	plainJobRunnerInfo JobRunnerInfo
	plainJobVariable   JobVariable
	plainJobStep       JobStep
	plainJobHook       JobHook
	plainJobImage      JobImage
	plainJobPort       JobPort
	plainJobService    JobService
	plainJobArtifact   JobArtifact
	plainJobCache      JobCache
	plainJobCredential JobCredential
	plainJobDependency JobDependency
	plainJobFeatures   JobFeatures
	plainJobFile       JobArtifactsFile
	plainJobPolicy     JobPolicyOptions
	plainJobInput      JobInput
	plainJobInputValue JobInputValue
)

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
func (s JobService) Format(f fmt.State, verb rune) {
	_, _ = fmt.Fprintf(f, fmt.FormatString(f, verb), plainJobService(s.redacted()))
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
func (s JobService) LogValue() slog.Value {
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
func (s *JobService) UnmarshalJSON(data []byte) error {
	return decodeObject(data, (*plainJobService)(s), &s.Extra)
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

func (s JobService) encodeJSON(unredacted bool) ([]byte, error) {
	if !unredacted {
		s = s.redacted()
	}
	return encodeObject(plainJobService(s), s.Extra, unredacted)
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
func (s JobService) MarshalJSON() ([]byte, error) { return s.encodeJSON(false) }

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
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	rv := reflect.ValueOf(v).Elem()
	rv.SetZero()
	fields := objectFieldsOf(rv.Type())
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
