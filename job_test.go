package runnerapi_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/runnerapi/runnerapi"
	"github.com/runnerapi/runnerapi/runnerapitest"
)

const jobMasked = "[MASKED]"

// loadJobFixture decodes testdata/name into a Job, as the v4 job request does, and returns its bytes too.
func loadJobFixture(t *testing.T, name string) (*runnerapi.Job, []byte) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	j := new(runnerapi.Job)
	require.NoError(t, json.Unmarshal(data, j))
	return j, data
}

// jobFullSecrets are the secret values in testdata/job_full.json.
var jobFullSecrets = []string{
	"glcbt-JOB-TOKEN-6d2e91",    // token, repo_url password, CI_JOB_TOKEN
	"MASKED-VAR-9a8b7c",         // masked variable
	"PRIVATE-FILE-CONTENT-1f2e", // non-public, unmasked file variable
	"SERVICE-PW-5c4d3e",         // a service's masked variable
	"REGISTRY-PW-31ce7f",        // registry password
	"DEP-TOKEN-8e7f6a",          // dependencies' token
	"SENSITIVE-INPUT-2b1a",      // sensitive input
}

func TestJobDecodeFull(t *testing.T) {
	j, _ := loadJobFixture(t, "job_full.json")

	assert.Equal(t, int64(9876543210), j.ID)
	assert.Equal(t, "glcbt-JOB-TOKEN-6d2e91", j.Token)
	assert.True(t, j.AllowGitFetch)
	assert.Equal(t, runnerapi.JobInfo{ID: 9876543210, Name: "rspec 1/2", Stage: "test", PipelineID: 1234567890,
		ProjectID: 278964, ProjectName: "GitLab", ProjectFullPath: "gitlab-org/gitlab", NamespaceID: 9970,
		RootNamespaceID: 9970, OrganizationID: 1, InstanceID: "ea3ab0c3",
		InstanceUUID: "e3b4c4a2-5f1e-4b8e-9a6a-0d7c1f2e3a4b", UserID: 42, ScopedUserID: 43, TimeInQueueSeconds: 12.5,
		ProjectJobsRunningOnInstanceRunnersCount: "+Inf", QueueSize: 3, QueueDepth: 1}, j.JobInfo)
	protected := true
	assert.Equal(t, runnerapi.JobGitInfo{
		RepoURL: "https://gitlab-ci-token:glcbt-JOB-TOKEN-6d2e91@gitlab.example.com/gitlab-org/gitlab.git",
		Ref:     "main", SHA: "97de212e80737a608d939f648d959671fb0a0142",
		BeforeSHA: "1b3f34e8d8b2a0c2f3bd9b4a9b6e6b4f0d2c1a00", RefType: "branch",
		Refspecs: []string{"+refs/pipelines/1234567890:refs/pipelines/1234567890",
			"+refs/heads/main:refs/remotes/origin/main"},
		Depth: 20, RepoObjectFormat: "sha1", Protected: &protected,
	}, j.GitInfo)
	assert.Equal(t, runnerapi.JobRunnerInfo{UUID: "runner-uuid-1", Timeout: 3600,
		RunnerSessionURL: "https://runner.example.com:8093/session/abc"}, j.RunnerInfo)
	assert.Equal(t, runnerapi.JobVariables{
		{Key: "CI_JOB_ID", Value: "9876543210", Public: true},
		{Key: "CI_JOB_TOKEN", Value: "glcbt-JOB-TOKEN-6d2e91", Masked: true},
		{Key: "CI_REPOSITORY_URL", Value: "https://gitlab-ci-token:glcbt-JOB-TOKEN-6d2e91@gitlab.example.com/gitlab-org/gitlab.git"},
		{Key: "DEPLOY_PASSWORD", Value: "MASKED-VAR-9a8b7c", Masked: true},
		{Key: "KUBECONFIG", Value: "PRIVATE-FILE-CONTENT-1f2e", File: true},
		{Key: "LITERAL", Value: "$NOT_EXPANDED", Public: true, Raw: true},
	}, j.Variables)
	assert.Equal(t, []runnerapi.JobStep{
		{Name: "script", Script: []string{"bundle install", "bundle exec rspec"}, Timeout: 3600, When: "on_success"},
		{Name: "after_script", Script: []string{"echo done"}, Timeout: 3600, When: "always", AllowFailure: true},
	}, j.Steps)
	assert.Equal(t, []runnerapi.JobHook{{Name: "pre_get_sources_script",
		Script: []string{"git config --global http.sslVerify true"}}}, j.Hooks)

	assert.Equal(t, "ruby:3.3", j.Image.Name)
	assert.Equal(t, []string{"/bin/sh", "-c"}, j.Image.Entrypoint)
	assert.Equal(t, []runnerapi.JobPort{{Number: 8080, Protocol: "http", Name: "web"}}, j.Image.Ports)
	assert.JSONEq(t, `{"platform":"linux/amd64","user":"1000"}`, string(j.Image.ExecutorOpts["docker"]))
	assert.Equal(t, []string{"always", "if-not-present"}, j.Image.PullPolicy)
	assert.Empty(t, j.Image.Extra)

	require.Len(t, j.Services, 1)
	s := j.Services[0]
	assert.Equal(t, "postgres:16", s.Name)
	assert.Nil(t, s.Entrypoint)
	assert.Equal(t, "db,postgres", s.Alias)
	assert.Equal(t, []string{"postgres", "-c", "fsync=off"}, s.Command)
	assert.Equal(t, []string{"if-not-present"}, s.PullPolicy)
	assert.Equal(t, runnerapi.JobVariables{{Key: "POSTGRES_DB", Value: "test", Public: true},
		{Key: "POSTGRES_PASSWORD", Value: "SERVICE-PW-5c4d3e", Masked: true}}, s.Variables)

	assert.Equal(t, []runnerapi.JobArtifact{
		{Name: "rspec", Paths: []string{"coverage/", "log/"}, Exclude: []string{"log/*.tmp"}, When: "always",
			ExpireIn: "1 week", ArtifactType: "archive", ArtifactFormat: "zip"},
		{Paths: []string{"rspec.xml"}, When: "always", ExpireIn: "1 week", ArtifactType: "junit", ArtifactFormat: "gzip"},
	}, j.Artifacts)
	assert.Equal(t, []runnerapi.JobCache{{Key: "gems-main", Paths: []string{"vendor/ruby"}, Policy: "pull-push",
		When: "on_success", FallbackKeys: []string{"gems-default"}}}, j.Cache)
	assert.Equal(t, runnerapi.JobCredentials{{Type: "registry", URL: "registry.example.com",
		Username: "gitlab-ci-token", Password: "REGISTRY-PW-31ce7f"}}, j.Credentials)
	assert.Equal(t, runnerapi.JobFeatures{TraceSections: true,
		FailureReasons:    []string{"unknown_failure", "script_failure", "runner_system_failure"},
		TokenMaskPrefixes: []string{"glpat-", "glcbt-"}}, j.Features)
	assert.Equal(t, runnerapi.JobDependencies{
		{ID: 9876543200, Name: "compile", Token: "DEP-TOKEN-8e7f6a",
			ArtifactsFile: runnerapi.JobArtifactsFile{Filename: "artifacts.zip", Size: 1048576}},
		{ID: 9876543201, Name: "lint", Token: "DEP-TOKEN-8e7f6a"},
	}, j.Dependencies)
	assert.Empty(t, j.Run)
	require.Contains(t, j.ExternalSecrets, "DATABASE_PASSWORD")
	assert.JSONEq(t, `{"vault":{"engine":{"name":"kv-v2","path":"secret"},"path":"production/db","field":"password"},"file":false}`,
		string(j.ExternalSecrets["DATABASE_PASSWORD"]))
	no := false
	assert.Equal(t, runnerapi.JobPolicyOptions{ExecutionPolicyJob: true, PolicyName: "compliance",
		PolicyVariablesOverrideAllowed: &no, PolicyVariablesOverrideExceptions: []string{"SAFE_VAR"}}, j.PolicyOptions)
	require.Len(t, j.Inputs, 2)
	assert.Equal(t, "api_key", j.Inputs[1].Key)
	assert.Equal(t, "string", j.Inputs[1].Value.Type)
	assert.JSONEq(t, `"SENSITIVE-INPUT-2b1a"`, string(j.Inputs[1].Value.Content))
	assert.True(t, j.Inputs[1].Value.Sensitive)
	assert.Empty(t, j.Extra, "every key of the full payload is known")
}

