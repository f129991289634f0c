package holdfasttest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
)

// mustRoom makes a room guarding pools, open (opensIn ≤ 0) or not yet.
func mustRoom(t *testing.T, s holdfast.Store, id string, opensIn time.Duration, pools ...string) {
	t.Helper()
	if _, err := s.CreateRoom(context.Background(), holdfast.Room{ID: id, Pools: pools, OpensAt: time.Now().Add(opensIn),
		AdmitPerSecond: 1000, AdmitTTLSeconds: 60, MaxInside: 1000}); err != nil {
		t.Fatalf("CreateRoom(%s): %v", id, err)
	}
}

// mustAdmission joins room for holder (of owner) and admits them.
func mustAdmission(t *testing.T, s holdfast.Store, room, holder, owner string) string {
	t.Helper()
	tk := mustJoin(t, s, room, holder, owner)
	mustAdmit(t, s)
	if tk = mustTicket(t, s, tk); tk.Admission == "" {
		t.Fatalf("%s not admitted to room %s: %+v", holder, room, tk)
	}
	return tk.Admission
}

// mustQuotaKey makes a client key with a quota of held units.
func mustQuotaKey(t testing.TB, s holdfast.Store, id string, max int64) {
	t.Helper()
	if _, err := s.CreateKey(context.Background(), holdfast.APIKey{ID: id, Name: id, Role: holdfast.RoleClient, Hash: []byte(id), MaxHeldUnits: max}); err != nil {
		t.Fatal(err)
	}
}

// quotaCounted: the backend counts a key's quota wherever its holds are
// (a sharded store counts it on the catalog shard only).
func quotaCounted(h Harness) bool { _, no := h.Unsupported["KeyQuota"]; return !no }

// mustPoolIn makes a pool in a partition (rooms protect one partition).
func mustPoolIn(t *testing.T, s holdfast.Store, id, partition string, capacity int64) {
	t.Helper()
	if _, err := s.CreatePool(context.Background(), holdfast.Pool{ID: id, Partition: partition, Capacity: capacity}); err != nil {
		t.Fatal(err)
	}
}

func pl(pool string, q int64) []holdfast.Line { return []holdfast.Line{{Pool: pool, Quantity: q}} }

// testSideDoors: the ways in that once skipped a rule a hold keeps — a
// waitlist behind a room that had not opened, an admission of one room
// spent behind another, a key's waitlist flood that made a pool look sold
// out, a revoked key's entries offered ahead of others — are refused,
// and change nothing.
func testSideDoors(t *testing.T, h Harness) {
	skipRemote(t, h) // owners and keys named directly; TestSideDoorsOverHTTP covers the wire
	s, _ := h.Open(t)
	ctx := ctxT(t)
	MustCreatePool(t, s, "open", 10, 0)
	mustPoolIn(t, s, "vip", "r3", 3)
	mustPoolIn(t, s, "vip2", "r3", 5)
	MustHold(t, s, "early", holdfast.Line{Pool: "vip", Quantity: 3}) // sold out before its room existed
	mustRoom(t, s, "r1", -time.Second, "open")
	mustRoom(t, s, "r3", time.Hour, "vip", "vip2")

	// A waitlist join behind a room that has not opened needs its
	// admission, as a hold would.
	_, err := s.JoinWaitlist(ctx, holdfast.WaitlistRequest{Pool: "vip", Holder: "erin", Quantity: 3})
	wantCode(t, err, holdfast.CodeAdmissionRequired, -1)

	// An admission admits to its own room only: not behind r3, on a hold,
	// a booking or a join, and not on a hold spanning both rooms.
	adm := mustAdmission(t, s, "r1", "erin", "")
	for name, try := range map[string]func() error{
		"hold behind another room": func() error {
			_, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "erin", Admission: adm, Lines: pl("vip2", 1)})
			return err
		},
		"booking behind another room": func() error {
			_, err := s.Book(ctx, holdfast.HoldRequest{Holder: "erin", Admission: adm, Lines: pl("vip2", 1)}, "")
			return err
		},
		"hold behind two rooms": func() error {
			_, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "erin", Admission: adm,
				Lines: []holdfast.Line{{Pool: "open", Quantity: 1}, {Pool: "vip2", Quantity: 1}}})
			return err
		},
		"waitlist join behind another room": func() error {
			_, err := s.JoinWaitlist(ctx, holdfast.WaitlistRequest{Pool: "vip", Holder: "erin", Quantity: 1, Admission: adm})
			return err
		},
	} {
		if err := try(); holdfast.ErrorCode(err) != holdfast.CodeAdmissionInvalid {
			t.Fatalf("%s with room r1's admission: %v, want admission_invalid", name, err)
		}
	}
	if n := MustCount(t, s, `SELECT held + confirmed + waitlisted FROM pools WHERE id = 'vip2'`) + MustPool(t, s, "vip").Waitlisted; n != 0 {
		t.Fatalf("refused requests behind r3 took %d", n)
	}
	// Unspent, it still admits to its own room.
	if _, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "erin", Admission: adm, Lines: pl("open", 1)}); err != nil {
		t.Fatalf("a hold with room r1's admission on r1's pool: %v", err)
	}
	// With r3's own admission the join is taken, and the place in the
	// room is spent on it.
	openRoom(t, s, "r3")
	adm3 := mustAdmission(t, s, "r3", "erin", "")
	e, err := s.JoinWaitlist(ctx, holdfast.WaitlistRequest{Pool: "vip", Holder: "erin", Quantity: 3, Admission: adm3})
	if err != nil || e.Status != holdfast.WaitlistWaiting {
		t.Fatalf("a join with room r3's admission: %+v, %v", e, err)
	}
	_, err = s.Hold(ctx, holdfast.HoldRequest{Holder: "erin", Admission: adm3, Lines: pl("vip2", 1)})
	wantCode(t, err, holdfast.CodeAdmissionInvalid, -1)

	// One key cannot make a pool look sold out: a join for what can be
	// held now is not_sold_out, and a key's waiting units count in its
	// quota, so a key whose quota is full joins nothing.
	MustCreatePool(t, s, "p", 100, 0)
	mustQuotaKey(t, s, "flood", 5)
	flood := holdfast.KeyOwner("flood")
	if _, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "f", Owner: flood, QuotaKey: "flood", Lines: pl("p", 5)}); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		_, err := s.JoinWaitlist(ctx, holdfast.WaitlistRequest{Pool: "p", Holder: fmt.Sprintf("f%d", i), Quantity: 95, Owner: flood, QuotaKey: "flood"})
		wantCode(t, err, holdfast.CodeNotSoldOut, -1)
	}
	rest := MustHold(t, s, "box-office", holdfast.Line{Pool: "p", Quantity: 95})
	for i := range 20 {
		if !quotaCounted(h) {
			break
		}
		_, err := s.JoinWaitlist(ctx, holdfast.WaitlistRequest{Pool: "p", Holder: fmt.Sprintf("f%d", i), Quantity: 100, Owner: flood, QuotaKey: "flood"})
		wantCode(t, err, holdfast.CodeQuotaExceeded, -1)
	}
	if p := MustPool(t, s, "p"); p.Waitlisted != 0 {
		t.Fatalf("refused joins wait for %d", p.Waitlisted)
	}
	if _, err := s.Release(ctx, rest.ID); err != nil {
		t.Fatal(err)
	}
	MustHold(t, s, "another-buyer", holdfast.Line{Pool: "p", Quantity: 95})
	// Waiting units count as held: a key with 3 waiting of a quota of 3
	// holds nothing more.
	mustQuotaKey(t, s, "q3", 3)
	if !quotaCounted(h) {
		goto revocation
	}
	if _, err := s.JoinWaitlist(ctx, holdfast.WaitlistRequest{Pool: "p", Holder: "w", Quantity: 3, Owner: holdfast.KeyOwner("q3"), QuotaKey: "q3"}); err != nil {
		t.Fatalf("a join within the quota: %v", err)
	}
	MustCreatePool(t, s, "spare", 10, 0)
	_, err = s.Hold(ctx, holdfast.HoldRequest{Holder: "w2", Owner: holdfast.KeyOwner("q3"), QuotaKey: "q3", Lines: pl("spare", 1)})
	wantCode(t, err, holdfast.CodeQuotaExceeded, 0)

