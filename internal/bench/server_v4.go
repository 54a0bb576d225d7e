package main

import (
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"strings"
)

// isV4 tells a request of the runner API v4 from one of the CI API v1, by its path.
func isV4(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/api/v4/") }

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
