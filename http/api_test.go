package http_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/holdfasttest"
	hfhttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/postgres"
	"github.com/holdfast/holdfast/sqlite"
	"github.com/holdfast/holdfast/webhook"
	"github.com/holdfast/holdfast/webhook/signature"
)

const adminKey = "admin-key-for-tests-0123456789"

// backends runs fn once per backend, each with a fresh database.
func backends(t *testing.T, fn func(t *testing.T, s holdfast.Store)) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		fn(t, openSQLite(t, filepath.Join(t.TempDir(), "holdfast.db")))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		fn(t, openPostgres(t, pg.Migrated(t)))
	})
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) problem(t *testing.T) hfhttp.Problem {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("status %d with Content-Type %q, want application/problem+json; body %s", r.status, ct, r.body)
	}
	var p hfhttp.Problem
	if err := json.Unmarshal(r.body, &p); err != nil || p.Code == "" || p.Status != r.status {
		t.Fatalf("not a problem: %v: %s", err, r.body)
	}
	return p
}

func (r response) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decoding %s: %v", r.body, err)
	}
}

type caller struct {
	base string
	key  string
}

func (c caller) do(t *testing.T, method, path, body string, header ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, b}
}

func (c caller) want(t *testing.T, method, path, body string, status int, code holdfast.Code, header ...string) response {
	t.Helper()
	r := c.do(t, method, path, body, header...)
	if r.status != status {
		t.Fatalf("%s %s %s: got %d %s, want %d", method, path, body, r.status, r.body, status)
	}
	if code != "" {
		if p := r.problem(t); p.Code != code {
			t.Fatalf("%s %s: code %q, want %q", method, path, p.Code, code)
		}
	}
	return r
}

func newKey(t *testing.T, admin caller, name string) caller {
	t.Helper()
	var k struct{ Key string }
	admin.want(t, "POST", "/v1/keys", `{"name":"`+name+`"}`, 201, "").decode(t, &k)
	if !strings.HasPrefix(k.Key, "hf_") {
		t.Fatalf("key %q", k.Key)
	}
	return caller{base: admin.base, key: k.Key}
}

func TestAuthAndOwnership(t *testing.T) {
	backends(t, func(t *testing.T, s holdfast.Store) {
		srv := serve(t, s, hfhttp.Config{AdminKey: adminKey})
		anon := caller{base: srv.URL}
		admin := caller{base: srv.URL, key: adminKey}
		for _, path := range []string{"/healthz", "/readyz", "/metrics", "/openapi.json"} {
			anon.want(t, "GET", path, "", 200, "")
		}
		anon.want(t, "GET", "/v1/pools", "", 401, hfhttp.CodeUnauthorized)
		caller{srv.URL, "wrong"}.want(t, "GET", "/v1/pools", "", 401, hfhttp.CodeUnauthorized)
		caller{srv.URL, "hf_nope_nope"}.want(t, "GET", "/v1/pools", "", 401, hfhttp.CodeUnauthorized)
		admin.want(t, "POST", "/v1/pools", `{"id":"p","capacity":10}`, 201, "")
		a, b := newKey(t, admin, "box office A"), newKey(t, admin, "box office B")
		caller{srv.URL, a.key + "x"}.want(t, "GET", "/v1/pools", "", 401, hfhttp.CodeUnauthorized)
		a.want(t, "POST", "/v1/pools", `{"id":"q","capacity":1}`, 403, hfhttp.CodeForbidden)
		a.want(t, "PATCH", "/v1/pools/p", `{"capacity":1}`, 403, hfhttp.CodeForbidden)
		a.want(t, "POST", "/v1/groups", `{"id":"g"}`, 403, hfhttp.CodeForbidden)
		a.want(t, "POST", "/v1/keys", `{"name":"x"}`, 403, hfhttp.CodeForbidden)
		a.want(t, "GET", "/v1/events", "", 403, hfhttp.CodeForbidden)
		a.want(t, "GET", "/v1/pools/p", "", 200, "")

		var h holdfast.Hold
		a.want(t, "POST", "/v1/holds", `{"holder":"x","lines":[{"pool":"p","quantity":2}]}`, 201, "").decode(t, &h)
		// Another client's hold does not exist for B: 404, not 403.
		b.want(t, "GET", "/v1/holds/"+h.ID, "", 404, holdfast.CodeNotFound)
		for _, action := range []string{"confirm", "release", "cancel", "complete"} {
			b.want(t, "POST", "/v1/holds/"+h.ID+"/"+action, `{}`, 404, holdfast.CodeNotFound)
		}
		b.want(t, "POST", "/v1/holds/"+h.ID+"/extend", `{"ttl_seconds":60}`, 404, holdfast.CodeNotFound)
		var list struct{ Holds []holdfast.Hold }
		b.want(t, "GET", "/v1/holds?holder=x", "", 200, "").decode(t, &list)
		if len(list.Holds) != 0 {
			t.Fatalf("B sees A's holds: %+v", list.Holds)
		}
		a.want(t, "GET", "/v1/holds?holder=x", "", 200, "").decode(t, &list)
		if len(list.Holds) != 1 {
			t.Fatalf("A sees %d of its holds, want 1", len(list.Holds))
		}
		a.want(t, "GET", "/v1/holds/"+h.ID, "", 200, "")
		admin.want(t, "GET", "/v1/holds/"+h.ID, "", 200, "")
		a.want(t, "POST", "/v1/holds/"+h.ID+"/confirm", `{"payment_ref":"pi_1"}`, 200, "")
		if p := holdfasttest.MustPool(t, s, "p"); p.Confirmed != 2 || p.Held != 0 {
			t.Fatalf("B's refused actions changed the pool: %+v", p)
		}
		admin.want(t, "GET", "/v1/events", "", 200, "")
	})
}

func TestIdempotencyOverHTTP(t *testing.T) {
	backends(t, func(t *testing.T, s holdfast.Store) {
		srv := serve(t, s, hfhttp.Config{AdminKey: adminKey})
		admin := caller{base: srv.URL, key: adminKey}
		admin.want(t, "POST", "/v1/pools", `{"id":"p","capacity":100}`, 201, "")
		a := newKey(t, admin, "a")
		body := `{"holder":"x","lines":[{"pool":"p","quantity":1}]}`
		first := a.want(t, "POST", "/v1/holds", body, 201, "", "Idempotency-Key", "k-1")
		again := a.want(t, "POST", "/v1/holds", body, 201, "", "Idempotency-Key", "k-1")
		if !bytes.Equal(first.body, again.body) || again.header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("replay differs:\n%s\n%s", first.body, again.body)
		}
		a.want(t, "POST", "/v1/holds", `{"holder":"y","lines":[{"pool":"p","quantity":1}]}`, 422, hfhttp.CodeIdempotencyMismatch, "Idempotency-Key", "k-1")
		// Keys are per client key: B's k-1 is another key.
		b := newKey(t, admin, "b")
		b.want(t, "POST", "/v1/holds", body, 201, "", "Idempotency-Key", "k-1")
		a.want(t, "POST", "/v1/holds", body, 400, holdfast.CodeInvalid, "Idempotency-Key", strings.Repeat("k", 256))
		a.want(t, "POST", "/v1/holds", body, 400, holdfast.CodeInvalid, "Idempotency-Key", "has space")
		if n := holdfasttest.MustCount(t, s, `SELECT COUNT(*) FROM holds`); n != 2 {
			t.Fatalf("holds: %d, want 2", n)
		}

		// A refusal replays as the same refusal, even once capacity is back.
		admin.want(t, "POST", "/v1/pools", `{"id":"last","capacity":1}`, 201, "")
		var h holdfast.Hold
		admin.want(t, "POST", "/v1/holds", `{"holder":"z","lines":[{"pool":"last","quantity":1}]}`, 201, "").decode(t, &h)
		late := `{"holder":"w","lines":[{"pool":"last","quantity":1}]}`
		a.want(t, "POST", "/v1/holds", late, 409, holdfast.CodeSoldOut, "Idempotency-Key", "k-late")
		admin.want(t, "POST", "/v1/holds/"+h.ID+"/release", "", 200, "")
		r := a.want(t, "POST", "/v1/holds", late, 409, holdfast.CodeSoldOut, "Idempotency-Key", "k-late")
		if r.header.Get("Idempotent-Replayed") != "true" {
			t.Fatal("the sold_out retry ran again instead of replaying")
		}
		a.want(t, "POST", "/v1/holds", late, 201, "", "Idempotency-Key", "k-fresh")

		// 50 requests with one key at once: one effect.
		var mu sync.Mutex
		statuses := map[int]int{}
		var bodies [][]byte
		var wg sync.WaitGroup
		for i := 0; i < 50; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := a.do(t, "POST", "/v1/bookings", `{"holder":"storm","lines":[{"pool":"p","quantity":1}]}`, "Idempotency-Key", "k-storm")
				mu.Lock()
				defer mu.Unlock()
				statuses[r.status]++
				if r.status == 201 {
					bodies = append(bodies, r.body)
				}
			}()
		}
		wg.Wait()
		if statuses[201]+statuses[409] != 50 || statuses[201] == 0 {
			t.Fatalf("statuses %v: want 201s (first and replays) and 409 idempotency_in_flight only", statuses)
		}
		for _, b := range bodies {
			if !bytes.Equal(b, bodies[0]) {
				t.Fatalf("replays differ:\n%s\n%s", b, bodies[0])
			}
		}
		if n := holdfasttest.MustCount(t, s, `SELECT COUNT(*) FROM holds WHERE holder = 'storm'`); n != 1 {
			t.Fatalf("bookings made by one key: %d, want 1", n)
		}
		holdfasttest.MustAuditClean(t, s)
	})
}

