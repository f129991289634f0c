package holdfasttest

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
)

// instances opens n stores on one fresh database: n servers.
func instances(t *testing.T, h Harness, n int) []holdfast.Store {
	s, another := h.Open(t)
	stores := []holdfast.Store{s}
	for len(stores) < n {
		stores = append(stores, another(t))
	}
	return stores
}

// outcomes counts results by error code ("" for success).
type outcomes struct {
	mu    sync.Mutex
	codes map[holdfast.Code]int
	errs  []error
}

func (o *outcomes) add(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.codes == nil {
		o.codes = map[holdfast.Code]int{}
	}
	c := holdfast.ErrorCode(err)
	o.codes[c]++
	if c == holdfast.CodeInternal || c == holdfast.CodeBusy {
		o.errs = append(o.errs, err)
	}
}

// untilStopped runs fn again and again in a goroutine of wg's, until stop
// is closed or fn returns false.
func untilStopped(wg *sync.WaitGroup, stop <-chan struct{}, fn func() bool) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if !fn() {
				return
			}
		}
	}()
}

// storm runs fn(i) for i in [0, n) in n goroutines released at once, and
// waits for all of them.
func storm(n int, fn func(i int)) {
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	ready.Add(n)
	done.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			defer done.Done()
			ready.Done()
			<-start
			fn(i)
		}()
	}
	ready.Wait()
	close(start)
	done.Wait()
}

func (o *outcomes) want(t *testing.T, want map[holdfast.Code]int) {
	t.Helper()
	if len(o.errs) > 0 {
		t.Fatalf("%d unexpected errors, first: %v", len(o.errs), o.errs[0])
	}
	for code, n := range want {
		if o.codes[code] != n {
			t.Errorf("outcome %q: got %d, want %d (all: %v)", code, o.codes[code], n, o.codes)
		}
	}
	total := 0
	for _, n := range o.codes {
		total += n
	}
	wantTotal := 0
	for _, n := range want {
		wantTotal += n
	}
	if total != wantTotal {
		t.Errorf("outcomes %v: got %d in all, want %d", o.codes, total, wantTotal)
	}
}

func racePoolNoOversell(t *testing.T, h Harness) {
	stores := instances(t, h, 3)
	ctx := ctxT(t)
	MustCreatePool(t, stores[0], "p", 50, 0)
	var o outcomes
	storm(300, func(i int) {
		_, err := stores[i%len(stores)].Hold(ctx, holdfast.HoldRequest{
			Holder: fmt.Sprintf("buyer-%d", i), Lines: []holdfast.Line{{Pool: "p", Quantity: 1}}})
		o.add(err)
	})
	o.want(t, map[holdfast.Code]int{"": 50, holdfast.CodeSoldOut: 250})
	s := stores[0]
	if n := MustCount(t, s, `SELECT COALESCE(CAST(SUM(l.quantity) AS BIGINT), 0) FROM hold_lines l JOIN holds h ON h.id = l.hold_id
		WHERE l.pool_id = 'p' AND h.status = 'held'`); n != 50 {
		t.Fatalf("claims in the database: %d, want 50", n)
	}
	if n := MustCount(t, s, `SELECT COUNT(*) FROM holds`); n != 50 {
		t.Fatalf("hold rows: %d, want 50 (refused holds must leave nothing)", n)
	}
	if n := MustCount(t, s, `SELECT held FROM pools WHERE id = 'p'`); n != 50 {
		t.Fatalf("held counter: %d, want 50", n)
	}
	MustAuditClean(t, s)
}

func raceSameSeat(t *testing.T, h Harness) {
	stores := instances(t, h, 3)
	ctx := ctxT(t)
	MustCreateGroup(t, stores[0], "hall", false, "S-1", "S-2")
	var o outcomes
	storm(100, func(i int) {
		_, err := stores[i%len(stores)].Hold(ctx, holdfast.HoldRequest{
			Holder: fmt.Sprintf("fan-%d", i), Lines: []holdfast.Line{{Units: []string{"S-1"}}}})
		o.add(err)
	})
	o.want(t, map[holdfast.Code]int{"": 1, holdfast.CodeUnavailable: 99})
	if n := MustCount(t, stores[0], `SELECT COUNT(*) FROM unit_claims WHERE unit_id = 'S-1'`); n != 1 {
		t.Fatalf("claims on S-1: %d, want 1", n)
	}
	MustAuditClean(t, stores[0])
}

