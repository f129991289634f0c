package holdfasttest

import (
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
)

// mustRowA makes group a venue of one row A of n seats, A-1 … A-n.
func mustRowA(t *testing.T, s holdfast.Store, group string, n int) {
	t.Helper()
	row := holdfast.Row{Name: "A"}
	for i := 1; i <= n; i++ {
		row.Seats = append(row.Seats, holdfast.Seat{Unit: fmt.Sprintf("A-%d", i), Number: fmt.Sprint(i), X: float64(i * 10)})
	}
	if _, err := s.CreateGroup(ctxT(t), holdfast.Group{ID: group, Layout: &holdfast.Layout{Sections: []holdfast.Section{{ID: "s", Name: "S", Rows: []holdfast.Row{row}}}}}); err != nil {
		t.Fatal(err)
	}
}

// unitAllocation returns group's allocation for channel, or fails.
func unitAllocation(t *testing.T, g holdfast.GroupAvailability, channel string) holdfast.UnitAllocation {
	t.Helper()
	for _, a := range g.Allocations {
		if a.Channel == channel {
			return a
		}
	}
	t.Fatalf("group %s has no units set aside for %q: %+v", g.ID, channel, g.Allocations)
	return holdfast.UnitAllocation{}
}

// Named seats set aside for a channel: only the channel's lines take
// them (named, any k, together), the general sale never does and its
// counts leave them out, setting aside is all or none of free seats of
// the general sale, an exchange stays within its sale, and what a
// channel gives back is the general sale's — the free seats at once, the
// held ones when their hold ends.
func testUnitAllocations(t *testing.T, h Harness) {
	s, _ := h.Open(t)
	ctx := ctxT(t)
	mustRowA(t, s, "hall", 6)
	MustCreateGroup(t, s, "other", false, "B-1")
	g, err := s.AllocateUnits(ctx, holdfast.UnitAllocationRequest{Group: "hall", Channel: "boxoffice", Units: []string{"A-5", "A-6"}})
	if err != nil {
		t.Fatal(err)
	}
	if a := unitAllocation(t, g, "boxoffice"); g.Free != 4 || a.Units != 2 || a.Available != 2 || slices.Contains(g.FreeUnits, "A-5") {
		t.Fatalf("after setting A-5, A-6 aside: %+v", g)
	}
	// Again: nothing changes, no second event.
	if _, err := s.AllocateUnits(ctx, holdfast.UnitAllocationRequest{Group: "hall", Channel: "boxoffice", Units: []string{"A-6"}}); err != nil {
		t.Fatalf("setting a unit aside again for its channel: %v", err)
	}
	if n := MustCount(t, s, `SELECT COUNT(*) FROM events WHERE type = 'allocation.changed' AND subject = 'hall'`); n != 1 {
		t.Fatalf("%d allocation.changed events for the group, want 1", n)
	}
	// Refused, all or none: a unit of another channel, of another group,
	// none at all, a bad channel.
	for _, c := range []struct {
		req  holdfast.UnitAllocationRequest
		code holdfast.Code
	}{
		{holdfast.UnitAllocationRequest{Group: "hall", Channel: "presale", Units: []string{"A-1", "A-5"}}, holdfast.CodeUnavailable},
		{holdfast.UnitAllocationRequest{Group: "hall", Channel: "presale", Units: []string{"A-1", "B-1"}}, holdfast.CodeNotFound},
		{holdfast.UnitAllocationRequest{Group: "nope", Channel: "presale", Units: []string{"A-1"}}, holdfast.CodeNotFound},
		{holdfast.UnitAllocationRequest{Group: "hall", Channel: "presale"}, holdfast.CodeInvalid},
		{holdfast.UnitAllocationRequest{Group: "hall", Channel: "pre~sale", Units: []string{"A-1"}}, holdfast.CodeInvalid},
	} {
		_, err := s.AllocateUnits(ctx, c.req)
		wantCode(t, err, c.code, -1)
	}

	// The general sale: never the channel's seats, by name, any k or
	// together.
	_, err = s.Hold(ctx, holdfast.HoldRequest{Holder: "g", Lines: []holdfast.Line{{Units: []string{"A-5"}}}})
	wantCode(t, err, holdfast.CodeUnavailable, 0)
	_, err = s.Hold(ctx, holdfast.HoldRequest{Holder: "g", Lines: []holdfast.Line{{Group: "hall", Any: 2, Together: true}, {Group: "hall", Any: 3}}})
	wantCode(t, err, holdfast.CodeUnavailable, 1)
	general := MustHold(t, s, "g", holdfast.Line{Group: "hall", Any: 3})
	if got := general.Lines[0].Units; !slices.Equal(got, []string{"A-1", "A-2", "A-3"}) {
		t.Fatalf("the general sale's any 3 took %v", got)
	}
	// A unit held cannot be set aside (nothing changes).
	_, err = s.AllocateUnits(ctx, holdfast.UnitAllocationRequest{Group: "hall", Channel: "presale", Units: []string{"A-4", "A-3"}})
	wantCode(t, err, holdfast.CodeUnavailable, -1)
	if g := MustGroupAvailability(t, s, "hall"); g.Free != 1 || len(g.Allocations) != 1 {
		t.Fatalf("a refused allocation changed the group: %+v", g)
	}

	// The channel: its seats only, by name and any k.
	ch := func(l holdfast.Line) holdfast.Line { l.Channel = "boxoffice"; return l }
	_, err = s.Hold(ctx, holdfast.HoldRequest{Holder: "c", Lines: []holdfast.Line{ch(holdfast.Line{Units: []string{"A-4"}})}})
	wantCode(t, err, holdfast.CodeUnavailable, 0)
	mine := MustHold(t, s, "c", ch(holdfast.Line{Units: []string{"A-5"}}))
	taken, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "c", Lines: []holdfast.Line{ch(holdfast.Line{Group: "hall", Any: 1, Together: true})}})
	if err != nil || !slices.Equal(taken.Lines[0].Units, []string{"A-6"}) {
		t.Fatalf("the channel's seat together: %+v, %v", taken, err)
	}
	_, err = s.Hold(ctx, holdfast.HoldRequest{Holder: "c", Lines: []holdfast.Line{ch(holdfast.Line{Group: "hall", Any: 1})}})
	wantCode(t, err, holdfast.CodeUnavailable, 0)
	g = MustGroupAvailability(t, s, "hall")
	if a := unitAllocation(t, g, "boxoffice"); g.Free != 1 || g.Held != 5 || a.Held != 2 || a.Available != 0 || g.Units != g.Free+g.Held+g.Confirmed+a.Available {
		t.Fatalf("counts: %+v", g)
	}
	units, err := s.Units(ctx, "hall", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range units {
		if want := map[bool]string{true: "boxoffice"}[u.ID == "A-5" || u.ID == "A-6"]; u.Channel != want {
			t.Fatalf("unit %s shows channel %q, want %q", u.ID, u.Channel, want)
		}
	}
	// An exchange stays within its sale: the channel's seat is not
	// swapped for the general sale's free one.
	_, err = s.Exchange(ctx, mine.ID, map[string]string{"A-5": "A-4"})
	wantCode(t, err, holdfast.CodeUnavailable, 0)

	// Given back: the held seats are the general sale's when their hold
	// ends; a second end finds nothing.
	g, err = s.EndUnitAllocation(ctx, "hall", "boxoffice")
	if err != nil || len(g.Allocations) != 0 || g.Free != 1 {
		t.Fatalf("EndUnitAllocation: %+v, %v", g, err)
	}
	_, err = s.EndUnitAllocation(ctx, "hall", "boxoffice")
	wantCode(t, err, holdfast.CodeNotFound, -1)
	if _, err := s.Release(ctx, taken.ID); err != nil {
		t.Fatal(err)
	}
	back := MustHold(t, s, "g2", holdfast.Line{Group: "hall", Any: 2})
	if got := back.Lines[0].Units; !slices.Equal(got, []string{"A-4", "A-6"}) {
		t.Fatalf("after the channel gave its seats back, the general sale's any 2 took %v", got)
	}
	if n := MustCount(t, s, `SELECT COUNT(*) FROM events WHERE type = 'allocation.released' AND subject = 'hall'`); n != 1 {
		t.Fatalf("%d allocation.released events for the group, want 1", n)
	}
	MustAuditClean(t, s)
}

