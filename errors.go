package runnerapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Conditions callers branch on. errors.Is matches them against an *ErrorResponse with the status they name.
var (
	// ErrForbidden is a 403: a bad token, or a build that was erased, whose project was deleted, or (on upload)
	// that is not running.
	ErrForbidden = errors.New("runnerapi: forbidden")
	// ErrNotFound is a 404: an unknown build, one that is no longer this runner's, or no artifacts file.
	ErrNotFound = errors.New("runnerapi: not found")
	// ErrConflict is a 409: the coordinator could not assign a build this time; try again.
	ErrConflict = errors.New("runnerapi: conflict")
	// ErrTooLarge is a 413, or a download larger than the caller's limit.
	ErrTooLarge = errors.New("runnerapi: too large")
	// ErrNotCoordinator marks a 404 to builds register, runners register or runners delete that no GitLab CI
	// coordinator sends. GitLab's own 404s there are JSON {"message":"404 Not Found"}: on builds register "no build"
	// (Register then returns no build and no error) or a paused runner, on runners register a runner that could take
	// no build. A 404 to builds register that carries X-GitLab-Last-Update is GitLab's "no build" whatever its body,
	// since a proxy in front (an nginx error_page, an ingress during a deploy) may replace the body but GitLab alone
	// sets that header. Any other 404 (an HTML page, an empty body, another service's answer, or the
	// {"error":"404 Not Found"} of GitLab's /api catch-all when the base URL points under /api) means the base URL is
	// wrong, or the server does not serve the CI Builds API v1: polling on would never bring a build. errors.As finds
	// the 404's *ErrorResponse in the same error.
	ErrNotCoordinator = errors.New("runnerapi: the address does not serve the CI Builds API v1")
	// ErrBodyNotReplayable marks a failure that would have been retried had the request body been replayable.
	ErrBodyNotReplayable = errors.New("runnerapi: request body cannot be replayed")
)

// maxErrorBody bounds how much of an error answer is read.
const maxErrorBody = 1 << 20

// maxMessageLen bounds the coordinator's message kept in an error, so a proxy's page does not flood logs.
const maxMessageLen = 512

// ErrorResponse is a coordinator's answer with a status other than 2xx.
type ErrorResponse struct {
	// Method is the request's method.
	Method string
	// URL is the request's URL, without credentials and with any query, which may hold a signature, as REDACTED.
	URL string
	// StatusCode is the answer's HTTP status.
	StatusCode int
	// Message is what the coordinator said: the "message" or "error" of a JSON body, a validation object flattened
	// into "field is invalid" sentences, the title of an HTML page, or plain text, shortened.
	Message string
	// Response is the answer; its body has been read and closed.
	Response *http.Response

	// apiMessage tells that Message is the string "message" member of a JSON object body, as GitLab's
	// render_api_error! writes it; false for any other body: a proxy's page, another server's answer, or Grape's
	// {"error": ...} of a route that GitLab does not serve.
	apiMessage bool
}

