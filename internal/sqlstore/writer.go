package sqlstore

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/holdfast/holdfast"
)

// holdWriter builds the multi-row statements that write new holds: the
// one writer of holds, lines, unit claims, outbox events and keys'
// answers, for a batch of many and for a claim made alone.
type holdWriter struct {
	d Dialect

	// The rows of each multi-row statement (see rowSet).
	holdRows, lineRows, claimRows, eventRows, settleRows rowSet
	// keyRows are deferred keys written once, done, with their answers.
	keyRows  rowSet
	unitRows rowSet
	// sale names the sale each unit a batch takes is claimed in ("" the
	// general one, else a channel's): the update of units takes a unit
	// only while it is in that sale.
	sale map[string]string
	// admitRows are the admissions spent, each on its hold; payRows the
	// payments bookings record, captured.
	admitRows, payRows rowSet
	// lineNos, when set, numbers the lines of the one hold written (a
	// part of a hold across shards: see Part).
	lineNos []int
}

func newHoldWriter(d Dialect) *holdWriter {
	return &holdWriter{d: d,
		holdRows:   newRows("id, holder, status, created_at, expires_at, updated_at, payment_ref, owner, quota_key, quota_units", "text", "text", "text", "bigint", "bigint", "bigint", "text", "text", "text", "bigint"),
		lineRows:   newRows("hold_id, line_no, kind, pool_id, quantity, group_id, any_count", "text", "integer", "text", "text", "bigint", "text", "bigint"),
		claimRows:  newRows("hold_id, line_no, unit_id", "text", "integer", "text"),
		eventRows:  eventRows(),
		settleRows: newRows("scope, key, token, status, body", "text", "text", "text", "integer", "bytea"),
		keyRows:    newRows("scope, key, fingerprint, token, status, body, at", "text", "text", "text", "text", "integer", "bytea", "bigint"),
		unitRows:   newRows("id, hold_id, channel", "text", "text", "text"),
		admitRows:  newRows("token, hold_id", "text", "text"),
		payRows:    payRows(),
	}
}

// eventRows are outbox events of holds: what each insertEvents writes.
func eventRows() rowSet { return newRows("type, at, hold_id, data", "text", "bigint", "text", "text") }

// insertEvents writes events rows, in order.
func insertEvents(d Dialect, rows *rowSet) Stmt {
	return rows.stmt(d, `INSERT INTO events (type, at, hold_id, data) SELECT type, at, hold_id, data FROM v`)
}

// payRows are payments captured: what captureInsert writes.
func payRows() rowSet {
	return newRows("ref, hold_id, amount, currency", "text", "text", "bigint", "text")
}

// quotaTake is what a hold counts against a key's quota (none: n 0).
type quotaTake struct {
	key string
	n   int64
}

