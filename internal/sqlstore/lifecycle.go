package sqlstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/holdfast/holdfast"
)

// change moves one hold from one state to another in one transaction: a
// conditional UPDATE on the hold row (which also locks it, so a confirm and
// a release or the sweeper on the same hold are ordered), then the effect on
// pools and units, then the outbox event.
type change struct {
	from, to holdfast.Status
	// set returns extra SET clauses, cond an extra WHERE condition; each
	// binds its own parameters.
	set, cond func(p *binds) string
	effect    func(ctx context.Context, tx Querier, id string) error
	event     holdfast.EventType
	// onCond explains a failure of cond on a hold that was otherwise in the
	// right state.
	onCond error
	// kind names the change for a batch of changes (changes.go), with its
	// payment reference (confirm) or its ttl (extend); kindNone goes
	// one by one.
	kind changeKind
	ref  string
	ttl  time.Duration
	// part is what a partial confirm keeps (confirm.go); the rest goes
	// back in the same batch.
	part []holdfast.PartLine
	// pay is the payment a confirm records, captured, with it.
	pay *holdfast.Payment
}

func (s *Store) change(ctx context.Context, id string, c change) (holdfast.Hold, error) {
	if h, ok, err := s.inBatch(ctx, id, c); ok {
		return h, err
	}
	return s.changeAlone(ctx, id, c)
}

// changeAlone makes change c of hold id in a transaction of its own.
func (s *Store) changeAlone(ctx context.Context, id string, c change) (holdfast.Hold, error) {
	if holdfast.ValidateID("hold", id) != nil { // no such id was ever made
		return holdfast.Hold{}, holdfast.Errorf(holdfast.CodeNotFound, "hold %q not found", id)
	}
	var h holdfast.Hold
	err := s.db.Transact(preparing(ctx), func(tx Querier) error {
		var p binds
		sql := `UPDATE holds SET status = ` + p.add(string(c.to)) + `, updated_at = holdfast_now_ms()`
		if c.set != nil {
			sql += c.set(&p)
		}
		sql += ` WHERE id = ` + p.add(id) + ` AND status = ` + p.add(string(c.from))
		if c.from == holdfast.StatusHeld {
			// Decided by the database clock in this very statement: a hold
			// past expiry can never be confirmed, whether or not the
			// sweeper has run.
			sql += ` AND expires_at > holdfast_now_ms()`
		}
		if c.cond != nil {
			sql += c.cond(&p)
		}
		n, err := tx.Exec(ctx, sql, p.args...)
		if err != nil {
			return err
		}
		if n == 0 {
			return s.whyNot(ctx, tx, id, c)
		}
		if c.effect != nil {
			if err := c.effect(ctx, tx, id); err != nil {
				return err
			}
		}
		if h, err = s.getHold(ctx, tx, id); err != nil {
			return err
		}
		// The event and the answer under the key: one round trip.
		ev, err := s.eventStmt(c.event, id, "", h)
		if err != nil {
			return err
		}
		stmts := []Stmt{ev}
		rec, settle := s.recording(h)
		if rec != nil {
			stmts = append(stmts, *rec)
		}
		rows, err := ExecAll(ctx, tx, stmts)
		if err != nil || rec == nil {
			return err
		}
		return settle(rows[1])
	})
	return h, err
}

// inBatch makes change c of hold id in a batch of changes (changes.go)
// where the store batches them; ok is false when it takes the ordinary
// path instead (one by one, a part of a hold across shards, or a change
// the batch leaves to it).
func (s *Store) inBatch(ctx context.Context, id string, c change) (h holdfast.Hold, ok bool, err error) {
	if c.kind == kindNone || !s.coalesce || partOf(ctx) != nil || holdfast.ValidateID("hold", id) != nil {
		return h, false, nil
	}
	res := s.submitChange(ctx, id, c)
	if res.fallback {
		return h, false, nil
	}
	if res.answer != nil {
		s.answer = res.answer
	}
	return res.h, true, res.err
}

