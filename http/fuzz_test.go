package http_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/holdfasttest"
	hfhttp "github.com/holdfast/holdfast/http"
)

// fuzzRoutes are the routes whose bodies the fuzzer feeds.
var fuzzRoutes = []struct{ method, path string }{
	{"POST", "/v1/holds"},
	{"POST", "/v1/bookings"},
	{"POST", "/v1/pools"},
	{"PATCH", "/v1/pools/p"},
	{"POST", "/v1/groups"},
	{"POST", "/v1/groups/g/units"},
	{"POST", "/v1/holds/h_x/extend"},
	{"POST", "/v1/holds/h_x/confirm"},
}

// FuzzRequestDecoders sends arbitrary bodies to the routes that decode
// JSON. Every answer must be a success or a 4xx problem+json — never a 5xx
// or a stack trace — and a refused request must change nothing. The seed
// corpus runs in every normal test run.
func FuzzRequestDecoders(f *testing.F) {
	for _, seed := range []string{
		`{"holder":"a","lines":[{"pool":"p","quantity":1}]}`,
		`{"holder":"a","lines":[{"units":["u1","u2"]},{"group":"g","any":1}]}`,
		`{"holder":"a","lines":[{"pool":"p","quantity":1},{"pool":"p","quantity":1}]}`,
		`{"holder":"a","lines":[{"units":["u1","u1"]}]}`,
		`{"holder":"a","lines":[{"pool":"p","quantity":1e400}]}`,
		`{"holder":"a","lines":[{"pool":"p","quantity":-9223372036854775808}]}`,
		`{"holder":"a","lines":[{"pool":"p","quantity":9223372036854775807}]}`,
		`{"holder":"\u0000","lines":[{"pool":"p","quantity":1}]}`,
		`{"holder":"日本語のホルダー","lines":[{"pool":"p","quantity":1}]}`,
		`{"holder":"\ud800","lines":[{"pool":"p","quantity":1}]}`,
		`{"holder":"a","ttl_seconds":-1,"lines":[{"pool":"p","quantity":1}]}`,
		`{"holder":"a","lines":null}`,
		`{"holder":"a","lines":[null]}`,
		`{"holder":"a","lines":[{}]}`,
		`{"id":"p","capacity":1,"per_holder_limit":1}`,
		`{"id":"../../etc","capacity":1}`,
		`{"capacity":18446744073709551616}`,
		`{"ids":["a","b",""]}`,
		`{"ttl_seconds":60}`,
		`{"payment_ref":"` + strings.Repeat("é", 300) + `"}`,
		`{"id":"g","reusable":"yes"}`,
		`[]`, `null`, `""`, `{`, `}{`, ``, "\xff\xfe", `{"a":1}{"b":2}`,
	} {
		for i := range fuzzRoutes {
			f.Add(uint8(i), []byte(seed))
		}
	}
	s := openSQLite(f, filepath.Join(f.TempDir(), "holdfast.db"))
	holdfasttest.MustCreatePool(f, s, "p", 1000, 0)
	holdfasttest.MustCreateGroup(f, s, "g", false, "u1", "u2", "u3")
	h := hfhttp.NewServer(hfhttp.Config{Store: s})
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		rt := fuzzRoutes[int(route)%len(fuzzRoutes)]
		before := holdfasttest.MustCount(t, s, `SELECT COUNT(*) FROM events`)
		req := httptest.NewRequest(rt.method, rt.path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Host = "127.0.0.1" // an open server answers loopback names only
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		switch {
		case w.Code >= 200 && w.Code < 300:
			if !json.Valid(w.Body.Bytes()) {
				t.Fatalf("%s %s %q: %d with invalid JSON %q", rt.method, rt.path, body, w.Code, w.Body)
			}
		case w.Code >= 400 && w.Code < 500:
			if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("%s %s %q: %d as %q", rt.method, rt.path, body, w.Code, ct)
			}
			var p hfhttp.Problem
			if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p.Code == "" || p.Status != w.Code {
				t.Fatalf("%s %s %q: bad problem %q", rt.method, rt.path, body, w.Body)
			}
			if after := holdfasttest.MustCount(t, s, `SELECT COUNT(*) FROM events`); after != before {
				t.Fatalf("%s %s %q: refused with %s but wrote %d events", rt.method, rt.path, body, p.Code, after-before)
			}
		default:
			t.Fatalf("%s %s %q: status %d %q", rt.method, rt.path, body, w.Code, w.Body)
		}
		if w.Code == http.StatusCreated && rt.path == "/v1/pools" {
			holdfasttest.MustAuditClean(t, s)
		}
	})
}
