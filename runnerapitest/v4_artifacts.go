package runnerapitest

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// artifactTypes are the artifact_type values GitLab's Ci::JobArtifact.file_types accepts.
var artifactTypes = map[string]bool{
	"archive": true, "metadata": true, "trace": true, "junit": true, "sast": true, "dependency_scanning": true,
	"container_scanning": true, "dast": true, "codequality": true, "license_scanning": true, "performance": true,
	"metrics": true, "metrics_referee": true, "network_referee": true, "lsif": true, "dotenv": true,
	"cobertura": true, "terraform": true, "accessibility": true, "cluster_applications": true,
	"secret_detection": true, "requirements": true, "coverage_fuzzing": true, "browser_performance": true,
	"load_performance": true, "api_fuzzing": true, "cluster_image_scanning": true, "cyclonedx": true,
	"requirements_v2": true, "annotations": true, "repository_xray": true, "jacoco": true,
}

// artifactFormats are the artifact_format values of Ci::JobArtifact.file_formats.
var artifactFormats = map[string]bool{"raw": true, "zip": true, "gzip": true}

// WithObjectStorage keeps artifacts in a fake object storage, served on a listener of its own: a v4 download with
// direct_download=true is answered 302 to a signed URL there, as GitLab does with direct downloads enabled. The
// object storage refuses, with 403 and an S3-like XML body, any request that carries a token (a JOB-TOKEN,
// PRIVATE-TOKEN or Authorization header, or a token parameter), so a client that follows the redirect with its
// credentials fails loudly; its requests are listed by Requests as EndpointObjectStorage. Without
// direct_download the file is served from the API as with local storage.
func WithObjectStorage() Option {
	return func(s *Server) { s.v4.objectStorage = true }
}

// objectStorage is the fake object storage of WithObjectStorage: signed keys for files of the server's directory.
type objectStorage struct {
	ts   *httptest.Server
	mu   sync.Mutex
	keys map[string]signedObject // by key, the path segment of a signed URL
}

// signedObject is what a signed URL gives access to.
type signedObject struct {
	path     string
	filename string
}

// WithUploadRedirect answers every v4 artifacts upload that reaches the server's URL with 307 and a Location on a
// second listener (UploadURL) that serves the whole API, as a GitLab whose uploads go through another host may:
// gitlab-runner takes the scheme and host of the Location as its new base URL and sends the upload again there.
func WithUploadRedirect() Option {
	return func(s *Server) { s.v4.uploadRedirect = true }
}

// uploadHostKey marks, in a request's context, a request that reached the upload listener of WithUploadRedirect.
type uploadHostKey struct{}

// UploadURL returns the address of the upload listener of WithUploadRedirect, "" without it.
func (s *Server) UploadURL() string {
	if s.v4.uploadHost == nil {
		return ""
	}
	return s.v4.uploadHost.URL
}

// newV4Listeners prepares the listeners the options ask for beside the API's: the object storage and the upload
// host, which serves h as the API's own listener does.
func (s *Server) newV4Listeners(h http.Handler) {
	if s.v4.uploadRedirect {
		s.v4.uploadHost = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), uploadHostKey{}, true)))
		}))
	}
	if !s.v4.objectStorage {
		return
	}
	st := &objectStorage{keys: make(map[string]signedObject)}
	mux := http.NewServeMux()
	mux.Handle("GET /artifacts/{key}", s.endpoint(EndpointObjectStorage, st.serve))
	mux.Handle("/", s.endpoint("", func(w http.ResponseWriter, _ *http.Request) { writeStorageError(w, http.StatusNotFound, "NoSuchKey") }))
	st.ts = httptest.NewUnstartedServer(mux)
	s.v4.store = st
}

func (s *Server) startV4Listeners(tls bool) {
	for _, ts := range s.v4Listeners() {
		if tls {
			ts.StartTLS()
		} else {
			ts.Start()
		}
	}
}

func (s *Server) closeV4Listeners() {
	for _, ts := range s.v4Listeners() {
		ts.Close()
	}
}

func (s *Server) v4Listeners() []*httptest.Server {
	var out []*httptest.Server
	if s.v4.store != nil {
		out = append(out, s.v4.store.ts)
	}
	if s.v4.uploadHost != nil {
		out = append(out, s.v4.uploadHost)
	}
	return out
}

// ObjectStorageURL returns the address of the object storage of WithObjectStorage, "" without it.
func (s *Server) ObjectStorageURL() string {
	if s.v4.store == nil {
		return ""
	}
	return s.v4.store.ts.URL
}