func raceAnyRider(t *testing.T, h Harness) {
	stores := instances(t, h, 3)
	ctx := ctxT(t)
	riders := make([]string, 50)
	for i := range riders {
		riders[i] = fmt.Sprintf("r-%03d", i)
	}
	MustCreateGroup(t, stores[0], "fleet", true, riders...)
	var o outcomes
	storm(200, func(i int) {
		_, err := stores[i%len(stores)].Hold(ctx, holdfast.HoldRequest{
			Holder: fmt.Sprintf("order-%d", i), Lines: []holdfast.Line{{Group: "fleet", Any: 1}}})
		o.add(err)
	})
	o.want(t, map[holdfast.Code]int{"": 50, holdfast.CodeUnavailable: 150})
	s := stores[0]
	if n := MustCount(t, s, `SELECT COUNT(DISTINCT unit_id) FROM unit_claims WHERE active`); n != 50 {
		t.Fatalf("riders with an active claim: %d, want 50", n)
	}
	if n := MustCount(t, s, `SELECT COUNT(*) FROM unit_claims`); n != 50 {
		t.Fatalf("claims: %d, want 50", n)
	}
	MustAuditClean(t, s)
}

// "Any k" gives exactly k units, also while riders come and go: a claim
// that waits for a locked rider (its retry) and finds it taken must not
// pick more than it asked for (an UPDATE over a LIMIT … FOR UPDATE
// subquery can run the subquery again after the wait and take extra rows).
func raceAnyRiderChurn(t *testing.T, h Harness) {
	stores := instances(t, h, 3)
	ctx := ctxT(t)
	MustCreateGroup(t, stores[0], "churn", true, "c-1", "c-2", "c-3", "c-4", "c-5", "c-6")
	var mu sync.Mutex
	var errs []error
	storm(16, func(i int) {
		s := stores[i%len(stores)]
		for j := range 20 { // 320 rounds on 6 riders: every rider churns ~50 times
			k := int64(1 + (i+j)%2)
			hd, err := s.Hold(ctx, holdfast.HoldRequest{Holder: fmt.Sprintf("o-%d-%d", i, j), Lines: []holdfast.Line{{Group: "churn", Any: k}}})
			switch {
			case holdfast.ErrorCode(err) == holdfast.CodeUnavailable:
				continue
			case err == nil && int64(len(hd.Lines[0].Units)) != k:
				err = fmt.Errorf("asked for %d riders, got %v", k, hd.Lines[0].Units)
			case err == nil && j%2 == 0:
				_, err = s.Release(ctx, hd.ID)
			case err == nil:
				if _, err = s.Confirm(ctx, hd.ID, ""); err == nil {
					_, err = s.Complete(ctx, hd.ID)
				}
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return
			}
		}
	})
	if len(errs) > 0 {
		t.Fatalf("%d errors, first: %v", len(errs), errs[0])
	}
	if n := MustCount(t, stores[0], `SELECT COUNT(*) FROM (SELECT l.hold_id FROM hold_lines l JOIN unit_claims c ON c.hold_id = l.hold_id AND c.line_no = l.line_no
		WHERE l.kind = 'any' GROUP BY l.hold_id, l.line_no, l.any_count HAVING COUNT(*) <> l.any_count) d`); n != 0 {
		t.Fatalf("%d holds got a number of riders other than they asked for", n)
	}
	MustAuditClean(t, stores[0])
}