func TestJobDecodeMinimal(t *testing.T) {
	j, _ := loadJobFixture(t, "job_minimal.json")
	assert.Equal(t, int64(7), j.ID)
	assert.Equal(t, runnerapi.JobInfo{Name: "build", Stage: "build", ProjectID: 3, ProjectName: "app"}, j.JobInfo)
	assert.Equal(t, "tag", j.GitInfo.RefType)
	assert.Equal(t, []string{}, j.GitInfo.Refspecs)
	assert.Nil(t, j.GitInfo.Protected, "not sent: not known")
	assert.Equal(t, int64(600), j.RunnerInfo.Timeout)
	assert.Empty(t, j.RunnerInfo.RunnerSessionURL)
	assert.Zero(t, j.Image, "image null")
	assert.Nil(t, j.Artifacts, "artifacts null")
	assert.Empty(t, j.Hooks)
	assert.Equal(t, []string{"make"}, j.Script())
	assert.Nil(t, j.AfterScript())
	assert.Equal(t, runnerapi.JobFeatures{TraceSections: true}, j.Features)
	assert.Empty(t, j.Extra)
}

func TestJobDecodeNulls(t *testing.T) {
	j, _ := loadJobFixture(t, "job_nulls.json")
	assert.Equal(t, int64(8), j.ID)
	assert.Empty(t, j.Token)
	assert.False(t, j.AllowGitFetch)
	assert.Zero(t, j.JobInfo)
	assert.Equal(t, runnerapi.JobGitInfo{SHA: "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}, j.GitInfo)
	assert.Equal(t, runnerapi.JobRunnerInfo{Timeout: 60}, j.RunnerInfo)
	assert.Equal(t, runnerapi.JobVariables{{}, {Key: "A", Public: true}}, j.Variables)
	assert.Nil(t, j.Steps)
	assert.Nil(t, j.Script())
	assert.Equal(t, runnerapi.JobImage{Name: "alpine"}, j.Image)
	assert.Nil(t, j.Services)
	assert.Zero(t, j.Features)
	assert.Equal(t, runnerapi.JobDependencies{{ID: 1, Name: "x"}}, j.Dependencies)
	assert.Zero(t, j.PolicyOptions)
	assert.Nil(t, j.Inputs)
	assert.Empty(t, j.Extra, "null is the zero value, not a value of an unexpected shape")
	assert.Empty(t, j.Secrets())

	var zero runnerapi.Job
	require.NoError(t, json.Unmarshal([]byte(`null`), &zero))
	require.NoError(t, json.Unmarshal([]byte(`{}`), &zero))
	assert.Zero(t, zero)
}

func TestJobDecodeUnknownFields(t *testing.T) {
	j, _ := loadJobFixture(t, "job_unknown_fields.json")
	extra := func(m map[string]json.RawMessage, key, want string) {
		t.Helper()
		require.Contains(t, m, key)
		assert.JSONEq(t, want, string(m[key]))
		assert.Len(t, m, 1, "only %s kept", key)
	}
	extra(j.Extra, "top_level_new", `{"a":[1,2]}`)
	assert.Equal(t, `[{"name":"hello","script":"echo hello"}]`, j.Run)
	extra(j.JobInfo.Extra, "future_info", `"x"`)
	extra(j.RunnerInfo.Extra, "future_runner", `1.5`)
	extra(j.Variables[0].Extra, "future_var", `"y"`)
	extra(j.Hooks[0].Extra, "future_hook", `null`)
	extra(j.Image.Extra, "future_image", `{"k":"v"}`)
	extra(j.Image.Ports[0].Extra, "future_port", `"p"`)
	extra(j.Services[0].Extra, "future_service", `[true]`)
	extra(j.Artifacts[0].Extra, "future_artifact", `"z"`)
	extra(j.Cache[0].Extra, "future_cache", `0`)
	extra(j.Credentials[0].Extra, "future_cred", `"c"`)
	extra(j.Features.Extra, "tracing", `{"enabled":true}`)
	extra(j.Dependencies[0].Extra, "future_dep", `2`)
	extra(j.Dependencies[0].ArtifactsFile.Extra, "future_file", `"f"`)
	extra(j.PolicyOptions.Extra, "future_policy", `"q"`)
	extra(j.Inputs[0].Extra, "future_input", `1`)
	extra(j.Inputs[0].Value.Extra, "future_value", `1`)

	// A known key of an unexpected shape (depth as a string) is kept as it came, its field left zero, and the rest
	// of the object decoded.
	assert.Zero(t, j.GitInfo.Depth)
	assert.Equal(t, "main", j.GitInfo.Ref)
	assert.JSONEq(t, `"20"`, string(j.GitInfo.Extra["depth"]))
	assert.JSONEq(t, `true`, string(j.GitInfo.Extra["future_git"]))
	assert.Len(t, j.GitInfo.Extra, 2)
	assert.Equal(t, "UNKNOWN-FIELDS-REG-PW", j.Credentials[0].Password)
}

func TestJobUnexpectedShapeIsKeptNotAnError(t *testing.T) {
	tests := []struct{ name, in string }{
		{"job_info array", `{"id":1,"job_info":[1]}`},
		{"variables object", `{"id":1,"variables":{"a":"b"}}`},
		{"variable value number", `{"id":1,"variables":[{"key":"K","value":123456789,"masked":true}]}`},
		{"id string", `{"id":"1"}`},
		{"id float", `{"id":1.5}`},
		{"steps script string", `{"id":1,"steps":[{"name":"script","script":"make"}]}`},
		{"image string", `{"id":1,"image":"alpine"}`},
		{"features bool", `{"id":1,"features":true}`},
		{"token number", `{"id":1,"token":12345678901}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var j runnerapi.Job
			require.NoError(t, json.Unmarshal([]byte(tt.in), &j))
			out, err := json.Marshal(runnerapi.UnredactedJob(j))
			require.NoError(t, err)
			assertJSONKept(t, tt.in, out)
		})
	}

	for _, in := range []string{`[]`, `"job"`, `5`, `{"id":1`, `{"id":1,}`} {
		var j runnerapi.Job
		assert.Error(t, json.Unmarshal([]byte(in), &j), in)
	}
}

// assertJSONKept checks that every value of in is in out at the same place, except false, 0, "", null and empty
// arrays and objects, which an encoding may leave out.
func assertJSONKept(t *testing.T, in string, out []byte) {
	t.Helper()
	var a, b any
	require.NoError(t, json.Unmarshal([]byte(in), &a))
	require.NoError(t, json.Unmarshal(out, &b), "%s", out)
	jsonKept(t, "$", a, b)
}

func jsonKept(t *testing.T, path string, a, b any) {
	t.Helper()
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok {
			if !jsonEmpty(a) || !jsonEmpty(b) {
				t.Errorf("%s: %v became %v", path, a, b)
			}
			return
		}
		for k, v := range av {
			w, ok := bv[k]
			if !ok {
				if !jsonEmpty(v) {
					t.Errorf("%s.%s: %v lost", path, k, v)
				}
				continue
			}
			jsonKept(t, path+"."+k, v, w)
		}
	case []any:
		bv, ok := b.([]any)
		if !ok || len(av) != len(bv) {
			if !jsonEmpty(a) || !jsonEmpty(b) {
				t.Errorf("%s: %v became %v", path, a, b)
			}
			return
		}
		for i := range av {
			jsonKept(t, fmt.Sprintf("%s[%d]", path, i), av[i], bv[i])
		}
	default:
		if a != b && !(jsonEmpty(a) && jsonEmpty(b)) {
			t.Errorf("%s: %v became %v", path, a, b)
		}
	}
}

func jsonEmpty(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case bool:
		return !v
	case float64:
		return v == 0
	case string:
		return v == ""
	case []any:
		return len(v) == 0
	case map[string]any:
		for _, e := range v {
			if !jsonEmpty(e) {
				return false
			}
		}
		return true
	}
	return false
}

func TestJobRoundTrip(t *testing.T) {
	for _, name := range []string{"job_full.json", "job_minimal.json", "job_nulls.json", "job_unknown_fields.json"} {
		t.Run(name, func(t *testing.T) {
			j, data := loadJobFixture(t, name)
			out, err := json.Marshal(runnerapi.UnredactedJob(*j))
			require.NoError(t, err)
			assertJSONKept(t, string(data), out)

			var again runnerapi.Job
			require.NoError(t, json.Unmarshal(out, &again))
			out2, err := json.Marshal(runnerapi.UnredactedJob(again))
			require.NoError(t, err)
			assert.Equal(t, string(out), string(out2), "decode, encode, decode again is stable")
			assert.Equal(t, j.Secrets(), again.Secrets())
			assert.Equal(t, j.Token, again.Token)
			assert.Equal(t, j.Variables.LogValue().String(), again.Variables.LogValue().String())
		})
	}

	t.Run("a pointer stores its secrets too", func(t *testing.T) {
		j, _ := loadJobFixture(t, "job_full.json")
		u := runnerapi.UnredactedJob(*j)
		out, err := json.Marshal(&u)
		require.NoError(t, err)
		for _, s := range jobFullSecrets {
			assert.Contains(t, string(out), s)
		}
	})
}

func TestJobSecrets(t *testing.T) {
	j, _ := loadJobFixture(t, "job_full.json")
	assert.Equal(t, []string{
		"glcbt-JOB-TOKEN-6d2e91",
		"https://gitlab-ci-token:glcbt-JOB-TOKEN-6d2e91@gitlab.example.com/gitlab-org/gitlab.git", // not public
		"MASKED-VAR-9a8b7c",
		"PRIVATE-FILE-CONTENT-1f2e",
		"SERVICE-PW-5c4d3e",
		"REGISTRY-PW-31ce7f",
		"DEP-TOKEN-8e7f6a",
		"SENSITIVE-INPUT-2b1a",
	}, j.Secrets(), "each once, in the order of the payload")
	assert.NotContains(t, j.Secrets(), "9876543210", "public variables are not secrets")
	assert.NotContains(t, j.Secrets(), "test", "a service's public variable is not a secret")
	assert.NotContains(t, j.Secrets(), "production", "an input that is not sensitive is not a secret")
	assert.Empty(t, (&runnerapi.Job{}).Secrets())

	in := runnerapi.Job{Inputs: runnerapi.JobInputs{
		{Key: "a", Value: runnerapi.JobInputValue{Content: json.RawMessage(`{"k":["INPUT-LEAF-1",12345678]}`), Sensitive: true}},
		{Key: "b", Value: runnerapi.JobInputValue{Content: json.RawMessage(`null`), Sensitive: true}},
		{Key: "c", Value: runnerapi.JobInputValue{Content: json.RawMessage(`"PUBLIC-INPUT-1"`)}},
	}}
	assert.Equal(t, []string{`{"k":["INPUT-LEAF-1",12345678]}`, "INPUT-LEAF-1", "12345678"}, in.Secrets(),
		"a sensitive input's content as written and each value in it; null is no secret")

	u, _ := loadJobFixture(t, "job_unknown_fields.json")
	assert.Equal(t, []string{"UNKNOWN-FIELDS-TOKEN-77", "UNKNOWN-FIELDS-REG-PW", "UNKNOWN-FIELDS-DEP-TOK"}, u.Secrets())
}

func TestJobVariableSecretRule(t *testing.T) {
	// A value is a secret when GitLab masks it, and also when it is not public: GitLab marks a project's and a
	// group's CI/CD variables not public whether or not they are masked.
	tests := []struct {
		public, masked, secret bool
	}{
		{public: true, masked: false, secret: false},
		{public: true, masked: true, secret: true},
		{public: false, masked: false, secret: true},
		{public: false, masked: true, secret: true},
	}
	for _, tt := range tests {
		v := runnerapi.JobVariable{Key: "K", Value: "VALUE-OF-THE-VAR", Public: tt.public, Masked: tt.masked}
		assert.Equal(t, tt.secret, v.Secret(), "%+v", tt)
		j := runnerapi.Job{Variables: runnerapi.JobVariables{v}}
		assert.Equal(t, tt.secret, len(j.Secrets()) == 1, "%+v", tt)
		assert.Equal(t, tt.secret, !strings.Contains(fmt.Sprint(j), "VALUE-OF-THE-VAR"), "%+v", tt)
	}
}

func TestJobRepoURLCredentials(t *testing.T) {
	tests := []struct {
		url     string
		secrets []string
		printed string
	}{
		{"https://gitlab-ci-token:s3cr3t-tok@h/x.git", []string{"s3cr3t-tok"}, "https://gitlab-ci-token:[MASKED]@h/x.git"},
		{"https://u:p%40ss%2Fword@h/x.git", []string{"p@ss/word", "p%40ss%2Fword"}, "https://u:[MASKED]@h/x.git"},
		{"https://glpat-T0KEN@h/x.git", []string{"glpat-T0KEN"}, "https://[MASKED]@h/x.git"},
		// url.Parse rejects these: the password is found by hand, as written and decoded when it decodes.
		{"https://gitlab-ci-token:p%zzword@h/x.git", []string{"p%zzword"}, "https://gitlab-ci-token:[MASKED]@h/x.git"},
		{"https://u:pass/word@h/x.git", []string{"pass/word"}, "https://u:[MASKED]@h/x.git"},
		{"https://u:pa%2Fss?word@h/x.git", []string{"pa%2Fss?word", "pa/ss?word"}, "https://u:[MASKED]@h/x.git"},
		// url.Parse accepts this one, as a host "tok" and a fragment: the "@" says otherwise.
		{"https://tok#en-secret@h/x.git", []string{"tok#en-secret"}, "https://[MASKED]@h/x.git"},
		{"https://h/group/p@x.git", nil, "https://h/group/p@x.git"},
		{"https://h/x.git", nil, "https://h/x.git"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			j := runnerapi.Job{GitInfo: runnerapi.JobGitInfo{RepoURL: tt.url}}
			assert.Equal(t, tt.secrets, j.Secrets())
			for _, out := range []string{fmt.Sprintf("%+v", j), fmt.Sprintf("%+v", j.GitInfo)} {
				assert.Contains(t, out, tt.printed)
				for _, s := range tt.secrets {
					assert.NotContains(t, out, s)
				}
			}
		})
	}
}

// jobPrintables are the job's values a program may print or log: the job and each part holding a secret, alone,
// by pointer, in slices and in structs.
func jobPrintables(j *runnerapi.Job) map[string]any {
	u := runnerapi.UnredactedJob(*j)
	return map[string]any{
		"Job":            *j,
		"*Job":           j,
		"[]Job":          []runnerapi.Job{*j},
		"[]*Job":         []*runnerapi.Job{j},
		"UnredactedJob":  u,
		"*UnredactedJob": &u,
		"GitInfo":        j.GitInfo,
		"*GitInfo":       &j.GitInfo,
		"Variable":       j.Variables[3],
		"*Variable":      &j.Variables[3],
		"Variables":      j.Variables,
		"[]Variable":     []runnerapi.JobVariable(j.Variables),
		"Service":        j.Services[0],
		"[]Service":      j.Services,
		"Credential":     j.Credentials[0],
		"*Credential":    &j.Credentials[0],
		"Credentials":    j.Credentials,
		"Dependency":     j.Dependencies[0],
		"Dependencies":   j.Dependencies,
		"Input":          j.Inputs[1],
		"Inputs":         j.Inputs,
		"wrapped":        struct{ J runnerapi.Job }{*j},
		"wrapped ptr":    struct{ J *runnerapi.Job }{j},
		"map":            map[string]runnerapi.Job{"j": *j},
	}
}

func TestJobPrintingMasksSecrets(t *testing.T) {
	j, _ := loadJobFixture(t, "job_full.json")
	// The masking applies to a copy: the job itself keeps its secrets.
	defer func() {
		assert.Equal(t, "glcbt-JOB-TOKEN-6d2e91", j.Token)
		assert.Equal(t, "MASKED-VAR-9a8b7c", j.Variables[3].Value)
		assert.Contains(t, j.GitInfo.RepoURL, "glcbt-JOB-TOKEN-6d2e91")
		assert.JSONEq(t, `"SENSITIVE-INPUT-2b1a"`, string(j.Inputs[1].Value.Content))
	}()

	for name, v := range jobPrintables(j) {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%+q", "%x", "%X", "%10v"} {
			t.Run(name+" "+verb, func(t *testing.T) {
				out := fmt.Sprintf(verb, v)
				// An input's content is JSON kept raw, which fmt prints as bytes.
				if !strings.HasPrefix(name, "Input") {
					assert.Contains(t, out, map[bool]string{false: jobMasked,
						true: fmt.Sprintf(verb, jobMasked)}[verb == "%x" || verb == "%X"])
				}
				for _, s := range jobFullSecrets {
					assert.NotContains(t, out, s)
					assert.NotContains(t, strings.ToLower(out), hex.EncodeToString([]byte(s)))
				}
			})
		}
	}

	// Public values stay visible, so the output is still useful.
	out := fmt.Sprintf("%+v", j)
	for _, want := range []string{"CI_JOB_ID", "9876543210", "rspec 1/2", "gitlab.example.com/gitlab-org/gitlab.git",
		"POSTGRES_DB", "registry.example.com", "compile", "environment", "bundle exec rspec"} {
		assert.Contains(t, out, want)
	}
	assert.Contains(t, fmt.Sprint(j.Variables[0]), "9876543210", "public variable value shown")
}

func TestJobJSONMasksSecrets(t *testing.T) {
	j, _ := loadJobFixture(t, "job_full.json")
	for name, v := range jobPrintables(j) {
		t.Run(name, func(t *testing.T) {
			out, err := json.Marshal(v)
			require.NoError(t, err)
			if strings.Contains(name, "Unredacted") {
				assert.Contains(t, string(out), "glcbt-JOB-TOKEN-6d2e91", "an UnredactedJob encodes its secrets")
				return
			}
			assert.Contains(t, string(out), jobMasked)
			for _, s := range jobFullSecrets {
				assert.NotContains(t, string(out), s)
			}
		})
	}

	// A masked job still decodes: only its secrets are gone.
	out, err := json.Marshal(j)
	require.NoError(t, err)
	var masked runnerapi.Job
	require.NoError(t, json.Unmarshal(out, &masked))
	assert.Equal(t, j.JobInfo, masked.JobInfo)
	assert.Equal(t, jobMasked, masked.Token)
	assert.Equal(t, "https://gitlab-ci-token:[MASKED]@gitlab.example.com/gitlab-org/gitlab.git", masked.GitInfo.RepoURL)
	assert.Equal(t, j.Script(), masked.Script())
}

func TestJobSlogMasksSecrets(t *testing.T) {
	j, _ := loadJobFixture(t, "job_full.json")
	handlers := map[string]func(*bytes.Buffer) slog.Handler{
		"text": func(w *bytes.Buffer) slog.Handler { return slog.NewTextHandler(w, nil) },
		"json": func(w *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(w, nil) },
	}
	for name, h := range handlers {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			l := slog.New(h(&buf))
			var args []any
			for k, v := range jobPrintables(j) {
				args = append(args, k, v)
			}
			l.Info("took job", args...)
			l.Info("grouped", slog.Group("g", "job", j, "vars", j.Variables))
			l.With("job", *j).Info("with")
			out := buf.String()
			for _, s := range jobFullSecrets {
				assert.NotContains(t, out, s)
			}
			for _, want := range []string{"rspec 1/2", "9876543210", "CI_JOB_ID", "registry.example.com",
				"gitlab-org/gitlab", jobMasked} {
				assert.Contains(t, out, want)
			}
		})
	}
}

func TestJobUnexpectedShapeMaskedInPrint(t *testing.T) {
	// A secret field of an unexpected shape is kept, so this SDK cannot tell it is a secret by its field: it is
	// masked in every print as any known key of an unexpected shape is, yet encoded back by UnredactedJob.
	in := `{"id":1,"token":123456789012,"credentials":[{"type":"registry","password":{"p":"NESTED-PW-a1b2c3"}}],` +
		`"git_info":["https://u:ARRAY-PW-d4e5f6@h/x.git"],"variables":[{"key":"K","value":987654321098,"masked":true}]}`
	var j runnerapi.Job
	require.NoError(t, json.Unmarshal([]byte(in), &j))
	leaks := []string{"123456789012", "NESTED-PW-a1b2c3", "ARRAY-PW-d4e5f6", "987654321098"}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
		out := fmt.Sprintf(verb, j)
		for _, s := range leaks {
			assert.NotContains(t, out, s, verb)
		}
	}
	out, err := json.Marshal(j)
	require.NoError(t, err)
	for _, s := range leaks {
		assert.NotContains(t, string(out), s)
	}
	stored, err := json.Marshal(runnerapi.UnredactedJob(j))
	require.NoError(t, err)
	assertJSONKept(t, in, stored)
}

func TestJobPrintingNilAndEmpty(t *testing.T) {
	var nilJob *runnerapi.Job
	assert.Equal(t, "<nil> <nil> <nil>", fmt.Sprintf("%v %+v %s", nilJob, nilJob, nilJob))
	assert.NotContains(t, fmt.Sprintf("%+v", runnerapi.Job{}), jobMasked, "nothing to mask in an empty job")
	out, err := json.Marshal(runnerapi.Job{})
	require.NoError(t, err)
	assert.NotContains(t, string(out), jobMasked)
}

func TestJobHelpers(t *testing.T) {
	j, _ := loadJobFixture(t, "job_full.json")
	assert.Equal(t, []string{"bundle install", "bundle exec rspec"}, j.Script())
	assert.Equal(t, []string{"echo done"}, j.AfterScript())
	s, ok := j.Step(runnerapi.StepAfterScript)
	assert.True(t, ok)
	assert.True(t, s.AllowFailure)
	_, ok = j.Step("release")
	assert.False(t, ok)

	v, ok := j.Variable("CI_JOB_ID")
	assert.True(t, ok)
	assert.Equal(t, "9876543210", v.Value)
	_, ok = j.Variable("NOPE")
	assert.False(t, ok)

	twice := runnerapi.Job{Variables: runnerapi.JobVariables{{Key: "A", Value: "1"}, {Key: "A", Value: "2"}}}
	v, _ = twice.Variable("A")
	assert.Equal(t, "2", v.Value, "the last definition wins, as in the job's environment")
}

func TestJobFromFakeCoordinator(t *testing.T) {
	// The fake coordinator's v4 job, built from a v1 Build, decodes into the same values.
	srv := runnerapitest.NewServer()
	defer srv.Close()
	srv.AddRunner("glrt-job-test-runner")
	b := secBuild()
	b.Commands = "make deploy\nmake verify"
	b.Options.AfterScript = []string{"make clean"}
	id := srv.Enqueue(b)

	resp, err := srv.Client().Post(srv.URL+"/api/v4/jobs/request", "application/json",
		strings.NewReader(`{"token":"glrt-job-test-runner"}`))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	var j runnerapi.Job
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&j))

	assert.Equal(t, id, j.ID)
	assert.NotEmpty(t, j.Token)
	assert.Equal(t, "deploy", j.JobInfo.Name)
	assert.Equal(t, []string{"make deploy", "make verify"}, j.Script())
	assert.Equal(t, []string{"make clean"}, j.AfterScript())
	v, ok := j.Variable("DEPLOY_PASSWORD")
	require.True(t, ok)
	assert.Equal(t, secVariable, v.Value)
	assert.True(t, v.Secret())
	assert.Contains(t, j.Secrets(), secVariable)
	assert.Contains(t, j.Secrets(), secRegistry)
	assert.Contains(t, j.Secrets(), j.Token)
	assert.Equal(t, "registry.example.com", j.Credentials[0].URL)
	assert.Empty(t, j.Extra, "the fake sends nothing this SDK does not know")

	out := fmt.Sprintf("%+v", j)
	for _, s := range []string{secVariable, secRegistry, secRepoPass, j.Token} {
		assert.NotContains(t, out, s)
	}
}

func TestJobPrintingMasksSecretSpelledByTheLayout(t *testing.T) {
	// fmt's own layout can spell a secret out of field names and public values: the print is scrubbed as a whole.
	j := runnerapi.Job{Token: "AllowGitFetch:true", AllowGitFetch: true}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		assert.NotContains(t, fmt.Sprintf(verb, j), "AllowGitFetch:true", verb)
	}
}

// BenchmarkJobDecode decodes the full job, against a decode of the same bytes into plain Go values as the ratio's
// reference: the lenient decoding reads each object twice.
func BenchmarkJobDecode(b *testing.B) {
	data, err := os.ReadFile(filepath.Join("testdata", "job_full.json"))
	require.NoError(b, err)
	b.Run("Job", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			var j runnerapi.Job
			if err := json.Unmarshal(data, &j); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("any", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			var v any
			if err := json.Unmarshal(data, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
}
