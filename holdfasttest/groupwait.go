package holdfasttest

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
)

// mustJoinGroup puts holder on group's waitlist for k units (together or
// not).
func mustJoinGroup(t *testing.T, s holdfast.Store, group, holder string, k int64, together bool) holdfast.WaitlistEntry {
	t.Helper()
	e, err := s.JoinWaitlist(ctxT(t), holdfast.WaitlistRequest{Group: group, Holder: holder, Any: k, Together: together})
	if err != nil {
		t.Fatalf("JoinWaitlist(%s, %s, any %d): %v", group, holder, k, err)
	}
	return e
}

func mustGroupEntry(t *testing.T, s holdfast.Store, e holdfast.WaitlistEntry) holdfast.WaitlistEntry {
	t.Helper()
	got, err := s.GroupWaitlistEntry(ctxT(t), e.Group, e.ID)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// heldUnits reads the units of a hold.
func heldUnits(t *testing.T, s holdfast.Store, id string) []string {
	t.Helper()
	h, err := s.GetHold(ctxT(t), id)
	if err != nil {
		t.Fatal(err)
	}
	var units []string
	for _, l := range h.Lines {
		units = append(units, l.Units...)
	}
	slices.Sort(units)
	return units
}

// A group's waitlist: seats that come back are the entries' before any
// new buyer's, offered in join order to each entry they can serve — a
// pair together only with seats next to each other in one row, a single
// with any — an entry they cannot serve does not stop a later one, and
// what none can use goes back to the general sale. The join keeps a
// hold's rules: what can be had now is held, not waited for.
func testGroupWaitlist(t *testing.T, h Harness) {
	s, _ := h.Open(t)
	ctx := ctxT(t)
	mustRowA(t, s, "hall", 6)
	MustCreateGroup(t, s, "plain", false, "P-1")
	x := MustHold(t, s, "x", holdfast.Line{Units: []string{"A-1", "A-2"}})
	y := MustHold(t, s, "y", holdfast.Line{Units: []string{"A-3"}})
	MustHold(t, s, "z", holdfast.Line{Units: []string{"A-4", "A-5", "A-6"}})
	MustHold(t, s, "z", holdfast.Line{Units: []string{"P-1"}})

	for _, c := range []struct {
		r    holdfast.WaitlistRequest
		code holdfast.Code
	}{
		{holdfast.WaitlistRequest{Group: "hall", Holder: "a", Any: 0}, holdfast.CodeInvalid},
		{holdfast.WaitlistRequest{Group: "hall", Holder: "a", Any: 7}, holdfast.CodeInvalid},
		{holdfast.WaitlistRequest{Group: "hall", Pool: "p", Holder: "a", Any: 1}, holdfast.CodeInvalid},
		{holdfast.WaitlistRequest{Group: "plain", Holder: "a", Any: 1, Together: true}, holdfast.CodeInvalid},
		{holdfast.WaitlistRequest{Group: "nope", Holder: "a", Any: 1}, holdfast.CodeNotFound},
	} {
		_, err := s.JoinWaitlist(ctx, c.r)
		wantCode(t, err, c.code, -1)
	}
	pair := mustJoinGroup(t, s, "hall", "pair", 2, true)
	solo := mustJoinGroup(t, s, "hall", "solo", 1, false)
	if again := mustJoinGroup(t, s, "hall", "pair", 2, true); again.ID != pair.ID || again.Position != 1 || again.Group != "hall" || again.Any != 2 || !again.Together {
		t.Fatalf("joining again: %+v, want the same entry %s at 1", again, pair.ID)
	}
	if got := mustGroupEntry(t, s, solo); got.Status != holdfast.WaitlistWaiting || got.Position != 2 {
		t.Fatalf("solo: %+v", got)
	}

	// A-3 comes back: the waitlist's before any new buyer's. The pair
	// cannot have it (its neighbours are held); the single can, though
	// behind the pair.
	if _, err := s.Release(ctx, y.ID); err != nil {
		t.Fatal(err)
	}
	_, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "new", Lines: []holdfast.Line{{Group: "hall", Any: 1}}})
	wantCode(t, err, holdfast.CodeUnavailable, 0)
	_, err = s.Hold(ctx, holdfast.HoldRequest{Holder: "new", Lines: []holdfast.Line{{Units: []string{"A-3"}}}})
	wantCode(t, err, holdfast.CodeUnavailable, 0)
	if g := MustGroupAvailability(t, s, "hall"); g.Waitlisted != 1 || g.Free != 0 {
		t.Fatalf("with A-3 back for the waitlist: %+v", g)
	}
	if n := mustOffer(t, s); n != 1 {
		t.Fatalf("%d offers, want 1 (the single)", n)
	}
	solo = mustGroupEntry(t, s, solo)
	if solo.Status != holdfast.WaitlistOffered || !slices.Equal(heldUnits(t, s, solo.HoldID), []string{"A-3"}) {
		t.Fatalf("solo after A-3 came back: %+v", solo)
	}
	if got := mustGroupEntry(t, s, pair); got.Status != holdfast.WaitlistWaiting || got.Position != 1 {
		t.Fatalf("the pair after A-3 came back: %+v", got)
	}

	// come back: two together, the pair's.
	if _, err := s.Release(ctx, x.ID); err != nil {
		t.Fatal(err)
	}
	mustOffer(t, s)
	pair = mustGroupEntry(t, s, pair)
	if pair.Status != holdfast.WaitlistOffered || !slices.Equal(heldUnits(t, s, pair.HoldID), []string{"A-1", "A-2"}) {
		t.Fatalf("the pair after A-1, A-2 came back: %+v", pair)
	}
	if _, err := s.Confirm(ctx, pair.HoldID, ""); err != nil {
		t.Fatal(err)
	}
	mustOffer(t, s)
	if got := mustGroupEntry(t, s, pair); got.Status != holdfast.WaitlistConfirmed {
		t.Fatalf("the pair after confirming its offer: %+v", got)
	}

	// A seat no entry can use goes back to the general sale: four
	// together cannot be had from A-3 alone.
	quad := mustJoinGroup(t, s, "hall", "quad", 4, true)
	if _, err := s.LeaveGroupWaitlist(ctx, "hall", solo.ID, ""); err != nil {
		t.Fatal(err)
	}
	if got := mustGroupEntry(t, s, solo); got.Status != holdfast.WaitlistReleased {
		t.Fatalf("solo after leaving with its offer: %+v", got)
	}
	mustOffer(t, s)
	if got := mustGroupEntry(t, s, quad); got.Status != holdfast.WaitlistWaiting {
		t.Fatalf("quad: %+v", got)
	}
	MustHold(t, s, "new", holdfast.Line{Units: []string{"A-3"}})

	// A join for what can be held now is refused: hold it instead.
	MustCreateGroup(t, s, "open", false, "O-1", "O-2")
	_, err = s.JoinWaitlist(ctx, holdfast.WaitlistRequest{Group: "open", Holder: "a", Any: 2})
	wantCode(t, err, holdfast.CodeNotSoldOut, -1)
	if list, err := s.GroupWaitlist(ctx, "hall"); err != nil || len(list) != 1 || list[0].ID != quad.ID {
		t.Fatalf("the hall's waitlist: %+v, %v", list, err)
	}
	if _, err := s.LeaveGroupWaitlist(ctx, "hall", quad.ID, ""); err != nil {
		t.Fatal(err)
	}
	_, err = s.LeaveGroupWaitlist(ctx, "hall", quad.ID, "")
	wantCode(t, err, holdfast.CodeConflict, -1)
	if n := MustCount(t, s, `SELECT COUNT(*) FROM events WHERE type = 'waitlist.offered' AND subject = 'hall'`); n != 2 {
		t.Fatalf("%d waitlist.offered events of the hall, want 2", n)
	}
	MustAuditClean(t, s)
}