func raceOverlappingSeats(t *testing.T, h Harness) {
	stores := instances(t, h, 3)
	ctx := ctxT(t)
	seats := make([]string, 30)
	for i := range seats {
		seats[i] = fmt.Sprintf("A-%02d", i)
	}
	MustCreateGroup(t, stores[0], "hall", false, seats...)
	rng := rand.New(rand.NewPCG(1, 2))
	picks := make([][]string, 200)
	for i := range picks {
		n := 2 + rng.IntN(3) // 2–4 adjacent seats, overlapping on purpose
		at := rng.IntN(len(seats) - n + 1)
		pick := append([]string(nil), seats[at:at+n]...)
		if rng.IntN(2) == 0 { // and in either order
			for a, b := 0, len(pick)-1; a < b; a, b = a+1, b-1 {
				pick[a], pick[b] = pick[b], pick[a]
			}
		}
		picks[i] = pick
	}
	var mu sync.Mutex
	granted := map[string]int{}
	var o outcomes
	storm(len(picks), func(i int) {
		hd, err := stores[i%len(stores)].Hold(ctx, holdfast.HoldRequest{
			Holder: fmt.Sprintf("fan-%d", i), Lines: []holdfast.Line{{Units: picks[i]}}})
		o.add(err)
		if err == nil {
			mu.Lock()
			granted[hd.ID] = len(picks[i])
			mu.Unlock()
		}
	})
	if len(o.errs) > 0 {
		t.Fatalf("unexpected error: %v", o.errs[0])
	}
	if o.codes[""]+o.codes[holdfast.CodeUnavailable] != len(picks) || o.codes[""] == 0 {
		t.Fatalf("outcomes: %v", o.codes)
	}
	s := stores[0]
	for id, n := range granted {
		if got := MustCount(t, s, `SELECT COUNT(*) FROM units WHERE hold_id = $1`, id); got != int64(n) {
			t.Fatalf("hold %s has %d seats, want %d", id, got, n)
		}
	}
	if n := MustCount(t, s, `SELECT COUNT(*) FROM holds`); n != int64(len(granted)) {
		t.Fatalf("hold rows %d, granted %d: a refused hold left something behind", n, len(granted))
	}
	if n := MustCount(t, s, `SELECT COUNT(*) FROM unit_claims`); n != MustCount(t, s, `SELECT COUNT(*) FROM units WHERE hold_id IS NOT NULL`) {
		t.Fatalf("claims %d differ from taken seats", n)
	}
	MustAuditClean(t, s)
}

func raceConfirmVsExpiry(t *testing.T, h Harness) {
	stores := instances(t, h, 3)
	ctx := ctxT(t)
	s := stores[0]
	const n = 60
	MustCreatePool(t, s, "p", n, 0)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = MustHold(t, s, fmt.Sprintf("b-%d", i), holdfast.Line{Pool: "p", Quantity: 1}).ID
	}
	// The first third already expired: confirm must always lose. The rest
	// expire within the next few tens of milliseconds, while confirms and
	// three sweepers race them.
	for i, id := range ids {
		var sql string
		if i < n/3 {
			sql = `UPDATE holds SET expires_at = holdfast_now_ms() - 1 WHERE id = $1`
		} else {
			sql = fmt.Sprintf(`UPDATE holds SET expires_at = holdfast_now_ms() + %d WHERE id = $1`, 5+i%40)
		}
		if err := raw(t, s).Exec(ctx, sql, id); err != nil {
			t.Fatal(err)
		}
	}
	results := make([]error, n)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for k := range stores {
		untilStopped(&wg, stop, func() bool {
			if _, err := stores[k].ExpireDue(ctx, 10); err != nil {
				t.Errorf("ExpireDue: %v", err)
				return false
			}
			return true
		})
	}
	storm(n, func(i int) {
		time.Sleep(time.Duration(i%40) * time.Millisecond) // spread confirms across the expiries (timing, not synchronisation)
		_, results[i] = stores[i%len(stores)].Confirm(ctx, ids[i], "")
	})
	close(stop)
	wg.Wait()
	for i, err := range results {
		got, gerr := s.GetHold(ctx, ids[i])
		if gerr != nil {
			t.Fatal(gerr)
		}
		switch holdfast.ErrorCode(err) {
		case "":
			if i < n/3 {
				t.Fatalf("hold %d was confirmed after its expiry", i)
			}
			if got.Status != holdfast.StatusConfirmed {
				t.Fatalf("acknowledged confirm of hold %d reads %s", i, got.Status)
			}
		case holdfast.CodeHoldExpired:
			if got.Status != holdfast.StatusExpired {
				t.Fatalf("hold %d refused as expired reads %s", i, got.Status)
			}
		default:
			t.Fatalf("confirm hold %d: %v", i, err)
		}
		if c := MustCount(t, s, `SELECT COUNT(*) FROM events WHERE hold_id = $1 AND type IN ('hold.confirmed', 'hold.expired')`, ids[i]); c > 1 {
			t.Fatalf("hold %d has %d confirmed/expired events", i, c)
		}
	}
	// Whatever the sweepers left, finish; then the books must balance.
	for {
		k, err := s.ExpireDue(ctx, 100)
		if err != nil {
			t.Fatal(err)
		}
		if k == 0 && MustCount(t, s, `SELECT COUNT(*) FROM holds WHERE status = 'held' AND expires_at <= holdfast_now_ms()`) == 0 {
			break
		}
	}
	MustAuditClean(t, s)
}