// sign returns a signed URL for a stored file.
func (st *objectStorage) sign(a *storedArtifact) string {
	key := randomHex(16)
	st.mu.Lock()
	st.keys[key] = signedObject{path: a.path, filename: a.info.Filename}
	st.mu.Unlock()
	return st.ts.URL + "/artifacts/" + key + "?X-Amz-Expires=3600&X-Amz-Signature=" + randomHex(32)
}

// serve answers a GET of a signed URL, with byte ranges; never one carrying a token.
func (st *objectStorage) serve(w http.ResponseWriter, r *http.Request) {
	h := r.Header
	if h.Get("JOB-TOKEN") != "" || h.Get("PRIVATE-TOKEN") != "" || h.Get("Authorization") != "" ||
		r.URL.Query().Has("token") {
		writeStorageError(w, http.StatusForbidden, "AccessDenied")
		return
	}
	st.mu.Lock()
	obj, ok := st.keys[r.PathValue("key")]
	st.mu.Unlock()
	if !ok || !r.URL.Query().Has("X-Amz-Signature") {
		writeStorageError(w, http.StatusForbidden, "SignatureDoesNotMatch")
		return
	}
	f, err := os.Open(obj.path)
	if err != nil {
		writeStorageError(w, http.StatusNotFound, "NoSuchKey")
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, "", time.Time{}, f)
}

// writeStorageError answers as S3 does, in XML.
func writeStorageError(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n<Error><Code>"+code+"</Code><Message>"+
		http.StatusText(status)+"</Message></Error>\n")
}

// removeReportsLocked removes the v4 uploads of b other than the archive.
func removeReportsLocked(b *build) {
	for t, st := range b.job.reports {
		_ = os.Remove(st.path)
		delete(b.job.reports, t)
	}
}

// JobArtifact describes the upload of the given artifact_type ("archive", "junit", ...) of a job; false when it
// has none. The archive is the build's artifacts file, the one Artifact describes.
func (s *Server) JobArtifact(id int64, artifactType string) (Artifact, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.builds[id]
	if !ok {
		return Artifact{}, false
	}
	if artifactType == "archive" {
		if b.artifact == nil {
			return Artifact{}, false
		}
		return b.artifact.info, true
	}
	st, ok := b.job.reports[artifactType]
	if !ok {
		return Artifact{}, false
	}
	return st.info, true
}

