package holdfasttest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/holdfast/holdfast"
)

// wantExpired checks a refused confirm: hold_expired, with reclaimable
// false (under if_available) or absent (under refuse).
func wantExpired(t *testing.T, err error, reclaimable bool) {
	t.Helper()
	var e *holdfast.Error
	if !errors.As(err, &e) || e.Code != holdfast.CodeHoldExpired {
		t.Fatalf("confirm = %v, want hold_expired", err)
	}
	if reclaimable && e.Reclaimable != nil {
		t.Fatalf("confirm refused under refuse says reclaimable %v", *e.Reclaimable)
	}
	if !reclaimable && (e.Reclaimable == nil || *e.Reclaimable) {
		t.Fatalf("confirm refused under if_available: reclaimable %v, want false", e.Reclaimable)
	}
}

// sweep expires the holds past expiry, as the sweeper does.
func sweep(t *testing.T, s holdfast.Store) {
	t.Helper()
	if _, err := s.ExpireDue(context.Background(), 1000); err != nil {
		t.Fatal(err)
	}
}

func testLateConfirm(t *testing.T, h Harness) {
	s, _ := h.Open(t)
	ctx := context.Background()
	late := func(id string, capacity, limit, grace int64) {
		t.Helper()
		if _, err := s.CreatePool(ctx, holdfast.Pool{ID: id, Capacity: capacity, PerHolderLimit: limit,
			LateConfirm: holdfast.LateIfAvailable, LateConfirmGrace: grace}); err != nil {
			t.Fatal(err)
		}
	}
	MustCreatePool(t, s, "strict", 5, 0)
	late("lp", 10, 0, 0)
	if p := MustPool(t, s, "lp"); p.LateConfirm != holdfast.LateIfAvailable || p.LateConfirmGrace != holdfast.DefaultLateConfirmGrace {
		t.Fatalf("pool lp: %+v, want if_available with the default grace", p)
	}
	if p := MustPool(t, s, "strict"); p.LateConfirm != holdfast.LateRefuse {
		t.Fatalf("pool strict: %+v, want refuse", p)
	}

	// refuse: today's behaviour.
	a := MustHold(t, s, "a", holdfast.Line{Pool: "strict", Quantity: 1})
	MustExpire(t, s, a.ID)
	_, err := s.Confirm(ctx, a.ID, "")
	wantExpired(t, err, true)

	// if_available, not yet swept: the capacity is still the hold's.
	b := MustHold(t, s, "b", holdfast.Line{Pool: "lp", Quantity: 2})
	MustExpire(t, s, b.ID)
	got, err := s.Confirm(ctx, b.ID, "pay_late")
	if err != nil || !got.Late || got.Status != holdfast.StatusConfirmed || got.PaymentRef != "pay_late" {
		t.Fatalf("late confirm, unswept: %+v, %v", got, err)
	}
	if p := MustPool(t, s, "lp"); p.Confirmed != 2 || p.Held != 0 {
		t.Fatalf("pool lp after a late confirm: %+v", p)
	}
	if again, _ := s.GetHold(ctx, b.ID); !again.Late {
		t.Fatalf("the hold reads back without late: %+v", again)
	}

	// if_available, swept: taken again.
	c := MustHold(t, s, "c", holdfast.Line{Pool: "lp", Quantity: 3})
	MustExpire(t, s, c.ID)
	sweep(t, s)
	if p := MustPool(t, s, "lp"); p.Held != 0 || p.Available != 8 {
		t.Fatalf("the sweep did not give the capacity back: %+v", p)
	}
	if got, err := s.Confirm(ctx, c.ID, ""); err != nil || !got.Late || got.Lines[0].Quantity != 3 {
		t.Fatalf("late confirm, swept: %+v, %v", got, err)
	}
	if p := MustPool(t, s, "lp"); p.Confirmed != 5 || p.Available != 5 {
		t.Fatalf("pool lp after a late confirm of a swept hold: %+v", p)
	}

	// Swept, and the capacity went to someone else: refused, nothing changes.
	late("last", 1, 0, 0)
	d := MustHold(t, s, "d", holdfast.Line{Pool: "last", Quantity: 1})
	MustExpire(t, s, d.ID)
	sweep(t, s)
	MustHold(t, s, "e", holdfast.Line{Pool: "last", Quantity: 1})
	_, err = s.Confirm(ctx, d.ID, "")
	wantExpired(t, err, false)
	if p := MustPool(t, s, "last"); p.Held != 1 || p.Confirmed != 0 {
		t.Fatalf("a refused late confirm changed pool last: %+v", p)
	}
	if got, _ := s.GetHold(ctx, d.ID); got.Status != holdfast.StatusExpired {
		t.Fatalf("the refused hold is %s", got.Status)
	}

	// Past the grace.
	late("brief", 5, 0, 1)
	f := MustHold(t, s, "f", holdfast.Line{Pool: "brief", Quantity: 1})
	MustExec(t, s, `UPDATE holds SET expires_at = holdfast_now_ms() - 5000 WHERE id = $1`, f.ID)
	_, err = s.Confirm(ctx, f.ID, "")
	wantExpired(t, err, false)

	// Every pool and group of the hold must allow it.
	g := MustHold(t, s, "g", holdfast.Line{Pool: "lp", Quantity: 1}, holdfast.Line{Pool: "strict", Quantity: 1})
	MustExpire(t, s, g.ID)
	_, err = s.Confirm(ctx, g.ID, "")
	wantExpired(t, err, true)

	// The per-holder limit holds for the capacity taken again.
	late("limited", 10, 2, 0)
	h1 := MustHold(t, s, "alice", holdfast.Line{Pool: "limited", Quantity: 2})
	MustExpire(t, s, h1.ID)
	sweep(t, s)
	MustHold(t, s, "alice", holdfast.Line{Pool: "limited", Quantity: 2})
	_, err = s.Confirm(ctx, h1.ID, "")
	wantExpired(t, err, false)

	// Units: the same units, if no one took them.
	if _, err := s.CreateGroup(ctx, holdfast.Group{ID: "hall", LateConfirm: holdfast.LateIfAvailable, LateConfirmGrace: 60}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddUnits(ctx, "hall", []string{"A-1", "A-2", "B-1"}); err != nil {
		t.Fatal(err)
	}
	seats := MustHold(t, s, "s", holdfast.Line{Units: []string{"A-1", "A-2"}})
	lost := MustHold(t, s, "t", holdfast.Line{Units: []string{"B-1"}})
	MustExpire(t, s, seats.ID, lost.ID)
	sweep(t, s)
	MustHold(t, s, "u", holdfast.Line{Group: "hall", Any: 1}) // takes A-1 or B-1: the first free, A-1
	ga, err := s.Group(ctx, "hall")
	if err != nil {
		t.Fatal(err)
	}
	_, errSeats := s.Confirm(ctx, seats.ID, "")
	_, errLost := s.Confirm(ctx, lost.ID, "")
	if slices.Contains(ga.FreeUnits, "A-1") {
		// The any line took B-1: the seats are whole, B-1 is gone.
		if errSeats != nil {
			t.Fatalf("late confirm of free seats: %v", errSeats)
		}
		wantExpired(t, errLost, false)
	} else {
		wantExpired(t, errSeats, false)
		if errLost != nil {
			t.Fatalf("late confirm of a free seat: %v", errLost)
		}
	}
	if _, err := s.SetGroupLateConfirm(ctx, "nope", holdfast.LateRefuse, 0); holdfast.ErrorCode(err) != holdfast.CodeNotFound {
		t.Fatalf("SetGroupLateConfirm(nope) = %v", err)
	}
	if _, err := s.SetPoolLateConfirm(ctx, "nope", holdfast.LateRefuse, 0); holdfast.ErrorCode(err) != holdfast.CodeNotFound {
		t.Fatalf("SetPoolLateConfirm(nope) = %v", err)
	}
	for _, bad := range []struct {
		policy holdfast.LatePolicy
		grace  int64
	}{{"whenever", 0}, {holdfast.LateIfAvailable, -1}, {holdfast.LateIfAvailable, holdfast.MaxLateConfirmGrace + 1}} {
		if _, err := s.SetPoolLateConfirm(ctx, "strict", bad.policy, bad.grace); holdfast.ErrorCode(err) != holdfast.CodeInvalid {
			t.Fatalf("SetPoolLateConfirm(%v) = %v, want invalid", bad, err)
		}
	}
	// Turned on later, it applies to holds made before.
	old := MustHold(t, s, "v", holdfast.Line{Pool: "strict", Quantity: 1})
	if p, err := s.SetPoolLateConfirm(ctx, "strict", holdfast.LateIfAvailable, 30); err != nil || p.LateConfirmGrace != 30 {
		t.Fatalf("SetPoolLateConfirm: %+v, %v", p, err)
	}
	MustExpire(t, s, old.ID)
	if got, err := s.Confirm(ctx, old.ID, ""); err != nil || !got.Late {
		t.Fatalf("late confirm after the policy changed: %+v, %v", got, err)
	}

	// The event says late too.
	var lateEvents int
	for ctx := ctxT(t); ctx.Err() == nil && lateEvents < 4; {
		lateEvents = 0
		events, _, err := s.Events(ctx, "", 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range events {
			if e.Type == holdfast.EventHoldConfirmed && strings.Contains(string(e.Data), `"late":true`) {
				lateEvents++
			}
		}
	}
	if lateEvents != 4 {
		t.Fatalf("%d hold.confirmed events say late, want 4", lateEvents)
	}
	MustAuditClean(t, s)
}

func testPartialConfirm(t *testing.T, h Harness) {
	s, _ := h.Open(t)
	ctx := context.Background()
	MustCreatePool(t, s, "p", 10, 4)
	MustCreateGroup(t, s, "hall", false, "A-1", "A-2", "A-3", "B-1", "B-2", "B-3")

	// Paid for 2 of 4, and one seat of three; the unnamed line stays whole.
	a := MustHold(t, s, "alice", holdfast.Line{Pool: "p", Quantity: 4}, holdfast.Line{Units: []string{"A-1", "A-2", "A-3"}}, holdfast.Line{Group: "hall", Any: 2})
	before := MustPool(t, s, "p")
	for i, bad := range [][]holdfast.PartLine{
		{{Line: 0, Quantity: 5}},
		{{Line: 0, Quantity: 2}, {Line: 3, Quantity: 1}},
		{{Line: 0, Units: []string{"A-1"}}},
		{{Line: 1, Quantity: 1}},
		{{Line: 1, Units: []string{"B-9"}}},
		{{Line: 1, Units: []string{"A-1", "A-1"}}},
		{{Line: 1, Units: []string{}}},
		{{Line: 0, Quantity: 2}, {Line: 0, Quantity: 1}},
		{{Line: -1, Quantity: 1}},
		{{Line: 0}},
	} {
		_, err := s.ConfirmPart(ctx, a.ID, "", bad)
		if holdfast.ErrorCode(err) != holdfast.CodeInvalid || holdfast.ErrorLine(err) < 0 {
			t.Fatalf("case %d: ConfirmPart(%+v) = %v, want invalid naming the entry", i, bad, err)
		}
	}
	if got, _ := s.GetHold(ctx, a.ID); got.Status != holdfast.StatusHeld || !reflect.DeepEqual(MustPool(t, s, "p"), before) {
		t.Fatalf("a refused partial confirm changed something: %+v", got)
	}
	anyUnits := a.Lines[2].Units
	got, err := s.ConfirmPart(ctx, a.ID, "pay_2", []holdfast.PartLine{{Line: 0, Quantity: 2}, {Line: 1, Units: []string{"A-2"}}, {Line: 2, Units: anyUnits[:1]}})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != holdfast.StatusConfirmed || got.Lines[0].Quantity != 2 || !slices.Equal(got.Lines[1].Units, []string{"A-2"}) ||
		got.Lines[2].Any != 1 || !slices.Equal(got.Lines[2].Units, anyUnits[:1]) || got.Late {
		t.Fatalf("partly confirmed: %+v", got)
	}
	if p := MustPool(t, s, "p"); p.Confirmed != 2 || p.Held != 0 || p.Available != 8 {
		t.Fatalf("pool after a partial confirm: %+v", p)
	}
	free, err := s.Units(ctx, "hall", holdfast.UnitFree)
	if err != nil {
		t.Fatal(err)
	}
	if len(free) != 4 { // one of the any line's, and the unit no one held
		t.Fatalf("free units after a partial confirm: %+v", free)
	}
	// The released part frees the holder's limit: 2 confirmed, 2 more may be held.
	MustHold(t, s, "alice", holdfast.Line{Pool: "p", Quantity: 2})
	if _, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "alice", Lines: []holdfast.Line{{Pool: "p", Quantity: 1}}}); holdfast.ErrorCode(err) != holdfast.CodeLimitExceeded {
		t.Fatalf("the limit after a partial confirm: %v, want limit_exceeded", err)
	}

	// Partial and late: only what is kept is taken again.
	if _, err := s.SetPoolLateConfirm(ctx, "p", holdfast.LateIfAvailable, 60); err != nil {
		t.Fatal(err)
	}
	b := MustHold(t, s, "bob", holdfast.Line{Pool: "p", Quantity: 3})
	MustExpire(t, s, b.ID)
	sweep(t, s)
	if got, err := s.ConfirmPart(ctx, b.ID, "", []holdfast.PartLine{{Line: 0, Quantity: 1}}); err != nil || !got.Late || got.Lines[0].Quantity != 1 {
		t.Fatalf("late partial confirm: %+v, %v", got, err)
	}
	if p := MustPool(t, s, "p"); p.Confirmed != 3 || p.Held != 2 {
		t.Fatalf("pool after a late partial confirm: %+v", p)
	}
	c := MustHold(t, s, "carol", holdfast.Line{Pool: "p", Quantity: 2})
	MustExpire(t, s, c.ID)
	if got, err := s.ConfirmPart(ctx, c.ID, "", []holdfast.PartLine{{Line: 0, Quantity: 1}}); err != nil || !got.Late {
		t.Fatalf("late partial confirm, unswept: %+v, %v", got, err)
	}
	if p := MustPool(t, s, "p"); p.Confirmed != 4 || p.Held != 2 {
		t.Fatalf("pool after a late partial confirm of an unswept hold: %+v", p)
	}
	if _, err := s.ConfirmPart(ctx, c.ID, "", []holdfast.PartLine{{Line: 0, Quantity: 1}}); holdfast.ErrorCode(err) != holdfast.CodeInvalidState {
		t.Fatalf("a second confirm: %v, want invalid_state", err)
	}
	MustAuditClean(t, s)
}

