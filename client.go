package runnerapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Version is the SDK's version, sent in the default User-Agent.
const Version = "0.1.0"

// DefaultUserAgent is the User-Agent sent unless WithUserAgent says otherwise.
const DefaultUserAgent = "runnerapi/" + Version + " (+https://github.com/runnerapi/runnerapi)"

// DefaultTimeout bounds each attempt of a call whose request and answer are small (register, update, delete, a
// trace part) unless WithTimeout says otherwise. Streaming calls (artifact upload and download) are bounded by
// their context alone.
const DefaultTimeout = 60 * time.Second

// maxJSONBody bounds how much of a JSON answer is read: a build is a few KiB; anything near this is hostile.
const maxJSONBody = 16 << 20

// Client talks to one coordinator. It is safe for concurrent use. Create it with NewClient.
type Client struct {
	httpClient  *http.Client
	baseURL     *url.URL // always ends in the wire's basePath and a slash
	wire        *wire
	jobTokenKey string // wire.jobTokenHeader as net/http keys it
	userAgent   string
	runnerToken string
	buildToken  string
	retry       RetryPolicy
	timeout     time.Duration
	logger      *slog.Logger
	sleep       waitFor

	common service

	// Builds registers for builds and updates them.
	Builds *BuildsService
	// Artifacts uploads, downloads and deletes builds' artifacts files.
	Artifacts *ArtifactsService
	// Runners registers runners (making their runner tokens) and removes them.
	Runners *RunnersService
	// Jobs takes and reports jobs on the runner API v4.
	Jobs *JobsService
}

// service is the state every service shares: the client it calls through.
type service struct {
	client *Client
}

// Format prints the service as the API root it talks to, for every verb: fmt would otherwise reach the client's
// tokens through its pointer for some verbs (%s, %q).
func (s BuildsService) Format(f fmt.State, _ rune) { formatService(f, "BuildsService", s.client) }

// Format prints the service as the API root it talks to, for every verb.
func (s ArtifactsService) Format(f fmt.State, _ rune) { formatService(f, "ArtifactsService", s.client) }

// Format prints the service as the API root it talks to, for every verb.
func (s RunnersService) Format(f fmt.State, _ rune) { formatService(f, "RunnersService", s.client) }

func formatService(f fmt.State, name string, c *Client) {
	var root *url.URL
	if c != nil {
		root = c.baseURL
	}
	_, _ = fmt.Fprintf(f, "runnerapi.%s{%s}", name, root)
}

// Option configures a Client in NewClient.
type Option func(*Client) error

// WithRunnerToken sets the runner token, which register and update send in their request body.
func WithRunnerToken(token string) Option {
	return func(c *Client) error {
		c.runnerToken = token
		return nil
	}
}

// WithBuildToken sets the build token (the job token on the runner API v4), which the trace and artifacts
// endpoints send in the BUILD-TOKEN (v4: JOB-TOKEN) header. A runner serving many builds usually passes each
// build's token per call with WithToken instead.
func WithBuildToken(token string) Option {
	return func(c *Client) error {
		c.buildToken = token
		return nil
	}
}

// WithHTTPClient makes the client send its requests through a copy of hc. hc itself is never modified; its
// CheckRedirect, if any, still runs after the SDK's own redirect checks; a redirect it refuses (with an error other
// than http.ErrUseLastResponse) is, like the SDK's own refusals, not retried.
//
// Leave hc.Timeout at zero: it would cut artifact transfers short; the SDK bounds small calls itself (WithTimeout).
// A custom *http.Transport should set ExpectContinueTimeout (http.DefaultTransport uses one second), so that an
// artifact upload refused on its headers (a 413 or 403 from a proxy) is answered before its body is sent, and
// keep more than http.DefaultTransport's 2 idle connections per host when builds run at once: NewTransport returns
// one set up as the default client's, to adjust.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) error {
		if hc == nil {
			return errors.New("runnerapi: WithHTTPClient: nil *http.Client")
		}
		cp := *hc
		c.httpClient = &cp
		return nil
	}
}

// WithUserAgent sets the User-Agent header. GitLab answers "no build" with 204 only to user agents that look like
// "gitlab-ci-multi-runner 1.2.3 (...)", and with 404 to others; the SDK treats both alike.
func WithUserAgent(ua string) Option {
	return func(c *Client) error {
		c.userAgent = ua
		return nil
	}
}