// whyNot explains why a change's conditional update matched no row.
func (s *Store) whyNot(ctx context.Context, tx Querier, id string, c change) error {
	var status string
	var expired bool
	err := tx.QueryRow(ctx, `SELECT status, expires_at <= holdfast_now_ms() FROM holds WHERE id = $1`, id).Scan(&status, &expired)
	if errors.Is(err, ErrNoRows) {
		return holdfast.Errorf(holdfast.CodeNotFound, "hold %q not found", id)
	}
	if err != nil {
		return err
	}
	if err := stateRefusal(id, holdfast.Status(status), expired, c); err != nil {
		return err
	}
	if c.onCond != nil {
		return c.onCond
	}
	return holdfast.Errorf(holdfast.CodeInvalidState, "hold %q is %s", id, status)
}

func (s *Store) Release(ctx context.Context, id string) (holdfast.Hold, error) {
	return s.change(ctx, id, change{
		from: holdfast.StatusHeld, to: holdfast.StatusReleased, event: holdfast.EventHoldReleased, kind: kindRelease,
		effect: func(ctx context.Context, tx Querier, id string) error {
			return s.giveBack(ctx, tx, []string{id}, holdfast.StatusHeld)
		},
	})
}

func (s *Store) Extend(ctx context.Context, id string, ttl time.Duration) (holdfast.Hold, error) {
	if err := s.cfg.ValidateTTL(ttl, false); err != nil {
		return holdfast.Hold{}, err
	}
	return s.change(ctx, id, change{
		from: holdfast.StatusHeld, to: holdfast.StatusHeld, event: holdfast.EventHoldExtended, kind: kindExtend, ttl: ttl,
		set: func(p *binds) string { return `, expires_at = holdfast_now_ms() + ` + p.add(ttl.Milliseconds()) },
		cond: func(p *binds) string {
			return ` AND holdfast_now_ms() + ` + p.add(ttl.Milliseconds()) + ` <= created_at + ` + p.add(s.cfg.MaxLifetime.Milliseconds())
		},
		onCond: holdfast.Errorf(holdfast.CodeInvalid,
			"a hold cannot be extended past %s after it was created", s.cfg.MaxLifetime),
	})
}

func (s *Store) Cancel(ctx context.Context, id string) (holdfast.Hold, error) {
	return s.change(ctx, id, change{
		from: holdfast.StatusConfirmed, to: holdfast.StatusCancelled, event: holdfast.EventHoldCancelled, kind: kindCancel,
		effect: func(ctx context.Context, tx Querier, id string) error {
			if err := s.giveBack(ctx, tx, []string{id}, holdfast.StatusConfirmed); err != nil {
				return err
			}
			return s.paymentsDueBack(ctx, tx, []string{id})
		},
	})
}

func (s *Store) Complete(ctx context.Context, id string) (holdfast.Hold, error) {
	return s.change(ctx, id, change{
		from: holdfast.StatusConfirmed, to: holdfast.StatusCompleted, event: holdfast.EventHoldCompleted, kind: kindComplete,
		effect: func(ctx context.Context, tx Querier, id string) error {
			// Pool quantity stays consumed (the ticket was used); only units
			// of reusable groups (riders) go back: locked in id order
			// first, then freed, in one round trip.
			var stmts []Stmt
			if s.d.RowLocks {
				stmts = append(stmts, Stmt{`SELECT id FROM units WHERE hold_id = $1 ORDER BY id` + s.d.ForUpdate, []any{id}})
			}
			stmts = append(stmts,
				Stmt{`UPDATE unit_claims SET active = FALSE WHERE hold_id = $1 AND active
				AND unit_id IN (SELECT u.id FROM units u JOIN groups g ON g.id = u.group_id WHERE u.hold_id = $1 AND g.reusable)`, []any{id}},
				Stmt{`UPDATE units SET ` + unitsBack + ` WHERE hold_id = $1
				AND group_id IN (SELECT id FROM groups WHERE reusable)`, []any{id}})
			_, err := ExecAll(ctx, tx, stmts)
			return err
		},
	})
}

type poolLine struct {
	pool, holder string
	quantity     int64
}

