package holdfasttest

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
)

// chl is a pool line of a channel.
func chl(pool, channel string, q int64) holdfast.Line {
	return holdfast.Line{Pool: pool, Channel: channel, Quantity: q}
}

// allocation returns pool's live allocation for channel, or fails.
func allocation(t *testing.T, p holdfast.Pool, channel string) holdfast.Allocation {
	t.Helper()
	for _, a := range p.Allocations {
		if a.Channel == channel {
			return a
		}
	}
	t.Fatalf("pool %s has no allocation for %q: %+v", p.ID, channel, p.Allocations)
	return holdfast.Allocation{}
}

// A pool split between the general sale and a channel: each side takes
// only its own part, every count adds up, the allocation changes only
// within what is unsold and what the channel has, and what a channel
// leaves goes back to the general sale when it ends — by hand, at its
// release_at, and when its holds come back after.
func testAllocations(t *testing.T, h Harness) {
	s, _ := h.Open(t)
	ctx := ctxT(t)
	MustCreatePool(t, s, "p", 10, 0)
	p, err := s.Allocate(ctx, holdfast.AllocationRequest{Pool: "p", Channel: "presale", Quantity: 4})
	if err != nil {
		t.Fatal(err)
	}
	if a := allocation(t, p, "presale"); p.Available != 6 || a.Quantity != 4 || a.Available != 4 || a.Held != 0 {
		t.Fatalf("after allocating 4 of 10: %+v", p)
	}
	// Allocations never exceed what is unsold.
	_, err = s.Allocate(ctx, holdfast.AllocationRequest{Pool: "p", Channel: "boxoffice", Quantity: 7})
	wantCode(t, err, holdfast.CodeConflict, -1)
	_, err = s.Allocate(ctx, holdfast.AllocationRequest{Pool: "nope", Channel: "x", Quantity: 1})
	wantCode(t, err, holdfast.CodeNotFound, -1)
	_, err = s.Allocate(ctx, holdfast.AllocationRequest{Pool: "p", Channel: "no~pe", Quantity: 1})
	wantCode(t, err, holdfast.CodeInvalid, -1)
	if got := MustPool(t, s, "p"); got.Available != 6 || len(got.Allocations) != 1 {
		t.Fatalf("refused allocations changed the pool: %+v", got)
	}

	// The general sale takes its 6, never the channel's 4.
	general := MustHold(t, s, "g", holdfast.Line{Pool: "p", Quantity: 6})
	_, err = s.Hold(ctx, holdfast.HoldRequest{Holder: "g2", Lines: pl("p", 1)})
	wantCode(t, err, holdfast.CodeSoldOut, 0)
	// The channel takes its own, never more.
	ch, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "c", TTL: time.Hour, Lines: []holdfast.Line{chl("p", "presale", 3)}})
	if err != nil {
		t.Fatal(err)
	}
	if ch.Lines[0].Pool != "p" || ch.Lines[0].Channel != "presale" || ch.Lines[0].Quantity != 3 {
		t.Fatalf("a channel's line reads %+v", ch.Lines[0])
	}
	if got, _ := s.GetHold(ctx, ch.ID); got.Lines[0].Pool != "p" || got.Lines[0].Channel != "presale" {
		t.Fatalf("a channel's line read back: %+v", got.Lines)
	}
	_, err = s.Hold(ctx, holdfast.HoldRequest{Holder: "c2", Lines: []holdfast.Line{chl("p", "presale", 2)}})
	wantCode(t, err, holdfast.CodeSoldOut, 0)
	MustCreatePool(t, s, "spare", 5, 0)
	_, err = s.Book(ctx, holdfast.HoldRequest{Holder: "c2", Lines: []holdfast.Line{{Pool: "spare", Quantity: 1}, chl("p", "other", 1)}}, "")
	wantCode(t, err, holdfast.CodeSoldOut, 1)
	p = MustPool(t, s, "p")
	if a := allocation(t, p, "presale"); p.Held != 9 || p.Available != 0 || a.Held != 3 || a.Available != 1 {
		t.Fatalf("after 6 general and 3 of the channel: %+v", p)
	}
	if _, err := s.Confirm(ctx, ch.ID, "pay-1"); err != nil {
		t.Fatal(err)
	}
	if a := allocation(t, MustPool(t, s, "p"), "presale"); a.Confirmed != 3 || a.Held != 0 {
		t.Fatalf("after the channel's confirm: %+v", a)
	}

	// Changes: never below what the channel sold, more only from what
	// the general sale has unsold, and capacity keeps what is set aside.
	_, err = s.Allocate(ctx, holdfast.AllocationRequest{Pool: "p", Channel: "presale", Quantity: 2, Existing: true})
	wantCode(t, err, holdfast.CodeConflict, -1)
	_, err = s.Allocate(ctx, holdfast.AllocationRequest{Pool: "p", Channel: "presale", Quantity: 5, Existing: true})
	wantCode(t, err, holdfast.CodeConflict, -1)
	_, err = s.Allocate(ctx, holdfast.AllocationRequest{Pool: "p", Channel: "boxoffice", Quantity: 1, Existing: true})
	wantCode(t, err, holdfast.CodeNotFound, -1)
	if _, err := s.Release(ctx, general.ID); err != nil {
		t.Fatal(err)
	}
	if p, err = s.Allocate(ctx, holdfast.AllocationRequest{Pool: "p", Channel: "presale", Quantity: 5, Existing: true}); err != nil {
		t.Fatal(err)
	}
	if a := allocation(t, p, "presale"); p.Available != 5 || a.Available != 2 || p.Confirmed != 3 {
		t.Fatalf("after raising the allocation to 5: %+v", p)
	}
	_, err = s.SetCapacity(ctx, "p", 4)
	wantCode(t, err, holdfast.CodeConflict, -1)

	// Ended by hand: the unsold 2 go back; the sold 3 stay sold.
	if p, err = s.EndAllocation(ctx, "p", "presale"); err != nil {
		t.Fatal(err)
	}
	if len(p.Allocations) != 0 || p.Available != 7 || p.Confirmed != 3 {
		t.Fatalf("after ending the allocation: %+v", p)
	}
	_, err = s.EndAllocation(ctx, "p", "presale")
	wantCode(t, err, holdfast.CodeNotFound, -1)
	_, err = s.Hold(ctx, holdfast.HoldRequest{Holder: "c3", Lines: []holdfast.Line{chl("p", "presale", 1)}})
	wantCode(t, err, holdfast.CodeSoldOut, 0)

	// Ended with holds out: what they held goes back once released.
	if _, err := s.Allocate(ctx, holdfast.AllocationRequest{Pool: "p", Channel: "boxoffice", Quantity: 3}); err != nil {
		t.Fatal(err)
	}
	box := MustHold(t, s, "b", chl("p", "boxoffice", 2))
	if p, err = s.EndAllocation(ctx, "p", "boxoffice"); err != nil || p.Available != 5 {
		t.Fatalf("ending an allocation with 2 held: %+v, %v", p, err)
	}
	if _, err := s.Release(ctx, box.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ExpireDue(ctx, 100); err != nil { // every sweep settles allocations
		t.Fatal(err)
	}
	if p = MustPool(t, s, "p"); p.Available != 7 || p.Held != 0 {
		t.Fatalf("after the ended channel's hold was released and a sweep: %+v", p)
	}

	// A presale that ends at release_at, by the database clock.
	past := time.Now().Add(-time.Minute)
	if p, err = s.Allocate(ctx, holdfast.AllocationRequest{Pool: "p", Channel: "early", Quantity: 2, ReleaseAt: &past}); err != nil {
		t.Fatal(err)
	}
	if a := allocation(t, p, "early"); a.ReleaseAt == nil || p.Available != 5 {
		t.Fatalf("an allocation with a release_at: %+v", p)
	}
	if _, err := s.ExpireDue(ctx, 100); err != nil {
		t.Fatal(err)
	}
	if p = MustPool(t, s, "p"); len(p.Allocations) != 0 || p.Available != 7 {
		t.Fatalf("after release_at passed and a sweep: %+v", p)
	}

	// Every allocation's change is an event. The feed shows an event once
	// no older transaction can still commit (on PostgreSQL, any in the
	// cluster): read until the last one is there.
	seen := allocationEvents(feedFrom(t, s, "", func(evs []holdfast.Event) bool {
		return slices.Contains(allocationEvents(evs), "allocation.released early")
	}))
	for _, want := range []string{"allocation.released presale", "allocation.released boxoffice", "allocation.released early"} {
		if !slices.Contains(seen, want) {
			t.Fatalf("events %v lack %q", seen, want)
		}
	}
	if n := slices.Index(seen, "allocation.released presale"); n < 2 {
		t.Fatalf("events %v: want the allocation's changes before its end", seen)
	}
	// A channel keeps the pool's rules as they change: a late confirm.
	if _, err := s.SetPoolLateConfirm(ctx, "p", holdfast.LateIfAvailable, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Allocate(ctx, holdfast.AllocationRequest{Pool: "p", Channel: "late", Quantity: 1}); err != nil {
		t.Fatal(err)
	}
	lh := MustHold(t, s, "l", chl("p", "late", 1))
	MustExpire(t, s, lh.ID)
	if got, err := s.Confirm(ctx, lh.ID, ""); err != nil || !got.Late || got.Lines[0].Channel != "late" {
		t.Fatalf("a channel's late confirm under if_available: %+v, %v", got, err)
	}
	if r := MustAuditClean(t, s); r.Pools != 2 {
		t.Fatalf("the audit counts %d pools, want 2 (p and spare; allocations are not pools)", r.Pools)
	}
}

// The general sale and a channel storm one pool from several servers:
// each sells exactly its own part, never the other's, and the database
// agrees.
func raceAllocation(t *testing.T, h Harness) {
	stores := instances(t, h, 3)
	ctx := ctxT(t)
	s := stores[0]
	MustCreatePool(t, s, "p", 50, 0)
	if _, err := s.Allocate(ctx, holdfast.AllocationRequest{Pool: "p", Channel: "presale", Quantity: 20}); err != nil {
		t.Fatal(err)
	}
	var general, channel atomic.Int64
	storm(160, func(i int) {
		st := stores[i%len(stores)]
		line := holdfast.Line{Pool: "p", Quantity: 1}
		won := &general
		if i%2 == 1 {
			line.Channel, won = "presale", &channel
		}
		var err error
		if i%4 < 2 {
			_, err = st.Hold(ctx, holdfast.HoldRequest{Holder: fmt.Sprint("h", i), TTL: time.Hour, Lines: []holdfast.Line{line}})
		} else {
			_, err = st.Book(ctx, holdfast.HoldRequest{Holder: fmt.Sprint("h", i), Lines: []holdfast.Line{line}}, "")
		}
		switch {
		case err == nil:
			won.Add(1)
		case holdfast.ErrorCode(err) != holdfast.CodeSoldOut:
			t.Errorf("request %d: %v", i, err)
		}
	})
	if g, c := general.Load(), channel.Load(); g != 30 || c != 20 {
		t.Fatalf("the general sale won %d (want 30), the channel %d (want 20)", g, c)
	}
	if n := MustCount(t, s, `SELECT held + confirmed FROM pools WHERE id = 'p'`); n != 30 {
		t.Fatalf("the general sale's row counts %d taken, want 30", n)
	}
	if n := MustCount(t, s, `SELECT COUNT(*) FROM hold_lines l JOIN holds h ON h.id = l.hold_id WHERE l.pool_id = 'p~presale' AND h.status IN ('held', 'confirmed')`); n != 20 {
		t.Fatalf("%d claims on the channel's allocation, want 20", n)
	}
	MustAuditClean(t, s)
}

// Transfers race the confirm and the expiry of the same holds, on several
// servers: a hold ends confirmed or expired, never both; whoever the
// last acknowledged transfer named holds it; nothing is counted twice.
func raceTransferVsConfirmExpiry(t *testing.T, h Harness) {
	stores := instances(t, h, 3)
	ctx := ctxT(t)
	s := stores[0]
	const n = 30
	MustCreatePool(t, s, "p", n, 0)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = MustHold(t, s, fmt.Sprint("a-", i), holdfast.Line{Pool: "p", Quantity: 1}).ID
		MustExec(t, s, fmt.Sprintf(`UPDATE holds SET expires_at = holdfast_now_ms() + %d WHERE id = $1`, 5+i%25), ids[i])
	}
	transferred := make([]string, n) // the receiver an acknowledged transfer named
	confirmed := make([]bool, n)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	untilStopped(&wg, stop, func() bool {
		if _, err := stores[1].ExpireDue(ctx, 10); err != nil {
			t.Errorf("ExpireDue: %v", err)
			return false
		}
		return true
	})
	storm(2*n, func(i int) {
		k := i % n
		time.Sleep(time.Duration(k%25) * time.Millisecond) // spread across the expiries (timing, not synchronisation)
		st := stores[i%len(stores)]
		if i < n {
			to := fmt.Sprint("b-", k)
			_, err := st.Transfer(ctx, ids[k], to)
			switch holdfast.ErrorCode(err) {
			case "":
				transferred[k] = to
			case holdfast.CodeHoldExpired, holdfast.CodeInvalidState:
			default:
				t.Errorf("transfer %d: %v", k, err)
			}
			return
		}
		_, err := st.Confirm(ctx, ids[k], "")
		switch holdfast.ErrorCode(err) {
		case "":
			confirmed[k] = true
		case holdfast.CodeHoldExpired:
		default:
			t.Errorf("confirm %d: %v", k, err)
		}
	})
	close(stop)
	wg.Wait()
	for k, id := range ids {
		got, err := s.GetHold(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if confirmed[k] != (got.Status == holdfast.StatusConfirmed) {
			t.Fatalf("hold %d: confirm answered ok=%v, the hold is %s", k, confirmed[k], got.Status)
		}
		if transferred[k] != "" && got.Holder != transferred[k] {
			t.Fatalf("hold %d: transferred to %s, held by %s", k, transferred[k], got.Holder)
		}
		if c := MustCount(t, s, `SELECT COUNT(*) FROM events WHERE hold_id = $1 AND type IN ('hold.confirmed', 'hold.expired')`, id); c > 1 {
			t.Fatalf("hold %d has %d confirmed/expired events", k, c)
		}
	}
	for {
		n, err := s.ExpireDue(ctx, 100)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	MustAuditClean(t, s)
}

// allocationEvents are the allocations' events among evs, each as its
// type and channel ("allocation.released presale").
func allocationEvents(evs []holdfast.Event) (out []string) {
	for _, e := range evs {
		if e.Type == holdfast.EventAllocationChanged || e.Type == holdfast.EventAllocationReleased {
			var d struct {
				Channel string `json:"channel"`
			}
			_ = json.Unmarshal(e.Data, &d)
			out = append(out, fmt.Sprintf("%s %s", e.Type, d.Channel))
		}
	}
	return out
}