func raceReleaseVsConfirm(t *testing.T, h Harness) {
	stores := instances(t, h, 3)
	ctx := ctxT(t)
	s := stores[0]
	const n = 50
	MustCreatePool(t, s, "p", n, 0)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = MustHold(t, s, fmt.Sprintf("b-%d", i), holdfast.Line{Pool: "p", Quantity: 1}).ID
	}
	confirmErr := make([]error, n)
	releaseErr := make([]error, n)
	storm(2*n, func(i int) {
		st := stores[i%len(stores)]
		if i%2 == 0 {
			_, confirmErr[i/2] = st.Confirm(ctx, ids[i/2], "")
		} else {
			_, releaseErr[i/2] = st.Release(ctx, ids[i/2])
		}
	})
	confirmed := 0
	for i := range ids {
		c, r := holdfast.ErrorCode(confirmErr[i]), holdfast.ErrorCode(releaseErr[i])
		got, err := s.GetHold(ctx, ids[i])
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case c == "" && r == holdfast.CodeInvalidState:
			confirmed++
			if got.Status != holdfast.StatusConfirmed {
				t.Fatalf("hold %d: confirm won but reads %s", i, got.Status)
			}
		case r == "" && c == holdfast.CodeInvalidState:
			if got.Status != holdfast.StatusReleased {
				t.Fatalf("hold %d: release won but reads %s", i, got.Status)
			}
		default:
			t.Fatalf("hold %d: confirm %v, release %v: want exactly one to win", i, confirmErr[i], releaseErr[i])
		}
	}
	if p := MustPool(t, s, "p"); p.Confirmed != int64(confirmed) || p.Held != 0 {
		t.Fatalf("pool %+v, want confirmed %d held 0", p, confirmed)
	}
	MustAuditClean(t, s)
}

func racePerHolderLimit(t *testing.T, h Harness) {
	stores := instances(t, h, 3)
	ctx := ctxT(t)
	MustCreatePool(t, stores[0], "p", 100, 4)
	var o outcomes
	storm(40, func(i int) {
		_, err := stores[i%len(stores)].Hold(ctx, holdfast.HoldRequest{
			Holder: "greedy", Lines: []holdfast.Line{{Pool: "p", Quantity: 1}}})
		o.add(err)
	})
	o.want(t, map[holdfast.Code]int{"": 4, holdfast.CodeLimitExceeded: 36})
	if n := MustCount(t, stores[0], `SELECT COALESCE(CAST(SUM(l.quantity) AS BIGINT), 0) FROM hold_lines l JOIN holds h ON h.id = l.hold_id
		WHERE h.holder = 'greedy' AND h.status = 'held'`); n != 4 {
		t.Fatalf("greedy holds %d in the database, want 4", n)
	}
	MustAuditClean(t, stores[0])
}

