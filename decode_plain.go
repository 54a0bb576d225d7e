package runnerapi

import (
	"encoding"
	"encoding/json"
	"reflect"
	"sync"
	"sync/atomic"
)

// The plain decoding of an object: most answers hold only known keys, each once and named as the SDK names them,
// with values of the expected shapes. For those, json.Unmarshal into a struct without methods gives what the
// SDK's own decodings (the strict pass of a build's options, the lenient one of a job's objects) give, at the cost
// of one scan to tell that the text is such an object.

// plainShape is what decodePlain knows of a struct type without methods.
type plainShape struct {
	fields *objectFields
	// objects[i] is the shape of the objects that the field fields.list[i] holds, itself or as the elements of a
	// list, when their type is one of lenientObjectTypes; nil for a field encoding/json decodes on its own.
	objects []*plainShape
	list    []bool
	// whole is the type itself with each lenient object's type in it replaced by a struct without methods of the
	// same layout: json.Unmarshal decodes all of it in one pass, where each object's UnmarshalJSON would run a
	// json.Unmarshal of its own (a scan of its text and a decoder). Nil when the type holds no lenient object or
	// its layout could not be matched.
	whole reflect.Type
}

var plainShapes sync.Map // reflect.Type -> *plainShape

// plainShapeOf returns the shape of t, a struct type.
func plainShapeOf(t reflect.Type) *plainShape {
	if s, ok := plainShapes.Load(t); ok {
		return s.(*plainShape)
	}
	s := buildPlainShape(t, map[reflect.Type]bool{})
	stored, _ := plainShapes.LoadOrStore(t, s)
	return stored.(*plainShape)
}

// buildPlainShape builds the shape of struct type t; building holds the types being built around it, so that a
// type that holds itself (through a slice) is decoded as it is inside itself.
func buildPlainShape(t reflect.Type, building map[reflect.Type]bool) *plainShape {
	building[t] = true
	defer delete(building, t)
	fs := objectFieldsOf(t)
	s := &plainShape{fields: fs, objects: make([]*plainShape, len(fs.list)), list: make([]bool, len(fs.list))}
	replaced := map[int]reflect.Type{}
	for i, f := range fs.list {
		ft := t.Field(f.index).Type
		inner, isList := ft, false
		if ft.Kind() == reflect.Slice && !decodesItself(ft) {
			inner, isList = ft.Elem(), true
		}
		if !lenientObjectTypes[inner] || building[inner] {
			continue
		}
		nested := buildPlainShape(inner, building)
		if nested.whole == nil {
			continue // decoded by its UnmarshalJSON, as on its own
		}
		s.objects[i], s.list[i] = nested, isList
		if isList {
			replaced[f.index] = reflect.SliceOf(nested.whole)
		} else {
			replaced[f.index] = nested.whole
		}
	}
	// A lenient object's own type has methods: inside another, it needs a type without them even when nothing in
	// it is replaced. Any other type gains nothing from one then.
	if len(replaced) > 0 || lenientObjectTypes[t] {
		s.whole = plainStructOf(t, replaced)
	}
	return s
}