// add writes hold h (created at now; booked when confirm; counted against
// quota q), and the answer under rec when it is not nil.
func (w *holdWriter) add(h holdfast.Hold, confirm bool, q quotaTake, rec *holdfast.Idempotency, now int64) (*holdfast.StoredResponse, error) {
	var key any
	if q.n > 0 {
		key = q.key
	}
	w.holdRows.add(h.ID, h.Holder, string(h.Status), now, h.ExpiresAt.UnixMilli(), now, h.PaymentRef, h.Owner, key, q.n)
	for i, l := range h.Lines {
		no := i
		if w.lineNos != nil {
			no = w.lineNos[i]
		}
		var kind string
		var pool, group, qty, anyN any
		switch {
		case l.Channel != "": // the row of the channel's allocation
			kind, pool, qty = "pool", allocID(l.Pool, l.Channel), l.Quantity
		case l.Pool != "":
			kind, pool, qty = "pool", l.Pool, l.Quantity
		case l.Group != "":
			kind, group, anyN = "any", l.Group, l.Any
		default:
			kind = "units"
		}
		w.lineRows.add(h.ID, no, kind, pool, qty, group, anyN)
		for _, u := range l.Units {
			w.claimRows.add(h.ID, no, u)
			w.unitRows.add(u, h.ID, w.sale[u])
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
		w.eventRows.add(string(typ), now, h.ID, string(b))
	}
	if rec == nil {
		return nil, nil
	}
	r := rec.Render(h)
	w.answer(rec, r, now)
	return &r, nil
}

// admit spends admission token on hold holdID.
func (w *holdWriter) admit(token, holdID string) {
	w.admitRows.add(token, holdID)
}

// capture records payment p, captured, for booking holdID.
func (w *holdWriter) capture(holdID string, p holdfast.Payment) {
	w.payRows.add(p.Ref, holdID, p.Amount, p.Currency)
}

// captureInsert records payments rows, captured; a ref someone else
// recorded is left alone (and the row count tells). (WHERE true: SQLite
// reads an upsert after a bare SELECT … FROM as the join's ON.)
func captureInsert(d Dialect, rows *rowSet) Stmt {
	return rows.stmt(d, `INSERT INTO payments (ref, hold_id, amount, currency, status, created_at, updated_at)
		SELECT ref, hold_id, amount, currency, 'captured', holdfast_now_ms(), holdfast_now_ms() FROM v WHERE true ON CONFLICT (ref) DO NOTHING`)
}

// answer records r under rec: a deferred key is written, done; a key
// claimed before is settled.
func (w *holdWriter) answer(rec *holdfast.Idempotency, r holdfast.StoredResponse, now int64) {
	if rec.Deferred {
		w.keyRows.add(rec.Scope, rec.Key, rec.Fingerprint, rec.Token, r.Status, r.Body, now)
	} else {
		w.settleRows.add(rec.Scope, rec.Key, rec.Token, r.Status, r.Body)
	}
}

// recordStmts are the lines, unit claims and events of the holds added:
// what every claim writes once its hold row exists and its rows are taken.
func (w *holdWriter) recordStmts() []Stmt {
	stmts := []Stmt{w.lineRows.stmt(w.d, `INSERT INTO hold_lines (hold_id, line_no, kind, pool_id, quantity, group_id, any_count)
		SELECT hold_id, line_no, kind, pool_id, quantity, group_id, any_count FROM v`)}
	if w.claimRows.len() > 0 {
		// The partial unique index on active claims refuses a second
		// active claim on a unit (guarantee 5), whatever the code above did.
		stmts = append(stmts, w.claimRows.stmt(w.d, `INSERT INTO unit_claims (hold_id, line_no, unit_id, active) SELECT hold_id, line_no, unit_id, TRUE FROM v`))
	}
	return append(stmts, insertEvents(w.d, &w.eventRows))
}

// settleStmt records every key's answer; it must change a row for each.
func (w *holdWriter) settleStmt() Stmt {
	return w.settleRows.stmt(w.d, `UPDATE idempotency_keys SET state = 'done', status = v.status, body = v.body, updated_at = holdfast_now_ms()
		FROM v WHERE idempotency_keys.scope = v.scope AND idempotency_keys.key = v.key
		AND idempotency_keys.token = v.token AND idempotency_keys.state = 'in_flight'`)
}

// batchStmts are a batch's writes, in one round: the holds, the
// conditional updates of pools, holders' totals and units (each row count
// checked), the lines, claims and events, and last the keys' answers.
// checks[k] is the row count statement k must report (-1: any); races
// are the statements whose shortfall is a key or payment ref written
// meanwhile (errKeyRace).
func (w *holdWriter) batchStmts(st *batchState) (stmts []Stmt, checks []int64, races []int) {
	holds := w.holdRows.len()
	if holds > 0 { // none when the batch only records refusals
		stmts = append(stmts, w.holdRows.stmt(w.d, `INSERT INTO holds (id, holder, status, created_at, expires_at, updated_at, payment_ref, owner, quota_key, quota_units)
			SELECT id, holder, status, created_at, expires_at, updated_at, payment_ref, owner, quota_key, quota_units FROM v`))
		checks = append(checks, int64(holds))
	}

	ids := make([]string, 0, len(st.pools))
	for id, p := range st.pools {
		if p.addHeld+p.addConfirmed > 0 {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	if len(ids) > 0 {
		rows := newRows("id, held, confirmed", "text", "bigint", "bigint")
		for _, id := range ids {
			p := st.pools[id]
			rows.add(id, p.addHeld, p.addConfirmed)
		}
		// The database checks every pool's sum against its capacity.
		stmts = append(stmts, rows.stmt(w.d, `UPDATE pools SET held = pools.held + v.held, confirmed = pools.confirmed + v.confirmed, version = pools.version + 1
			FROM v WHERE pools.id = v.id AND pools.capacity - pools.held - pools.confirmed - pools.waitlisted - pools.allocated >= v.held + v.confirmed`))
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
	slices.SortFunc(deltas, func(a, b delta) int { return cmp.Compare(a.k.pool+"\x00"+a.k.holder, b.k.pool+"\x00"+b.k.holder) })
	if len(deltas) > 0 {
		rows := newRows("pool_id, holder, taken", "text", "text", "bigint")
		for _, d := range deltas {
			rows.add(d.k.pool, d.k.holder, d.q)
		}
		stmts = append(stmts, rows.stmt(w.d, `INSERT INTO pool_holders (pool_id, holder, taken) SELECT pool_id, holder, taken FROM v WHERE true
			ON CONFLICT (pool_id, holder) DO UPDATE SET taken = pool_holders.taken + excluded.taken
			WHERE pool_holders.taken + excluded.taken <= (SELECT per_holder_limit FROM pools WHERE pools.id = excluded.pool_id)`))
		checks = append(checks, int64(len(deltas)))
	}

	if n := w.unitRows.len(); n > 0 {
		stmts = append(stmts, w.unitRows.stmt(w.d, `UPDATE units SET hold_id = v.hold_id FROM v WHERE units.id = v.id AND units.hold_id IS NULL AND units.channel = v.channel`))
		checks = append(checks, int64(n))
	}
	// The keys' quotas: one update of every key the batch counted holds
	// against, refused by the database past a key's quota (which the batch
	// decided with the units its key's waitlist entries wait for besides).
	if keys := slices.Sorted(maps.Keys(st.quotaAdded)); len(keys) > 0 {
		rows := newRows("id, n", "text", "bigint")
		for _, k := range keys {
			rows.add(k, st.quotaAdded[k])
		}
		stmts = append(stmts, rows.stmt(w.d, `UPDATE api_keys SET held_units = api_keys.held_units + v.n
			FROM v WHERE api_keys.id = v.id AND api_keys.held_units + v.n <= api_keys.max_held_units`))
		checks = append(checks, int64(len(keys)))
	}
	if n := w.admitRows.len(); n > 0 {
		// Every admission spent on its hold: locked by the batch and still
		// spendable, or the batch rolls back.
		stmts = append(stmts, w.admitRows.stmt(w.d, `UPDATE room_tickets SET hold_id = v.hold_id FROM v
			WHERE room_tickets.token = v.token AND room_tickets.status = 'admitted' AND room_tickets.hold_id IS NULL`))
		checks = append(checks, int64(n))
	}
	if n := w.payRows.len(); n > 0 {
		stmts = append(stmts, captureInsert(w.d, &w.payRows))
		checks = append(checks, int64(n))
		races = append(races, len(stmts)-1)
	}
	if holds > 0 {
		for _, st := range w.recordStmts() {
			stmts = append(stmts, st)
			checks = append(checks, -1)
		}
	}
	if n := w.keyRows.len(); n > 0 {
		stmts = append(stmts, keyInsert(w.d, &w.keyRows))
		checks = append(checks, int64(n))
		races = append(races, len(stmts)-1)
	}
	if n := w.settleRows.len(); n > 0 {
		stmts = append(stmts, w.settleStmt())
		checks = append(checks, int64(n))
	}
	return stmts, checks, races
}

// grant adds what the one decision granted req (h) to the writer: the
// hold with its lines and claims, its share of its key's quota, the
// admission it spends, the payment it captures, and the answer under its
// key (returned).
func (w *holdWriter) grant(st *batchState, req *claimReq, h holdfast.Hold, now int64) (*holdfast.StoredResponse, error) {
	var q quotaTake
	if _, counted := st.counted(req); counted {
		q = quotaTake{req.r.QuotaKey, heldUnits(req.r)}
	}
	answer, err := w.add(h, req.confirm, q, req.rec, now)
	if err != nil {
		return nil, err
	}
	if req.room != "" {
		w.admit(req.r.Admission, h.ID)
	}
	if p := req.pay; p != nil {
		w.capture(h.ID, *p)
	}
	return answer, nil
}

// writeBatch sends a claim batch's writes in one round and checks every
// row count: a key or payment ref written meanwhile is errKeyRace (the
// batch looks again), any other difference rolls the batch back.
func (s *Store) writeBatch(ctx context.Context, tx Querier, w *holdWriter, st *batchState) error {
	stmts, checks, races := w.batchStmts(st)
	s.claimStmts.Add(int64(len(stmts)))
	n, err := ExecAll(ctx, tx, stmts)
	if err != nil {
		return err
	}
	s.holdsMade(w.holdRows.len())
	for k, want := range checks {
		if want >= 0 && n[k] != want {
			if slices.Contains(races, k) {
				return errKeyRace
			}
			return fmt.Errorf("sqlstore: a batch's statement %d changed %d rows, not %d: rolled back", k, n[k], want)
		}
	}
	return nil
}