revocation:
	// Revoking a key ends its claims on the future: its entries are
	// cancelled (a legitimate waiter behind gets the offer), its places
	// in rooms done, its unconfirmed holds released; what it bought stays.
	MustCreatePool(t, s, "gig", 2, 0)
	MustCreatePool(t, s, "merch", 5, 0)
	mallory := holdfast.KeyOwner("mallory")
	mustQuotaKey(t, s, "mallory", 0)
	sold := MustHold(t, s, "fan", holdfast.Line{Pool: "gig", Quantity: 2})
	me, err := s.JoinWaitlist(ctx, holdfast.WaitlistRequest{Pool: "gig", Holder: "m", Quantity: 1, Owner: mallory})
	if err != nil {
		t.Fatal(err)
	}
	ae := mustJoinWaitlist(t, s, "gig", "alice", 1)
	mh, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "m", Owner: mallory, Lines: pl("merch", 2)})
	if err != nil {
		t.Fatal(err)
	}
	mb, err := s.Book(ctx, holdfast.HoldRequest{Holder: "m", Owner: mallory, Lines: pl("merch", 1)}, "")
	if err != nil {
		t.Fatal(err)
	}
	mustRoom(t, s, "later", time.Hour, "merch")
	mt := mustJoin(t, s, "later", "m", mallory)
	if _, err := s.RevokeKey(ctx, "mallory"); err != nil {
		t.Fatal(err)
	}
	if got := mustEntry(t, s, me); got.Status != holdfast.WaitlistCancelled || got.Reason == "" {
		t.Fatalf("a revoked key's entry: %+v, want cancelled with a reason", got)
	}
	if got, err := s.GetHold(ctx, mh.ID); err != nil || got.Status != holdfast.StatusReleased {
		t.Fatalf("a revoked key's hold: %+v, %v, want released", got, err)
	}
	if got, err := s.GetHold(ctx, mb.ID); err != nil || got.Status != holdfast.StatusConfirmed {
		t.Fatalf("a revoked key's booking: %+v, %v, want confirmed still", got, err)
	}
	if got := mustTicket(t, s, mt); got.Status != holdfast.TicketDone {
		t.Fatalf("a revoked key's place in a room: %+v, want done", got)
	}
	if p := MustPool(t, s, "merch"); p.Held != 0 || p.Confirmed != 1 {
		t.Fatalf("merch after the revocation: %+v", p)
	}
	if _, err := s.Release(ctx, sold.ID); err != nil {
		t.Fatal(err)
	}
	mustOffer(t, s)
	if got := mustEntry(t, s, ae); got.Status != holdfast.WaitlistOffered {
		t.Fatalf("the waiter behind a revoked key's entry: %+v, want offered", got)
	}
	if p := MustPool(t, s, "gig"); p.Waitlisted != 0 || p.Held != 1 {
		t.Fatalf("gig after the offer: %+v", p)
	}
	MustAuditClean(t, s)
}

