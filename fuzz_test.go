package runnerapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// Fuzz targets for everything the SDK parses from a network or a user. .ci/fuzz runs each for a short time; their
// seed corpora are in testdata/fuzz/<name>/, and the seeds added here run with every go test.

// FuzzTraceRange: a Range header is accepted only as "0-N" with N a decimal int64, and an accepted value prints
// back to the same text (leading zeros aside); anything else is an ErrTraceRange.
func FuzzTraceRange(f *testing.F) {
	for _, s := range []string{"0-0", "0-21", "0-9223372036854775807", "0-9223372036854775808", "", "0-", "1-5", "0-x",
		"0--1", "0-+1", " 0-1", "0-1 ", "0-007", "bytes 0-1", "0-1,0-2", "0-\u0661"} {
		f.Add(s, false)
	}
	f.Add("0-5", true)
	f.Add("0-BUILD-TOKEN=Fuzz-Secret-Tok3n", false)
	f.Add(strings.Repeat("x", 505)+"Fuzz-Secret-Tok3n", false)
	f.Fuzz(func(t *testing.T, v string, twice bool) {
		h := http.Header{}
		h.Add("Range", v)
		if twice {
			h.Add("Range", v)
		}
		const secret = "Fuzz-Secret-Tok3n"
		n, err := parseTraceRange(h, secret)
		if err != nil {
			if !errors.Is(err, ErrTraceRange) {
				t.Fatalf("%q: error %v does not match ErrTraceRange", v, err)
			}
			// A proxy may echo the request's token into the header: the error must not repeat it.
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("%q: error %q shows the token", v, err)
			}
			// The value is shortened, then quoted, which at most doubles it.
			if len(err.Error()) > 3*maxMessageLen {
				t.Fatalf("%q: error of %d bytes", v, len(err.Error()))
			}
			return
		}
		if twice {
			t.Fatalf("two Range headers %q accepted as %d", v, n)
		}
		if n < 0 {
			t.Fatalf("%q parsed to negative %d", v, n)
		}
		digits, ok := strings.CutPrefix(v, "0-")
		if !ok {
			t.Fatalf("%q accepted without the 0- prefix", v)
		}
		canon := strings.TrimLeft(digits, "0")
		if canon == "" {
			canon = "0"
		}
		if got := strconv.FormatInt(n, 10); got != canon {
			t.Fatalf("%q parsed to %d, which prints as %q", v, n, got)
		}
		// And the canonical text parses back to the same length.
		h.Set("Range", "0-"+strconv.FormatInt(n, 10))
		if m, err := parseTraceRange(h); err != nil || m != n {
			t.Fatalf("0-%d parsed back to %d, %v", n, m, err)
		}
	})
}

// FuzzTraceUpdateInterval: X-GitLab-Trace-Update-Interval is whole seconds in plain decimal digits, as
// gitlab-runner reads it; anything else (a sign, a space, a unit, a fraction, zero) is no interval, and a value is
// held between a second and 15 minutes, so that no header can make the writer spin or go silent.
func FuzzTraceUpdateInterval(f *testing.F) {
	for _, s := range []string{"", "0", "1", "3", "30", "007", "900", "901", "86400", "9223372036854775807",
		"9223372036854775808", "-1", "+1", " 1", "1 ", "1s", "1.5", "0x10", "1e3", "\u0661",
		"00000000000000000001"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		got := parseUpdateInterval(v)
		digits := v != "" && strings.Trim(v, "0123456789") == ""
		n, err := strconv.ParseInt(v, 10, 64)
		switch {
		case !digits || err != nil || n == 0 || len(v) > 19:
			// More than 19 digits is refused before it is read, even as leading zeros: no int64 needs them.
			if got != 0 {
				t.Fatalf("%q: interval %v, want none", v, got)
			}
		case n > int64(maxTraceUpdateInterval/time.Second):
			if got != maxTraceUpdateInterval {
				t.Fatalf("%q: interval %v, want the bound %v", v, got, maxTraceUpdateInterval)
			}
		default:
			if got != time.Duration(n)*time.Second {
				t.Fatalf("%q: interval %v, want %ds", v, got, n)
			}
		}
		if got != 0 && (got < minTraceUpdateInterval || got > maxTraceUpdateInterval) {
			t.Fatalf("%q: interval %v outside [%v, %v]", v, got, minTraceUpdateInterval, maxTraceUpdateInterval)
		}
	})
}

