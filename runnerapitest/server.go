package runnerapitest

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/runnerapi/runnerapi"
)

// DefaultMaxArtifactSize is the artifacts file size a Server refuses with 413 unless WithMaxArtifactSize says
// otherwise: 100 MB, as on a GitLab coordinator left at its defaults.
const DefaultMaxArtifactSize = 100 << 20

// ErrServerClosed is returned by WaitFinished once the server has been closed.
var ErrServerClosed = errors.New("runnerapitest: server closed")

// Server is a fake GitLab coordinator serving the CI Builds API v1 and the runner API v4 on loopback, from one
// state: a build enqueued once can be taken by a runner of either API. Drive it from a test with
// AddRunner, Enqueue, Cancel and friends; inspect what happened with Build, Trace, Artifact and Requests. All its
// methods are safe for concurrent use.
type Server struct {
	// URL is the coordinator's address, such as "http://127.0.0.1:40123", as runnerapi.NewClient accepts it. It is
	// empty until the server is started.
	URL string

	ts              *httptest.Server
	dir             string // holds uploaded artifacts; removed by Close
	maxArtifactSize int64
	noBuildStatus   int
	logger          *slog.Logger
	closed          chan struct{}
	closeOnce       sync.Once
	faults          faultState
	v4              v4Config

	mu                 sync.Mutex
	runners            map[string]*runner // by token
	lastRunnerID       int64
	projectTokens      map[int64]string
	registrationTokens map[string]bool // the instance's shared-runner registration tokens
	builds             map[int64]*build
	order              []int64 // build IDs in the order they were enqueued: the queue is served oldest first
	lastBuildID        int64
	changed            chan struct{} // closed and replaced whenever a build changes state

	// The request log has its own lock: handlers log their answer while holding mu.
	reqMu    sync.Mutex
	requests []Request
}

// runner is a registered runner.
type runner struct {
	id          int64
	paused      bool
	info        runnerapi.RunnerInfo
	queueValue  string // the X-GitLab-Last-Update value; changes whenever the queue may hold something new
	lastContact time.Time
	description string
	tags        []string
	runUntagged bool
	locked      bool
	projectID   int64 // the project whose runners token registered it; 0 for instance runners

	// The runner API v4's view of it.
	managers        map[string]time.Time // by system_id: the last contact of each runner manager
	features        map[string]bool      // info.features of its last jobs/request or verify that sent any
	tokenExpiresAt  time.Time            // zero: the token does not expire
	accessLevel     string
	maximumTimeout  int64
	maintenanceNote string
}

// public describes r without its token.
func (r *runner) public() Runner {
	return Runner{
		ID: r.id, Paused: r.paused, Info: r.info, LastContact: r.lastContact, Description: r.description,
		Tags: append([]string(nil), r.tags...), RunUntagged: r.runUntagged, Locked: r.locked, ProjectID: r.projectID,
		SystemIDs: r.systemIDs(), Features: maps.Clone(r.features), TokenExpiresAt: r.tokenExpiresAt,
		AccessLevel: r.accessLevel, MaximumTimeout: r.maximumTimeout, MaintenanceNote: r.maintenanceNote,
	}
}

// build is a build and everything the coordinator knows about it.
type build struct {
	b        runnerapi.Build // as enqueued, with defaults filled in
	state    runnerapi.BuildState
	runnerID int64
	trace    []byte
	erased   bool
	updates  int
	artifact *storedArtifact
	deps     []int64  // the builds of this server it depends on
	job      jobState // what the runner API v4 adds
}

// storedArtifact is an artifacts file (or a v4 report) kept in the server's temporary directory.
type storedArtifact struct {
	path string
	info Artifact
}

// Option configures a Server in NewServer or NewUnstartedServer.
type Option func(*Server)

// WithMaxArtifactSize sets the size from which an artifacts upload is refused with 413 (an upload must be smaller
// than it). It also bounds one trace part. A size below 1 keeps DefaultMaxArtifactSize.
func WithMaxArtifactSize(n int64) Option {
	return func(s *Server) {
		if n > 0 {
			s.maxArtifactSize = n
		}
	}
}