func raceSweepers(t *testing.T, h Harness) {
	stores := instances(t, h, 3)
	ctx := ctxT(t)
	s := stores[0]
	const n = 200
	MustCreatePool(t, s, "p", n, 0)
	MustCreateGroup(t, s, "fleet", true, "r-1", "r-2", "r-3")
	for i := 0; i < n; i++ {
		MustHold(t, s, fmt.Sprintf("b-%d", i), holdfast.Line{Pool: "p", Quantity: 1})
	}
	for i := 0; i < 3; i++ {
		MustHold(t, s, fmt.Sprintf("o-%d", i), holdfast.Line{Group: "fleet", Any: 1})
	}
	if err := raw(t, s).Exec(ctx, `UPDATE holds SET expires_at = holdfast_now_ms() - 1000`); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	total := 0
	storm(6, func(i int) { // two sweepers in each of three instances
		for {
			k, err := stores[i%len(stores)].ExpireDue(ctx, 25)
			if err != nil {
				t.Errorf("ExpireDue: %v", err)
				return
			}
			mu.Lock()
			total += k
			mu.Unlock()
			if k == 0 {
				return
			}
		}
	})
	if k, err := s.ExpireDue(ctx, 1000); err != nil || total+k != n+3 {
		t.Fatalf("sweepers expired %d (+%d, %v), want exactly %d", total, k, err, n+3)
	}
	if c := MustCount(t, s, `SELECT COUNT(*) FROM events WHERE type = 'hold.expired'`); c != n+3 {
		t.Fatalf("expired events: %d, want %d (one per hold)", c, n+3)
	}
	if p := MustPool(t, s, "p"); p.Held != 0 || p.Available != n {
		t.Fatalf("pool after sweep: %+v", p)
	}
	if g, _ := s.Group(ctx, "fleet"); g.Free != 3 {
		t.Fatalf("fleet after sweep: %+v", g)
	}
	MustAuditClean(t, s)
}

func raceExpiredCapacity(t *testing.T, h Harness) {
	stores := instances(t, h, 3)
	ctx := ctxT(t)
	s := stores[0]
	MustCreatePool(t, s, "p", 20, 0)
	for i := 0; i < 20; i++ {
		MustHold(t, s, fmt.Sprintf("old-%d", i), holdfast.Line{Pool: "p", Quantity: 1})
	}
	if err := raw(t, s).Exec(ctx, `UPDATE holds SET expires_at = holdfast_now_ms() - 1000`); err != nil {
		t.Fatal(err)
	}
	// No sweeper runs: every unit of capacity sits in an expired hold, and
	// 60 buyers race for it.
	var o outcomes
	storm(60, func(i int) {
		_, err := stores[i%len(stores)].Hold(ctx, holdfast.HoldRequest{
			Holder: fmt.Sprintf("new-%d", i), Lines: []holdfast.Line{{Pool: "p", Quantity: 1}}})
		o.add(err)
	})
	o.want(t, map[holdfast.Code]int{"": 20, holdfast.CodeSoldOut: 40})
	if n := MustCount(t, s, `SELECT COUNT(*) FROM holds WHERE status = 'expired'`); n != 20 {
		t.Fatalf("expired holds: %d, want 20", n)
	}
	MustAuditClean(t, s)
}