// WithRetryPolicy replaces DefaultRetryPolicy.
func WithRetryPolicy(p RetryPolicy) Option {
	return func(c *Client) error {
		if p.MaxRetries < 0 || p.BaseDelay < 0 || p.MaxDelay < 0 || p.MaxRetryAfter < 0 {
			return errors.New("runnerapi: WithRetryPolicy: negative value")
		}
		c.retry = p
		return nil
	}
}

// WithoutRetries turns retries off: every call makes exactly one attempt.
func WithoutRetries() Option {
	return func(c *Client) error {
		c.retry = RetryPolicy{}
		return nil
	}
}

// WithTimeout sets the per-attempt timeout of calls whose request and answer are small (see DefaultTimeout).
// Zero leaves Register, Update, AppendTrace and Delete bounded by their context alone. A TraceWriter bounds each of
// its requests all the same, by DefaultTimeout when this is zero, unless TraceOptions.AttemptTimeout says
// otherwise: its context usually lives as long as the build, and one stalled request would hold the whole trace.
func WithTimeout(d time.Duration) Option {
	return func(c *Client) error {
		if d < 0 {
			return errors.New("runnerapi: WithTimeout: negative duration")
		}
		c.timeout = d
		return nil
	}
}

// WithLogger sends the client's debug records to l. Records never carry a token, a request body or a query string.
// Their messages and attributes are part of the API, for handlers that pick records out (the example runner logs
// retries from "runnerapi: retrying"):
//   - "runnerapi: request", once per attempt: method, path (the URL's path), attempt (from 1), duration, and either
//     status (the answer's status code) or error (why no answer came).
//   - "runnerapi: retrying", before a request is sent again: method, path, attempt (the one that failed), wait
//     (before the next) and error (why it failed).
//   - "runnerapi: no build this time", when Next waits out a failed poll: error and wait.
//   - "runnerapi: the upload succeeded, but its answer could not be read in full": build (its ID), status and reason.
func WithLogger(l *slog.Logger) Option {
	return func(c *Client) error {
		if l == nil {
			l = slog.New(slog.DiscardHandler)
		}
		c.logger = l
		return nil
	}
}

// NewClient returns a client for the coordinator at baseURL: its address as a user types it, such as
// "https://gitlab.example.com", "https://example.com/gitlab/" or one already ending in "/ci" or "/ci/api/v1"
// (or, with WithAPI(APIv4), "/api/v4"). The client speaks the CI API v1 unless WithAPI says otherwise.
func NewClient(baseURL string, opts ...Option) (*Client, error) {
	c := &Client{
		// The SDK's own transport, unless WithHTTPClient replaces the whole client (see transport.go).
		httpClient: &http.Client{Transport: sharedTransport()},
		wire:       &wireV1,
		userAgent:  DefaultUserAgent,
		retry:      DefaultRetryPolicy(),
		timeout:    DefaultTimeout,
		logger:     slog.New(slog.DiscardHandler),
		sleep:      sleepCtx,
	}
	for _, opt := range opts {
		if err := opt(c); err != nil {
			return nil, err
		}
	}
	// The root of the API the options chose.
	u, err := normalizeBaseURL(baseURL, c.wire)
	if err != nil {
		return nil, err
	}
	c.baseURL = u
	c.jobTokenKey = http.CanonicalHeaderKey(c.wire.jobTokenHeader)
	c.httpClient.CheckRedirect = checkRedirect(c.httpClient.CheckRedirect)
	c.common.client = c
	c.Builds = (*BuildsService)(&c.common)
	c.Artifacts = (*ArtifactsService)(&c.common)
	c.Runners = (*RunnersService)(&c.common)
	c.Jobs = (*JobsService)(&c.common)
	return c, nil
}

// Format prints the client as the API root it talks to, for every verb: never its tokens, which fmt would otherwise
// show from its fields.
func (c Client) Format(f fmt.State, verb rune) {
	_, _ = fmt.Fprintf(f, "runnerapi.Client{%s}", c.baseURL)
}

// LogValue logs the client as the API root it talks to, never its tokens.
func (c Client) LogValue() slog.Value { return slog.StringValue(fmt.Sprint(c)) }

// BaseURL returns the API root every request path is resolved against; it ends in "/ci/api/v1/", or "/api/v4/"
// for a client of the runner API v4.
func (c *Client) BaseURL() *url.URL {
	u := *c.baseURL
	return &u
}