// WithLogger logs each request the server answers (method, path, status, injected fault) at debug level to l.
// Records never carry a token or a query string.
func WithLogger(l *slog.Logger) Option {
	return func(s *Server) {
		if l != nil {
			s.logger = l
		}
	}
}

// WithNoBuildStatus fixes the status of register's "no build" answer to 204 or 404. By default it depends on the
// User-Agent, as on GitLab: 204 for user agents like "gitlab-ci-multi-runner 1.2.3 (...)", 404 for any other.
// Other values keep the default.
func WithNoBuildStatus(code int) Option {
	return func(s *Server) {
		if code == http.StatusNoContent || code == http.StatusNotFound {
			s.noBuildStatus = code
		}
	}
}

// NewServer starts and returns a fake coordinator listening on 127.0.0.1. Close it when done.
func NewServer(opts ...Option) *Server {
	s := NewUnstartedServer(opts...)
	s.Start()
	return s
}

// NewUnstartedServer returns a fake coordinator that does not listen yet; call Start or StartTLS. Close it when
// done, started or not.
func NewUnstartedServer(opts ...Option) *Server {
	dir, err := os.MkdirTemp("", "runnerapitest-")
	if err != nil {
		panic(fmt.Sprintf("runnerapitest: creating a temporary directory: %v", err))
	}
	s := &Server{
		dir:                dir,
		maxArtifactSize:    DefaultMaxArtifactSize,
		logger:             slog.New(slog.DiscardHandler),
		closed:             make(chan struct{}),
		runners:            make(map[string]*runner),
		projectTokens:      make(map[int64]string),
		registrationTokens: make(map[string]bool),
		builds:             make(map[int64]*build),
		changed:            make(chan struct{}),
		v4:                 v4Config{traceInterval: defaultTraceUpdateInterval, acceptTimeout: defaultAcceptTimeout},
	}
	for _, opt := range opts {
		if opt != nil {
			opt(s)
		}
	}
	s.faults.reset(0, nil)
	h := s.routes()
	s.ts = httptest.NewUnstartedServer(h)
	s.newV4Listeners(h)
	return s
}

// Start starts a server from NewUnstartedServer.
func (s *Server) Start() {
	s.ts.Start()
	s.URL = s.ts.URL
	s.startV4Listeners(false)
}

// StartTLS starts a server from NewUnstartedServer with TLS; Client returns an HTTP client that trusts it.
func (s *Server) StartTLS() {
	s.ts.StartTLS()
	s.URL = s.ts.URL
	s.startV4Listeners(true)
}

// Client returns an HTTP client configured for the server: plain for Start, trusting its certificate for StartTLS.
func (s *Server) Client() *http.Client {
	return s.ts.Client()
}

// Close shuts the server down, waits for the requests it is answering, and removes its temporary directory.
// WaitFinished calls still waiting return ErrServerClosed.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.ts.Close()
		s.closeV4Listeners()
		_ = os.RemoveAll(s.dir)
	})
}

// Runner describes a runner of the server. It never holds the runner's token.
type Runner struct {
	// ID identifies the runner; BuildInfo.RunnerID names the runner a build was assigned to.
	ID int64
	// Paused runners are answered 404 on v1's register and 204 on v4's jobs/request, and take no build.
	Paused bool
	// Info is what the runner said about itself when it was registered through the API or in its last register
	// call that sent any.
	Info runnerapi.RunnerInfo
	// LastContact is the time of its last register or update call; zero before the first.
	LastContact time.Time
	// Description is the description it was registered with through the API; empty for AddRunner's.
	Description string
	// Tags are the tags of its tag_list, in the order given, without blanks and repeats.
	Tags []string
	// RunUntagged says whether it takes builds without tags: true (GitLab's default) unless it was registered with
	// run_untagged false. The fake matches neither tags nor projects: every runner takes every build.
	RunUntagged bool
	// Locked says whether it was registered locked to its project (GitLab 9.0+); false by default.
	Locked bool
	// ProjectID is the project whose runners token registered it; 0 for instance (shared) runners and for the
	// runners of AddRunner.
	ProjectID int64
	// SystemIDs are the system_id of its runner managers (v4), sorted: one per machine that sent it in
	// jobs/request or verify, less those DELETE /api/v4/runners/managers removed.
	SystemIDs []string
	// Features is the info.features of its last v4 jobs/request or verify that sent any; nil before.
	Features map[string]bool
	// TokenExpiresAt is when its token expires (see WithRunnerTokenLifetime); zero when it does not.
	TokenExpiresAt time.Time
	// AccessLevel ("not_protected" or "ref_protected"), MaximumTimeout (seconds) and MaintenanceNote are what it
	// was registered with through POST /api/v4/runners; AccessLevel is "not_protected" unless said otherwise.
	AccessLevel     string
	MaximumTimeout  int64
	MaintenanceNote string
}

