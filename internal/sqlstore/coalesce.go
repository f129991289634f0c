package sqlstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/holdfast/holdfast"
)

// Coalescing is group commit for claims. On a hot pool every one-claim-
// per-transaction design queues on the pool's row lock, and the database's
// commit rate is the ceiling. Here, concurrent holds of one line on the
// same pool are combined: one transaction takes the pool's row once, grants
// in arrival order while capacity lasts, and writes every hold, line and
// event of the batch in multi-row inserts. A batch closes when the
// previous one commits (or at maxBatch), so a lone request waits for
// nothing; under load, batches grow by themselves.
//
// Every guarantee holds as without batching: the capacity check is made
// on the locked row for the whole batch, per-holder limits by the same
// conditional upsert per request in order, idempotency records inside the
// batch's transaction. A request that a batch cannot grant takes the
// ordinary path (reclaiming expired holds, naming the failing line).

const (
	maxBatch = 256
	// maxQueue bounds the requests waiting on one pool: past it the server
	// sheds load with a retryable busy (503), never a wrong answer.
	maxQueue = 20_000
)

type claimReq struct {
	ctx     context.Context
	r       holdfast.HoldRequest
	ttl     time.Duration
	confirm bool
	ref     string
	done    chan claimResult
}

type claimResult struct {
	h        holdfast.Hold
	recorded bool // the batch recorded the idempotency key's answer
	refused  bool // not granted in the batch: take the ordinary path
	err      error
	fallback bool // the batch failed as a whole: take the ordinary path
}

type poolQueue struct {
	mu      sync.Mutex
	pending []*claimReq
	running bool
}

type coalescer struct {
	mu    sync.Mutex
	pools map[string]*poolQueue
}

func (c *coalescer) queue(pool string) *poolQueue {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pools == nil {
		c.pools = map[string]*poolQueue{}
	}
	q, ok := c.pools[pool]
	if !ok {
		q = &poolQueue{}
		c.pools[pool] = q
	}
	return q
}

// coalescible says whether a request can join a batch: one pool line.
func coalescible(r holdfast.HoldRequest) bool {
	return len(r.Lines) == 1 && r.Lines[0].Kind() == holdfast.LinePool
}

func (s *Store) newClaimReq(ctx context.Context, r holdfast.HoldRequest, ttl time.Duration, confirm bool, ref string) *claimReq {
	return &claimReq{ctx: ctx, r: r, ttl: ttl, confirm: confirm, ref: ref, done: make(chan claimResult, 1)}
}

// submit queues claims on their pool, one after the other, and waits for
// their batches.
func (s *Store) submit(ctx context.Context, reqs []*claimReq) []claimResult {
	pool := reqs[0].r.Lines[0].Pool
	q := s.batches.queue(pool)
	out := make([]claimResult, len(reqs))
	q.mu.Lock()
	if len(q.pending)+len(reqs) > maxQueue {
		q.mu.Unlock()
		for i := range out {
			out[i] = claimResult{err: holdfast.Errorf(holdfast.CodeBusy, "too many claims waiting on pool %q; retry shortly", pool)}
		}
		return out
	}
	q.pending = append(q.pending, reqs...)
	if !q.running {
		q.running = true
		go s.drain(pool, q)
	}
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

// drain runs batches for a pool until its queue is empty.
//
// Where the database queues transactions waiting for a row lock
// (PostgreSQL), the next batch starts as soon as the previous one holds
// the pool's row: it claims its keys and waits at the lock while the
// previous one writes and commits, so the lock passes from batch to batch
// with no round trip between them. Arrival order still holds: a batch
// asks for the lock only after the one before it has it. At most two
// batches of a pool are in flight. With one writer (SQLite) a batch
// starts when the previous one has finished, which lets it grow.
func (s *Store) drain(pool string, q *poolQueue) {
	for {
		q.mu.Lock()
		n := min(len(q.pending), maxBatch)
		if n == 0 {
			q.running = false
			q.mu.Unlock()
			return
		}
		batch := make([]*claimReq, n)
		copy(batch, q.pending)
		q.pending = append(q.pending[:0:0], q.pending[n:]...)
		q.mu.Unlock()

		live := batch[:0]
		for _, req := range batch {
			if err := req.ctx.Err(); err != nil {
				req.done <- claimResult{err: fmt.Errorf("%w: the request's deadline passed while queued", holdfast.ErrBusy)}
				continue
			}
			live = append(live, req)
		}
		if len(live) == 0 {
			continue
		}
		s.batchCount.Add(1)
		locked, done := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			var once sync.Once
			s.runBatch(pool, live, func() { once.Do(func() { close(locked) }) })
		}()
		if s.d.QueuesLockWaiters {
			select {
			case <-locked:
			case <-done:
			}
		} else {
			<-done
		}
	}
}

