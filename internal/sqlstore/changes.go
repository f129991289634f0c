package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/holdfast/holdfast"
)

// Lifecycle changes in batches. Confirm, release, extend, cancel and
// complete arriving together are decided in one transaction, as claims
// are: it locks the batch's holds in id order and reads them whole (one
// round trip), decides each change in arrival order in memory by the
// same rule the one-by-one path applies (transition), then writes every
// effect with statements whose number does not grow with the batch —
// one update of holds per kind, one per pool and holder touched, the
// units freed, the keys' quotas, the events in one insert, and every
// request's answer under its Idempotency-Key in one upsert — and commits
// once. Locks are taken in the global order: holds, pools, holders'
// totals, units, keys.
//
// A partial confirm on time is decided here too: it keeps its part (the
// rule of keepPart, confirm.go) and gives back the rest in the same
// statements — the pools' held, the holders' totals, the dropped units
// and their claims, the lines' quantities.
//
// A late confirm of a hold no sweeper has expired yet is decided here
// too, by its pools' and groups' policies (lateRefusal, confirm.go, read
// for the batch's late holds in one statement): its capacity is still
// its own. A confirm that records a payment has it captured in the same
// insert for the whole batch.
//
// A change the batch cannot make alone takes the ordinary path (change):
// a second change of the same hold in one batch, a late confirm of a hold
// already expired (what it keeps is claimed again, on the careful path),
// a confirm whose payment is recorded already (a replay or a conflict),
// a part of a hold across shards.

type changeKind int

const (
	kindNone changeKind = iota
	kindConfirm
	kindRelease
	kindExtend
	kindCancel
	kindComplete
)

type changeReq struct {
	ctx  context.Context
	c    change
	id   string
	rec  *holdfast.Idempotency
	done chan changeResult
}

type changeResult struct {
	h        holdfast.Hold
	err      error
	answer   *holdfast.StoredResponse
	fallback bool // take the ordinary path
}

// changeQueue is the changes waiting for a batch: one batch at a time,
// and what arrives while it runs makes the next.
type changeQueue struct {
	mu      sync.Mutex
	pending []*changeReq
	running bool
}

// submitChange queues one change and waits for its batch.
func (s *Store) submitChange(ctx context.Context, id string, c change) changeResult {
	req := &changeReq{ctx: ctx, c: c, id: id, rec: s.key, done: make(chan changeResult, 1)}
	q := &s.changes
	q.mu.Lock()
	if len(q.pending) >= maxQueue {
		q.mu.Unlock()
		return changeResult{err: holdfast.Errorf(holdfast.CodeBusy, "too many changes waiting; retry shortly")}
	}
	if !q.running {
		if !s.spawn(s.drainChanges) {
			q.mu.Unlock()
			return changeResult{fallback: true}
		}
		q.running = true
	}
	q.pending = append(q.pending, req)
	q.mu.Unlock()
	return <-req.done
}

func (s *Store) drainChanges() {
	q := &s.changes
	for {
		q.mu.Lock()
		n := min(len(q.pending), maxBatch)
		if n == 0 {
			q.running = false
			q.mu.Unlock()
			return
		}
		batch := slices.Clone(q.pending[:n])
		q.pending = append(q.pending[:0:0], q.pending[n:]...)
		q.mu.Unlock()
		s.runChanges(batch)
	}
}

// runChanges decides a batch of changes in one transaction and answers
// every request.
func (s *Store) runChanges(batch []*changeReq) {
	live := batch[:0]
	for _, req := range batch {
		if err := req.ctx.Err(); err != nil {
			req.done <- changeResult{err: fmt.Errorf("%w: the request's deadline passed while queued", holdfast.ErrBusy)}
			continue
		}
		live = append(live, req)
	}
	if len(live) == 0 {
		return
	}
	s.changeBatches.Add(1)
	ctxs := make([]context.Context, len(live))
	for i, req := range live {
		ctxs[i] = req.ctx
	}
	ctx, cancel := batchContext(ctxs)
	defer cancel()
	results := make([]changeResult, len(live))
	var err error
	// A key or payment ref written meanwhile (errKeyRace) means another
	// request committed: look again, as a claim batch does, a bounded
	// number of times (paid confirms whose twins take the careful path can
	// race a batch several times in a row).
	for attempt := 0; attempt < keyRaceAttempts; attempt++ {
		err = s.db.Transact(ctx, func(tx Querier) error {
			for i := range results {
				if results[i].err == nil || !isKeyRefusal(results[i].err) {
					results[i] = changeResult{}
				}
			}
			return s.changesTx(ctx, tx, live, results)
		})
		if !errors.Is(err, errKeyRace) {
			break
		}
	}
	if err != nil {
		s.batchFailures.Add(1)
		s.log("batch of changes failed; its changes go one by one", "changes", len(live), "err", err)
	}
	for i, req := range live {
		if err != nil {
			req.done <- changeResult{fallback: true}
			continue
		}
		if !results[i].fallback { // decided here: made or refused
			s.changesBatched.Add(1)
		}
		req.done <- results[i]
	}
}

