package runnerapi

import "encoding/json"

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
	Services []JobServiceImage `json:"services"`
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

// JobServiceImage is the image of a service a job runs beside, such as a database.
type JobServiceImage struct {
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
