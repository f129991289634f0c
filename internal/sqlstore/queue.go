package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/holdfast/holdfast"
)

// Coalescing is group commit for claims of every shape. Under load, every
// one-claim-per-transaction design queues on row locks and the database's
// commit rate is the ceiling — on one hot pool, on a seat map, and on 200
// events on sale at once alike. Here, concurrent holds of any shape (pool
// lines with or without a per-holder limit, named units, "any k" of a
// group, several lines mixing them, bookings) are decided together: one
// transaction locks every row the batch touches in the one global order
// (pools by id, then units by id, then free units of each group in group
// order, skipping those other transactions have locked), decides each
// request in arrival order in memory — all or nothing per request — and
// writes every effect and outbox event in one round of multi-row
// statements (pipelined on PostgreSQL), then commits once. A batch closes
// when the previous one holds its locks (or at maxBatch), so a lone request
// waits for nothing; under load, batches grow by themselves.
//
// Every guarantee holds as without batching: capacity and limits are
// decided on locked rows and checked again by the conditional updates
// (whose row counts must match, or the batch rolls back), units by the
// conditional "hold_id IS NULL" update and the partial unique index,
// idempotency keys are claimed and answered inside the batch's
// transaction. A request the batch cannot grant (a line short, a unit
// taken or held by an expired hold, a limit passed) takes the ordinary
// path after the batch commits: it reclaims expired holds and names the
// failing line, exactly as a one-by-one claim arriving after the requests
// ahead of it would.

const (
	maxBatch = 256
	// maxQueue bounds the requests waiting for a batch: past it the server
	// sheds load with a retryable busy (503), never a wrong answer.
	maxQueue = 20_000
)

type claimReq struct {
	ctx     context.Context
	r       holdfast.HoldRequest
	rec     *holdfast.Idempotency
	ttl     time.Duration
	confirm bool
	ref     string
	done    chan claimResult
	// gated: the waiting room's rule applies (a hold or a booking, at any
	// door that claims for a buyer). A waitlist's offer and a late
	// confirm's claim were admitted at their own door, when they joined
	// or held.
	gated bool
	// rooms are the rooms guarding what a gated request takes, and room
	// the one whose admission it spends (both set by the batch that reads
	// its ticket; "" when none guards it).
	rooms []string
	room  string
	// pay is the payment a booking records, captured, with its hold.
	pay *holdfast.Payment
}

type claimResult struct {
	h        holdfast.Hold
	answer   *holdfast.StoredResponse // what the batch recorded under the request's key
	refused  bool                     // not granted in the batch: take the ordinary path
	err      error
	fallback bool // the batch failed as a whole: take the ordinary path
}

// coalescer is the queue of claims waiting for a batch.
type coalescer struct {
	mu      sync.Mutex
	pending []*claimReq
	running bool
}

func (s *Store) newClaimReq(ctx context.Context, r holdfast.HoldRequest, ttl time.Duration, confirm bool, ref string) *claimReq {
	req := &claimReq{ctx: ctx, r: r, rec: s.key, ttl: ttl, confirm: confirm, ref: ref, gated: true, done: make(chan claimResult, 1)}
	if confirm {
		req.pay = paying(ctx)
	}
	return req
}

// submit queues claims, one after the other, and waits for their batches.
func (s *Store) submit(reqs []*claimReq) []claimResult {
	q := &s.batches
	out := make([]claimResult, len(reqs))
	q.mu.Lock()
	if len(q.pending)+len(reqs) > maxQueue {
		q.mu.Unlock()
		for i := range out {
			out[i] = claimResult{err: holdfast.Errorf(holdfast.CodeBusy, "too many claims waiting; retry shortly")}
		}
		return out
	}
	if !q.running {
		// The drainer starts under q.mu, so it sees these requests.
		if !s.spawn(s.drain) {
			q.mu.Unlock()
			for i := range out {
				out[i] = claimResult{err: holdfast.Errorf(holdfast.CodeBusy, "the store is closing; retry on another server")}
			}
			return out
		}
		q.running = true
	}
	q.pending = append(q.pending, reqs...)
	q.mu.Unlock()
	// No select on ctx: once queued, a claim is decided by its batch (a
	// batch skips requests whose context is done before it starts), and the
	// answer is never lost between the database and the caller.
	for i, req := range reqs {
		out[i] = <-req.done
	}
	s.batched.Add(int64(len(reqs)))
	return out
}

// maxInFlight bounds the batches in flight at once (PostgreSQL).
const maxInFlight = 8

// inFlight is a batch started and not yet finished.
type inFlight struct {
	rows         map[string]bool // what it locks: "p"+pool, "u"+unit, "g"+group
	locked, done chan struct{}
}

// batchRows names the rows a batch will lock, for ordering batches.
func batchRows(batch []*claimReq) map[string]bool {
	rows := map[string]bool{}
	for _, req := range batch {
		for _, l := range req.r.Lines {
			switch l.Kind() {
			case holdfast.LinePool:
				rows["p"+l.Pool] = true
			case holdfast.LineUnits:
				for _, u := range l.Units {
					rows["u"+u] = true
				}
			case holdfast.LineAny:
				rows["g"+l.Group] = true
			}
		}
	}
	return rows
}

func (f *inFlight) overlaps(rows map[string]bool) bool {
	small, big := f.rows, rows
	if len(small) > len(big) {
		small, big = big, small
	}
	for r := range small {
		if big[r] {
			return true
		}
	}
	return false
}