// flakyFinish is a store whose FinishIdempotent fails while fail is set:
// the database gone between a change and the write of its refusal.
type flakyFinish struct {
	holdfast.Store
	fail atomic.Bool
}

func (f *flakyFinish) FinishIdempotent(ctx context.Context, scope, key, fp, token string, r holdfast.StoredResponse) error {
	if f.fail.Load() {
		return fmt.Errorf("%w: the database is unreachable: unexpected EOF", holdfast.ErrBusy)
	}
	return f.Store.FinishIdempotent(ctx, scope, key, fp, token, r)
}

// Keyed's view records refusals through f too (the server prefers a
// view's own FinishIdempotent).
func (f *flakyFinish) Keyed(k holdfast.Idempotency) holdfast.Keyed {
	return flakyKeyed{f.Store.Keyed(k), f}
}

type flakyKeyed struct {
	holdfast.Keyed
	f *flakyFinish
}

func (k flakyKeyed) FinishIdempotent(ctx context.Context, scope, key, fp, token string, r holdfast.StoredResponse) error {
	return k.f.FinishIdempotent(ctx, scope, key, fp, token, r)
}

// A keyed cancel that succeeded, its answer lost on the way, comes again
// with its key, and its first run (the key deferred) finds the hold
// cancelled. A change made one by one (a batch that failed whole, as in
// the chaos scenario patroni, or a store that does not batch) writes its
// refusal under the key after. While that write fails, the key is unread
// and "invalid_state" may be the request's own success: the answer is a
// retryable busy, never the refusal; once the database is back the retry
// replays the success.
func TestUncheckedRefusalUnderKeyIsBusy(t *testing.T) {
	s := &flakyFinish{Store: openSQLite(t, filepath.Join(t.TempDir(), "holdfast.db"), sqlite.Options{NoCoalesce: true})}
	srv := serve(t, s, hfhttp.Config{AdminKey: adminKey})
	admin := caller{base: srv.URL, key: adminKey}
	admin.want(t, "POST", "/v1/pools", `{"id":"p","capacity":10}`, 201, "")
	var h holdfast.Hold
	admin.want(t, "POST", "/v1/bookings", `{"holder":"x","lines":[{"pool":"p","quantity":1}]}`, 201, "").decode(t, &h)
	first := admin.want(t, "POST", "/v1/holds/"+h.ID+"/cancel", "", 200, "", "Idempotency-Key", "cancel-1")

	s.fail.Store(true)
	admin.want(t, "POST", "/v1/holds/"+h.ID+"/cancel", "", 503, holdfast.CodeBusy, "Idempotency-Key", "cancel-1")
	// A refusal under a key claimed first is this request's own: it is
	// answered even when it cannot be stored.
	admin.want(t, "POST", "/v1/holds/"+h.ID+"/cancel", "", 409, holdfast.CodeInvalidState)

	s.fail.Store(false)
	again := admin.want(t, "POST", "/v1/holds/"+h.ID+"/cancel", "", 200, "", "Idempotency-Key", "cancel-1")
	if !bytes.Equal(first.body, again.body) || again.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("the retry once the database is back did not replay the cancel:\n%s\n%s", first.body, again.body)
	}
}