// normalizeBaseURL turns a coordinator address into the root of w's API, such as "/ci/api/v1/".
func normalizeBaseURL(raw string, w *wire) (*url.URL, error) {
	raw = strings.TrimSpace(raw)
	// A password holding "/", "?" or "#" ends the authority early, and the parser then quotes it as a port or a
	// scheme: with any "@" in sight, errors name no part of the input.
	mayHoldCredentials := strings.Contains(raw, "@")
	u, err := url.Parse(raw)
	if err != nil {
		if mayHoldCredentials {
			return nil, errors.New("runnerapi: invalid base URL (not shown: it may hold credentials)")
		}
		// url.Parse quotes its input, which may hold credentials: say only what is wrong.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("runnerapi: invalid base URL: %v", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		if mayHoldCredentials {
			return nil, errors.New("runnerapi: invalid base URL: scheme must be http or https")
		}
		return nil, fmt.Errorf("runnerapi: invalid base URL: scheme must be http or https, got %q", u.Scheme)
	case u.Hostname() == "":
		return nil, errors.New("runnerapi: invalid base URL: no host")
	case u.User != nil:
		return nil, errors.New("runnerapi: invalid base URL: credentials in the URL are not supported; use WithRunnerToken and WithBuildToken")
	case u.RawQuery != "" || u.ForceQuery:
		return nil, errors.New("runnerapi: invalid base URL: it must not have a query")
	case u.Fragment != "":
		return nil, errors.New("runnerapi: invalid base URL: it must not have a fragment")
	}
	p := strings.TrimRight(u.Path, "/")
	for _, suffix := range w.addressSuffixes {
		if rest, ok := strings.CutSuffix(p, suffix); ok {
			p = rest
			break
		}
	}
	u.Path = p + w.basePath + "/"
	u.RawPath = ""
	return u, nil
}

// checkRedirect keeps tokens on the coordinator's origin: the BUILD-TOKEN header is dropped when a redirect
// leaves it, and a redirect that would replay a request body (which may hold the runner token) elsewhere is refused.
// So is a redirect that changes the method (net/http turns a POST or PUT into a GET without its body on a 301, 302
// or 303): register would then reach an endpoint that answers 404, read as "no build" forever.
func checkRedirect(next func(*http.Request, []*http.Request) error) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return &redirectError{reason: "stopped after 10 redirects"}
		}
		first := via[0]
		if req.Method != first.Method {
			return &redirectError{reason: fmt.Sprintf("refusing to follow a redirect that turns %s into %s; check the base URL (http or https?)",
				first.Method, req.Method)}
		}
		if followUploadRedirect(req, first) {
			// The coordinator sends the upload to another of its hosts: the request goes again there, body and
			// job token included, as gitlab-runner sends it.
			return nil
		}
		if req.URL.Scheme != first.URL.Scheme || req.URL.Host != first.URL.Host {
			for _, h := range tokenHeaders {
				delete(req.Header, h)
			}
			if req.GetBody != nil && req.ContentLength != 0 {
				return &redirectError{reason: fmt.Sprintf("refusing to resend the request body to another origin (%s)", req.URL.Host)}
			}
		}
		if next != nil {
			// The caller's refusal is met again by every attempt, like the SDK's own.
			err := next(req, via)
			if err != nil && err != http.ErrUseLastResponse {
				return &redirectError{reason: err.Error(), err: err}
			}
			return err
		}
		return nil
	}
}

// uploadRedirectKey marks, in a request's context, an artifacts upload of the runner API v4, whose 307 answer
// names the host to send it to again.
type uploadRedirectKey struct{}

// followUploadRedirect reports whether req, made for a 307 or 308 answer to first, is a v4 artifacts upload sent
// again to the host the coordinator names, never from https down to http.
func followUploadRedirect(req, first *http.Request) bool {
	if v, _ := first.Context().Value(uploadRedirectKey{}).(bool); !v || req.Response == nil {
		return false
	}
	switch req.Response.StatusCode {
	case http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
	default:
		return false
	}
	return req.URL.Scheme == first.URL.Scheme || req.URL.Scheme == "https"
}

// redirectError is a redirect the SDK or the caller's CheckRedirect (err) refuses to follow. It is not transient:
// the next attempt meets it again.
type redirectError struct {
	reason string
	err    error
}

func (e *redirectError) Error() string { return e.reason }

func (e *redirectError) Unwrap() error { return e.err }

// RequestOption adjusts one call.
type RequestOption func(*callConfig)

// callConfig is what RequestOptions adjust.
type callConfig struct {
	token          string
	progress       ProgressFunc
	directDownload bool
}

// ProgressFunc is told how many bytes of a transfer are done and how many there are in all (-1 when unknown).
type ProgressFunc func(done, total int64)

// WithToken makes one call authenticate with token: the runner token for register and update, the build token for
// the trace and artifacts endpoints.
func WithToken(token string) RequestOption {
	return func(cc *callConfig) { cc.token = token }
}

