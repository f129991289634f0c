package holdfasttest

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
)

func render(status int) func(any) holdfast.StoredResponse {
	return func(v any) holdfast.StoredResponse {
		b, _ := json.Marshal(v)
		return holdfast.StoredResponse{Status: status, Body: b}
	}
}

func testIdempotencyReplay(t *testing.T, h Harness) {
	skipRemote(t, h)
	s, _ := h.Open(t)
	ctx := ctxT(t)
	MustCreatePool(t, s, "p", 10, 0)
	token, replay, err := s.BeginIdempotent(ctx, "client-a", "k1", "fp-1", time.Minute)
	if err != nil || replay != nil || token == "" {
		t.Fatalf("first Begin: token %q, replay %v, err %v", token, replay, err)
	}
	k := s.Keyed(holdfast.Idempotency{Scope: "client-a", Key: "k1", Token: token, Render: render(201)})
	hd, err := k.Hold(ctx, holdfast.HoldRequest{Holder: "a", Lines: []holdfast.Line{{Pool: "p", Quantity: 2}}})
	answer, recorded := k.Answer()
	if err != nil || !recorded {
		t.Fatalf("Hold with key: %v, recorded %v", err, recorded)
	}
	_, replay, err = s.BeginIdempotent(ctx, "client-a", "k1", "fp-1", time.Minute)
	if err != nil || replay == nil || replay.Status != 201 {
		t.Fatalf("replay: %+v, %v", replay, err)
	}
	var got holdfast.Hold
	if err := json.Unmarshal(replay.Body, &got); err != nil || got.ID != hd.ID {
		t.Fatalf("replayed body names hold %q, want %q (%v)", got.ID, hd.ID, err)
	}
	if string(answer.Body) != string(replay.Body) || answer.Status != replay.Status {
		t.Fatalf("Answer() %d %s, but the key replays %d %s", answer.Status, answer.Body, replay.Status, replay.Body)
	}
	_, _, err = s.BeginIdempotent(ctx, "client-a", "k1", "fp-2", time.Minute)
	wantCode(t, err, holdfast.CodeIdempotencyMismatch, -1)
	// Keys are scoped: another client may use the same key.
	if tok, replay, err := s.BeginIdempotent(ctx, "client-b", "k1", "fp-2", time.Minute); err != nil || replay != nil || tok == "" {
		t.Fatalf("same key, other scope: %q %v %v", tok, replay, err)
	}
	// A refusal is stored too, and replays as the same refusal.
	tok, _, _ := s.BeginIdempotent(ctx, "client-a", "k2", "fp-3", time.Minute)
	if err := s.FinishIdempotent(ctx, "client-a", "k2", "fp-3", tok, holdfast.StoredResponse{Status: 409, Body: []byte(`{"code":"sold_out"}`)}); err != nil {
		t.Fatal(err)
	}
	_, replay, _ = s.BeginIdempotent(ctx, "client-a", "k2", "fp-3", time.Minute)
	if replay == nil || replay.Status != 409 || string(replay.Body) != `{"code":"sold_out"}` {
		t.Fatalf("stored refusal replays as %+v", replay)
	}
	// While the first request runs, a second gets in_flight; once the
	// first is abandoned (no answer worth keeping), a retry runs.
	tok, _, _ = s.BeginIdempotent(ctx, "client-a", "k3", "fp-4", time.Minute)
	_, _, err = s.BeginIdempotent(ctx, "client-a", "k3", "fp-4", time.Minute)
	wantCode(t, err, holdfast.CodeIdempotencyInFlight, -1)
	if err := s.AbandonIdempotent(ctx, "client-a", "k3", tok); err != nil {
		t.Fatal(err)
	}
	if tok2, replay, err := s.BeginIdempotent(ctx, "client-a", "k3", "fp-4", time.Minute); err != nil || replay != nil || tok2 == tok {
		t.Fatalf("after abandon: %q %v %v", tok2, replay, err)
	}
	// Keys are forgotten after IdempotencyTTL: a purge deletes them and
	// the key is new again.
	MustExec(t, s, `UPDATE idempotency_keys SET created_at = created_at - $1 WHERE key = 'k2'`, holdfast.IdempotencyTTL.Milliseconds()+1000)
	if n, err := s.PurgeIdempotency(ctx); err != nil || n != 1 {
		t.Fatalf("PurgeIdempotency: %d, %v; want 1 key purged", n, err)
	}
	if tok, replay, err := s.BeginIdempotent(ctx, "client-a", "k2", "fp-3", time.Minute); err != nil || replay != nil || tok == "" {
		t.Fatalf("a purged key is not new again: %q %v %v", tok, replay, err)
	}
}