// testOfferBreakingARuleIsCancelled: an entry whose offer would pass its
// holder's limit or its key's quota (taken since it joined) ends
// cancelled, with the rule in its reason, and the capacity goes to the
// next entry at once.
func testOfferBreakingARuleIsCancelled(t *testing.T, h Harness) {
	skipRemote(t, h)
	s, _ := h.Open(t)
	ctx := ctxT(t)
	MustCreatePool(t, s, "lim", 4, 2)
	MustCreatePool(t, s, "other", 10, 0)
	mustQuotaKey(t, s, "k", 2)
	quotaKey := "k"
	if !quotaCounted(h) {
		quotaKey = "" // the entry still breaks no rule: it is offered
	}
	MustHold(t, s, "a", holdfast.Line{Pool: "lim", Quantity: 1})
	MustHold(t, s, "x", holdfast.Line{Pool: "lim", Quantity: 1})
	b := MustHold(t, s, "b", holdfast.Line{Pool: "lim", Quantity: 2})
	over := mustJoinWaitlist(t, s, "lim", "a", 1)                            // a holds 1 of a limit of 2
	MustExec(t, s, `UPDATE pools SET per_holder_limit = 1 WHERE id = 'lim'`) // and the limit is lowered since
	quota, err := s.JoinWaitlist(ctx, holdfast.WaitlistRequest{Pool: "lim", Holder: "q", Quantity: 1, Owner: holdfast.KeyOwner("k"), QuotaKey: quotaKey})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "q2", Owner: holdfast.KeyOwner("k"), QuotaKey: quotaKey, Lines: pl("other", 1)}); err != nil {
		t.Fatal(err) // 1 waiting + 1 held: the key's quota is full
	}
	if _, err := s.SetKeyQuota(ctx, "k", 1); err != nil { // and lowered since
		t.Fatal(err)
	}
	next := mustJoinWaitlist(t, s, "lim", "c", 1)
	if _, err := s.Release(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	mustOffer(t, s)
	for _, c := range []struct {
		e    holdfast.WaitlistEntry
		code holdfast.Code
	}{{over, holdfast.CodeLimitExceeded}, {quota, holdfast.CodeQuotaExceeded}} {
		if c.e.ID == quota.ID && quotaKey == "" {
			continue
		}
		if got := mustEntry(t, s, c.e); got.Status != holdfast.WaitlistCancelled || !strings.Contains(got.Reason, string(c.code)) {
			t.Fatalf("entry of %s: %+v, want cancelled for %s", got.Holder, got, c.code)
		}
	}
	if got := mustEntry(t, s, next); got.Status != holdfast.WaitlistOffered {
		t.Fatalf("the entry behind two that broke rules: %+v, want offered", got)
	}
	wantHeld := int64(3)
	if quotaKey == "" {
		wantHeld = 4 // the entry under no quota was offered too
	}
	if p := MustPool(t, s, "lim"); p.Waitlisted != 0 || p.Held != wantHeld {
		t.Fatalf("pool: %+v", p)
	}
	MustAuditClean(t, s)
}

// row4 is a one-row venue of four seats, named after its group.
func row4(t *testing.T, s holdfast.Store, id string) { t.Helper(); row4in(t, s, id, "") }

// row4in is row4 in a partition.
func row4in(t *testing.T, s holdfast.Store, id, partition string) {
	t.Helper()
	row := holdfast.Row{Name: "A"}
	for n := 1; n <= 4; n++ {
		row.Seats = append(row.Seats, holdfast.Seat{Unit: fmt.Sprintf("%s-%d", id, n), Number: fmt.Sprint(n), X: float64(n * 10)})
	}
	l := &holdfast.Layout{Sections: []holdfast.Section{{ID: "s", Name: "S", Rows: []holdfast.Row{row}}}}
	if _, err := s.CreateGroup(context.Background(), holdfast.Group{ID: id, Partition: partition, Layout: l}); err != nil {
		t.Fatal(err)
	}
}