// RunnerOption configures a runner in AddRunner.
type RunnerOption func(*runner)

// RunnerPaused adds the runner paused: it takes no build until ResumeRunner.
func RunnerPaused() RunnerOption {
	return func(r *runner) { r.paused = true }
}

// AddRunner registers a runner with the given token and returns its ID. It panics if the token is empty or
// already in use, which is a mistake in the test.
func (s *Server) AddRunner(token string, opts ...RunnerOption) int64 {
	if token == "" {
		panic("runnerapitest: AddRunner: empty token")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.runners[token]; dup {
		panic("runnerapitest: AddRunner: token already in use")
	}
	s.lastRunnerID++
	r := &runner{id: s.lastRunnerID, runUntagged: true, accessLevel: "not_protected"}
	for _, opt := range opts {
		if opt != nil {
			opt(r)
		}
	}
	s.runners[token] = r
	return r.id
}

// PauseRunner pauses the runner with the given token: register answers it 404.
func (s *Server) PauseRunner(token string) error {
	return s.setPaused(token, true)
}

// ResumeRunner lets a paused runner take builds again.
func (s *Server) ResumeRunner(token string) error {
	return s.setPaused(token, false)
}

func (s *Server) setPaused(token string, paused bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.runners[token]
	if !ok {
		return errors.New("runnerapitest: no runner with that token")
	}
	r.paused = paused
	// A change of the runner is a change of what its queue may answer, as on GitLab.
	r.tick()
	s.notifyLocked() // wakes long-polled job requests
	return nil
}

// Runner returns the runner with the given token.
func (s *Server) Runner(token string) (Runner, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.runners[token]
	if !ok {
		return Runner{}, false
	}
	return r.public(), true
}

// SetProjectRunnersToken sets the runners token of a project, which the trace and artifacts endpoints accept as
// well as the build token for the project's builds, and which registers runners of that project on
// POST /runners/register. An empty token removes it.
func (s *Server) SetProjectRunnersToken(projectID int64, token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if token == "" {
		delete(s.projectTokens, projectID)
		return
	}
	s.projectTokens[projectID] = token
}

// Enqueue adds a build to the queue and returns its ID. Zero fields are filled in: ID (the next free one), Token (a
// random build token), Name and Stage ("test"), Ref ("main"), SHA, BeforeSHA, ProjectID (1), ProjectName
// ("project") and Timeout (3600). Status is ignored: the build is pending, or created while it waits for
// others (see below).
//
// An entry of DependsOnBuilds whose ID names a build of this server is filled in from that build whenever the
// build is handed out (token, status, artifacts file), and the build waits in state created until all such
// builds have finished: then it becomes pending if they all succeeded, and skipped otherwise. Other entries are sent
// as given.
//
// Enqueue panics if the ID is already in use or the build cannot be encoded as JSON, which is a mistake in the test.
func (s *Server) Enqueue(b runnerapi.Build) int64 {
	b = cloneBuild(b)
	s.mu.Lock()
	defer s.mu.Unlock()
	if b.ID == 0 {
		for s.lastBuildID++; s.builds[s.lastBuildID] != nil; s.lastBuildID++ {
		}
		b.ID = s.lastBuildID
	} else if s.builds[b.ID] != nil {
		panic(fmt.Sprintf("runnerapitest: Enqueue: build ID %d already in use", b.ID))
	}
	fillDefaults(&b)
	nb := &build{b: b, state: runnerapi.StatePending}
	for _, d := range b.DependsOnBuilds {
		if s.builds[d.ID] != nil {
			nb.deps = append(nb.deps, d.ID)
		}
	}
	if len(nb.deps) > 0 {
		nb.state = runnerapi.StateCreated
	}
	s.builds[b.ID] = nb
	s.order = append(s.order, b.ID)
	s.releaseDependentsLocked()
	if nb.state == runnerapi.StatePending {
		s.tickAllLocked()
	}
	s.notifyLocked()
	return b.ID
}

// EnqueueCommands enqueues a build with the given name that runs the given script lines, and returns its ID.
func (s *Server) EnqueueCommands(name string, commands ...string) int64 {
	return s.Enqueue(runnerapi.Build{Name: name, Commands: strings.Join(commands, "\n")})
}

// cloneBuild returns a deep copy of b, so the caller's later changes to slices or maps do not reach the server.
func cloneBuild(b runnerapi.Build) runnerapi.Build {
	data, err := json.Marshal(runnerapi.UnredactedBuild(b))
	if err != nil {
		panic(fmt.Sprintf("runnerapitest: build cannot be encoded as JSON: %v", err))
	}
	var out runnerapi.Build
	if err := json.Unmarshal(data, &out); err != nil {
		panic(fmt.Sprintf("runnerapitest: build cannot be decoded from JSON: %v", err))
	}
	return out
}

func fillDefaults(b *runnerapi.Build) {
	if b.Token == "" {
		b.Token = randomHex(10)
	}
	if b.Name == "" {
		b.Name = "test"
	}
	if b.Stage == "" {
		b.Stage = "test"
	}
	if b.Ref == "" {
		b.Ref = "main"
	}
	if b.SHA == "" {
		sum := sha1.Sum([]byte("runnerapitest build " + strconv.FormatInt(b.ID, 10)))
		b.SHA = hex.EncodeToString(sum[:])
	}
	if b.BeforeSHA == "" {
		b.BeforeSHA = strings.Repeat("0", 40)
	}
	if b.ProjectID == 0 {
		b.ProjectID = 1
	}
	if b.ProjectName == "" {
		b.ProjectName = "project"
	}
	if b.Timeout == 0 {
		b.Timeout = 3600
	}
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	p := make([]byte, n)
	_, _ = rand.Read(p)
	return hex.EncodeToString(p)
}

// Cancel cancels a build that has not finished, at once. A running build's v1 runner learns it from the
// Build-Status of its next trace part, and its updates are answered 404; a v4 runner's next trace part or update is
// answered 403 with Job-Status: canceled. CancelGracefully lets a v4 runner run its after_script first.
func (s *Server) Cancel(id int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := s.unfinishedBuildLocked(id)
	if err != nil {
		return err
	}
	s.setStateLocked(b, runnerapi.StateCanceled)
	return nil
}

// unfinishedBuildLocked returns the build with the given ID, or an error when there is none or it has finished.
func (s *Server) unfinishedBuildLocked(id int64) (*build, error) {
	b, ok := s.builds[id]
	if !ok {
		return nil, fmt.Errorf("runnerapitest: no build %d", id)
	}
	if isFinal(b.state) {
		return nil, fmt.Errorf("runnerapitest: build %d is already %s", id, b.state)
	}
	return b, nil
}

// Erase erases a finished build as GitLab's "erase" button does: its trace and artifacts are removed, and trace
// parts and uploads are refused with "403 Forbidden  - Build has been erased!"; its runner's updates get 404, as
// for any build that is not running. A build that has not finished cannot be erased (GitLab's Ci::Build#erasable?
// requires complete?): Erase returns an error for it.
func (s *Server) Erase(id int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.builds[id]
	if !ok {
		return fmt.Errorf("runnerapitest: no build %d", id)
	}
	if !isFinal(b.state) {
		return fmt.Errorf("runnerapitest: build %d is %s: only a finished build can be erased", id, b.state)
	}
	b.erased = true
	b.trace = nil
	s.removeArtifactLocked(b)
	removeReportsLocked(b)
	s.notifyLocked()
	return nil
}

// BuildInfo is a snapshot of a build.
type BuildInfo struct {
	// Build is the build as a runner would be handed it now: Status is its current state, and the artifacts file
	// and the entries of DependsOnBuilds naming this server's builds are current.
	Build runnerapi.Build
	// State is the build's state.
	State runnerapi.BuildState
	// RunnerID is the ID of the runner it was assigned to, or 0.
	RunnerID int64
	// TraceSize is the length of its trace.
	TraceSize int64
	// Updates counts the update (PUT) calls it was answered 200 for.
	Updates int
	// Erased says whether Erase was called on it.
	Erased bool
	// Job is what the runner API v4 adds: zero for a build taken through v1.
	Job JobInfo
}

// Build returns a snapshot of the build with the given ID.
func (s *Server) Build(id int64) (BuildInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.builds[id]
	if !ok {
		return BuildInfo{}, false
	}
	return BuildInfo{
		Build:     cloneBuild(s.presentLocked(b)),
		State:     b.state,
		RunnerID:  b.runnerID,
		TraceSize: int64(len(b.trace)),
		Updates:   b.updates,
		Erased:    b.erased,
		Job:       jobInfo(b),
	}, true
}

// Trace returns a copy of a build's trace, or nil for an unknown build.
func (s *Server) Trace(id int64) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.builds[id]
	if !ok {
		return nil
	}
	return append([]byte{}, b.trace...)
}