// Error describes the failure without any token.
func (e *ErrorResponse) Error() string {
	var b strings.Builder
	b.WriteString("runnerapi: ")
	b.WriteString(e.Method)
	b.WriteByte(' ')
	b.WriteString(e.URL)
	b.WriteString(": ")
	status := strconv.Itoa(e.StatusCode)
	if text := http.StatusText(e.StatusCode); text != "" {
		status += " " + text
	}
	switch {
	case e.Message == "":
		b.WriteString(status)
	case strings.HasPrefix(e.Message, strconv.Itoa(e.StatusCode)):
		// GitLab's messages start with the status already: "403 Forbidden  - Build has been erased!".
		b.WriteString(e.Message)
	default:
		b.WriteString(status)
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

// MarshalJSON encodes the error as its text, as log handlers show errors: never the answer's headers, which may
// echo a request's token.
func (e *ErrorResponse) MarshalJSON() ([]byte, error) { return json.Marshal(e.Error()) }

// Is reports whether the answer's status is the one target names, so errors.Is(err, ErrNotFound) works.
func (e *ErrorResponse) Is(target error) bool {
	switch target {
	case ErrForbidden:
		return e.StatusCode == http.StatusForbidden
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	case ErrConflict:
		return e.StatusCode == http.StatusConflict
	case ErrTooLarge:
		return e.StatusCode == http.StatusRequestEntityTooLarge
	}
	return false
}

// CheckResponse returns nil for a 2xx answer and an *ErrorResponse for any other, having read at most 1 MiB of its
// body and closed it.
func CheckResponse(r *http.Response) error {
	if r.StatusCode >= 200 && r.StatusCode < 300 {
		return nil
	}
	er := &ErrorResponse{StatusCode: r.StatusCode, Response: r}
	if r.Request != nil {
		er.Method = r.Request.Method
		er.URL = redactURL(r.Request.URL)
	}
	if r.Body != nil {
		data, _ := io.ReadAll(io.LimitReader(r.Body, maxErrorBody))
		_ = r.Body.Close()
		er.Message = shorten(parseErrorMessage(r.Header.Get("Content-Type"), data))
		er.apiMessage = hasAPIMessage(data)
	}
	return er
}

// parseErrorMessage extracts what the coordinator said from an error body of any shape a coordinator or a proxy
// in front of it sends. The message is not shortened yet.
func parseErrorMessage(contentType string, data []byte) string {
	text := strings.TrimSpace(string(data))
	if text == "" {
		return ""
	}
	if text[0] == '{' {
		var body struct {
			Message json.RawMessage `json:"message"`
			Error   json.RawMessage `json:"error"`
		}
		if json.Unmarshal(data, &body) == nil {
			if msg := jsonMessage(body.Message); msg != "" {
				return msg
			}
			if msg := jsonMessage(body.Error); msg != "" {
				return msg
			}
		}
	}
	if strings.Contains(contentType, "html") || looksLikeHTML(text) {
		return htmlText(text)
	}
	return text
}

// hasAPIMessage reports whether data is a JSON object with a string "message" member.
func hasAPIMessage(data []byte) bool {
	var body struct {
		Message *string `json:"message"`
	}
	return json.Unmarshal(data, &body) == nil && body.Message != nil
}

// maxMessageDepth is how deep jsonMessage flattens nested objects; deeper values are kept as raw JSON. Each level
// parses its value again, so an unbounded depth let a 1 MiB answer nested 10000 deep cost minutes of CPU.
const maxMessageDepth = 2

// jsonMessage renders a "message" value: a string, or a validation object {"field": ["is invalid", ...]}.
func jsonMessage(raw json.RawMessage) string {
	return jsonMessageDepth(raw, 0)
}

func jsonMessageDepth(raw json.RawMessage, depth int) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	if depth >= maxMessageDepth {
		return string(raw)
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(raw, &fields) == nil {
		keys := make([]string, 0, len(fields))
		for k := range fields {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			var msgs []string
			if json.Unmarshal(fields[k], &msgs) == nil {
				for _, m := range msgs {
					parts = append(parts, k+" "+m)
				}
				continue
			}
			parts = append(parts, k+" "+jsonMessageDepth(fields[k], depth+1))
		}
		return strings.Join(parts, "; ")
	}
	return string(raw)
}

func looksLikeHTML(s string) bool {
	head := strings.ToLower(s[:min(len(s), 64)])
	return strings.HasPrefix(head, "<!doctype html") || strings.HasPrefix(head, "<html")
}

var (
	htmlTitle = regexp.MustCompile(`(?is)<title[^>]*>(.*?)</title>`)
	htmlTag   = regexp.MustCompile(`(?s)<[^>]*>`)
	spaces    = regexp.MustCompile(`\s+`)
)

// htmlText reduces an HTML error page to its title, or to its text when it has none.
func htmlText(s string) string {
	if m := htmlTitle.FindStringSubmatch(s); m != nil {
		if t := strings.TrimSpace(spaces.ReplaceAllString(m[1], " ")); t != "" {
			return t
		}
	}
	return strings.TrimSpace(spaces.ReplaceAllString(htmlTag.ReplaceAllString(s, " "), " "))
}

// shorten keeps at most maxMessageLen bytes of s, cut on a rune boundary, and replaces control characters.
func shorten(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
	if len(s) <= maxMessageLen {
		return s
	}
	cut := maxMessageLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// scrubError masks the given secrets wherever the coordinator's message repeats them: as they are, encoded as in
// an echoed form body or quoted string, or cut short where the message was shortened.
func scrubError(err error, secrets []string) {
	var er *ErrorResponse
	if !errors.As(err, &er) {
		return
	}
	er.Message = scrubText(er.Message, secrets)
}

// secretForms returns the ways each secret can appear in a text from the network or from Go's own errors: as it
// is, URL-encoded (an echoed form body or query), and escaped as %q, %+q and JSON quote it. Longest first, so
// that a form holding a shorter one is masked whole.
func secretForms(secrets []string) []string {
	seen := make(map[string]bool)
	var forms []string
	add := func(f string) {
		if f != "" && !seen[f] {
			seen[f] = true
			forms = append(forms, f)
		}
	}
	for _, s := range secrets {
		if s == "" {
			continue
		}
		add(s)
		add(url.QueryEscape(s))
		add(url.PathEscape(s))
		for _, q := range []string{strconv.Quote(s), strconv.QuoteToASCII(s)} {
			add(q[1 : len(q)-1])
		}
		if j, err := json.Marshal(s); err == nil {
			add(string(j[1 : len(j)-1]))
		}
	}
	sort.SliceStable(forms, func(i, j int) bool { return len(forms[i]) > len(forms[j]) })
	return forms
}

// scrubText masks every form of the secrets in s, and the start of one left at the end of a text that shorten
// cut inside it. Like the trace, it masks every byte of every occurrence, found in s as it came: replacing one
// secret before looking for the next would leave in the clear the part of another that overlaps it. Overlapping
// occurrences become one "[MASKED]".
func scrubText(s string, secrets []string) string {
	if s == "" {
		return s
	}
	forms := secretForms(secrets)
	var runEnd []int // runEnd[i] > i: s[i:runEnd[i]] is in one run of masked bytes that starts at i or before
	for _, form := range forms {
		for at := 0; ; at++ {
			i := strings.Index(s[at:], form)
			if i < 0 {
				break
			}
			at += i
			if runEnd == nil {
				runEnd = make([]int, len(s))
			}
			runEnd[at] = max(runEnd[at], at+len(form))
		}
	}
	if runEnd != nil {
		var b strings.Builder
		for i := 0; i < len(s); {
			if runEnd[i] <= i {
				b.WriteByte(s[i])
				i++
				continue
			}
			// Extend the run over every occurrence that starts inside it.
			end := runEnd[i]
			for j := i + 1; j < end; j++ {
				end = max(end, runEnd[j])
			}
			b.WriteString(masked)
			i = end
		}
		s = b.String()
	}
	for _, form := range forms {
		s = maskCutTail(s, form)
	}
	return s
}

// scrub returns err with every form of the secrets masked from its text. An error whose text holds none is
// returned as it is; another becomes a *scrubbedError, which errors.Is and errors.As see through.
func scrub(err error, secrets []string) error {
	if err == nil {
		return nil
	}
	text := err.Error()
	clean := scrubText(text, secrets)
	if clean == text {
		return err
	}
	return &scrubbedError{text: clean, err: err}
}

// scrubbedError is an error whose text had secrets masked. errors.Is and errors.As, and so IsTransient and the
// ErrXxx conditions, find the original and what it wraps; errors.Unwrap does not return it, since its text, and
// that of what it wraps, still holds the secret.
type scrubbedError struct {
	text string
	err  error
}

func (e *scrubbedError) Error() string { return e.text }

// Is reports whether the original error matches target.
func (e *scrubbedError) Is(target error) bool { return errors.Is(e.err, target) }

// As finds the first error in the original's chain that matches target.
func (e *scrubbedError) As(target any) bool { return errors.As(e.err, target) }

// maskCutTail masks the start of secret left at the end of a message that shorten cut inside it.
func maskCutTail(msg, secret string) string {
	body, cut := strings.CutSuffix(msg, "…")
	if !cut {
		return msg
	}
	for n := len(secret) - 1; n > 0; n-- {
		if strings.HasSuffix(body, secret[:n]) {
			return body[:len(body)-n] + masked + "…"
		}
	}
	return msg
}

// newTransportError describes a failed exchange, its cause stripped of the URL *url.Error repeats and scrubbed of
// the call's secrets, which net/http quotes from a malformed answer ("malformed MIME header line: ...").
func newTransportError(method, url string, cause error, secrets []string) *TransportError {
	return &TransportError{Method: method, URL: url, Err: scrub(redactError(cause), secrets)}
}

// TransportError is a failure to exchange a request and an answer with the coordinator: a refused or dropped
// connection, a timeout of one attempt, a TLS failure. It is transient.
type TransportError struct {
	// Method is the request's method.
	Method string
	// URL is the request's URL, without credentials and with any query, which may hold a signature, as REDACTED.
	URL string
	// Err is the cause.
	Err error
}

// Error describes the failure without any token.
func (e *TransportError) Error() string {
	return fmt.Sprintf("runnerapi: %s %s: %v", e.Method, e.URL, e.Err)
}

// Unwrap returns the cause.
func (e *TransportError) Unwrap() error { return e.Err }

// MarshalJSON encodes the error as its text, as log handlers show errors; encoding/json would otherwise show the
// cause's fields, whatever they hold.
func (e *TransportError) MarshalJSON() ([]byte, error) { return json.Marshal(e.Error()) }

// notReplayedError is a failure that was not retried because the request body was a one-shot stream.
type notReplayedError struct {
	err error
}

func (e *notReplayedError) Error() string {
	return e.err.Error() + " (not retried: the request body is a stream that cannot be replayed)"
}

func (e *notReplayedError) Unwrap() []error { return []error{e.err, ErrBodyNotReplayable} }

// headerForError renders a header value from the network for an error message: shortened, printable, and with
// the given secrets masked, since a proxy may echo the request, tokens included, into any header.
func headerForError(v string, secrets []string) string {
	for _, form := range secretForms(secrets) {
		v = strings.ReplaceAll(v, form, masked)
	}
	return scrubText(shorten(v), secrets)
}

// parseDigits parses a non-negative decimal made of ASCII digits alone (no sign, no spaces) that fits an int64.
func parseDigits(s string) (int64, bool) {
	if s == "" || len(s) > 19 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}