// testRulesByDoor: every rule applies at every door that takes capacity,
// and its refusal has the rule's code whichever door was used (guarantee
// 9). A cell the design leaves out says why; a new door or rule is a new
// row or column here.
func testRulesByDoor(t *testing.T, h Harness) {
	// Over HTTP (Remote) the key is the caller's, not a field, and the
	// harness reaches rooms and waitlists on the store directly, as
	// another owner than its HTTP client: the key's quota, the waitlist
	// door and an admission's room are left to TestSideDoorsOverHTTP,
	// which drives them over the wire with real keys.
	s, _ := h.Open(t)
	ctx := ctxT(t)
	guard := func(room string, opensIn time.Duration, pools, groups []string) {
		t.Helper()
		if _, err := s.CreateRoom(ctx, holdfast.Room{ID: room, Pools: pools, Groups: groups, OpensAt: time.Now().Add(opensIn),
			AdmitPerSecond: 1000, AdmitTTLSeconds: 60, MaxInside: 1000}); err != nil {
			t.Fatal(err)
		}
	}
	// What each rule sets up, named n: a pool (or group) on which the
	// request below breaks the rule, and the request's holder and key.
	type setup struct {
		pool, group string
		holder      string
		owner, key  string
		admission   string
		// For the doors that change a hold: a hold to exchange units of
		// (and the swap that breaks the rule), or to transfer.
		hold string
		swap map[string]string
	}
	rules := map[string]func(n string) setup{
		"capacity": func(n string) setup {
			MustCreatePool(t, s, n, 1, 0)
			row4(t, s, n+"-g")
			MustHold(t, s, "other", holdfast.Line{Pool: n, Quantity: 1}, holdfast.Line{Group: n + "-g", Any: 4})
			// h's seat, to exchange for one another holds.
			MustCreateGroup(t, s, n+"-x", false, n+"-x1", n+"-x2")
			mine := MustHold(t, s, "h", holdfast.Line{Units: []string{n + "-x1"}})
			MustHold(t, s, "other", holdfast.Line{Units: []string{n + "-x2"}})
			return setup{pool: n, group: n + "-g", holder: "h", hold: mine.ID, swap: map[string]string{n + "-x1": n + "-x2"}}
		},
		"per_holder_limit": func(n string) setup {
			MustCreatePool(t, s, n, 10, 2)
			var theirs holdfast.Hold
			for _, who := range []string{"h", "o1", "o2", "o3", "o4"} {
				theirs = MustHold(t, s, who, holdfast.Line{Pool: n, Quantity: 2})
			}
			// o4's hold, to give to h, who has the limit already.
			return setup{pool: n, holder: "h", hold: theirs.ID}
		},
		"key_quota": func(n string) setup {
			MustCreatePool(t, s, n, 10, 0)
			MustCreatePool(t, s, n+"-elsewhere", 10, 0)
			row4(t, s, n+"-g")
			mustQuotaKey(t, s, n, 1)
			if _, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "x", Owner: holdfast.KeyOwner(n), QuotaKey: n, Lines: pl(n+"-elsewhere", 1)}); err != nil {
				t.Fatal(err)
			}
			MustHold(t, s, "other", holdfast.Line{Pool: n, Quantity: 10})
			return setup{pool: n, group: n + "-g", holder: "h", owner: holdfast.KeyOwner(n), key: n}
		},
		"admission_required": func(n string) setup {
			mustPoolIn(t, s, n, n, 10)
			row4in(t, s, n+"-g", n)
			MustHold(t, s, "other", holdfast.Line{Pool: n, Quantity: 10}) // sold out before the room, for the join
			guard(n, -time.Second, []string{n}, []string{n + "-g"})
			return setup{pool: n, group: n + "-g", holder: "h"}
		},
		"admission_of_its_room": func(n string) setup {
			mustPoolIn(t, s, n, n, 10)
			MustCreatePool(t, s, n+"-there", 10, 0)
			row4in(t, s, n+"-g", n)
			MustHold(t, s, "other", holdfast.Line{Pool: n, Quantity: 10})
			guard(n, -time.Second, []string{n}, []string{n + "-g"})
			guard(n+"-there", -time.Second, []string{n + "-there"}, nil)
			return setup{pool: n, group: n + "-g", holder: "h", admission: mustAdmission(t, s, n+"-there", "h", "")}
		},
	}
	req := func(x setup, lines []holdfast.Line) holdfast.HoldRequest {
		return holdfast.HoldRequest{Holder: x.holder, Owner: x.owner, QuotaKey: x.key, Admission: x.admission, Lines: lines}
	}
	// offerOutcome makes capacity come back to an entry x's holder joined
	// before the rule broke, and reads the entry: a cancelled entry
	// answers its reason's code; an entry still waiting, sold_out.
	doors := map[string]func(n string, x setup) error{
		"hold": func(_ string, x setup) error {
			_, err := s.Hold(ctx, req(x, pl(x.pool, 1)))
			return err
		},
		"book": func(_ string, x setup) error {
			_, err := s.Book(ctx, req(x, pl(x.pool, 1)), "")
			return err
		},
		"seats_together": func(_ string, x setup) error {
			_, err := s.Hold(ctx, req(x, []holdfast.Line{{Group: x.group, Any: 2, Together: true}}))
			return err
		},
		"waitlist_join": func(_ string, x setup) error {
			_, err := s.JoinWaitlist(ctx, holdfast.WaitlistRequest{Pool: x.pool, Holder: x.holder, Quantity: 1, Owner: x.owner, QuotaKey: x.key, Admission: x.admission})
			return err
		},
		"group_waitlist_join": func(_ string, x setup) error {
			_, err := s.JoinWaitlist(ctx, holdfast.WaitlistRequest{Group: x.group, Holder: x.holder, Any: 1, Owner: x.owner, QuotaKey: x.key, Admission: x.admission})
			return err
		},
		"transfer": func(_ string, x setup) error {
			_, err := s.Transfer(ctx, x.hold, x.holder)
			return err
		},
		"exchange": func(_ string, x setup) error {
			_, err := s.Exchange(ctx, x.hold, x.swap)
			return err
		},
		"paid_book": func(n string, x setup) error {
			_, err := s.BookPaid(ctx, req(x, pl(x.pool, 1)), eur("pi_"+n, 900))
			return err
		},
	}
	type cell struct{ rule, door string }
	want := map[cell]holdfast.Code{
		{"capacity", "hold"}: holdfast.CodeSoldOut, {"capacity", "book"}: holdfast.CodeSoldOut,
		{"capacity", "seats_together"}: holdfast.CodeUnavailable,
		{"per_holder_limit", "hold"}:   holdfast.CodeLimitExceeded, {"per_holder_limit", "book"}: holdfast.CodeLimitExceeded,
		{"per_holder_limit", "waitlist_join"}: holdfast.CodeLimitExceeded,
		{"key_quota", "hold"}:                 holdfast.CodeQuotaExceeded, {"key_quota", "seats_together"}: holdfast.CodeQuotaExceeded,
		{"key_quota", "waitlist_join"}: holdfast.CodeQuotaExceeded,
		{"admission_required", "hold"}: holdfast.CodeAdmissionRequired, {"admission_required", "book"}: holdfast.CodeAdmissionRequired,
		{"admission_required", "seats_together"}: holdfast.CodeAdmissionRequired, {"admission_required", "waitlist_join"}: holdfast.CodeAdmissionRequired,
		{"admission_of_its_room", "hold"}: holdfast.CodeAdmissionInvalid, {"admission_of_its_room", "book"}: holdfast.CodeAdmissionInvalid,
		{"admission_of_its_room", "seats_together"}: holdfast.CodeAdmissionInvalid, {"admission_of_its_room", "waitlist_join"}: holdfast.CodeAdmissionInvalid,
		{"capacity", "exchange"}: holdfast.CodeUnavailable, {"per_holder_limit", "transfer"}: holdfast.CodeLimitExceeded,
		{"capacity", "paid_book"}: holdfast.CodeSoldOut, {"per_holder_limit", "paid_book"}: holdfast.CodeLimitExceeded,
		{"admission_required", "paid_book"}: holdfast.CodeAdmissionRequired, {"admission_of_its_room", "paid_book"}: holdfast.CodeAdmissionInvalid,
		{"admission_required", "group_waitlist_join"}: holdfast.CodeAdmissionRequired, {"admission_of_its_room", "group_waitlist_join"}: holdfast.CodeAdmissionInvalid,
	}
	_, noPayments := h.Unsupported["Payments"]
	// Left out by design: a booking is never held, so it counts against
	// no key's quota; a group has no per-holder limit; a join while the
	// pool can sell is its own rule (not_sold_out, below); a transfer
	// takes no capacity, no quota (the same key) and no admission, and an
	// exchange is of units (no pool, no limit) the hold already entered
	// with.
	i := 0
	for c, code := range want {
		if (c.rule == "key_quota" && !quotaCounted(h)) || (h.Remote && (c.rule == "key_quota" || c.rule == "admission_of_its_room" || c.door == "waitlist_join" || c.door == "group_waitlist_join")) ||
			(c.door == "paid_book" && noPayments) {
			continue
		}
		i++
		n := fmt.Sprintf("c%02d", i)
		x := rules[c.rule](n)
		before := MustCount(t, s, `SELECT COALESCE(SUM(held + confirmed + waitlisted), 0) FROM pools`) + MustCount(t, s, `SELECT COUNT(*) FROM units WHERE hold_id IS NOT NULL`)
		err := doors[c.door](n, x)
		if holdfast.ErrorCode(err) != code {
			t.Errorf("rule %s at door %s: %v, want %s", c.rule, c.door, err, code)
		}
		after := MustCount(t, s, `SELECT COALESCE(SUM(held + confirmed + waitlisted), 0) FROM pools`) + MustCount(t, s, `SELECT COUNT(*) FROM units WHERE hold_id IS NOT NULL`)
		if after != before {
			t.Errorf("rule %s at door %s: the refusal took %d", c.rule, c.door, after-before)
		}
	}

	rulesAtChannelDoor(t, h, s, guard, noPayments)

	// The waitlist's own rule: no line for what can be held now.
	MustCreatePool(t, s, "free", 5, 0)
	_, err := s.JoinWaitlist(ctx, holdfast.WaitlistRequest{Pool: "free", Holder: "h", Quantity: 5})
	wantCode(t, err, holdfast.CodeNotSoldOut, -1)

	// The offer door and the late-confirm door: the rule is asked again
	// when the capacity is taken. A limit reached since joining cancels
	// the entry; a late confirm past a limit or the capacity is refused
	// hold_expired, never reclaimable.
	if _, err := s.CreatePool(ctx, holdfast.Pool{ID: "late", Capacity: 3, PerHolderLimit: 2, LateConfirm: holdfast.LateIfAvailable}); err != nil {
		t.Fatal(err)
	}
	old := MustHold(t, s, "h", holdfast.Line{Pool: "late", Quantity: 2})
	MustExpire(t, s, old.ID)
	MustHold(t, s, "h", holdfast.Line{Pool: "late", Quantity: 2})
	_, err = s.Confirm(ctx, old.ID, "")
	wantExpired(t, err, false)
	old2 := MustHold(t, s, "g", holdfast.Line{Pool: "late", Quantity: 1})
	MustExpire(t, s, old2.ID)
	MustHold(t, s, "k", holdfast.Line{Pool: "late", Quantity: 1})
	_, err = s.Confirm(ctx, old2.ID, "")
	wantExpired(t, err, false)
	MustAuditClean(t, s)
}

