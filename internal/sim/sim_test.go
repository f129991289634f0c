// Package sim is a deterministic, seeded simulation of the engine, in the
// spirit of FoundationDB's and TigerBeetle's simulation testing: random
// operations and clock jumps against a real SQLite store with an injected
// clock, every invariant checked after every step. A failure prints its
// seed and step; replay it with
//
//	go test ./internal/sim -run TestSimulation -sim.seed=SEED -v
package sim

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/holdfasttest"
	"github.com/holdfast/holdfast/sqlite"
)

var (
	seedFlag  = flag.Uint64("sim.seed", 0, "run only this seed")
	stepsFlag = flag.Int("sim.steps", 400, "steps per seed")
	seedsFlag = flag.Int("sim.seeds", 4, "how many seeds to run (from 1)")
)

// fakeClock is the simulation's time: it moves only when the simulation
// says so.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestSimulation(t *testing.T) {
	clk := &fakeClock{now: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	seeds := []uint64{*seedFlag}
	if *seedFlag == 0 {
		seeds = nil
		for i := 1; i <= *seedsFlag; i++ {
			seeds = append(seeds, uint64(i))
		}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) { simulate(t, clk, seed, *stepsFlag) })
	}
}

type world struct {
	t     *testing.T
	s     holdfast.Store
	clk   *fakeClock
	rng   *rand.Rand
	seed  uint64
	step  int
	pools []string
	units []string
	holds []string
}

func (w *world) fail(format string, args ...any) {
	w.t.Helper()
	w.t.Fatalf("seed %d, step %d: %s\nreplay: go test ./internal/sim -run TestSimulation -sim.seed=%d -v", w.seed, w.step, fmt.Sprintf(format, args...), w.seed)
}

func simulate(t *testing.T, clk *fakeClock, seed uint64, steps int) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "sim.db"), sqlite.Options{Config: holdfast.Config{DefaultTTL: time.Minute, MaxTTL: 5 * time.Minute}, Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	w := &world{t: t, s: s, clk: clk, rng: rand.New(rand.NewPCG(seed, 0x5eed)), seed: seed}
	for i := 0; i < 3; i++ {
		id := fmt.Sprintf("pool-%d", i)
		holdfasttest.MustCreatePool(t, s, id, int64(3+w.rng.IntN(8)), int64(w.rng.IntN(3)))
		w.pools = append(w.pools, id)
	}
	for _, g := range []struct {
		id       string
		reusable bool
	}{{"hall", false}, {"fleet", true}} {
		var ids []string
		for i := 0; i < 6; i++ {
			ids = append(ids, fmt.Sprintf("%s-%d", g.id, i))
		}
		holdfasttest.MustCreateGroup(t, s, g.id, g.reusable, ids...)
		w.units = append(w.units, ids...)
	}
	for w.step = 0; w.step < steps; w.step++ {
		w.do(ctx)
		w.check(ctx)
	}
}

func (w *world) pick(xs []string) string { return xs[w.rng.IntN(len(xs))] }