// isKeyRefusal is a request left out of a batch because its key is
// another request's: it stays out when the batch is tried again.
func isKeyRefusal(err error) bool {
	c := holdfast.ErrorCode(err)
	return c == holdfast.CodeIdempotencyKeyUsed || c == holdfast.CodeIdempotencyInFlight
}

// lockedHold is a hold as a batch of changes read it, its row locked.
type lockedHold struct {
	h       holdfast.Hold
	status  holdfast.Status
	expired bool
	created int64
	quota   string
	units   int64 // counted against quota
	late    bool  // confirmed after its expiry, as its policies allow
	// lines are the hold's lines as stored (a channel's pool line names
	// its allocation's row), parallel to h.Lines: what a confirm keeps
	// of each, all unless it confirms a part.
	lines []heldLine
}

// transition decides change c of a hold in state st (expired: past its
// expiry) at time now, created at created: nil, or the refusal.
func (s *Store) transition(id string, st holdfast.Status, expired bool, created, now int64, c change) error {
	if err := stateRefusal(id, st, expired, c); err != nil {
		return err
	}
	if c.kind == kindExtend && now+c.ttl.Milliseconds() > created+s.cfg.MaxLifetime.Milliseconds() {
		return c.onCond
	}
	return nil
}

// stateRefusal is the rule of a hold's states, for every change on every
// path: a change from held finds an expired hold hold_expired; any other
// state than the change's from is invalid_state.
func stateRefusal(id string, st holdfast.Status, expired bool, c change) error {
	switch {
	case st == holdfast.StatusExpired, st == holdfast.StatusHeld && expired:
		if c.from == holdfast.StatusHeld {
			return holdfast.Errorf(holdfast.CodeHoldExpired, "hold %q expired", id)
		}
		return holdfast.Errorf(holdfast.CodeInvalidState, "hold %q is expired, not %s", id, c.from)
	case st != c.from:
		return holdfast.Errorf(holdfast.CodeInvalidState, "hold %q is %s, not %s", id, st, c.from)
	}
	return nil
}