// WithDirectDownload makes a download of the runner API v4 ask for a redirect to the file in object storage
// (direct_download=true), which the SDK follows without the job token; the coordinator serves the file itself
// when direct download is off. The CI API v1 has no such parameter: there it is an error.
func WithDirectDownload() RequestOption {
	return func(cc *callConfig) { cc.directDownload = true }
}

// WithProgress reports the progress of an upload or download to fn, at most a few times a second and once at the
// end.
func WithProgress(fn ProgressFunc) RequestOption {
	return func(cc *callConfig) { cc.progress = fn }
}

func newCallConfig(opts []RequestOption) callConfig {
	if len(opts) == 0 {
		return callConfig{} // the options would make cc escape: a call without any allocates nothing here
	}
	var cc callConfig
	for _, o := range opts {
		if o != nil {
			o(&cc)
		}
	}
	return cc
}

// runnerTokenFor returns the runner token a call uses, or an error naming the missing token.
func (c *Client) runnerTokenFor(cc callConfig, call string) (string, error) {
	if cc.token != "" {
		return unmaskedToken(cc.token, call)
	}
	if c.runnerToken == "" {
		return "", fmt.Errorf("runnerapi: %s needs the runner token: use WithRunnerToken or WithToken", call)
	}
	return unmaskedToken(c.runnerToken, call)
}

// buildTokenFor returns the build token a call uses, or an error naming the missing token.
func (c *Client) buildTokenFor(cc callConfig, call string) (string, error) {
	if cc.token != "" {
		return unmaskedToken(cc.token, call)
	}
	if c.buildToken == "" {
		return "", fmt.Errorf("runnerapi: %s needs the build token: use WithBuildToken or WithToken", call)
	}
	return unmaskedToken(c.buildToken, call)
}

// unmaskedToken refuses a token that is the mask itself, before any request: a build stored with json.Marshal,
// which masks its secrets, would otherwise fail later as a mere 403.
func unmaskedToken(token, call string) (string, error) {
	if token == masked {
		return "", fmt.Errorf("runnerapi: %s: the token is %q, from a build encoded with its secrets masked: "+
			"store builds as UnredactedBuild", call, masked)
	}
	return token, nil
}

// NewRequest builds a request for path, relative to the API root (for example "builds/register"). body may be nil,
// an io.Reader sent as it is, or a struct encoded as a form through its `url` tags. Tokens are never put into the
// URL: set them in the form or the BUILD-TOKEN header.
func (c *Client) NewRequest(ctx context.Context, method, path string, body any) (*http.Request, error) {
	if strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("runnerapi: request path %q must be relative to the API root", path)
	}
	u, err := requestURL(c.baseURL, path)
	if err != nil {
		return nil, fmt.Errorf("runnerapi: bad request path: %w", err)
	}
	switch b := body.(type) {
	case nil:
		return c.readerRequest(ctx, method, u, nil, "")
	case io.Reader:
		return c.readerRequest(ctx, method, u, b, "")
	default:
		form, err := encodeForm(body)
		if err != nil {
			return nil, fmt.Errorf("runnerapi: encoding form: %w", err)
		}
		return c.bytesRequest(ctx, method, u, form, formContentType, nil)
	}
}

// formContentType is the type of a form body.
const formContentType = "application/x-www-form-urlencoded"

// newBytesRequest builds a request for path, one the SDK makes itself (relative to the API root), whose body is
// body, of type contentType. A gate, when not nil, is put on the body (see jobAttempt).
func (c *Client) newBytesRequest(ctx context.Context, method, path string, body []byte, contentType string, gate *jobAttempt) (*http.Request, error) {
	u, err := requestURL(c.baseURL, path)
	if err != nil {
		return nil, fmt.Errorf("runnerapi: bad request path: %w", err)
	}
	return c.bytesRequest(ctx, method, u, body, contentType, gate)
}

// newJobRequest builds a request to job id's endpoint (the wire's jobsPath and id) whose body is body, of type
// contentType, as newBytesRequest(ctx, method, c.wire.jobPath(id), body, contentType, nil) does.
func (c *Client) newJobRequest(ctx context.Context, method string, id int64, body []byte, contentType string) (*http.Request, error) {
	u, err := jobURL(c.baseURL, c.wire.jobsPath, id)
	if err != nil {
		return nil, fmt.Errorf("runnerapi: bad request path: %w", err)
	}
	return c.bytesRequest(ctx, method, u, body, contentType, nil)
}

