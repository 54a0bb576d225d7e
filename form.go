package runnerapi

import "github.com/google/go-querystring/query"

// The forms of register and update, encoded by hand: they are sent on every poll and every state report, and
// go-querystring's reflection cost more allocations than the rest of the request. The bytes are those
// query.Values(form).Encode() gives (keys sorted, escaped as url.QueryEscape does); form_test.go holds them to that.

// formEncoder is a request body that appends its own application/x-www-form-urlencoded encoding to b. ok false
// means it cannot, and NewRequest encodes it through its `url` tags instead.
type formEncoder interface {
	appendForm(b []byte) (out []byte, ok bool)
}

func (f *registerForm) appendForm(b []byte) ([]byte, bool) {
	if f.RegisterOptions == nil {
		// go-querystring then sends an empty "RegisterOptions" field; Register never does this.
		return b, false
	}
	amp := false
	field := func(key, v string) {
		if v == "" {
			return // every field but token is omitempty
		}
		b = appendFormField(b, &amp, key, v)
	}
	in := &f.Info
	field("info%5Barchitecture%5D", in.Architecture)
	field("info%5Bname%5D", in.Name)
	field("info%5Bplatform%5D", in.Platform)
	field("info%5Brevision%5D", in.Revision)
	field("info%5Bversion%5D", in.Version)
	field("last_update", f.LastUpdate)
	b = appendFormField(b, &amp, "token", f.Token)
	return b, true
}

func (f *updateForm) appendForm(b []byte) ([]byte, bool) {
	amp := false
	b = appendFormField(b, &amp, "state", string(f.State))
	b = appendFormField(b, &amp, "token", f.Token)
	if f.Trace != nil {
		b = appendFormField(b, &amp, "trace", *f.Trace)
	}
	return b, true
}

// appendFormField appends key=value, value escaped; key is already escaped. amp says whether a field came before.
func appendFormField(b []byte, amp *bool, key, value string) []byte {
	if *amp {
		b = append(b, '&')
	}
	*amp = true
	b = append(b, key...)
	b = append(b, '=')
	return appendQueryEscape(b, value)
}

// appendQueryEscape appends s escaped as url.QueryEscape escapes it: letters, digits and -_.~ as they are, a space
// as +, every other byte as %XX in upper-case hex.
func appendQueryEscape(b []byte, s string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.', c == '~':
			b = append(b, c)
		case c == ' ':
			b = append(b, '+')
		default:
			b = append(b, '%', hex[c>>4], hex[c&15])
		}
	}
	return b
}

// encode is encodeForm(f), without the interface that would put f on the heap.
func (f *registerForm) encode() ([]byte, error) {
	if b, ok := f.appendForm(make([]byte, 0, 256)); ok {
		return b, nil
	}
	return encodeForm(f)
}

// encode is encodeForm(f), without the interface that would put f on the heap.
func (f *updateForm) encode() []byte {
	b, _ := f.appendForm(make([]byte, 0, 256))
	return b
}

// encodeForm encodes a request body struct as a form: by its own appendForm when it has one, otherwise through its
// `url` tags.
func encodeForm(body any) ([]byte, error) {
	if f, ok := body.(formEncoder); ok {
		if b, ok := f.appendForm(make([]byte, 0, 256)); ok {
			return b, nil
		}
	}
	v, err := query.Values(body)
	if err != nil {
		return nil, err
	}
	return []byte(v.Encode()), nil
}
