package runnerapitest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/runnerapi/runnerapi"
)

// Artifact describes a build's artifacts file.
type Artifact struct {
	// Filename is the name the file was uploaded with.
	Filename string
	// Size is its length in bytes.
	Size int64
	// SHA256 is the hex SHA-256 of its content.
	SHA256 string
	// ExpireIn is the expire_in parameter of the upload, as sent; ExpireAt is when it expires, zero for never.
	ExpireIn string
	ExpireAt time.Time
	// Type and Format are the artifact_type and artifact_format of a v4 upload ("archive" and "zip" by default);
	// empty for a v1 upload and for SetArtifact.
	Type   string
	Format string
}

// Artifact returns the description of a build's artifacts file; false when the build is unknown or has none.
func (s *Server) Artifact(id int64) (Artifact, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.builds[id]
	if !ok || b.artifact == nil {
		return Artifact{}, false
	}
	return b.artifact.info, true
}

// OpenArtifact opens a build's artifacts file for reading. Close the reader when done.
func (s *Server) OpenArtifact(id int64) (io.ReadCloser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.builds[id]
	if !ok {
		return nil, fmt.Errorf("runnerapitest: no build %d", id)
	}
	if b.artifact == nil {
		return nil, fmt.Errorf("runnerapitest: build %d has no artifacts file", id)
	}
	return os.Open(b.artifact.path)
}

// SetArtifact stores content as a build's artifacts file, as if its runner had uploaded it without expire_in, so
// a test can serve downloads without an upload. It replaces any file the build had.
func (s *Server) SetArtifact(id int64, filename string, content io.Reader) (Artifact, error) {
	s.mu.Lock()
	_, ok := s.builds[id]
	s.mu.Unlock()
	if !ok {
		return Artifact{}, fmt.Errorf("runnerapitest: no build %d", id)
	}
	st, tooLarge, err := s.spool(filepath.Base(filename), content)
	if err != nil {
		return Artifact{}, fmt.Errorf("runnerapitest: storing artifacts file: %w", err)
	}
	if tooLarge {
		return Artifact{}, fmt.Errorf("runnerapitest: artifacts file not smaller than %d bytes", s.maxArtifactSize)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.builds[id]
	s.removeArtifactLocked(b)
	b.artifact = st
	return st.info, nil
}

// spool streams content to a new file of the server's directory, hashing it on the way. It stops, removes the file
// and reports tooLarge once content reaches the size limit.
func (s *Server) spool(filename string, content io.Reader) (st *storedArtifact, tooLarge bool, err error) {
	f, err := os.CreateTemp(s.dir, "artifact-")
	if err != nil {
		return nil, false, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(content, s.maxArtifactSize))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n >= s.maxArtifactSize {
		tooLarge = true
	}
	if err != nil || tooLarge {
		_ = os.Remove(f.Name())
		return nil, tooLarge, err
	}
	return &storedArtifact{
		path: f.Name(),
		info: Artifact{Filename: filename, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))},
	}, false, nil
}

func (s *Server) removeArtifactLocked(b *build) {
	if b.artifact != nil {
		_ = os.Remove(b.artifact.path)
		b.artifact = nil
	}
}

