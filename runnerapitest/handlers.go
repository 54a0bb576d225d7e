package runnerapitest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/runnerapi/runnerapi"
)

// Error messages as GitLab's API sends them.
const (
	msgForbidden       = "403 Forbidden"
	msgNotFound        = "404 Not Found"
	msgConflict        = "409 Conflict"
	msgTooLarge        = "413 Request Entity Too Large"
	msgInternalError   = "500 Internal Server Error"
	msgErased          = "403 Forbidden  - Build has been erased!"
	msgNotRunning      = "403 Forbidden  - Build is not running!"
	msgMissingFile     = `400 (Bad request) "Missing artifacts file!" not given`
	msgBadRequest      = "400 Bad Request"
	msgMissingRange    = "400 Missing header Content-Range"
	msgInvalidRange    = "400 Invalid header Content-Range"
	msgRangeNotSatisfy = "416 Range Not Satisfiable"
)

// maxFormBody bounds the body of register and update, whose trace parameter can hold a whole trace.
const maxFormBody = 64 << 20

// multiRunnerUA matches, anywhere in it, a User-Agent that GitLab answers "no build" with 204 rather than 404:
// GitLab's build_not_found! uses this very pattern, unanchored and with its trailing space.
var multiRunnerUA = regexp.MustCompile(`gitlab-ci-multi-runner \d+\.\d+\.\d+(~beta\.\d+\.g[0-9a-f]+)? `)

// contentRange is the only form of Content-Range the trace endpoint accepts: START-END in decimal.
var contentRange = regexp.MustCompile(`^(\d+)-(\d+)$`)

// routes returns the server's handler: each endpoint wrapped by the request log and fault injection.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	// GitLab's API declares format :json, so Grape appends "(.json)" to every route's path, which
	// gitlab-ci-multi-runner uses: register.json, :id.json, even trace.txt.json. The update route's {id} segment
	// takes the suffix itself (see pathID).
	route := func(method, path string, ep Endpoint, h http.HandlerFunc) {
		mux.Handle(method+" "+path, s.endpoint(ep, h))
		if !strings.HasSuffix(path, "}") {
			mux.Handle(method+" "+path+".json", s.endpoint(ep, h))
		}
	}
	const builds, runners = "/ci/api/v1/builds", "/ci/api/v1/runners"
	route(http.MethodPost, builds+"/register", EndpointRegister, s.handleRegister)
	route(http.MethodPut, builds+"/{id}", EndpointUpdate, s.handleUpdate)
	route(http.MethodPatch, builds+"/{id}/trace.txt", EndpointTrace, s.handleTrace)
	route(http.MethodPost, builds+"/{id}/artifacts", EndpointUpload, s.handleUpload)
	route(http.MethodGet, builds+"/{id}/artifacts", EndpointDownload, s.handleDownload)
	route(http.MethodDelete, builds+"/{id}/artifacts", EndpointDelete, s.handleDelete)
	route(http.MethodPost, runners+"/register", EndpointRunnerRegister, s.handleRunnerRegister)
	route(http.MethodDelete, runners+"/delete", EndpointRunnerDelete, s.handleRunnerDelete)
	s.mountV4(mux)
	mux.Handle("/", s.endpoint("", notRouted))
	return mux
}

// notRouted answers a path no endpoint serves as GitLab does. The CI API has no catch-all route: Grape cascades the
// request to Rails, which answers its HTML 404 page. Under /api, GitLab's API catch-all answers error!, which Grape
// renders {"error":"404 Not Found"}. Neither is the {"message":...} of the API's own not_found!, so a client with a
// wrong base URL can tell them from "no build".
func notRouted(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/api/") {
		writeError(w, http.StatusNotFound, msgNotFound)
		return
	}
	const page = "<!DOCTYPE html>\n<html>\n<head><title>Not Found (404)</title></head>\n<body><h1>404</h1>" +
		"<p>The page could not be found.</p></body>\n</html>\n"
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(page)))
	w.WriteHeader(http.StatusNotFound)
	_, _ = io.WriteString(w, page)
}

// writeJSON answers status with v encoded as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		status, data = http.StatusInternalServerError, []byte(`{"message":"500 Internal Server Error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(status)
	_, _ = w.Write(data)
}

// writeMessage answers with GitLab's usual error body, {"message": msg}.
func writeMessage(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"message": msg})
}

// writeError answers with the trace endpoint's error body, {"error": msg}.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// params are a request's parameters: those of its body (a form, a multipart form or a JSON object, whose nested
// objects are flattened to "outer[inner]" keys as Rails does) win over those of its query.
type params struct {
	body  url.Values
	query url.Values
}

func (p params) get(key string) string {
	if v, ok := p.body[key]; ok && len(v) > 0 {
		return v[0]
	}
	return p.query.Get(key)
}

