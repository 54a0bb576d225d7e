package runnerapitest

import (
	"strconv"
	"strings"

	"github.com/runnerapi/runnerapi"
)

// The job payload of POST /api/v4/jobs/request's 201, as GitLab's Entities::Ci::JobRequest::Response exposes it,
// built from the same runnerapi.Build that v1 hands out.

type jobPayload struct {
	ID            int64             `json:"id"`
	Token         string            `json:"token"`
	AllowGitFetch bool              `json:"allow_git_fetch"`
	JobInfo       jobInfoPayload    `json:"job_info"`
	GitInfo       gitInfoPayload    `json:"git_info"`
	RunnerInfo    runnerInfoPayload `json:"runner_info"`
	Variables     []variablePayload `json:"variables"`
	Steps         []stepPayload     `json:"steps"`
	Hooks         []any             `json:"hooks"`
	Image         *imagePayload     `json:"image"`
	Services      []imagePayload    `json:"services"`
	Artifacts     []artifactPayload `json:"artifacts"`
	Cache         []cachePayload    `json:"cache"`
	Credentials   []credPayload     `json:"credentials"`
	Dependencies  []depPayload      `json:"dependencies"`
	Features      featuresPayload   `json:"features"`
}

type jobInfoPayload struct {
	ID          int64  `json:"id"`
	Name        string `json:"name"`
	Stage       string `json:"stage"`
	PipelineID  int64  `json:"pipeline_id"`
	ProjectID   int64  `json:"project_id"`
	ProjectName string `json:"project_name"`
}

type gitInfoPayload struct {
	RepoURL   string   `json:"repo_url"`
	Ref       string   `json:"ref"`
	SHA       string   `json:"sha"`
	BeforeSHA string   `json:"before_sha"`
	RefType   string   `json:"ref_type"`
	Refspecs  []string `json:"refspecs"`
	Depth     int      `json:"depth"`
}

type runnerInfoPayload struct {
	Timeout          int64   `json:"timeout"`
	RunnerSessionURL *string `json:"runner_session_url"`
}

type variablePayload struct {
	Key    string `json:"key"`
	Value  string `json:"value"`
	Public bool   `json:"public"`
	Masked bool   `json:"masked"`
}

type stepPayload struct {
	Name         string   `json:"name"`
	Script       []string `json:"script"`
	Timeout      int64    `json:"timeout"`
	When         string   `json:"when"`
	AllowFailure bool     `json:"allow_failure"`
}

type imagePayload struct {
	Name       string   `json:"name"`
	Entrypoint []string `json:"entrypoint"`
	Ports      []any    `json:"ports"`
	PullPolicy []string `json:"pull_policy,omitempty"`
}

type artifactPayload struct {
	Name           string   `json:"name,omitempty"`
	Untracked      bool     `json:"untracked"`
	Paths          []string `json:"paths"`
	When           string   `json:"when"`
	ExpireIn       string   `json:"expire_in,omitempty"`
	ArtifactType   string   `json:"artifact_type"`
	ArtifactFormat string   `json:"artifact_format"`
}

type cachePayload struct {
	Key          string   `json:"key"`
	Untracked    bool     `json:"untracked"`
	Paths        []string `json:"paths"`
	Policy       string   `json:"policy"`
	When         string   `json:"when"`
	FallbackKeys []string `json:"fallback_keys"`
}

type credPayload struct {
	Type     string `json:"type"`
	URL      string `json:"url"`
	Username string `json:"username"`
	Password string `json:"password"`
}

type depPayload struct {
	ID            int64                    `json:"id"`
	Name          string                   `json:"name"`
	Token         string                   `json:"token"`
	ArtifactsFile *runnerapi.ArtifactsFile `json:"artifacts_file,omitempty"`
}

type featuresPayload struct {
	TraceSections  bool     `json:"trace_sections"`
	FailureReasons []string `json:"failure_reasons"`
}

