package sqlstore

import (
	"context"
	"encoding/json"
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
	return &claimReq{ctx: ctx, r: r, rec: s.key, ttl: ttl, confirm: confirm, ref: ref, done: make(chan claimResult, 1)}
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
	// The batch's transaction runs under a deadline of its own: the
	// requests' deadlines decide whether they wait, not whether a
	// transaction that serves many of them finishes.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		err = s.db.Transact(ctx, func(tx Querier) error {
			for i := range results {
				results[i] = claimResult{}
			}
			return s.batchTx(ctx, tx, batch, results, locked)
		})
		// A request with the same key committed between this batch's look
		// at the keys and its write of them: look again (the key is then
		// seen as used, and only that request is left out).
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

// batchState is what a batch has locked and what its grants have taken
// so far, in memory.
type batchState struct {
	newHoldID func() string
	pools     map[string]*poolRow
	holders   map[holderKey]int64 // taken per (pool, holder), limited pools
	// holdersAdded is what the batch's grants add to holders' totals.
	holdersAdded map[holderKey]int64
	units        map[string]bool     // named units: free now
	free         map[string][]string // per group: free units picked for "any" lines
	// stale: named units whose hold has expired (free to the next claim,
	// once reclaimed: the ordinary path does that).
	stale map[string]bool
	// expiredPools: pools with expired holds not yet reclaimed; nil until
	// a refusal on a pool needs to know.
	expiredPools map[string]bool
}

type poolRow struct {
	capacity, held, confirmed, limit int64
	addHeld, addConfirmed            int64
}

type holderKey struct{ pool, holder string }

// batchTx decides a batch inside one transaction.
func (s *Store) batchTx(ctx context.Context, tx Querier, batch []*claimReq, results []claimResult, locked func()) error {
	if err := s.checkClaimedKeys(ctx, tx, batch, results); err != nil {
		return err
	}
	var pools, units, groups, holders []string
	seen := map[string]bool{}
	add := func(list *[]string, kind, id string) {
		if !seen[kind+id] {
			seen[kind+id] = true
			*list = append(*list, id)
		}
	}
	for i, req := range batch {
		if results[i].err != nil {
			continue
		}
		for _, l := range req.r.Lines {
			switch l.Kind() {
			case holdfast.LinePool:
				add(&pools, "p", l.Pool)
				add(&holders, "h", holderScope(req.r.Owner, req.r.Holder))
			case holdfast.LineUnits:
				for _, u := range l.Units {
					add(&units, "u", u)
				}
			case holdfast.LineAny:
				add(&groups, "g", l.Group)
			}
		}
	}
	slices.Sort(pools)
	slices.Sort(units)
	slices.Sort(groups)
	st, now, err := s.lockBatch(ctx, tx, batch, results, pools, units, groups, holders)
	if err != nil {
		return err
	}
	locked()

	var granted []int
	grants := make([]holdfast.Hold, len(batch))
	w := newHoldWriter(s.d)
	answers := make([]*holdfast.StoredResponse, len(batch))
	for i, req := range batch {
		if results[i].err != nil {
			continue
		}
		h, fail := st.grant(req, now)
		if fail != nil {
			if err := s.refusal(ctx, tx, st, req, fail); err != nil {
				results[i].err = err
				// A refusal under a key is recorded with the batch's
				// writes: no transaction of its own after.
				if rec := req.rec; rec != nil && rec.RenderError != nil && recordedRefusal[holdfast.ErrorCode(err)] {
					r := rec.RenderError(err)
					w.answer(rec, r, now)
					answers[i] = &r
				}
			} else {
				results[i].refused = true
			}
			continue
		}
		grants[i] = h
		granted = append(granted, i)
	}
	if len(granted) == 0 && w.newKeys+w.keys == 0 {
		return nil
	}
	for _, i := range granted {
		if answers[i], err = w.add(grants[i], batch[i].confirm, batch[i].rec, now); err != nil {
			return err
		}
	}
	stmts, checks := w.batchStmts(st)
	n, err := ExecAll(ctx, tx, stmts)
	if err != nil {
		return err
	}
	for k, want := range checks {
		if want >= 0 && n[k] != want {
			if stmts[k].SQL == keyInsert(w.keyRows) {
				return errKeyRace
			}
			return fmt.Errorf("sqlstore: a batch's statement %d changed %d rows, not %d: rolled back", k, n[k], want)
		}
	}
	for _, i := range granted {
		results[i].h = grants[i]
	}
	for i := range batch {
		results[i].answer = answers[i]
	}
	return nil
}