// rulesAtChannelDoor: a line on a channel's allocation (a reseller's
// sale) keeps every rule of its pool — its capacity is the allocation's,
// the pool's per-holder limit applies (a holder's allowance per channel),
// the key's quota counts it, and a room guarding the pool guards its
// channels too — at every door that takes from it: hold, booking, paid
// booking. A channel's named seats likewise: only its own (the general
// sale's free seats are not), behind the group's room. A refusal takes
// nothing.
func rulesAtChannelDoor(t *testing.T, h Harness, s holdfast.Store, guard func(room string, opensIn time.Duration, pools, groups []string), noPayments bool) {
	ctx := ctxT(t)
	alloc := func(n string, capacity, limit, allocated int64) {
		t.Helper()
		if _, err := s.CreatePool(ctx, holdfast.Pool{ID: n, Partition: n, Capacity: capacity, PerHolderLimit: limit}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Allocate(ctx, holdfast.AllocationRequest{Pool: n, Channel: "presale", Quantity: allocated}); err != nil {
			t.Fatal(err)
		}
	}
	line := func(n string, q int64) []holdfast.Line {
		return []holdfast.Line{{Pool: n, Quantity: q, Channel: "presale"}}
	}
	take := func(r holdfast.HoldRequest) {
		t.Helper()
		if _, err := s.Hold(ctx, r); err != nil {
			t.Fatalf("setting up: %v", err)
		}
	}
	type channelRule struct {
		rule  string
		code  holdfast.Code
		skip  bool
		setup func(n string) holdfast.HoldRequest
	}
	rules := []channelRule{
		{"capacity", holdfast.CodeSoldOut, false, func(n string) holdfast.HoldRequest {
			alloc(n, 10, 0, 2) // the general sale has 8 free: not the channel's
			take(holdfast.HoldRequest{Holder: "other", Lines: line(n, 2)})
			return holdfast.HoldRequest{Holder: "h", Lines: line(n, 1)}
		}},
		{"per_holder_limit", holdfast.CodeLimitExceeded, false, func(n string) holdfast.HoldRequest {
			alloc(n, 10, 2, 5)
			take(holdfast.HoldRequest{Holder: "h", Lines: line(n, 2)})
			return holdfast.HoldRequest{Holder: "h", Lines: line(n, 1)}
		}},
		{"key_quota", holdfast.CodeQuotaExceeded, h.Remote || !quotaCounted(h), func(n string) holdfast.HoldRequest {
			alloc(n, 10, 0, 5)
			mustQuotaKey(t, s, n, 1)
			take(holdfast.HoldRequest{Holder: "x", Owner: holdfast.KeyOwner(n), QuotaKey: n, Lines: line(n, 1)})
			return holdfast.HoldRequest{Holder: "h", Owner: holdfast.KeyOwner(n), QuotaKey: n, Lines: line(n, 1)}
		}},
		{"admission_required", holdfast.CodeAdmissionRequired, false, func(n string) holdfast.HoldRequest {
			alloc(n, 10, 0, 5)
			guard(n, -time.Second, []string{n}, nil)
			return holdfast.HoldRequest{Holder: "h", Lines: line(n, 1)}
		}},
	}
	doors := map[string]func(r holdfast.HoldRequest, n string) error{
		"hold": func(r holdfast.HoldRequest, _ string) error { _, err := s.Hold(ctx, r); return err },
		"book": func(r holdfast.HoldRequest, _ string) error { _, err := s.Book(ctx, r, ""); return err },
		"paid_book": func(r holdfast.HoldRequest, n string) error {
			_, err := s.BookPaid(ctx, r, eur("pi_"+n, 900))
			return err
		},
	}
	// A channel's named seats: the same rules at a {group, any} line.
	seats := func(n string, held bool) {
		t.Helper()
		row4in(t, s, n+"-g", n)
		if _, err := s.AllocateUnits(ctx, holdfast.UnitAllocationRequest{Group: n + "-g", Channel: "presale", Units: []string{n + "-g-1", n + "-g-2"}}); err != nil {
			t.Fatal(err)
		}
		if held {
			take(holdfast.HoldRequest{Holder: "other", Lines: []holdfast.Line{{Group: n + "-g", Any: 2, Channel: "presale"}}})
		}
	}
	seatLine := func(n string) []holdfast.Line { return []holdfast.Line{{Group: n + "-g", Any: 1, Channel: "presale"}} }
	rules = append(rules,
		channelRule{"seats_capacity", holdfast.CodeUnavailable, false, func(n string) holdfast.HoldRequest {
			seats(n, true) // the general sale has two free: not the channel's
			return holdfast.HoldRequest{Holder: "h", Lines: seatLine(n)}
		}},
		channelRule{"seats_admission_required", holdfast.CodeAdmissionRequired, false, func(n string) holdfast.HoldRequest {
			seats(n, false)
			guard(n, -time.Second, nil, []string{n + "-g"})
			return holdfast.HoldRequest{Holder: "h", Lines: seatLine(n)}
		}},
	)
	taken := func() int64 {
		return MustCount(t, s, `SELECT COALESCE(SUM(held + confirmed + waitlisted), 0) FROM pools`) +
			MustCount(t, s, `SELECT COUNT(*) FROM units WHERE hold_id IS NOT NULL`)
	}
	i := 0
	for _, r := range rules {
		for door, try := range doors {
			// A booking is never held: no key's quota counts it.
			if r.skip || (door == "paid_book" && noPayments) || (r.rule == "key_quota" && door != "hold") {
				continue
			}
			i++
			n := fmt.Sprintf("ch%02d", i)
			req := r.setup(n)
			before := taken()
			if err := try(req, n); holdfast.ErrorCode(err) != r.code {
				t.Errorf("rule %s at the channel's door %s: %v, want %s", r.rule, door, err, r.code)
			}
			if after := taken(); after != before {
				t.Errorf("rule %s at the channel's door %s: the refusal took %d", r.rule, door, after-before)
			}
		}
	}
}

// raceChangesWithClaims: lifecycle changes (confirm whole or in part,
// release, extend, complete) and claims of the same pool and riders, from many clients on
// several servers at once — with batching, changes and claims of the
// same rows decided in the same moment. Every acknowledged confirm is
// counted in the database, nothing is oversold or double-booked, every
// rider is back when its delivery is complete, and (where the store
// batches) changes were decided in batches.
func raceChangesWithClaims(t *testing.T, h Harness) {
	stores := instances(t, h, 3)
	s := stores[0]
	ctx := ctxT(t)
	MustCreatePool(t, s, "p", 40, 0)
	var riders []string
	for i := range 12 {
		riders = append(riders, fmt.Sprintf("rider-%02d", i))
	}
	MustCreateGroup(t, s, "fleet", true, riders...)
	var mu sync.Mutex
	confirmed := int64(0)
	var o outcomes
	storm(16, func(i int) {
		st := stores[i%len(stores)]
		rng := rand.New(rand.NewPCG(uint64(i), 7))
		for n := range 9 {
			if n%3 == 2 {
				// A delivery: any free rider, then free it again.
				b, err := st.Book(ctx, holdfast.HoldRequest{Holder: fmt.Sprintf("c%d-%d", i, n), Lines: []holdfast.Line{{Group: "fleet", Any: 1}}}, "")
				o.add(err)
				if err == nil {
					_, err := st.Complete(ctx, b.ID)
					o.add(err)
				}
				continue
			}
			// Holds of two are confirmed in part: one kept, one given back.
			q := int64(1 + n%2)
			hd, err := st.Hold(ctx, holdfast.HoldRequest{Holder: fmt.Sprintf("b%d-%d", i, n), Lines: []holdfast.Line{{Pool: "p", Quantity: q}}})
			o.add(err)
			if err != nil {
				continue
			}
			switch rng.IntN(3) {
			case 0:
				if q == 1 {
					_, err = st.Confirm(ctx, hd.ID, fmt.Sprintf("pay-%d-%d", i, n))
				} else {
					_, err = st.ConfirmPart(ctx, hd.ID, fmt.Sprintf("pay-%d-%d", i, n), []holdfast.PartLine{{Line: 0, Quantity: 1}})
				}
				if err == nil {
					mu.Lock()
					confirmed++
					mu.Unlock()
				}
			case 1:
				_, err = st.Release(ctx, hd.ID)
			default:
				if _, err = st.Extend(ctx, hd.ID, time.Minute); err == nil {
					_, err = st.Release(ctx, hd.ID)
				}
			}
			o.add(err)
		}
	})
	if len(o.errs) > 0 {
		t.Fatalf("%d unexpected errors, first: %v", len(o.errs), o.errs[0])
	}
	for c, n := range o.codes {
		if c != "" && c != holdfast.CodeSoldOut && c != holdfast.CodeUnavailable {
			t.Fatalf("%d answers %q (all: %v)", n, c, o.codes)
		}
	}
	if got := MustCount(t, s, `SELECT confirmed FROM pools WHERE id = 'p'`); got != confirmed {
		t.Fatalf("pool confirmed %d, %d confirms acknowledged", got, confirmed)
	}
	if got := MustCount(t, s, `SELECT COUNT(*) FROM holds h JOIN hold_lines l ON l.hold_id = h.id WHERE l.pool_id = 'p' AND h.status = 'confirmed'`); got != confirmed {
		t.Fatalf("%d confirmed holds, %d confirms acknowledged", got, confirmed)
	}
	if got := MustCount(t, s, `SELECT COUNT(*) FROM units WHERE hold_id IS NOT NULL`); got != 0 {
		t.Fatalf("%d riders still out after every delivery completed", got)
	}
	MustAuditClean(t, s)
	var claimBatches, changes int64
	for _, st := range stores {
		if r, ok := st.(holdfast.StatsReporter); ok {
			claimBatches += r.Stats().Batches
			changes += r.Stats().BatchedChanges
		}
	}
	if claimBatches > 0 && changes == 0 {
		t.Fatal("a batching store decided no change in a batch")
	}
}

// A room's max_units_per_admission bounds what one admission buys: a
// hold, a booking or a waitlist join past it is limit_exceeded (a hold's
// at the line that passes it) and spends nothing; within it, the
// admission buys as before.
func testAdmissionUnits(t *testing.T, h Harness) {
	skipRemote(t, h) // rooms and waitlists are reached on the store directly there, as another owner than the HTTP client
	s, _ := h.Open(t)
	ctx := ctxT(t)
	mustPoolIn(t, s, "gala", "gala", 10)
	mustPoolIn(t, s, "encore", "gala", 2)
	MustHold(t, s, "other", holdfast.Line{Pool: "encore", Quantity: 2}) // sold out, for the join
	if _, err := s.CreateRoom(ctx, holdfast.Room{ID: "gala", Pools: []string{"gala", "encore"}, OpensAt: time.Now().Add(-time.Second),
		AdmitPerSecond: 1000, AdmitTTLSeconds: 60, MaxInside: 100, MaxUnitsPerAdmission: 2}); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Room(ctx, "gala"); err != nil || r.MaxUnitsPerAdmission != 2 {
		t.Fatalf("the room: %+v, %v", r, err)
	}
	adm := mustAdmission(t, s, "gala", "alice", "")
	_, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "alice", Admission: adm, Lines: []holdfast.Line{{Pool: "gala", Quantity: 3}}})
	wantCode(t, err, holdfast.CodeLimitExceeded, 0)
	_, err = s.Book(ctx, holdfast.HoldRequest{Holder: "alice", Admission: adm, Lines: []holdfast.Line{{Pool: "gala", Quantity: 1}, {Pool: "encore", Quantity: 2}}}, "")
	wantCode(t, err, holdfast.CodeLimitExceeded, 1)
	_, err = s.JoinWaitlist(ctx, holdfast.WaitlistRequest{Pool: "encore", Holder: "alice", Quantity: 3, Admission: adm})
	wantCode(t, err, holdfast.CodeLimitExceeded, -1)
	// Nothing was spent: the same admission buys two.
	if hd, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "alice", Admission: adm, Lines: []holdfast.Line{{Pool: "gala", Quantity: 2}}}); err != nil || hd.Status != holdfast.StatusHeld {
		t.Fatalf("a hold within the admission's units: %+v, %v", hd, err)
	}
	if p := MustPool(t, s, "gala"); p.Held != 2 {
		t.Fatalf("gala held %d, want 2", p.Held)
	}
	if err := (holdfast.Room{ID: "bad", Pools: []string{"x"}, OpensAt: time.Now(), AdmitPerSecond: 1, AdmitTTLSeconds: 1, MaxInside: 1, MaxUnitsPerAdmission: -1}).Validate(); holdfast.ErrorCode(err) != holdfast.CodeInvalid {
		t.Fatalf("a negative max_units_per_admission: %v", err)
	}
	MustAuditClean(t, s)
}

