package runnerapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// loadBuildFixture decodes testdata/name into a Build, as Register would.
func loadBuildFixture(t *testing.T, name string) *Build {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	b := new(Build)
	require.NoError(t, json.Unmarshal(data, b))
	return b
}

func TestBuildDecode817(t *testing.T) {
	b := loadBuildFixture(t, "build_8_17.json")

	assert.Equal(t, int64(1234567), b.ID)
	assert.Equal(t, "master", b.Ref)
	assert.False(t, b.Tag)
	assert.Equal(t, "97de212e80737a608d939f648d959671fb0a0142", b.SHA)
	assert.Equal(t, "1b3f34e8d8b2a0c2f3bd9b4a9b6e6b4f0d2c1a00", b.BeforeSHA)
	assert.Equal(t, StateRunning, b.Status)
	assert.Equal(t, "rspec:other", b.Name)
	assert.Equal(t, "test", b.Stage)
	assert.Equal(t, "b8e3c5a1f0d94e7a", b.Token)
	assert.Equal(t, int64(42), b.ProjectID)
	assert.Equal(t, "gitlab-ce", b.ProjectName)
	assert.Equal(t, "https://gitlab-ci-token:REPO-PASSWORD-4c1d@gitlab.example.com/gitlab-org/gitlab-ce.git", b.RepoURL)
	assert.Equal(t, "bundle install --path vendor\nbundle exec rspec", b.Commands)
	assert.True(t, b.AllowGitFetch)
	assert.Equal(t, int64(3600), b.Timeout)
	assert.Equal(t, Variables{
		{Key: "CI_BUILD_ID", Value: "1234567", Public: true},
		{Key: "CI_BUILD_REF_NAME", Value: "master", Public: true},
		{Key: "CI_BUILD_TOKEN", Value: "b8e3c5a1f0d94e7a"},
		{Key: "DEPLOY_PASSWORD", Value: "DEPLOY-SECRET-77aa"},
	}, b.Variables)

	o := b.Options
	assert.Equal(t, "ruby:2.3", o.Image)
	assert.Equal(t, []string{"postgres:9.5", "redis:3.2"}, o.Services)
	assert.Equal(t, ArtifactsOptions{Name: "rspec-artifacts", Untracked: true, Paths: []string{"coverage/", "log/"},
		When: "always", ExpireIn: "7d"}, o.Artifacts)
	assert.Equal(t, CacheOptions{Key: "rspec", Untracked: true, Paths: []string{"vendor/ruby"}}, o.Cache)
	assert.Equal(t, []string{"setup"}, o.Dependencies)
	assert.Equal(t, []string{"date", "echo done"}, o.AfterScript)
	assert.Equal(t, Environment{Name: "review/feature", URL: "https://feature.review.example.com", Action: "start"},
		o.Environment)
	assert.Empty(t, o.Extra)

	assert.Equal(t, DependentBuilds{{
		ID: 1234560, Ref: "master", SHA: "97de212e80737a608d939f648d959671fb0a0142", Status: StateSuccess,
		Name: "setup", Token: "DEP-TOKEN-9f8e", Stage: "prepare", ProjectID: 42, ProjectName: "gitlab-ce",
		ArtifactsFile: ArtifactsFile{Filename: "artifacts.zip", Size: 1048576},
	}}, b.DependsOnBuilds)
	assert.Equal(t, ArtifactsFile{Filename: "artifacts.zip", Size: 2048}, b.ArtifactsFile)
	assert.True(t, time.Date(2017, 3, 1, 12, 34, 56, 789e6, time.UTC).Equal(b.ArtifactsExpireAt), b.ArtifactsExpireAt)
	assert.Equal(t, Credentials{{Type: "registry", URL: "registry.example.com", Username: "gitlab-ci-token",
		Password: "REGISTRY-PASS-31ce"}}, b.Credentials)
}

