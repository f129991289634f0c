package http_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/holdfasttest"
	hfhttp "github.com/holdfast/holdfast/http"
)

// Every route, with bad bytes in each of its path parameters (NUL,
// invalid UTF-8, a control character) or in a query parameter, answers
// 400 invalid before any database sees them — on PostgreSQL they were a
// 500 (SQLSTATE 22021) on the routes an earlier fix missed.
func TestEveryRouteRefusesBadBytesInThePath(t *testing.T) {
	backends(t, func(t *testing.T, s holdfast.Store) {
		api := hfhttp.NewServer(hfhttp.Config{Store: s, AdminKey: adminKey})
		srv := httptest.NewServer(api)
		t.Cleanup(srv.Close)
		admin := caller{base: srv.URL, key: adminKey}
		param := regexp.MustCompile(`\{[^}]+\}`)
		probes := 0
		for _, p := range api.Patterns() {
			method, path, _ := strings.Cut(p, " ")
			body := ""
			if method == "POST" || method == "PATCH" {
				body = "{}"
			}
			if param.MatchString(path) {
				for _, bad := range []string{"a%00b", "%FF", "x%0Ay"} {
					probe := strings.TrimSuffix(param.ReplaceAllString(path, bad), "{$}")
					if r := admin.do(t, method, probe, body); r.status != 400 || r.problem(t).Code != holdfast.CodeInvalid {
						t.Errorf("%s %s: %d %s, want 400 invalid", method, probe, r.status, r.body)
					}
					probes++
				}
			}
			if method == "GET" {
				probe := param.ReplaceAllString(path, "x") + "?after=a%00b&holder=%FF"
				if r := admin.do(t, method, probe, ""); r.status != 400 || r.problem(t).Code != holdfast.CodeInvalid {
					t.Errorf("%s %s: %d %s, want 400 invalid", method, probe, r.status, r.body)
				}
				probes++
			}
		}
		if probes < 100 {
			t.Fatalf("only %d probes: the routes were not listed", probes)
		}
	})
}

// A JSON body's escapes that decode into what no field may hold — a NUL,
// a lone surrogate (stored as U+FFFD in silence before) — are refused, in
// every field, and change nothing; a real surrogate pair is text.
func TestBodiesRefuseNULAndLoneSurrogates(t *testing.T) {
	backends(t, func(t *testing.T, s holdfast.Store) {
		admin := caller{base: serve(t, s, hfhttp.Config{AdminKey: adminKey}).URL, key: adminKey}
		admin.want(t, "POST", "/v1/pools", `{"id":"p","capacity":5}`, 201, "")
		for _, req := range []struct{ method, path, body string }{
			{"POST", "/v1/holds", `{"holder":"\ud800","lines":[{"pool":"p","quantity":1}]}`},
			{"POST", "/v1/holds", `{"holder":"a\udc00b","lines":[{"pool":"p","quantity":1}]}`},
			{"POST", "/v1/holds", `{"holder":"a\ud800\u0041","lines":[{"pool":"p","quantity":1}]}`},
			{"POST", "/v1/bookings", `{"holder":"a\u0000","lines":[{"pool":"p","quantity":1}]}`},
			{"POST", "/v1/keys", `{"name":"shop \ud800"}`},
			{"POST", "/v1/webhooks", `{"url":"https://shop.example/\ud800","description":"x"}`},
			{"POST", "/v1/webhooks", `{"url":"https://shop.example/hooks","description":"box \udfff office"}`},
			{"POST", "/v1/rooms", `{"id":"r","pools":["p\u0000"],"opens_at":"2030-01-01T00:00:00Z","admit_per_second":1,"admit_ttl_seconds":60,"max_inside":1}`},
			{"POST", "/v1/pools/p/waitlist", `{"holder":"\ud800","quantity":1}`},
		} {
			if r := admin.do(t, req.method, req.path, req.body); r.status != 400 || r.problem(t).Code != holdfast.CodeInvalid {
				t.Errorf("%s %s %s: %d %s, want 400 invalid", req.method, req.path, req.body, r.status, r.body)
			}
		}
		if n := holdfasttest.MustCount(t, s, `SELECT (SELECT COUNT(*) FROM holds) + (SELECT COUNT(*) FROM api_keys) + (SELECT COUNT(*) FROM webhooks) + (SELECT COUNT(*) FROM rooms)`); n != 0 {
			t.Fatalf("refused bodies wrote %d rows", n)
		}
		// A character outside the BMP, written as its surrogate pair, and
		// an escaped backslash before "u0000", are plain text.
		admin.want(t, "POST", "/v1/holds", `{"holder":"fan \ud83c\udfab","lines":[{"pool":"p","quantity":1}]}`, 201, "")
		admin.want(t, "POST", "/v1/keys", `{"name":"a\\u0000 b"}`, 201, "")
	})
}

// An open server (no admin key) answers only to a loopback Host on every
// path — the page, /metrics and /openapi.json too, which a DNS-rebinding
// page could otherwise read.
func TestOpenModeChecksTheHostEverywhere(t *testing.T) {
	s := openSQLite(t, t.TempDir()+"/holdfast.db")
	srv := serve(t, s, hfhttp.Config{})
	for _, path := range []string{"/", "/metrics", "/openapi.json", "/healthz", "/static/app.js", "/nope"} {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.Host = "evil.example:8080"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusMisdirectedRequest {
			t.Errorf("GET %s with a foreign Host: %d %.80s, want 421", path, resp.StatusCode, b)
		}
		if r := (caller{base: srv.URL}).do(t, "GET", path, ""); r.status == http.StatusMisdirectedRequest {
			t.Errorf("GET %s from this machine: 421", path)
		}
	}
}

// A client key sees the hold ids of its own holds in a group's units, and
// only the status of others'; the admin key sees every hold id.
func TestUnitsShowOnlyOwnHoldIDs(t *testing.T) {
	backends(t, func(t *testing.T, s holdfast.Store) {
		admin := caller{base: serve(t, s, hfhttp.Config{AdminKey: adminKey}).URL, key: adminKey}
		alice, bob := newKey(t, admin, "alice"), newKey(t, admin, "bob")
		admin.want(t, "POST", "/v1/groups", `{"id":"hall"}`, 201, "")
		admin.want(t, "POST", "/v1/groups/hall/units", `{"ids":["A-1","A-2","A-3"]}`, 201, "")
		var ha, hb holdfast.Hold
		alice.want(t, "POST", "/v1/holds", `{"holder":"a","lines":[{"units":["A-1"]}]}`, 201, "").decode(t, &ha)
		bob.want(t, "POST", "/v1/holds", `{"holder":"b","lines":[{"units":["A-2"]}]}`, 201, "").decode(t, &hb)
		ids := func(c caller) map[string]string {
			var out struct{ Units []holdfast.Unit }
			c.want(t, "GET", "/v1/groups/hall/units", "", 200, "").decode(t, &out)
			m := map[string]string{}
			for _, u := range out.Units {
				m[u.ID] = string(u.Status) + ":" + u.HoldID
			}
			return m
		}
		if got := ids(alice); got["A-1"] != "held:"+ha.ID || got["A-2"] != "held:" || got["A-3"] != "free:" {
			t.Fatalf("alice sees %v", got)
		}
		if got := ids(bob); got["A-1"] != "held:" || got["A-2"] != "held:"+hb.ID {
			t.Fatalf("bob sees %v", got)
		}
		if got := ids(admin); got["A-1"] != "held:"+ha.ID || got["A-2"] != "held:"+hb.ID {
			t.Fatalf("the admin sees %v", got)
		}
	})
}
