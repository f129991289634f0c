package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast"
	hfhttp "github.com/holdfast/holdfast/http"
)

// The queue scenario: a sale behind a waiting room while servers are
// killed. Joiners join (some before opening, some twice at once on two
// servers, retrying on another server when one dies), follow their
// tickets, hold with their admission, then confirm or release. The
// checks: every place a joiner was answered exists, once; places are
// numbered without a gap or a double; admissions went in place order; at
// no sampled moment were more admitted than max_inside, nor more
// admissions out and unused than the stock could serve (admit stock); the
// draw verifies. Buyers pay with the confirm: every payment ends once, as
// a ticket (captured, its hold confirmed) or a refund (refund_due), and
// each acknowledged one as it was answered, whichever server died.
const (
	queueRoom      = "queue-room"
	queuePool      = "queue-pool"
	queueJoiners   = 200
	queueCapacity  = 80
	queueMaxInside = 15
)

type queueRun struct {
	mu sync.Mutex
	// tickets: holder → every ticket a 202 answered for them.
	tickets   map[string][]string
	bought    atomic.Int64
	soldOut   atomic.Int64
	maxInside atomic.Int64
	samples   atomic.Int64
	overStock atomic.Int64 // most admissions out and unused beyond the free stock
	// paid: payment ref → the status its confirm's answer implies
	// (captured when confirmed, refund_due when refused); unknown
	// outcomes (a server died) are left out.
	paid map[string]holdfast.PaymentStatus
	errs []string
	url  string // a server, for the draw's check
}

func (q *queueRun) answered(ref string, st holdfast.PaymentStatus) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.paid == nil {
		q.paid = map[string]holdfast.PaymentStatus{}
	}
	q.paid[ref] = st
}

func (q *queueRun) errorf(format string, args ...any) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.errs) < 10 {
		q.errs = append(q.errs, fmt.Sprintf(format, args...))
	}
}

