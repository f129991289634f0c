package http_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/holdfasttest"
	hfhttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/internal/testrig/pgtest"
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

// A waiting place's stream lives past the request deadline — until the
// place stops waiting — and tells the admission when it comes.
func TestTicketStreamOutlivesTheRequestTimeout(t *testing.T) {
	s := openSQLite(t, t.TempDir()+"/holdfast.db")
	const timeout = 200 * time.Millisecond
	admin := caller{base: serve(t, s, hfhttp.Config{AdminKey: adminKey, RequestTimeout: timeout}).URL, key: adminKey}
	alice := newKey(t, admin, "shop")
	admin.want(t, "POST", "/v1/pools", `{"id":"gala","capacity":5}`, 201, "")
	opens := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	admin.want(t, "POST", "/v1/rooms", `{"id":"r","pools":["gala"],"opens_at":"`+opens+`","admit_per_second":100,"admit_ttl_seconds":60,"max_inside":5}`, 201, "")
	var tk holdfast.RoomTicket
	alice.want(t, "POST", "/v1/rooms/r/join", `{"holder":"a"}`, 202, "").decode(t, &tk)
	req, _ := http.NewRequest("GET", alice.base+"/v1/rooms/r/tickets/"+tk.Ticket+"/stream", nil)
	req.Header.Set("Authorization", "Bearer "+alice.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := make(chan holdfast.RoomTicket, 10)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var got holdfast.RoomTicket
				if json.Unmarshal([]byte(data), &got) == nil {
					events <- got
				}
			}
		}
	}()
	if first := <-events; first.Status != holdfast.TicketWaiting {
		t.Fatalf("first event: %+v", first)
	}
	// The condition under test is time itself: five request deadlines
	// pass while the place waits.
	time.Sleep(5 * timeout)
	holdfasttest.MustExec(t, s, `UPDATE rooms SET opens_at = holdfast_now_ms() - 1000 WHERE id = 'r'`)
	if _, err := s.AdmitRooms(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case got, ok := <-events:
		if !ok || got.Status != holdfast.TicketAdmitted || got.Admission == "" {
			t.Fatalf("after the wait: %+v (stream open: %v), want the admission", got, ok)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no admission on the stream")
	}
}

