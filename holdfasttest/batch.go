package holdfasttest

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
)

// Batcher is a store that can decide concurrent holds (every shape) as
// one batch (coalescing); the suite drives it directly to make a batch
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

// batches reports whether the store really batches (coalescing may be
// off, and HoldBatch then claims one by one): a two-claim batch on a pool
// of its own, and the store's count of batched claims.
func batches(t *testing.T, s holdfast.Store, b Batcher) bool {
	t.Helper()
	if _, ok := s.(holdfast.StatsReporter); !ok {
		return true
	}
	MustCreatePool(t, s, "batch-probe", 2, 0)
	since := batchedFrom(s)
	r := holdfast.HoldRequest{Holder: "probe", Lines: []holdfast.Line{{Pool: "batch-probe", Quantity: 1}}}
	if _, errs := b.HoldBatch(ctxT(t), []holdfast.HoldRequest{r, r}, nil); errs[0] != nil || errs[1] != nil {
		t.Fatalf("the probe batch: %v", errs)
	}
	return since() > 0
}

// batchedFrom returns how many claims s has decided in batches since the
// call (0 for a store that does not report it).
func batchedFrom(s holdfast.Store) func() int64 {
	return statFrom(s, func(st holdfast.Stats) int64 { return st.BatchedClaims })
}

// changesFrom returns how many lifecycle changes s has decided in
// batches since the call (0 for a store that does not report it).
func changesFrom(s holdfast.Store) func() int64 {
	return statFrom(s, func(st holdfast.Stats) int64 { return st.BatchedChanges })
}

// batchesChanges reports whether s decides lifecycle changes in batches:
// a hold of line by "probe", confirmed, and the store's count.
func batchesChanges(t *testing.T, s holdfast.Store, line holdfast.Line) bool {
	t.Helper()
	since := changesFrom(s)
	if _, err := s.Confirm(ctxT(t), MustHold(t, s, "probe", line).ID, ""); err != nil {
		t.Fatal(err)
	}
	return since() > 0
}

// statFrom returns how much one of s's counters has grown since the call
// (0 for a store that does not report them).
func statFrom(s holdfast.Store, counter func(holdfast.Stats) int64) func() int64 {
	st, ok := s.(holdfast.StatsReporter)
	if !ok {
		return func() int64 { return 0 }
	}
	before := counter(st.Stats())
	return func() int64 { return counter(st.Stats()) - before }
}

// orderSizes is capacity and claims for the arrival-order tests: three
// batches, capacity ending in the second, where the store batches; one by
// one, arrival order is the loop's and a few claims past the end show it.
func orderSizes(t *testing.T, s holdfast.Store, b Batcher) (capacity, claims int) {
	if batches(t, s, b) {
		return 300, 520
	}
	return 30, 52
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
	if st, ok := s.(holdfast.StatsReporter); ok && st.Stats().Batches == 0 && st.Stats().BatchedClaims > 0 {
		t.Fatal("claims were batched without a batch")
	}
}

