//go:build unix

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/runnerapi/runnerapi"
)

// work is a build of the CI API v1 or a job of the runner API v4, as the runner runs it: what the two have in
// common, so that running one is written once.
type work struct {
	id          int64
	name        string
	token       string // the build's or job's own token, a secret
	timeout     time.Duration
	script      string   // the commands, one a line
	afterScript []string // the after_script's commands
	// identity are the variables the runner sets from the work's fields; variables, which the coordinator sent,
	// win over them.
	identity  []string
	variables []variable
	artifacts []artifactUpload
	// dependencies are the earlier builds whose artifacts to unpack, already chosen.
	dependencies []dependency
	// build or job is what the coordinator sent, which the trace writer masks the secrets of.
	build *runnerapi.Build
	job   *runnerapi.Job
}

// variable is one of the work's environment variables.
type variable struct {
	key, value string
	// file says that the variable is to be the path of a file holding value (a File variable of the runner API v4).
	file bool
}

// artifactUpload is one upload the work makes once its scripts have run.
type artifactUpload struct {
	paths          []string
	when           string // "on_success" (also when empty), "on_failure" or "always"
	name, expireIn string
	// artifactType and artifactFormat are the upload's type and format on the runner API v4; empty on v1.
	artifactType, artifactFormat string
}

// dependency is an earlier build whose artifacts the work unpacks before its script runs.
type dependency struct {
	id    int64
	name  string
	token string // downloads the artifacts, a secret
}

// outcome is how the work ended, as the final report tells it.
type outcome struct {
	state runnerapi.BuildState
	// exitCode is the script's exit status when it failed by exiting non-zero; 0 otherwise.
	exitCode int
	// failureReason says why a failed work failed, in GitLab's words ("script_failure", ...).
	failureReason string
}

// coordinator is what the runner asks of a coordinator, once for each API.
type coordinator interface {
	// take asks for work. A nil work with a nil error is "none"; resp.LastUpdate is then to be sent back. A work
	// that comes with an error was assigned to the runner but could not be read in full: it is to be reported
	// failed.
	take(ctx context.Context, lastUpdate string) (*work, *runnerapi.Response, error)
	// traceWriter starts the work's trace.
	traceWriter(ctx context.Context, w *work, opts *runnerapi.TraceOptions) (*runnerapi.TraceWriter, error)
	// report sends the work's end, once its trace is closed.
	report(ctx context.Context, w *work, end outcome, trace *runnerapi.TraceWriter) error
	// client is the client the artifacts calls go through.
	client() *runnerapi.Client
}

// newCoordinator returns the coordinator c speaks to, in the API c speaks.
func newCoordinator(c *runnerapi.Client) coordinator {
	if c.API() == runnerapi.APIv4 {
		return &v4Coordinator{c: c, systemID: newSystemID()}
	}
	return &v1Coordinator{c: c}
}

// v1Coordinator takes builds over the CI API v1.
type v1Coordinator struct {
	c *runnerapi.Client
}

func (v *v1Coordinator) client() *runnerapi.Client { return v.c }

func (v *v1Coordinator) take(ctx context.Context, lastUpdate string) (*work, *runnerapi.Response, error) {
	b, resp, err := v.c.Builds.Register(ctx, &runnerapi.RegisterOptions{Info: runnerInfo, LastUpdate: lastUpdate})
	if b == nil {
		return nil, resp, err
	}
	return workOfBuild(b), resp, err
}

func (v *v1Coordinator) traceWriter(ctx context.Context, w *work, opts *runnerapi.TraceOptions) (*runnerapi.TraceWriter, error) {
	return v.c.NewBuildTraceWriter(ctx, w.build, opts)
}

func (v *v1Coordinator) report(ctx context.Context, w *work, end outcome, _ *runnerapi.TraceWriter) error {
	// The CI API v1 knows only the state: no exit code, no failure reason, no checksum. The update authenticates
	// with the runner token.
	_, err := v.c.Builds.Update(ctx, w.id, &runnerapi.UpdateOptions{State: end.state})
	return err
}