// Every change the Keyed contract offers records its answer under the key
// in its own transaction: a change that forgot to would have no Answer and
// no stored reply here.
func testIdempotencyEveryChange(t *testing.T, h Harness) {
	skipRemote(t, h)
	s, _ := h.Open(t)
	ctx := ctxT(t)
	MustCreatePool(t, s, "p", 10, 0)
	MustCreateGroup(t, s, "g", true, "u1")
	held := MustHold(t, s, "a", holdfast.Line{Pool: "p", Quantity: 1})
	toRelease := MustHold(t, s, "a", holdfast.Line{Pool: "p", Quantity: 1})
	toCancel, err := s.Book(ctx, holdfast.HoldRequest{Holder: "a", Lines: []holdfast.Line{{Pool: "p", Quantity: 1}}}, "")
	if err != nil {
		t.Fatal(err)
	}
	toComplete, err := s.Book(ctx, holdfast.HoldRequest{Holder: "a", Lines: []holdfast.Line{{Units: []string{"u1"}}}}, "")
	if err != nil {
		t.Fatal(err)
	}
	toPart := MustHold(t, s, "a", holdfast.Line{Pool: "p", Quantity: 2})
	hook, err := s.CreateWebhook(ctx, holdfast.Webhook{ID: "wh_1", URL: "https://shop.example/hooks", Secret: "whsec_c2VjcmV0"})
	// A store that offers no webhooks (shards, so far) says so.
	webhooks := holdfast.ErrorCode(err) != holdfast.CodeUnsupported
	if err != nil && webhooks {
		t.Fatal(err)
	}
	changes := []struct {
		name string
		do   func(k holdfast.Keyed) error
	}{
		{"CreatePool", func(k holdfast.Keyed) error {
			_, err := k.CreatePool(ctx, holdfast.Pool{ID: "p2", Name: "p2", Capacity: 1})
			return err
		}},
		{"SetCapacity", func(k holdfast.Keyed) error { _, err := k.SetCapacity(ctx, "p", 20); return err }},
		{"CreateGroup", func(k holdfast.Keyed) error {
			_, err := k.CreateGroup(ctx, holdfast.Group{ID: "g2", Name: "g2"})
			return err
		}},
		{"AddUnits", func(k holdfast.Keyed) error { return k.AddUnits(ctx, "g2", []string{"v1"}) }},
		{"Hold", func(k holdfast.Keyed) error {
			_, err := k.Hold(ctx, holdfast.HoldRequest{Holder: "b", Lines: []holdfast.Line{{Pool: "p", Quantity: 1}}})
			return err
		}},
		{"Book", func(k holdfast.Keyed) error {
			_, err := k.Book(ctx, holdfast.HoldRequest{Holder: "b", Lines: []holdfast.Line{{Pool: "p", Quantity: 1}}}, "pay")
			return err
		}},
		{"Extend", func(k holdfast.Keyed) error { _, err := k.Extend(ctx, held.ID, time.Minute); return err }},
		{"Confirm", func(k holdfast.Keyed) error { _, err := k.Confirm(ctx, held.ID, "pay"); return err }},
		{"Release", func(k holdfast.Keyed) error { _, err := k.Release(ctx, toRelease.ID); return err }},
		{"Cancel", func(k holdfast.Keyed) error { _, err := k.Cancel(ctx, toCancel.ID); return err }},
		{"Complete", func(k holdfast.Keyed) error { _, err := k.Complete(ctx, toComplete.ID); return err }},
		{"CreateKey", func(k holdfast.Keyed) error {
			_, err := k.CreateKey(ctx, holdfast.APIKey{ID: "key1", Name: "k", Role: holdfast.RoleClient, Hash: []byte("h")})
			return err
		}},
		{"ConfirmPart", func(k holdfast.Keyed) error {
			_, err := k.ConfirmPart(ctx, toPart.ID, "", []holdfast.PartLine{{Line: 0, Quantity: 1}})
			return err
		}},
		{"SetPoolLateConfirm", func(k holdfast.Keyed) error {
			_, err := k.SetPoolLateConfirm(ctx, "p", holdfast.LateIfAvailable, 60)
			return err
		}},
		{"SetGroupLateConfirm", func(k holdfast.Keyed) error {
			_, err := k.SetGroupLateConfirm(ctx, "g", holdfast.LateIfAvailable, 60)
			return err
		}},
		{"CreateWebhook", func(k holdfast.Keyed) error {
			_, err := k.CreateWebhook(ctx, holdfast.Webhook{ID: "wh_2", URL: "https://shop.example/other", Secret: "whsec_c2VjcmV0"})
			return err
		}},
		{"UpdateWebhook", func(k holdfast.Keyed) error {
			d := "box office"
			_, err := k.UpdateWebhook(ctx, hook.ID, holdfast.WebhookPatch{Description: &d})
			return err
		}},
		{"DeleteWebhook", func(k holdfast.Keyed) error { _, err := k.DeleteWebhook(ctx, "wh_2"); return err }},
	}
	for _, c := range changes {
		if !webhooks && strings.HasSuffix(c.name, "Webhook") {
			continue
		}
		k := s.Keyed(holdfast.Idempotency{Scope: "c", Key: c.name, Token: "t", Deferred: true, Fingerprint: "fp", Render: render(200)})
		if err := c.do(k); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		answer, ok := k.Answer()
		if !ok {
			t.Fatalf("%s through Keyed recorded no answer", c.name)
		}
		_, replay, err := s.BeginIdempotent(ctx, "c", c.name, "fp", time.Minute)
		if err != nil || replay == nil || string(replay.Body) != string(answer.Body) {
			t.Fatalf("%s: the key replays %+v (%v), want the answer %s", c.name, replay, err, answer.Body)
		}
	}
	MustAuditClean(t, s)
}