// startQueue creates the room (opening a fifth into the storm) and runs
// the joiners and a sampler of the admitted count until ctx ends.
func (h *harness) startQueue(ctx context.Context, urls []string, length time.Duration, conn *pgx.Conn) (*queueRun, func()) {
	c := hfhttp.NewClient(urls[0], adminKey)
	if _, err := c.CreatePool(ctx, holdfast.Pool{ID: queuePool, Capacity: queueCapacity}); err != nil {
		h.t.Fatal(err)
	}
	if _, err := c.CreateRoom(ctx, holdfast.Room{ID: queueRoom, Pools: []string{queuePool}, OpensAt: h.stormStart.Add(length / 5),
		AdmitPerSecond: 25, AdmitTTLSeconds: 4, MaxInside: queueMaxInside, Admit: holdfast.AdmitStock, MaxUnitsPerAdmission: 1}); err != nil {
		h.t.Fatal(err)
	}
	q := &queueRun{tickets: map[string][]string{}, url: urls[0]}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { // the sampler reads the database directly
		for runCtx.Err() == nil {
			var n, over int64
			// One statement, one snapshot: admitted, and the admissions
			// out and unused (1 unit each) beyond what is free.
			if err := conn.QueryRow(runCtx, `SELECT COUNT(*), COUNT(*) FILTER (WHERE hold_id IS NULL)
				- (SELECT capacity - held - confirmed - waitlisted FROM pools WHERE id = $2)
				FROM room_tickets WHERE room_id = $1 AND status = 'admitted'`, queueRoom, queuePool).Scan(&n, &over); err == nil {
				q.samples.Add(1)
				for m := q.maxInside.Load(); n > m && !q.maxInside.CompareAndSwap(m, n); m = q.maxInside.Load() {
				}
				for m := q.overStock.Load(); over > m && !q.overStock.CompareAndSwap(m, over); m = q.overStock.Load() {
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	for i := range queueJoiners {
		rng := rand.New(rand.NewPCG(uint64(i), 7))
		holder := fmt.Sprintf("joiner-%03d", i)
		// Half join before the opening, the rest over the next half.
		at := time.Duration(rng.Float64() * float64(length) * 0.5)
		wg.Go(func() { q.joiner(runCtx, urls, holder, at, rng) })
		if i%4 == 0 { // the same holder again at once, on another server
			wg.Go(func() { q.join(runCtx, urls, holder, at, rng.IntN(len(urls))) })
		}
	}
	return q, func() { stop(); wg.Wait() }
}

// join joins until a server answers 202, moving to the next server when
// one fails; it returns the ticket ("" if ctx ended).
func (q *queueRun) join(ctx context.Context, urls []string, holder string, at time.Duration, first int) string {
	select {
	case <-time.After(at):
	case <-ctx.Done():
		return ""
	}
	for k := first; ctx.Err() == nil; k++ {
		c := hfhttp.NewClient(urls[k%len(urls)], adminKey)
		attempt, cancel := context.WithTimeout(ctx, 3*time.Second)
		t, err := c.JoinRoom(attempt, queueRoom, holder, "")
		cancel()
		if err == nil {
			q.mu.Lock()
			q.tickets[holder] = append(q.tickets[holder], t.Ticket)
			q.mu.Unlock()
			return t.Ticket
		}
		switch holdfast.ErrorCode(err) {
		case holdfast.CodeNotFound, holdfast.CodeInvalid, holdfast.CodeQuotaExceeded, holdfast.CodeConflict:
			q.errorf("join %s: %v", holder, err)
			return ""
		}
		// No answer, or busy: a server died; another gives the same place.
		time.Sleep(100 * time.Millisecond)
	}
	return ""
}

// joiner joins, follows the ticket, and when admitted holds and then
// confirms (most) or releases.
func (q *queueRun) joiner(ctx context.Context, urls []string, holder string, at time.Duration, rng *rand.Rand) {
	ticket := q.join(ctx, urls, holder, at, rng.IntN(len(urls)))
	if ticket == "" {
		return
	}
	for k := rng.IntN(len(urls)); ctx.Err() == nil; k++ {
		c := hfhttp.NewClient(urls[k%len(urls)], adminKey)
		attempt, cancel := context.WithTimeout(ctx, 3*time.Second)
		t, err := c.RoomTicket(attempt, queueRoom, ticket)
		cancel()
		switch {
		case err != nil:
		case t.Status == holdfast.TicketSoldOut:
			q.soldOut.Add(1)
			return
		case t.Status == holdfast.TicketDone:
			return
		case t.Status == holdfast.TicketAdmitted && t.HoldID == "":
			attempt, cancel := context.WithTimeout(ctx, 3*time.Second)
			hold, err := c.Hold(attempt, holdfast.HoldRequest{Holder: holder, Admission: t.Admission, TTL: 30 * time.Second,
				Lines: []holdfast.Line{{Pool: queuePool, Quantity: 1}}})
			cancel()
			if err != nil {
				continue // a server died mid-call, or sold out: read the ticket again
			}
			attempt, cancel = context.WithTimeout(ctx, 3*time.Second)
			if rng.IntN(10) < 7 {
				pay := holdfast.Payment{Ref: "pay-" + holder, Amount: 4200, Currency: "EUR"}
				_, err := c.ConfirmPaid(attempt, hold.ID, pay, nil)
				switch code := holdfast.ErrorCode(err); {
				case err == nil:
					q.bought.Add(1)
					q.answered(pay.Ref, holdfast.PaymentCaptured)
				case code == holdfast.CodeHoldExpired || code == holdfast.CodeInvalidState:
					q.answered(pay.Ref, holdfast.PaymentRefundDue)
				}
			} else {
				_, _ = c.Release(attempt, hold.ID)
			}
			cancel()
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkQueue checks the room in the database after the storm.
func checkQueue(ctx context.Context, conn *pgx.Conn, q *queueRun) (bad []string, summary string) {
	bad = append(bad, q.errs...)
	q.mu.Lock()
	defer q.mu.Unlock()
	for holder, answered := range q.tickets {
		var ticket string
		var n int64
		if err := conn.QueryRow(ctx, `SELECT MIN(ticket), COUNT(*) FROM room_tickets WHERE room_id = $1 AND holder = $2`, queueRoom, holder).Scan(&ticket, &n); err != nil {
			return append(bad, err.Error()), ""
		}
		switch {
		case n == 0:
			bad = append(bad, fmt.Sprintf("queue: %s was answered a place that is gone (position lost)", holder))
		case n > 1:
			bad = append(bad, fmt.Sprintf("queue: %s has %d places", holder, n))
		}
		for _, a := range answered {
			if a != ticket {
				bad = append(bad, fmt.Sprintf("queue: %s was answered ticket %s, but holds %s (position duplicated)", holder, a, ticket))
			}
		}
	}
	// A place taken after the sell-out is told so at once and never
	// numbered; every other is numbered 1…n.
	var places, ranked, distinct, top, unranked, outOfOrder, through int64
	if err := conn.QueryRow(ctx, `SELECT COUNT(*), COUNT(rank), COUNT(DISTINCT rank), COALESCE(MAX(rank), 0),
		COUNT(*) FILTER (WHERE rank IS NULL AND status <> 'sold_out'),
		(SELECT COUNT(*) FROM room_tickets w JOIN rooms r ON r.id = w.room_id WHERE w.room_id = $1
			AND ((w.status = 'waiting' AND w.rank <= r.admitted_through) OR (w.status IN ('admitted', 'done') AND w.rank > r.admitted_through))),
		(SELECT admitted_through FROM rooms WHERE id = $1)
		FROM room_tickets WHERE room_id = $1`, queueRoom).Scan(&places, &ranked, &distinct, &top, &unranked, &outOfOrder, &through); err != nil {
		return append(bad, err.Error()), ""
	}
	if unranked > 0 || distinct != ranked || top != ranked {
		bad = append(bad, fmt.Sprintf("queue: %d places numbered %d distinct, up to %d, %d unnumbered: a position skipped or shared", ranked, distinct, top, unranked))
	}
	if outOfOrder > 0 {
		bad = append(bad, fmt.Sprintf("queue: %d places admitted out of place order", outOfOrder))
	}
	if o := q.overStock.Load(); o > 0 {
		bad = append(bad, fmt.Sprintf("queue: admissions out and unused outran the stock by %d (admit stock)", o))
	}
	if m := q.maxInside.Load(); m > queueMaxInside {
		bad = append(bad, fmt.Sprintf("queue: %d admitted at once, max_inside %d", m, queueMaxInside))
	}
	var held int64
	if err := conn.QueryRow(ctx, `SELECT COUNT(*) FROM holds h JOIN hold_lines l ON l.hold_id = h.id WHERE l.pool_id = $1
		AND NOT EXISTS (SELECT 1 FROM room_tickets t WHERE t.hold_id = h.id)`, queuePool).Scan(&held); err != nil {
		return append(bad, err.Error()), ""
	}
	if held > 0 {
		bad = append(bad, fmt.Sprintf("queue: %d holds on the protected pool without an admission", held))
	}
	// The draw, as a buyer would check it (from the API, with the admin
	// key: every ticket's HMAC recomputed), and its places are the
	// numbers the admissions went by.
	c := hfhttp.NewClient(q.url, adminKey)
	drawn := 0
	if room, err := c.Room(ctx, queueRoom); err != nil {
		bad = append(bad, fmt.Sprintf("queue: reading the room: %v", err))
	} else if d, err := c.RoomDraw(ctx, queueRoom); err != nil {
		bad = append(bad, fmt.Sprintf("queue: reading the draw: %v", err))
	} else if err := holdfast.VerifyDraw(room.SeedCommitment, d, ""); err != nil {
		bad = append(bad, fmt.Sprintf("queue: the draw does not verify: %v", err))
	} else {
		drawn = d.Total
		for _, e := range d.Entries {
			var rank *int64
			if err := conn.QueryRow(ctx, `SELECT rank FROM room_tickets WHERE ticket = $1`, e.Ticket).Scan(&rank); err != nil || rank == nil || *rank != e.Place {
				bad = append(bad, fmt.Sprintf("queue: ticket %s is place %d in the draw, numbered %v in the database (%v)", e.Ticket, e.Place, rank, err))
				break
			}
		}
	}
	// Every payment a ticket or a refund, once; each answered one as it
	// was answered.
	rows, err := conn.Query(ctx, `SELECT p.ref, p.status, COALESCE(h.status, '') FROM payments p LEFT JOIN holds h ON h.id = p.hold_id`)
	if err != nil {
		return append(bad, err.Error()), ""
	}
	recorded := map[string]holdfast.PaymentStatus{}
	for rows.Next() {
		var ref, status, hold string
		if err := rows.Scan(&ref, &status, &hold); err != nil {
			rows.Close()
			return append(bad, err.Error()), ""
		}
		recorded[ref] = holdfast.PaymentStatus(status)
		if status == string(holdfast.PaymentCaptured) && hold != string(holdfast.StatusConfirmed) {
			bad = append(bad, fmt.Sprintf("queue: payment %s is captured, but its hold is %q: neither a ticket nor a refund", ref, hold))
		}
	}
	rows.Close()
	for ref, want := range q.paid {
		if got := recorded[ref]; got != want {
			bad = append(bad, fmt.Sprintf("queue: payment %s was answered %s, but the database has %q", ref, want, got))
		}
	}
	summary = fmt.Sprintf("queue: %d joiners answered, %d places (%d numbered, %d drawn before opening, the draw verified), admitted through %d, at most %d inside (%d samples), %d bought, %d told sold out, %d payments recorded (%d answered), each a ticket or a refund",
		len(q.tickets), places, ranked, drawn, through, q.maxInside.Load(), q.samples.Load(), q.bought.Load(), q.soldOut.Load(), len(recorded), len(q.paid))
	return bad, summary
}