func TestInputLimits(t *testing.T) {
	backends(t, func(t *testing.T, s holdfast.Store) {
		srv := serve(t, s, hfhttp.Config{})
		c := caller{base: srv.URL}
		c.want(t, "POST", "/v1/pools", `{"id":"p","capacity":10}`, 201, "")
		c.want(t, "POST", "/v1/groups", `{"id":"g"}`, 201, "")
		c.want(t, "POST", "/v1/groups/g/units", `{"ids":["u1","u2"]}`, 201, "")
		events := holdfasttest.MustCount(t, s, `SELECT COUNT(*) FROM events`)

		big := `{"holder":"x","lines":[{"pool":"p","quantity":1}],"pad":"` + strings.Repeat("x", 2<<20) + `"}`
		c.want(t, "POST", "/v1/holds", big, 413, hfhttp.CodeTooLarge)
		lines := make([]string, 101)
		for i := range lines {
			lines[i] = fmt.Sprintf(`{"pool":"p%d","quantity":1}`, i)
		}
		for _, tc := range []struct {
			name, body string
			line       int
		}{
			{"malformed JSON", `{"holder":`, -1},
			{"not an object", `[1,2]`, -1},
			{"two values", `{"holder":"x","lines":[{"pool":"p","quantity":1}]} {}`, -1},
			{"unknown field", `{"holder":"x","lines":[{"pool":"p","quantity":1}],"price":1}`, -1},
			{"no holder", `{"lines":[{"pool":"p","quantity":1}]}`, -1},
			{"holder too long", `{"holder":"` + strings.Repeat("h", 201) + `","lines":[{"pool":"p","quantity":1}]}`, -1},
			{"no lines", `{"holder":"x","lines":[]}`, -1},
			{"101 lines", `{"holder":"x","lines":[` + strings.Join(lines, ",") + `]}`, -1},
			{"quantity zero", `{"holder":"x","lines":[{"pool":"p","quantity":0}]}`, 0},
			{"quantity fraction", `{"holder":"x","lines":[{"pool":"p","quantity":1.5}]}`, -1},
			{"quantity string", `{"holder":"x","lines":[{"pool":"p","quantity":"1"}]}`, -1},
			{"quantity huge", `{"holder":"x","lines":[{"pool":"p","quantity":99999999999999999999}]}`, -1},
			{"quantity over bound", `{"holder":"x","lines":[{"pool":"p","quantity":1000001}]}`, 0},
			{"mixed forms", `{"holder":"x","lines":[{"pool":"p","quantity":1,"units":["u1"]}]}`, 0},
			{"pool without quantity", `{"holder":"x","lines":[{"pool":"p"}]}`, 0},
			{"group without any", `{"holder":"x","lines":[{"group":"g"}]}`, 0},
			{"unit twice", `{"holder":"x","lines":[{"units":["u1"]},{"units":["u1"]}]}`, 1},
			{"empty units", `{"holder":"x","lines":[{"units":[]}]}`, 0},
			{"bad unit id", `{"holder":"x","lines":[{"units":["a b"]}]}`, 0},
			{"ttl zero", `{"holder":"x","ttl_seconds":0,"lines":[{"pool":"p","quantity":1}]}`, -1},
			{"ttl over max", `{"holder":"x","ttl_seconds":3601,"lines":[{"pool":"p","quantity":1}]}`, -1},
			{"payment_ref on a hold", `{"holder":"x","payment_ref":"pi","lines":[{"pool":"p","quantity":1}]}`, -1},
		} {
			r := c.do(t, "POST", "/v1/holds", tc.body)
			if r.status != 400 {
				t.Errorf("%s: status %d, want 400: %s", tc.name, r.status, r.body)
				continue
			}
			p := r.problem(t)
			got := -1
			if p.Line != nil {
				got = *p.Line
			}
			if p.Code != holdfast.CodeInvalid || got != tc.line {
				t.Errorf("%s: code %q line %d, want invalid line %d", tc.name, p.Code, got, tc.line)
			}
		}
		c.want(t, "POST", "/v1/pools", `{"id":"bad id","capacity":1}`, 400, holdfast.CodeInvalid)
		c.want(t, "POST", "/v1/pools", `{"id":"q"}`, 400, holdfast.CodeInvalid)
		c.want(t, "POST", "/v1/pools", `{"id":"q","capacity":-1}`, 400, holdfast.CodeInvalid)
		c.want(t, "PATCH", "/v1/pools/p", `{}`, 400, holdfast.CodeInvalid)
		c.want(t, "POST", "/v1/groups/g/units", `{"ids":["ok","ok"]}`, 400, holdfast.CodeInvalid)
		c.want(t, "GET", "/v1/groups/g/units?status=sold", "", 400, holdfast.CodeInvalid)
		c.want(t, "GET", "/v1/holds", "", 400, holdfast.CodeInvalid)
		c.want(t, "GET", "/v1/events?after=x", "", 400, holdfast.CodeInvalid)
		c.want(t, "GET", "/v1/events?limit=0", "", 400, holdfast.CodeInvalid)
		if n := holdfasttest.MustCount(t, s, `SELECT COUNT(*) FROM events`); n != events {
			t.Fatalf("bad input changed the database: %d events, had %d", n, events)
		}
		if n := holdfasttest.MustCount(t, s, `SELECT COUNT(*) FROM holds`); n != 0 {
			t.Fatalf("bad input left %d holds", n)
		}
	})
}

func TestEveryRouteAndCode(t *testing.T) {
	backends(t, func(t *testing.T, s holdfast.Store) {
		srv := serve(t, s, hfhttp.Config{})
		c := caller{base: srv.URL}
		c.want(t, "POST", "/v1/pools", `{"id":"p","name":"P","capacity":3,"per_holder_limit":2}`, 201, "")
		c.want(t, "POST", "/v1/pools", `{"id":"p","capacity":3}`, 409, holdfast.CodeConflict)
		c.want(t, "GET", "/v1/pools", "", 200, "")
		c.want(t, "GET", "/v1/pools/nope", "", 404, holdfast.CodeNotFound)
		c.want(t, "PATCH", "/v1/pools/p", `{"capacity":4}`, 200, "")
		c.want(t, "POST", "/v1/groups", `{"id":"fleet","name":"Riders","reusable":true}`, 201, "")
		c.want(t, "POST", "/v1/groups/fleet/units", `{"ids":["r-1","r-2"]}`, 201, "")
		c.want(t, "POST", "/v1/groups/nope/units", `{"ids":["x"]}`, 404, holdfast.CodeNotFound)
		var g holdfast.GroupAvailability
		c.want(t, "GET", "/v1/groups/fleet", "", 200, "").decode(t, &g)
		if g.Free != 2 || !g.Reusable {
			t.Fatalf("group: %+v", g)
		}

		var h holdfast.Hold
		c.want(t, "POST", "/v1/holds", `{"holder":"a","ttl_seconds":60,"lines":[{"pool":"p","quantity":2},{"group":"fleet","any":1}]}`, 201, "").decode(t, &h)
		if h.Status != holdfast.StatusHeld || len(h.Lines) != 2 || len(h.Lines[1].Units) != 1 || h.Lines[0].Quantity != 2 {
			t.Fatalf("hold: %+v", h)
		}
		r := c.want(t, "POST", "/v1/holds", `{"holder":"a","lines":[{"pool":"p","quantity":1}]}`, 409, holdfast.CodeLimitExceeded)
		if p := r.problem(t); p.Line == nil || *p.Line != 0 {
			t.Fatalf("limit_exceeded names no line: %s", r.body)
		}
		c.want(t, "POST", "/v1/holds", `{"holder":"b","lines":[{"pool":"p","quantity":2},{"units":["`+h.Lines[1].Units[0]+`"]}]}`, 409, holdfast.CodeUnavailable)
		c.want(t, "POST", "/v1/holds", `{"holder":"b","lines":[{"pool":"p","quantity":1},{"pool":"nope","quantity":1}]}`, 404, holdfast.CodeNotFound)
		var units struct{ Units []holdfast.Unit }
		c.want(t, "GET", "/v1/groups/fleet/units?status=held", "", 200, "").decode(t, &units)
		if len(units.Units) != 1 || units.Units[0].HoldID != h.ID {
			t.Fatalf("held units: %+v", units)
		}
		c.want(t, "POST", "/v1/holds/"+h.ID+"/extend", `{"ttl_seconds":120}`, 200, "")
		c.want(t, "POST", "/v1/holds/"+h.ID+"/extend", `{}`, 400, holdfast.CodeInvalid)
		c.want(t, "POST", "/v1/holds/"+h.ID+"/confirm", `{"payment_ref":"pi_1"}`, 200, "")
		c.want(t, "POST", "/v1/holds/"+h.ID+"/confirm", ``, 409, holdfast.CodeInvalidState)
		c.want(t, "POST", "/v1/holds/"+h.ID+"/release", ``, 409, holdfast.CodeInvalidState)
		c.want(t, "POST", "/v1/holds/"+h.ID+"/complete", ``, 200, "")
		c.want(t, "POST", "/v1/holds/"+h.ID+"/cancel", ``, 409, holdfast.CodeInvalidState)
		c.want(t, "GET", "/v1/holds/"+h.ID, "", 200, "")
		c.want(t, "GET", "/v1/holds/h_nope", "", 404, holdfast.CodeNotFound)
		c.want(t, "GET", "/v1/holds?holder=a", "", 200, "")

		var bk holdfast.Hold
		c.want(t, "POST", "/v1/bookings", `{"holder":"c","payment_ref":"pi_2","lines":[{"pool":"p","quantity":2}]}`, 201, "").decode(t, &bk)
		if bk.Status != holdfast.StatusConfirmed || bk.PaymentRef != "pi_2" {
			t.Fatalf("booking: %+v", bk)
		}
		c.want(t, "POST", "/v1/bookings", `{"holder":"d","lines":[{"pool":"p","quantity":1}]}`, 409, holdfast.CodeSoldOut)
		c.want(t, "PATCH", "/v1/pools/p", `{"capacity":1}`, 409, holdfast.CodeConflict)
		c.want(t, "POST", "/v1/holds/"+bk.ID+"/cancel", ``, 200, "")

		var ex holdfast.Hold
		c.want(t, "POST", "/v1/holds", `{"holder":"e","lines":[{"pool":"p","quantity":1}]}`, 201, "").decode(t, &ex)
		holdfasttest.MustExpire(t, s, ex.ID)
		c.want(t, "POST", "/v1/holds/"+ex.ID+"/confirm", `{}`, 409, holdfast.CodeHoldExpired)
		c.want(t, "POST", "/v1/holds/"+ex.ID+"/release", `{}`, 409, holdfast.CodeHoldExpired)
		var rel holdfast.Hold
		c.want(t, "POST", "/v1/holds", `{"holder":"f","lines":[{"pool":"p","quantity":1}]}`, 201, "").decode(t, &rel)
		c.want(t, "POST", "/v1/holds/"+rel.ID+"/release", `{}`, 200, "")

		var feed struct {
			Events []holdfast.Event
			Next   string
		}
		// On PostgreSQL the feed stops short of the oldest transaction still
		// running in the cluster (other tests' too): wait for it to catch up.
		for ctx := t.Context(); len(feed.Events) < 3 && ctx.Err() == nil; {
			c.want(t, "GET", "/v1/events?limit=3", "", 200, "").decode(t, &feed)
		}
		if len(feed.Events) != 3 || feed.Next != feed.Events[2].Cursor {
			t.Fatalf("events page: %+v", feed)
		}
		first := feed.Next
		for ctx := t.Context(); ctx.Err() == nil; {
			c.want(t, "GET", "/v1/events?after="+first, "", 200, "").decode(t, &feed)
			if len(feed.Events) > 0 {
				break
			}
		}
		if len(feed.Events) == 0 || feed.Events[0].Seq <= 3 {
			t.Fatalf("next page: %+v", feed.Events)
		}
		c.want(t, "GET", "/v1/nowhere", "", 404, holdfast.CodeNotFound)
		r = c.want(t, "DELETE", "/v1/pools/p", "", 405, hfhttp.CodeMethodNotAllowed)
		if allow := r.header.Get("Allow"); allow != "GET, PATCH" {
			t.Fatalf("Allow: %q", allow)
		}
		holdfasttest.MustAuditClean(t, s)
	})
}