// handleUpload serves POST /builds/:id/artifacts: a multipart form whose part "file" is streamed to disk.
//
// The token and the build's state are checked when the file part begins, before it is read, as GitLab's front
// proxy does; a token field after the file part is checked again at the end, since a parameter wins.
func (s *Server) handleUpload(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(r)
	s.mu.Lock()
	b := s.builds[id]
	s.mu.Unlock()
	if !ok || b == nil {
		writeMessage(w, http.StatusNotFound, msgNotFound)
		return
	}
	check := func(formToken string, haveFormToken bool) (int, string) {
		// A field of the form wins over the query, as in Rack's params, and both over the header.
		token := buildToken(r, params{body: url.Values{}, query: r.URL.Query()})
		if haveFormToken {
			token = formToken
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		switch {
		case !s.validBuildTokenLocked(b, token):
			return http.StatusForbidden, msgForbidden
		case b.erased:
			return http.StatusForbidden, msgErased
		case b.state != runnerapi.StateRunning:
			return http.StatusForbidden, msgNotRunning
		}
		return 0, ""
	}
	mr, err := r.MultipartReader()
	if err != nil {
		if status, msg := check("", false); status != 0 {
			writeMessage(w, status, msg)
			return
		}
		writeMessage(w, http.StatusBadRequest, msgMissingFile)
		return
	}

	var (
		formToken, expireIn             string
		haveFormToken, haveFormExpireIn bool
		stored                          *storedArtifact
	)
	defer func() {
		// Whatever was spooled and not kept goes.
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
		switch name := part.FormName(); {
		case name == "file" && part.FileName() != "" && stored == nil:
			if status, msg := check(formToken, haveFormToken); status != 0 {
				writeMessage(w, status, msg)
				return
			}
			st, tooLarge, err := s.spool(part.FileName(), part)
			if tooLarge {
				writeMessage(w, http.StatusRequestEntityTooLarge, msgTooLarge)
				return
			}
			if err != nil {
				writeMessage(w, http.StatusInternalServerError, msgInternalError)
				return
			}
			stored = st
		case name == "token" || name == "expire_in":
			data, err := io.ReadAll(io.LimitReader(part, 4<<10))
			if err != nil {
				writeMessage(w, http.StatusBadRequest, msgBadRequest)
				return
			}
			if name == "token" {
				formToken, haveFormToken = string(data), true
			} else {
				expireIn, haveFormExpireIn = string(data), true
			}
		default:
			_, _ = io.Copy(io.Discard, part)
		}
		_ = part.Close()
	}
	if status, msg := check(formToken, haveFormToken); status != 0 {
		writeMessage(w, status, msg)
		return
	}
	if stored == nil {
		writeMessage(w, http.StatusBadRequest, msgMissingFile)
		return
	}
	if q := r.URL.Query(); !haveFormExpireIn && q.Has("expire_in") {
		// A form field wins over the query, as in Rack's params.
		expireIn = q.Get("expire_in")
	}
	if expireIn != "" {
		// GitLab 9.x sets artifacts_expire_at from ChronicDuration.parse(value)&.seconds&.from_now: a value it cannot
		// read (or reads as zero) parses to nil, and the file is kept without expiry; nothing validates it.
		stored.info.ExpireIn = expireIn
		if d, err := parseExpireIn(expireIn); err == nil && d > 0 {
			stored.info.ExpireAt = time.Now().Add(d).UTC().Truncate(time.Second)
		}
	}

	s.mu.Lock()
	if b.state != runnerapi.StateRunning {
		// Canceled while the file was on its way.
		s.mu.Unlock()
		writeMessage(w, http.StatusForbidden, msgNotRunning)
		return
	}
	s.removeArtifactLocked(b)
	b.artifact, stored = stored, nil
	out := s.presentLocked(b)
	s.mu.Unlock()
	writeJSON(w, http.StatusCreated, runnerapi.UnredactedBuild(out))
}

// handleDownload serves GET /builds/:id/artifacts, with byte ranges.
func (s *Server) handleDownload(w http.ResponseWriter, r *http.Request) {
	p, err := parseParams(r)
	if err != nil {
		badBody(w, err)
		return
	}
	b := s.lockBuildForToken(w, r, p)
	if b == nil {
		return
	}
	if b.artifact == nil {
		s.mu.Unlock()
		writeMessage(w, http.StatusNotFound, msgNotFound)
		return
	}
	// Opened under the lock, the file stays readable even if a new upload or a delete replaces it meanwhile.
	f, err := os.Open(b.artifact.path)
	name := b.artifact.info.Filename
	s.mu.Unlock()
	if err != nil {
		writeMessage(w, http.StatusInternalServerError, msgInternalError)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", "attachment; filename="+name)
	// GitLab's present_file! says so on every download.
	w.Header().Set("Content-Transfer-Encoding", "binary")
	serveStoredFile(w, r, f)
}

// serveStoredFile serves an artifacts file as GitLab does: present_file! hands the file's path to Workhorse
// (X-Sendfile), whose sendfile serves it with http.ServeContent and the file's modification time. So the answer
// carries Last-Modified, the only validator a resumed download can name in If-Range, and no ETag; byte ranges are
// served, and an If-Range that no longer names the file gets the whole file.
func serveStoredFile(w http.ResponseWriter, r *http.Request, f *os.File) {
	var modified time.Time
	if fi, err := f.Stat(); err == nil {
		modified = fi.ModTime()
	}
	http.ServeContent(w, r, "", modified, f)
}

// handleDelete serves DELETE /builds/:id/artifacts.
func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request) {
	// GitLab's own spec deletes with the token in a form body.
	p, err := parseParams(r)
	if err != nil {
		badBody(w, err)
		return
	}
	b := s.lockBuildForToken(w, r, p)
	if b == nil {
		return
	}
	s.removeArtifactLocked(b)
	s.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// expireUnits maps the units expire_in accepts to their length.
var expireUnits = func() map[string]time.Duration {
	const day = 24 * time.Hour
	units := map[string]time.Duration{}
	for length, names := range map[time.Duration][]string{
		time.Second: {"s", "sec", "secs", "second", "seconds"},
		time.Minute: {"m", "min", "mins", "minute", "minutes"},
		time.Hour:   {"h", "hr", "hrs", "hour", "hours"},
		day:         {"d", "day", "days"},
		7 * day:     {"w", "wk", "wks", "week", "weeks"},
		30 * day:    {"mo", "mos", "month", "months"},
		365 * day:   {"y", "yr", "yrs", "year", "years"},
	} {
		for _, n := range names {
			units[n] = length
		}
	}
	return units
}()

var expireTerm = regexp.MustCompile(`^(\d+)\s*([a-z]*)`)

// parseExpireIn reads a duration as GitLab's expire_in takes it: "3600", "30 mins", "7d", "2 weeks", "1 day 2
// hours", "1h30m". A bare number is seconds.
func parseExpireIn(s string) (time.Duration, error) {
	rest := strings.ToLower(strings.TrimSpace(s))
	if rest == "" {
		return 0, errors.New("empty duration")
	}
	var total time.Duration
	for rest != "" {
		m := expireTerm.FindStringSubmatch(rest)
		if m == nil {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		n, err := strconv.ParseInt(m[1], 10, 32)
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		unit := time.Second
		if m[2] != "" {
			u, ok := expireUnits[m[2]]
			if !ok {
				return 0, fmt.Errorf("invalid duration %q: unknown unit %q", s, m[2])
			}
			unit = u
		}
		if time.Duration(n) > (math.MaxInt64-total)/unit {
			return 0, fmt.Errorf("invalid duration %q: too long", s)
		}
		total += time.Duration(n) * unit
		rest = strings.TrimLeft(rest[len(m[0]):], " ,")
		rest = strings.TrimLeft(strings.TrimPrefix(rest, "and "), " ")
	}
	return total, nil
}
