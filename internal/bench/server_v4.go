package main

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

// isV4 tells a request of the runner API v4 from one of the CI API v1, by its path.
func isV4(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/api/v4/") }

// benchJobJSON is a job as a v4 coordinator hands it out, of a realistic size (about 2 KiB): the same build as
// benchBuildJSON, in v4's shape.
func benchJobJSON(id int64, token string) map[string]any {
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

// readJSON reads a small JSON body, records the request's shape, and checks its token against want.
func (s *benchServer) readJSON(w http.ResponseWriter, r *http.Request, want string, v any) bool {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		writeJSONStatus(w, http.StatusBadRequest, `{"message":"400 Bad request"}`)
		return false
	}
	s.recordSignature(r, body)
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		s.problem(r, "Content-Type %q", r.Header.Get("Content-Type"))
		writeJSONStatus(w, http.StatusBadRequest, `{"message":"400 Bad request"}`)
		return false
	}
	var token struct {
		Token string `json:"token"`
	}
	if json.Unmarshal(body, &token) != nil || json.Unmarshal(body, v) != nil {
		s.problem(r, "bad JSON")
		writeJSONStatus(w, http.StatusBadRequest, `{"message":"400 Bad request"}`)
		return false
	}
	if token.Token != want {
		s.problem(r, "missing or wrong token")
		writeJSONStatus(w, http.StatusForbidden, `{"message":"403 Forbidden"}`)
		return false
	}
	return true
}

// requestJob answers POST /api/v4/jobs/request with a job, checking the runner token.
func (s *benchServer) requestJob(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Info map[string]any `json:"info"`
	}
	if !s.readJSON(w, r, s.runnerToken, &req) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(s.jobJSON)
}

// updateJob answers PUT /api/v4/jobs/:id, checking the job token and the state.
func (s *benchServer) updateJob(w http.ResponseWriter, r *http.Request) {
	if _, ok := buildID(r); !ok {
		writeJSONStatus(w, http.StatusNotFound, `{"message":"404 Not Found"}`)
		return
	}
	var req struct {
		State string `json:"state"`
	}
	if !s.readJSON(w, r, s.buildToken, &req) {
		return
	}
	switch req.State {
	case "running", "success", "failed":
	default:
		s.problem(r, "state %q", req.State)
		writeJSONStatus(w, http.StatusBadRequest, `{"message":{"state":["is invalid"]}}`)
		return
	}
	w.Header().Set("Job-Status", "running")
	writeJSONStatus(w, http.StatusOK, `"OK"`)
}