// readerRequest builds a request for u, resolved already, whose body r (nil for none) is of type contentType.
func (c *Client) readerRequest(ctx context.Context, method string, u *url.URL, r io.Reader, contentType string) (*http.Request, error) {
	// The URL is resolved already: the request gets it as it is rather than parsing its string again.
	req, err := http.NewRequestWithContext(ctx, method, "", r)
	if err != nil {
		return nil, fmt.Errorf("runnerapi: %w", err)
	}
	u.Host = strings.TrimSuffix(u.Host, ":") // an empty port, as NewRequest drops it
	req.URL, req.Host = u, u.Host
	c.setHeaders(req.Header, contentType)
	return req, nil
}

// bytesRequest builds a request for u, resolved already, whose body is body, of type contentType, as
// readerRequest builds it from a bytes.Reader: the same fields, body and rewind. It builds the request itself,
// which spares parsing an empty URL and a copy of the reader; for an unusual method or a nil context it leaves
// the checks and their errors to net/http. A gate, when not nil, is put on the body (see jobAttempt).
func (c *Client) bytesRequest(ctx context.Context, method string, u *url.URL, body []byte, contentType string, gate *jobAttempt) (*http.Request, error) {
	if ctx == nil || !plainMethod(method) {
		req, err := c.readerRequest(ctx, method, u, bytes.NewReader(body), contentType)
		if err == nil && len(body) > 0 && gate != nil && gate.gated {
			req.Body = io.NopCloser(gate.gateBody(body))
			req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(gate.gateBody(body)), nil }
		}
		return req, err
	}
	u.Host = strings.TrimSuffix(u.Host, ":") // an empty port, as NewRequest drops it
	r := http.Request{Method: method, URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: make(http.Header, 4), Host: u.Host, ContentLength: int64(len(body))}
	switch {
	case len(body) == 0:
		r.Body = http.NoBody
		r.GetBody = func() (io.ReadCloser, error) { return http.NoBody, nil }
	case gate != nil && gate.gated:
		r.Body = io.NopCloser(gate.gateBody(body))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(gate.gateBody(body)), nil }
	default:
		// net/http writes the headers and a body it knows is in memory (a *bytes.Reader, even behind
		// io.NopCloser) in one write.
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	c.setHeaders(r.Header, contentType)
	return r.WithContext(ctx), nil
}

// plainMethod reports whether method is one the SDK sends, which net/http takes as it is.
func plainMethod(method string) bool {
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodGet:
		return true
	}
	return false
}

// setHeaders sets the headers every request sends, and its Content-Type when not empty, on h, a new request's:
// by net/http's own keys, their values in one array.
func (c *Client) setHeaders(h http.Header, contentType string) {
	all := []string{"application/json", c.userAgent, contentType}
	h["Accept"] = all[0:1:1]
	h["User-Agent"] = all[1:2:2]
	if contentType != "" {
		h["Content-Type"] = all[2:3:3]
	}
}

// Response is the coordinator's answer to one call. Its body has been read and closed, except when the call
// streamed it to the caller.
type Response struct {
	*http.Response

	// LastUpdate is the X-GitLab-Last-Update value of a "no build" answer, to send back as last_update.
	LastUpdate string
	// Attempts is how many times the request was sent.
	Attempts int
}

// Format prints the answer's status code and attempts, for every verb. fmt would otherwise print the embedded
// http.Response's headers for some verbs (%s, %q), and a server or proxy may echo a request's token there.
func (r Response) Format(f fmt.State, verb rune) {
	code := 0
	if r.Response != nil {
		code = r.StatusCode
	}
	_, _ = fmt.Fprintf(f, "runnerapi.Response{StatusCode:%d Attempts:%d}", code, r.Attempts)
}

// LogValue logs the answer's status code and attempts, never its headers, which may echo a request's token.
func (r Response) LogValue() slog.Value {
	code := 0
	if r.Response != nil {
		code = r.StatusCode
	}
	return slog.GroupValue(slog.Int("status_code", code), slog.Int("attempts", r.Attempts))
}

// MarshalJSON encodes the answer's status code and attempts, never its headers: encoding/json would otherwise
// show those of the embedded http.Response.
func (r Response) MarshalJSON() ([]byte, error) {
	code := 0
	if r.Response != nil {
		code = r.StatusCode
	}
	return json.Marshal(struct {
		StatusCode int `json:"status_code"`
		Attempts   int `json:"attempts"`
	}{code, r.Attempts})
}

func newResponse(r *http.Response, attempts int) *Response {
	resp := &Response{Response: r, Attempts: attempts}
	if r != nil {
		resp.LastUpdate = r.Header.Get(lastUpdateHeader)
	}
	return resp
}

