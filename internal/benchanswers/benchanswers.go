// Package benchanswers holds the build and the job that the benchmarks' coordinators answer with: the harness's
// server (internal/bench) and the in-process per-call benchmark and allocation test measure the same answers.
package benchanswers

import (
	"fmt"
	"strings"
)

// Build is a build as a v1 coordinator hands it out, of a realistic size (about 1.5 KiB).
func Build(id int64, token string) map[string]any {
	vars := make([]map[string]any, 0, 12)
	for i := range 12 {
		vars = append(vars, map[string]any{"key": fmt.Sprintf("VAR_%02d", i), "value": fmt.Sprintf("value-%02d", i), "public": i%3 != 0})
	}
	return map[string]any{
		"id": id, "ref": "main", "tag": false, "sha": strings.Repeat("a1", 20), "before_sha": strings.Repeat("b2", 20),
		"status": "running", "name": "test", "stage": "test", "token": token, "project_id": 7,
		"project_name": "bench", "repo_url": "http://gitlab-ci-token:" + token + "@127.0.0.1/group/bench.git",
		"commands": "make\nmake test", "allow_git_fetch": true, "timeout": 3600, "variables": vars,
		"options": map[string]any{
			"image": "golang:1.24", "services": []string{"postgres:16"},
			"artifacts":    map[string]any{"name": "out", "paths": []string{"out/"}, "expire_in": "1 week"},
			"cache":        map[string]any{"key": "go", "paths": []string{".cache/"}},
			"after_script": []string{"echo done"},
		},
		"depends_on_builds": []any{},
		"credentials":       []any{map[string]any{"type": "registry", "url": "registry.example.com", "username": "gitlab-ci-token", "password": token}},
	}
}

// Job is a job as a v4 coordinator hands it out, of a realistic size (about 2 KiB): the same build as
// Build, in v4's shape.
func Job(id int64, token string) map[string]any {
	vars := make([]map[string]any, 0, 12)
	for i := range 12 {
		vars = append(vars, map[string]any{"key": fmt.Sprintf("VAR_%02d", i), "value": fmt.Sprintf("value-%02d", i),
			"public": i%3 != 0, "masked": i%3 == 0, "file": false, "raw": false})
	}
	return map[string]any{
		"id": id, "token": token, "allow_git_fetch": true,
		"job_info": map[string]any{"id": id, "name": "test", "stage": "test", "project_id": 7, "project_name": "bench"},
		"git_info": map[string]any{"repo_url": "http://gitlab-ci-token:" + token + "@127.0.0.1/group/bench.git",
			"ref": "main", "sha": strings.Repeat("a1", 20), "before_sha": strings.Repeat("b2", 20), "ref_type": "branch",
			"refspecs": []string{"+refs/heads/main:refs/remotes/origin/main"}, "depth": 20},
		"runner_info": map[string]any{"timeout": 3600},
		"variables":   vars,
		"steps": []any{
			map[string]any{"name": "script", "script": []string{"make", "make test"}, "timeout": 3600, "when": "on_success", "allow_failure": false},
			map[string]any{"name": "after_script", "script": []string{"echo done"}, "timeout": 3600, "when": "always", "allow_failure": true},
		},
		"image":    map[string]any{"name": "golang:1.24"},
		"services": []any{map[string]any{"name": "postgres:16"}},
		"artifacts": []any{map[string]any{"name": "out", "untracked": false, "paths": []string{"out/"}, "when": "on_success",
			"expire_in": "1 week", "artifact_type": "archive", "artifact_format": "zip"}},
		"cache":        []any{map[string]any{"key": "go", "untracked": false, "paths": []string{".cache/"}, "policy": "pull-push", "when": "on_success"}},
		"dependencies": []any{},
		"credentials":  []any{map[string]any{"type": "registry", "url": "registry.example.com", "username": "gitlab-ci-token", "password": token}},
		"features":     map[string]any{"trace_sections": true},
	}
}