// WaitFinished waits until the build has finished (success, failed, canceled or skipped) and returns its final
// state. It returns early with the current state and an error when ctx ends, the build is unknown or the server is
// closed.
func (s *Server) WaitFinished(ctx context.Context, id int64) (runnerapi.BuildState, error) {
	for {
		s.mu.Lock()
		b, ok := s.builds[id]
		var state runnerapi.BuildState
		if ok {
			state = b.state
		}
		changed := s.changed
		s.mu.Unlock()
		switch {
		case !ok:
			return "", fmt.Errorf("runnerapitest: no build %d", id)
		case isFinal(state):
			return state, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return state, fmt.Errorf("runnerapitest: waiting for build %d to finish: %w", id, ctx.Err())
		case <-s.closed:
			return state, ErrServerClosed
		}
	}
}

// Request is one request the server answered, as Requests lists it. It holds no token.
type Request struct {
	// Method and Path are the request's; Path has no query.
	Method string
	Path   string
	// Endpoint is the API endpoint the request was routed to, or "" for an unknown path.
	Endpoint Endpoint
	// Status is the answer's status, or 0 when an injected fault dropped the connection.
	Status int
	// Fault is the fault injected into this request, or "".
	Fault FaultKind
	// TokenInQuery says whether the request carried a token in its URL's query, where proxies log it.
	TokenInQuery bool
	// ContentRange is the Content-Range header as sent, for trace parts; ContentLength is the body's declared
	// length, -1 when unknown.
	ContentRange  string
	ContentLength int64
	// UserAgent is the User-Agent header as sent.
	UserAgent string
}