// recordedRefusal are the refusals a batch records under the request's
// key itself. Not "not found": a store spread over shards tries another
// shard after one, under the same key.
var recordedRefusal = map[holdfast.Code]bool{
	holdfast.CodeSoldOut: true, holdfast.CodeUnavailable: true, holdfast.CodeLimitExceeded: true,
}

// lockBatch looks up the batch's deferred idempotency keys, then locks the
// batch's rows in the global order and reads them — all in one round trip
// where the backend pipelines (PostgreSQL): the keys, the database clock,
// pools by id, the holders' totals of those pools, named units by id, and
// each "any" group's free units not locked by others. A request whose key
// turns out to be used takes no effect (its rows may have been locked for
// nothing: harmless).
func (s *Store) lockBatch(ctx context.Context, tx Querier, batch []*claimReq, results []claimResult, pools, units, groups, holders []string) (*batchState, int64, error) {
	st := &batchState{newHoldID: s.newHoldID, pools: map[string]*poolRow{}, holders: map[holderKey]int64{}, holdersAdded: map[holderKey]int64{}, units: map[string]bool{}, stale: map[string]bool{}, free: map[string][]string{}}
	var now int64
	var qs []Query

	// Deferred keys are not claimed with a write of their own: they are
	// looked up here, and a granted request's key is written once, with its
	// answer, among the batch's writes (where the insert's row count proves
	// nobody wrote it meanwhile, or the batch rolls back). A key used
	// before, or twice in this batch, takes no effect: the caller looks it
	// up (a replay, a mismatch, in flight).
	var keyRows string
	var keyArgs []any
	used, seen := map[[2]string]bool{}, map[[2]string]bool{}
	for i, req := range batch {
		if rec := req.rec; results[i].err == nil && rec != nil && rec.Deferred {
			k := [2]string{rec.Scope, rec.Key}
			if seen[k] {
				results[i] = claimResult{err: holdfast.Errorf(holdfast.CodeIdempotencyKeyUsed, "the Idempotency-Key is in use")}
				continue
			}
			seen[k] = true
			keyRows += sep(len(keyArgs)) + "(" + params(len(keyArgs)+1, 2) + ")"
			keyArgs = append(keyArgs, rec.Scope, rec.Key)
		}
	}
	if keyRows != "" {
		qs = append(qs, Query{`WITH v (scope, key) AS (VALUES ` + keyRows + `)
			SELECT v.scope, v.key FROM v JOIN idempotency_keys k ON k.scope = v.scope AND k.key = v.key`, keyArgs, func(r Row) error {
			var k [2]string
			err := r.Scan(&k[0], &k[1])
			used[k] = true
			return err
		}})
	}
	qs = append(qs, Query{`SELECT holdfast_now_ms()`, nil, func(r Row) error { return r.Scan(&now) }})
	if len(pools) > 0 {
		qs = append(qs, Query{`SELECT id, capacity - waitlisted, held, confirmed, per_holder_limit FROM pools
			WHERE id IN (` + s.d.ListSelect(1) + `) ORDER BY id` + s.d.ForUpdate, []any{s.d.ListArg(pools)}, func(r Row) error {
			var id string
			p := &poolRow{}
			err := r.Scan(&id, &p.capacity, &p.held, &p.confirmed, &p.limit)
			st.pools[id] = p
			return err
		}})
		// Only limited pools have holders' totals; the pools' row locks
		// (taken just before) guard them: every claim and give-back takes
		// the pool's row first.
		qs = append(qs, Query{`SELECT pool_id, holder, taken FROM pool_holders
			WHERE pool_id IN (` + s.d.ListSelect(1) + `) AND holder IN (` + s.d.ListSelect(2) + `)`, []any{s.d.ListArg(pools), s.d.ListArg(holders)}, func(r Row) error {
			var k holderKey
			var taken int64
			err := r.Scan(&k.pool, &k.holder, &taken)
			st.holders[k] = taken
			return err
		}})
	}
	if len(units) > 0 {
		lock := s.d.ForUpdate
		if lock != "" {
			lock += " OF u"
		}
		qs = append(qs, Query{`SELECT u.id, u.hold_id IS NULL, COALESCE(h.status = 'held' AND h.expires_at <= holdfast_now_ms(), FALSE)
			FROM units u LEFT JOIN holds h ON h.id = u.hold_id
			WHERE u.id IN (` + s.d.ListSelect(1) + `) ORDER BY u.id` + lock, []any{s.d.ListArg(units)}, func(r Row) error {
			var id string
			var free, stale bool
			err := r.Scan(&id, &free, &stale)
			st.units[id], st.stale[id] = free, stale
			return err
		}})
	}
	for _, g := range groups {
		var want int64
		for i, req := range batch {
			if results[i].err != nil {
				continue
			}
			for _, l := range req.r.Lines {
				if l.Kind() == holdfast.LineAny && l.Group == g {
					want += l.Any
				}
			}
		}
		// Free units other transactions have not locked, in id order; the
		// batch's own named units are left to their requests.
		qs = append(qs, Query{`SELECT id FROM units WHERE group_id = $1 AND hold_id IS NULL
			AND id NOT IN (` + s.d.ListSelect(2) + `) ORDER BY id LIMIT $3` + s.d.SkipLocked, []any{g, s.d.ListArg(units), want}, func(r Row) error {
			var id string
			err := r.Scan(&id)
			st.free[g] = append(st.free[g], id)
			return err
		}})
	}
	if err := QueryAll(ctx, tx, qs); err != nil {
		return nil, 0, err
	}
	for i, req := range batch {
		if rec := req.rec; results[i].err == nil && rec != nil && rec.Deferred && used[[2]string{rec.Scope, rec.Key}] {
			results[i] = claimResult{err: holdfast.Errorf(holdfast.CodeIdempotencyKeyUsed, "the Idempotency-Key is in use")}
		}
	}
	return st, now, nil
}