// poolLinesQuery reads the pool lines of the given holds, ordered by pool
// id, into out.
func (s *Store) poolLinesQuery(ids []string, out *[]poolLine) Query {
	return Query{`SELECT l.pool_id, ` + scopedHolder + `, l.quantity FROM hold_lines l JOIN holds h ON h.id = l.hold_id
		WHERE l.hold_id IN (` + s.d.ListSelect(1) + `) AND l.pool_id IS NOT NULL ORDER BY l.pool_id, 2`, []any{s.d.ListArg(ids)}, func(r Row) error {
		var pl poolLine
		err := r.Scan(&pl.pool, &pl.holder, &pl.quantity)
		*out = append(*out, pl)
		return err
	}}
}

// giveBack returns the capacity of holds that were in state from (held or
// confirmed) and have just left it: pool counters and per-holder totals go
// down, pools in id order and summed per pool so that a batch of holds
// takes each pool's lock once; units are freed and their claims end. It
// reads in one round trip and writes in one where the backend pipelines,
// in the global lock order: pools, holders' totals, units, keys' quotas.
func (s *Store) giveBack(ctx context.Context, tx Querier, ids []string, from holdfast.Status) error {
	var lines []poolLine
	var quota []quotaBack
	reads := []Query{s.poolLinesQuery(ids, &lines)}
	if from == holdfast.StatusHeld {
		reads = append(reads, s.quotaQuery(ids, &quota))
	}
	if err := QueryAll(ctx, tx, reads); err != nil {
		return err
	}
	col := "held"
	if from == holdfast.StatusConfirmed {
		col = "confirmed"
	}
	type key struct{ pool, holder string }
	perPool := map[string]int64{}
	perHolder := map[key]int64{}
	var pools []string
	var holders []key
	for _, pl := range lines {
		if _, ok := perPool[pl.pool]; !ok {
			pools = append(pools, pl.pool)
		}
		perPool[pl.pool] += pl.quantity
		k := key{pl.pool, pl.holder}
		if _, ok := perHolder[k]; !ok {
			holders = append(holders, k)
		}
		perHolder[k] += pl.quantity
	}
	s.soldOut.forget(pools...)
	var writes []Stmt
	for _, p := range pools { // already in id order
		writes = append(writes, Stmt{fmt.Sprintf(`UPDATE pools SET %[1]s = %[1]s - $2, version = version + 1 WHERE id = $1`, col), []any{p, perPool[p]}})
	}
	for _, k := range holders {
		writes = append(writes, Stmt{`UPDATE pool_holders SET taken = taken - $3 WHERE pool_id = $1 AND holder = $2`, []any{k.pool, k.holder, perHolder[k]}})
	}
	list := []any{s.d.ListArg(ids)}
	if s.d.RowLocks {
		// See lockUnitsInOrder.
		writes = append(writes, Stmt{`SELECT id FROM units WHERE hold_id IN (` + s.d.ListSelect(1) + `) ORDER BY id` + s.d.ForUpdate, list})
	}
	writes = append(writes, s.quotaStmts(quota)...)
	writes = append(writes,
		Stmt{`UPDATE unit_claims SET active = FALSE WHERE hold_id IN (` + s.d.ListSelect(1) + `) AND active`, list},
		Stmt{`UPDATE units SET ` + unitsBack + ` WHERE hold_id IN (` + s.d.ListSelect(1) + `)`, list})
	_, err := ExecAll(ctx, tx, writes)
	return err
}

// expire marks the given holds expired if they are still held and past
// their expiry, gives their capacity back and records the events. It locks
// the hold rows in id order, waiting for any other transaction on them
// (skipLocked: skipping them instead) and re-checking the condition after,
// so a hold is expired exactly once however many sweepers and claimers race.
func (s *Store) expire(ctx context.Context, tx Querier, ids []string, skipLocked bool) ([]string, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	lock := s.d.ForUpdate
	if skipLocked {
		lock = s.d.SkipLocked
	}
	expired, err := queryStrings(ctx, tx, `UPDATE holds SET status = 'expired', updated_at = holdfast_now_ms() WHERE id IN (
		SELECT id FROM holds WHERE id IN (`+s.d.ListSelect(1)+`) AND status = 'held' AND expires_at <= holdfast_now_ms()
		ORDER BY id`+lock+`) RETURNING id`, s.d.ListArg(ids))
	if err != nil || len(expired) == 0 {
		return nil, err
	}
	slices.Sort(expired)
	if err := s.giveBack(ctx, tx, expired, holdfast.StatusHeld); err != nil {
		return nil, err
	}
	// The holds read whole in one round trip and their events written in
	// one insert: a sweep's statements do not grow with what it expires.
	holds, now, err := s.lockHolds(ctx, tx, expired)
	if err != nil {
		return nil, err
	}
	events := eventRows()
	for _, id := range expired {
		b, err := json.Marshal(holds[id].h)
		if err != nil {
			return nil, err
		}
		events.add(string(holdfast.EventHoldExpired), now, id, string(b))
	}
	st := insertEvents(s.d, &events)
	if _, err := tx.Exec(ctx, st.SQL, st.Args...); err != nil {
		return nil, err
	}
	return expired, nil
}