// OpenJobArtifact opens the upload of the given artifact_type of a job for reading. Close the reader when done.
func (s *Server) OpenJobArtifact(id int64, artifactType string) (io.ReadCloser, error) {
	if artifactType == "archive" {
		return s.OpenArtifact(id)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.builds[id]
	if !ok {
		return nil, errors.New("runnerapitest: no such build")
	}
	st, ok := b.job.reports[artifactType]
	if !ok {
		return nil, errors.New("runnerapitest: the job has no artifact of that type")
	}
	return os.Open(st.path)
}

// handleJobArtifactsUpload serves POST /api/v4/jobs/:id/artifacts: one multipart file part "file" streamed to
// disk, kept by its artifact_type. The job token (query or JOB-TOKEN header) and the job's state are checked, and a
// declared length not below the limit refused 413, before any byte of the body is read, as Workhorse's authorize
// step does.
func (s *Server) handleJobArtifactsUpload(w http.ResponseWriter, r *http.Request) {
	if s.v4.uploadHost != nil && r.Context().Value(uploadHostKey{}) == nil {
		http.Redirect(w, r, s.v4.uploadHost.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
		return
	}
	q := r.URL.Query()
	artifactType, format := "archive", "zip"
	if q.Has("artifact_type") {
		artifactType = q.Get("artifact_type")
	}
	if q.Has("artifact_format") {
		format = q.Get("artifact_format")
	}
	switch {
	case !artifactTypes[artifactType]:
		writeValidationError(w, "artifact_type does not have a valid value")
		return
	case !artifactFormats[format]:
		writeValidationError(w, "artifact_format does not have a valid value")
		return
	}
	b := s.lockJob(w, r, jobToken(r, params{body: url.Values{}, query: q}), true)
	if b == nil {
		return
	}
	s.mu.Unlock()
	if r.ContentLength >= s.maxArtifactSize {
		writeMessage(w, http.StatusRequestEntityTooLarge, msgArtifactTooBig)
		return
	}
	var expireAt time.Time
	if expireIn := q.Get("expire_in"); expireIn != "" {
		d, err := parseExpireIn(expireIn)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]any{"message": map[string][]string{"expire_in": {"is invalid"}}})
			return
		}
		expireAt = time.Now().Add(d).UTC().Truncate(time.Second)
	}
	mr, err := r.MultipartReader()
	if err != nil {
		writeValidationError(w, "file is missing")
		return
	}
	var stored *storedArtifact
	defer func() {
		if stored != nil {
			_ = os.Remove(stored.path)
		}
	}()
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			writeMessage(w, http.StatusBadRequest, msgBadRequest)
			return
		}
		if part.FileName() != "" && (part.FormName() != "file" || stored != nil) {
			// Workhorse takes exactly one file, named file.
			writeMessage(w, http.StatusBadRequest, msgBadRequest)
			return
		}
		if part.FormName() == "file" && part.FileName() != "" {
			st, tooLarge, err := s.spool(filepath.Base(part.FileName()), part)
			if tooLarge {
				writeMessage(w, http.StatusRequestEntityTooLarge, msgArtifactTooBig)
				return
			}
			if err != nil {
				writeMessage(w, http.StatusInternalServerError, msgInternalError)
				return
			}
			stored = st
		} else {
			_, _ = io.Copy(io.Discard, part)
		}
		_ = part.Close()
	}
	if stored == nil {
		writeValidationError(w, "file is missing")
		return
	}
	stored.info.Type, stored.info.Format = artifactType, format
	stored.info.ExpireIn, stored.info.ExpireAt = q.Get("expire_in"), expireAt

	s.mu.Lock()
	defer s.mu.Unlock()
	if !executing(b.state) {
		// Canceled while the file was on its way.
		w.Header().Set("Job-Status", string(b.state))
		writeMessage(w, http.StatusForbidden, msgJobNotProcessing)
		return
	}
	var existing *storedArtifact
	if artifactType == "archive" {
		existing = b.artifact
	} else {
		existing = b.job.reports[artifactType]
	}
	if existing != nil {
		if existing.info.SHA256 != stored.info.SHA256 {
			writeMessage(w, http.StatusBadRequest, msgArtifactExists)
			return
		}
		// The same file again: GitLab answers 201 and keeps the first.
		writeStatusBody(w, http.StatusCreated)
		return
	}
	if artifactType == "archive" {
		b.artifact = stored
	} else {
		if b.job.reports == nil {
			b.job.reports = make(map[string]*storedArtifact)
		}
		b.job.reports[artifactType] = stored
	}
	stored = nil
	s.notifyLocked()
	writeStatusBody(w, http.StatusCreated)
}

// handleJobArtifactsDownload serves GET /api/v4/jobs/:id/artifacts: the archive of job :id, for its own job token
// (whatever its state) or the token of an executing job of the same project (a dependent job's, as
// dependencies[].token is), with byte ranges; or, with WithObjectStorage and direct_download=true, a 302 to a
// signed URL.
func (s *Server) handleJobArtifactsDownload(w http.ResponseWriter, r *http.Request) {
	p, err := parseParams(r)
	if err != nil {
		badBody(w, err)
		return
	}
	token := jobToken(r, p)
	id, ok := pathID(r)
	s.mu.Lock()
	b := s.builds[id]
	if !ok || b == nil {
		s.mu.Unlock()
		writeMessage(w, http.StatusNotFound, msgNotFound)
		return
	}
	if !s.mayDownloadLocked(b, token) {
		s.mu.Unlock()
		writeMessage(w, http.StatusForbidden, msgForbidden)
		return
	}
	a := b.artifact
	if a == nil {
		s.mu.Unlock()
		writeMessage(w, http.StatusNotFound, msgNotFound)
		return
	}
	direct, _ := railsBool(p.get("direct_download"))
	if direct && s.v4.store != nil {
		location := s.v4.store.sign(a)
		s.mu.Unlock()
		http.Redirect(w, r, location, http.StatusFound)
		return
	}
	f, err := os.Open(a.path)
	name := a.info.Filename
	s.mu.Unlock()
	if err != nil {
		writeMessage(w, http.StatusInternalServerError, msgInternalError)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"; filename*=UTF-8''`+url.PathEscape(name))
	serveStoredFile(w, r, f)
}

// mayDownloadLocked reports whether token may download b's artifacts: b's own job token, or that of an executing
// job of b's project.
func (s *Server) mayDownloadLocked(b *build, token string) bool {
	if token == "" {
		return false
	}
	if token == b.b.Token {
		return true
	}
	for _, other := range s.builds {
		if other.b.Token == token {
			return executing(other.state) && other.b.ProjectID == b.b.ProjectID && !other.erased
		}
	}
	return false
}