// lastUpdateHeader is X-GitLab-Last-Update as net/http keys it: Header.Get would make that key anew from GitLab's
// spelling on every answer.
const lastUpdateHeader = "X-Gitlab-Last-Update"

// retryClass says when a request may be sent again.
type retryClass int

const (
	// retryUnsent: only when the request surely had no effect (the connection was refused, or a 429, 502 or 503).
	retryUnsent retryClass = iota
	// retryTransient: after any transient failure; for requests whose repetition does no harm.
	retryTransient
	// retryNever: one attempt.
	retryNever
)

// call describes how do sends one request.
type call struct {
	retry retryClass
	// small requests and answers get the client's per-attempt timeout; streams do not.
	small bool
	// secrets are scrubbed from any error the call returns.
	secrets []string
}

// Do sends req and handles the answer: a 2xx body is decoded as JSON into v when v is a pointer, copied into v when
// v is an io.Writer, and discarded when v is nil; any other status is an *ErrorResponse. Requests are retried by the
// client's RetryPolicy: GET, PUT, DELETE and HEAD after any transient failure, others only when the failure shows
// the request had no effect, and none whose body cannot be replayed (set req.GetBody for that). The value of a
// BUILD-TOKEN header is masked in the coordinator's message should it echo it.
func (c *Client) Do(req *http.Request, v any) (*Response, error) {
	cl := call{retry: retryUnsent}
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodOptions:
		cl.retry = retryTransient
	}
	return c.do(req, v, cl)
}

func (c *Client) do(req *http.Request, v any, cl call) (*Response, error) {
	resp, err := c.send(req, v, cl)
	if err == nil {
		return resp, nil
	}
	// Every failure was scrubbed where it came in; this catches what a future path may forget.
	return resp, scrub(err, c.secretsOf(cl, req))
}

// secretsOf returns what is scrubbed from the errors of call cl sending req: the call's secrets, the build token
// the request carries (masked in any answer that echoes it, whoever built the request) and the client's tokens.
// Only a failure needs them.
func (c *Client) secretsOf(cl call, req *http.Request) []string {
	return c.callSecrets(cl.secrets, requestTokens(req)...)
}

// requestTokens returns the values of req's token headers, of whichever API.
func requestTokens(req *http.Request) []string {
	var out []string
	for _, h := range tokenHeaders {
		if vs := req.Header[h]; len(vs) > 0 && vs[0] != "" {
			out = append(out, vs[0])
		}
	}
	return out
}

// callSecrets returns the secrets to scrub from the errors of a call: its own, and the client's tokens, which an
// answer may echo whichever the call sent.
func (c *Client) callSecrets(secrets []string, more ...string) []string {
	all := make([]string, 0, len(secrets)+len(more)+2)
	all = append(append(append(all, secrets...), more...), c.runnerToken, c.buildToken)
	var out []string
	// A build may have a thousand secret variables: past a few, a set tells the repeated ones.
	var seen map[string]bool
	if len(all) > 16 {
		seen = make(map[string]bool, len(all))
	}
	for _, s := range all {
		switch {
		case s == "":
		case seen != nil:
			if !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		case !slices.Contains(out, s):
			out = append(out, s)
		}
	}
	return out
}

// send makes the attempts of a call.
func (c *Client) send(req *http.Request, v any, cl call) (*Response, error) {
	ctx := req.Context()
	replayable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	for attempt := 1; ; attempt++ {
		if attempt > 1 && req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				return nil, fmt.Errorf("runnerapi: %s %s: reopening body for retry: %w", req.Method, redactURL(req.URL), err)
			}
			req.Body = body
		}
		resp, err := c.attempt(req, v, cl, attempt)
		if err == nil {
			return resp, nil
		}
		wait, retry := c.shouldRetry(resp, err, cl.retry, attempt)
		if !retry {
			return resp, err
		}
		if !replayable {
			return resp, &notReplayedError{err: err}
		}
		if c.logger.Enabled(ctx, slog.LevelDebug) {
			c.logger.LogAttrs(ctx, slog.LevelDebug, "runnerapi: retrying",
				slog.String("method", req.Method), slog.String("path", req.URL.Path),
				slog.Int("attempt", attempt), slog.Duration("wait", wait), slog.String("error", err.Error()))
		}
		if ctxErr := sleepCtx(ctx, wait); ctxErr != nil {
			// The earlier failure is told, not wrapped: IsTransient must not see it behind an ended context.
			return resp, fmt.Errorf("runnerapi: %s %s: %w while waiting to retry after: %v", req.Method, redactURL(req.URL), ctxErr, err)
		}
	}
}