// batchFailure is why a batch could not grant a request: the first line,
// in request order, that could not be had, and what was short.
type batchFailure struct {
	line   int
	code   holdfast.Code
	detail string
	// definite: true at the moment the batch holds its locks, whatever
	// expired holds the ordinary path could reclaim (none are in the way).
	definite bool
	pool     string // a pool line's pool, to check for expired holds
}

// grant decides one request on the batch's locked rows: every line or
// none. The hold it returns has its lines (and units) filled in.
func (st *batchState) grant(req *claimReq, now int64) (holdfast.Hold, *batchFailure) {
	r := req.r
	type take struct {
		pool string
		q    int64
	}
	var pools []take
	var named []string
	picked := map[string]int{} // per group: units taken by this request
	lines := make([]holdfast.Line, len(r.Lines))
	for i, l := range r.Lines {
		lines[i] = holdfast.Line{Pool: l.Pool, Quantity: l.Quantity, Group: l.Group, Any: l.Any}
		switch l.Kind() {
		case holdfast.LinePool:
			p := st.pools[l.Pool]
			if p == nil {
				return holdfast.Hold{}, &batchFailure{line: i, code: holdfast.CodeNotFound, detail: fmt.Sprintf("pool %q not found", l.Pool), definite: true}
			}
			want := l.Quantity
			for _, t := range pools {
				if t.pool == l.Pool {
					want += t.q
				}
			}
			if taken := st.holders[holderKey{l.Pool, holderScope(r.Owner, r.Holder)}]; p.limit > 0 && taken+want > p.limit {
				return holdfast.Hold{}, &batchFailure{line: i, code: holdfast.CodeLimitExceeded, pool: l.Pool,
					detail: fmt.Sprintf("%d more of pool %q would pass its per-holder limit of %d", l.Quantity, l.Pool, p.limit)}
			}
			if avail := p.capacity - p.held - p.confirmed - p.addHeld - p.addConfirmed; avail < want {
				return holdfast.Hold{}, &batchFailure{line: i, code: holdfast.CodeSoldOut, pool: l.Pool,
					detail: fmt.Sprintf("pool %q has %d available, %d asked", l.Pool, max(0, avail-(want-l.Quantity)), l.Quantity)}
			}
			pools = append(pools, take{l.Pool, l.Quantity})
		case holdfast.LineUnits:
			for _, u := range l.Units {
				free, found := st.units[u]
				switch {
				case !found:
					return holdfast.Hold{}, &batchFailure{line: i, code: holdfast.CodeNotFound, detail: fmt.Sprintf("unit %q not found", u), definite: true}
				case !free:
					return holdfast.Hold{}, &batchFailure{line: i, code: holdfast.CodeUnavailable, detail: fmt.Sprintf("unit %q is taken", u), definite: !st.stale[u]}
				}
			}
			named = append(named, l.Units...)
			lines[i].Units = slices.Clone(l.Units)
		case holdfast.LineAny:
			// Short of free units the batch could lock: others may be
			// locked by claims in flight, or held by expired holds; the
			// ordinary path waits for them and decides.
			free := st.free[l.Group][picked[l.Group]:]
			if int64(len(free)) < l.Any {
				return holdfast.Hold{}, &batchFailure{line: i, code: holdfast.CodeUnavailable}
			}
			lines[i].Units = slices.Sorted(slices.Values(free[:l.Any]))
			picked[l.Group] += int(l.Any)
		}
	}
	// Every line fits: take it.
	for _, t := range pools {
		p := st.pools[t.pool]
		if req.confirm {
			p.addConfirmed += t.q
		} else {
			p.addHeld += t.q
		}
		if p.limit > 0 {
			st.holders[holderKey{t.pool, holderScope(r.Owner, r.Holder)}] += t.q
			st.holdersAdded[holderKey{t.pool, holderScope(r.Owner, r.Holder)}] += t.q
		}
	}
	for _, u := range named {
		st.units[u] = false
	}
	for g, n := range picked {
		st.free[g] = st.free[g][n:]
	}
	status := holdfast.StatusHeld
	if req.confirm {
		status = holdfast.StatusConfirmed
	}
	return holdfast.Hold{ID: st.newHoldID(), Holder: r.Holder, Status: status, PaymentRef: req.ref, Owner: r.Owner,
		CreatedAt: msTime(now), ExpiresAt: msTime(now + req.ttl.Milliseconds()), UpdatedAt: msTime(now), Lines: lines}, nil
}