// runBatch decides a batch in one transaction and answers every request.
// locked is called once the batch holds the pool's row.
func (s *Store) runBatch(pool string, batch []*claimReq, locked func()) {
	results := make([]claimResult, len(batch))
	// The batch's transaction runs under a deadline of its own: the
	// requests' deadlines decide whether they wait, not whether a
	// transaction that serves many of them finishes.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := s.db.Transact(ctx, func(tx Querier) error {
		for i := range results {
			results[i] = claimResult{}
		}
		return s.batchTx(ctx, tx, pool, batch, results, locked)
	})
	if err != nil {
		// Every request takes the ordinary path, so nobody is failed by a
		// batch; but a batch should not fail, so count it and say so.
		s.batchFailures.Add(1)
		s.log("coalesced batch failed; its claims go one by one", "pool", pool, "claims", len(batch), "err", err)
	}
	for i, req := range batch {
		if err != nil {
			req.done <- claimResult{fallback: true}
			continue
		}
		if results[i].recorded {
			markRecorded(req.ctx)
		}
		req.done <- results[i]
	}
}

// batchTx decides a batch inside one transaction.
//
// Only the grant decision needs the pool's row lock, so on a pool without
// a per-holder limit everything else is done before taking it: the keys
// are claimed, the pool is read without a lock, and the holds, lines,
// events and keys' answers of every request that fits are written. Then
// the row is locked and read again; the requests that still fit, in
// arrival order, are granted with one conditional update, and the writes
// of any that no longer fit (another batch took the capacity in between)
// are undone. Under the lock: one read, one update, the commit — the lock
// passes to the next batch sooner, and on a hot pool that section is the
// serial part.
func (s *Store) batchTx(ctx context.Context, tx Querier, pool string, batch []*claimReq, results []claimResult, locked func()) error {
	if err := s.claimBatchKeys(ctx, tx, batch, results); err != nil {
		return err
	}
	var capacity, held, confirmed, limit, now int64
	found, err := queryRow(ctx, tx, `SELECT capacity, held, confirmed, per_holder_limit, holdfast_now_ms() FROM pools WHERE id = $1`,
		[]any{pool}, &capacity, &held, &confirmed, &limit, &now)
	if err != nil {
		return err
	}
	if found && limit > 0 {
		// Per-holder limits are taken request by request under the lock.
		return s.batchLocked(ctx, tx, pool, batch, results, locked)
	}
	avail := capacity - held - confirmed
	var cand []int
	for i, req := range batch {
		if results[i].err != nil {
			continue
		}
		if q := req.r.Lines[0].Quantity; !found || q > avail {
			results[i].refused = true
		} else {
			avail -= q
			cand = append(cand, i)
		}
	}
	if len(cand) == 0 {
		return nil
	}
	holds, stmts, err := s.batchWrites(batch, cand, pool, now)
	if err != nil {
		return err
	}
	n, err := ExecAll(ctx, tx, stmts)
	if err != nil {
		return err
	}
	if keys := countKeys(batch, cand); keys > 0 && n[len(n)-1] != int64(keys) {
		return errors.New("sqlstore: an idempotency key changed hands inside its batch")
	}

	// The decision, under the row lock.
	// FOR NO KEY UPDATE, not FOR UPDATE: the next batch's inserts of hold
	// lines check their foreign key to this row (KEY SHARE) while we hold
	// it, and must not wait for us (nor we, in turn, for them).
	found, err = queryRow(ctx, tx, `SELECT capacity, held, confirmed FROM pools WHERE id = $1`+s.d.ForNoKeyUpdate,
		[]any{pool}, &capacity, &held, &confirmed)
	if err != nil {
		return err
	}
	locked()
	if !found {
		return errors.New("sqlstore: the pool vanished inside its batch")
	}
	avail = capacity - held - confirmed
	var addHeld, addConfirmed int64
	var undo []string
	var undoKeys []*holdfast.Idempotency
	for k, i := range cand {
		req := batch[i]
		q := req.r.Lines[0].Quantity
		rec := holdfast.IdempotencyFrom(req.ctx)
		if q > avail {
			results[i].refused = true
			undo = append(undo, holds[k].ID)
			if rec != nil {
				undoKeys = append(undoKeys, rec)
			}
			continue
		}
		avail -= q
		req.add(q, &addHeld, &addConfirmed)
		results[i].h = holds[k]
		results[i].recorded = rec != nil
	}
	var final []Stmt
	if len(undo) > 0 {
		ids := s.d.ListArg(undo)
		final = append(final,
			Stmt{`DELETE FROM events WHERE hold_id IN (` + s.d.ListSelect(1) + `)`, []any{ids}},
			Stmt{`DELETE FROM hold_lines WHERE hold_id IN (` + s.d.ListSelect(1) + `)`, []any{ids}},
			Stmt{`DELETE FROM holds WHERE id IN (` + s.d.ListSelect(1) + `)`, []any{ids}})
		if len(undoKeys) > 0 {
			var rows string
			var args []any
			for _, rec := range undoKeys {
				rows += sep(len(args)) + "(" + params(len(args)+1, 3) + ")"
				args = append(args, rec.Scope, rec.Key, rec.Token)
			}
			final = append(final, Stmt{`WITH v (scope, key, token) AS (VALUES ` + rows + `)
				UPDATE idempotency_keys SET state = 'in_flight', status = NULL, body = NULL
				FROM v WHERE idempotency_keys.scope = v.scope AND idempotency_keys.key = v.key AND idempotency_keys.token = v.token`, args})
		}
	}
	if addHeld+addConfirmed > 0 {
		final = append(final, takeSum(pool, addHeld, addConfirmed))
	}
	if len(final) == 0 {
		return nil
	}
	n, err = ExecAll(ctx, tx, final)
	if err != nil {
		return err
	}
	if addHeld+addConfirmed > 0 && n[len(n)-1] != 1 {
		return errors.New("sqlstore: batch capacity check failed on the locked row")
	}
	return nil
}