// raceGroupWaitlist: seats are released while new buyers storm the group
// on three servers and three servers make offers — every seat that comes
// back goes to the waitlist, in join order, and none to a new buyer.
func raceGroupWaitlist(t *testing.T, h Harness) {
	stores := instances(t, h, 3)
	ctx := ctxT(t)
	s := stores[0]
	const seats, waiting = 16, 24
	ids := make([]string, seats)
	for i := range ids {
		ids[i] = fmt.Sprintf("S-%02d", i)
	}
	MustCreateGroup(t, s, "hall", false, ids...)
	var early []holdfast.Hold
	for _, id := range ids {
		early = append(early, MustHold(t, s, "early-"+id, holdfast.Line{Units: []string{id}}))
	}
	var entries []holdfast.WaitlistEntry
	for i := range waiting {
		entries = append(entries, mustJoinGroup(t, stores[i%3], "hall", fmt.Sprintf("w-%02d", i), 1, false))
	}
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
		for b := range 3 {
			loop(func() bool {
				line := holdfast.Line{Group: "hall", Any: 1}
				if b == 2 { // a new buyer naming a seat
					line = holdfast.Line{Units: []string{ids[int(bought.Load()+int64(k))%seats]}}
				}
				_, err := stores[k].Hold(ctx, holdfast.HoldRequest{Holder: fmt.Sprintf("new-%d-%d", k, b), Lines: []holdfast.Line{line}})
				switch holdfast.ErrorCode(err) {
				case "":
					bought.Add(1)
				case holdfast.CodeUnavailable:
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
	deadline := time.Now().Add(time.Minute)
	for MustCount(t, s, `SELECT COUNT(*) FROM group_waitlist_entries WHERE status = 'offered'`) < seats && time.Now().Before(deadline) && !t.Failed() {
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if n := bought.Load(); n != 0 {
		t.Fatalf("%d new buyers got a seat while the waitlist waited", n)
	}
	for i, e := range entries {
		want := holdfast.WaitlistOffered
		if i >= seats {
			want = holdfast.WaitlistWaiting
		}
		if got := mustGroupEntry(t, s, e); got.Status != want {
			t.Fatalf("entry %d (%s) is %s, want %s: offers out of order", i, e.Holder, got.Status, want)
		}
	}
	if n := MustCount(t, s, `SELECT COUNT(*) FROM units u JOIN holds h ON h.id = u.hold_id WHERE h.status = 'held' AND h.holder LIKE 'w-%'`); n != seats {
		t.Fatalf("%d seats held by the waitlist's holders, want %d", n, seats)
	}
	if n := MustCount(t, s, `SELECT COUNT(*) FROM units WHERE channel <> ''`); n != 0 {
		t.Fatalf("%d seats still marked for a sale after every seat was offered", n)
	}
	MustAuditClean(t, s)
}