// raceEventFeed follows the outbox feed while three instances write to it
// at once: a reader going by cursor must see every event exactly once, also
// those whose transactions commit out of sequence order.
func raceEventFeed(t *testing.T, h Harness) {
	stores := instances(t, h, 3)
	ctx := ctxT(t)
	MustCreatePool(t, stores[0], "p", 1_000_000, 0)
	seen := map[int64]int{}
	cursor := ""
	read := func() int {
		events, next, err := stores[0].Events(ctx, cursor, 1000)
		if err != nil {
			t.Errorf("Events: %v", err)
			return 0
		}
		for _, e := range events {
			seen[e.Seq]++
		}
		cursor = next
		return len(events)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		storm(150, func(i int) {
			s := stores[i%len(stores)]
			hd, err := s.Hold(ctx, holdfast.HoldRequest{Holder: fmt.Sprintf("b-%d", i), Lines: []holdfast.Line{{Pool: "p", Quantity: 1}}})
			if err != nil {
				t.Errorf("Hold: %v", err)
				return
			}
			if i%2 == 0 {
				if _, err := s.Confirm(ctx, hd.ID, ""); err != nil {
					t.Errorf("Confirm: %v", err)
				}
			}
		})
	}()
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
			read()
		}
	}
	// The feed may trail the writers: on PostgreSQL it stops short of the
	// oldest transaction still running anywhere in the cluster. Follow it
	// until it has caught up, or the test's deadline passes.
	total := MustCount(t, stores[0], `SELECT COUNT(*) FROM events`)
	for int64(len(seen)) < total && ctx.Err() == nil {
		read()
	}
	if int64(len(seen)) != total {
		t.Fatalf("the reader saw %d distinct events of %d written", len(seen), total)
	}
	for seq, n := range seen {
		if n != 1 {
			t.Fatalf("event %d seen %d times", seq, n)
		}
	}
}

// raceExchangeVsClaims: ten holds each exchange their seat for one of
// five free seats while forty buyers claim the same five, on three
// servers: each free seat goes to exactly one of them; an exchange that
// loses keeps its old seat; every hold ends with exactly one seat; no
// seat is claimed twice; the audit is clean. Transfers of the same holds
// run beside them and change no seat.
func raceExchangeVsClaims(t *testing.T, h Harness) {
	stores := instances(t, h, 3)
	ctx := ctxT(t)
	s := stores[0]
	var seats []string
	for i := range 15 {
		seats = append(seats, fmt.Sprintf("S-%02d", i))
	}
	MustCreateGroup(t, s, "hall", false, seats...)
	var holds []holdfast.Hold
	for i := range 10 {
		hd, err := s.Hold(ctx, holdfast.HoldRequest{Holder: fmt.Sprintf("h%d", i), TTL: time.Hour, Lines: []holdfast.Line{{Units: []string{seats[i]}}}})
		if err != nil {
			t.Fatal(err)
		}
		holds = append(holds, hd)
	}
	free := seats[10:]
	var won atomic.Int64
	storm(60, func(i int) {
		st := stores[i%len(stores)]
		target := free[i%len(free)]
		switch {
		case i < 10:
			_, err := st.Exchange(ctx, holds[i].ID, map[string]string{seats[i]: target})
			if err == nil {
				won.Add(1)
			} else if holdfast.ErrorCode(err) != holdfast.CodeUnavailable {
				t.Errorf("exchange: %v", err)
			}
		case i < 20:
			if _, err := st.Transfer(ctx, holds[i-10].ID, fmt.Sprintf("t%d", i)); err != nil {
				t.Errorf("transfer: %v", err)
			}
		default:
			_, err := st.Hold(ctx, holdfast.HoldRequest{Holder: fmt.Sprintf("b%d", i), TTL: time.Hour, Lines: []holdfast.Line{{Units: []string{target}}}})
			if err == nil {
				won.Add(1)
			} else if holdfast.ErrorCode(err) != holdfast.CodeUnavailable {
				t.Errorf("hold: %v", err)
			}
		}
	})
	if n := won.Load(); n != int64(len(free)) {
		t.Fatalf("%d exchanges and claims won %d free seats", n, len(free))
	}
	for _, hd := range holds {
		got, err := s.GetHold(ctx, hd.ID)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(got.Lines[0].Units); n != 1 {
			t.Fatalf("hold %s has %d seats after the storm, want 1", hd.ID, n)
		}
	}
	if n := MustCount(t, s, `SELECT COUNT(*) FROM (SELECT unit_id FROM unit_claims WHERE active GROUP BY unit_id HAVING COUNT(*) > 1) x`); n != 0 {
		t.Fatalf("%d seats claimed twice", n)
	}
	MustAuditClean(t, s)
}
