package http

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"

	"github.com/holdfast/holdfast"
)

// strictJSON refuses what encoding/json lets through in silence: a field
// named twice (which one wins is not what the client meant to say) and a
// field named in another case ("Quantity" for "quantity"). Syntax errors
// are left to the decoder that follows.
//
// One pass over the bytes, allocating nothing for a well-formed request
// of known fields (it runs before every decode, on every POST): a walk
// with json.Decoder.Token cost more than the decode itself.
func strictJSON(body []byte, t reflect.Type) error {
	w := strictWalk{b: body}
	if err := w.value(t, ""); err != nil && !errors.Is(err, errMalformed) {
		return err
	}
	return nil
}

// errMalformed stops the walk at a syntax error: the decoder reports it.
var errMalformed = errors.New("malformed JSON")

type strictWalk struct {
	b []byte
	i int
}

func (w *strictWalk) space() {
	for w.i < len(w.b) {
		switch w.b[w.i] {
		case ' ', '\t', '\n', '\r':
			w.i++
		default:
			return
		}
	}
}

// empty reports (and walks past) a close right after an opening: {} or [].
func (w *strictWalk) empty(closer byte) bool {
	w.space()
	if w.i < len(w.b) && w.b[w.i] == closer {
		w.i++
		return true
	}
	return false
}

// after walks what follows a member or element: a comma (more follow) or the
// closer (end is true).
func (w *strictWalk) after(closer byte) (end bool, err error) {
	w.space()
	if w.i >= len(w.b) {
		return false, errMalformed
	}
	switch w.b[w.i] {
	case ',':
		w.i++
		return false, nil
	case closer:
		w.i++
		return true, nil
	}
	return false, errMalformed
}

// value walks one value meant for a Go value of type t (nil: anything).
func (w *strictWalk) value(t reflect.Type, path string) error {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	w.space()
	if w.i >= len(w.b) {
		return errMalformed
	}
	switch w.b[w.i] {
	case '{':
		w.i++
		fields := jsonFields(t)
		var seen []string // a request names a handful of fields
		if w.empty('}') {
			return nil
		}
		for {
			w.space()
			raw, err := w.str()
			if err != nil {
				return err
			}
			key := string(raw)
			if strings.IndexByte(key, '\\') >= 0 {
				// An escaped name: the decoder's reading of it.
				if err := json.Unmarshal(append(append([]byte{'"'}, raw...), '"'), &key); err != nil {
					return errMalformed
				}
			}
			for _, k := range seen {
				if k == key {
					return holdfast.Errorf(holdfast.CodeInvalid, "field %q appears twice", path+key)
				}
			}
			seen = append(seen, key)
			var ft reflect.Type
			if fields != nil {
				var ok bool
				if ft, ok = fields[key]; !ok {
					return holdfast.Errorf(holdfast.CodeInvalid, "unknown field %q (field names are lowercase, as documented)", path+key)
				}
			} else if t != nil && t.Kind() == reflect.Map {
				ft = t.Elem()
			}
			w.space()
			if w.i >= len(w.b) || w.b[w.i] != ':' {
				return errMalformed
			}
			w.i++
			if err := w.value(ft, path+key+"."); err != nil {
				return err
			}
			if end, err := w.after('}'); end || err != nil {
				return err
			}
		}
	case '[':
		w.i++
		var et reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			et = t.Elem()
		}
		if w.empty(']') {
			return nil
		}
		for {
			if err := w.value(et, path); err != nil {
				return err
			}
			if end, err := w.after(']'); end || err != nil {
				return err
			}
		}
	case '"':
		_, err := w.str()
		return err
	default:
		// A number, true, false or null. The walk stops at the first
		// syntax error, as the decoder will: a field named twice after
		// it is not reported in its place.
		start := w.i
		for w.i < len(w.b) {
			c := w.b[w.i]
			if c == ',' || c == '}' || c == ']' || c == ':' || c == '"' || c == '{' || c == '[' || c == ' ' || c == '\t' || c == '\n' || c == '\r' {
				break
			}
			w.i++
		}
		switch lit := string(w.b[start:w.i]); {
		case lit == "true", lit == "false", lit == "null", isNumber(lit):
			return nil
		}
		return errMalformed
	}
}

// isNumber reports whether s is a JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func isNumber(s string) bool {
	i := 0
	digits := func() bool {
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		return i > start
	}
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case !digits():
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if !digits() {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if !digits() {
			return false
		}
	}
	return i == len(s)
}

// str walks a string at w.i and returns its bytes between the quotes, as
// written (escapes and all).
func (w *strictWalk) str() ([]byte, error) {
	if w.i >= len(w.b) || w.b[w.i] != '"' {
		return nil, errMalformed
	}
	start := w.i + 1
	for i := start; i < len(w.b); i++ {
		switch c := w.b[i]; {
		case c == '"':
			w.i = i + 1
			return w.b[start:i], nil
		case c < 0x20:
			return nil, errMalformed // a control character must be escaped
		case c == '\\':
			if i+1 >= len(w.b) {
				return nil, errMalformed
			}
			i++
			switch w.b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(w.b) {
					return nil, errMalformed
				}
				if _, ok := hex4(w.b[i+1 : i+5]); !ok {
					return nil, errMalformed
				}
				i += 4
			default:
				return nil, errMalformed
			}
		}
	}
	return nil, errMalformed
}

// fieldsByType caches jsonFields: request types are few and fixed.
var fieldsByType sync.Map // reflect.Type → map[string]reflect.Type

// jsonFields maps a struct's JSON field names to their types; nil when t
// is not a struct (any key goes).
func jsonFields(t reflect.Type) map[string]reflect.Type {
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	if f, ok := fieldsByType.Load(t); ok {
		return f.(map[string]reflect.Type)
	}
	fields := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = f.Type
	}
	fieldsByType.Store(t, fields)
	return fields
}