func TestBuildDecode80(t *testing.T) {
	b := loadBuildFixture(t, "build_8_0.json")

	assert.Equal(t, int64(7), b.ID)
	assert.Equal(t, "make test", b.Commands)
	assert.Empty(t, b.BeforeSHA, "null before_sha")
	assert.Empty(t, b.Stage, "missing stage")
	assert.Empty(t, b.ProjectName, "missing project_name")
	assert.Nil(t, b.Variables)
	assert.Nil(t, b.DependsOnBuilds)
	assert.Nil(t, b.Credentials)
	assert.Zero(t, b.ArtifactsFile)
	assert.True(t, b.ArtifactsExpireAt.IsZero())
	assert.Equal(t, Options{}, b.Options, "null options")
}

func TestBuildDecodeUnknownOptions(t *testing.T) {
	b := loadBuildFixture(t, "build_unknown_options.json")
	o := b.Options

	// image as an object (GitLab 9.4) is a known key of an unexpected shape: kept, not an error.
	assert.Empty(t, o.Image)
	assert.JSONEq(t, `{"name":"alpine:3.5","entrypoint":["/bin/sh"]}`, string(o.Extra["image"]))
	assert.Equal(t, []string{"docker:dind"}, o.Services)
	assert.JSONEq(t, `2`, string(o.Extra["retry"]))
	assert.JSONEq(t, `"/Coverage: \\d+\\.\\d+%/"`, string(o.Extra["coverage"]))
	assert.JSONEq(t, `"manual"`, string(o.Extra["when"]))
	assert.Len(t, o.Extra, 4)

	env := o.Environment
	assert.Equal(t, "production", env.Name)
	assert.Equal(t, "https://example.com", env.URL)
	assert.Equal(t, "start", env.Action)
	assert.JSONEq(t, `"stop_production"`, string(env.Extra["on_stop"]))
	assert.JSONEq(t, `{"namespace":"prod"}`, string(env.Extra["kubernetes"]))
	assert.Len(t, env.Extra, 2)
}

func TestBuildDecodeEnvironmentString(t *testing.T) {
	b := loadBuildFixture(t, "build_environment_string.json")
	assert.Equal(t, Environment{Name: "staging"}, b.Options.Environment)
	assert.Empty(t, b.Options.Dependencies)
	assert.Empty(t, b.Options.Extra)
}

func TestOptionsRoundTrip(t *testing.T) {
	// Every option the coordinator sent, known or not, is marshaled back as it came.
	for _, name := range []string{"build_8_17.json", "build_unknown_options.json"} {
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", name))
			require.NoError(t, err)
			var raw struct{ Options json.RawMessage }
			require.NoError(t, json.Unmarshal(data, &raw))
			var o Options
			require.NoError(t, json.Unmarshal(raw.Options, &o))
			out, err := json.Marshal(o)
			require.NoError(t, err)
			assert.JSONEq(t, string(raw.Options), string(out))

			var again Options
			require.NoError(t, json.Unmarshal(out, &again))
			out2, err := json.Marshal(again)
			require.NoError(t, err)
			assert.JSONEq(t, string(out), string(out2))
			assert.Equal(t, o.Image, again.Image)
			assert.Equal(t, o.Environment.Name, again.Environment.Name)
			assert.Equal(t, len(o.Extra), len(again.Extra))
			assert.Equal(t, len(o.Environment.Extra), len(again.Environment.Extra))
		})
	}

	t.Run("bare environment becomes an object", func(t *testing.T) {
		b := loadBuildFixture(t, "build_environment_string.json")
		out, err := json.Marshal(b.Options)
		require.NoError(t, err)
		assert.JSONEq(t, `{"environment":{"name":"staging"}}`, string(out))
	})

	t.Run("unknown keys survive", func(t *testing.T) {
		in := `{"image":{"name":"alpine"},"retry":2,"environment":{"name":"prod","on_stop":"stop","x":[1,2]}}`
		var o Options
		require.NoError(t, json.Unmarshal([]byte(in), &o))
		out, err := json.Marshal(o)
		require.NoError(t, err)
		assert.JSONEq(t, in, string(out))
	})

	t.Run("whole build", func(t *testing.T) {
		b := loadBuildFixture(t, "build_8_17.json")
		data, err := json.Marshal(UnredactedBuild(*b))
		require.NoError(t, err)
		var again Build
		require.NoError(t, json.Unmarshal(data, &again))
		assert.Equal(t, b.Options, again.Options)
		again.Options, b.Options = Options{}, Options{}
		assert.True(t, b.ArtifactsExpireAt.Equal(again.ArtifactsExpireAt))
		again.ArtifactsExpireAt = b.ArtifactsExpireAt
		assert.Equal(t, *b, again)
	})
}