// claimBatchKeys claims the batch's deferred idempotency keys with one
// multi-row insert (a duplicate in the same batch finds the first's
// claim), and checks that claimed keys are still the requests' own: a
// request whose key is someone else's takes no effect.
func (s *Store) claimBatchKeys(ctx context.Context, tx Querier, batch []*claimReq, results []claimResult) error {
	var claimRows string
	var claimArgs []any
	for i, req := range batch {
		rec := holdfast.IdempotencyFrom(req.ctx)
		switch {
		case rec != nil && rec.Deferred:
			claimRows += sep(len(claimArgs)) + "(" + params(len(claimArgs)+1, 4) + ", 'in_flight', holdfast_now_ms(), holdfast_now_ms())"
			claimArgs = append(claimArgs, rec.Scope, rec.Key, rec.Fingerprint, rec.Token)
		case rec != nil:
			var token string
			found, err := queryRow(ctx, tx, `SELECT token FROM idempotency_keys WHERE scope = $1 AND key = $2 AND state = 'in_flight'`+s.d.ForUpdate,
				[]any{rec.Scope, rec.Key}, &token)
			if err != nil {
				return err
			}
			if !found || token != rec.Token {
				results[i] = claimResult{err: holdfast.Errorf(holdfast.CodeIdempotencyInFlight, "this request's Idempotency-Key was taken over by a retry")}
			}
		}
	}
	if claimRows == "" {
		return nil
	}
	won, err := queryStrings(ctx, tx, `INSERT INTO idempotency_keys (scope, key, fingerprint, token, state, created_at, updated_at)
		VALUES `+claimRows+` ON CONFLICT (scope, key) DO NOTHING RETURNING token`, claimArgs...)
	if err != nil {
		return err
	}
	claimed := make(map[string]bool, len(won))
	for _, t := range won {
		claimed[t] = true
	}
	for i, req := range batch {
		if rec := holdfast.IdempotencyFrom(req.ctx); rec != nil && rec.Deferred && !claimed[rec.Token] {
			results[i] = claimResult{err: holdfast.Errorf(holdfast.CodeIdempotencyKeyUsed, "the Idempotency-Key is in use")}
		}
	}
	return nil
}

