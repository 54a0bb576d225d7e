package runnerapi

import (
	"net/url"
	"strings"
)

// requestURL resolves path against the API root, as base.Parse(path) does, without parsing the paths the SDK
// builds itself ("builds/register", "builds/42/trace.txt"): parsing and resolving made a sixth of a small call's
// CPU time. Any other path, or a root holding dot segments, takes base.Parse.
func requestURL(base *url.URL, path string) (*url.URL, error) {
	if !plainRequestPath(path) || hasDotSegment(base.Path) {
		return base.Parse(path)
	}
	return &url.URL{Scheme: base.Scheme, User: base.User, Host: base.Host, Path: base.Path + path}, nil
}

// plainRequestPath reports whether path is relative, made of letters, digits, "-", "_", ".", "~" and "/" (which
// need no escaping), and free of "." and ".." segments: resolving it against a root ending in "/" is appending.
func plainRequestPath(path string) bool {
	if path == "" || path[0] == '/' || hasDotSegment(path) {
		return false
	}
	for i := 0; i < len(path); i++ {
		switch c := path[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.', c == '~', c == '/':
		default:
			return false
		}
	}
	return true
}

// hasDotSegment reports whether a "/"-separated path has a segment "." or "..", which resolving would remove.
func hasDotSegment(path string) bool {
	for path != "" {
		seg, rest, _ := strings.Cut(path, "/")
		if seg == "." || seg == ".." {
			return true
		}
		path = rest
	}
	return false
}