// reclaim expires the expired holds that sit on any resource r asks for, in
// a transaction of its own, and reports how many it expired.
func (s *Store) reclaim(ctx context.Context, r holdfast.HoldRequest) (int, error) {
	var pools, units, groups []string
	for _, l := range r.Lines {
		switch l.Kind() {
		case holdfast.LinePool:
			pools = append(pools, l.Pool)
		case holdfast.LineUnits:
			units = append(units, l.Units...)
		case holdfast.LineAny:
			groups = append(groups, l.Group)
		}
	}
	return s.reclaimResources(ctx, pools, units, groups)
}

// reclaimBatch bounds the expired holds one reclaim frees.
const reclaimBatch = 1000

func (s *Store) reclaimResources(ctx context.Context, pools, units, groups []string) (int, error) {
	var ids []string
	add := func(sql string, list []string) error {
		if len(list) == 0 {
			return nil
		}
		found, err := queryStrings(ctx, s.db, sql, s.d.ListArg(list), reclaimBatch)
		ids = append(ids, found...)
		return err
	}
	const due = `h.status = 'held' AND h.expires_at <= holdfast_now_ms()`
	if err := add(`SELECT DISTINCT h.id FROM holds h JOIN hold_lines l ON l.hold_id = h.id
		WHERE `+due+` AND l.pool_id IN (`+s.d.ListSelect(1)+`) LIMIT $2`, pools); err != nil {
		return 0, err
	}
	if err := add(`SELECT DISTINCT h.id FROM units u JOIN holds h ON h.id = u.hold_id
		WHERE `+due+` AND u.id IN (`+s.d.ListSelect(1)+`) LIMIT $2`, units); err != nil {
		return 0, err
	}
	if err := add(`SELECT DISTINCT h.id FROM units u JOIN holds h ON h.id = u.hold_id
		WHERE `+due+` AND u.group_id IN (`+s.d.ListSelect(1)+`) LIMIT $2`, groups); err != nil {
		return 0, err
	}
	if len(ids) == 0 {
		return 0, nil
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	var n int
	err := s.db.Transact(ctx, func(tx Querier) error {
		expired, err := s.expire(ctx, tx, ids, false)
		n = len(expired)
		return err
	})
	return n, err
}

func (s *Store) ExpireDue(ctx context.Context, limit int) (int, error) {
	if limit <= 0 {
		limit = 100
	}
	var n int
	err := s.db.Transact(ctx, func(tx Querier) error {
		// SKIP LOCKED: several sweepers (one per server) share the work
		// instead of queueing; a hold a claimer is reclaiming is skipped.
		ids, err := queryStrings(ctx, tx, `SELECT id FROM holds WHERE status = 'held' AND expires_at <= holdfast_now_ms()
			ORDER BY expires_at LIMIT $1`+s.d.SkipLocked, limit)
		if err != nil {
			return err
		}
		slices.Sort(ids)
		expired, err := s.expire(ctx, tx, ids, true)
		n = len(expired)
		return err
	})
	if err != nil {
		return n, err
	}
	// What channels no longer hold goes back to the general sale: ended
	// allocations, and those whose release_at has come.
	_, err = s.settleAllocations(ctx)
	return n, err
}

// ---- reads ----

func (s *Store) GetHold(ctx context.Context, id string) (holdfast.Hold, error) {
	if holdfast.ValidateID("hold", id) != nil { // no such id was ever made
		return holdfast.Hold{}, holdfast.Errorf(holdfast.CodeNotFound, "hold %q not found", id)
	}
	return s.getHold(ctx, s.db, id)
}

func (s *Store) getHold(ctx context.Context, q Reader, id string) (holdfast.Hold, error) {
	var h holdfast.Hold
	var status string
	var created, expires, updated int64
	var expired, found bool
	// A part of a hold across shards has some of the hold's line numbers
	// (see Part): its lines are found by number, not position.
	at := map[int]int{}
	type claim struct {
		line int
		unit string
	}
	var claims []claim
	// One round trip where the backend pipelines: the hold, its lines and
	// its units.
	err := QueryAll(ctx, q, []Query{
		{`SELECT id, holder, status, created_at, expires_at, updated_at, payment_ref, owner, late, expires_at <= holdfast_now_ms()
			FROM holds WHERE id = $1`, []any{id}, func(r Row) error {
			found = true
			return r.Scan(&h.ID, &h.Holder, &status, &created, &expires, &updated, &h.PaymentRef, &h.Owner, &h.Late, &expired)
		}},
		{`SELECT line_no, kind, COALESCE(pool_id, ''), COALESCE(quantity, 0), COALESCE(group_id, ''), COALESCE(any_count, 0)
			FROM hold_lines WHERE hold_id = $1 ORDER BY line_no`, []any{id}, func(r Row) error {
			var l holdfast.Line
			var kind string
			var no int
			if err := r.Scan(&no, &kind, &l.Pool, &l.Quantity, &l.Group, &l.Any); err != nil {
				return err
			}
			at[no] = len(h.Lines)
			h.Lines = append(h.Lines, publicLine(l))
			return nil
		}},
		{`SELECT line_no, unit_id FROM unit_claims WHERE hold_id = $1 ORDER BY line_no, unit_id`, []any{id}, func(r Row) error {
			var c claim
			err := r.Scan(&c.line, &c.unit)
			claims = append(claims, c)
			return err
		}},
	})
	if err != nil {
		return h, err
	}
	if !found {
		return h, holdfast.Errorf(holdfast.CodeNotFound, "hold %q not found", id)
	}
	h.Status = holdfast.Status(status)
	if h.Status == holdfast.StatusHeld && expired {
		// Past expiry is expired, whether or not the sweeper has run.
		h.Status = holdfast.StatusExpired
	}
	h.CreatedAt, h.ExpiresAt, h.UpdatedAt = msTime(created), msTime(expires), msTime(updated)
	for _, c := range claims {
		if i, ok := at[c.line]; ok {
			h.Lines[i].Units = append(h.Lines[i].Units, c.unit)
		}
	}
	return h, nil
}

// maxHoldsListed bounds Holds; a cursor comes with the HTTP API.
const maxHoldsListed = 200

func (s *Store) Holds(ctx context.Context, holder, owner string) ([]holdfast.Hold, error) {
	if err := holdfast.ValidateHolder(holder); err != nil {
		return nil, err
	}
	ids, err := queryStrings(ctx, s.db, `SELECT id FROM holds WHERE holder = $1 AND ($3 = '' OR owner = $3)
		ORDER BY created_at DESC, id DESC LIMIT $2`, holder, maxHoldsListed, owner)
	if err != nil {
		return nil, err
	}
	holds := []holdfast.Hold{}
	for _, id := range ids {
		h, err := s.getHold(ctx, s.db, id)
		if err != nil {
			return nil, err
		}
		holds = append(holds, h)
	}
	return holds, nil
}

// lockUnitsInOrder locks the units a give-back frees in id order, the
// order every claim takes units in. An "any k" claim on its retry waits
// for locked units in id order and may keep the lock of a unit it found
// taken on the recheck; freeing units in another order could then wait on
// it both ways (a deadlock the chaos suite's rider churn hit).
func lockUnitsInOrder(ctx context.Context, tx Querier, d Dialect, where string, args ...any) error {
	if d.ForUpdate == "" {
		return nil // one writer at a time: no row locks
	}
	_, err := queryStrings(ctx, tx, `SELECT id FROM units WHERE `+where+` ORDER BY id`+d.ForUpdate, args...)
	return err
}