// batchLocked is the batch with the pool's row locked first: for pools
// with a per-holder limit, taken per request, in order, under the lock.
func (s *Store) batchLocked(ctx context.Context, tx Querier, pool string, batch []*claimReq, results []claimResult, locked func()) error {
	var capacity, held, confirmed, limit, now int64
	found, err := queryRow(ctx, tx, `SELECT capacity, held, confirmed, per_holder_limit, holdfast_now_ms() FROM pools WHERE id = $1`+s.d.ForUpdate,
		[]any{pool}, &capacity, &held, &confirmed, &limit, &now)
	if err != nil {
		return err
	}
	locked()
	avail := capacity - held - confirmed
	var addHeld, addConfirmed int64
	var granted []int
	for i, req := range batch {
		if results[i].err != nil {
			continue
		}
		q := req.r.Lines[0].Quantity
		if !found || q > avail {
			results[i].refused = true
			continue
		}
		if limit > 0 {
			ok, err := s.takeHolderLimit(ctx, tx, pool, req.r.Holder, q, limit)
			if err != nil {
				return err
			}
			if !ok {
				results[i].refused = true
				continue
			}
		}
		avail -= q
		req.add(q, &addHeld, &addConfirmed)
		granted = append(granted, i)
	}
	if len(granted) == 0 {
		return nil
	}
	holds, writes, err := s.batchWrites(batch, granted, pool, now)
	if err != nil {
		return err
	}
	// One pipeline (one round trip on PostgreSQL): the conditional update —
	// the database checks the sum — then the writes.
	stmts := append([]Stmt{takeSum(pool, addHeld, addConfirmed)}, writes...)
	n, err := ExecAll(ctx, tx, stmts)
	if err != nil {
		return err
	}
	if n[0] != 1 {
		return errors.New("sqlstore: batch capacity check failed on the locked row")
	}
	if keys := countKeys(batch, granted); keys > 0 && n[len(n)-1] != int64(keys) {
		return errors.New("sqlstore: an idempotency key changed hands inside its batch")
	}
	for k, i := range granted {
		results[i].h = holds[k]
		results[i].recorded = holdfast.IdempotencyFrom(batch[i].ctx) != nil
	}
	return nil
}

