package http_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
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

// FuzzHandler sends arbitrary requests — any method, path, query, headers
// and body, with the admin key, a client key, a bad key or none — to the
// whole handler. Every answer must be a success or a problem+json with a
// code, never a 5xx but a retryable 503, and the database's counters must
// audit clean after every request. The seeds run in every test run;
// scripts/test.sh fuzzes it for a bounded time.
func FuzzHandler(f *testing.F) {
	methods := []string{"GET", "POST", "PATCH", "DELETE", "PUT", "HEAD", "OPTIONS"}
	for _, seed := range []struct {
		method uint8
		path   string
		key    uint8
		ctype  string
		header string
		body   string
	}{
		{1, "/v1/holds", 0, "application/json", "", `{"holder":"a","lines":[{"pool":"p","quantity":1}]}`},
		{1, "/v1/holds", 1, "application/json", "Idempotency-Key: k1", `{"holder":"a","lines":[{"units":["u1"]}]}`},
		{1, "/v1/bookings", 1, "application/json", "", `{"holder":"a","lines":[{"group":"g","any":2}]}`},
		{0, "/v1/holds/h_x", 1, "", "", ``},
		{0, "/v1/holds?holder=%00", 1, "", "", ``},
		{1, "/v1/holds/%FF/confirm", 0, "application/json", "", `{}`},
		{3, "/v1/keys/%00", 0, "", "", ``},
		{1, "/v1/keys", 0, "application/json", "Idempotency-Key: \x00", `{"name":"x"}`},
		{2, "/v1/pools/p", 0, "application/json", "", `{"capacity":-1}`},
		{0, "/v1/groups/g/units?format=compact&ids=true", 1, "", "If-None-Match: *", ``},
		{0, "/v1/events?after=1.2&limit=0", 0, "", "", ``},
		{0, "/v1/events/stream?after=999.999", 2, "", "", ``},
		{1, "/v1/pools", 3, "text/plain", "Origin: https://evil.example", `{"id":"q","capacity":1}`},
		{4, "/../../etc/passwd", 0, "", "", ``},
		{1, "/v1/holds", 0, "application/json; charset=utf-8", "", `{"holder":"a","holder":"b"}`},
		{0, "/v1/audit", 1, "", "", ``},
		{0, "/v1/rooms/a%00b", 0, "", "", ``},
		{1, "/v1/rooms/a%00b/join", 1, "application/json", "", `{"holder":"a"}`},
		{0, "/v1/rooms/r/tickets/%FF", 1, "", "", ``},
		{0, "/v1/pools/p/waitlist/wl%00", 1, "", "", ``},
		{3, "/v1/pools/p/waitlist/%C0%AF", 1, "", "", ``},
		{0, "/v1/pools/%00/waitlist", 0, "", "", ``},
		{0, "/v1/webhooks/wh%00/deliveries?status=%FF", 0, "", "", ``},
		{1, "/v1/rooms", 0, "application/json", "", `{"id":"r","pools":["g\u0000"],"opens_at":"2030-01-01T00:00:00Z","admit_per_second":1,"admit_ttl_seconds":60,"max_inside":1}`},
		{1, "/v1/pools/p/waitlist", 1, "application/json", "", `{"holder":"\ud800","quantity":1}`},
	} {
		f.Add(seed.method, seed.path, seed.key, seed.ctype, seed.header, []byte(seed.body))
	}
	// Every input goes to a server on SQLite and one on PostgreSQL: bad
	// bytes that SQLite stores as text fail inside PostgreSQL.
	type target struct {
		s      holdfast.Store
		h      http.Handler
		client string
	}
	var targets []target
	for _, s := range []holdfast.Store{openSQLite(f, filepath.Join(f.TempDir(), "holdfast.db")), openPostgres(f, pg.Migrated(f))} {
		holdfasttest.MustCreatePool(f, s, "p", 1000, 5)
		holdfasttest.MustCreateGroup(f, s, "g", true, "u1", "u2", "u3")
		h := hfhttp.NewServer(hfhttp.Config{Store: s, AdminKey: adminKey, RequestTimeout: 5 * time.Second})
		// A client key, made through the API as a user would.
		kreq := httptest.NewRequest("POST", "/v1/keys", strings.NewReader(`{"name":"fuzz"}`))
		kreq.Header.Set("Authorization", "Bearer "+adminKey)
		kreq.Header.Set("Content-Type", "application/json")
		kw := httptest.NewRecorder()
		h.ServeHTTP(kw, kreq)
		var k struct{ Key string }
		if err := json.Unmarshal(kw.Body.Bytes(), &k); err != nil || k.Key == "" {
			f.Fatalf("client key: %d %s", kw.Code, kw.Body)
		}
		targets = append(targets, target{s, h, k.Key})
	}
	f.Fuzz(func(t *testing.T, method uint8, path string, key uint8, ctype, header string, body []byte) {
		if !strings.HasPrefix(path, "/") || strings.HasSuffix(path, "/stream") || strings.Contains(path, "/stream?") {
			return // streams run until the client leaves: the stream tests cover them
		}
		for _, tg := range targets {
			fuzzOne(t, tg.s, tg.h, methods[int(method)%len(methods)], path, []string{adminKey, tg.client, "hf_nope_nope", ""}[int(key)%4], ctype, header, body)
		}
	})
}

// fuzzOne sends one fuzzed request to h and checks the answer and the
// audit of s.
func fuzzOne(t *testing.T, s holdfast.Store, h http.Handler, method, path, key, ctype, header string, body []byte) {
	req, err := http.NewRequest(method, "http://127.0.0.1"+path, bytes.NewReader(body))
	if err != nil {
		return // not a request a client can send
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if name, value, ok := strings.Cut(header, ": "); ok && name != "" && !strings.ContainsAny(name+value, "\r\n\x00") {
		req.Header.Set(name, value)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	switch {
	case w.Code == http.StatusServiceUnavailable || w.Code == http.StatusNotModified:
	case w.Code >= 500:
		t.Fatalf("%s %s: %d %s", req.Method, path, w.Code, w.Body)
	case w.Code >= 400:
		var p hfhttp.Problem
		if req.Method == "HEAD" {
			break
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" || json.Unmarshal(w.Body.Bytes(), &p) != nil || p.Code == "" {
			t.Fatalf("%s %s: %d as %q without a problem code: %q", req.Method, path, w.Code, ct, w.Body)
		}
	}
	holdfasttest.MustAuditClean(t, s)
}