func TestOptionsUnexpectedShapeGoesToExtra(t *testing.T) {
	tests := []struct {
		name, key, value string
	}{
		{"image object", "image", `{"name":"ruby"}`},
		{"services string", "services", `"postgres"`},
		{"services of objects", "services", `[{"name":"postgres","alias":"db"}]`},
		{"artifacts paths string", "artifacts", `{"paths":"coverage/"}`},
		{"cache untracked string", "cache", `{"untracked":"yes"}`},
		{"dependencies number", "dependencies", `5`},
		{"after_script string", "after_script", `"date"`},
		{"environment number", "environment", `5`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := `{"` + tt.key + `":` + tt.value + `}`
			var o Options
			require.NoError(t, json.Unmarshal([]byte(in), &o))
			assert.JSONEq(t, tt.value, string(o.Extra[tt.key]))
			// The known field is left zero, not half-filled.
			rest := o
			rest.Extra = nil
			assert.Equal(t, Options{}, rest)
			out, err := json.Marshal(o)
			require.NoError(t, err)
			assert.JSONEq(t, in, string(out))
		})
	}
}

// testBuildSecrets are the secret values in testdata/build_8_17.json.
var testBuildSecrets = []string{
	"b8e3c5a1f0d94e7a",   // token, and the non-public CI_BUILD_TOKEN variable
	"REPO-PASSWORD-4c1d", // repo_url password
	"DEPLOY-SECRET-77aa", // non-public variable
	"REGISTRY-PASS-31ce", // registry password
	"DEP-TOKEN-9f8e",     // dependency's token
}

func TestEnvironmentUnexpectedShapeGoesToExtra(t *testing.T) {
	in := `{"name":"x","url":["a"],"action":null}`
	var e Environment
	require.NoError(t, json.Unmarshal([]byte(in), &e))
	assert.Equal(t, "x", e.Name)
	assert.Empty(t, e.URL)
	assert.JSONEq(t, `["a"]`, string(e.Extra["url"]))
	out, err := json.Marshal(e)
	require.NoError(t, err)
	assert.JSONEq(t, `{"name":"x","url":["a"]}`, string(out))
}

func TestBuildSecrets(t *testing.T) {
	b := loadBuildFixture(t, "build_8_17.json")
	assert.ElementsMatch(t, []string{"b8e3c5a1f0d94e7a", "REPO-PASSWORD-4c1d", "b8e3c5a1f0d94e7a",
		"DEPLOY-SECRET-77aa", "REGISTRY-PASS-31ce", "DEP-TOKEN-9f8e"}, b.Secrets())
	assert.NotContains(t, b.Secrets(), "1234567", "public variables are not secrets")
	assert.Empty(t, (&Build{}).Secrets())
}