// attempt sends req once and interprets the answer, bounding a small call by the client's per-attempt timeout.
// Every failure it returns is scrubbed of the call's secrets and the client's tokens, whichever loop of attempts
// calls it.
func (c *Client) attempt(req *http.Request, v any, cl call, n int) (*Response, error) {
	if cl.small && c.timeout > 0 {
		ctx, cancel := context.WithTimeout(req.Context(), c.timeout)
		defer cancel()
		return c.exchange(req.Context(), req.WithContext(ctx), v, cl, n)
	}
	return c.exchange(req.Context(), req, v, cl, n)
}

// exchange sends req once and interprets the answer, as attempt says. callerCtx's Err says whether the caller's
// context has ended, rather than the attempt's own timeout, which req's context may have besides.
func (c *Client) exchange(callerCtx interface{ Err() error }, req *http.Request, v any, cl call, n int) (*Response, error) {
	start := time.Now()
	hr, err := c.httpClient.Do(req)
	if err != nil {
		// A context that ended is the caller's doing: report that, not the transport's wording.
		var re *redirectError
		if ctxErr := callerCtx.Err(); ctxErr != nil {
			err = fmt.Errorf("runnerapi: %s %s: %w", req.Method, redactURL(req.URL), ctxErr)
		} else if errors.As(err, &re) {
			err = fmt.Errorf("runnerapi: %s %s: %w", req.Method, redactURL(req.URL), scrub(re, c.secretsOf(cl, req)))
		} else {
			err = newTransportError(req.Method, redactURL(req.URL), err, c.secretsOf(cl, req))
		}
		c.logAttempt(req, n, 0, time.Since(start), err)
		return nil, err
	}
	resp := newResponse(hr, n)
	c.logAttempt(req, n, hr.StatusCode, time.Since(start), nil)
	if err := CheckResponse(hr); err != nil {
		scrubError(err, c.secretsOf(cl, req))
		return resp, err
	}
	if w, ok := v.(io.Writer); ok {
		defer hr.Body.Close()
		if _, err := io.Copy(w, hr.Body); err != nil {
			return resp, fmt.Errorf("runnerapi: %s %s: reading body: %w", req.Method, redactURL(req.URL), scrub(err, c.secretsOf(cl, req)))
		}
		return resp, nil
	}
	defer drainAndClose(hr.Body)
	if v == nil || hr.StatusCode == http.StatusNoContent {
		return resp, nil
	}
	if err := decodeJSON(hr.Body, hr.ContentLength, v); err != nil {
		return resp, fmt.Errorf("runnerapi: %s %s: %w", req.Method, redactURL(req.URL), scrub(err, c.secretsOf(cl, req)))
	}
	return resp, nil
}

// decodeJSON decodes one JSON value of at most maxJSONBody bytes from an answer's body of length bytes (-1 when
// unknown). When a build (or a v4 job) cannot be decoded (json.Decoder reads a whole value before it decodes any
// of it, so a body cut short leaves the build empty), its ID is taken from the bytes that were read: a build the
// coordinator has assigned must not be lost for want of its tail.
//
// A body that says it is small (a build, a job: a few KiB), or a build or a job in one that does not say its
// length, is read whole into a buffer kept between calls and decoded from there; what that cannot decode as
// json.Decoder would (trailing data, a body cut short) is decoded again by one, over the same bytes, so that the
// outcome is the same. Any other body is decoded as it streams.
func decodeJSON(r io.Reader, length int64, v any) error {
	var id *int64 // the ID of a build or a v4 job, to recover from a body cut short
	switch b := v.(type) {
	case *Build:
		id = &b.ID
	case *Job:
		id = &b.ID
	}
	if length > 0 && length < maxBufferedAnswer {
		return decodeBufferedJSON(r, length, v, id)
	}
	if length < 0 && id != nil {
		// A build or a job in a body that does not say its length (chunked, as a coordinator's answer of more
		// than a few KiB may be): read as one that says the most a buffer holds, what does not fit is streamed.
		return decodeBufferedJSON(r, maxBufferedAnswer-1, v, id)
	}
	return decodeStreamedJSON(r, v, id)
}