// batchWrites builds the holds of the requests at idx and the statements
// that write them: holds, lines and events in multi-row inserts, then (if
// any request has a key) every answer under its key, last.
func (s *Store) batchWrites(batch []*claimReq, idx []int, pool string, now int64) ([]holdfast.Hold, []Stmt, error) {
	holds := make([]holdfast.Hold, 0, len(idx))
	var holdArgs, lineArgs, eventArgs, settleArgs []any
	var holdRows, lineRows, eventRows, settleRows string
	for k, i := range idx {
		req := batch[i]
		status := holdfast.StatusHeld
		if req.confirm {
			status = holdfast.StatusConfirmed
		}
		expires := now + req.ttl.Milliseconds()
		h := holdfast.Hold{ID: holdfast.NewHoldID(), Holder: req.r.Holder, Status: status, PaymentRef: req.ref, Owner: req.r.Owner,
			CreatedAt: msTime(now), ExpiresAt: msTime(expires), UpdatedAt: msTime(now),
			Lines: []holdfast.Line{{Pool: pool, Quantity: req.r.Lines[0].Quantity}}}
		holds = append(holds, h)
		holdRows += sep(k) + "(" + params(len(holdArgs)+1, 8) + ")"
		holdArgs = append(holdArgs, h.ID, h.Holder, string(status), now, expires, now, req.ref, req.r.Owner)
		lineRows += sep(k) + "(" + params(len(lineArgs)+1, 4) + ", 'pool')"
		lineArgs = append(lineArgs, h.ID, 0, pool, h.Lines[0].Quantity)
		for _, typ := range eventTypes(req.confirm) {
			b, err := json.Marshal(h)
			if err != nil {
				return nil, nil, err
			}
			eventRows += sep(len(eventArgs)) + "(" + params(len(eventArgs)+1, 5) + ")"
			eventArgs = append(eventArgs, string(typ), now, h.ID, pool, string(b))
		}
		if rec := holdfast.IdempotencyFrom(req.ctx); rec != nil {
			r := rec.Render(h)
			settleRows += sep(len(settleArgs)) + "(" + params(len(settleArgs)+1, 3) +
				fmt.Sprintf(", CAST($%d AS INTEGER), CAST($%d AS %s))", len(settleArgs)+4, len(settleArgs)+5, s.d.BlobType)
			settleArgs = append(settleArgs, rec.Scope, rec.Key, rec.Token, r.Status, r.Body)
		}
	}
	stmts := []Stmt{
		{`INSERT INTO holds (id, holder, status, created_at, expires_at, updated_at, payment_ref, owner) VALUES ` + holdRows, holdArgs},
		{`INSERT INTO hold_lines (hold_id, line_no, pool_id, quantity, kind) VALUES ` + lineRows, lineArgs},
		{`INSERT INTO events (type, at, hold_id, subject, data) VALUES ` + eventRows, eventArgs},
	}
	if settleRows != "" {
		stmts = append(stmts, Stmt{`WITH v (scope, key, token, status, body) AS (VALUES ` + settleRows + `)
			UPDATE idempotency_keys SET state = 'done', status = v.status, body = v.body, updated_at = holdfast_now_ms()
			FROM v WHERE idempotency_keys.scope = v.scope AND idempotency_keys.key = v.key
			AND idempotency_keys.token = v.token AND idempotency_keys.state = 'in_flight'`, settleArgs})
	}
	return holds, stmts, nil
}

// takeSum is a batch's one conditional update of the pool: the database
// checks the sum against the capacity.
func takeSum(pool string, held, confirmed int64) Stmt {
	return Stmt{`UPDATE pools SET held = held + $2, confirmed = confirmed + $3, version = version + 1
		WHERE id = $1 AND capacity - held - confirmed >= CAST($2 AS BIGINT) + CAST($3 AS BIGINT)`, []any{pool, held, confirmed}}
}

// add counts a granted claim of q into the batch's held or confirmed sum.
func (req *claimReq) add(q int64, held, confirmed *int64) {
	if req.confirm {
		*confirmed += q
	} else {
		*held += q
	}
}

func countKeys(batch []*claimReq, idx []int) int {
	n := 0
	for _, i := range idx {
		if holdfast.IdempotencyFrom(batch[i].ctx) != nil {
			n++
		}
	}
	return n
}

// markRecorded tells the HTTP layer a batch recorded its request's answer.
func markRecorded(ctx context.Context) {
	if rec := holdfast.IdempotencyFrom(ctx); rec != nil {
		rec.MarkRecorded()
	}
}

func sep(k int) string {
	if k == 0 {
		return ""
	}
	return ", "
}