func (p params) has(key string) bool {
	return p.body.Has(key) || p.query.Has(key)
}

// all returns every value of key, and of key[] as Rails names a list in a form: the body's if it has any, else
// the query's.
func (p params) all(key string) []string {
	for _, v := range []url.Values{p.body, p.query} {
		if out := append(append([]string(nil), v[key]...), v[key+"[]"]...); len(out) > 0 {
			return out
		}
	}
	return nil
}

// errBodyTooLarge marks a form body above maxFormBody.
var errBodyTooLarge = errors.New("body too large")

// Rack's bounds on a form's parameters (Rack::Utils.param_depth_limit and key_space_limit), applied to the keys a
// JSON body is flattened into: keys grow with the depth, and without a bound a body of a few hundred KiB made keys
// of hundreds of MiB.
const (
	maxParamDepth    = 100
	maxParamKeySpace = 64 << 10
)

// errParamsTooLarge marks a JSON body past those bounds; it is answered 400, as Rack answers such a form.
var errParamsTooLarge = errors.New("parameters nested too deep or with too long keys")

// parseParams reads the parameters of a register or update request.
func parseParams(r *http.Request) (params, error) {
	p := params{body: url.Values{}, query: r.URL.Query()}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "" && r.Method == http.MethodPost {
		// Rack::Request#form_data? reads the body of a POST without a Content-Type as a form.
		mt = "application/x-www-form-urlencoded"
	}
	switch mt {
	case "application/x-www-form-urlencoded", "application/json":
		data, err := io.ReadAll(io.LimitReader(r.Body, maxFormBody+1))
		if err != nil {
			return p, err
		}
		if len(data) > maxFormBody {
			return p, errBodyTooLarge
		}
		if mt == "application/json" {
			if len(data) == 0 {
				// Grape parses a body only when it is not empty: the query and headers still count.
				return p, nil
			}
			var obj map[string]any
			dec := json.NewDecoder(bytes.NewReader(data))
			dec.UseNumber()
			if err := dec.Decode(&obj); err != nil {
				return p, err
			}
			space := maxParamKeySpace
			if !flattenJSON(p.body, "", obj, 0, &space) {
				return p, errParamsTooLarge
			}
			return p, nil
		}
		v, err := url.ParseQuery(string(data))
		if err != nil {
			return p, err
		}
		p.body = v
	case "multipart/form-data":
		r.Body = http.MaxBytesReader(nil, r.Body, maxFormBody)
		if err := r.ParseMultipartForm(1 << 20); err != nil {
			return p, err
		}
		defer r.MultipartForm.RemoveAll()
		p.body = url.Values(r.MultipartForm.Value)
	}
	return p, nil
}

// flattenJSON adds the scalar values of obj to v, naming nested keys "outer[inner]". It reports false, having
// stopped, when obj nests deeper than maxParamDepth or its keys would take more than *space bytes.
func flattenJSON(v url.Values, prefix string, obj map[string]any, depth int, space *int) bool {
	if depth >= maxParamDepth {
		return false
	}
	for k, val := range obj {
		key := k
		if prefix != "" {
			key = prefix + "[" + k + "]"
		}
		if *space -= len(key); *space < 0 {
			return false
		}
		switch x := val.(type) {
		case nil:
		case string:
			v.Set(key, x)
		case json.Number:
			v.Set(key, x.String())
		case bool:
			v.Set(key, strconv.FormatBool(x))
		case map[string]any:
			if !flattenJSON(v, key, x, depth+1, space) {
				return false
			}
		case []any:
			if !addScalars(v, key, x) {
				data, _ := json.Marshal(x)
				v.Set(key, string(data))
			}
		default:
			data, _ := json.Marshal(x)
			v.Set(key, string(data))
		}
	}
	return true
}

// addScalars adds the elements of list to v under key when they are all strings, numbers or booleans, as a list
// parameter; it reports false, adding nothing, otherwise.
func addScalars(v url.Values, key string, list []any) bool {
	values := make([]string, 0, len(list))
	for _, e := range list {
		switch x := e.(type) {
		case string:
			values = append(values, x)
		case json.Number:
			values = append(values, x.String())
		case bool:
			values = append(values, strconv.FormatBool(x))
		default:
			return false
		}
	}
	v[key] = values
	return true
}

// pathID returns the build ID of the path, or false when it is not a number. On the update route, whose {id}
// segment ends the path, a .json suffix is the format, not part of the ID.
func pathID(r *http.Request) (int64, bool) {
	raw := r.PathValue("id")
	if strings.HasSuffix(r.Pattern, "{id}") {
		raw = strings.TrimSuffix(raw, ".json")
	}
	id, err := strconv.ParseInt(raw, 10, 64)
	return id, err == nil
}