// testRoomBeforeSoldOut: the waiting room's rule comes before the
// inventory's at every door — also on a pool that has just answered
// sold_out, which a store may then answer from a shared read of the
// pool's availability, and on a seat map with no seats left together: a
// buyer without an admission is told to join the room, not that nothing
// is left.
func testRoomBeforeSoldOut(t *testing.T, h Harness) {
	skipRemote(t, h) // rooms are reached on the store directly there, as another owner than the HTTP client
	s, _ := h.Open(t)
	ctx := ctxT(t)
	mustPoolIn(t, s, "gala", "gala", 2)
	mustRoom(t, s, "gala", -time.Second, "gala")
	alice := mustAdmission(t, s, "gala", "alice", "")
	bob := mustAdmission(t, s, "gala", "bob", "")
	held, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "alice", Admission: alice, Lines: pl("gala", 2)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Hold(ctx, holdfast.HoldRequest{Holder: "bob", Admission: bob, Lines: pl("gala", 1)})
	wantCode(t, err, holdfast.CodeSoldOut, 0)
	for range 3 {
		_, err = s.Hold(ctx, holdfast.HoldRequest{Holder: "carol", Lines: pl("gala", 1)})
		wantCode(t, err, holdfast.CodeAdmissionRequired, -1)
		if e := (*holdfast.Error)(nil); !errors.As(err, &e) || e.Room != "gala" {
			t.Fatalf("admission_required names room %q, want gala", e.Room)
		}
	}
	row4in(t, s, "stalls", "gala")
	if _, err := s.CreateRoom(ctx, holdfast.Room{ID: "stalls", Groups: []string{"stalls"}, OpensAt: time.Now().Add(-time.Second),
		AdmitPerSecond: 1000, AdmitTTLSeconds: 60, MaxInside: 1000}); err != nil {
		t.Fatal(err)
	}
	dora := mustAdmission(t, s, "stalls", "dora", "")
	if _, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "dora", Admission: dora, Lines: []holdfast.Line{{Group: "stalls", Any: 3, Together: true}}}); err != nil {
		t.Fatal(err)
	}
	_, err = s.Hold(ctx, holdfast.HoldRequest{Holder: "carol", Lines: []holdfast.Line{{Group: "stalls", Any: 2, Together: true}}})
	wantCode(t, err, holdfast.CodeAdmissionRequired, -1)
	// bob's admission was not spent by the refusal: it buys what comes back.
	if _, err := s.Release(ctx, held.ID); err != nil {
		t.Fatal(err)
	}
	if hd, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "bob", Admission: bob, Lines: pl("gala", 1)}); err != nil || hd.Status != holdfast.StatusHeld {
		t.Fatalf("bob after the release: %+v, %v", hd, err)
	}
	MustAuditClean(t, s)
}