// A request that stalls past staleAfter loses its key to a retry; when it
// wakes, its change is refused in its own transaction: one effect, not two.
func testIdempotencyTakeover(t *testing.T, h Harness) {
	skipRemote(t, h)
	s, _ := h.Open(t)
	ctx := ctxT(t)
	MustCreatePool(t, s, "p", 10, 0)
	first, _, err := s.BeginIdempotent(ctx, "c", "k", "fp", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	second, replay, err := s.BeginIdempotent(ctx, "c", "k", "fp", 0) // the first counts as stalled
	if err != nil || replay != nil || second == first {
		t.Fatalf("takeover: %q %v %v", second, replay, err)
	}
	req := holdfast.HoldRequest{Holder: "a", Lines: []holdfast.Line{{Pool: "p", Quantity: 1}}}
	_, err = s.Keyed(holdfast.Idempotency{Scope: "c", Key: "k", Token: first, Render: render(201)}).Hold(ctx, req)
	wantCode(t, err, holdfast.CodeIdempotencyInFlight, -1)
	if p := MustPool(t, s, "p"); p.Held != 0 {
		t.Fatalf("the stalled request's hold took effect: %+v", p)
	}
	if _, err := s.Keyed(holdfast.Idempotency{Scope: "c", Key: "k", Token: second, Render: render(201)}).Hold(ctx, req); err != nil {
		t.Fatal(err)
	}
	if p := MustPool(t, s, "p"); p.Held != 1 {
		t.Fatalf("held %d, want exactly 1", p.Held)
	}
	MustAuditClean(t, s)
}

func raceIdempotencySameKey(t *testing.T, h Harness) {
	skipRemote(t, h)
	stores := instances(t, h, 3)
	ctx := ctxT(t)
	MustCreatePool(t, stores[0], "p", 100, 0)
	var mu sync.Mutex
	outcomes := map[string]int{}
	storm(50, func(i int) {
		s := stores[i%len(stores)]
		var what string
		tok, replay, err := s.BeginIdempotent(ctx, "c", "same", "fp", time.Minute)
		switch {
		case err != nil:
			what = string(holdfast.ErrorCode(err))
		case replay != nil:
			what = "replay"
		default:
			_, err := s.Keyed(holdfast.Idempotency{Scope: "c", Key: "same", Token: tok, Render: render(201)}).Hold(ctx,
				holdfast.HoldRequest{Holder: "a", Lines: []holdfast.Line{{Pool: "p", Quantity: 1}}})
			what = "effect:" + string(holdfast.ErrorCode(err))
		}
		mu.Lock()
		outcomes[what]++
		mu.Unlock()
	})
	if outcomes["effect:"] != 1 || outcomes["effect:"]+outcomes["replay"]+outcomes[string(holdfast.CodeIdempotencyInFlight)] != 50 {
		t.Fatalf("outcomes %v: want exactly one effect, the rest replays or in_flight", outcomes)
	}
	if n := MustCount(t, stores[0], `SELECT COUNT(*) FROM holds`); n != 1 {
		t.Fatalf("holds in the database: %d, want 1", n)
	}
	MustAuditClean(t, stores[0])
}

func testKeys(t *testing.T, h Harness) {
	skipRemote(t, h)
	s, _ := h.Open(t)
	ctx := ctxT(t)
	k, err := s.CreateKey(ctx, holdfast.APIKey{ID: "k1", Name: "box office", Role: holdfast.RoleClient, Hash: []byte{1, 2, 3}})
	if err != nil || k.CreatedAt.IsZero() {
		t.Fatalf("CreateKey: %+v, %v", k, err)
	}
	_, err = s.CreateKey(ctx, holdfast.APIKey{ID: "k1", Name: "again", Role: holdfast.RoleClient, Hash: []byte{4}})
	wantCode(t, err, holdfast.CodeConflict, -1)
	_, err = s.CreateKey(ctx, holdfast.APIKey{ID: "k2", Name: "", Role: holdfast.RoleClient})
	wantCode(t, err, holdfast.CodeInvalid, -1)
	got, err := s.APIKey(ctx, "k1")
	if err != nil || got.Name != "box office" || got.Role != holdfast.RoleClient || fmt.Sprint(got.Hash) != "[1 2 3]" {
		t.Fatalf("APIKey: %+v, %v", got, err)
	}
	_, err = s.APIKey(ctx, "nope")
	wantCode(t, err, holdfast.CodeNotFound, -1)
	if got.RevokedAt != nil || got.LastUsedAt != nil {
		t.Fatalf("a new key reads as revoked or used: %+v", got)
	}
	// Use is recorded; revocation is for good, and a second changes nothing.
	if err := s.TouchKey(ctx, "k1"); err != nil {
		t.Fatal(err)
	}
	first, err := s.RevokeKey(ctx, "k1")
	if err != nil || first.RevokedAt == nil || first.LastUsedAt == nil {
		t.Fatalf("RevokeKey: %+v, %v", first, err)
	}
	again, err := s.RevokeKey(ctx, "k1")
	if err != nil || !again.RevokedAt.Equal(*first.RevokedAt) {
		t.Fatalf("revoking twice: %+v, %v (first at %v)", again, err, first.RevokedAt)
	}
	_, err = s.RevokeKey(ctx, "nope")
	wantCode(t, err, holdfast.CodeNotFound, -1)
	if _, err := s.CreateKey(ctx, holdfast.APIKey{ID: "k0", Name: "later", Role: holdfast.RoleClient, Hash: []byte{9}}); err != nil {
		t.Fatal(err)
	}
	keys, err := s.Keys(ctx)
	if err != nil || len(keys) != 2 || keys[0].ID != "k1" || keys[0].RevokedAt == nil || keys[1].RevokedAt != nil {
		t.Fatalf("Keys: %+v, %v", keys, err)
	}
	// Holds remember their owner, and a holder's list can be narrowed to it.
	MustCreatePool(t, s, "p", 5, 0)
	a, _ := s.Hold(ctx, holdfast.HoldRequest{Holder: "x", Owner: "k1", Lines: []holdfast.Line{{Pool: "p", Quantity: 1}}})
	s.Hold(ctx, holdfast.HoldRequest{Holder: "x", Owner: "k2", Lines: []holdfast.Line{{Pool: "p", Quantity: 1}}})
	if g, _ := s.GetHold(ctx, a.ID); g.Owner != "k1" {
		t.Fatalf("owner read back as %q", g.Owner)
	}
	if hs, _ := s.Holds(ctx, "x", "k1"); len(hs) != 1 || hs[0].ID != a.ID {
		t.Fatalf("Holds(x, k1): %+v", hs)
	}
	if hs, _ := s.Holds(ctx, "x", ""); len(hs) != 2 {
		t.Fatalf("Holds(x, any owner): %d, want 2", len(hs))
	}
}

func skipRemote(t *testing.T, h Harness) {
	if h.Remote {
		t.Skip("store internals; the HTTP API tests cover this over the wire")
	}
}

// A deferred key is claimed in the change's own transaction: the first
// request with it takes effect and records its answer; any other with the
// same key — one after, or one in the same batch — changes nothing and
// hears ErrIdempotencyKeyUsed.
func testIdempotencyDeferred(t *testing.T, h Harness) {
	skipRemote(t, h)
	s, _ := h.Open(t)
	ctx := ctxT(t)
	MustCreatePool(t, s, "p", 10, 0)
	deferred := func(key, token string) holdfast.Keyed {
		return s.Keyed(holdfast.Idempotency{Scope: "c", Key: key, Token: token, Deferred: true, Fingerprint: "fp", Render: render(201)})
	}
	req := holdfast.HoldRequest{Holder: "a", Lines: []holdfast.Line{{Pool: "p", Quantity: 1}}}
	first, err := deferred("k", "t1").Hold(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	_, err = deferred("k", "t2").Hold(ctx, req)
	wantCode(t, err, holdfast.CodeIdempotencyKeyUsed, -1)
	_, replay, err := s.BeginIdempotent(ctx, "c", "k", "fp", time.Minute)
	var got holdfast.Hold
	if err != nil || replay == nil || json.Unmarshal(replay.Body, &got) != nil || got.ID != first.ID {
		t.Fatalf("replay of a deferred key: %+v, %v", replay, err)
	}
	// Not coalescible (two lines): the ordinary path claims it the same way.
	two := holdfast.HoldRequest{Holder: "a", Lines: []holdfast.Line{{Pool: "p", Quantity: 1}, {Pool: "q", Quantity: 1}}}
	MustCreatePool(t, s, "q", 10, 0)
	if _, err := deferred("k2", "t1").Hold(ctx, two); err != nil {
		t.Fatal(err)
	}
	_, err = deferred("k2", "t2").Hold(ctx, two)
	wantCode(t, err, holdfast.CodeIdempotencyKeyUsed, -1)
	// A refusal under a deferred key is stored as a new record.
	if err := s.FinishIdempotent(ctx, "c", "k3", "fp", "t1", holdfast.StoredResponse{Status: 409, Body: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	err = s.FinishIdempotent(ctx, "c", "k3", "fp", "t2", holdfast.StoredResponse{Status: 409, Body: []byte("{}")})
	wantCode(t, err, holdfast.CodeIdempotencyKeyUsed, -1)
	want := int64(2)
	if b, ok := s.(Batcher); ok {
		want++
		keys := []*holdfast.Idempotency{
			{Scope: "c", Key: "kb", Token: "t1", Deferred: true, Fingerprint: "fp", Render: render(201)},
			{Scope: "c", Key: "kb", Token: "t2", Deferred: true, Fingerprint: "fp", Render: render(201)},
		}
		_, errs := b.HoldBatch(ctx, []holdfast.HoldRequest{req, req}, keys)
		if errs[0] != nil || holdfast.ErrorCode(errs[1]) != holdfast.CodeIdempotencyKeyUsed {
			t.Fatalf("one deferred key twice in a batch: %v, %v", errs[0], errs[1])
		}
	}
	if p := MustPool(t, s, "p"); p.Held != want {
		t.Fatalf("held %d, want %d (one per key)", p.Held, want)
	}
	MustAuditClean(t, s)
}

// A key's quota counts the tickets and units its holds have held at once:
// a hold that would pass it takes nothing and names the line; confirming,
// releasing and expiring give quota back; a booking counts nothing; the
// audit recounts the counter.
func testKeyQuota(t *testing.T, h Harness) {
	skipRemote(t, h)
	s, _ := h.Open(t)
	ctx := ctxT(t)
	MustCreatePool(t, s, "p", 100, 0)
	MustCreateGroup(t, s, "g", false, "s1", "s2", "s3")
	if _, err := s.CreateKey(ctx, holdfast.APIKey{ID: "k", Name: "box office", Role: holdfast.RoleClient, Hash: []byte{1}, MaxHeldUnits: 4}); err != nil {
		t.Fatal(err)
	}
	hold := func(lines ...holdfast.Line) (holdfast.Hold, error) {
		return s.Hold(ctx, holdfast.HoldRequest{Holder: "anyone", Owner: "key:k", QuotaKey: "k", Lines: lines})
	}
	held := func() int64 {
		k, err := s.APIKey(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		return k.HeldUnits
	}
	a, err := hold(holdfast.Line{Pool: "p", Quantity: 2}, holdfast.Line{Units: []string{"s1"}})
	if err != nil || held() != 3 {
		t.Fatalf("first hold: %v, held %d", err, held())
	}
	// Inventing holder names does not help: the quota is the key's.
	_, err = s.Hold(ctx, holdfast.HoldRequest{Holder: "someone else", Owner: "key:k", QuotaKey: "k",
		Lines: []holdfast.Line{{Group: "g", Any: 1}, {Pool: "p", Quantity: 1}}})
	wantCode(t, err, holdfast.CodeQuotaExceeded, 1)
	if p := MustPool(t, s, "p"); p.Held != 2 || held() != 3 {
		t.Fatalf("a refused hold took something: pool %+v, key held %d", p, held())
	}
	if _, err := s.Book(ctx, holdfast.HoldRequest{Holder: "x", Owner: "key:k", QuotaKey: "k", Lines: []holdfast.Line{{Pool: "p", Quantity: 5}}}, ""); err != nil {
		t.Fatalf("a booking is never held, and counts nothing: %v", err)
	}
	if _, err := s.Confirm(ctx, a.ID, ""); err != nil || held() != 0 {
		t.Fatalf("confirm: %v, held %d, want 0", err, held())
	}
	b, err := hold(holdfast.Line{Pool: "p", Quantity: 4})
	if err != nil {
		t.Fatalf("after confirming, the quota is free: %v", err)
	}
	if _, err := s.Release(ctx, b.ID); err != nil || held() != 0 {
		t.Fatalf("release: %v, held %d", err, held())
	}
	c, err := hold(holdfast.Line{Units: []string{"s2", "s3"}})
	if err != nil {
		t.Fatal(err)
	}
	MustExpire(t, s, c.ID)
	if n, err := s.ExpireDue(ctx, 10); err != nil || n != 1 || held() != 0 {
		t.Fatalf("expiry: %d, %v, held %d", n, err, held())
	}
	// A quota lowered below what is held refuses new holds until enough
	// goes back; 0 lifts it.
	d, _ := hold(holdfast.Line{Pool: "p", Quantity: 3})
	if k, err := s.SetKeyQuota(ctx, "k", 2); err != nil || k.MaxHeldUnits != 2 || k.HeldUnits != 3 {
		t.Fatalf("SetKeyQuota: %+v, %v", k, err)
	}
	_, err = hold(holdfast.Line{Pool: "p", Quantity: 1})
	wantCode(t, err, holdfast.CodeQuotaExceeded, 0)
	if _, err := s.SetKeyQuota(ctx, "k", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := hold(holdfast.Line{Pool: "p", Quantity: 10}); err != nil {
		t.Fatalf("no quota: %v", err)
	}
	if _, err := s.Release(ctx, d.ID); err != nil || held() != 0 {
		t.Fatalf("release after the quota was lifted: %v, held %d", err, held())
	}
	_, err = s.SetKeyQuota(ctx, "nope", 1)
	wantCode(t, err, holdfast.CodeNotFound, -1)
	_, err = s.SetKeyQuota(ctx, "k", -1)
	wantCode(t, err, holdfast.CodeInvalid, -1)
	MustAuditClean(t, s)
}

// Many holds race for one key's quota, from several instances: the key
// never holds more than its quota, and the counter matches its holds.
func raceKeyQuota(t *testing.T, h Harness) {
	skipRemote(t, h)
	stores := instances(t, h, 3)
	ctx := ctxT(t)
	// A seat each: no row but the key's is shared, so only the quota's
	// own lock keeps the count.
	var seats []string
	for i := range 120 {
		seats = append(seats, fmt.Sprintf("s%03d", i))
	}
	MustCreateGroup(t, stores[0], "hall", false, seats...)
	if _, err := stores[0].CreateKey(ctx, holdfast.APIKey{ID: "k", Name: "k", Role: holdfast.RoleClient, Hash: []byte{1}, MaxHeldUnits: 25}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	granted := 0
	storm(120, func(i int) {
		_, err := stores[i%len(stores)].Hold(ctx, holdfast.HoldRequest{Holder: fmt.Sprint("h", i), Owner: "key:k", QuotaKey: "k",
			Lines: []holdfast.Line{{Units: []string{seats[i]}}}})
		switch holdfast.ErrorCode(err) {
		case "":
			mu.Lock()
			granted++
			mu.Unlock()
		case holdfast.CodeQuotaExceeded:
		default:
			t.Errorf("hold: %v", err)
		}
	})
	if granted != 25 {
		t.Fatalf("%d holds granted against a quota of 25", granted)
	}
	if n := MustCount(t, stores[0], `SELECT held_units FROM api_keys WHERE id = 'k'`); n != 25 {
		t.Fatalf("held_units %d, want 25", n)
	}
	MustAuditClean(t, stores[0])
}
