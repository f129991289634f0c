package sqlstore

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/holdfast/holdfast"
)

// holdWriter builds the multi-row statements that write new holds: the
// one writer of holds, lines, unit claims, outbox events and keys'
// answers, for a batch of many and for a claim made alone.
type holdWriter struct {
	d Dialect

	// The rows of each multi-row statement, built in a buffer each: a
	// string appended to was copied whole for every row, which grows with
	// the square of a batch (256 keyed holds allocated 8.9 MB, now 1.3).
	holdRows, lineRows, claimRows, eventRows, settleRows strings.Builder
	holdArgs, lineArgs, claimArgs, eventArgs, settleArgs []any
	// keyRows are deferred keys written once, done, with their answers.
	keyRows  strings.Builder
	keyArgs  []any
	newKeys  int
	unitRows strings.Builder
	unitArgs []any
	// sale names the sale each unit a batch takes is claimed in ("" the
	// general one, else a channel's): the update of units takes a unit
	// only while it is in that sale.
	sale map[string]string
	// admitRows are the admissions spent, each on its hold; payRows the
	// payments bookings record, captured.
	admitRows, payRows strings.Builder
	admitArgs, payArgs []any
	holds, units, keys int
	// lineNos, when set, numbers the lines of the one hold written (a
	// part of a hold across shards: see Part).
	lineNos []int
}

func newHoldWriter(d Dialect) *holdWriter { return &holdWriter{d: d} }

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
	w.holdRows.WriteString(sep(w.holds) + "(" + params(len(w.holdArgs)+1, 10) + ")")
	w.holdArgs = append(w.holdArgs, h.ID, h.Holder, string(h.Status), now, h.ExpiresAt.UnixMilli(), now, h.PaymentRef, h.Owner, key, q.n)
	w.holds++
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
		w.lineRows.WriteString(sep(len(w.lineArgs)) + "(" + params(len(w.lineArgs)+1, 7) + ")")
		w.lineArgs = append(w.lineArgs, h.ID, no, kind, pool, qty, group, anyN)
		for _, u := range l.Units {
			w.claimRows.WriteString(sep(len(w.claimArgs)) + "(" + params(len(w.claimArgs)+1, 3) + ", TRUE)")
			w.claimArgs = append(w.claimArgs, h.ID, no, u)
			w.unitRows.WriteString(sep(len(w.unitArgs)) + "(" + params(len(w.unitArgs)+1, 3) + ")")
			w.unitArgs = append(w.unitArgs, u, h.ID, w.sale[u])
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
		w.eventRows.WriteString(sep(len(w.eventArgs)) + "(" + params(len(w.eventArgs)+1, 4) + ")")
		w.eventArgs = append(w.eventArgs, string(typ), now, h.ID, string(b))
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
	w.admitRows.WriteString(sep(len(w.admitArgs)) + "(" + params(len(w.admitArgs)+1, 2) + ")")
	w.admitArgs = append(w.admitArgs, token, holdID)
}

// capture records payment p, captured, for booking holdID.
func (w *holdWriter) capture(holdID string, p holdfast.Payment) {
	w.payRows.WriteString(sep(len(w.payArgs)) + "(" + params(len(w.payArgs)+1, 4) + ", 'captured', holdfast_now_ms(), holdfast_now_ms())")
	w.payArgs = append(w.payArgs, p.Ref, holdID, p.Amount, p.Currency)
}

// captureInsert records payments, captured; a ref someone else recorded
// is left alone (and the row count tells).
func captureInsert(rows string) string {
	return `INSERT INTO payments (ref, hold_id, amount, currency, status, created_at, updated_at) VALUES ` + rows + ` ON CONFLICT (ref) DO NOTHING`
}

// answer records r under rec: a deferred key is written, done; a key
// claimed before is settled.
func (w *holdWriter) answer(rec *holdfast.Idempotency, r holdfast.StoredResponse, now int64) {
	if rec.Deferred {
		w.keyRows.WriteString(sep(len(w.keyArgs)) + "(" + params(len(w.keyArgs)+1, 4) +
			fmt.Sprintf(", 'done', CAST($%d AS INTEGER), CAST($%d AS %s), $%d, $%d)", len(w.keyArgs)+5, len(w.keyArgs)+6, w.d.BlobType, len(w.keyArgs)+7, len(w.keyArgs)+7))
		w.keyArgs = append(w.keyArgs, rec.Scope, rec.Key, rec.Fingerprint, rec.Token, r.Status, r.Body, now)
		w.newKeys++
	} else {
		w.settleRows.WriteString(sep(len(w.settleArgs)) + "(" + params(len(w.settleArgs)+1, 3) +
			fmt.Sprintf(", CAST($%d AS INTEGER), CAST($%d AS %s))", len(w.settleArgs)+4, len(w.settleArgs)+5, w.d.BlobType))
		w.settleArgs = append(w.settleArgs, rec.Scope, rec.Key, rec.Token, r.Status, r.Body)
		w.keys++
	}
}