func (s *Store) changesTx(ctx context.Context, tx Querier, batch []*changeReq, results []changeResult) error {
	var ids []string
	for i, req := range batch {
		if results[i].err == nil && !slices.Contains(ids, req.id) {
			ids = append(ids, req.id)
		}
	}
	slices.Sort(ids)
	holds, now, err := s.lockHolds(ctx, tx, ids)
	if err != nil {
		return err
	}
	// A confirm of a hold past its expiry that no sweeper has expired yet
	// is late: its pools' and groups' policies decide, read in one
	// statement for all of them. (An expired one, its capacity given
	// back, takes the careful path: what it keeps is claimed again.)
	var late []string
	for i, req := range batch {
		if lh := holds[req.id]; results[i].err == nil && lh != nil && req.c.kind == kindConfirm && lh.status == holdfast.StatusHeld && lh.expired {
			late = append(late, req.id)
		}
	}
	// A confirm that records a payment whose ref is recorded already (a
	// replay of it, or a conflict), or paid with twice in the batch,
	// leaves the batch: the careful path answers it.
	var refs []string
	for i, req := range batch {
		if p := req.c.pay; results[i].err == nil && p != nil {
			refs = append(refs, p.Ref)
		}
	}
	usedRefs := map[string]bool{}
	if len(refs) > 0 {
		s.changeStmts.Add(1)
		recorded, err := queryStrings(ctx, tx, `SELECT ref FROM payments WHERE ref IN (`+s.d.ListSelect(1)+`)`, s.d.ListArg(refs))
		if err != nil {
			return err
		}
		for _, ref := range recorded {
			usedRefs[ref] = true
		}
		seen := map[string]bool{}
		for _, ref := range refs {
			usedRefs[ref] = usedRefs[ref] || seen[ref]
			seen[ref] = true
		}
	}
	var policies map[string][]latePolicy
	if len(late) > 0 {
		s.changeStmts.Add(1)
		if policies, err = s.latePolicies(ctx, tx, late); err != nil {
			return err
		}
	}
	// Decide in arrival order. A hold changed twice in one batch: the
	// second change waits for the ordinary path.
	touched := map[string]bool{}
	byKind := map[changeKind][]int{}
	for i, req := range batch {
		if results[i].err != nil {
			continue
		}
		lh, found := holds[req.id]
		switch {
		case touched[req.id], req.c.pay != nil && usedRefs[req.c.pay.Ref]:
			results[i].fallback = true
			continue
		case !found:
			results[i].err = holdfast.Errorf(holdfast.CodeNotFound, "hold %q not found", req.id)
			continue
		}
		var err error
		if req.c.kind == kindConfirm && lh.status == holdfast.StatusExpired {
			// Its capacity went back: the careful path decides whether
			// what it keeps can be claimed again.
			results[i].fallback = true
			continue
		}
		if req.c.kind == kindConfirm && lh.status == holdfast.StatusHeld && lh.expired {
			err = lateRefusal(req.id, policies[req.id], now-lh.h.ExpiresAt.UnixMilli())
			lh.late = err == nil
		} else {
			err = s.transition(req.id, lh.status, lh.expired, lh.created, now, req.c)
		}
		if err != nil {
			results[i].err = err
			continue
		}
		if err := keepPart(lh.lines, req.c.part); err != nil {
			results[i].err = err
			continue
		}
		touched[req.id] = true
		byKind[req.c.kind] = append(byKind[req.c.kind], i)
	}
	if len(touched) == 0 {
		return nil
	}

	stmts, checks, races, back, err := s.changeWrites(batch, results, holds, byKind, now)
	if err != nil {
		return err
	}
	s.changeStmts.Add(int64(len(stmts)) + 4) // and lockHolds' four reads
	n, err := ExecAll(ctx, tx, stmts)
	if err != nil {
		return err
	}
	for k, want := range checks {
		if want >= 0 && n[k] != want {
			if slices.Contains(races, k) {
				return errKeyRace // a ref recorded meanwhile: look again, and it leaves the batch
			}
			return fmt.Errorf("sqlstore: a batch of changes' statement %d changed %d rows, not %d: rolled back", k, n[k], want)
		}
	}
	var cancelled []string
	for _, i := range byKind[kindCancel] {
		if results[i].err == nil && !results[i].fallback {
			cancelled = append(cancelled, batch[i].id)
		}
	}
	if err := s.paymentsDueBack(ctx, tx, cancelled); err != nil {
		return err
	}
	s.soldOut.forget(back...)
	return s.answerChanges(ctx, tx, batch, results)
}

// answerChanges records every keyed request's answer in one upsert: a
// new key is written done, a key claimed before settled. A key that is
// another request's (written meanwhile, or taken over by a retry) leaves
// its request out of the batch, which is tried again without it.
func (s *Store) answerChanges(ctx context.Context, tx Querier, batch []*changeReq, results []changeResult) error {
	rows := newRows("scope, key, fingerprint, token, status, body", "text", "text", "text", "text", "integer", "bytea")
	var keyed []int
	for i, req := range batch {
		if req.rec == nil || results[i].err != nil || results[i].fallback {
			continue
		}
		r := req.rec.Render(results[i].h)
		results[i].answer = &r
		rows.add(req.rec.Scope, req.rec.Key, req.rec.Fingerprint, req.rec.Token, r.Status, r.Body)
		keyed = append(keyed, i)
	}
	if len(keyed) == 0 {
		return nil
	}
	s.changeStmts.Add(1)
	written := map[[2]string]bool{}
	err := QueryAll(ctx, tx, []Query{rows.query(s.d, `INSERT INTO idempotency_keys (scope, key, fingerprint, token, state, status, body, created_at, updated_at)
		SELECT scope, key, fingerprint, token, 'done', status, body, holdfast_now_ms(), holdfast_now_ms() FROM v WHERE true
		ON CONFLICT (scope, key) DO UPDATE SET state = 'done', status = excluded.status, body = excluded.body, updated_at = excluded.updated_at
		WHERE idempotency_keys.token = excluded.token AND idempotency_keys.state = 'in_flight'
		RETURNING scope, key`, func(r Row) error {
		var k [2]string
		err := r.Scan(&k[0], &k[1])
		written[k] = true
		return err
	})})
	if err != nil {
		return err
	}
	race := false
	for _, i := range keyed {
		rec := batch[i].rec
		if written[[2]string{rec.Scope, rec.Key}] {
			continue
		}
		race = true
		results[i] = changeResult{err: holdfast.Errorf(holdfast.CodeIdempotencyKeyUsed, "the Idempotency-Key is in use")}
		if !rec.Deferred {
			results[i].err = holdfast.Errorf(holdfast.CodeIdempotencyInFlight, "this request's Idempotency-Key was taken over by a retry")
		}
	}
	if race {
		return errKeyRace
	}
	return nil
}

