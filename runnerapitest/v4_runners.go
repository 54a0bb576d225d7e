package runnerapitest

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// createdRunnerTokenPrefix starts the token of a runner created in GitLab's UI or with POST /user/runners, which
// gitlab-runner verifies instead of registering. Give AddRunner such a token to model one.
const createdRunnerTokenPrefix = "glrt-"

// accessLevels are the values of a runner's access_level.
var accessLevels = map[string]bool{"not_protected": true, "ref_protected": true}

// tokenExpiry renders a token's expiry as token_expires_at: ISO 8601, or null when it does not expire.
func tokenExpiry(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

// newRunnerTokenLocked returns a token no runner has, of the kind of old (or, for a new runner, of its type as
// GitLab's prefix_for_new_and_legacy_runner: t1_ for an instance runner, t3_ for a project's).
func (s *Server) newRunnerTokenLocked(prefix string) string {
	for {
		t := prefix + randomHex(10)
		if s.runners[t] == nil {
			return t
		}
	}
}

// runnerTokenPrefix returns the prefix of a runner token that a new token of the same kind keeps.
func runnerTokenPrefix(token string) string {
	prefix := ""
	if strings.HasPrefix(token, createdRunnerTokenPrefix) {
		prefix, token = createdRunnerTokenPrefix, token[len(createdRunnerTokenPrefix):]
	}
	for _, p := range []string{"t1_", "t2_", "t3_"} {
		if strings.HasPrefix(token, p) {
			return prefix + p
		}
	}
	return prefix
}

// lockRunnerV4 authenticates a v4 runners or jobs/request call by its token parameter, as GitLab's
// authenticate_runner! does (the RUNNER-TOKEN header is not read): a missing token is 400, an unknown or expired one
// 403. On success it returns the runner and its token with s.mu held; otherwise it answers and returns nil with s.mu
// released.
func (s *Server) lockRunnerV4(w http.ResponseWriter, p params) (*runner, string) {
	if !p.has("token") {
		writeValidationError(w, "token is missing")
		return nil, ""
	}
	token := p.get("token")
	s.mu.Lock()
	rn := s.runners[token]
	if rn == nil || rn.tokenExpired() {
		s.mu.Unlock()
		writeMessage(w, http.StatusForbidden, msgForbidden)
		return nil, ""
	}
	return rn, token
}

// lockRunnerV4Request parses the request's parameters and authenticates it as lockRunnerV4 does, answering a body
// it cannot parse. On success it returns the parameters, the runner and its token with s.mu held.
func (s *Server) lockRunnerV4Request(w http.ResponseWriter, r *http.Request) (params, *runner, string) {
	p, err := parseParams(r)
	if err != nil {
		badBody(w, err)
		return params{}, nil, ""
	}
	rn, token := s.lockRunnerV4(w, p)
	return p, rn, token
}

// tokenExpired reports whether the runner's token has an expiry that has passed.
func (r *runner) tokenExpired() bool {
	return !r.tokenExpiresAt.IsZero() && !time.Now().Before(r.tokenExpiresAt)
}

// newTokenExpiryLocked returns when a token given now expires: zero when the tokens do not expire.
func (s *Server) newTokenExpiryLocked() time.Time {
	if s.v4.tokenLifetime <= 0 {
		return time.Time{}
	}
	return time.Now().Add(s.v4.tokenLifetime).UTC().Truncate(time.Millisecond)
}

// heartbeatV4Locked records what a jobs/request or verify says of the runner: its contact, its runner manager
// (system_id), its info and its info.features.
func heartbeatV4Locked(rn *runner, p params) {
	now := time.Now()
	rn.lastContact = now
	if id := p.get("system_id"); id != "" {
		if rn.managers == nil {
			rn.managers = make(map[string]time.Time)
		}
		rn.managers[id] = now
	}
	if info := runnerInfo(p); info.Name != "" || info.Version != "" {
		rn.info = info
	}
	const prefix = "info[features]["
	var features map[string]bool
	for _, v := range []map[string][]string{p.query, p.body} {
		for k, vals := range v {
			name, ok := strings.CutPrefix(k, prefix)
			if !ok || !strings.HasSuffix(name, "]") || len(vals) == 0 {
				continue
			}
			if features == nil {
				features = make(map[string]bool)
			}
			on, _ := railsBool(vals[0])
			features[strings.TrimSuffix(name, "]")] = on
		}
	}
	if features != nil {
		rn.features = features
	}
}

// systemIDs returns the system_id of the runner's managers, sorted.
func (r *runner) systemIDs() []string {
	if len(r.managers) == 0 {
		return nil
	}
	return sortedKeys(r.managers)
}

// handleRunnersRegister serves POST /api/v4/runners: create a runner from a registration token, as GitLab's
// Ci::Runners::RegisterRunnerService does, and answer 201 {id, token, token_expires_at}.
func (s *Server) handleRunnersRegister(w http.ResponseWriter, r *http.Request) {
	p, err := parseParams(r)
	if err != nil {
		badBody(w, err)
		return
	}
	switch {
	case !p.has("token"):
		writeValidationError(w, "token is missing")
		return
	case p.has("active") && p.has("paused"):
		writeValidationError(w, "active, paused are mutually exclusive")
		return
	case p.has("access_level") && !accessLevels[p.get("access_level")]:
		writeValidationError(w, "access_level does not have a valid value")
		return
	}
	rn := &runner{
		description:     p.get("description"),
		maintenanceNote: p.get("maintenance_note"),
		tags:            parseTagList(p.all("tag_list")),
		runUntagged:     true,
		accessLevel:     "not_protected",
	}
	if rn.maintenanceNote == "" {
		rn.maintenanceNote = p.get("maintainer_note")
	}
	// Current versions keep only the name of the runner's info at registration.
	rn.info.Name = p.get("info[name]")
	if p.has("maximum_timeout") {
		n, err := strconv.ParseInt(p.get("maximum_timeout"), 10, 64)
		if err != nil {
			writeValidationError(w, "maximum_timeout is invalid")
			return
		}
		rn.maximumTimeout = n
	}
	if p.has("access_level") {
		rn.accessLevel = p.get("access_level")
	}
	if v, ok := railsBool(p.get("run_untagged")); ok {
		rn.runUntagged = v
	}
	if v, ok := railsBool(p.get("locked")); ok {
		rn.locked = v
	}
	if v, ok := railsBool(p.get("paused")); ok {
		rn.paused = v
	}
	if v, ok := railsBool(p.get("active")); ok {
		rn.paused = !v
	}

	token := p.get("token")
	s.mu.Lock()
	defer s.mu.Unlock()
	prefix := "t1_"
	switch projectID, ok := s.projectForTokenLocked(token); {
	case s.v4.registrationDisallowed && token != "":
		// Any token, valid or not, once the instance takes none.
		writeMessage(w, http.StatusGone, msgRegistrationGone)
		return
	case token != "" && s.registrationTokens[token]:
	case token != "" && ok:
		rn.projectID, prefix = projectID, "t3_"
	default:
		writeMessage(w, http.StatusForbidden, msgInvalidToken)
		return
	}
	if !rn.runUntagged && len(rn.tags) == 0 {
		// Ci::Runner's validation, answered by render_validation_error!.
		writeJSON(w, http.StatusBadRequest, map[string]any{"message": map[string][]string{
			"tags_list": {"can not be empty when runner is not allowed to pick untagged jobs"}}})
		return
	}
	newToken := s.newRunnerTokenLocked(prefix)
	rn.tokenExpiresAt = s.newTokenExpiryLocked()
	s.lastRunnerID++
	rn.id = s.lastRunnerID
	s.runners[newToken] = rn
	writeJSON(w, http.StatusCreated, map[string]any{
		"id": rn.id, "token": newToken, "token_expires_at": tokenExpiry(rn.tokenExpiresAt)})
}

// handleRunnersVerify serves POST /api/v4/runners/verify: 200 {id, token, token_expires_at} for a valid token,
// recording its runner manager (system_id) and info as GitLab does. This is how gitlab-runner registers a runner
// created in the UI (a glrt- token).
func (s *Server) handleRunnersVerify(w http.ResponseWriter, r *http.Request) {
	p, rn, token := s.lockRunnerV4Request(w, r)
	if rn == nil {
		return
	}
	heartbeatV4Locked(rn, p)
	out := map[string]any{"id": rn.id, "token": token, "token_expires_at": tokenExpiry(rn.tokenExpiresAt)}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

// handleRunnersDelete serves DELETE /api/v4/runners: remove the runner, 204. Its token is refused from then on.
func (s *Server) handleRunnersDelete(w http.ResponseWriter, r *http.Request) {
	_, rn, token := s.lockRunnerV4Request(w, r)
	if rn == nil {
		return
	}
	delete(s.runners, token)
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// handleRunnersManagersDelete serves DELETE /api/v4/runners/managers: remove one runner manager (system_id) and
// keep the runner, 204; 404 when the runner has no such manager.
func (s *Server) handleRunnersManagersDelete(w http.ResponseWriter, r *http.Request) {
	p, err := parseParams(r)
	if err != nil {
		badBody(w, err)
		return
	}
	switch {
	case !p.has("token"):
		writeValidationError(w, "token is missing")
		return
	case !p.has("system_id"):
		writeValidationError(w, "system_id is missing")
		return
	}
	rn, _ := s.lockRunnerV4(w, p)
	if rn == nil {
		return
	}
	id := p.get("system_id")
	if _, ok := rn.managers[id]; !ok {
		s.mu.Unlock()
		writeMessage(w, http.StatusNotFound, msgManagerNotFound)
		return
	}
	delete(rn.managers, id)
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// handleRunnersResetToken serves POST /api/v4/runners/reset_authentication_token: the runner gets a new token of
// the same kind, the old one is refused from then on; 201 {token, token_expires_at}, the expiry only when the new
// token expires.
func (s *Server) handleRunnersResetToken(w http.ResponseWriter, r *http.Request) {
	_, rn, token := s.lockRunnerV4Request(w, r)
	if rn == nil {
		return
	}
	newToken := s.newRunnerTokenLocked(runnerTokenPrefix(token))
	delete(s.runners, token)
	s.runners[newToken] = rn
	rn.tokenExpiresAt = s.newTokenExpiryLocked()
	out := map[string]any{"token": newToken}
	if !rn.tokenExpiresAt.IsZero() {
		out["token_expires_at"] = tokenExpiry(rn.tokenExpiresAt)
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusCreated, out)
}

// handleRunnersRouterDiscovery serves GET /api/v4/runners/router/discovery as an instance without the Job Router
// (KAS) does: 501 for a valid Runner-Token header (the one runner route that reads the header), 403 otherwise.
func (s *Server) handleRunnersRouterDiscovery(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	rn := s.runners[r.Header.Get("Runner-Token")]
	valid := rn != nil && !rn.tokenExpired()
	s.mu.Unlock()
	if !valid {
		writeMessage(w, http.StatusForbidden, msgForbidden)
		return
	}
	writeMessage(w, http.StatusNotImplemented, msgNoJobRouter)
}
