package holdfasttest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
)

func mustJoinWaitlist(t *testing.T, s holdfast.Store, pool, holder string, q int64) holdfast.WaitlistEntry {
	t.Helper()
	e, err := s.JoinWaitlist(context.Background(), holdfast.WaitlistRequest{Pool: pool, Holder: holder, Quantity: q})
	if err != nil {
		t.Fatalf("JoinWaitlist(%s, %s, %d): %v", pool, holder, q, err)
	}
	return e
}

func mustEntry(t *testing.T, s holdfast.Store, e holdfast.WaitlistEntry) holdfast.WaitlistEntry {
	t.Helper()
	got, err := s.WaitlistEntry(context.Background(), e.Pool, e.ID)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func mustOffer(t *testing.T, s holdfast.Store) int {
	t.Helper()
	n, err := s.OfferWaitlists(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func wantEntry(t *testing.T, s holdfast.Store, e holdfast.WaitlistEntry, status holdfast.WaitlistStatus, position int64) holdfast.WaitlistEntry {
	t.Helper()
	got := mustEntry(t, s, e)
	if got.Status != status || got.Position != position {
		t.Fatalf("entry of %s: %s at %d, want %s at %d", got.Holder, got.Status, got.Position, status, position)
	}
	return got
}

// testWaitlist: capacity that comes back goes to the waitlist in order,
// as holds for its holders, before any new buyer; an offer not confirmed
// in time goes to the next.
func testWaitlist(t *testing.T, h Harness) {
	s, _ := h.Open(t)
	ctx := ctxT(t)
	if _, err := s.CreatePool(ctx, holdfast.Pool{ID: "p", Capacity: 2, OfferTTLSeconds: 30}); err != nil {
		t.Fatal(err)
	}
	MustCreatePool(t, s, "lim", 5, 2)
	// A pool that names no offer TTL shows the one in force, not 0.
	if p := MustPool(t, s, "lim"); p.OfferTTLSeconds != int64(holdfast.DefaultOfferTTL/time.Second) {
		t.Fatalf("offer_ttl_seconds %d on a pool that set none, want the default in force", p.OfferTTLSeconds)
	}
	for name, bad := range map[string]holdfast.WaitlistRequest{
		"no quantity":       {Pool: "p", Holder: "x"},
		"no holder":         {Pool: "p", Quantity: 1},
		"past the capacity": {Pool: "p", Holder: "x", Quantity: 3},
	} {
		if _, err := s.JoinWaitlist(ctx, bad); holdfast.ErrorCode(err) != holdfast.CodeInvalid {
			t.Fatalf("%s: JoinWaitlist = %v, want invalid", name, err)
		}
	}
	_, err := s.JoinWaitlist(ctx, holdfast.WaitlistRequest{Pool: "nope", Holder: "x", Quantity: 1})
	wantCode(t, err, holdfast.CodeNotFound, -1)
	_, err = s.JoinWaitlist(ctx, holdfast.WaitlistRequest{Pool: "lim", Holder: "x", Quantity: 3})
	wantCode(t, err, holdfast.CodeLimitExceeded, -1)
	if n := MustCount(t, s, `SELECT COUNT(*) FROM waitlist_entries`) + MustCount(t, s, `SELECT SUM(waitlisted) FROM pools`); n != 0 {
		t.Fatalf("refused joins left %d behind", n)
	}

	first := MustHold(t, s, "first", holdfast.Line{Pool: "p", Quantity: 2})
	w1 := mustJoinWaitlist(t, s, "p", "w1", 1)
	w2 := mustJoinWaitlist(t, s, "p", "w2", 2)
	w3 := mustJoinWaitlist(t, s, "p", "w3", 1)
	if w1.Position != 1 || w2.Position != 2 || w3.Position != 3 || w1.Status != holdfast.WaitlistWaiting {
		t.Fatalf("positions %d %d %d (%s)", w1.Position, w2.Position, w3.Position, w1.Status)
	}
	if again := mustJoinWaitlist(t, s, "p", "w1", 1); again.ID != w1.ID || again.Position != 1 {
		t.Fatalf("joining again: %+v, want entry %s", again, w1.ID)
	}
	if p := MustPool(t, s, "p"); p.Waitlisted != 4 || p.Available != 0 || p.OfferTTLSeconds != 30 {
		t.Fatalf("pool: %+v", p)
	}
	if list, err := s.Waitlist(ctx, "p"); err != nil || len(list) != 3 || list[0].ID != w1.ID || list[2].ID != w3.ID {
		t.Fatalf("Waitlist: %+v, %v", list, err)
	}
	if n := mustOffer(t, s); n != 0 {
		t.Fatalf("%d offers with nothing free", n)
	}

	// Two come back: the first entry gets one; the second asks for two,
	// so it and everyone behind it wait — and no new buyer gets the one
	// left.
	if _, err := s.Release(ctx, first.ID); err != nil {
		t.Fatal(err)
	}
	_, err = s.Hold(ctx, holdfast.HoldRequest{Holder: "new", Lines: []holdfast.Line{{Pool: "p", Quantity: 1}}})
	wantCode(t, err, holdfast.CodeSoldOut, 0)
	if n := mustOffer(t, s); n != 1 {
		t.Fatalf("%d offers, want 1", n)
	}
	o1 := wantEntry(t, s, w1, holdfast.WaitlistOffered, 0)
	offer, err := s.GetHold(ctx, o1.HoldID)
	if err != nil || offer.Holder != "w1" || offer.Status != holdfast.StatusHeld || offer.Lines[0].Quantity != 1 {
		t.Fatalf("the offer: %+v, %v", offer, err)
	}
	if ttl := time.Until(offer.ExpiresAt); ttl < 20*time.Second || ttl > 40*time.Second || o1.OfferExpiresAt == nil {
		t.Fatalf("the offer lasts %v, want the pool's 30 s", ttl)
	}
	wantEntry(t, s, w2, holdfast.WaitlistWaiting, 1)
	wantEntry(t, s, w3, holdfast.WaitlistWaiting, 2)
	_, err = s.Hold(ctx, holdfast.HoldRequest{Holder: "new", Lines: []holdfast.Line{{Pool: "p", Quantity: 1}}})
	wantCode(t, err, holdfast.CodeSoldOut, 0)

	// The offer lapses: it goes to the next, who now has two.
	MustExpire(t, s, o1.HoldID)
	if n := mustOffer(t, s); n != 1 {
		t.Fatalf("%d offers after the lapse, want 1", n)
	}
	wantEntry(t, s, w1, holdfast.WaitlistExpired, 0)
	o2 := wantEntry(t, s, w2, holdfast.WaitlistOffered, 0)
	wantEntry(t, s, w3, holdfast.WaitlistWaiting, 1)
	if _, err := s.Confirm(ctx, o2.HoldID, ""); err != nil {
		t.Fatal(err)
	}
	mustOffer(t, s)
	wantEntry(t, s, w2, holdfast.WaitlistConfirmed, 0)

	// Capacity raised: the list first.
	if _, err := s.SetCapacity(ctx, "p", 3); err != nil {
		t.Fatal(err)
	}
	_, err = s.Hold(ctx, holdfast.HoldRequest{Holder: "new", Lines: []holdfast.Line{{Pool: "p", Quantity: 1}}})
	wantCode(t, err, holdfast.CodeSoldOut, 0)
	mustOffer(t, s)
	o3 := wantEntry(t, s, w3, holdfast.WaitlistOffered, 0)
	// Leaving with an offer out releases it; the list is empty, so new
	// buyers have it again.
	if _, err := s.LeaveWaitlist(ctx, "p", w3.ID, "someone-else"); holdfast.ErrorCode(err) != holdfast.CodeNotFound {
		t.Fatalf("another key leaving: %v", err)
	}
	if e, err := s.LeaveWaitlist(ctx, "p", w3.ID, ""); err != nil || e.Status != holdfast.WaitlistReleased {
		t.Fatalf("LeaveWaitlist: %+v, %v", e, err)
	}
	if got, _ := s.GetHold(ctx, o3.HoldID); got.Status != holdfast.StatusReleased {
		t.Fatalf("the offer after leaving: %s", got.Status)
	}
	_, err = s.LeaveWaitlist(ctx, "p", w3.ID, "")
	wantCode(t, err, holdfast.CodeConflict, -1)
	MustHold(t, s, "new", holdfast.Line{Pool: "p", Quantity: 1})

	// A waiting entry leaves: its ask leaves with it.
	w4 := mustJoinWaitlist(t, s, "p", "w4", 1)
	if p := MustPool(t, s, "p"); p.Waitlisted != 1 {
		t.Fatalf("waitlisted %d, want 1", p.Waitlisted)
	}
	if e, err := s.LeaveWaitlist(ctx, "p", w4.ID, ""); err != nil || e.Status != holdfast.WaitlistLeft {
		t.Fatalf("LeaveWaitlist: %+v, %v", e, err)
	}
	if p := MustPool(t, s, "p"); p.Waitlisted != 0 {
		t.Fatalf("waitlisted %d after leaving, want 0", p.Waitlisted)
	}
	// Capacity lowered below an entry's ask since it joined: it ends, and
	// does not hold the line for good.
	MustCreatePool(t, s, "shrink", 3, 0)
	all := MustHold(t, s, "x", holdfast.Line{Pool: "shrink", Quantity: 3})
	big := mustJoinWaitlist(t, s, "shrink", "big", 3)
	small := mustJoinWaitlist(t, s, "shrink", "small", 1)
	if _, err := s.Release(ctx, all.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetCapacity(ctx, "shrink", 2); err != nil {
		t.Fatal(err)
	}
	mustOffer(t, s)
	if e := wantEntry(t, s, big, holdfast.WaitlistExpired, 0); e.Reason == "" {
		t.Fatal("an entry ended without a reason")
	}
	wantEntry(t, s, small, holdfast.WaitlistOffered, 0)
	for typ, want := range map[holdfast.EventType]int64{holdfast.EventWaitlistOffered: 4, holdfast.EventWaitlistExpired: 2} {
		if n := MustCount(t, s, `SELECT COUNT(*) FROM events WHERE type = $1`, string(typ)); n != want {
			t.Fatalf("%d %s events, want %d", n, typ, want)
		}
	}
	// A purge of ended holds takes the ended entries with them.
	MustExec(t, s, `UPDATE holds SET updated_at = updated_at - 86400000 WHERE id = $1`, o1.HoldID)
	if _, err := s.Purge(ctx, holdfast.Retention{Holds: time.Hour}); err != nil {
		t.Fatalf("Purge with a lapsed offer: %v", err)
	}
	_, err = s.WaitlistEntry(ctx, "p", w1.ID)
	wantCode(t, err, holdfast.CodeNotFound, -1)
	MustAuditClean(t, s)
}

// raceWaitlist: holds are released while new buyers storm the pool on
// three servers and three servers make offers — every unit that comes
// back goes to the waitlist, in order, and none to a new buyer.
func raceWaitlist(t *testing.T, h Harness) {
	const capacity, waiting = 20, 30
	stores, early, entries := fullWithLine(t, h, capacity, waiting)
	ctx := ctxT(t)
	s := stores[0]
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var bought atomic.Int64
	loop := func(fn func() bool) { untilStopped(&wg, stop, fn) }
	for k := range stores {
		loop(func() bool {
			if _, err := stores[k].OfferWaitlists(ctx); err != nil {
				t.Errorf("OfferWaitlists: %v", err)
				return false
			}
			return true
		})
		for b := range 4 {
			loop(func() bool {
				_, err := stores[k].Hold(ctx, holdfast.HoldRequest{Holder: fmt.Sprintf("new-%d-%d", k, b), Lines: []holdfast.Line{{Pool: "p", Quantity: 1}}})
				switch holdfast.ErrorCode(err) {
				case "":
					bought.Add(1)
				case holdfast.CodeSoldOut:
				default:
					t.Errorf("a new buyer: %v", err)
					return false
				}
				return true
			})
		}
	}
	storm(len(early), func(i int) {
		if _, err := stores[i%3].Release(ctx, early[i].ID); err != nil {
			t.Errorf("release: %v", err)
		}
	})
	// Every unit released is offered: wait for the offers, then stop.
	deadline := time.Now().Add(time.Minute)
	for MustCount(t, s, `SELECT COUNT(*) FROM waitlist_entries WHERE status = 'offered'`) < capacity && time.Now().Before(deadline) && !t.Failed() {
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if n := bought.Load(); n != 0 {
		t.Fatalf("%d new buyers got a unit while the waitlist waited", n)
	}
	for i, e := range entries {
		want := holdfast.WaitlistOffered
		if i >= capacity {
			want = holdfast.WaitlistWaiting
		}
		if got := mustEntry(t, s, e); got.Status != want {
			t.Fatalf("entry %d (%s) is %s, want %s: offers out of order", i, e.Holder, got.Status, want)
		}
	}
	if n := MustCount(t, s, `SELECT COUNT(DISTINCT hold_id) FROM waitlist_entries WHERE status = 'offered'`); n != capacity {
		t.Fatalf("%d offer holds for %d offers", n, capacity)
	}
	if p := MustPool(t, s, "p"); p.Held != capacity || p.Waitlisted != waiting-capacity {
		t.Fatalf("pool after the race: %+v", p)
	}
	MustAuditClean(t, s)
}

// testWaitlistOffersByTheRules: one round of offers decides the heads of a
// line in order by the rules a hold is decided by, each entry's ask
// counted once against its key's quota (as waiting, then as held): an
// entry at its key's quota is offered; one whose key's quota was lowered
// below its ask is cancelled and its ask goes to the next; the first that
// cannot have its ask yet stops the line, and no new buyer gets what it
// waits for.
func testWaitlistOffersByTheRules(t *testing.T, h Harness) {
	skipRemote(t, h)
	s, _ := h.Open(t)
	ctx := ctxT(t)
	MustCreatePool(t, s, "p", 6, 0)
	for _, k := range []holdfast.APIKey{{ID: "k", MaxHeldUnits: 3}, {ID: "k2", MaxHeldUnits: 2}} {
		k.Name, k.Role, k.Hash = k.ID, holdfast.RoleClient, []byte(k.ID)
		if _, err := s.CreateKey(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	a := MustHold(t, s, "a", holdfast.Line{Pool: "p", Quantity: 3})
	b := MustHold(t, s, "b", holdfast.Line{Pool: "p", Quantity: 2})
	MustHold(t, s, "c", holdfast.Line{Pool: "p", Quantity: 1})
	offers := statFrom(s, func(st holdfast.Stats) int64 { return st.Offers })
	join := func(holder, key string, q int64) holdfast.WaitlistEntry {
		t.Helper()
		r := holdfast.WaitlistRequest{Pool: "p", Holder: holder, Quantity: q}
		if key != "" {
			r.Owner, r.QuotaKey = "key:"+key, key
		}
		e, err := s.JoinWaitlist(ctx, r)
		if err != nil {
			t.Fatalf("join %s: %v", holder, err)
		}
		return e
	}
	atQuota := join("q", "k", 3)    // its key's whole quota, waiting
	overQuota := join("r", "k2", 2) // its key's quota lowered below it next
	small := join("d", "", 1)
	last := join("e", "", 2)
	if _, err := s.SetKeyQuota(ctx, "k2", 1); err != nil {
		t.Fatal(err)
	}
	for _, h := range []holdfast.Hold{a, b} {
		if _, err := s.Release(ctx, h.ID); err != nil {
			t.Fatal(err)
		}
	}
	if n := mustOffer(t, s); n != 2 {
		t.Fatalf("%d offers, want 2 (the entry at its quota and the small one)", n)
	}
	offer := wantEntry(t, s, atQuota, holdfast.WaitlistOffered, 0)
	if h, err := s.GetHold(ctx, offer.HoldID); err != nil || h.Status != holdfast.StatusHeld || h.Lines[0].Quantity != 3 {
		t.Fatalf("the offer's hold: %+v, %v", h, err)
	}
	if e := wantEntry(t, s, overQuota, holdfast.WaitlistCancelled, 0); !strings.Contains(e.Reason, string(holdfast.CodeQuotaExceeded)) {
		t.Fatalf("cancelled with reason %q, want it to name %s", e.Reason, holdfast.CodeQuotaExceeded)
	}
	wantEntry(t, s, small, holdfast.WaitlistOffered, 0)
	wantEntry(t, s, last, holdfast.WaitlistWaiting, 1)
	if p := MustPool(t, s, "p"); p.Held != 5 || p.Waitlisted != 2 || p.Available != 0 {
		t.Fatalf("pool after the offers: %+v; want 5 held, 2 waitlisted, none available", p)
	}
	_, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "new", Lines: []holdfast.Line{{Pool: "p", Quantity: 1}}})
	wantCode(t, err, holdfast.CodeSoldOut, 0)
	for key, want := range map[string]int64{"k": 3, "k2": 0} {
		if k, err := s.APIKey(ctx, key); err != nil || k.HeldUnits != want {
			t.Fatalf("key %s: %+v, %v; want %d held", key, k, err, want)
		}
	}
	for typ, want := range map[holdfast.EventType]int64{holdfast.EventWaitlistOffered: 2, holdfast.EventWaitlistCancelled: 1} {
		if n := MustCount(t, s, `SELECT COUNT(*) FROM events WHERE type = $1`, string(typ)); n != want {
			t.Fatalf("%d %s events, want %d", n, typ, want)
		}
	}
	// The offer confirmed gives the key's quota back, as a hold's would.
	if _, err := s.Confirm(ctx, offer.HoldID, ""); err != nil {
		t.Fatal(err)
	}
	if k, err := s.APIKey(ctx, "k"); err != nil || k.HeldUnits != 0 {
		t.Fatalf("key k after the confirm: %+v, %v", k, err)
	}

	// A group's line by the same rules: an entry at its key's quota is
	// offered the seats that come back.
	MustCreateGroup(t, s, "g", false, "g1", "g2", "g3")
	all := MustHold(t, s, "x", holdfast.Line{Group: "g", Any: 3})
	seats, err := s.JoinWaitlist(ctx, holdfast.WaitlistRequest{Group: "g", Holder: "q", Any: 2, Owner: "key:k", QuotaKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetKeyQuota(ctx, "k", 2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Release(ctx, all.ID); err != nil {
		t.Fatal(err)
	}
	if n := mustOffer(t, s); n != 1 {
		t.Fatalf("%d offers of the group's seats, want 1", n)
	}
	if e, err := s.GroupWaitlistEntry(ctx, "g", seats.ID); err != nil || e.Status != holdfast.WaitlistOffered {
		t.Fatalf("the group's entry at its key's quota: %+v, %v; want offered", e, err)
	}
	if k, err := s.APIKey(ctx, "k"); err != nil || k.HeldUnits != 2 {
		t.Fatalf("key k after the group's offer: %+v, %v; want 2 held", k, err)
	}
	if _, reports := s.(holdfast.StatsReporter); reports && offers() != 3 {
		t.Errorf("Stats counted %d offers, want 3", offers())
	}
	MustAuditClean(t, s)
}

// raceWaitlistLeaves: entries leave the line — waiting, or with their
// offer in hand — while three servers make rounds of offers and the
// capacity comes back. A round locks the entries it decides before the
// pool's row, as a leave does; nothing deadlocks, every leaver ends
// (left, or released with its offer's units gone to the next), every unit
// ends with an entry still in line, and the counters hold.
func raceWaitlistLeaves(t *testing.T, h Harness) {
	const capacity, waiting = 20, 36
	stores, early, entries := fullWithLine(t, h, capacity, waiting)
	ctx := ctxT(t)
	s := stores[0]
	leaves := func(i int) bool { return i%3 == 0 } // 12 of 36 leave
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for k := range stores {
		untilStopped(&wg, stop, func() bool {
			if _, err := stores[k].OfferWaitlists(ctx); err != nil {
				t.Errorf("OfferWaitlists: %v", err)
				return false
			}
			return true
		})
	}
	storm(capacity+waiting, func(i int) {
		if i < capacity {
			if _, err := stores[i%3].Release(ctx, early[i].ID); err != nil {
				t.Errorf("release: %v", err)
			}
			return
		}
		e := entries[i-capacity]
		if !leaves(i - capacity) {
			return
		}
		// Offered between the read and the leave: leave again, which
		// releases the offer.
		for try := 0; ; try++ {
			_, err := stores[i%3].LeaveWaitlist(ctx, "p", e.ID, "")
			if err == nil {
				return
			}
			if holdfast.ErrorCode(err) != holdfast.CodeConflict || try == 10 {
				t.Errorf("leave %s: %v", e.Holder, err)
				return
			}
		}
	})
	// The 24 who stay share the 20 units: wait for the offers, then stop.
	deadline := time.Now().Add(time.Minute)
	for MustCount(t, s, `SELECT COUNT(*) FROM waitlist_entries e JOIN holds h ON h.id = e.hold_id
		WHERE e.status = 'offered' AND h.status = 'held'`) < capacity && time.Now().Before(deadline) && !t.Failed() {
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	stayed := 0
	for i, e := range entries {
		got := mustEntry(t, s, e)
		switch {
		case leaves(i) && got.Status != holdfast.WaitlistLeft && got.Status != holdfast.WaitlistReleased:
			t.Errorf("entry %s left, but is %s", e.Holder, got.Status)
		case !leaves(i) && stayed < capacity && got.Status != holdfast.WaitlistOffered:
			t.Errorf("entry %s, %d in line of those who stayed, is %s: want offered", e.Holder, stayed+1, got.Status)
		case !leaves(i) && stayed >= capacity && got.Status != holdfast.WaitlistWaiting:
			t.Errorf("entry %s, past the capacity, is %s: want waiting", e.Holder, got.Status)
		}
		if !leaves(i) {
			stayed++
		}
	}
	if p := MustPool(t, s, "p"); p.Held != capacity || p.Waitlisted != int64(stayed-capacity) {
		t.Fatalf("pool after the race: %+v; want %d held, %d waitlisted", p, capacity, stayed-capacity)
	}
	MustAuditClean(t, s)
}

// fullWithLine opens three servers on one store, a pool "p" of capacity
// held whole by early holds of 1, and a line of waiting entries of 1
// joined on the servers in turn.
func fullWithLine(t *testing.T, h Harness, capacity, waiting int) (stores []holdfast.Store, early []holdfast.Hold, entries []holdfast.WaitlistEntry) {
	t.Helper()
	stores = instances(t, h, 3)
	MustCreatePool(t, stores[0], "p", int64(capacity), 0)
	for i := range capacity {
		early = append(early, MustHold(t, stores[0], fmt.Sprintf("early-%d", i), holdfast.Line{Pool: "p", Quantity: 1}))
	}
	for i := range waiting {
		entries = append(entries, mustJoinWaitlist(t, stores[i%3], "p", fmt.Sprintf("w-%02d", i), 1))
	}
	return stores, early, entries
}