func TestRateLimitAndUnavailable(t *testing.T) {
	s := openSQLite(t, filepath.Join(t.TempDir(), "holdfast.db"))
	srv := serve(t, s, hfhttp.Config{RateLimit: 1})
	c := caller{base: srv.URL}
	c.want(t, "GET", "/v1/pools", "", 200, "")
	c.want(t, "GET", "/v1/pools", "", 200, "")
	r := c.want(t, "GET", "/v1/pools", "", 429, hfhttp.CodeRateLimited)
	if r.header.Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}
	c.want(t, "GET", "/healthz", "", 200, "") // public routes are not limited
	s.Close()
	r = c.want(t, "GET", "/readyz", "", 503, hfhttp.CodeUnavailableService)
	if r.header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
}

func TestMetrics(t *testing.T) {
	s := openSQLite(t, filepath.Join(t.TempDir(), "holdfast.db"))
	srv := serve(t, s, hfhttp.Config{})
	c := caller{base: srv.URL}
	c.want(t, "POST", "/v1/pools", `{"id":"p","capacity":1}`, 201, "")
	c.want(t, "POST", "/v1/holds", `{"holder":"a","lines":[{"pool":"p","quantity":1}]}`, 201, "")
	c.want(t, "POST", "/v1/holds", `{"holder":"b","lines":[{"pool":"p","quantity":1}]}`, 409, holdfast.CodeSoldOut)
	body := string(c.want(t, "GET", "/metrics", "", 200, "").body)
	for _, want := range []string{
		`holdfast_http_requests_total{code="201",route="POST /v1/holds"} 1`,
		`holdfast_http_requests_total{code="409",route="POST /v1/holds"} 1`,
		`holdfast_holds_total{outcome="granted"} 1`,
		`holdfast_holds_total{outcome="sold_out"} 1`,
		`holdfast_http_request_duration_seconds_bucket{route="POST /v1/pools"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// The stored answer of a request that ran must be what the client got,
// and every route that changes the store must record it in the change's
// own transaction (a route that forgot would count in
// holdfast_idempotency_unrecorded_total).
func TestReplayIsByteForByte(t *testing.T) {
	s := openSQLite(t, filepath.Join(t.TempDir(), "holdfast.db"))
	api := hfhttp.NewServer(hfhttp.Config{Store: s})
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	c := caller{base: srv.URL}
	holdfasttest.MustCreatePool(t, s, "q", 10, 0)
	var ids []string
	for range 4 {
		ids = append(ids, holdfasttest.MustHold(t, s, "y", holdfast.Line{Pool: "q", Quantity: 1}).ID)
	}
	for _, id := range ids[2:] {
		if _, err := s.Confirm(context.Background(), id, ""); err != nil {
			t.Fatal(err)
		}
	}
	changes := []struct{ method, path, body string }{
		{"POST", "/v1/pools", `{"id":"p","capacity":5}`},
		{"PATCH", "/v1/pools/{id}", `{"capacity":6}`},
		{"POST", "/v1/pools/{id}/allocations", `{"channel":"presale","quantity":2}`},
		{"POST", "/v1/payments/{ref}/refunded", `{}`},
		{"PATCH", "/v1/pools/{id}/allocations/{channel}", `{"quantity":3}`},
		{"POST", "/v1/groups", `{"id":"g"}`},
		{"POST", "/v1/groups/{id}/units", `{"ids":["u"]}`},
		{"POST", "/v1/groups/{id}/allocations", `{"channel":"presale","units":["aside-1"]}`},
		{"POST", "/v1/bookings", `{"holder":"x","lines":[{"units":["u"]}]}`},
		{"POST", "/v1/holds", `{"holder":"x","lines":[{"pool":"p","quantity":1}]}`},
		{"POST", "/v1/holds/{id}/extend", `{"ttl_seconds":60}`},
		{"POST", "/v1/holds/{id}/confirm", `{}`},
		{"POST", "/v1/holds/{id}/release", `{}`},
		{"POST", "/v1/holds/{id}/cancel", `{}`},
		{"POST", "/v1/holds/{id}/complete", `{}`},
		{"PATCH", "/v1/keys/{id}", `{"max_held_units":5}`},
		{"PATCH", "/v1/groups/{id}", `{"late_confirm":"if_available","late_confirm_grace":30}`},
		{"PATCH", "/v1/webhooks/{id}", `{"description":"box office"}`},
		{"POST", "/v1/webhooks/{id}/deliveries/{delivery}/retry", `{}`},
		{"POST", "/v1/rooms", `{"id":"room","pools":["r"],"opens_at":"2026-01-01T00:00:00Z","admit_per_second":5,"admit_ttl_seconds":60,"max_inside":10}`},
		{"POST", "/v1/rooms/{id}/join", `{"holder":"y"}`},
		{"POST", "/v1/pools/{id}/waitlist", `{"holder":"y","quantity":1}`},
		{"POST", "/v1/groups/{id}/waitlist", `{"holder":"y","any":1}`},
		{"POST", "/v1/holds/{id}/transfer", `{"holder":"yy"}`},
		{"POST", "/v1/holds/{id}/exchange", `{"units":{"xa":"xb"}}`},
		{"POST", "/v1/rooms/{id}/tickets/{ticket}/waitlist", `{"quantity":1}`},
	}
	holdfasttest.MustCreatePool(t, s, "w", 1, 0) // sold out: a waitlist is for what cannot be held
	holdfasttest.MustHold(t, s, "z", holdfast.Line{Pool: "w", Quantity: 1})
	keyID := holdfasttest.MustCreateKey(t, s, "quota-key")
	ctx := context.Background()
	if _, err := s.CreateWebhook(ctx, holdfast.Webhook{ID: "wh_t", URL: "https://shop.example/hooks", Secret: signature.NewSecret()}); err != nil {
		t.Fatal(err)
	}
	holdfasttest.MustCreatePool(t, s, "r", 1, 0)
	if _, err := s.(webhook.Queue).QueueDeliveries(ctx, time.Now(), 10); err != nil {
		t.Fatal(err)
	}
	dls, err := s.Deliveries(ctx, "wh_t", "", "", 0)
	if err != nil || len(dls) != 1 {
		t.Fatalf("deliveries: %v, %v", dls, err)
	}
	// A hold to give away, a seat to exchange, and a place a sold-out
	// room told sold_out, to move to the waitlist.
	given := holdfasttest.MustHold(t, s, "y", holdfast.Line{Pool: "q", Quantity: 1})
	// A payment due back (its hold expired), for the shop to refund.
	late := holdfasttest.MustHold(t, s, "y", holdfast.Line{Pool: "q", Quantity: 1})
	holdfasttest.MustExpire(t, s, late.ID)
	if _, err := s.ConfirmPaid(ctx, late.ID, holdfast.Payment{Ref: "pi_due", Amount: 100, Currency: "EUR"}, nil); holdfast.ErrorCode(err) != holdfast.CodeHoldExpired {
		t.Fatalf("a paid confirm of an expired hold: %v", err)
	}
	holdfasttest.MustCreateGroup(t, s, "xg", false, "xa", "xb")
	holdfasttest.MustCreateGroup(t, s, "ag", false, "aside-1")
	holdfasttest.MustCreateGroup(t, s, "wg", false, "wg-1") // sold out: its waitlist
	holdfasttest.MustHold(t, s, "z", holdfast.Line{Units: []string{"wg-1"}})
	seat := holdfasttest.MustHold(t, s, "y", holdfast.Line{Units: []string{"xa"}})
	holdfasttest.MustCreatePool(t, s, "rw", 1, 0)
	if _, err := s.CreateRoom(ctx, holdfast.Room{ID: "rr", Pools: []string{"rw"}, OpensAt: time.Now().Add(-time.Second), AdmitPerSecond: 10, AdmitTTLSeconds: 60, MaxInside: 1}); err != nil {
		t.Fatal(err)
	}
	var in, out holdfast.RoomTicket
	c.want(t, "POST", "/v1/rooms/rr/join", `{"holder":"a1"}`, 202, "").decode(t, &in)
	c.want(t, "POST", "/v1/rooms/rr/join", `{"holder":"a2"}`, 202, "").decode(t, &out)
	if _, err := s.AdmitRooms(ctx); err != nil {
		t.Fatal(err)
	}
	c.want(t, "GET", "/v1/rooms/rr/tickets/"+in.Ticket, "", 200, "").decode(t, &in)
	c.want(t, "POST", "/v1/bookings", `{"holder":"a1","lines":[{"pool":"rw","quantity":1}]}`, 201, "", "Holdfast-Admission", in.Admission)
	if _, err := s.AdmitRooms(ctx); err != nil { // the sell-out
		t.Fatal(err)
	}
	target := map[string]string{"/v1/holds/{id}/transfer": given.ID, "/v1/holds/{id}/exchange": seat.ID, "/v1/rooms/{id}/tickets/{ticket}/waitlist": "rr",
		"/v1/pools/{id}": "p", "/v1/pools/{id}/allocations": "p", "/v1/pools/{id}/allocations/{channel}": "p", "/v1/groups/{id}/units": "g", "/v1/groups/{id}": "g", "/v1/groups/{id}/allocations": "ag", "/v1/groups/{id}/waitlist": "wg", "/v1/keys/{id}": keyID,
		"/v1/webhooks/{id}": "wh_t", "/v1/webhooks/{id}/deliveries/{delivery}/retry": "wh_t", "/v1/rooms/{id}/join": "room", "/v1/pools/{id}/waitlist": "w",
		"/v1/holds/{id}/extend": ids[0], "/v1/holds/{id}/confirm": ids[0], "/v1/holds/{id}/release": ids[1],
		"/v1/holds/{id}/cancel": ids[2], "/v1/holds/{id}/complete": ids[3]}
	// Creating a key or a webhook answers a secret once: their replays
	// differ on purpose (TestKeySecretNeverStored, TestWebhooksAPI).
	covered := map[string]bool{"POST /v1/keys": true, "POST /v1/lab/race": true, "POST /v1/webhooks": true}
	for i, req := range changes {
		covered[req.method+" "+req.path] = true
		path := strings.Replace(strings.Replace(req.path, "{id}", target[req.path], 1), "{delivery}", dls[0].ID, 1)
		path = strings.Replace(strings.Replace(path, "{ticket}", out.Ticket, 1), "{channel}", "presale", 1)
		path = strings.Replace(path, "{ref}", "pi_due", 1)
		key := fmt.Sprint("key-", i)
		first := c.do(t, req.method, path, req.body, "Idempotency-Key", key)
		again := c.do(t, req.method, path, req.body, "Idempotency-Key", key)
		if first.status != again.status || !bytes.Equal(first.body, again.body) || first.status >= 300 {
			t.Errorf("%s %s: first %d %s, replay %d %s", req.method, path, first.status, first.body, again.status, again.body)
		}
	}
	// A key's secret is never stored: its replay names the key, without it.
	var first, again struct {
		ID  string  `json:"id"`
		Key *string `json:"key"`
	}
	c.want(t, "POST", "/v1/keys", `{"name":"k"}`, 201, "", "Idempotency-Key", "key-k").decode(t, &first)
	r := c.want(t, "POST", "/v1/keys", `{"name":"k"}`, 201, "", "Idempotency-Key", "key-k")
	r.decode(t, &again)
	if first.Key == nil || again.Key != nil || again.ID != first.ID || r.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("POST /v1/keys replay: first %+v, replay %s", first, r.body)
	}
	if n := holdfasttest.MustCount(t, s, `SELECT COUNT(*) FROM idempotency_keys WHERE instr(CAST(body AS TEXT), 'hf_') > 0`); n != 0 {
		t.Errorf("%d stored answers hold a key's secret", n)
	}
	for _, p := range api.Patterns() {
		if (strings.HasPrefix(p, "POST ") || strings.HasPrefix(p, "PATCH ")) && !covered[p] {
			t.Errorf("route %s changes state but is not checked here", p)
		}
	}
	// The race is not idempotent: it refuses the header instead of
	// ignoring it.
	c.want(t, "POST", "/v1/lab/race", "", 400, holdfast.CodeInvalid, "Idempotency-Key", "race-1")
	if m := string(c.want(t, "GET", "/metrics", "", 200, "").body); strings.Contains(m, "holdfast_idempotency_unrecorded_total{") {
		t.Errorf("answers stored after commit:\n%s", m)
	}
}

// A big seat map is counted without listing it, listed a page at a time,
// and read whole in the compact form with an ETag: an unchanged map
// answers 304, a change shows within a moment.
func TestSeatMapPagesAndCompactForm(t *testing.T) {
	backends(t, func(t *testing.T, s holdfast.Store) {
		ctx := context.Background()
		c := caller{base: serve(t, s, hfhttp.Config{AdminKey: adminKey}).URL, key: adminKey}
		c.want(t, "POST", "/v1/groups", `{"id":"hall"}`, 201, "")
		ids := make([]string, 12_000)
		for i := range ids {
			ids[i] = fmt.Sprintf("S-%05d", i)
		}
		for i := 0; i < len(ids); i += 6000 {
			if err := s.AddUnits(ctx, "hall", ids[i:i+6000]); err != nil {
				t.Fatal(err)
			}
		}
		holdfasttest.MustHold(t, s, "a", holdfast.Line{Units: []string{"S-00007", "S-11000"}})

		var g holdfast.GroupAvailability
		c.want(t, "GET", "/v1/groups/hall", "", 200, "").decode(t, &g)
		if g.Units != 12_000 || g.Free != 11_998 || g.Held != 2 || len(g.FreeUnits) != 1000 || g.FreeUnits[7] != "S-00008" {
			t.Fatalf("group: %d units, %d free, %d held, %d free listed", g.Units, g.Free, g.Held, len(g.FreeUnits))
		}

		var total, held int
		for after, pages := "", 0; ; pages++ {
			var page struct {
				Units []holdfast.Unit `json:"units"`
				Next  string          `json:"next"`
			}
			c.want(t, "GET", "/v1/groups/hall/units?after="+after, "", 200, "").decode(t, &page)
			for _, u := range page.Units {
				if u.Status == holdfast.UnitHeld {
					held++
				}
			}
			total += len(page.Units)
			if after = page.Next; after == "" {
				if pages != 2 {
					t.Fatalf("%d pages, want 3 of at most 5,000", pages+1)
				}
				break
			}
		}
		if total != 12_000 || held != 2 {
			t.Fatalf("pages listed %d units, %d held", total, held)
		}
		var only struct{ Units []holdfast.Unit }
		c.want(t, "GET", "/v1/groups/hall/units?status=held&limit=10", "", 200, "").decode(t, &only)
		if len(only.Units) != 2 || only.Units[1].ID != "S-11000" {
			t.Fatalf("held units: %+v", only.Units)
		}

		var m struct {
			Units  int      `json:"units"`
			Status string   `json:"status"`
			IDs    []string `json:"ids"`
		}
		r := c.want(t, "GET", "/v1/groups/hall/units?format=compact&ids=true", "", 200, "")
		r.decode(t, &m)
		if m.Units != 12_000 || len(m.Status) != 12_000 || strings.Count(m.Status, "h") != 2 || m.Status[7] != 'h' || m.IDs[11_000] != "S-11000" {
			t.Fatalf("compact map: %d units, %d held", m.Units, strings.Count(m.Status, "h"))
		}
		r = c.want(t, "GET", "/v1/groups/hall/units?format=compact", "", 200, "")
		etag := r.header.Get("ETag")
		c.want(t, "GET", "/v1/groups/hall/units?format=compact", "", 304, "", "If-None-Match", etag)

		holdfasttest.MustHold(t, s, "b", holdfast.Line{Units: []string{"S-00008"}})
		deadline := time.Now().Add(5 * time.Second)
		for {
			r := c.do(t, "GET", "/v1/groups/hall/units?format=compact", "", "If-None-Match", etag)
			if r.status == 200 {
				r.decode(t, &m)
				if m.Status[8] != 'h' || r.header.Get("ETag") == etag {
					t.Fatalf("changed map: seat 8 is %q, etag %s", m.Status[8], r.header.Get("ETag"))
				}
				break
			}
			if r.status != 304 || time.Now().After(deadline) {
				t.Fatalf("a change to the map still answers %d after 5 s", r.status)
			}
		}

		c.want(t, "GET", "/v1/groups/hall/units?limit=0", "", 400, holdfast.CodeInvalid)
		c.want(t, "GET", "/v1/groups/hall/units?format=xml", "", 400, holdfast.CodeInvalid)
		c.want(t, "GET", "/v1/groups/nope/units?format=compact", "", 404, holdfast.CodeNotFound)
	})
}

// An open server (no admin key) is reachable from any web page the user
// visits: it refuses a Host that is not loopback (DNS rebinding) and
// requests a browser marks as cross-site, and every server refuses a body
// that is not JSON (a form or text/plain POST needs no CORS preflight).
// None of the refused requests changes anything.
func TestOpenModeRefusesBrowsersOfOtherSites(t *testing.T) {
	backends(t, func(t *testing.T, s holdfast.Store) {
		srv := serve(t, s, hfhttp.Config{})
		c := caller{base: srv.URL}
		c.want(t, "POST", "/v1/pools", `{"id":"p","capacity":5}`, 201, "")
		pool := `{"id":"q","capacity":5}`
		for _, tc := range []struct {
			name    string
			header  []string
			status  int
			code    holdfast.Code
			noJSON  bool
			path    string
			method  string
			payload string
		}{
			{name: "rebinding Host", header: []string{"Host", "evil.example:8080"}, status: 421, code: hfhttp.CodeMisdirected},
			{name: "rebinding Host on the stream", header: []string{"Host", "evil.example"}, status: 421, code: hfhttp.CodeMisdirected, method: "GET", path: "/v1/events/stream"},
			{name: "cross-site fetch", header: []string{"Sec-Fetch-Site", "cross-site"}, status: 403, code: hfhttp.CodeCrossSite},
			{name: "foreign Origin", header: []string{"Origin", "https://evil.example"}, status: 403, code: hfhttp.CodeCrossSite},
			{name: "text/plain body", header: []string{"Content-Type", "text/plain"}, status: 415, code: hfhttp.CodeUnsupportedMediaType},
			{name: "form body", header: []string{"Content-Type", "application/x-www-form-urlencoded"}, status: 415, code: hfhttp.CodeUnsupportedMediaType},
		} {
			method, path, payload := cmp.Or(tc.method, "POST"), cmp.Or(tc.path, "/v1/pools"), pool
			if method == "GET" {
				payload = ""
			}
			req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(payload))
			if payload != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			for i := 0; i+1 < len(tc.header); i += 2 {
				if tc.header[i] == "Host" {
					req.Host = tc.header[i+1]
				} else {
					req.Header.Set(tc.header[i], tc.header[i+1])
				}
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			r := response{resp.StatusCode, resp.Header, b}
			if r.status != tc.status || r.problem(t).Code != tc.code {
				t.Errorf("%s: got %d %s, want %d %s", tc.name, r.status, b, tc.status, tc.code)
			}
		}
		// The same-origin page and tools on this machine still work.
		c.want(t, "POST", "/v1/pools", `{"id":"r","capacity":5}`, 201, "", "Sec-Fetch-Site", "same-origin", "Origin", srv.URL)
		if n := holdfasttest.MustCount(t, s, `SELECT COUNT(*) FROM pools WHERE id = 'q'`); n != 0 {
			t.Fatalf("a refused request created pool q")
		}
	})
}

// Identifiers with bytes no id can have (NUL, invalid UTF-8) are refused
// at the edge — 404, 401 or 400 — before the database sees them (on
// PostgreSQL they were a 500, SQLSTATE 22021), with a key or without.
func TestBadBytesNeverAnswer500(t *testing.T) {
	backends(t, func(t *testing.T, s holdfast.Store) {
		srv := serve(t, s, hfhttp.Config{AdminKey: adminKey})
		admin := caller{base: srv.URL, key: adminKey}
		admin.want(t, "POST", "/v1/groups", `{"id":"g"}`, 201, "")
		anon := caller{base: srv.URL}
		for _, bad := range []string{"%00", "%FF", "a%00b", "h_%C0%AF"} {
			for _, req := range []struct {
				c            caller
				method, path string
				body         string
			}{
				{admin, "GET", "/v1/holds/" + bad, ""},
				{admin, "POST", "/v1/holds/" + bad + "/confirm", "{}"},
				{admin, "POST", "/v1/holds/" + bad + "/release", "{}"},
				{admin, "GET", "/v1/pools/" + bad, ""},
				{admin, "GET", "/v1/groups/" + bad, ""},
				{admin, "GET", "/v1/groups/g/units?after=" + bad, ""},
				{admin, "GET", "/v1/holds?holder=" + bad, ""},
				{admin, "GET", "/v1/events?after=" + bad, ""},
				{anon, "GET", "/v1/events/stream?token=hf_" + bad + "_secret", ""},
				{anon, "GET", "/v1/events/stream?token=" + bad + "." + bad, ""},
			} {
				r := req.c.do(t, req.method, req.path, req.body)
				if r.status >= 500 || r.status < 400 {
					t.Errorf("%s %s: %d %s", req.method, req.path, r.status, r.body)
				} else {
					r.problem(t)
				}
			}
		}
		for _, name := range []string{`"a\u0000b"`, "\"\xff\"", `"\u202eevil"`, `"  "`} {
			if r := admin.do(t, "POST", "/v1/keys", `{"name":`+name+`}`); r.status != 400 {
				t.Errorf("key name %s: %d %s, want 400", name, r.status, r.body)
			}
		}
	})
}

// A revoked key answers 401 on every server within a second (each server
// trusts a key it read for at most keyCacheTTL), and the key list shows
// it revoked, never with a secret.
func TestKeyRevocation(t *testing.T) {
	backends(t, func(t *testing.T, s holdfast.Store) {
		a := caller{base: serve(t, s, hfhttp.Config{AdminKey: adminKey}).URL, key: adminKey}
		b := caller{base: serve(t, s, hfhttp.Config{AdminKey: adminKey}).URL, key: adminKey}
		client := newKey(t, a, "box-office")
		onB := caller{base: b.base, key: client.key}
		onB.want(t, "GET", "/v1/pools", "", 200, "") // B has read and cached the key
		id := strings.Split(client.key, "_")[1]
		var revoked struct {
			ID        string     `json:"id"`
			RevokedAt *time.Time `json:"revoked_at"`
		}
		start := time.Now()
		a.want(t, "DELETE", "/v1/keys/"+id, "", 200, "").decode(t, &revoked)
		if revoked.ID != id || revoked.RevokedAt == nil {
			t.Fatalf("DELETE /v1/keys/%s: %+v", id, revoked)
		}
		caller{base: a.base, key: client.key}.want(t, "GET", "/v1/pools", "", 401, hfhttp.CodeUnauthorized)
		// B read the key before start; it may trust that read for a
		// second, never longer: a request sent later than that must fail.
		for {
			sent := time.Now()
			r := onB.do(t, "GET", "/v1/pools", "")
			if r.status == 401 {
				break
			}
			if sent.Sub(start) > 1100*time.Millisecond {
				t.Fatalf("server B accepted the revoked key in a request sent %s after revocation began (%d)", sent.Sub(start), r.status)
			}
			time.Sleep(20 * time.Millisecond) // polling a deadline, not synchronising
		}
		a.want(t, "DELETE", "/v1/keys/nope", "", 404, holdfast.CodeNotFound)
		a.want(t, "DELETE", "/v1/keys/"+id, "", 200, "") // again: no change
		client.want(t, "GET", "/v1/keys", "", 401, hfhttp.CodeUnauthorized)
		list := a.want(t, "GET", "/v1/keys", "", 200, "")
		var keys struct {
			Keys []struct {
				ID         string     `json:"id"`
				LastUsedAt *time.Time `json:"last_used_at"`
				RevokedAt  *time.Time `json:"revoked_at"`
			} `json:"keys"`
		}
		list.decode(t, &keys)
		if len(keys.Keys) != 1 || keys.Keys[0].ID != id || keys.Keys[0].RevokedAt == nil || keys.Keys[0].LastUsedAt == nil {
			t.Fatalf("GET /v1/keys: %s", list.body)
		}
		if secret := strings.Split(client.key, "_")[2]; bytes.Contains(list.body, []byte(secret)) || bytes.Contains(list.body, []byte("hash")) {
			t.Fatalf("GET /v1/keys shows a secret: %s", list.body)
		}
	})
}

// A key's secret appears nowhere in the database after it is created the
// way the CLI creates it (with an Idempotency-Key), nor after a replay.
func TestKeySecretNeverStored(t *testing.T) {
	backends(t, func(t *testing.T, s holdfast.Store) {
		admin := caller{base: serve(t, s, hfhttp.Config{AdminKey: adminKey}).URL, key: adminKey}
		var k struct{ Key string }
		admin.want(t, "POST", "/v1/keys", `{"name":"cli"}`, 201, "", "Idempotency-Key", "create-1").decode(t, &k)
		admin.want(t, "POST", "/v1/keys", `{"name":"cli"}`, 201, "", "Idempotency-Key", "create-1")
		secret := strings.Split(k.Key, "_")[2]
		tables := []string{"api_keys", "idempotency_keys", "events", "pools", "holds"}
		for _, table := range tables {
			// Every column as text (bytea as hex on PostgreSQL, blobs as
			// text on SQLite): the secret in any encoding a column holds.
			n := holdfasttest.MustCount(t, s, `SELECT COUNT(*) FROM `+table+` t WHERE `+rowText(s, table)+` LIKE $1`, "%"+secret+"%")
			if n != 0 {
				t.Errorf("the key's secret is stored in %s", table)
			}
		}
	})
}

// rowText is SQL for a whole row of table as text, on s's backend.
func rowText(s holdfast.Store, table string) string {
	if _, ok := s.(*postgres.Store); ok {
		return "CAST(t AS text)"
	}
	cols := map[string]string{
		"api_keys":         "id || name || role || CAST(hash AS TEXT)",
		"idempotency_keys": "scope || key || fingerprint || token || COALESCE(CAST(body AS TEXT), '')",
		"events":           "type || COALESCE(hold_id, '') || COALESCE(subject, '') || data",
		"pools":            "id || name",
		"holds":            "id || holder || payment_ref || owner",
	}
	return "(" + cols[table] + ")"
}

// The decoder is strict: a field named twice or in another case is refused
// with a message naming it, and nothing changes.
func TestStrictJSON(t *testing.T) {
	s := openSQLite(t, filepath.Join(t.TempDir(), "holdfast.db"))
	c := caller{base: serve(t, s, hfhttp.Config{}).URL}
	c.want(t, "POST", "/v1/pools", `{"id":"p","capacity":5}`, 201, "")
	for body, want := range map[string]string{
		`{"holder":"a","holder":"b","lines":[{"pool":"p","quantity":1}]}`:         `field "holder" appears twice`,
		`{"holder":"a","lines":[{"pool":"p","quantity":1,"quantity":5}]}`:         `field "lines.quantity" appears twice`,
		`{"Holder":"a","lines":[{"pool":"p","quantity":1}]}`:                      `unknown field "Holder"`,
		`{"holder":"a","lines":[{"pool":"p","QUANTITY":1}]}`:                      `unknown field "lines.QUANTITY"`,
		`{"holder":"a","lines":[{"pool":"p","quantity":"one"}]}`:                  `quantity" must be an integer`,
		`{"holder":"a","lines":[{"pool":"p","quantity":1}],"ttl_seconds":"soon"}`: `"ttl_seconds" must be`,
	} {
		r := c.want(t, "POST", "/v1/holds", body, 400, holdfast.CodeInvalid)
		if p := r.problem(t); !strings.Contains(p.Detail, want) || strings.Contains(p.Detail, "int64") {
			t.Errorf("%s: detail %q, want it to say %s (and no Go type)", body, p.Detail, want)
		}
	}
	if n := holdfasttest.MustCount(t, s, `SELECT COUNT(*) FROM holds`); n != 0 {
		t.Fatalf("refused bodies made %d holds", n)
	}
}