// testBookingBesideAFullQuota: a booking is never held, so it counts
// against no key's quota — also when it is decided on the careful path
// (the batch could not grant it: an expired hold sat on the capacity, and
// the look after reclaiming it names what, if anything, refuses it).
func testBookingBesideAFullQuota(t *testing.T, h Harness) {
	if !quotaCounted(h) {
		t.Skip("this backend counts a key's quota on its catalog shard only")
	}
	skipRemote(t, h) // over HTTP the key is the caller's; TestSideDoorsOverHTTP drives quotas there
	s, _ := h.Open(t)
	ctx := ctxT(t)
	mustQuotaKey(t, s, "k", 1)
	MustCreatePool(t, s, "a", 5, 0)
	MustCreatePool(t, s, "b", 1, 0)
	owner := holdfast.KeyOwner("k")
	if _, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "kim", Owner: owner, QuotaKey: "k", Lines: pl("a", 1)}); err != nil {
		t.Fatal(err) // the key's quota is full now
	}
	stale := MustHold(t, s, "other", holdfast.Line{Pool: "b", Quantity: 1})
	MustExpire(t, s, stale.ID)
	b, err := s.Book(ctx, holdfast.HoldRequest{Holder: "kim", Owner: owner, QuotaKey: "k", Lines: pl("b", 1)}, "")
	if err != nil || b.Status != holdfast.StatusConfirmed {
		t.Fatalf("a booking under a key whose quota is full, on capacity an expired hold sat on: %+v, %v", b, err)
	}
	_, err = s.Hold(ctx, holdfast.HoldRequest{Holder: "kim", Owner: owner, QuotaKey: "k", Lines: pl("a", 1)})
	wantCode(t, err, holdfast.CodeQuotaExceeded, 0)
	MustAuditClean(t, s)
}