// Requests returns the requests answered so far, in the order they were answered. A request is listed before any
// byte of its answer is sent, so a client that has its answer finds it here.
func (s *Server) Requests() []Request {
	s.reqMu.Lock()
	defer s.reqMu.Unlock()
	return append([]Request(nil), s.requests...)
}

func (s *Server) recordRequest(r Request) {
	s.reqMu.Lock()
	s.requests = append(s.requests, r)
	s.reqMu.Unlock()
	if s.logger.Enabled(context.Background(), slog.LevelDebug) {
		s.logger.LogAttrs(context.Background(), slog.LevelDebug, "runnerapitest: request",
			slog.String("method", r.Method), slog.String("path", r.Path), slog.Int("status", r.Status),
			slog.String("fault", string(r.Fault)))
	}
}

func isFinal(st runnerapi.BuildState) bool {
	switch st {
	case runnerapi.StateSuccess, runnerapi.StateFailed, runnerapi.StateCanceled, runnerapi.StateSkipped:
		return true
	}
	return false
}

// setStateLocked moves b to st and lets the builds waiting for it go on.
func (s *Server) setStateLocked(b *build, st runnerapi.BuildState) {
	b.state = st
	if isFinal(st) {
		s.releaseDependentsLocked()
	}
	s.notifyLocked()
}

