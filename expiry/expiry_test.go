package expiry

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/holdfasttest"
	"github.com/holdfast/holdfast/sqlite"
)

func TestSweeperExpiresDueHolds(t *testing.T) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "x.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	holdfasttest.MustCreatePool(t, s, "p", 300, 0)
	var ids []string
	for i := 0; i < 250; i++ { // more than two batches
		ids = append(ids, holdfasttest.MustHold(t, s, "b", holdfast.Line{Pool: "p", Quantity: 1}).ID)
	}
	keep := holdfasttest.MustHold(t, s, "c", holdfast.Line{Pool: "p", Quantity: 1})
	holdfasttest.MustExpire(t, s, ids...)

	sw := New(s, Config{Interval: 10 * time.Millisecond, Batch: 100})
	sw.testSignals.swept.Init()
	if err := sw.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer sw.Stop(ctx)
	if r := sw.testSignals.swept.Wait(t, time.Minute); r.expired != 250 || r.err != nil {
		t.Fatalf("first sweep expired %d (%v), want 250", r.expired, r.err)
	}
	if r := sw.testSignals.swept.Wait(t, time.Minute); r.expired != 0 || r.err != nil {
		t.Fatalf("second sweep expired %d (%v), want 0", r.expired, r.err)
	}
	if err := sw.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if st := sw.Stats(); st.Expired != 250 || st.Failures != 0 || st.Sweeps < 2 {
		t.Fatalf("stats after two sweeps: %+v", st)
	}
	p := holdfasttest.MustPool(t, s, "p")
	if p.Held != 1 || p.Available != 299 {
		t.Fatalf("pool after sweep: %+v", p)
	}
	if h, _ := s.GetHold(ctx, keep.ID); h.Status != holdfast.StatusHeld {
		t.Fatalf("unexpired hold is %s", h.Status)
	}
	if n := holdfasttest.MustCount(t, s, `SELECT COUNT(*) FROM events WHERE type = 'hold.expired'`); n != 250 {
		t.Fatalf("expired events: %d, want 250", n)
	}
	holdfasttest.MustAuditClean(t, s)
}

func TestStopWithoutStart(t *testing.T) {
	if err := New(nil, Config{}).Stop(context.Background()); err != nil { // must not block or panic
		t.Fatal(err)
	}
}