// workOfBuild is what the runner runs of a v1 build: its commands, its options' after_script and artifacts, and
// the builds it depends on (only those its options.dependencies names when it has that list).
func workOfBuild(b *runnerapi.Build) *work {
	w := &work{id: b.ID, name: b.Name, token: b.Token, timeout: time.Duration(b.Timeout) * time.Second,
		script: b.Commands, afterScript: b.Options.AfterScript, build: b}
	w.identity = []string{
		"CI_BUILD_ID=" + strconv.FormatInt(b.ID, 10),
		"CI_BUILD_NAME=" + b.Name,
		"CI_BUILD_STAGE=" + b.Stage,
		"CI_BUILD_REF=" + b.SHA,
		"CI_BUILD_BEFORE_SHA=" + b.BeforeSHA,
		"CI_BUILD_REF_NAME=" + b.Ref,
		"CI_BUILD_TOKEN=" + b.Token, // the build's own token, as GitLab's runner gives it; the trace masks it
		"CI_PROJECT_ID=" + strconv.FormatInt(b.ProjectID, 10),
	}
	for _, v := range b.Variables {
		w.variables = append(w.variables, variable{key: v.Key, value: v.Value})
	}
	if a := b.Options.Artifacts; len(a.Paths) > 0 {
		w.artifacts = []artifactUpload{{paths: a.Paths, when: a.When, name: a.Name, expireIn: a.ExpireIn}}
	}
	wanted := b.Options.Dependencies
	for _, dep := range b.DependsOnBuilds {
		if dep.ArtifactsFile.Filename == "" || (wanted != nil && !slices.Contains(wanted, dep.Name)) {
			continue
		}
		w.dependencies = append(w.dependencies, dependency{id: dep.ID, name: dep.Name, token: dep.Token})
	}
	return w
}

// v4Features are the info.features the runner advertises on the runner API v4: only what it really does, since
// the coordinator hands a runner the jobs that need them. It runs the variables and the artifacts archive, masks
// the trace, sends its checksum and size, obeys both cancels and reports the exit code.
var v4Features = []string{"variables", "artifacts", "masking", "trace_checksum", "trace_size", "cancelable",
	"cancel_gracefully", "return_exit_code"}

// v4Coordinator takes jobs over the runner API v4.
type v4Coordinator struct {
	c *runnerapi.Client
	// systemID names this runner process to the coordinator, which keeps one runner manager per system_id.
	systemID string
}

func (v *v4Coordinator) client() *runnerapi.Client { return v.c }

func (v *v4Coordinator) take(ctx context.Context, lastUpdate string) (*work, *runnerapi.Response, error) {
	j, resp, err := v.c.Jobs.Request(ctx, &runnerapi.JobRequestOptions{SystemID: v.systemID, LastUpdate: lastUpdate,
		Info: runnerInfo, Executor: "shell", Features: v4Features})
	if j == nil {
		return nil, resp, err
	}
	return workOfJob(j), resp, err
}

func (v *v4Coordinator) traceWriter(ctx context.Context, w *work, opts *runnerapi.TraceOptions) (*runnerapi.TraceWriter, error) {
	return v.c.NewJobTraceWriter(ctx, w.job, opts)
}

func (v *v4Coordinator) report(ctx context.Context, w *work, end outcome, trace *runnerapi.TraceWriter) error {
	opts := &runnerapi.JobUpdateOptions{State: end.state}
	if end.state == runnerapi.StateFailed {
		opts.FailureReason, opts.ExitCode = end.failureReason, end.exitCode
	}
	// The coordinator checks the trace it stored against this before it finishes the job.
	if trace != nil {
		opts.Output = trace.Output()
	}
	_, _, err := v.c.Jobs.Update(ctx, w.id, opts, runnerapi.WithToken(w.token))
	return err
}

// workOfJob is what the runner runs of a v4 job: its script and after_script steps, its variables, its archive
// upload, and its dependencies that have artifacts.
func workOfJob(j *runnerapi.Job) *work {
	w := &work{id: j.ID, name: j.JobInfo.Name, token: j.Token, timeout: time.Duration(j.RunnerInfo.Timeout) * time.Second,
		script: strings.Join(j.Script(), "\n"), afterScript: j.AfterScript(), job: j}
	w.identity = []string{
		"CI_JOB_ID=" + strconv.FormatInt(j.ID, 10),
		"CI_JOB_NAME=" + j.JobInfo.Name,
		"CI_JOB_STAGE=" + j.JobInfo.Stage,
		"CI_JOB_TOKEN=" + j.Token, // as gitlab-runner gives it; the trace masks it
		"CI_PROJECT_ID=" + strconv.FormatInt(j.JobInfo.ProjectID, 10),
	}
	for _, v := range j.Variables {
		w.variables = append(w.variables, variable{key: v.Key, value: v.Value, file: v.File})
	}
	for _, a := range j.Artifacts {
		w.artifacts = append(w.artifacts, artifactUpload{paths: a.Paths, when: a.When, name: a.Name,
			expireIn: a.ExpireIn, artifactType: a.ArtifactType, artifactFormat: a.ArtifactFormat})
	}
	for _, dep := range j.Dependencies {
		if dep.ArtifactsFile.Filename == "" {
			continue
		}
		w.dependencies = append(w.dependencies, dependency{id: dep.ID, name: dep.Name, token: dep.Token})
	}
	return w
}

// newSystemID makes a system_id as gitlab-runner does for a machine it cannot name: "r_" and 12 random characters.
func newSystemID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "r_" + hex.EncodeToString(b[:])
}