var (
	unmarshalerType     = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// decodesItself reports whether encoding/json hands a value of type t to a method of its own.
func decodesItself(t reflect.Type) bool {
	p := reflect.PointerTo(t)
	return p.Implements(unmarshalerType) || p.Implements(textUnmarshalerType)
}

// plainStructOf returns a struct type with the fields of t, the types of those in replaced replaced, and no
// methods; nil when t has a field reflect.StructOf cannot make, or the new type's layout is not t's, which
// decodePlain needs to decode into a value of t.
func plainStructOf(t reflect.Type, replaced map[int]reflect.Type) reflect.Type {
	fields := make([]reflect.StructField, t.NumField())
	for i := range fields {
		f := t.Field(i)
		if !f.IsExported() || f.Anonymous {
			return nil
		}
		if r, ok := replaced[i]; ok {
			if r.Size() != f.Type.Size() || r.Align() != f.Type.Align() {
				return nil
			}
			f.Type = r
		}
		fields[i] = reflect.StructField{Name: f.Name, Type: f.Type, Tag: f.Tag}
	}
	p := reflect.StructOf(fields)
	if p.Size() != t.Size() || p.Align() != t.Align() {
		return nil
	}
	for i := range fields {
		if p.Field(i).Offset != t.Field(i).Offset {
			return nil
		}
	}
	return p
}

// The decodings decodePlain may take; tests compare them.
const (
	plainWhole   int32 = iota // the whole value in one pass when every object in it is plain, else as below
	plainShallow              // each object on its own, its lenient objects by their UnmarshalJSON
	plainNever                // never: the callers' own decodings only
)

// plainDecoding is the decoding decodePlain takes: plainWhole but in tests.
var plainDecoding atomic.Int32

// decodePlain decodes data into v, a pointer to a zero struct without methods, when data is an object that holds
// only v's keys, each once and written as v names them, with values that fit; it reports whether it did, and
// leaves v zero when it did not. encoding/json matches keys without regard to case and merges a key given twice,
// where the callers' decodings may not: such objects are theirs to decode.
func decodePlain(data []byte, v any) bool {
	mode := plainDecoding.Load()
	if mode == plainNever {
		return false
	}
	rv := reflect.ValueOf(v).Elem()
	s := plainShapeOf(rv.Type())
	if s.whole != nil && mode == plainWhole && s.holdsOnlyItsKeys(data, true) {
		// The memory is v's: a struct of the same fields at the same offsets, each of the same type or of one
		// built the same way, holds its pointers where v's type does, which is what the garbage collector reads.
		if json.Unmarshal(data, reflect.NewAt(s.whole, rv.Addr().UnsafePointer()).Interface()) == nil {
			return true
		}
		// A value of an unexpected shape somewhere, which the objects' own decodings keep in their Extra.
		rv.SetZero()
	}
	if !s.holdsOnlyItsKeys(data, false) {
		return false
	}
	if json.Unmarshal(data, v) == nil {
		return true
	}
	rv.SetZero()
	return false
}

// holdsOnlyItsKeys reports whether data is one JSON object, white space around it aside, whose keys are all names
// of the shape's fields, each given once and written without escapes; with deep, also whether each lenient object
// in it is null or such an object of its own shape, and each list of them null or an array of those. It reads no
// further than it must; a false answer only costs the caller's own decoding.
func (s *plainShape) holdsOnlyItsKeys(data []byte, deep bool) bool {
	sc := jsonPrefixScanner{data: data}
	if !sc.skipSpace() {
		return false
	}
	end := s.objectEnd(data, sc.pos, deep)
	if end < 0 {
		return false
	}
	sc.pos = end
	return !sc.skipSpace()
}

// objectEnd returns where the object at data[pos] ends when it holds only the shape's keys, as holdsOnlyItsKeys
// says, or -1.
func (s *plainShape) objectEnd(data []byte, pos int, deep bool) int {
	if len(s.fields.list) > 64 || pos >= len(data) || data[pos] != '{' {
		return -1
	}
	var seen uint64
	sc := jsonPrefixScanner{data: data, pos: pos + 1}
	if !sc.skipSpace() {
		return -1
	}
	if data[sc.pos] == '}' {
		return sc.pos + 1
	}
	for {
		// A key: a string without escapes, which must name a field not seen yet.
		if data[sc.pos] != '"' {
			return -1
		}
		start, end := sc.pos+1, -1
		for i := start; i < len(data); i++ {
			if c := data[i]; c == '"' {
				end = i
				break
			} else if c == '\\' {
				return -1
			}
		}
		if end < 0 {
			return -1
		}
		i, ok := s.fields.index[string(data[start:end])]
		if !ok || seen&(1<<i) != 0 {
			return -1
		}
		seen |= 1 << i
		sc.pos = end + 1
		if !sc.skipSpace() || data[sc.pos] != ':' {
			return -1
		}
		sc.pos++
		if !sc.skipSpace() {
			return -1
		}
		switch {
		case deep && s.objects[i] != nil && s.list[i]:
			sc.pos = s.objects[i].listEnd(data, sc.pos)
		case deep && s.objects[i] != nil:
			sc.pos = s.objects[i].objectOrNullEnd(data, sc.pos)
		default:
			sc.pos = skipJSONValue(data, sc.pos)
		}
		if sc.pos < 0 || !sc.skipSpace() {
			return -1
		}
		switch data[sc.pos] {
		case '}':
			return sc.pos + 1
		case ',':
			sc.pos++
			if !sc.skipSpace() {
				return -1
			}
		default:
			return -1
		}
	}
}

// objectOrNullEnd returns where the value at data[pos] ends when it is null or an object of the shape, or -1.
func (s *plainShape) objectOrNullEnd(data []byte, pos int) int {
	if isNullAt(data, pos) {
		return pos + len("null")
	}
	return s.objectEnd(data, pos, true)
}

// listEnd returns where the value at data[pos] ends when it is null or an array of values objectOrNullEnd takes,
// or -1.
func (s *plainShape) listEnd(data []byte, pos int) int {
	if isNullAt(data, pos) {
		return pos + len("null")
	}
	if pos >= len(data) || data[pos] != '[' {
		return -1
	}
	sc := jsonPrefixScanner{data: data, pos: pos + 1}
	if !sc.skipSpace() {
		return -1
	}
	if data[sc.pos] == ']' {
		return sc.pos + 1
	}
	for {
		if sc.pos = s.objectOrNullEnd(data, sc.pos); sc.pos < 0 || !sc.skipSpace() {
			return -1
		}
		switch data[sc.pos] {
		case ']':
			return sc.pos + 1
		case ',':
			sc.pos++
			if !sc.skipSpace() {
				return -1
			}
		default:
			return -1
		}
	}
}

// isNullAt reports whether the literal null starts at data[pos]. What follows it is left to json.Unmarshal, which
// checks the whole text.
func isNullAt(data []byte, pos int) bool {
	return len(data)-pos >= 4 && string(data[pos:pos+4]) == "null"
}

// skipJSONValue returns where the JSON value that starts at data[pos] ends, or -1 when it does not end there or
// nests deeper than maxScanDepth: strings, with their escapes, and nested objects and arrays are skipped whole, a
// number or a literal runs to the next delimiter. It checks no more than that, and copies nothing.
func skipJSONValue(data []byte, pos int) int {
	depth := 0
	for pos < len(data) {
		switch c := data[pos]; c {
		case '"':
			pos++
			for pos < len(data) && data[pos] != '"' {
				if data[pos] == '\\' {
					pos++
				}
				pos++
			}
			if pos >= len(data) {
				return -1
			}
			pos++
		case '{', '[':
			if depth++; depth > maxScanDepth {
				return -1
			}
			pos++
			continue
		case '}', ']':
			if depth == 0 {
				return -1
			}
			depth--
			pos++
		default:
			if depth > 0 {
				pos++
				continue
			}
			start := pos
			for pos < len(data) {
				switch data[pos] {
				case ' ', '\t', '\n', '\r', ',', '}', ']':
					if pos == start {
						return -1
					}
					return pos
				}
				pos++
			}
			return -1
		}
		if depth == 0 {
			return pos
		}
	}
	return -1
}
