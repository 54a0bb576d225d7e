package runnerapi

import (
	"net/url"
	"strconv"
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

// jobURL resolves the path of a job's endpoint, jobsPath and id, against the API root, as requestURL(base,
// jobsPath+id) does, in one piece: the path is made on every update.
func jobURL(base *url.URL, jobsPath string, id int64) (*url.URL, error) {
	var digits [20]byte
	n := strconv.AppendInt(digits[:0], id, 10)
	if !plainRequestPath(jobsPath) || hasDotSegment(base.Path) || !strings.HasSuffix(jobsPath, "/") {
		return requestURL(base, jobsPath+string(n))
	}
	// The digits (and a minus) need no escaping and make no dot segment: appending them keeps the path plain.
	return &url.URL{Scheme: base.Scheme, User: base.User, Host: base.Host, Path: base.Path + jobsPath + string(n)}, nil
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