// lockHolds locks holds ids (sorted) and reads them whole, with the
// database's clock, in one round trip where the backend pipelines.
func (s *Store) lockHolds(ctx context.Context, tx Querier, ids []string) (map[string]*lockedHold, int64, error) {
	out := map[string]*lockedHold{}
	var now int64
	list := []any{s.d.ListArg(ids)}
	at := map[string]map[int]int{}
	err := QueryAll(ctx, tx, append(s.d.genericPlans(), []Query{
		{`SELECT holdfast_now_ms()`, nil, func(r Row) error { return r.Scan(&now) }},
		{`SELECT id, holder, status, created_at, expires_at, updated_at, payment_ref, owner, late, expires_at <= holdfast_now_ms(),
			COALESCE(quota_key, ''), quota_units
			FROM holds WHERE id IN (` + s.d.ListSelect(1) + `) ORDER BY id` + s.d.ForUpdate, list, func(r Row) error {
			lh := &lockedHold{}
			var status string
			var expires, updated int64
			if err := r.Scan(&lh.h.ID, &lh.h.Holder, &status, &lh.created, &expires, &updated, &lh.h.PaymentRef, &lh.h.Owner, &lh.h.Late, &lh.expired,
				&lh.quota, &lh.units); err != nil {
				return err
			}
			lh.status = holdfast.Status(status)
			lh.h.Status = lh.status
			lh.h.CreatedAt, lh.h.ExpiresAt, lh.h.UpdatedAt = msTime(lh.created), msTime(expires), msTime(updated)
			out[lh.h.ID] = lh
			at[lh.h.ID] = map[int]int{}
			return nil
		}},
		{`SELECT hold_id, line_no, kind, COALESCE(pool_id, ''), COALESCE(quantity, 0), COALESCE(group_id, ''), COALESCE(any_count, 0)
			FROM hold_lines WHERE hold_id IN (` + s.d.ListSelect(1) + `) ORDER BY hold_id, line_no`, list, func(r Row) error {
			var id string
			var hl heldLine
			var l holdfast.Line
			if err := r.Scan(&id, &hl.no, &hl.kind, &l.Pool, &l.Quantity, &l.Group, &l.Any); err != nil {
				return err
			}
			if lh := out[id]; lh != nil {
				hl.pool, hl.quantity, hl.keep = l.Pool, l.Quantity, l.Quantity
				at[id][hl.no] = len(lh.h.Lines)
				lh.h.Lines = append(lh.h.Lines, publicLine(l))
				lh.lines = append(lh.lines, hl)
			}
			return nil
		}},
		{`SELECT hold_id, line_no, unit_id FROM unit_claims WHERE hold_id IN (` + s.d.ListSelect(1) + `) ORDER BY hold_id, line_no, unit_id`, list, func(r Row) error {
			var id, unit string
			var no int
			if err := r.Scan(&id, &no, &unit); err != nil {
				return err
			}
			if lh := out[id]; lh != nil {
				if i, ok := at[id][no]; ok {
					lh.h.Lines[i].Units = append(lh.h.Lines[i].Units, unit)
					lh.lines[i].units = append(lh.lines[i].units, unit)
					lh.lines[i].kept = lh.lines[i].units
				}
			}
			return nil
		}},
	}...))
	return out, now, err
}
