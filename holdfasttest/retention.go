package holdfasttest

import (
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
)

// Retention purges old events and holds that ended without a booking —
// never a held, confirmed or completed hold — in batches; a feed cursor
// from before the purged events is refused (cursor_expired), the feed's
// start is the oldest event kept, and the audit still balances.
func testRetention(t *testing.T, h Harness) {
	skipRemote(t, h)
	s, _ := h.Open(t)
	ctx := ctxT(t)
	MustCreatePool(t, s, "p", 2000, 0)
	MustCreateGroup(t, s, "g", false, "u1", "u2")
	// More than one purge batch of released holds, made by 13 clients at
	// once (one by one, the setup was most of the test's time).
	released := make([]string, 520)
	var wg sync.WaitGroup
	for c := range 13 {
		wg.Go(func() {
			for i := c; i < len(released); i += 13 {
				hd, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "a", Lines: []holdfast.Line{{Pool: "p", Quantity: 1}}})
				if err == nil {
					_, err = s.Release(ctx, hd.ID)
				}
				if err != nil {
					t.Error(err)
					return
				}
				released[i] = hd.ID
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	held := MustHold(t, s, "b", holdfast.Line{Pool: "p", Quantity: 2})
	confirmed, err := s.Book(ctx, holdfast.HoldRequest{Holder: "c", Lines: []holdfast.Line{{Units: []string{"u1"}}}}, "")
	if err != nil {
		t.Fatal(err)
	}
	old := (100 * 24 * time.Hour).Milliseconds()
	MustExec(t, s, `UPDATE holds SET updated_at = updated_at - $1`, old)
	MustExec(t, s, `UPDATE events SET at = at - $1`, old)
	total := MustCount(t, s, `SELECT COUNT(*) FROM events`)
	// Nothing is old enough for a year's retention.
	if rep, err := s.Purge(ctx, holdfast.Retention{Events: 365 * 24 * time.Hour, Holds: 365 * 24 * time.Hour}); err != nil || rep != (holdfast.PurgeReport{}) {
		t.Fatalf("purge with a year's retention: %+v, %v", rep, err)
	}
	rep, err := s.Purge(ctx, holdfast.Retention{Events: 30 * 24 * time.Hour, Holds: 90 * 24 * time.Hour})
	if err != nil || rep.Holds != len(released) || int64(rep.Events) != total {
		t.Fatalf("purge: %+v, %v; want %d holds, %d events", rep, err, len(released), total)
	}
	for _, id := range []string{held.ID, confirmed.ID} {
		if _, err := s.GetHold(ctx, id); err != nil {
			t.Fatalf("a live hold was purged: %v", err)
		}
	}
	if _, err := s.GetHold(ctx, released[0]); holdfast.ErrorCode(err) != holdfast.CodeNotFound {
		t.Fatalf("a released hold past retention: %v", err)
	}
	if n := MustCount(t, s, `SELECT COUNT(*) FROM hold_lines WHERE hold_id NOT IN (SELECT id FROM holds)`); n != 0 {
		t.Fatalf("%d lines of purged holds left", n)
	}
	// A cursor at the first event: everything after it up to the
	// watermark is gone.
	_, _, err = s.Events(ctx, "0.1", 10)
	wantCode(t, err, holdfast.CodeCursorExpired, -1)
	// New events after the purge read from the start (on PostgreSQL once
	// no older transaction is still running: poll, with a deadline).
	MustHold(t, s, "d", holdfast.Line{Units: []string{"u2"}})
	deadline := time.Now().Add(30 * time.Second)
	for {
		events, _, err := s.Events(ctx, "", 10)
		if err != nil || len(events) > 1 || (len(events) == 1 && events[0].Type != holdfast.EventHoldCreated) {
			t.Fatalf("the feed after a purge: %+v, %v", events, err)
		}
		if len(events) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the event written after the purge never showed in the feed")
		}
		time.Sleep(20 * time.Millisecond) // polling a deadline
	}
	if p := MustPool(t, s, "p"); p.Held != 2 || p.Available != 1998 {
		t.Fatalf("pool after the purge: %+v", p)
	}
	MustAuditClean(t, s)
}

// A per-holder limit counts per API key and holder: two clients whose
// buyers share a name are two buyers, and one client cannot use up
// another's; without an owner (a library caller) the holder alone counts.
func testPerHolderLimitPerKey(t *testing.T, h Harness) {
	skipRemote(t, h)
	s, _ := h.Open(t)
	ctx := ctxT(t)
	MustCreatePool(t, s, "p", 100, 2)
	hold := func(owner string, q int64) error {
		_, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "alice", Owner: owner, Lines: []holdfast.Line{{Pool: "p", Quantity: q}}})
		return err
	}
	for _, owner := range []string{"key:a", "key:b", ""} {
		if err := hold(owner, 2); err != nil {
			t.Fatalf("owner %q: %v", owner, err)
		}
	}
	wantCode(t, hold("key:a", 1), holdfast.CodeLimitExceeded, 0)
	wantCode(t, hold("", 1), holdfast.CodeLimitExceeded, 0)
	if b, ok := s.(Batcher); ok {
		_, errs := b.HoldBatch(ctx, []holdfast.HoldRequest{
			{Holder: "alice", Owner: "key:c", Lines: []holdfast.Line{{Pool: "p", Quantity: 2}}},
			{Holder: "alice", Owner: "key:b", Lines: []holdfast.Line{{Pool: "p", Quantity: 1}}},
		}, nil)
		if errs[0] != nil || holdfast.ErrorCode(errs[1]) != holdfast.CodeLimitExceeded {
			t.Fatalf("a batch: %v, %v", errs[0], errs[1])
		}
	}
	MustAuditClean(t, s)
}