// releaseDependentsLocked moves each created build whose dependencies have all finished to pending, or to skipped
// when one of them did not succeed, until nothing changes (a skipped build may release others).
func (s *Server) releaseDependentsLocked() {
	released := false
	for changed := true; changed; {
		changed = false
		for _, id := range s.order {
			b := s.builds[id]
			if b.state != runnerapi.StateCreated {
				continue
			}
			done, ok := true, true
			for _, d := range b.deps {
				st := s.builds[d].state
				done = done && isFinal(st)
				ok = ok && st == runnerapi.StateSuccess
			}
			if !done {
				continue
			}
			changed = true
			if ok {
				b.state = runnerapi.StatePending
				released = true
			} else {
				b.state = runnerapi.StateSkipped
			}
		}
	}
	if released {
		s.tickAllLocked()
	}
}

// notifyLocked wakes every WaitFinished.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// tickAllLocked changes the queue value of every runner that has one, so their next register searches the queue.
func (s *Server) tickAllLocked() {
	for _, r := range s.runners {
		r.tick()
	}
}

func (r *runner) tick() {
	if r.queueValue != "" {
		r.queueValue = randomHex(16)
	}
}

// presentLocked returns the build as the coordinator sends it now.
func (s *Server) presentLocked(b *build) runnerapi.Build {
	out := b.b
	out.Status = b.state
	if b.artifact != nil {
		out.ArtifactsFile = runnerapi.ArtifactsFile{Filename: b.artifact.info.Filename, Size: b.artifact.info.Size}
		out.ArtifactsExpireAt = b.artifact.info.ExpireAt
	} else {
		out.ArtifactsFile = runnerapi.ArtifactsFile{}
		out.ArtifactsExpireAt = time.Time{}
	}
	deps := make([]runnerapi.DependentBuild, len(b.b.DependsOnBuilds))
	for i, d := range b.b.DependsOnBuilds {
		if db := s.builds[d.ID]; db != nil {
			d = runnerapi.DependentBuild{
				ID: db.b.ID, Ref: db.b.Ref, Tag: db.b.Tag, SHA: db.b.SHA, Status: db.state, Name: db.b.Name,
				Token: db.b.Token, Stage: db.b.Stage, ProjectID: db.b.ProjectID, ProjectName: db.b.ProjectName,
			}
			if db.artifact != nil {
				d.ArtifactsFile = runnerapi.ArtifactsFile{Filename: db.artifact.info.Filename, Size: db.artifact.info.Size}
			}
		}
		deps[i] = d
	}
	out.DependsOnBuilds = deps
	// GitLab sends empty lists, not null.
	if out.Variables == nil {
		out.Variables = []runnerapi.Variable{}
	}
	if out.Credentials == nil {
		out.Credentials = []runnerapi.Credential{}
	}
	return out
}

// Format prints the server as its address: its fields hold the runners' and builds' tokens.
func (s *Server) Format(f fmt.State, _ rune) {
	_, _ = fmt.Fprintf(f, "runnerapitest.Server{%s}", s.URL)
}

// lockBuildForToken finds the build of a trace or artifacts request and checks its build token, from p or the header. On
// success it returns the build with s.mu held; otherwise it answers 404 or 403 and returns nil, s.mu released.
func (s *Server) lockBuildForToken(w http.ResponseWriter, r *http.Request, p params) *build {
	id, ok := pathID(r)
	s.mu.Lock()
	b := s.builds[id]
	switch {
	case !ok || b == nil:
		s.mu.Unlock()
		writeMessage(w, http.StatusNotFound, msgNotFound)
		return nil
	case !s.validBuildTokenLocked(b, buildToken(r, p)):
		s.mu.Unlock()
		writeMessage(w, http.StatusForbidden, msgForbidden)
		return nil
	}
	return b
}

// validBuildTokenLocked reports whether token opens the trace and artifacts endpoints of b: its build token or its
// project's runners token.
func (s *Server) validBuildTokenLocked(b *build, token string) bool {
	if token == "" {
		return false
	}
	if token == b.b.Token {
		return true
	}
	pt, ok := s.projectTokens[b.b.ProjectID]
	return ok && token == pt
}