// One client key may have at most MaxStreamsPerKey streams open, ticket
// streams and event streams together: past it 429 too_many_streams with
// Retry-After; another key, and the admin key, are not held up by it.
func TestStreamsPerKey(t *testing.T) {
	s := openSQLite(t, t.TempDir()+"/holdfast.db")
	admin := caller{base: serve(t, s, hfhttp.Config{AdminKey: adminKey, MaxStreamsPerKey: 3}).URL, key: adminKey}
	alice, bob := newKey(t, admin, "alice"), newKey(t, admin, "bob")
	admin.want(t, "POST", "/v1/pools", `{"id":"gala","capacity":5}`, 201, "")
	opens := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	admin.want(t, "POST", "/v1/rooms", `{"id":"r","pools":["gala"],"opens_at":"`+opens+`","admit_per_second":1,"admit_ttl_seconds":60,"max_inside":1}`, 201, "")
	open := func(c caller, holder string) *http.Response {
		t.Helper()
		var tk holdfast.RoomTicket
		c.want(t, "POST", "/v1/rooms/r/join", `{"holder":"`+holder+`"}`, 202, "").decode(t, &tk)
		req, _ := http.NewRequest("GET", c.base+"/v1/rooms/r/tickets/"+tk.Ticket+"/stream", nil)
		req.Header.Set("Authorization", "Bearer "+c.key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	for i := range 3 {
		if r := open(alice, fmt.Sprint("a", i)); r.StatusCode != 200 {
			t.Fatalf("stream %d: %d", i, r.StatusCode)
		}
	}
	r := open(alice, "a3")
	b, _ := io.ReadAll(r.Body)
	if r.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(b), "too_many_streams") || r.Header.Get("Retry-After") == "" {
		t.Fatalf("a fourth stream of one key: %d %s", r.StatusCode, b)
	}
	if r := open(bob, "b0"); r.StatusCode != 200 {
		t.Fatalf("another key's stream: %d", r.StatusCode)
	}
	for i := range 4 {
		if r := open(admin, fmt.Sprint("adm", i)); r.StatusCode != 200 {
			t.Fatalf("the admin's stream %d: %d", i, r.StatusCode)
		}
	}
}

// Revoking a key ends its open ticket streams on every server, each with
// an event saying why.
func TestRevocationEndsStreams(t *testing.T) {
	s := openSQLite(t, t.TempDir()+"/holdfast.db")
	a := caller{base: serve(t, s, hfhttp.Config{AdminKey: adminKey}).URL, key: adminKey}
	b := caller{base: serve(t, s, hfhttp.Config{AdminKey: adminKey}).URL, key: adminKey}
	alice := newKey(t, a, "alice")
	id := strings.Split(alice.key, "_")[1]
	a.want(t, "POST", "/v1/pools", `{"id":"gala","capacity":5}`, 201, "")
	opens := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	a.want(t, "POST", "/v1/rooms", `{"id":"r","pools":["gala"],"opens_at":"`+opens+`","admit_per_second":1,"admit_ttl_seconds":60,"max_inside":1}`, 201, "")
	var ends []chan string
	for i, srv := range []caller{a, b} {
		var tk holdfast.RoomTicket
		alice.want(t, "POST", "/v1/rooms/r/join", `{"holder":"h`+fmt.Sprint(i)+`"}`, 202, "").decode(t, &tk)
		req, _ := http.NewRequest("GET", srv.base+"/v1/rooms/r/tickets/"+tk.Ticket+"/stream", nil)
		req.Header.Set("Authorization", "Bearer "+alice.key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		end := make(chan string, 1)
		go func() {
			var last string
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				if ev, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
					last = ev
				}
			}
			end <- last
		}()
		ends = append(ends, end)
	}
	a.want(t, "DELETE", "/v1/keys/"+id, "", 200, "")
	for i, end := range ends {
		select {
		case last := <-end:
			if last != "revoked" {
				t.Errorf("stream on server %d ended after %q, want a revoked event", i, last)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("stream on server %d still open after the revocation", i)
		}
	}
}

// A key check the database cannot answer (here: the database is gone)
// is a retryable 503 with Retry-After, never a 500 or a 401.
func TestKeyCheckOnAFailingDatabaseIs503(t *testing.T) {
	s := openSQLite(t, t.TempDir()+"/holdfast.db")
	admin := caller{base: serve(t, s, hfhttp.Config{AdminKey: adminKey}).URL, key: adminKey}
	alice := newKey(t, admin, "alice")
	s.Close()
	r := alice.do(t, "GET", "/v1/pools", "")
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || r.problem(t).Code != holdfast.CodeBusy {
		t.Fatalf("a key check on a closed database: %d %s, want 503 busy with Retry-After", r.status, r.body)
	}
}

// Idempotency records cannot be grown without bound: one key's
// Idempotency-Keys are capped per hour (429 rate_limited with
// Retry-After, never a wrong answer; a request without a key still
// goes), and a refusal's record is kept an hour, not a day.
func TestIdempotencyRecordsAreBounded(t *testing.T) {
	s := openSQLite(t, t.TempDir()+"/holdfast.db")
	admin := caller{base: serve(t, s, hfhttp.Config{AdminKey: adminKey, MaxIdempotencyKeysPerHour: 3}).URL, key: adminKey}
	alice := newKey(t, admin, "alice")
	admin.want(t, "POST", "/v1/pools", `{"id":"p","capacity":1}`, 201, "")
	alice.want(t, "POST", "/v1/holds", `{"holder":"a","lines":[{"pool":"p","quantity":1}]}`, 201, "", "Idempotency-Key", "k1")
	alice.want(t, "POST", "/v1/holds", `{"holder":"b","lines":[{"pool":"p","quantity":1}]}`, 409, holdfast.CodeSoldOut, "Idempotency-Key", "k2")
	alice.want(t, "POST", "/v1/holds", `{"holder":"b","lines":[{"pool":"p","quantity":1}]}`, 409, holdfast.CodeSoldOut, "Idempotency-Key", "k2")
	r := alice.want(t, "POST", "/v1/holds", `{"holder":"c","lines":[{"pool":"p","quantity":1}]}`, 429, hfhttp.CodeRateLimited, "Idempotency-Key", "k4")
	if r.header.Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}
	alice.want(t, "POST", "/v1/holds", `{"holder":"c","lines":[{"pool":"p","quantity":1}]}`, 409, holdfast.CodeSoldOut)
	// Both records exist; two hours on, the refusal's is purged and the
	// success's kept.
	holdfasttest.MustExec(t, s, `UPDATE idempotency_keys SET created_at = created_at - 7200000`)
	if _, err := s.PurgeIdempotency(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := holdfasttest.MustCount(t, s, `SELECT COUNT(*) FROM idempotency_keys WHERE key = 'k2'`); n != 0 {
		t.Fatalf("a refusal's record two hours old was kept")
	}
	if n := holdfasttest.MustCount(t, s, `SELECT COUNT(*) FROM idempotency_keys WHERE key = 'k1'`); n != 1 {
		t.Fatalf("a success's record two hours old was purged")
	}
}

// A frozen database (every process stopped: a paused virtual machine, a
// host cut off without resets) must not keep answers past the request
// timeout: every request answers 503 busy with Retry-After while its
// client still waits, and changes nothing; thawed, the same keys run,
// once each. Claims and changes are batched, and a batch used to run
// under a deadline of its own (30 s), holding every answer in it.
func TestFrozenDatabaseAnswers503(t *testing.T) {
	cl := pgtest.StartCluster(t)
	s := openPostgres(t, cl.Migrated(t, "postgres"))
	base := serve(t, s, hfhttp.Config{AdminKey: adminKey, RequestTimeout: time.Second}).URL
	admin := caller{base: base, key: adminKey}
	admin.want(t, "POST", "/v1/pools", `{"id":"p","capacity":100}`, 201, "")
	h := admin.want(t, "POST", "/v1/holds", `{"holder":"a","lines":[{"pool":"p","quantity":1}]}`, 201, "", "Idempotency-Key", "warm")
	var hold struct{ ID string }
	if err := json.Unmarshal(h.body, &hold); err != nil || hold.ID == "" {
		t.Fatalf("hold: %s", h.body)
	}
	held := hold.ID

	cl.Freeze()
	thawed := false
	defer func() {
		if !thawed {
			cl.Thaw()
		}
	}()
	// A client that gives up long after the request timeout, long before
	// the old batch deadline.
	client := &http.Client{Timeout: 15 * time.Second}
	reqs := []struct{ method, path, body, key string }{
		{"POST", "/v1/holds", `{"holder":"b","lines":[{"pool":"p","quantity":1}]}`, "f1"},
		{"POST", "/v1/holds", `{"holder":"c","lines":[{"pool":"p","quantity":2}]}`, "f2"},
		{"POST", "/v1/bookings", `{"holder":"d","lines":[{"pool":"p","quantity":1}]}`, "f3"},
		{"POST", "/v1/holds/" + held + "/confirm", `{}`, "f4"},
	}
	var wg sync.WaitGroup
	errs := make([]string, len(reqs))
	for i, rq := range reqs {
		wg.Go(func() {
			req, _ := http.NewRequest(rq.method, base+rq.path, strings.NewReader(rq.body))
			req.Header.Set("Authorization", "Bearer "+adminKey)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", rq.key)
			resp, err := client.Do(req)
			if err != nil {
				errs[i] = fmt.Sprintf("%s %s on a frozen database: no answer before the client gave up (request timeout 1 s): %v", rq.method, rq.path, err)
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(b), `"busy"`) {
				errs[i] = fmt.Sprintf("%s %s on a frozen database: %d %s (Retry-After %q), want 503 busy with Retry-After", rq.method, rq.path, resp.StatusCode, b, resp.Header.Get("Retry-After"))
			}
		})
	}
	wg.Wait()
	cl.Thaw()
	thawed = true
	for _, e := range errs {
		if e != "" {
			t.Error(e)
		}
	}
	// Thawed, the same keys run, once each.
	for _, rq := range reqs {
		status := 201
		if strings.HasSuffix(rq.path, "/confirm") {
			status = 200
		}
		for try := 0; ; try++ {
			r := admin.do(t, rq.method, rq.path, rq.body, "Idempotency-Key", rq.key)
			if r.status == status {
				break
			}
			// The pool's connections to the frozen server may still be
			// found broken, and a key still in flight: both say retry.
			if (r.status != http.StatusServiceUnavailable && r.status != http.StatusConflict) || try > 50 {
				t.Fatalf("%s %s after the thaw: %d %s, want %d", rq.method, rq.path, r.status, r.body, status)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if n := holdfasttest.MustCount(t, s, `SELECT COUNT(*) FROM holds`); n != 4 {
		t.Fatalf("%d holds after the thaw, want 4 (the warm-up and three retried once each)", n)
	}
	if n := holdfasttest.MustCount(t, s, `SELECT held + confirmed FROM pools WHERE id = 'p'`); n != 5 {
		t.Fatalf("pool p has %d units taken, want 5", n)
	}
}