// buildToken returns the build token a trace or artifacts request carries, as GitLab's
// params[:token] || env["HTTP_BUILD_TOKEN"]: a token parameter, even an empty one, wins over the BUILD-TOKEN
// header. p holds the request's parameters; the trace endpoint, whose body is the part, has only its query's.
func buildToken(r *http.Request, p params) string {
	if p.has("token") {
		return p.get("token")
	}
	return r.Header.Get("BUILD-TOKEN")
}

// handleRegister serves POST /builds/register: hand the oldest pending build to the runner.
func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request) {
	p, err := parseParams(r)
	if err != nil {
		badBody(w, err)
		return
	}
	s.mu.Lock()
	rn := s.runners[p.get("token")]
	if rn == nil {
		s.mu.Unlock()
		writeMessage(w, http.StatusForbidden, msgForbidden)
		return
	}
	if rn.paused {
		s.mu.Unlock()
		writeMessage(w, http.StatusNotFound, msgNotFound)
		return
	}
	rn.lastContact = time.Now()
	info := runnerapi.RunnerInfo{
		Name: p.get("info[name]"), Version: p.get("info[version]"), Revision: p.get("info[revision]"),
		Platform: p.get("info[platform]"), Architecture: p.get("info[architecture]"),
	}
	if info != (runnerapi.RunnerInfo{}) {
		rn.info = info
	}
	if last := p.get("last_update"); last != "" && last == rn.queueValue {
		// Nothing changed since the runner last asked: answer at once, without searching the queue.
		s.mu.Unlock()
		s.noBuild(w, r, last)
		return
	}
	if rn.queueValue == "" {
		rn.queueValue = randomHex(16)
	}
	value := rn.queueValue
	found := s.firstPendingLocked()
	if found == nil {
		s.mu.Unlock()
		s.noBuild(w, r, value)
		return
	}
	found.runnerID = rn.id
	s.setStateLocked(found, runnerapi.StateRunning)
	out := s.presentLocked(found)
	s.mu.Unlock()
	// The runner needs the build's secrets: its token, its clone URL's password, its variables.
	writeJSON(w, http.StatusCreated, runnerapi.UnredactedBuild(out))
}

// firstPendingLocked returns the pending build that came first, or nil: the one a runner asking now takes.
func (s *Server) firstPendingLocked() *build {
	for _, id := range s.order {
		if b := s.builds[id]; b.state == runnerapi.StatePending {
			return b
		}
	}
	return nil
}

// noBuild answers register's "no build", with the runner's queue value for long polling.
func (s *Server) noBuild(w http.ResponseWriter, r *http.Request, queueValue string) {
	w.Header().Set("X-GitLab-Last-Update", queueValue)
	status := s.noBuildStatus
	if status == 0 {
		status = http.StatusNotFound
		if multiRunnerUA.MatchString(r.UserAgent()) {
			status = http.StatusNoContent
		}
	}
	if status == http.StatusNoContent {
		w.WriteHeader(status)
		return
	}
	writeMessage(w, status, msgNotFound)
}

func badBody(w http.ResponseWriter, err error) {
	var mbe *http.MaxBytesError
	if errors.Is(err, errBodyTooLarge) || errors.As(err, &mbe) {
		writeMessage(w, http.StatusRequestEntityTooLarge, msgTooLarge)
		return
	}
	writeMessage(w, http.StatusBadRequest, msgBadRequest)
}

// handleUpdate serves PUT /builds/:id: the runner reports a build's state and, optionally, its whole trace.
func (s *Server) handleUpdate(w http.ResponseWriter, r *http.Request) {
	p, err := parseParams(r)
	if err != nil {
		badBody(w, err)
		return
	}
	status, body := s.applyUpdate(r, p)
	writeJSON(w, status, body)
}

// applyUpdate applies an update and returns the answer, which is written once the lock is released.
func (s *Server) applyUpdate(r *http.Request, p params) (int, any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rn := s.runners[p.get("token")]
	if rn == nil {
		return http.StatusForbidden, map[string]string{"message": msgForbidden}
	}
	rn.lastContact = time.Now()
	id, ok := pathID(r)
	b := s.builds[id]
	// Only running builds are found (an erased build has finished: Ci::Build#erasable? requires complete?).
	if !ok || b == nil || b.runnerID != rn.id || b.state != runnerapi.StateRunning {
		return http.StatusNotFound, map[string]string{"message": msgNotFound}
	}
	b.updates++
	if p.has("trace") {
		b.trace = []byte(p.get("trace"))
	}
	switch st := runnerapi.BuildState(p.get("state")); st {
	case runnerapi.StateSuccess, runnerapi.StateFailed:
		s.setStateLocked(b, st)
		return http.StatusOK, true
	}
	s.notifyLocked()
	return http.StatusOK, nil
}

