package runnerapi

// scanTopLevelID finds the number of the top-level "id" member in data, a JSON object that may be cut short
// anywhere. A build whose answer was cut (a dropped connection, a deadline) is assigned all the same, and GitLab's
// entity writes "id" first, so the prefix read usually holds it. It reads tokens, not text, so an "id" inside a
// string or a nested object (a dependency's) is never taken, and a number the cut may have shortened is not
// trusted: it must be followed by what ends it.
func scanTopLevelID(data []byte) (int64, bool) {
	s := jsonPrefixScanner{data: data}
	if !s.skipSpace() || s.data[s.pos] != '{' {
		return 0, false
	}
	s.pos++
	for {
		if !s.skipSpace() {
			return 0, false
		}
		if s.data[s.pos] == '}' {
			return 0, false
		}
		key, ok := s.str()
		if !ok || !s.skipSpace() || s.data[s.pos] != ':' {
			return 0, false
		}
		s.pos++
		if !s.skipSpace() {
			return 0, false
		}
		if key == "id" {
			return s.positiveInt()
		}
		if !s.skipValue() || !s.skipSpace() {
			return 0, false
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
		default: // '}' or anything else: no id
			return 0, false
		}
	}
}

// jsonPrefixScanner reads tokens of a JSON text that may end anywhere. Every method reports false once the text
// ends before what it reads does.
type jsonPrefixScanner struct {
	data []byte
	pos  int
}

// skipSpace moves past white space and reports whether anything follows.
func (s *jsonPrefixScanner) skipSpace() bool {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return true
		}
	}
	return false
}

// str reads a string at pos and returns its text, escapes left as they are except that a key holding any
// escape never equals a plain name such as "id": GitLab writes keys without escapes.
func (s *jsonPrefixScanner) str() (string, bool) {
	if s.pos >= len(s.data) || s.data[s.pos] != '"' {
		return "", false
	}
	start := s.pos + 1
	for i := start; i < len(s.data); i++ {
		switch s.data[i] {
		case '\\':
			i++ // the escaped byte; \uXXXX's digits are plain bytes
		case '"':
			s.pos = i + 1
			return string(s.data[start:i]), true
		}
	}
	return "", false
}

// positiveInt reads a number at pos that is a positive integer fitting an int64 and is followed by the end of
// its value (white space, ',' or '}'): a number at the very end of the text may have been cut short.
func (s *jsonPrefixScanner) positiveInt() (int64, bool) {
	var n int64
	digits := 0
	for ; s.pos < len(s.data); s.pos++ {
		c := s.data[s.pos]
		if c < '0' || c > '9' {
			break
		}
		if n > (1<<63-1-int64(c-'0'))/10 {
			return 0, false
		}
		n = n*10 + int64(c-'0')
		digits++
	}
	if digits == 0 || n == 0 || s.pos >= len(s.data) || (digits > 1 && s.data[s.pos-digits] == '0') {
		return 0, false
	}
	switch s.data[s.pos] {
	case ' ', '\t', '\n', '\r', ',', '}':
		return n, true
	}
	return 0, false
}

// maxScanDepth bounds the nesting skipValue follows; deeper answers are not builds.
const maxScanDepth = 64

// skipValue moves past one value at pos: a string, a nested object or array (with the strings inside it), or a
// number or literal.
func (s *jsonPrefixScanner) skipValue() bool {
	if s.pos >= len(s.data) {
		return false
	}
	switch s.data[s.pos] {
	case '"':
		_, ok := s.str()
		return ok
	case '{', '[':
		depth := 0
		for s.pos < len(s.data) {
			switch s.data[s.pos] {
			case '"':
				if _, ok := s.str(); !ok {
					return false
				}
				continue
			case '{', '[':
				depth++
				if depth > maxScanDepth {
					return false
				}
			case '}', ']':
				depth--
				if depth == 0 {
					s.pos++
					return true
				}
			}
			s.pos++
		}
		return false
	}
	// A number or a literal (true, false, null) runs to the next delimiter.
	start := s.pos
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r', ',', '}', ']':
			return s.pos > start
		}
		s.pos++
	}
	return false
}
