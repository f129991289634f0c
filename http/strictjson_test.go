package http

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/holdfast/holdfast"
)

// The one-pass walk answers as the walk with json.Decoder.Token it
// replaced (kept here as the reference): the same refusal, or none, for
// every body, on the request types the server decodes.
func FuzzStrictWalkMatchesTokenWalk(f *testing.F) {
	for _, seed := range []string{
		`{"holder":"a","lines":[{"pool":"p","quantity":1}]}`,
		`{"holder":"a","holder":"b"}`,
		`{"Holder":"a"}`,
		`{"holder":"a","lines":[{"pool":"p","pool":"q"}]}`,
		`{"holder":"a","lines":[{"pol":"p"}]}`,
		`{"holder":tru,"holder":"b"}`,
		`{"holder":"a\x","holder":"b"}`,
		`{"holder":"\u00e9","ho\u006cder":"b"}`,
		`{"holder":"a","lines":[{"pool":"p","quantity":01}],"holder":"c"}`,
		`{"holder":"a","lines":[{"pool":"p","quantity":-1.5e3}],"holder":"c"}`,
		`{"holder":"a"}{"holder":"a","holder":"b"}`,
		`{"holder":"a",}`, `{"holder" "a"}`, `[1,2,]`, `{"a":{"b":[{"c":1}]}}`,
		`[]`, `null`, `""`, `{`, `}{`, ``, `{"holder":"a\u12"}`, "{\"holder\":\"a\tb\",\"holder\":1}",
	} {
		f.Add(uint8(0), []byte(seed))
		f.Add(uint8(1), []byte(seed))
	}
	types := []reflect.Type{reflect.TypeOf(&holdBody{}), reflect.TypeOf(&map[string]any{})}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		if !utf8.Valid(body) {
			return // decodeJSON refuses it before the walk
		}
		typ := types[int(which)%len(types)]
		got, want := strictJSON(body, typ), tokenWalk(body, typ)
		if errString(got) != errString(want) {
			t.Fatalf("%q: one pass %v, token walk %v", body, got, want)
		}
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func BenchmarkDecodeHoldRequest(b *testing.B) {
	body := []byte(`{"holder":"rider-client-42","ttl_seconds":600,"lines":[{"group":"riders","any":1}]}`)
	b.ReportAllocs()
	for b.Loop() {
		var r holdBody
		if err := decodeJSON(body, &r); err != nil {
			b.Fatal(err)
		}
	}
}

// tokenWalk is the walk strictJSON replaced.
func tokenWalk(body []byte, t reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := tokenValue(dec, t, ""); err != nil && !errors.Is(err, errMalformed) {
		return err
	}
	return nil
}

func tokenValue(dec *json.Decoder, t reflect.Type, path string) error {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	tok, err := dec.Token()
	if err != nil {
		return errMalformed
	}
	switch tok {
	case json.Delim('{'):
		fields := jsonFields(t)
		seen := map[string]bool{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return errMalformed
			}
			key, _ := kt.(string)
			name := path + key
			if seen[key] {
				return holdfast.Errorf(holdfast.CodeInvalid, "field %q appears twice", name)
			}
			seen[key] = true
			var ft reflect.Type
			if fields != nil {
				var ok bool
				if ft, ok = fields[key]; !ok {
					return holdfast.Errorf(holdfast.CodeInvalid, "unknown field %q (field names are lowercase, as documented)", name)
				}
			} else if t != nil && t.Kind() == reflect.Map {
				ft = t.Elem()
			}
			if err := tokenValue(dec, ft, name+"."); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil {
			return errMalformed
		}
	case json.Delim('['):
		var et reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			et = t.Elem()
		}
		for dec.More() {
			if err := tokenValue(dec, et, path); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil {
			return errMalformed
		}
	}
	return nil
}

// The answer to a keyed hold, encoded once per request since the store
// records it (was twice: once to record, once to send).
func BenchmarkEncodeHold(b *testing.B) {
	now := time.Now()
	h := holdfast.Hold{ID: "h_0123456789abcdef", Holder: "rider-client-42", Status: holdfast.StatusHeld, CreatedAt: now, ExpiresAt: now.Add(10 * time.Minute),
		Lines: []holdfast.Line{{Group: "riders", Any: 1, Units: []string{"rider-317"}}}}
	b.ReportAllocs()
	for b.Loop() {
		encode(h)
	}
}