// refusal turns a request the batch could not grant into its answer when
// that answer is definite now — the first failing line, exactly as a
// one-by-one claim in arrival order would name it — or returns nil: the
// request takes the ordinary path after the batch (expired holds are in
// the way, or an "any" line found too few units it could lock).
func (s *Store) refusal(ctx context.Context, tx Querier, st *batchState, req *claimReq, f *batchFailure) error {
	if f.pool != "" {
		if st.expiredPools == nil {
			// Once per batch, on its first refusal of a pool line.
			ids := make([]string, 0, len(st.pools))
			for id := range st.pools {
				ids = append(ids, id)
			}
			expired, err := queryStrings(ctx, tx, `SELECT DISTINCT l.pool_id FROM holds h JOIN hold_lines l ON l.hold_id = h.id
				WHERE h.status = 'held' AND h.expires_at <= holdfast_now_ms() AND l.pool_id IN (`+s.d.ListSelect(1)+`)`, s.d.ListArg(ids))
			if err != nil {
				return err
			}
			st.expiredPools = map[string]bool{}
			for _, id := range expired {
				st.expiredPools[id] = true
			}
		}
		f.definite = !st.expiredPools[f.pool]
	}
	if !f.definite {
		return nil
	}
	return holdfast.LineErrorf(f.code, f.line, "%s", f.detail)
}

