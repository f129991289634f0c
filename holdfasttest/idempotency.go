package holdfasttest

import (
	"context"
	"encoding/json"
	"fmt"
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
	i := &holdfast.Idempotency{Scope: "client-a", Key: "k1", Token: token, Render: render(201)}
	hd, err := s.Hold(holdfast.WithIdempotency(ctx, i), holdfast.HoldRequest{Holder: "a", Lines: []holdfast.Line{{Pool: "p", Quantity: 2}}})
	if err != nil || !i.Recorded() {
		t.Fatalf("Hold with key: %v, recorded %v", err, i.Recorded())
	}
	_, replay, err = s.BeginIdempotent(ctx, "client-a", "k1", "fp-1", time.Minute)
	if err != nil || replay == nil || replay.Status != 201 {
		t.Fatalf("replay: %+v, %v", replay, err)
	}
	var got holdfast.Hold
	if err := json.Unmarshal(replay.Body, &got); err != nil || got.ID != hd.ID {
		t.Fatalf("replayed body names hold %q, want %q (%v)", got.ID, hd.ID, err)
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
	_, err = s.Hold(holdfast.WithIdempotency(ctx, &holdfast.Idempotency{Scope: "c", Key: "k", Token: first, Render: render(201)}), req)
	wantCode(t, err, holdfast.CodeIdempotencyInFlight, -1)
	if p := MustPool(t, s, "p"); p.Held != 0 {
		t.Fatalf("the stalled request's hold took effect: %+v", p)
	}
	if _, err := s.Hold(holdfast.WithIdempotency(ctx, &holdfast.Idempotency{Scope: "c", Key: "k", Token: second, Render: render(201)}), req); err != nil {
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
			_, err := s.Hold(holdfast.WithIdempotency(ctx, &holdfast.Idempotency{Scope: "c", Key: "same", Token: tok, Render: render(201)}),
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
	deferred := func(key, token string) context.Context {
		return holdfast.WithIdempotency(ctx, &holdfast.Idempotency{Scope: "c", Key: key, Token: token, Deferred: true, Fingerprint: "fp", Render: render(201)})
	}
	req := holdfast.HoldRequest{Holder: "a", Lines: []holdfast.Line{{Pool: "p", Quantity: 1}}}
	first, err := s.Hold(deferred("k", "t1"), req)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Hold(deferred("k", "t2"), req)
	wantCode(t, err, holdfast.CodeIdempotencyKeyUsed, -1)
	_, replay, err := s.BeginIdempotent(ctx, "c", "k", "fp", time.Minute)
	var got holdfast.Hold
	if err != nil || replay == nil || json.Unmarshal(replay.Body, &got) != nil || got.ID != first.ID {
		t.Fatalf("replay of a deferred key: %+v, %v", replay, err)
	}
	// Not coalescible (two lines): the ordinary path claims it the same way.
	two := holdfast.HoldRequest{Holder: "a", Lines: []holdfast.Line{{Pool: "p", Quantity: 1}, {Pool: "q", Quantity: 1}}}
	MustCreatePool(t, s, "q", 10, 0)
	if _, err := s.Hold(deferred("k2", "t1"), two); err != nil {
		t.Fatal(err)
	}
	_, err = s.Hold(deferred("k2", "t2"), two)
	wantCode(t, err, holdfast.CodeIdempotencyKeyUsed, -1)
	// A refusal under a deferred key is stored as a new record.
	if err := s.FinishIdempotent(ctx, "c", "k3", "fp", "t1", holdfast.StoredResponse{Status: 409, Body: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	err = s.FinishIdempotent(ctx, "c", "k3", "fp", "t2", holdfast.StoredResponse{Status: 409, Body: []byte("{}")})
	wantCode(t, err, holdfast.CodeIdempotencyKeyUsed, -1)
	if b, ok := s.(Batcher); ok {
		keys := []*holdfast.Idempotency{
			{Scope: "c", Key: "kb", Token: "t1", Deferred: true, Fingerprint: "fp", Render: render(201)},
			{Scope: "c", Key: "kb", Token: "t2", Deferred: true, Fingerprint: "fp", Render: render(201)},
		}
		_, errs := b.HoldBatch(ctx, []holdfast.HoldRequest{req, req}, keys)
		if errs[0] != nil || holdfast.ErrorCode(errs[1]) != holdfast.CodeIdempotencyKeyUsed {
			t.Fatalf("one deferred key twice in a batch: %v, %v", errs[0], errs[1])
		}
	}
	if p := MustPool(t, s, "p"); p.Held != 3 {
		t.Fatalf("held %d, want 3 (one per key)", p.Held)
	}
	MustAuditClean(t, s)
}