func eventTypes(confirm bool) []holdfast.EventType {
	if confirm {
		return []holdfast.EventType{holdfast.EventHoldCreated, holdfast.EventHoldConfirmed}
	}
	return []holdfast.EventType{holdfast.EventHoldCreated}
}

// soldOutCache makes a sold-out storm cheap without ever answering from
// stale memory. A pool that answered sold_out recently is marked; a hold
// on a marked pool is answered by a shared read of the pool's
// availability instead of a write transaction. One read serves every
// request that arrived before it was sent, so a storm costs one round
// trip per read, not per request; and since each request's read starts
// after the request arrived, its sold_out is true at a moment within the
// request — also when another instance gave capacity back a millisecond
// before (a remembered answer with a time bound would be stale then, and
// the chaos harness's linearizability check catches exactly that).
//
// The mark is only a routing hint: a read that finds room (or a per-holder
// limit, or expired holds to reclaim) sends the request down the write
// path. Give-backs on this store drop the mark at once.
type soldOutCache struct {
	mu      sync.Mutex
	entries map[string]*soldOutEntry
}

type soldOutEntry struct {
	until   time.Time // the mark's end
	running bool      // a read is in flight
	next    *availRead
}

// availRead is one shared read; done closes when avail and ok are set.
type availRead struct {
	done  chan struct{}
	avail int64
	ok    bool // false: take the write path (room, a limit, expired holds, an error)
}

// soldOutMark is how long a sold_out keeps a pool on the read path.
const soldOutMark = time.Second

// refuses reports whether a claim of q on pool is sold out now, from a
// shared read; false means: take the write path.
func (s *Store) refusesSoldOut(ctx context.Context, pool string, q int64) (int64, bool) {
	c := &s.soldOut
	c.mu.Lock()
	e, ok := c.entries[pool]
	if !ok || time.Now().After(e.until) {
		c.mu.Unlock()
		return 0, false
	}
	r := e.next
	if r == nil {
		r = &availRead{done: make(chan struct{})}
		e.next = r
	}
	if !e.running {
		e.running, e.next = true, nil
		go s.readAvailability(pool, e, r)
	}
	c.mu.Unlock()
	select {
	case <-r.done:
	case <-ctx.Done():
		return 0, false
	}
	return r.avail, r.ok && q > r.avail
}

// readAvailability runs reads for a pool while requests wait for one.
func (s *Store) readAvailability(pool string, e *soldOutEntry, r *availRead) {
	c := &s.soldOut
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var avail, limit int64
		var expired bool
		found, err := queryRow(ctx, s.db, `SELECT p.capacity - p.held - p.confirmed, p.per_holder_limit,
			EXISTS (SELECT 1 FROM holds h WHERE h.status = 'held' AND h.expires_at <= holdfast_now_ms()
				AND EXISTS (SELECT 1 FROM hold_lines l WHERE l.hold_id = h.id AND l.pool_id = p.id))
			FROM pools p WHERE p.id = $1`, []any{pool}, &avail, &limit, &expired)
		cancel()
		r.avail, r.ok = avail, err == nil && found && limit == 0 && !expired
		close(r.done)
		c.mu.Lock()
		if r = e.next; r == nil {
			e.running = false
			c.mu.Unlock()
			return
		}
		e.next = nil
		c.mu.Unlock()
	}
}

// remember marks pool as sold out.
func (c *soldOutCache) remember(pool string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[string]*soldOutEntry{}
	}
	if e, ok := c.entries[pool]; ok {
		e.until = time.Now().Add(soldOutMark)
		return
	}
	if len(c.entries) > 10_000 {
		for p, e := range c.entries {
			if !e.running {
				delete(c.entries, p)
			}
		}
	}
	c.entries[pool] = &soldOutEntry{until: time.Now().Add(soldOutMark)}
}

// forget drops the marks of pools this store gave capacity back to.
func (c *soldOutCache) forget(pools ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range pools {
		delete(c.entries, p)
	}
}