// jobPayloadLocked returns b as the v4 job its runner is handed now. The build's script lines become the step
// "script", Options.AfterScript the step "after_script"; every variable that is not public is sent masked;
// dependencies naming builds of this server carry b's own token (current GitLab's, which downloads their
// artifacts) and their artifacts file.
func (s *Server) jobPayloadLocked(b *build) jobPayload {
	bb := b.b
	out := jobPayload{
		ID: bb.ID, Token: bb.Token, AllowGitFetch: bb.AllowGitFetch,
		JobInfo: jobInfoPayload{ID: bb.ID, Name: bb.Name, Stage: bb.Stage, PipelineID: bb.ID,
			ProjectID: bb.ProjectID, ProjectName: bb.ProjectName},
		GitInfo: gitInfoPayload{RepoURL: bb.RepoURL, Ref: bb.Ref, SHA: bb.SHA, BeforeSHA: bb.BeforeSHA,
			RefType: "branch", Refspecs: refspecs(bb)},
		RunnerInfo:   runnerInfoPayload{Timeout: bb.Timeout},
		Variables:    []variablePayload{},
		Hooks:        []any{},
		Services:     []imagePayload{},
		Cache:        []cachePayload{},
		Credentials:  []credPayload{},
		Dependencies: []depPayload{},
		Features:     featuresPayload{TraceSections: true, FailureReasons: failureReasons},
	}
	if bb.Tag {
		out.GitInfo.RefType = "tag"
	}
	for _, v := range bb.Variables {
		out.Variables = append(out.Variables, variablePayload{Key: v.Key, Value: v.Value, Public: v.Public, Masked: !v.Public})
	}
	out.Steps = []stepPayload{{Name: "script", Script: scriptLines(bb.Commands), Timeout: bb.Timeout, When: "on_success"}}
	if len(bb.Options.AfterScript) > 0 {
		out.Steps = append(out.Steps, stepPayload{Name: "after_script", Script: bb.Options.AfterScript,
			Timeout: bb.Timeout, When: "always", AllowFailure: true})
	}
	if bb.Options.Image != "" {
		out.Image = &imagePayload{Name: bb.Options.Image, Ports: []any{}}
	}
	for _, svc := range bb.Options.Services {
		out.Services = append(out.Services, imagePayload{Name: svc, Ports: []any{}})
	}
	if a := bb.Options.Artifacts; len(a.Paths) > 0 || a.Untracked {
		when := a.When
		if when == "" {
			when = "on_success"
		}
		out.Artifacts = []artifactPayload{{Name: a.Name, Untracked: a.Untracked, Paths: a.Paths, When: when,
			ExpireIn: a.ExpireIn, ArtifactType: "archive", ArtifactFormat: "zip"}}
	}
	if c := bb.Options.Cache; c.Key != "" || len(c.Paths) > 0 || c.Untracked {
		out.Cache = append(out.Cache, cachePayload{Key: c.Key, Untracked: c.Untracked, Paths: c.Paths,
			Policy: "pull-push", When: "on_success", FallbackKeys: []string{}})
	}
	for _, c := range bb.Credentials {
		out.Credentials = append(out.Credentials, credPayload(c))
	}
	for _, d := range bb.DependsOnBuilds {
		dep := depPayload{ID: d.ID, Name: d.Name, Token: d.Token}
		if db := s.builds[d.ID]; db != nil {
			dep = depPayload{ID: db.b.ID, Name: db.b.Name, Token: bb.Token}
			if db.artifact != nil {
				dep.ArtifactsFile = &runnerapi.ArtifactsFile{Filename: db.artifact.info.Filename, Size: db.artifact.info.Size}
			}
		}
		out.Dependencies = append(out.Dependencies, dep)
	}
	return out
}

// scriptLines splits a v1 build's commands into the script lines of a v4 step.
func scriptLines(commands string) []string {
	lines := []string{}
	for _, l := range strings.Split(commands, "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// refspecs returns the git_info.refspecs GitLab sends: the pipeline's persistent ref (the fake takes the job's ID
// as its pipeline's) and the branch or tag.
func refspecs(b runnerapi.Build) []string {
	persistent := "refs/pipelines/" + strconv.FormatInt(b.ID, 10)
	out := []string{"+" + persistent + ":" + persistent}
	if b.Tag {
		return append(out, "+refs/tags/"+b.Ref+":refs/tags/"+b.Ref)
	}
	return append(out, "+refs/heads/"+b.Ref+":refs/remotes/origin/"+b.Ref)
}