// The per-address limit counts before authentication: failed logins and
// probes are limited too, and a limited address gets 429 with Retry-After.
func TestIPRateLimit(t *testing.T) {
	s := openSQLite(t, filepath.Join(t.TempDir(), "holdfast.db"))
	srv := serve(t, s, hfhttp.Config{AdminKey: adminKey, IPRateLimit: 1})
	bad := caller{base: srv.URL, key: "hf_guess_guess"}
	bad.want(t, "GET", "/v1/pools", "", 401, hfhttp.CodeUnauthorized)
	bad.want(t, "GET", "/v1/pools", "", 401, hfhttp.CodeUnauthorized)
	r := bad.want(t, "GET", "/v1/pools", "", 429, hfhttp.CodeRateLimited)
	if r.header.Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}
	caller{base: srv.URL}.want(t, "GET", "/readyz", "", 429, hfhttp.CodeRateLimited)
}

// A client key's quota of held units, set by the admin at creation or
// later: a hold past it answers 409 quota_exceeded naming the line and
// takes nothing, whatever holder names the client invents; confirming
// frees quota.
func TestKeyQuota(t *testing.T) {
	backends(t, func(t *testing.T, s holdfast.Store) {
		admin := caller{base: serve(t, s, hfhttp.Config{AdminKey: adminKey}).URL, key: adminKey}
		admin.want(t, "POST", "/v1/pools", `{"id":"p","capacity":100,"per_holder_limit":2}`, 201, "")
		admin.want(t, "POST", "/v1/pools", `{"id":"q","capacity":100}`, 201, "")
		var k struct {
			ID           string `json:"id"`
			Key          string `json:"key"`
			MaxHeldUnits int64  `json:"max_held_units"`
		}
		admin.want(t, "POST", "/v1/keys", `{"name":"shop","max_held_units":3}`, 201, "").decode(t, &k)
		if k.MaxHeldUnits != 3 {
			t.Fatalf("created key: %+v", k)
		}
		shop := caller{base: admin.base, key: k.Key}
		var first struct{ ID string }
		shop.want(t, "POST", "/v1/holds", `{"holder":"a","lines":[{"pool":"p","quantity":2}]}`, 201, "").decode(t, &first)
		r := shop.want(t, "POST", "/v1/holds", `{"holder":"invented","lines":[{"pool":"q","quantity":1},{"pool":"p","quantity":1}]}`, 409, holdfast.CodeQuotaExceeded)
		if p := r.problem(t); p.Line == nil || *p.Line != 1 {
			t.Fatalf("quota_exceeded names line %v, want 1: %s", p.Line, r.body)
		}
		// The per-holder limit's refusal names no count of anyone's.
		r = shop.want(t, "POST", "/v1/holds", `{"holder":"a","lines":[{"pool":"p","quantity":1}]}`, 409, holdfast.CodeLimitExceeded)
		if p := r.problem(t); strings.Contains(p.Detail, "has 2") {
			t.Fatalf("the limit's refusal tells a count: %s", p.Detail)
		}
		shop.want(t, "POST", "/v1/holds/"+first.ID+"/confirm", `{}`, 200, "")
		shop.want(t, "POST", "/v1/holds", `{"holder":"b","lines":[{"pool":"p","quantity":2}]}`, 201, "")
		admin.want(t, "PATCH", "/v1/keys/"+k.ID, `{"max_held_units":10}`, 200, "")
		admin.want(t, "PATCH", "/v1/keys/"+k.ID, `{"max_held_units":-1}`, 400, holdfast.CodeInvalid)
		admin.want(t, "PATCH", "/v1/keys/nope", `{"max_held_units":1}`, 404, holdfast.CodeNotFound)
		shop.want(t, "PATCH", "/v1/keys/"+k.ID, `{"max_held_units":100}`, 403, hfhttp.CodeForbidden)
		// Every server applies a new quota within a second.
		deadline := time.Now().Add(3 * time.Second)
		for shop.do(t, "POST", "/v1/holds", `{"holder":"c","lines":[{"pool":"p","quantity":2}]}`).status != 201 {
			if time.Now().After(deadline) {
				t.Fatal("the raised quota never applied")
			}
			time.Sleep(50 * time.Millisecond) // polling a deadline
		}
		holdfasttest.MustAuditClean(t, s)
	})
}