// errKeyRace: a key the batch found unused was written by another request
// before the batch could write it.
var errKeyRace = errors.New("sqlstore: an idempotency key was written meanwhile")

// keyInsert writes deferred keys, done, with their answers; a key
// someone else wrote is left alone (and the row count tells).
func keyInsert(rows string) string {
	return `INSERT INTO idempotency_keys (scope, key, fingerprint, token, state, status, body, created_at, updated_at)
		VALUES ` + rows + ` ON CONFLICT (scope, key) DO NOTHING`
}

// checkClaimedKeys checks that keys claimed before the batch (by
// BeginIdempotent) are still the requests' own: a request whose key a
// retry took over takes no effect.
func (s *Store) checkClaimedKeys(ctx context.Context, tx Querier, batch []*claimReq, results []claimResult) error {
	for i, req := range batch {
		rec := req.rec
		if rec == nil || rec.Deferred {
			continue
		}
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
	return nil
}

// holdWriter builds the multi-row statements that write new holds: the
// one writer of holds, lines, unit claims, outbox events and keys'
// answers, for a batch of many and for a claim made alone.
type holdWriter struct {
	d Dialect

	holdRows, lineRows, claimRows, eventRows, settleRows string
	holdArgs, lineArgs, claimArgs, eventArgs, settleArgs []any
	// keyRows are deferred keys written once, done, with their answers.
	keyRows            string
	keyArgs            []any
	newKeys            int
	unitRows           string
	unitArgs           []any
	holds, units, keys int
	// lineNos, when set, numbers the lines of the one hold written (a
	// part of a hold across shards: see Part).
	lineNos []int
}

func newHoldWriter(d Dialect) *holdWriter { return &holdWriter{d: d} }

// add writes hold h (created at now; booked when confirm), and the answer
// under rec when it is not nil.
func (w *holdWriter) add(h holdfast.Hold, confirm bool, rec *holdfast.Idempotency, now int64) (*holdfast.StoredResponse, error) {
	w.holdRows += sep(w.holds) + "(" + params(len(w.holdArgs)+1, 8) + ")"
	w.holdArgs = append(w.holdArgs, h.ID, h.Holder, string(h.Status), now, h.ExpiresAt.UnixMilli(), now, h.PaymentRef, h.Owner)
	w.holds++
	for i, l := range h.Lines {
		no := i
		if w.lineNos != nil {
			no = w.lineNos[i]
		}
		var kind string
		var pool, group, qty, anyN any
		switch {
		case l.Pool != "":
			kind, pool, qty = "pool", l.Pool, l.Quantity
		case l.Group != "":
			kind, group, anyN = "any", l.Group, l.Any
		default:
			kind = "units"
		}
		w.lineRows += sep(len(w.lineArgs)) + "(" + params(len(w.lineArgs)+1, 7) + ")"
		w.lineArgs = append(w.lineArgs, h.ID, no, kind, pool, qty, group, anyN)
		for _, u := range l.Units {
			w.claimRows += sep(len(w.claimArgs)) + "(" + params(len(w.claimArgs)+1, 3) + ", TRUE)"
			w.claimArgs = append(w.claimArgs, h.ID, no, u)
			w.unitRows += sep(len(w.unitArgs)) + "(" + params(len(w.unitArgs)+1, 2) + ")"
			w.unitArgs = append(w.unitArgs, u, h.ID)
			w.units++
		}
	}
	b, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	types := []holdfast.EventType{holdfast.EventHoldCreated}
	if confirm {
		types = append(types, holdfast.EventHoldConfirmed)
	}
	for _, typ := range types {
		w.eventRows += sep(len(w.eventArgs)) + "(" + params(len(w.eventArgs)+1, 4) + ")"
		w.eventArgs = append(w.eventArgs, string(typ), now, h.ID, string(b))
	}
	if rec == nil {
		return nil, nil
	}
	r := rec.Render(h)
	w.answer(rec, r, now)
	return &r, nil
}

// answer records r under rec: a deferred key is written, done; a key
// claimed before is settled.
func (w *holdWriter) answer(rec *holdfast.Idempotency, r holdfast.StoredResponse, now int64) {
	if rec.Deferred {
		w.keyRows += sep(len(w.keyArgs)) + "(" + params(len(w.keyArgs)+1, 4) +
			fmt.Sprintf(", 'done', CAST($%d AS INTEGER), CAST($%d AS %s), $%d, $%d)", len(w.keyArgs)+5, len(w.keyArgs)+6, w.d.BlobType, len(w.keyArgs)+7, len(w.keyArgs)+7)
		w.keyArgs = append(w.keyArgs, rec.Scope, rec.Key, rec.Fingerprint, rec.Token, r.Status, r.Body, now)
		w.newKeys++
	} else {
		w.settleRows += sep(len(w.settleArgs)) + "(" + params(len(w.settleArgs)+1, 3) +
			fmt.Sprintf(", CAST($%d AS INTEGER), CAST($%d AS %s))", len(w.settleArgs)+4, len(w.settleArgs)+5, w.d.BlobType)
		w.settleArgs = append(w.settleArgs, rec.Scope, rec.Key, rec.Token, r.Status, r.Body)
		w.keys++
	}
}

// recordStmts are the lines, unit claims and events of the holds added:
// what every claim writes once its hold row exists and its rows are taken.
func (w *holdWriter) recordStmts() []Stmt {
	stmts := []Stmt{{`INSERT INTO hold_lines (hold_id, line_no, kind, pool_id, quantity, group_id, any_count) VALUES ` + w.lineRows, w.lineArgs}}
	if w.claimRows != "" {
		// The partial unique index on active claims refuses a second
		// active claim on a unit (guarantee 5), whatever the code above did.
		stmts = append(stmts, Stmt{`INSERT INTO unit_claims (hold_id, line_no, unit_id, active) VALUES ` + w.claimRows, w.claimArgs})
	}
	return append(stmts, Stmt{`INSERT INTO events (type, at, hold_id, data) VALUES ` + w.eventRows, w.eventArgs})
}

// settleStmt records every key's answer; it must change w.keys rows.
func (w *holdWriter) settleStmt() Stmt {
	return Stmt{`WITH v (scope, key, token, status, body) AS (VALUES ` + w.settleRows + `)
		UPDATE idempotency_keys SET state = 'done', status = v.status, body = v.body, updated_at = holdfast_now_ms()
		FROM v WHERE idempotency_keys.scope = v.scope AND idempotency_keys.key = v.key
		AND idempotency_keys.token = v.token AND idempotency_keys.state = 'in_flight'`, w.settleArgs}
}

// batchStmts are a batch's writes, in one round: the holds, the
// conditional updates of pools, holders' totals and units (each row count
// checked), the lines, claims and events, and last the keys' answers.
// checks[k] is the row count statement k must report (-1: any).
func (w *holdWriter) batchStmts(st *batchState) ([]Stmt, []int64) {
	var stmts []Stmt
	var checks []int64
	if w.holds > 0 { // none when the batch only records refusals
		stmts = append(stmts, Stmt{`INSERT INTO holds (id, holder, status, created_at, expires_at, updated_at, payment_ref, owner) VALUES ` + w.holdRows, w.holdArgs})
		checks = append(checks, int64(w.holds))
	}

	ids := make([]string, 0, len(st.pools))
	for id, p := range st.pools {
		if p.addHeld+p.addConfirmed > 0 {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	var rows string
	var args []any
	for _, id := range ids {
		p := st.pools[id]
		rows += sep(len(args)) + fmt.Sprintf("($%d, CAST($%d AS BIGINT), CAST($%d AS BIGINT))", len(args)+1, len(args)+2, len(args)+3)
		args = append(args, id, p.addHeld, p.addConfirmed)
	}
	if len(ids) > 0 {
		// The database checks every pool's sum against its capacity.
		stmts = append(stmts, Stmt{`WITH v (id, held, confirmed) AS (VALUES ` + rows + `)
			UPDATE pools SET held = pools.held + v.held, confirmed = pools.confirmed + v.confirmed, version = pools.version + 1
			FROM v WHERE pools.id = v.id AND pools.capacity - pools.held - pools.confirmed - pools.waitlisted >= v.held + v.confirmed`, args})
		checks = append(checks, int64(len(ids)))
	}

	// Holders' totals: one upsert of each (pool, holder) the batch added
	// to, refused by the database past the pool's limit.
	type delta struct {
		k holderKey
		q int64
	}
	var deltas []delta
	for _, id := range ids {
		if st.pools[id].limit == 0 {
			continue
		}
		for k, taken := range st.holdersAdded {
			if k.pool == id && taken > 0 {
				deltas = append(deltas, delta{k, taken})
			}
		}
	}
	slices.SortFunc(deltas, func(a, b delta) int { return compare(a.k.pool+"\x00"+a.k.holder, b.k.pool+"\x00"+b.k.holder) })
	rows, args = "", nil
	for _, d := range deltas {
		rows += sep(len(args)) + fmt.Sprintf("($%d, $%d, CAST($%d AS BIGINT))", len(args)+1, len(args)+2, len(args)+3)
		args = append(args, d.k.pool, d.k.holder, d.q)
	}
	if len(deltas) > 0 {
		stmts = append(stmts, Stmt{`INSERT INTO pool_holders (pool_id, holder, taken) VALUES ` + rows + `
			ON CONFLICT (pool_id, holder) DO UPDATE SET taken = pool_holders.taken + excluded.taken
			WHERE pool_holders.taken + excluded.taken <= (SELECT per_holder_limit FROM pools WHERE pools.id = excluded.pool_id)`, args})
		checks = append(checks, int64(len(deltas)))
	}

	if w.units > 0 {
		stmts = append(stmts, Stmt{`WITH v (id, hold_id) AS (VALUES ` + w.unitRows + `)
			UPDATE units SET hold_id = v.hold_id FROM v WHERE units.id = v.id AND units.hold_id IS NULL`, w.unitArgs})
		checks = append(checks, int64(w.units))
	}
	if w.holds > 0 {
		for _, st := range w.recordStmts() {
			stmts = append(stmts, st)
			checks = append(checks, -1)
		}
	}
	if w.newKeys > 0 {
		stmts = append(stmts, Stmt{keyInsert(w.keyRows), w.keyArgs})
		checks = append(checks, int64(w.newKeys))
	}
	if w.keys > 0 {
		stmts = append(stmts, w.settleStmt())
		checks = append(checks, int64(w.keys))
	}
	return stmts, checks
}

func sep(k int) string {
	if k == 0 {
		return ""
	}
	return ", "
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
		if !s.spawn(func() { s.readAvailability(pool, e, r) }) {
			c.mu.Unlock()
			return 0, false
		}
		e.running, e.next = true, nil
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
		found, err := queryRow(ctx, s.db, `SELECT p.capacity - p.held - p.confirmed - p.waitlisted, p.per_holder_limit,
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
	now := time.Now()
	if e, ok := c.entries[pool]; ok {
		e.until = now.Add(soldOutMark)
		return
	}
	// Marks that ended go, so the cache holds only pools sold out in the
	// last second (and never a pool that does not exist: only a real
	// pool answers sold_out).
	for p, e := range c.entries {
		if !e.running && now.After(e.until) {
			delete(c.entries, p)
		}
	}
	c.entries[pool] = &soldOutEntry{until: now.Add(soldOutMark)}
}

// size is how many pools have a mark.
func (c *soldOutCache) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// forget drops the marks of pools this store gave capacity back to.
func (c *soldOutCache) forget(pools ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range pools {
		delete(c.entries, p)
	}
}
