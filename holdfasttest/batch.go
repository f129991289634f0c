package holdfasttest

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
)

// Batcher is a store that can decide one-line holds on a pool as one
// batch (coalescing); the suite drives it directly to make a batch
// straddle the last units.
type Batcher interface {
	HoldBatch(ctx context.Context, rs []holdfast.HoldRequest, keys []*holdfast.Idempotency) ([]holdfast.Hold, []error)
}

// openBatcher opens a store the suite can hand batches to directly, or
// skips the test.
func openBatcher(t *testing.T, h Harness) (holdfast.Store, Batcher) {
	skipRemote(t, h)
	s, _ := h.Open(t)
	b, ok := s.(Batcher)
	if !ok {
		t.Skip("store does not batch")
	}
	return s, b
}

// A batch that straddles the last units answers each request exactly as
// one-by-one holds in arrival order would: grants while capacity lasts,
// per-holder limits before capacity, idempotency keys recorded inside the
// batch (and a key a retry took over takes no effect).
func testBatchStraddlesLastUnits(t *testing.T, h Harness) {
	s, b := openBatcher(t, h)
	ctx := ctxT(t)
	MustCreatePool(t, s, "p", 5, 2)
	line := func(holder string, q int64) holdfast.HoldRequest {
		return holdfast.HoldRequest{Holder: holder, Lines: []holdfast.Line{{Pool: "p", Quantity: q}}}
	}
	key := func(k string) *holdfast.Idempotency {
		tok, _, err := s.BeginIdempotent(ctx, "c", k, "fp-"+k, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return &holdfast.Idempotency{Scope: "c", Key: k, Token: tok, Render: render(201)}
	}
	stale := key("k7")
	if _, _, err := s.BeginIdempotent(ctx, "c", "k7", "fp-k7", 0); err != nil { // a retry takes k7 over
		t.Fatal(err)
	}
	reqs := []holdfast.HoldRequest{line("a", 1), line("g", 1), line("b", 2), line("a", 2), line("c", 1), line("d", 2), line("e", 1), line("f", 1)}
	keys := []*holdfast.Idempotency{key("k0"), stale, nil, nil, key("k4"), nil, nil, nil}
	holds, errs := b.HoldBatch(ctx, reqs, keys)
	want := []holdfast.Code{"", holdfast.CodeIdempotencyInFlight, "", holdfast.CodeLimitExceeded, "", holdfast.CodeSoldOut, "", holdfast.CodeSoldOut}
	for i, w := range want {
		if got := holdfast.ErrorCode(errs[i]); got != w {
			t.Errorf("request %d (%s×%d): got %q (%v), want %q", i, reqs[i].Holder, reqs[i].Lines[0].Quantity, got, errs[i], w)
		}
	}
	if p := MustPool(t, s, "p"); p.Held != 5 || p.Available != 0 {
		t.Fatalf("pool after the batch: %+v", p)
	}
	for _, i := range []int{0, 4} {
		_, replay, err := s.BeginIdempotent(ctx, "c", keys[i].Key, "fp-"+keys[i].Key, time.Minute)
		var got holdfast.Hold
		if err != nil || replay == nil || json.Unmarshal(replay.Body, &got) != nil || got.ID != holds[i].ID {
			t.Fatalf("key %s: replay %+v, %v; want hold %s", keys[i].Key, replay, err, holds[i].ID)
		}
	}
	if n := MustCount(t, s, `SELECT COUNT(*) FROM holds WHERE holder = 'g'`); n != 0 {
		t.Fatalf("the request whose key was taken over took effect")
	}
	MustAuditClean(t, s)
	if st, ok := s.(statser); ok && st.Stats().Batches == 0 && st.Stats().BatchedClaims > 0 {
		t.Fatal("claims were batched without a batch")
	}
}

// Consecutive batches grant in arrival order: when capacity runs out in
// one batch, no claim of a later batch was granted, even where the
// backend lets the next batch start before the one before it commits.
func testBatchesGrantInArrivalOrder(t *testing.T, h Harness) {
	s, b := openBatcher(t, h)
	ctx := ctxT(t)
	const capacity, claims = 300, 520 // three batches; capacity ends in the second
	for round := range 3 {
		pool := fmt.Sprintf("order-%d", round)
		MustCreatePool(t, s, pool, capacity, 0)
		rs := make([]holdfast.HoldRequest, claims)
		for i := range rs {
			rs[i] = holdfast.HoldRequest{Holder: fmt.Sprintf("h%d", i), Lines: []holdfast.Line{{Pool: pool, Quantity: 1}}}
		}
		_, errs := b.HoldBatch(ctx, rs, nil)
		for i, err := range errs {
			want := holdfast.Code("")
			if i >= capacity {
				want = holdfast.CodeSoldOut
			}
			if got := holdfast.ErrorCode(err); got != want {
				t.Fatalf("round %d: claim %d of %d (capacity %d): got %q (%v), want %q", round, i, claims, capacity, got, err, want)
			}
		}
	}
	MustAuditClean(t, s)
	if st, ok := s.(statser); ok && st.Stats().BatchedClaims > 0 && st.Stats().Batches < 3 {
		t.Fatalf("%d batches: the test needs several", st.Stats().Batches)
	}
}

// A sold-out answer given from memory turns correct the moment capacity
// comes back: release, cancel, a capacity raise — on this store or on
// another instance, where no invalidation reaches it (a remembered
// sold_out with a time bound fails here; the answer must be fresh).
func testSoldOutTurnsCorrect(t *testing.T, h Harness) {
	s, another := h.Open(t)
	ctx := ctxT(t)
	MustCreatePool(t, s, "p", 1, 0)
	one := func(holder string) holdfast.HoldRequest {
		return holdfast.HoldRequest{Holder: holder, Lines: []holdfast.Line{{Pool: "p", Quantity: 1}}}
	}
	soldOut := func() {
		t.Helper()
		for i := 0; i < 3; i++ { // the first answer fills the cache, the next come from it
			_, err := s.Hold(ctx, one("late"))
			wantCode(t, err, holdfast.CodeSoldOut, 0)
		}
	}
	a := MustHold(t, s, "a", holdfast.Line{Pool: "p", Quantity: 1})
	soldOut()
	if _, err := s.Release(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	b, err := s.Book(ctx, one("b"), "")
	if err != nil {
		t.Fatalf("after a release: %v", err)
	}
	soldOut()
	if _, err := s.Cancel(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	MustHold(t, s, "c", holdfast.Line{Pool: "p", Quantity: 1})
	soldOut()
	if _, err := s.SetCapacity(ctx, "p", 2); err != nil {
		t.Fatal(err)
	}
	d := MustHold(t, s, "d", holdfast.Line{Pool: "p", Quantity: 1})
	soldOut()
	other := another(t)
	if _, err := other.Release(ctx, d.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Hold(ctx, one("e")); err != nil {
		t.Fatalf("right after another instance released: %v", err)
	}
	MustAuditClean(t, s)
}