// decodeStreamedJSON decodes one value from r as it streams, as decodeJSON says.
func decodeStreamedJSON(r io.Reader, v any, id *int64) error {
	lr := &io.LimitedReader{R: r, N: maxJSONBody + 1}
	var src io.Reader = lr
	if id != nil {
		head := &prefixRecorder{r: lr}
		src = head
		defer func() {
			if *id == 0 {
				*id, _ = scanTopLevelID(head.buf)
			}
		}()
	}
	err := json.NewDecoder(src).Decode(v)
	if lr.N <= 0 {
		return fmt.Errorf("decoding answer: larger than %d bytes", maxJSONBody)
	}
	if err != nil {
		return fmt.Errorf("decoding answer: %w", err)
	}
	return nil
}

// maxBufferedAnswer bounds the answers decodeJSON reads whole before decoding them, and the buffers it keeps.
const maxBufferedAnswer = 64 << 10

// answerBuffers are the buffers of decodeBufferedJSON.
var answerBuffers = sync.Pool{New: func() any { return new([]byte) }}

// decodeBufferedJSON reads a body that says it has length bytes (less than maxBufferedAnswer) to its end, and
// decodes it. What json.Unmarshal cannot decode goes to decodeStreamedJSON over the same bytes, followed by the
// rest of a body longer than it said, or by the read error that ended a body cut short, so that the outcome is
// json.Decoder's on the body itself.
func decodeBufferedJSON(r io.Reader, length int64, v any, id *int64) error {
	bp := answerBuffers.Get().(*[]byte)
	defer answerBuffers.Put(bp)
	// One byte more than said: a read that fills it shows a body longer than it said.
	if int64(cap(*bp)) < length+1 {
		*bp = make([]byte, 0, length+1)
	}
	buf := (*bp)[:length+1]
	n, readErr := 0, error(nil)
	for n < len(buf) && readErr == nil {
		var m int
		m, readErr = r.Read(buf[n:])
		n += m
	}
	buf = buf[:n]
	switch {
	case readErr == nil:
		return decodeStreamedJSON(io.MultiReader(bytes.NewReader(buf), r), v, id)
	case readErr != io.EOF:
		return decodeStreamedJSON(io.MultiReader(bytes.NewReader(buf), failingReader{readErr}), v, id)
	}
	err := unmarshalAnswer(buf, v)
	if _, syntax := err.(*json.SyntaxError); syntax {
		// Not one valid value as a whole: json.Unmarshal checks that before it decodes anything, so v is as it
		// was, and json.Decoder may still read a value before trailing bytes, or fail its own way.
		return decodeStreamedJSON(bytes.NewReader(buf), v, id)
	}
	if id != nil && *id == 0 {
		*id, _ = scanTopLevelID(buf)
	}
	if err != nil {
		// A value of the wrong shape: json.Decoder decodes the same bytes the same way.
		return fmt.Errorf("decoding answer: %w", err)
	}
	return nil
}

// failingReader fails every read with err: a body's read error, met again where it came.
type failingReader struct{ err error }

func (f failingReader) Read([]byte) (int, error) { return 0, f.err }

// maxRecordedPrefix bounds the start of a build's answer kept to find its ID in: a build is a few KiB, and GitLab
// writes the ID first.
const maxRecordedPrefix = 64 << 10

// prefixRecorder keeps the first maxRecordedPrefix bytes read through it.
type prefixRecorder struct {
	r   io.Reader
	buf []byte
}

func (p *prefixRecorder) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if room := maxRecordedPrefix - len(p.buf); room > 0 && n > 0 {
		p.buf = append(p.buf, b[:min(n, room)]...)
	}
	return n, err
}

// drainAndClose reads a little of what is left so the connection can be reused, then closes.
func drainAndClose(body io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, body, 4<<10)
	_ = body.Close()
}

func (c *Client) logAttempt(req *http.Request, n, status int, d time.Duration, err error) {
	ctx := req.Context()
	if !c.logger.Enabled(ctx, slog.LevelDebug) {
		return
	}
	attrs := []slog.Attr{
		slog.String("method", req.Method), slog.String("path", req.URL.Path),
		slog.Int("attempt", n), slog.Duration("duration", d),
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	} else {
		attrs = append(attrs, slog.Int("status", status))
	}
	c.logger.LogAttrs(ctx, slog.LevelDebug, "runnerapi: request", attrs...)
}

// redactURL renders u without credentials or query, which may carry signatures of object storage redirects.
func redactURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	cp := *u
	cp.User = nil
	if cp.RawQuery != "" {
		cp.RawQuery = "REDACTED"
	}
	cp.Fragment = ""
	return cp.String()
}

// redactError removes the URL that *url.Error repeats, since a redirect's URL may carry secrets in its query.
func redactError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// waitFor is how the client waits between answers a coordinator asks it to repeat; tests replace it.
type waitFor func(ctx context.Context, d time.Duration) error

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
