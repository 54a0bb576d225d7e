package runnerapitest

import (
	"net/http"
	"slices"
	"sort"
	"strings"

	"github.com/runnerapi/runnerapi"
)

// msgTokenNotGiven is the 400 of GitLab's required_attributes! for a missing or blank token.
const msgTokenNotGiven = `400 (Bad request) "token" not given`

// AddRegistrationToken adds an instance-wide registration token: POST /runners/register with it creates a shared
// (instance) runner, whose ProjectID is 0. A project's runners token (SetProjectRunnersToken) registers runners
// too. It panics if the token is empty, which is a mistake in the test.
func (s *Server) AddRegistrationToken(token string) {
	if token == "" {
		panic("runnerapitest: AddRegistrationToken: empty token")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.registrationTokens[token] = true
}

// Runners returns every runner of the server, by ID: those of AddRunner and those registered through the API, less
// those deleted through it.
func (s *Server) Runners() []Runner {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Runner, 0, len(s.runners))
	for _, r := range s.runners {
		out = append(out, r.public())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// handleRunnerRegister serves POST /runners/register: create a runner from a registration token and answer its ID
// and new token. As on GitLab, the instance's registration token is tried first, then the projects' runners tokens.
func (s *Server) handleRunnerRegister(w http.ResponseWriter, r *http.Request) {
	p, token, ok := tokenParams(w, r)
	if !ok {
		return
	}
	rn := &runner{
		description: p.get("description"),
		tags:        parseTagList(p.all("tag_list")),
		runUntagged: true,
		info: runnerapi.RunnerInfo{
			Name: p.get("info[name]"), Version: p.get("info[version]"), Revision: p.get("info[revision]"),
			Platform: p.get("info[platform]"), Architecture: p.get("info[architecture]"),
		},
	}
	if v, ok := railsBool(p.get("run_untagged")); ok {
		rn.runUntagged = v
	}
	if v, ok := railsBool(p.get("locked")); ok {
		rn.locked = v
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	switch projectID, ok := s.projectForTokenLocked(token); {
	case s.registrationTokens[token]:
	case ok:
		rn.projectID = projectID
	default:
		writeMessage(w, http.StatusForbidden, msgForbidden)
		return
	}
	if !rn.runUntagged && len(rn.tags) == 0 {
		// GitLab's Ci::Runner refuses to save a runner that can take no build; the API then answers not_found!.
		writeMessage(w, http.StatusNotFound, msgNotFound)
		return
	}
	newToken := s.newRunnerTokenLocked("")
	s.lastRunnerID++
	rn.id = s.lastRunnerID
	s.runners[newToken] = rn
	writeJSON(w, http.StatusCreated, map[string]any{"id": rn.id, "token": newToken})
}

// tokenParams parses the request's parameters and returns them with the token parameter, which the runners calls
// need. It answers 400 and returns false when the body cannot be parsed or the token is blank.
func tokenParams(w http.ResponseWriter, r *http.Request) (params, string, bool) {
	p, err := parseParams(r)
	if err != nil {
		badBody(w, err)
		return params{}, "", false
	}
	token := p.get("token")
	if strings.TrimSpace(token) == "" {
		writeMessage(w, http.StatusBadRequest, msgTokenNotGiven)
		return params{}, "", false
	}
	return p, token, true
}

// projectForTokenLocked returns the project whose runners token is token, the lowest ID if several share it.
func (s *Server) projectForTokenLocked(token string) (int64, bool) {
	var found int64
	ok := false
	for id, t := range s.projectTokens {
		if t == token && (!ok || id < found) {
			found, ok = id, true
		}
	}
	return found, ok
}

// handleRunnerDelete serves DELETE /runners/delete: remove the runner whose token is the token parameter. Its
// token is refused from then on. GitLab answers the removed record; the fake answers its ID and description only.
func (s *Server) handleRunnerDelete(w http.ResponseWriter, r *http.Request) {
	_, token, ok := tokenParams(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	rn := s.runners[token]
	if rn == nil {
		s.mu.Unlock()
		writeMessage(w, http.StatusForbidden, msgForbidden)
		return
	}
	delete(s.runners, token)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"id": rn.id, "description": rn.description})
}

// parseTagList reads tag_list values as acts-as-taggable does: comma-separated names, trimmed, without blanks and
// repeats, in the order given. A JSON array or repeated tag_list[] fields give several values.
func parseTagList(values []string) []string {
	var tags []string
	for _, v := range values {
		for _, t := range strings.Split(v, ",") {
			t = strings.TrimSpace(t)
			if t != "" && !slices.Contains(tags, t) {
				tags = append(tags, t)
			}
		}
	}
	return tags
}

// railsBool casts a parameter to a boolean as ActiveRecord does: "false", "0", "f" and "off" (any case) are false,
// any other non-blank value true; a blank one is unset.
func railsBool(v string) (value, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return false, false
	}
	switch strings.ToLower(v) {
	case "false", "0", "f", "off":
		return false, true
	}
	return true, true
}