func TestBuildPrintingMasksSecrets(t *testing.T) {
	b := loadBuildFixture(t, "build_8_17.json")
	// The masking applies to a copy: the build itself keeps its secrets.
	defer func() { assert.Equal(t, "b8e3c5a1f0d94e7a", b.Token) }()

	values := map[string]any{
		"Build":            *b,
		"*Build":           b,
		"Variable":         b.Variables[3],
		"*Variable":        &b.Variables[3],
		"Credential":       b.Credentials[0],
		"*Credential":      &b.Credentials[0],
		"DependentBuild":   b.DependsOnBuilds[0],
		"*DependentBuild":  &b.DependsOnBuilds[0],
		"[]Variable":       b.Variables,
		"[]Credential":     b.Credentials,
		"[]DependentBuild": b.DependsOnBuilds,
		"wrapped":          struct{ B Build }{*b},
	}
	for name, v := range values {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
			t.Run(name+" "+verb, func(t *testing.T) {
				out := fmt.Sprintf(verb, v)
				for _, s := range testBuildSecrets {
					assert.NotContains(t, out, s)
					if verb == "%x" {
						assert.NotContains(t, out, fmt.Sprintf("%x", s))
					}
				}
			})
		}
	}

	// Public values and the masking marker stay visible, so the output is still useful.
	out := fmt.Sprintf("%+v", b)
	assert.Contains(t, out, "CI_BUILD_ID")
	assert.Contains(t, out, "1234567")
	assert.Contains(t, out, "rspec:other")
	assert.Contains(t, out, "gitlab.example.com/gitlab-org/gitlab-ce.git")
	assert.Contains(t, out, masked)
	assert.Contains(t, fmt.Sprint(b.Variables[0]), "1234567", "public variable value shown")
}

func TestBuildSlogMasksSecrets(t *testing.T) {
	b := loadBuildFixture(t, "build_8_17.json")
	handlers := map[string]func(*bytes.Buffer) slog.Handler{
		"text": func(w *bytes.Buffer) slog.Handler { return slog.NewTextHandler(w, nil) },
		"json": func(w *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(w, nil) },
	}
	for name, h := range handlers {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			l := slog.New(h(&buf))
			l.Info("took build", "build", *b, "ptr", b, "var", b.Variables[3], "public", b.Variables[0],
				"cred", b.Credentials[0], "dep", b.DependsOnBuilds[0],
				"vars", b.Variables, "creds", b.Credentials, "deps", b.DependsOnBuilds)
			out := buf.String()
			for _, s := range testBuildSecrets {
				assert.NotContains(t, out, s)
			}
			assert.Contains(t, out, "rspec:other")
			assert.Contains(t, out, "1234567")
			assert.Contains(t, out, "CI_BUILD_ID")
			assert.Contains(t, out, "registry.example.com")
		})
	}
}

func TestBuildRepoURLCredentials(t *testing.T) {
	tests := []struct {
		url     string
		secrets []string
		printed string
	}{
		{"https://gitlab-ci-token:s3cr3t@h/x.git", []string{"s3cr3t"}, "https://gitlab-ci-token:[MASKED]@h/x.git"},
		{"https://u:p%40ss%2Fw@h/x.git", []string{"p@ss/w", "p%40ss%2Fw"}, "https://u:[MASKED]@h/x.git"},
		{"https://glpat-T0KEN@h/x.git", []string{"glpat-T0KEN"}, "https://[MASKED]@h/x.git"},
		{"https://t%2Bk@h:8443/x.git?a=b", []string{"t+k", "t%2Bk"}, "https://[MASKED]@h:8443/x.git?a=b"},
		{"https://u:@h/x.git", nil, "https://u:[MASKED]@h/x.git"},
		{"https://h/x.git", nil, "https://h/x.git"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			b := Build{RepoURL: tt.url}
			assert.Equal(t, tt.secrets, b.Secrets())
			out := fmt.Sprintf("%+v", b)
			assert.Contains(t, out, tt.printed)
			for _, s := range tt.secrets {
				assert.NotContains(t, out, s)
			}
		})
	}
}

func TestBuildPrintingNilAndEmpty(t *testing.T) {
	var nilBuild *Build
	assert.Equal(t, "<nil> <nil> <nil>", fmt.Sprintf("%v %+v %s", nilBuild, nilBuild, nilBuild))
	assert.NotContains(t, fmt.Sprintf("%+v", Build{}), masked, "nothing to mask in an empty build")
	// An unparseable repo_url is masked whole: it may hold a password the parser could not find.
	b := Build{RepoURL: "https://user:p%zz@host/x.git"}
	assert.NotContains(t, fmt.Sprint(b), "p%zz")
	assert.Contains(t, fmt.Sprint(b), masked)
}