// MustGroupAvailability reads a group's counts.
func MustGroupAvailability(tb testing.TB, s holdfast.Store, id string) holdfast.GroupAvailability {
	tb.Helper()
	g, err := s.Group(ctxT(tb), id)
	if err != nil {
		tb.Fatalf("Group(%s): %v", id, err)
	}
	return g
}

// The general sale and a channel storm one group with named seats set
// aside, on several servers: each sells exactly its own seats (no false
// refusal while one of its seats is free), the general sale's named
// claims of the channel's seats are all refused, and in the database
// every seat's holder is of its sale.
func raceUnitAllocation(t *testing.T, h Harness) {
	stores := instances(t, h, 3)
	ctx := ctxT(t)
	s := stores[0]
	const seats, aside = 40, 15
	ids := make([]string, seats)
	for i := range ids {
		ids[i] = fmt.Sprintf("S-%02d", i)
	}
	MustCreateGroup(t, s, "hall", false, ids...)
	if _, err := s.AllocateUnits(ctx, holdfast.UnitAllocationRequest{Group: "hall", Channel: "presale", Units: ids[seats-aside:]}); err != nil {
		t.Fatal(err)
	}
	var general, channel, stolen atomic.Int64
	storm(200, func(i int) {
		st := stores[i%len(stores)]
		line := holdfast.Line{Group: "hall", Any: 1}
		holder, won := fmt.Sprint("g", i), &general
		switch i % 4 {
		case 1, 2:
			line.Channel, holder, won = "presale", fmt.Sprint("c", i), &channel
		case 3: // the general sale names a channel's seat
			line, won = holdfast.Line{Units: []string{ids[seats-aside+i%aside]}}, &stolen
		}
		var err error
		if i%8 < 4 {
			_, err = st.Hold(ctx, holdfast.HoldRequest{Holder: holder, TTL: time.Hour, Lines: []holdfast.Line{line}})
		} else {
			_, err = st.Book(ctx, holdfast.HoldRequest{Holder: holder, Lines: []holdfast.Line{line}}, "")
		}
		switch {
		case err == nil:
			won.Add(1)
		case holdfast.ErrorCode(err) != holdfast.CodeUnavailable:
			t.Errorf("request %d: %v", i, err)
		}
	})
	if g, c, x := general.Load(), channel.Load(), stolen.Load(); g != seats-aside || c != aside || x != 0 {
		t.Fatalf("the general sale won %d (want %d), the channel %d (want %d), the general sale took %d of the channel's seats by name",
			g, seats-aside, c, aside, x)
	}
	if n := MustCount(t, s, `SELECT COUNT(*) FROM units u JOIN holds h ON h.id = u.hold_id
		WHERE (u.channel = 'presale') <> (h.holder LIKE 'c%')`); n != 0 {
		t.Fatalf("%d seats are held by a holder of the other sale", n)
	}
	MustAuditClean(t, s)
}