// FuzzDispositionFilename: whatever the Content-Disposition, the name is a plain file name (no separator, no "."
// or "..", no control character, valid UTF-8, at most 255 bytes); and a safe name sent quoted, or percent-encoded
// in filename*, comes back as it was sent.
func FuzzDispositionFilename(f *testing.F) {
	for _, s := range []string{`attachment; filename=artifacts.zip`, `attachment; filename="a b.zip"`,
		`attachment; filename="..\\..\\x"`, `attachment; filename*=UTF-8''%E2%82%AC.zip`, `attachment; filename=../../etc/passwd`,
		`attachment; filename*=iso-8859-1''%A3.zip; filename=x`, `attachment; filename="a"; filename="b"`, `inline`, `;`,
		`attachment; filename="\`, "attachment; filename=\"a\x00b\"", `attachment; filename*=UTF-8''%2e%2e`,
		`attachment; filename="a\"b"`, `inline; filename*=UTF-8''%41`, `a;;;=`} {
		f.Add(s, "artifacts.zip")
	}
	f.Add("", "a\\\"b")
	f.Add("", "caf\u00e9 \u20ac.zip")
	f.Fuzz(func(t *testing.T, v, name string) {
		dispositionSafe(t, v, dispositionFilename(v))

		want := safeBaseName(name)
		if want == "" {
			return
		}
		dispositionSafe(t, name, want)
		quoted := `attachment; filename="` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(want) + `"`
		if got := dispositionFilename(quoted); got != want && !strings.ContainsAny(want, "\t") {
			t.Fatalf("%q: got %q, want %q", quoted, got, want)
		}
		ext := `attachment; filename*=UTF-8''` + dispositionExtEncode(want) + `; filename="fallback.zip"`
		if got := dispositionFilename(ext); got != want {
			t.Fatalf("%q: got %q, want %q", ext, got, want)
		}
	})
}

// dispositionExtEncode percent-encodes every byte of s that RFC 8187 does not allow bare.
func dispositionExtEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; isAttrChar(c) {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func dispositionSafe(t *testing.T, from, name string) {
	t.Helper()
	if name == "" {
		return
	}
	if strings.ContainsAny(name, `/\`) || name == "." || name == ".." || hasControl(name) || !utf8.ValidString(name) ||
		len(name) > maxFilename {
		t.Fatalf("unsafe name %q from %q", name, from)
	}
}

// FuzzCheckResponse: any error answer becomes an *ErrorResponse with a short, printable, valid UTF-8 message, and a
// token the body echoes (plainly, URL-encoded or cut short) is masked in the message and the error string.
func FuzzCheckResponse(f *testing.F) {
	const secret = "Fuzz-Secret-Tok3n"
	for _, b := range []string{`{"message":"403 Forbidden"}`, `{"message":"403 Forbidden  - Build has been erased!"}`,
		`{"error":"416 Range Not Satisfiable"}`, `{"message":{"field":["is invalid"],"other":{"x":["y"]}}}`,
		`<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>`, `{"message":null,"error":"x"}`,
		`{"message":"bad token ` + secret + `"}`, `token=` + url.QueryEscape(secret), `{"message":[1,2,{"a":"b"}]}`,
		strings.Repeat("x", 600) + secret, "\xff\xfe<title>\x00</title>", `{"message":{"a":{"b":{"c":{"d":"e"}}}}}`} {
		f.Add(500, "application/json", []byte(b))
	}
	f.Add(403, "text/html", []byte(`<!DOCTYPE html><p>`+secret+`</p>`))
	f.Add(200, "", []byte("ok"))
	f.Fuzz(func(t *testing.T, status int, contentType string, body []byte) {
		if status < 100 || status > 999 {
			return // net/http never produces these
		}
		req, _ := http.NewRequest(http.MethodPost, "http://coord.example/ci/api/v1/builds/register?token="+secret, nil)
		resp := &http.Response{StatusCode: status, Header: http.Header{"Content-Type": {contentType}}, Request: req,
			Body: io.NopCloser(bytes.NewReader(body))}
		err := CheckResponse(resp)
		if status >= 200 && status < 300 {
			if err != nil {
				t.Fatalf("%d: %v", status, err)
			}
			return
		}
		var er *ErrorResponse
		if !errors.As(err, &er) {
			t.Fatalf("%d: %T is not an *ErrorResponse", status, err)
		}
		if len(er.Message) > maxMessageLen+len("…") || !utf8.ValidString(er.Message) {
			t.Fatalf("message of %d bytes, valid UTF-8 %v", len(er.Message), utf8.ValidString(er.Message))
		}
		for _, r := range er.Message {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("control character %U in %q", r, er.Message)
			}
		}
		scrubError(err, []string{secret})
		for _, s := range []string{er.Message, err.Error()} {
			if strings.Contains(s, secret) || strings.Contains(s, url.QueryEscape(secret)) {
				t.Fatalf("secret in %q", s)
			}
		}
		if strings.Contains(er.URL, "token") {
			t.Fatalf("query kept in %q", er.URL)
		}
	})
}

// FuzzBuildJSON: whatever JSON decodes as a Build re-encodes, and that encoding decodes to a Build that encodes the
// same way; a Build decoded from the SDK's own encoding survives another round trip unchanged. Printing it never
// panics and never shows its token.
func FuzzBuildJSON(f *testing.F) {
	for _, name := range []string{"build_8_0.json", "build_8_17.json", "build_environment_string.json", "build_unknown_options.json"} {
		if data, err := os.ReadFile(filepath.Join("testdata", name)); err == nil {
			f.Add(data)
		}
	}
	for _, s := range []string{`{}`, `null`, `{"id":1,"options":{"image":5}}`, `{"options":{"environment":"prod"}}`,
		`{"options":{"environment":{"name":"x","extra":[1]}}}`, `{"artifacts_expire_at":"2017-01-02T03:04:05.123+02:00"}`,
		`{"artifacts_expire_at":null,"variables":null}`, `{"ID":2,"Token":"Tok-XYZ-123456"}`,
		`{"options":{"services":[],"IMAGE":"a","x":{}}}`, `{"depends_on_builds":[{"id":1,"token":"dep-TOKEN-abcdef"}]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var b1 Build
		if json.Unmarshal(data, &b1) != nil {
			return
		}
		out1, err := json.Marshal(UnredactedBuild(b1))
		if err != nil {
			t.Fatalf("decoded build does not encode: %v", err)
		}
		var b2 Build
		if err := json.Unmarshal(out1, &b2); err != nil {
			t.Fatalf("own encoding %s does not decode: %v", out1, err)
		}
		out2, err := json.Marshal(UnredactedBuild(b2))
		if err != nil {
			t.Fatalf("re-decoded build does not encode: %v", err)
		}
		if !bytes.Equal(out1, out2) {
			t.Fatalf("encodings differ:\n%s\n%s", out1, out2)
		}
		var b3 Build
		if err := json.Unmarshal(out2, &b3); err != nil {
			t.Fatal(err)
		}
		if !b2.ArtifactsExpireAt.Equal(b3.ArtifactsExpireAt) {
			t.Fatalf("expiry %v became %v", b2.ArtifactsExpireAt, b3.ArtifactsExpireAt)
		}
		b2.ArtifactsExpireAt, b3.ArtifactsExpireAt = time.Time{}, time.Time{}
		if !reflect.DeepEqual(b2, b3) {
			t.Fatalf("round trip changed the build:\n%#v\n%#v", b2, b3)
		}
		// The identifying fields survive the first round trip as decoded.
		if b1.ID != b2.ID || b1.Token != b2.Token || b1.RepoURL != b2.RepoURL || !reflect.DeepEqual(b1.Secrets(), b2.Secrets()) {
			t.Fatalf("round trip changed the build's identity or secrets")
		}
		if len(b1.Token) >= 12 {
			// The token may be repeated in a field that is not secret (a name): look only where it is not.
			probe := b1
			probe.Token = ""
			for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
				if s := fmt.Sprintf(verb, b1); strings.Contains(s, b1.Token) && !strings.Contains(fmt.Sprintf(verb, probe), b1.Token) {
					t.Fatalf("%s shows the token: %s", verb, s)
				}
			}
			if j, err := json.Marshal(b1); err != nil {
				t.Fatalf("build does not encode: %v", err)
			} else if pj, _ := json.Marshal(probe); strings.Contains(string(j), b1.Token) && !strings.Contains(string(pj), b1.Token) {
				t.Fatalf("JSON shows the token: %s", j)
			}
		}
	})
}