func (w *world) line() holdfast.Line {
	switch w.rng.IntN(3) {
	case 0:
		return holdfast.Line{Pool: w.pick(w.pools), Quantity: int64(1 + w.rng.IntN(3))}
	case 1:
		n := 1 + w.rng.IntN(2)
		set := map[string]bool{}
		for len(set) < n {
			set[w.pick(w.units)] = true
		}
		var ids []string
		for id := range set {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		return holdfast.Line{Units: ids}
	}
	return holdfast.Line{Group: w.pick([]string{"hall", "fleet"}), Any: int64(1 + w.rng.IntN(2))}
}

// do performs one random operation and checks its answer against the
// rules that do not need a model: a confirm after expiry never succeeds,
// a grant never comes with an error, every error has a code.
func (w *world) do(ctx context.Context) {
	now := w.clk.Now()
	allowed := map[holdfast.Code]bool{"": true, holdfast.CodeSoldOut: true, holdfast.CodeUnavailable: true,
		holdfast.CodeLimitExceeded: true, holdfast.CodeHoldExpired: true, holdfast.CodeInvalidState: true,
		holdfast.CodeInvalid: true, holdfast.CodeConflict: true}
	var err error
	switch op := w.rng.IntN(10); {
	case op < 3 || len(w.holds) == 0:
		var lines []holdfast.Line
		pools := map[string]bool{}
		for n := 1 + w.rng.IntN(2); len(lines) < n; {
			l := w.line()
			if l.Pool != "" && pools[l.Pool] {
				continue
			}
			pools[l.Pool] = true
			lines = append(lines, l)
		}
		r := holdfast.HoldRequest{Holder: fmt.Sprint("h", w.rng.IntN(4)), TTL: time.Duration(1+w.rng.IntN(120)) * time.Second, Lines: lines}
		var h holdfast.Hold
		if w.rng.IntN(4) == 0 {
			h, err = w.s.Book(ctx, r, "")
		} else {
			h, err = w.s.Hold(ctx, r)
		}
		if err == nil {
			w.holds = append(w.holds, h.ID)
			if !h.ExpiresAt.After(now) {
				w.fail("hold %s granted already expired (%s at %s)", h.ID, h.ExpiresAt, now)
			}
		}
	case op == 3:
		id := w.pick(w.holds)
		before, _ := w.s.GetHold(ctx, id)
		var h holdfast.Hold
		h, err = w.s.Confirm(ctx, id, "")
		if err == nil && !before.ExpiresAt.After(now) {
			w.fail("hold %s confirmed at %s, after its expiry %s", id, now, before.ExpiresAt)
		}
		if err == nil && h.Status != holdfast.StatusConfirmed {
			w.fail("confirm answered %s", h.Status)
		}
		if holdfast.ErrorCode(err) == holdfast.CodeHoldExpired && before.ExpiresAt.After(now) {
			w.fail("hold %s refused as expired before its expiry", id)
		}
	case op == 4:
		_, err = w.s.Release(ctx, w.pick(w.holds))
	case op == 5:
		_, err = w.s.Extend(ctx, w.pick(w.holds), time.Duration(1+w.rng.IntN(60))*time.Second)
	case op == 6:
		_, err = w.s.Cancel(ctx, w.pick(w.holds))
	case op == 7:
		_, err = w.s.Complete(ctx, w.pick(w.holds))
	case op == 8:
		_, err = w.s.ExpireDue(ctx, 1+w.rng.IntN(5))
	default:
		// Time passes: sometimes a little, sometimes past every TTL.
		w.clk.Advance(time.Duration(w.rng.IntN(90_000)) * time.Millisecond)
		if w.rng.IntN(5) == 0 {
			_, err = w.s.SetCapacity(ctx, w.pick(w.pools), int64(w.rng.IntN(12)))
		}
	}
	if !allowed[holdfast.ErrorCode(err)] {
		w.fail("unexpected error: %v", err)
	}
}

// check verifies the invariants after a step: the audit recount (no
// oversell, no double-booking, counters equal to claim rows), availability
// never negative, and no hold left held past expiry once swept.
func (w *world) check(ctx context.Context) {
	rep, err := w.s.Audit(ctx)
	if err != nil {
		w.fail("audit: %v", err)
	}
	if !rep.OK() || rep.Oversold != 0 || rep.DoubleBooked != 0 {
		w.fail("audit: %v", rep.Differences)
	}
	for _, id := range w.pools {
		p, err := w.s.Pool(ctx, id)
		if err != nil {
			w.fail("pool %s: %v", id, err)
		}
		if p.Available < 0 || p.Held < 0 || p.Held+p.Confirmed > p.Capacity {
			w.fail("pool %s: %+v", id, p)
		}
	}
	// Status as read is consistent with the clock: a hold that reads held
	// has not expired.
	now := w.clk.Now()
	for _, id := range w.holds {
		h, err := w.s.GetHold(ctx, id)
		if err != nil {
			w.fail("hold %s: %v", id, err)
		}
		if h.Status == holdfast.StatusHeld && !h.ExpiresAt.After(now) {
			w.fail("hold %s reads held at %s, past its expiry %s", id, now, h.ExpiresAt)
		}
	}
}