// A batch counts holds against their keys' quotas as one-by-one holds
// in arrival order would: the hold that would pass a key's quota is
// quota_exceeded (at its line) and takes nothing, the holds before it
// count, the key's total and each hold's share are written with the
// batch, what a key's waitlist entries wait for counts as held, and a
// hold under no key is not counted.
func testBatchCountsQuotas(t *testing.T, h Harness) {
	if !quotaCounted(h) {
		t.Skip("this backend counts quotas elsewhere")
	}
	s, b := openBatcher(t, h)
	ctx := ctxT(t)
	batched := batches(t, s, b)
	MustCreatePool(t, s, "p", 100, 0)
	MustCreatePool(t, s, "q", 100, 0)
	MustCreatePool(t, s, "full", 2, 0)
	MustHold(t, s, "x", holdfast.Line{Pool: "full", Quantity: 2})
	mustQuotaKey(t, s, "k", 4)
	mustQuotaKey(t, s, "w", 3)
	// w waits for 2 units of the sold-out pool: 1 left of its quota.
	if _, err := s.JoinWaitlist(ctx, holdfast.WaitlistRequest{Pool: "full", Holder: "wait", Owner: "key:w", QuotaKey: "w", Quantity: 2}); err != nil {
		t.Fatal(err)
	}
	req := func(holder, key string, q int64) holdfast.HoldRequest {
		r := holdfast.HoldRequest{Holder: holder, QuotaKey: key, Lines: []holdfast.Line{{Pool: "p", Quantity: q}}}
		if key != "" {
			r.Owner = "key:" + key
		}
		return r
	}
	two := req("e", "k", 1)
	two.Lines = append(two.Lines, holdfast.Line{Pool: "q", Quantity: 1})
	reqs := []holdfast.HoldRequest{req("a", "k", 2), req("b", "w", 1), req("c", "k", 1), two, req("f", "w", 1), req("g", "", 5), req("h", "k", 1)}
	since := batchedFrom(s)
	holds, errs := b.HoldBatch(ctx, reqs, nil)
	if n := since(); batched && n < int64(len(reqs)) {
		t.Errorf("%d of %d requests counted against quotas were decided in a batch", n, len(reqs))
	}
	want := []struct {
		code holdfast.Code
		line int
	}{{"", 0}, {"", 0}, {"", 0}, {holdfast.CodeQuotaExceeded, 1}, {holdfast.CodeQuotaExceeded, 0}, {"", 0}, {"", 0}}
	for i, w := range want {
		if got := holdfast.ErrorCode(errs[i]); got != w.code || (w.code != "" && holdfast.ErrorLine(errs[i]) != w.line) {
			t.Errorf("request %d (%s): got %q at line %d (%v), want %q at line %d", i, reqs[i].Holder, got, holdfast.ErrorLine(errs[i]), errs[i], w.code, w.line)
		}
	}
	if p := MustPool(t, s, "p"); p.Held != 2+1+1+5+1 {
		t.Fatalf("pool after the batch: %+v, want 10 held", p)
	}
	for key, n := range map[string]int64{"k": 4, "w": 1} {
		if got := MustCount(t, s, `SELECT held_units FROM api_keys WHERE id = '`+key+`'`); got != n {
			t.Errorf("key %s: held_units %d, want %d", key, got, n)
		}
	}
	if got := MustCount(t, s, `SELECT quota_units FROM holds WHERE id = '`+holds[0].ID+`' AND quota_key = 'k'`); got != 2 {
		t.Fatalf("hold a counted %d against k, want 2", got)
	}
	// Given back when the holds leave the held state; counted again.
	if _, err := s.Release(ctx, holds[0].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Confirm(ctx, holds[2].ID, ""); err != nil {
		t.Fatal(err)
	}
	_, errs = b.HoldBatch(ctx, []holdfast.HoldRequest{req("i", "k", 2), req("j", "k", 1), req("l", "k", 1)}, nil)
	if errs[0] != nil || errs[1] != nil || holdfast.ErrorCode(errs[2]) != holdfast.CodeQuotaExceeded {
		t.Fatalf("after giving back: %v", errs)
	}
	if got := MustCount(t, s, `SELECT held_units FROM api_keys WHERE id = 'k'`); got != 4 {
		t.Fatalf("key k: held_units %d, want 4", got)
	}
	MustAuditClean(t, s) // and no batch failed whole
}

// A batch spends waiting-room admissions as one-by-one holds in arrival
// order would: each admission buys one hold, of its own holder, behind
// its own room; the same admission twice in a batch buys the first and
// is admission_invalid for the second; a request without one behind a
// room is admission_required and joins no batch; every spent admission
// names its hold.
func testBatchSpendsAdmissions(t *testing.T, h Harness) {
	s, b := openBatcher(t, h)
	ctx := ctxT(t)
	batched := batches(t, s, b)
	mustPoolIn(t, s, "gala", "gala", 100)
	mustPoolIn(t, s, "fair", "fair", 100)
	mustRoom(t, s, "gala", -time.Second, "gala")
	mustRoom(t, s, "fair", -time.Second, "fair")
	a := mustAdmission(t, s, "gala", "a", "")
	bb := mustAdmission(t, s, "gala", "b", "")
	f := mustAdmission(t, s, "fair", "f", "")
	req := func(holder, pool, admission string) holdfast.HoldRequest {
		return holdfast.HoldRequest{Holder: holder, Admission: admission, Lines: []holdfast.Line{{Pool: pool, Quantity: 1}}}
	}
	since := batchedFrom(s)
	reqs := []holdfast.HoldRequest{req("a", "gala", a), req("a", "gala", a), req("b", "gala", a), req("f", "gala", f), req("b", "gala", bb), req("c", "gala", ""), req("f", "fair", f)}
	holds, errs := b.HoldBatch(ctx, reqs, nil)
	want := []holdfast.Code{"", holdfast.CodeAdmissionInvalid, holdfast.CodeAdmissionInvalid, holdfast.CodeAdmissionInvalid, "", holdfast.CodeAdmissionRequired, ""}
	for i, w := range want {
		if got := holdfast.ErrorCode(errs[i]); got != w {
			t.Errorf("request %d (%s on %s): got %q (%v), want %q", i, reqs[i].Holder, reqs[i].Lines[0].Pool, got, errs[i], w)
		}
	}
	if n := since(); batched && n < 4 {
		t.Errorf("%d requests spending admissions were decided in a batch, want every one the room let through", n)
	}
	if p := MustPool(t, s, "gala"); p.Held != 2 {
		t.Fatalf("gala after the batch: %+v, want 2 held", p)
	}
	for i, token := range map[int]string{0: a, 4: bb, 6: f} {
		if n := MustCount(t, s, `SELECT COUNT(*) FROM room_tickets WHERE token = '`+token+`' AND hold_id = '`+holds[i].ID+`'`); n != 1 {
			t.Errorf("admission of request %d is not spent on its hold %s", i, holds[i].ID)
		}
	}
	MustAuditClean(t, s) // and no batch failed whole
}

// Paid bookings arriving together are decided in batches, each payment
// recorded captured with its booking in the batch's transaction: of two
// bookings paying with the same ref, one is booked and the other is a
// conflict that takes nothing, and every captured payment names a
// confirmed hold.
func testBatchRecordsPayments(t *testing.T, h Harness) {
	s, b := openBatcher(t, h)
	ctx := ctxT(t)
	batched := batches(t, s, b)
	MustCreatePool(t, s, "p", 40, 0) // room for all: a conflict is the ref's alone
	since := batchedFrom(s)
	paidStorm(t, func(i int, p holdfast.Payment) (holdfast.Hold, error) {
		return s.BookPaid(ctx, holdfast.HoldRequest{Holder: fmt.Sprint("h", i), Lines: pl("p", 1)}, p)
	})
	if n := since(); batched && n < 30 {
		t.Errorf("%d of 40 paid bookings went through a batch", n)
	}
	if p := MustPool(t, s, "p"); p.Confirmed != 30 {
		t.Fatalf("pool: %+v, want 30 confirmed", p)
	}
	wantCaptured(t, s, 30)
	MustAuditClean(t, s)
}

// A batch takes seats set aside for a channel as one-by-one holds in
// arrival order would: the channel's sale has its own seats, by name or
// any k, and the general sale never takes one of them.
func testBatchTakesChannelSeats(t *testing.T, h Harness) {
	s, b := openBatcher(t, h)
	ctx := ctxT(t)
	batched := batches(t, s, b)
	mustRowA(t, s, "hall", 6)
	if _, err := s.AllocateUnits(ctx, holdfast.UnitAllocationRequest{Group: "hall", Channel: "box", Units: []string{"A-1", "A-2", "A-3"}}); err != nil {
		t.Fatal(err)
	}
	named := func(holder, channel string, units ...string) holdfast.HoldRequest {
		return holdfast.HoldRequest{Holder: holder, Lines: []holdfast.Line{{Units: units, Channel: channel}}}
	}
	anyOf := func(holder, channel string, k int64) holdfast.HoldRequest {
		return holdfast.HoldRequest{Holder: holder, Lines: []holdfast.Line{{Group: "hall", Any: k, Channel: channel}}}
	}
	since := batchedFrom(s)
	reqs := []holdfast.HoldRequest{named("g1", "", "A-1"), named("c1", "box", "A-1"), named("c2", "box", "A-4"), anyOf("c3", "box", 2),
		anyOf("g2", "", 3), named("c4", "box", "A-1")}
	holds, errs := b.HoldBatch(ctx, reqs, nil)
	want := []holdfast.Code{holdfast.CodeUnavailable, "", holdfast.CodeUnavailable, "", "", holdfast.CodeUnavailable}
	for i, w := range want {
		if got := holdfast.ErrorCode(errs[i]); got != w {
			t.Errorf("request %d (%s): got %q (%v), want %q", i, reqs[i].Holder, got, errs[i], w)
		}
	}
	if n := since(); batched && n < int64(len(reqs)) {
		t.Errorf("%d of %d holds of named seats were decided in a batch", n, len(reqs))
	}
	if got := holds[3].Lines[0].Units; !slices.Equal(got, []string{"A-2", "A-3"}) {
		t.Errorf("the channel's any 2: %v, want A-2 and A-3", got)
	}
	if got := holds[4].Lines[0].Units; !slices.Equal(got, []string{"A-4", "A-5", "A-6"}) {
		t.Errorf("the general sale's any 3: %v, want A-4 to A-6", got)
	}
	if n := MustCount(t, s, `SELECT COUNT(*) FROM units WHERE group_id = 'hall' AND hold_id IS NOT NULL`); n != 6 {
		t.Fatalf("%d seats held, want all 6", n)
	}
	MustAuditClean(t, s)
}

// Consecutive batches grant in arrival order: when capacity runs out in
// one batch, no claim of a later batch was granted, even where the
// backend lets the next batch start before the one before it commits.
func testBatchesGrantInArrivalOrder(t *testing.T, h Harness) {
	s, b := openBatcher(t, h)
	ctx := ctxT(t)
	capacity, claims := orderSizes(t, s, b)
	for round := range 3 {
		pool := fmt.Sprintf("order-%d", round)
		MustCreatePool(t, s, pool, int64(capacity), 0)
		rs := make([]holdfast.HoldRequest, claims)
		for i := range rs {
			rs[i] = holdfast.HoldRequest{Holder: fmt.Sprintf("h%d", i), Lines: []holdfast.Line{{Pool: pool, Quantity: 1}}}
		}
		_, errs := b.HoldBatch(ctx, rs, nil)
		wantFirstGranted(t, fmt.Sprintf("round %d", round), errs, capacity, holdfast.CodeSoldOut)
	}
	MustAuditClean(t, s)
	if st, ok := s.(holdfast.StatsReporter); ok && st.Stats().BatchedClaims > 0 && st.Stats().Batches < 3 {
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

// A batch of every shape answers each request as one-by-one holds in
// arrival order would: named seats, "any k" riders, pool lines with a
// per-holder limit and multi-line holds mixing them, decided together —
// a request that conflicts with an earlier one loses to it, a multi-line
// request takes all its lines or none, the first failing line is named
// (limit before capacity), and a keyed request's answer is recorded.
func testBatchEveryShape(t *testing.T, h Harness) {
	s, b := openBatcher(t, h)
	ctx := ctxT(t)
	MustCreatePool(t, s, "p", 3, 2)
	MustCreateGroup(t, s, "hall", false, "A-1", "A-2", "A-3", "A-4")
	MustCreateGroup(t, s, "fleet", true, "r-1", "r-2", "r-3")
	req := func(holder string, lines ...holdfast.Line) holdfast.HoldRequest {
		return holdfast.HoldRequest{Holder: holder, Lines: lines}
	}
	seats := func(ids ...string) holdfast.Line { return holdfast.Line{Units: ids} }
	pool := func(q int64) holdfast.Line { return holdfast.Line{Pool: "p", Quantity: q} }
	riders := func(k int64) holdfast.Line { return holdfast.Line{Group: "fleet", Any: k} }
	tok, _, err := s.BeginIdempotent(ctx, "c", "k9", "fp-k9", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	reqs := []holdfast.HoldRequest{
		req("a", seats("A-1", "A-2")),   // 0: granted
		req("b", seats("A-2", "A-3")),   // 1: A-2 went to 0
		req("c", pool(1), seats("A-3")), // 2: granted, both lines
		req("d", seats("A-4"), pool(3)), // 3: line 1 passes d's limit: A-4 stays free
		req("e", riders(2)),             // 4: r-1, r-2
		req("f", riders(2)),             // 5: one rider left
		req("g", riders(1), pool(2)),    // 6: r-3 and the last 2 of p
		req("h", pool(1)),               // 7: p is sold out
		req("i", seats("nope")),         // 8: no such seat
		req("a", seats("A-4")),          // 9: granted (keyed)
	}
	keys := make([]*holdfast.Idempotency, len(reqs))
	keys[9] = &holdfast.Idempotency{Scope: "c", Key: "k9", Token: tok, Render: render(201)}
	holds, errs := b.HoldBatch(ctx, reqs, keys)
	want := []struct {
		code holdfast.Code
		line int
	}{{"", -1}, {holdfast.CodeUnavailable, 0}, {"", -1}, {holdfast.CodeLimitExceeded, 1}, {"", -1},
		{holdfast.CodeUnavailable, 0}, {"", -1}, {holdfast.CodeSoldOut, 0}, {holdfast.CodeNotFound, 0}, {"", -1}}
	for i, w := range want {
		if got := holdfast.ErrorCode(errs[i]); got != w.code || (w.line >= 0 && holdfast.ErrorLine(errs[i]) != w.line) {
			t.Errorf("request %d (%s): got %q line %d (%v), want %q line %d", i, reqs[i].Holder, got, holdfast.ErrorLine(errs[i]), errs[i], w.code, w.line)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	if got := holds[4].Lines[0].Units; len(got) != 2 || got[0] == got[1] {
		t.Fatalf("any 2 got %v", got)
	}
	if got := holds[6].Lines[0].Units; len(got) != 1 || slices.Contains(holds[4].Lines[0].Units, got[0]) {
		t.Fatalf("any 1 got %v, after %v", got, holds[4].Lines[0].Units)
	}
	if p := MustPool(t, s, "p"); p.Held != 3 || p.Available != 0 {
		t.Fatalf("pool after the batch: %+v", p)
	}
	units, err := s.Units(ctx, "hall", "")
	if err != nil {
		t.Fatal(err)
	}
	owner := map[string]string{"A-1": holds[0].ID, "A-2": holds[0].ID, "A-3": holds[2].ID, "A-4": holds[9].ID}
	for _, u := range units {
		if u.Status != holdfast.UnitHeld || u.HoldID != owner[u.ID] {
			t.Fatalf("unit %s: %s by %s, want held by %s", u.ID, u.Status, u.HoldID, owner[u.ID])
		}
	}
	if n := MustCount(t, s, `SELECT COUNT(*) FROM pool_holders WHERE pool_id = 'p' AND holder = 'd'`); n != 0 {
		t.Fatalf("the refused request's holder total was written")
	}
	_, replay, err := s.BeginIdempotent(ctx, "c", "k9", "fp-k9", time.Minute)
	var got holdfast.Hold
	if err != nil || replay == nil || json.Unmarshal(replay.Body, &got) != nil || got.ID != holds[9].ID {
		t.Fatalf("key k9: replay %+v, %v; want hold %s", replay, err, holds[9].ID)
	}
	MustAuditClean(t, s)
}

// Batches of seats and riders grant in arrival order too: 520 claims on
// 300 seats (each seat asked for twice) and on 300 riders ("any 1") span
// three batches; the first 300 win, every later one is refused.
func testUnitBatchesGrantInArrivalOrder(t *testing.T, h Harness) {
	s, b := openBatcher(t, h)
	ctx := ctxT(t)
	units, claims := orderSizes(t, s, b)
	ids := make([]string, units)
	for i := range ids {
		ids[i] = fmt.Sprintf("S-%03d", i)
	}
	MustCreateGroup(t, s, "seats", false, ids...)
	fleet := make([]string, units)
	for i := range fleet {
		fleet[i] = fmt.Sprintf("R-%03d", i)
	}
	MustCreateGroup(t, s, "riders", true, fleet...)
	for _, shape := range []string{"seats", "riders"} {
		rs := make([]holdfast.HoldRequest, claims)
		for i := range rs {
			l := holdfast.Line{Units: []string{ids[i%units]}}
			if shape == "riders" {
				l = holdfast.Line{Group: "riders", Any: 1}
			}
			rs[i] = holdfast.HoldRequest{Holder: fmt.Sprintf("h%d", i), Lines: []holdfast.Line{l}}
		}
		_, errs := b.HoldBatch(ctx, rs, nil)
		wantFirstGranted(t, shape, errs, units, holdfast.CodeUnavailable)
	}
	MustAuditClean(t, s)
}

// wantFirstGranted checks that the first n of a batch's claims were granted
// and every later one refused with code: arrival order kept.
func wantFirstGranted(t *testing.T, label string, errs []error, n int, code holdfast.Code) {
	t.Helper()
	for i, err := range errs {
		want := holdfast.Code("")
		if i >= n {
			want = code
		}
		if got := holdfast.ErrorCode(err); got != want {
			t.Fatalf("%s: claim %d of %d (%d to give): got %q (%v), want %q", label, i, len(errs), n, got, err, want)
		}
	}
}

// Partial confirms arriving together are decided in batches of changes
// where the store batches them, each exactly as alone: it keeps its part
// of every line (a pool's quantity, named seats, an any line's units) and
// gives the rest back — the pool's held, the holder's total under the
// limit, the units and their claims — while a full confirm, a release and
// a refused part of other holds land in the same batches.
func testBatchConfirmsParts(t *testing.T, h Harness) {
	s, _ := h.Open(t)
	ctx := ctxT(t)
	const n = 40
	MustCreatePool(t, s, "p", 4*n, 4)
	var named, loose []string
	for i := range 2 * n {
		named = append(named, fmt.Sprintf("S-%03d", i))
		loose = append(loose, fmt.Sprintf("L-%03d", i))
	}
	loose = append(loose, "L-probe")
	MustCreateGroup(t, s, "seats", false, named...)
	MustCreateGroup(t, s, "floor", false, loose...)
	batching := batchesChanges(t, s, holdfast.Line{Group: "floor", Any: 1})
	holds := make([]holdfast.Hold, n)
	for i := range holds {
		holds[i] = MustHold(t, s, fmt.Sprintf("h%02d", i), holdfast.Line{Pool: "p", Quantity: 4},
			holdfast.Line{Units: named[2*i : 2*i+2]}, holdfast.Line{Group: "floor", Any: 2})
	}
	// What each keeps: i%5 == 0 confirms whole, 1 releases, 2 names a
	// line the hold does not have (refused, nothing changes); the others
	// keep 1–3 of the pool's 4, one named seat and one of the any line's.
	keep := func(i int) int64 { return int64(i%3) + 1 }
	part := func(i int) []holdfast.PartLine {
		hd := holds[i]
		return []holdfast.PartLine{{Line: 0, Quantity: keep(i)}, {Line: 1, Units: hd.Lines[1].Units[1:]}, {Line: 2, Units: hd.Lines[2].Units[:1]}}
	}
	got := make([]holdfast.Hold, n)
	errs := make([]error, n)
	since := changesFrom(s)
	storm(n, func(i int) {
		id := holds[i].ID
		switch i % 5 {
		case 0:
			got[i], errs[i] = s.Confirm(ctx, id, "")
		case 1:
			got[i], errs[i] = s.Release(ctx, id)
		case 2:
			got[i], errs[i] = s.ConfirmPart(ctx, id, "", []holdfast.PartLine{{Line: 0, Quantity: 1}, {Line: 3, Quantity: 1}})
		default:
			got[i], errs[i] = s.ConfirmPart(ctx, id, fmt.Sprintf("pay_%d", i), part(i))
		}
	})
	if d := since(); batching && d != n {
		t.Errorf("%d of %d changes were decided in batches", d, n)
	}
	var confirmed, held, claims int64
	for i := range holds {
		err, g := errs[i], got[i]
		switch i % 5 {
		case 0:
			if err != nil || g.Status != holdfast.StatusConfirmed || g.Lines[0].Quantity != 4 || len(g.Lines[1].Units) != 2 || len(g.Lines[2].Units) != 2 {
				t.Fatalf("hold %d confirmed whole: %+v, %v", i, g, err)
			}
			confirmed += 4
			claims += 4
		case 1:
			if err != nil || g.Status != holdfast.StatusReleased {
				t.Fatalf("hold %d released: %+v, %v", i, g, err)
			}
		case 2:
			wantCode(t, err, holdfast.CodeInvalid, 1)
			if g, err := s.GetHold(ctx, holds[i].ID); err != nil || g.Status != holdfast.StatusHeld {
				t.Fatalf("hold %d after a refused part: %+v, %v", i, g, err)
			}
			held += 4
			claims += 4
		default:
			want := part(i)
			if err != nil || g.Status != holdfast.StatusConfirmed || g.PaymentRef != fmt.Sprintf("pay_%d", i) || g.Lines[0].Quantity != keep(i) ||
				!slices.Equal(g.Lines[1].Units, want[1].Units) || g.Lines[2].Any != 1 || !slices.Equal(g.Lines[2].Units, want[2].Units) {
				t.Fatalf("hold %d partly confirmed: %+v, %v; want %+v", i, g, err, want)
			}
			if stored, err := s.GetHold(ctx, g.ID); err != nil || !reflect.DeepEqual(stored.Lines, g.Lines) {
				t.Fatalf("hold %d as stored: %+v, %v; answered %+v", i, stored.Lines, err, g.Lines)
			}
			confirmed += keep(i)
			claims += 2
		}
	}
	if p := MustPool(t, s, "p"); p.Confirmed != confirmed || p.Held != held {
		t.Fatalf("pool after the batch: confirmed %d, held %d; want %d, %d", p.Confirmed, p.Held, confirmed, held)
	}
	// What each holder has left under the limit is what it gave back.
	if got := MustCount(t, s, `SELECT COALESCE(SUM(taken), 0) FROM pool_holders WHERE pool_id = 'p'`); got != confirmed+held {
		t.Fatalf("holders' totals %d, want %d", got, confirmed+held)
	}
	if got := MustCount(t, s, `SELECT COUNT(*) FROM unit_claims c JOIN holds h ON h.id = c.hold_id WHERE h.holder <> 'probe' AND c.active`); got != claims {
		t.Fatalf("%d unit claims left, want %d", got, claims)
	}
	if got := MustCount(t, s, `SELECT COUNT(*) FROM units WHERE hold_id IS NULL`); got != 4*n-claims {
		t.Fatalf("%d units free, want %d", got, 4*n-claims)
	}
	// A holder that kept 1 may hold 3 more, and no more.
	if _, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "h03", Lines: []holdfast.Line{{Pool: "p", Quantity: 4 - keep(3)}}}); err != nil {
		t.Fatal(err)
	}
	_, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "h03", Lines: []holdfast.Line{{Pool: "p", Quantity: 1}}})
	wantCode(t, err, holdfast.CodeLimitExceeded, 0)
	MustAuditClean(t, s)
}

// Late confirms arriving together, of holds past their expiry that no
// sweeper has expired yet, are decided in batches of changes where the
// store batches them, each as alone: allowed where every pool and group
// of the hold says if_available within its grace (whole or in part, the
// answer and the row marked late), refused hold_expired where one says
// refuse or the grace has passed — and a hold already expired is still
// confirmed, taken again on the careful path.
func testBatchConfirmsLate(t *testing.T, h Harness) {
	s, _ := h.Open(t)
	ctx := ctxT(t)
	const n = 30
	if _, err := s.CreatePool(ctx, holdfast.Pool{ID: "lp", Capacity: 4 * n, LateConfirm: holdfast.LateIfAvailable, LateConfirmGrace: 60}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreatePool(ctx, holdfast.Pool{ID: "brief", Capacity: n, LateConfirm: holdfast.LateIfAvailable, LateConfirmGrace: 1}); err != nil {
		t.Fatal(err)
	}
	MustCreatePool(t, s, "strict", n, 0)
	var seats []string
	for i := range n {
		seats = append(seats, fmt.Sprintf("S-%02d", i))
	}
	if _, err := s.CreateGroup(ctx, holdfast.Group{ID: "hall", Name: "hall", LateConfirm: holdfast.LateIfAvailable, LateConfirmGrace: 60}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddUnits(ctx, "hall", seats); err != nil {
		t.Fatal(err)
	}
	batching := batchesChanges(t, s, holdfast.Line{Pool: "lp", Quantity: 1})
	// i%6: 0 late whole; 1 late in part; 2 with a line under refuse; 3
	// past the grace of one line; 4 already expired (taken again); 5 on
	// time.
	holds := make([]holdfast.Hold, n)
	for i := range holds {
		lines := []holdfast.Line{{Pool: "lp", Quantity: 2}, {Units: []string{seats[i]}}}
		switch i % 6 {
		case 2:
			lines = append(lines, holdfast.Line{Pool: "strict", Quantity: 1})
		case 3:
			lines = append(lines, holdfast.Line{Pool: "brief", Quantity: 1})
		}
		holds[i] = MustHold(t, s, fmt.Sprintf("h%02d", i), lines...)
		if i%6 == 4 {
			MustExpire(t, s, holds[i].ID)
		}
	}
	if _, err := s.ExpireDue(ctx, 1000); err != nil { // those of case 4 only
		t.Fatal(err)
	}
	for i := range holds {
		switch i % 6 {
		case 3:
			MustExec(t, s, `UPDATE holds SET expires_at = holdfast_now_ms() - 5000 WHERE id = $1`, holds[i].ID)
		case 4, 5:
		default:
			MustExpire(t, s, holds[i].ID)
		}
	}
	got := make([]holdfast.Hold, n)
	errs := make([]error, n)
	since := changesFrom(s)
	storm(n, func(i int) {
		if i%6 == 1 {
			got[i], errs[i] = s.ConfirmPart(ctx, holds[i].ID, "", []holdfast.PartLine{{Line: 0, Quantity: 1}, {Line: 1, Units: []string{seats[i]}}})
			return
		}
		got[i], errs[i] = s.Confirm(ctx, holds[i].ID, fmt.Sprintf("pay_%d", i))
	})
	if d, want := since(), int64(n-n/6); batching && d != want {
		// Every change but the already expired ones' (careful path).
		t.Errorf("%d of %d changes were decided in batches, want %d", d, n, want)
	}
	var confirmed int64
	for i := range holds {
		err, g := errs[i], got[i]
		switch i % 6 {
		case 2:
			wantExpired(t, err, true)
		case 3:
			wantExpired(t, err, false)
		default:
			wantLate := i%6 != 5
			q := int64(2)
			if i%6 == 1 {
				q = 1
			}
			if err != nil || g.Status != holdfast.StatusConfirmed || g.Late != wantLate || g.Lines[0].Quantity != q {
				t.Fatalf("hold %d (case %d): %+v, %v", i, i%6, g, err)
			}
			if stored, err := s.GetHold(ctx, g.ID); err != nil || stored.Late != wantLate || !reflect.DeepEqual(stored.Lines, g.Lines) {
				t.Fatalf("hold %d as stored: %+v, %v; answered %+v", i, stored, err, g)
			}
			confirmed += q
		}
	}
	if p := MustPool(t, s, "lp"); p.Confirmed != confirmed+1 {
		t.Fatalf("pool lp: confirmed %d, want %d", p.Confirmed, confirmed+1)
	}
	MustAuditClean(t, s)
}

// Confirms that record their payments are decided in the batches of
// changes: each payment captured with its confirm, in the batch's
// writes. A ref paid with on two holds is a conflict for one of them (no
// payment due back: nothing was refused); the same confirm again is a
// replay; a paid confirm refused records its payment due back.
func testBatchConfirmsPaid(t *testing.T, h Harness) {
	s, _ := h.Open(t)
	ctx := ctxT(t)
	const n = 40
	MustCreatePool(t, s, "p", 2*n+2, 0)
	batching := batchesChanges(t, s, holdfast.Line{Pool: "p", Quantity: 1})
	holds := make([]holdfast.Hold, n)
	for i := range holds {
		holds[i] = MustHold(t, s, fmt.Sprintf("h%02d", i), holdfast.Line{Pool: "p", Quantity: 2})
	}
	since := changesFrom(s)
	got := paidStorm(t, func(i int, p holdfast.Payment) (holdfast.Hold, error) {
		return s.ConfirmPaid(ctx, holds[i].ID, p, nil)
	})
	// A ref paid with twice in one batch leaves it, with its twin: at
	// least the 20 paid with once are decided in batches.
	if d := since(); batching && d < 20 {
		t.Errorf("%d of %d paid confirms were decided in batches", d, n)
	}
	for i, h := range got {
		if h.ID != "" && (h.Status != holdfast.StatusConfirmed || h.PaymentRef != fmt.Sprintf("pi_%d", i%30)) {
			t.Errorf("confirm %d answered %+v", i, h)
		}
	}
	if p := MustPool(t, s, "p"); p.Confirmed != 61 || p.Held != 20 { // the probe confirmed one
		t.Fatalf("pool: %+v, want 61 confirmed and 20 held", p)
	}
	wantCaptured(t, s, 30)
	// The same confirm again: a replay, changing nothing.
	again, err := s.ConfirmPaid(ctx, holds[29].ID, eur("pi_29", 900), nil)
	if err != nil || again.Status != holdfast.StatusConfirmed || again.PaymentRef != "pi_29" {
		t.Fatalf("the paid confirm again: %+v, %v; want a replay", again, err)
	}
	// A paid confirm of a released hold is refused, its payment due back.
	gone := MustHold(t, s, "gone", holdfast.Line{Pool: "p", Quantity: 1})
	if _, err := s.Release(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}
	_, err = s.ConfirmPaid(ctx, gone.ID, eur("pi_gone", 900), nil)
	wantCode(t, err, holdfast.CodeInvalidState, -1)
	mustPayment(t, s, "pi_gone", holdfast.PaymentRefundDue, gone.ID)
	MustAuditClean(t, s)
}

// paidStorm makes 40 paid changes at once, change i paying with ref
// pi_<i%30> (refs 0–9 on two changes each), and wants 30 made and 10
// conflicts; it returns what each answered.
func paidStorm(t *testing.T, pay func(i int, p holdfast.Payment) (holdfast.Hold, error)) []holdfast.Hold {
	t.Helper()
	var mu sync.Mutex
	codes := map[holdfast.Code]int{}
	got := make([]holdfast.Hold, 40)
	storm(40, func(i int) {
		h, err := pay(i, eur(fmt.Sprintf("pi_%d", i%30), 900))
		mu.Lock()
		codes[holdfast.ErrorCode(err)]++
		got[i] = h
		mu.Unlock()
		if c := holdfast.ErrorCode(err); c != "" && c != holdfast.CodeConflict {
			t.Errorf("paid change %d: %v", i, err)
		}
	})
	if codes[""] != 30 || codes[holdfast.CodeConflict] != 10 {
		t.Fatalf("answers %v, want 30 made and 10 conflicts", codes)
	}
	return got
}

// wantCaptured wants n payments recorded, each captured on the confirmed
// hold whose payment_ref it is.
func wantCaptured(t *testing.T, s holdfast.Store, n int64) {
	t.Helper()
	if got := MustCount(t, s, `SELECT COUNT(*) FROM payments p JOIN holds h ON h.id = p.hold_id
		WHERE p.status = 'captured' AND h.status = 'confirmed' AND h.payment_ref = p.ref`); got != n {
		t.Fatalf("%d captured payments on their confirmed holds, want %d", got, n)
	}
	if got := MustCount(t, s, `SELECT COUNT(*) FROM payments`); got != n {
		t.Fatalf("%d payments recorded, want %d", got, n)
	}
}