// drain runs batches until the queue is empty.
//
// Where the database queues transactions waiting for a row lock
// (PostgreSQL), a batch starts as soon as every batch before it that
// touches one of its rows holds its locks: it claims its keys and waits at
// the first row they share while the one before writes and commits, so the
// locks pass from batch to batch with no round trip between them; a batch
// that shares no row with those in flight (another event, other seats)
// starts at once. Arrival order holds per row: a batch asks for a row only
// after every earlier batch wanting it has it. At most maxInFlight batches
// run at once. With one writer (SQLite) a batch starts when the previous
// one has finished, which lets it grow.
func (s *Store) drain() {
	q := &s.batches
	var running []*inFlight
	waitLocked := func(g *inFlight) {
		select {
		case <-g.locked:
		case <-g.done:
		}
	}
	for {
		q.mu.Lock()
		n := min(len(q.pending), maxBatch)
		if n == 0 {
			if len(running) > 0 {
				// Before this drainer may end, every batch it started holds
				// its rows: a later drainer's batch then queues behind them.
				q.mu.Unlock()
				for _, g := range running {
					waitLocked(g)
				}
				running = nil
				continue
			}
			q.running = false
			q.mu.Unlock()
			return
		}
		batch := make([]*claimReq, n)
		copy(batch, q.pending)
		q.pending = append(q.pending[:0:0], q.pending[n:]...)
		q.mu.Unlock()

		live := liveClaims(batch)
		if len(live) == 0 {
			continue
		}
		f := &inFlight{rows: batchRows(live), locked: make(chan struct{}), done: make(chan struct{})}
		if s.d.QueuesLockWaiters {
			for {
				still := running[:0]
				for _, g := range running {
					select {
					case <-g.done:
					default:
						still = append(still, g)
					}
				}
				running = still
				if len(running) < maxInFlight {
					break
				}
				<-running[0].done
			}
			// Wait for the batches in flight it shares rows with, taking in
			// what arrives meanwhile (so batches grow under load), until
			// nothing new arrives or the batch is full.
			for {
				for _, g := range running {
					if g.overlaps(f.rows) {
						waitLocked(g)
					}
				}
				q.mu.Lock()
				more := min(len(q.pending), maxBatch-len(live))
				extra := slices.Clone(q.pending[:more])
				q.pending = append(q.pending[:0:0], q.pending[more:]...)
				q.mu.Unlock()
				if more == 0 {
					break
				}
				extra = liveClaims(extra)
				live = append(live, extra...)
				for r := range batchRows(extra) {
					f.rows[r] = true
				}
			}
		}
		s.batchCount.Add(1)
		s.bg.Add(1) // inside the drainer, which bg counts: Close waits for it
		go func() {
			defer s.bg.Done()
			defer close(f.done)
			var once sync.Once
			s.runBatch(live, func() { once.Do(func() { close(f.locked) }) })
		}()
		if !s.d.QueuesLockWaiters {
			<-f.done
			continue
		}
		running = append(running, f)
	}
}

// batchContext is the deadline a batch's transaction runs under: the
// latest of its requests' (30 s at most, and for a request without one).
// Not the first one's: a transaction that serves many requests finishes
// for the others. But not longer than the last one waits either: with the
// database frozen or cut off, a batch that outlived every request kept
// them all from their 503 until 30 s later, long after their clients had
// given up (the chaos scenario patroni saw it). A request whose deadline
// passed takes the ordinary path, which answers busy at once.
func batchContext(ctxs []context.Context) (context.Context, context.CancelFunc) {
	limit := time.Now().Add(30 * time.Second)
	var latest time.Time
	for _, c := range ctxs {
		d, ok := c.Deadline()
		if !ok {
			latest = limit
			break
		}
		if d.After(latest) {
			latest = d
		}
	}
	if latest.IsZero() || latest.After(limit) {
		latest = limit
	}
	return context.WithDeadline(context.Background(), latest)
}

// liveClaims answers busy to the claims whose deadline passed while they
// were queued, and returns the others.
func liveClaims(batch []*claimReq) []*claimReq {
	live := batch[:0]
	for _, req := range batch {
		if err := req.ctx.Err(); err != nil {
			req.done <- claimResult{err: fmt.Errorf("%w: the request's deadline passed while queued", holdfast.ErrBusy)}
			continue
		}
		live = append(live, req)
	}
	return live
}

// runBatch decides a batch in one transaction and answers every request.
// locked is called once the batch holds its rows.
func (s *Store) runBatch(batch []*claimReq, locked func()) {
	results := make([]claimResult, len(batch))
	ctxs := make([]context.Context, len(batch))
	for i, req := range batch {
		ctxs[i] = req.ctx
	}
	ctx, cancel := batchContext(ctxs)
	defer cancel()
	var err error
	for attempt := 0; attempt < keyRaceAttempts; attempt++ {
		err = s.db.Transact(ctx, func(tx Querier) error {
			for i := range results {
				results[i] = claimResult{}
			}
			return s.batchTx(ctx, tx, batch, results, locked)
		})
		// A request with the same key (or payment ref) committed between
		// this batch's look at the keys and its write of them: look again
		// (the key is then seen as used, and only that request is left
		// out). Each time round, another request has committed: under a
		// storm of refs paid with twice, several may in a row.
		if !errors.Is(err, errKeyRace) {
			break
		}
	}
	locked()
	if err != nil {
		// Every request takes the ordinary path, so nobody is failed by a
		// batch; but a batch should not fail, so count it and say so.
		s.batchFailures.Add(1)
		s.log("coalesced batch failed; its claims go one by one", "claims", len(batch), "err", err)
	}
	for i, req := range batch {
		if err != nil {
			req.done <- claimResult{fallback: true}
			continue
		}
		req.done <- results[i]
	}
}