// A payment arriving late and a new buyer race for the last ticket (and
// the last seat), on several servers: exactly one wins, never both.
func raceLateConfirmVsBuyer(t *testing.T, h Harness) {
	stores := instances(t, h, 3)
	ctx := ctxT(t)
	s := stores[0]
	const n = 24
	if _, err := s.CreateGroup(ctx, holdfast.Group{ID: "seats", LateConfirm: holdfast.LateIfAvailable}); err != nil {
		t.Fatal(err)
	}
	var seatIDs []string
	for i := range n {
		seatIDs = append(seatIDs, fmt.Sprintf("S-%02d", i))
	}
	if err := s.AddUnits(ctx, "seats", seatIDs); err != nil {
		t.Fatal(err)
	}
	type round struct {
		line       holdfast.Line
		late       string
		confirmErr error
		buyErr     error
	}
	rounds := make([]round, 2*n)
	for i := range n {
		pool := fmt.Sprintf("last-%d", i)
		if _, err := s.CreatePool(ctx, holdfast.Pool{ID: pool, Capacity: 1, LateConfirm: holdfast.LateIfAvailable}); err != nil {
			t.Fatal(err)
		}
		rounds[2*i].line = holdfast.Line{Pool: pool, Quantity: 1}
		rounds[2*i+1].line = holdfast.Line{Units: []string{seatIDs[i]}}
	}
	for i := range rounds {
		rounds[i].late = MustHold(t, s, fmt.Sprintf("payer-%d", i), rounds[i].line).ID
		MustExpire(t, s, rounds[i].late)
	}
	if _, err := s.ExpireDue(ctx, n/2); err != nil { // some swept, some not
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range rounds {
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, rounds[i].confirmErr = stores[i%3].Confirm(ctx, rounds[i].late, "")
		}()
		go func() {
			defer wg.Done()
			_, rounds[i].buyErr = stores[(i+1)%3].Hold(ctx, holdfast.HoldRequest{Holder: fmt.Sprintf("buyer-%d", i), Lines: []holdfast.Line{rounds[i].line}})
		}()
	}
	wg.Wait()
	for i, r := range rounds {
		confirmed, bought := r.confirmErr == nil, r.buyErr == nil
		if confirmed == bought {
			t.Errorf("round %d (%+v): confirm %v, buy %v: want exactly one to win", i, r.line, r.confirmErr, r.buyErr)
		}
		if !confirmed && holdfast.ErrorCode(r.confirmErr) != holdfast.CodeHoldExpired {
			t.Errorf("round %d: the late confirm lost with %v, want hold_expired", i, r.confirmErr)
		}
		if !bought && !slices.Contains([]holdfast.Code{holdfast.CodeSoldOut, holdfast.CodeUnavailable}, holdfast.ErrorCode(r.buyErr)) {
			t.Errorf("round %d: the buyer lost with %v", i, r.buyErr)
		}
	}
	if r := MustAuditClean(t, s); r.Oversold != 0 || r.DoubleBooked != 0 {
		t.Fatalf("audit: %+v", r)
	}
}