// recordStmts are the lines, unit claims and events of the holds added:
// what every claim writes once its hold row exists and its rows are taken.
func (w *holdWriter) recordStmts() []Stmt {
	stmts := []Stmt{{`INSERT INTO hold_lines (hold_id, line_no, kind, pool_id, quantity, group_id, any_count) VALUES ` + w.lineRows.String(), w.lineArgs}}
	if w.claimRows.Len() > 0 {
		// The partial unique index on active claims refuses a second
		// active claim on a unit (guarantee 5), whatever the code above did.
		stmts = append(stmts, Stmt{`INSERT INTO unit_claims (hold_id, line_no, unit_id, active) VALUES ` + w.claimRows.String(), w.claimArgs})
	}
	return append(stmts, Stmt{`INSERT INTO events (type, at, hold_id, data) VALUES ` + w.eventRows.String(), w.eventArgs})
}

// settleStmt records every key's answer; it must change w.keys rows.
func (w *holdWriter) settleStmt() Stmt {
	return Stmt{`WITH v (scope, key, token, status, body) AS (VALUES ` + w.settleRows.String() + `)
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
		stmts = append(stmts, Stmt{`INSERT INTO holds (id, holder, status, created_at, expires_at, updated_at, payment_ref, owner, quota_key, quota_units) VALUES ` + w.holdRows.String(), w.holdArgs})
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
			FROM v WHERE pools.id = v.id AND pools.capacity - pools.held - pools.confirmed - pools.waitlisted - pools.allocated >= v.held + v.confirmed`, args})
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
		stmts = append(stmts, Stmt{`WITH v (id, hold_id, channel) AS (VALUES ` + w.unitRows.String() + `)
			UPDATE units SET hold_id = v.hold_id FROM v WHERE units.id = v.id AND units.hold_id IS NULL AND units.channel = v.channel`, w.unitArgs})
		checks = append(checks, int64(w.units))
	}
	// The keys' quotas: one update of every key the batch counted holds
	// against, refused by the database past a key's quota (which the batch
	// decided with the units its key's waitlist entries wait for besides).
	keys := slices.Sorted(maps.Keys(st.quotaAdded))
	rows, args = "", nil
	for _, k := range keys {
		rows += sep(len(args)) + fmt.Sprintf("($%d, CAST($%d AS BIGINT))", len(args)+1, len(args)+2)
		args = append(args, k, st.quotaAdded[k])
	}
	if len(keys) > 0 {
		stmts = append(stmts, Stmt{`WITH v (id, n) AS (VALUES ` + rows + `)
			UPDATE api_keys SET held_units = api_keys.held_units + v.n
			FROM v WHERE api_keys.id = v.id AND api_keys.held_units + v.n <= api_keys.max_held_units`, args})
		checks = append(checks, int64(len(keys)))
	}
	if n := len(w.admitArgs) / 2; n > 0 {
		// Every admission spent on its hold: locked by the batch and still
		// spendable, or the batch rolls back.
		stmts = append(stmts, Stmt{`WITH v (token, hold_id) AS (VALUES ` + w.admitRows.String() + `)
			UPDATE room_tickets SET hold_id = v.hold_id FROM v
			WHERE room_tickets.token = v.token AND room_tickets.status = 'admitted' AND room_tickets.hold_id IS NULL`, w.admitArgs})
		checks = append(checks, int64(n))
	}
	if w.payRows.Len() > 0 {
		stmts = append(stmts, Stmt{captureInsert(w.payRows.String()), w.payArgs})
		checks = append(checks, int64(len(w.payArgs)/4))
	}
	if w.holds > 0 {
		for _, st := range w.recordStmts() {
			stmts = append(stmts, st)
			checks = append(checks, -1)
		}
	}
	if w.newKeys > 0 {
		stmts = append(stmts, Stmt{keyInsert(w.keyRows.String()), w.keyArgs})
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
	stmts, checks := w.batchStmts(st)
	s.claimStmts.Add(int64(len(stmts)))
	n, err := ExecAll(ctx, tx, stmts)
	if err != nil {
		return err
	}
	for k, want := range checks {
		if want >= 0 && n[k] != want {
			if stmts[k].SQL == keyInsert(w.keyRows.String()) || stmts[k].SQL == captureInsert(w.payRows.String()) {
				return errKeyRace
			}
			return fmt.Errorf("sqlstore: a batch's statement %d changed %d rows, not %d: rolled back", k, n[k], want)
		}
	}
	return nil
}