// After a purge, the feed and the stream answer a cursor from before the
// purged events with 410 cursor_expired, never skipping them in silence.
func TestFeedCursorExpired(t *testing.T) {
	s := openSQLite(t, filepath.Join(t.TempDir(), "holdfast.db"))
	c := caller{base: serve(t, s, hfhttp.Config{}).URL}
	c.want(t, "POST", "/v1/pools", `{"id":"p","capacity":5}`, 201, "")
	c.want(t, "POST", "/v1/holds", `{"holder":"a","lines":[{"pool":"p","quantity":1}]}`, 201, "")
	holdfasttest.MustExec(t, s, `UPDATE events SET at = at - $1`, (40 * 24 * time.Hour).Milliseconds())
	if rep, err := s.Purge(context.Background(), holdfast.Retention{Events: 30 * 24 * time.Hour}); err != nil || rep.Events != 2 {
		t.Fatalf("purge: %+v, %v", rep, err)
	}
	c.want(t, "GET", "/v1/events?after=0.1", "", 410, holdfast.CodeCursorExpired)
	c.want(t, "GET", "/v1/events/stream", "", 410, holdfast.CodeCursorExpired, "Last-Event-ID", "0.1")
	c.want(t, "GET", "/v1/events", "", 200, "")
}

// Refusals under keys decided in a batch are recorded by the batch's own
// transaction: replayed byte for byte, and still refused after the seat
// and the tickets came back (guarantee 8) — a refusal not recorded would
// now run again and succeed.
func TestBatchedRefusalsAreRecorded(t *testing.T) {
	backends(t, func(t *testing.T, s holdfast.Store) {
		srv := httptest.NewServer(hfhttp.NewServer(hfhttp.Config{Store: s}))
		t.Cleanup(srv.Close)
		holdfasttest.MustCreateGroup(t, s, "hall", false, "s1")
		holdfasttest.MustCreatePool(t, s, "few", 3, 0)
		const n = 40
		type answer struct {
			status int
			body   []byte
		}
		post := func(key, body string) (answer, error) {
			req, _ := http.NewRequest("POST", srv.URL+"/v1/holds", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", key)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return answer{}, err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			return answer{resp.StatusCode, b}, err
		}
		bodies := map[string]string{}
		for i := range n {
			bodies[fmt.Sprint("seat-", i)] = fmt.Sprintf(`{"holder":"b%d","lines":[{"units":["s1"]}]}`, i)
			bodies[fmt.Sprint("ticket-", i)] = fmt.Sprintf(`{"holder":"b%d","lines":[{"pool":"few","quantity":1}]}`, i)
		}
		first := map[string]answer{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make(chan error, len(bodies))
		for key, body := range bodies {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				a, err := post(key, body)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				first[key] = a
				mu.Unlock()
			}()
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		granted := map[string]int{}
		var holds []string
		for key, a := range first {
			kind, _, _ := strings.Cut(key, "-")
			switch a.status {
			case http.StatusCreated:
				granted[kind]++
				var h holdfast.Hold
				if err := json.Unmarshal(a.body, &h); err != nil {
					t.Fatal(err)
				}
				holds = append(holds, h.ID)
			case http.StatusConflict:
			default:
				t.Fatalf("%s: %d %s", key, a.status, a.body)
			}
		}
		if granted["seat"] != 1 || granted["ticket"] != 3 {
			t.Fatalf("granted %v, want 1 seat and 3 tickets", granted)
		}
		// Everything comes back; every refusal must stay a refusal.
		for _, id := range holds {
			if _, err := s.Release(context.Background(), id); err != nil {
				t.Fatal(err)
			}
		}
		for key, a := range first {
			again, err := post(key, bodies[key])
			if err != nil {
				t.Fatal(err)
			}
			if again.status != a.status || !bytes.Equal(again.body, a.body) {
				t.Errorf("%s: first %d %s, replay %d %s", key, a.status, a.body, again.status, again.body)
			}
		}
		if got := holdfasttest.MustCount(t, s, `SELECT COUNT(*) FROM idempotency_keys WHERE state = 'done'`); got != 2*n {
			t.Errorf("%d keys recorded, want %d", got, 2*n)
		}
	})
}