// handleTrace serves PATCH /builds/:id/trace.txt: append the body to the trace if it starts where the trace ends.
func (s *Server) handleTrace(w http.ResponseWriter, r *http.Request) {
	// The body is the part, never parameters: only the query can hold a token parameter.
	b := s.lockBuildForToken(w, r, params{body: url.Values{}, query: r.URL.Query()})
	if b == nil {
		return
	}
	if b.erased {
		s.mu.Unlock()
		writeMessage(w, http.StatusForbidden, msgErased)
		return
	}
	s.mu.Unlock()

	start, _, part, ok := s.readTracePart(w, r, writeError)
	if !ok {
		return
	}

	s.mu.Lock()
	n := int64(len(b.trace))
	if start != n {
		s.mu.Unlock()
		// GitLab's error! passes the Range header alone: a 416 says nothing of the build's status.
		w.Header().Set("Range", fmt.Sprintf("0-%d", n))
		writeError(w, http.StatusRequestedRangeNotSatisfiable, msgRangeNotSatisfy)
		return
	}
	if la, _ := r.Context().Value(lateApplyKey{}).(*lateApply); la != nil {
		n, state, waiting := s.applyPartLate(r, la, b, func() {
			if b.erased {
				// Erasing removed the trace file: append_trace, finding none to truncate, creates it with the part.
				b.trace = append([]byte(nil), part...)
			} else {
				b.trace = truncateAppend(b.trace, start, part)
			}
		})
		if waiting {
			answerTracePart(w, n, state)
		}
		return
	}
	b.trace = append(b.trace, part...)
	n = int64(len(b.trace))
	state := b.state
	s.mu.Unlock()
	answerTracePart(w, n, state)
}

// readTracePart reads a trace part: the START and END of its Content-Range (-1 for a number too large to parse,
// beyond any trace) and its body. When the request is bad it answers and returns false; writeRangeError writes the
// 400 of a Content-Range that is missing or not START-END, in the body each API version gives it.
func (s *Server) readTracePart(w http.ResponseWriter, r *http.Request, writeRangeError func(http.ResponseWriter, int, string)) (start, end int64, part []byte, ok bool) {
	cr, present := r.Header["Content-Range"]
	if !present {
		writeRangeError(w, http.StatusBadRequest, msgMissingRange)
		return 0, 0, nil, false
	}
	m := contentRange.FindStringSubmatch(cr[0])
	if len(cr) != 1 || m == nil {
		// Stricter than GitLab, which reads any leading digits: a client sending another form is caught here.
		writeRangeError(w, http.StatusBadRequest, msgInvalidRange)
		return 0, 0, nil, false
	}
	start, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		start = -1 // beyond any trace: answered 416
	}
	end, err = strconv.ParseInt(m[2], 10, 64)
	if err != nil {
		end = -1
	}
	part, err = io.ReadAll(io.LimitReader(r.Body, s.maxArtifactSize+1))
	if err != nil {
		writeMessage(w, http.StatusBadRequest, msgBadRequest)
		return 0, 0, nil, false
	}
	if int64(len(part)) > s.maxArtifactSize {
		writeMessage(w, http.StatusRequestEntityTooLarge, msgTooLarge)
		return 0, 0, nil, false
	}
	return start, end, part, true
}

// applyPartLate applies a trace part as fault injection's late apply asks: it holds the request with s.mu released,
// then applies the part with apply under s.mu, and returns the trace's length and the build's state after, and
// whether the client still waits for the answer (la is told when not). s.mu is held on entry, released on return.
func (s *Server) applyPartLate(r *http.Request, la *lateApply, b *build, apply func()) (int64, runnerapi.BuildState, bool) {
	s.mu.Unlock()
	la.injected()
	waiting := la.hold(r.Context(), s.closed)
	s.mu.Lock()
	apply()
	n, state := int64(len(b.trace)), b.state
	s.mu.Unlock()
	if !waiting {
		la.abandoned()
	}
	return n, state, waiting
}

// answerTracePart answers an appended part: the trace's length and the build's status.
func answerTracePart(w http.ResponseWriter, length int64, state runnerapi.BuildState) {
	w.Header().Set("Range", fmt.Sprintf("0-%d", length))
	w.Header().Set("Build-Status", string(state))
	w.WriteHeader(http.StatusAccepted)
}

// truncateAppend does what GitLab 8.x's append_trace does to the trace file: truncate it to offset (File.truncate
// pads a shorter file with zero bytes) and append part.
func truncateAppend(trace []byte, offset int64, part []byte) []byte {
	if int64(len(trace)) >= offset {
		trace = trace[:offset]
	} else {
		trace = append(trace, make([]byte, offset-int64(len(trace)))...)
	}
	return append(trace, part...)
}