// FuzzBaseURL: an accepted base URL is normalised to an http(s) URL with a host, ending in /ci/api/v1/, with no
// query, fragment or userinfo, and normalising it again changes nothing; a refused one whose text may hold
// credentials is not repeated in the error.
func FuzzBaseURL(f *testing.F) {
	for _, s := range []string{"https://gitlab.example.com", "https://example.com/gitlab/", "http://h/ci", "http://h/ci/api/v1",
		"http://h/ci/api/v1/", "https://user:pa$$word@h/", "https://u:p/ss?w#rd@h", "ftp://h", "http://", "//h", " http://h/x ",
		"http://h?x=1", "http://h#f", "http://h/%2e%2e/ci", "http://[::1]:8080/", "http://h/a%2Fb/", "http://h:99999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := NewClient(raw)
		if err != nil {
			if at := strings.LastIndex(raw, "@"); at >= 0 {
				cred := raw[:at]
				if i := strings.Index(cred, "//"); i >= 0 {
					cred = cred[i+2:]
				}
				if len(cred) >= 8 && strings.Contains(err.Error(), cred) {
					t.Fatalf("error %q repeats %q", err, cred)
				}
			}
			return
		}
		u := c.BaseURL()
		if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.ForceQuery ||
			u.Fragment != "" || !strings.HasSuffix(u.Path, "/ci/api/v1/") {
			t.Fatalf("%q normalised to %q", raw, u)
		}
		c2, err := NewClient(u.String())
		if err != nil {
			t.Fatalf("normalised %q refused: %v", u, err)
		}
		if c2.BaseURL().String() != u.String() {
			t.Fatalf("%q normalised to %q, then to %q", raw, u, c2.BaseURL())
		}
		req, err := c.NewRequest(t.Context(), http.MethodGet, "builds/1/artifacts", nil)
		if err != nil {
			t.Fatalf("request on %q: %v", u, err)
		}
		// net/http drops an empty port ("h:"), which names the same address.
		if !strings.HasSuffix(req.URL.Path, "/ci/api/v1/builds/1/artifacts") || req.URL.Host != strings.TrimSuffix(u.Host, ":") {
			t.Fatalf("request on %q went to %q", u, req.URL)
		}
	})
}
