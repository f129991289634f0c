package sqlstore

import (
	"context"
	"fmt"

	"github.com/holdfast/holdfast"
)

// activeClaim is the SQL saying whether a unit claim should be active, from
// its hold's state alone: held or confirmed, or completed on a unit that is
// not reusable (a used seat stays taken).
const activeClaim = `(h.status IN ('held', 'confirmed') OR (h.status = 'completed' AND NOT g.reusable))`

// Audit recounts every pool and unit from the claim rows (hold lines and
// unit claims, judged by their hold's state) and compares the recount with
// the counters the engine keeps. It reads only; run it any time.
func (s *Store) Audit(ctx context.Context) (holdfast.AuditReport, error) {
	r := holdfast.AuditReport{Differences: []string{}, At: s.clock.Now().UTC()}
	diff := func(format string, args ...any) { r.Differences = append(r.Differences, fmt.Sprintf(format, args...)) }

	// A channel's allocation is a pool row of its own (allocation.go),
	// recounted as any pool; a pool's own claims and what it set aside for
	// channels together never pass its capacity, and what it set aside is
	// exactly its allocations' capacities.
	rows, err := s.db.Query(ctx, `SELECT p.id, p.parent_id IS NULL, p.capacity, p.held, p.confirmed, p.per_holder_limit, p.allocated,
		COALESCE(SUM(CASE WHEN h.status = 'held' THEN l.quantity END), 0),
		COALESCE(SUM(CASE WHEN h.status IN ('confirmed', 'completed') THEN l.quantity END), 0),
		COALESCE((SELECT SUM(c.capacity) FROM pools c WHERE c.parent_id = p.id), 0)
		FROM pools p LEFT JOIN hold_lines l ON l.pool_id = p.id LEFT JOIN holds h ON h.id = l.hold_id
		GROUP BY p.id, p.parent_id, p.capacity, p.held, p.confirmed, p.per_holder_limit, p.allocated ORDER BY p.id`)
	if err != nil {
		return r, err
	}
	for rows.Next() {
		var id string
		var pool bool // not a channel's allocation
		var capacity, held, confirmed, limit, allocated, rHeld, rConfirmed, rAllocated int64
		if err := rows.Scan(&id, &pool, &capacity, &held, &confirmed, &limit, &allocated, &rHeld, &rConfirmed, &rAllocated); err != nil {
			rows.Close()
			return r, err
		}
		if allocated != rAllocated {
			diff("pool %s: allocated counter %d, its allocations' capacities %d", id, allocated, rAllocated)
		}
		capacity -= allocated
		if pool {
			r.Pools++
		}
		if held != rHeld {
			diff("pool %s: held counter %d, recount %d", id, held, rHeld)
		}
		if confirmed != rConfirmed {
			diff("pool %s: confirmed counter %d, recount %d", id, confirmed, rConfirmed)
		}
		if over := rHeld + rConfirmed - capacity; over > 0 {
			r.Oversold += over
			diff("pool %s: oversold by %d (capacity %d, claims %d)", id, over, capacity, rHeld+rConfirmed)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return r, err
	}

	// Each key's held units against its quota: the counter and the
	// recount from its held holds.
	rows, err = s.db.Query(ctx, `SELECT k.id, k.held_units, COALESCE(SUM(h.quota_units), 0)
		FROM api_keys k LEFT JOIN holds h ON h.quota_key = k.id AND h.status = 'held'
		GROUP BY k.id, k.held_units HAVING k.held_units != COALESCE(SUM(h.quota_units), 0) ORDER BY k.id`)
	if err != nil {
		return r, err
	}
	for rows.Next() {
		var id string
		var held, recount int64
		if err := rows.Scan(&id, &held, &recount); err != nil {
			rows.Close()
			return r, err
		}
		diff("key %s: held_units counter %d, recount %d", id, held, recount)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return r, err
	}

	// Per-holder totals and limits.
	// The recount is grouped once and joined both ways: a NOT EXISTS per
	// holder's total made SQLite scan every line of the pool per holder
	// (the audit after a 5,000-holder sale took 37 s; now well under one).
	rows, err = s.db.Query(ctx, `WITH t AS (
			SELECT l.pool_id, `+scopedHolder+` AS holder, SUM(l.quantity) AS n FROM hold_lines l JOIN holds h ON h.id = l.hold_id
			WHERE l.pool_id IS NOT NULL AND h.status IN ('held', 'confirmed', 'completed') GROUP BY l.pool_id, 2)
		SELECT t.pool_id, t.holder, COALESCE(ph.taken, 0), t.n, p.per_holder_limit FROM t JOIN pools p ON p.id = t.pool_id
		LEFT JOIN pool_holders ph ON ph.pool_id = t.pool_id AND ph.holder = t.holder
		WHERE p.per_holder_limit > 0 AND (COALESCE(ph.taken, 0) <> t.n OR t.n > p.per_holder_limit)
		UNION ALL
		SELECT ph.pool_id, ph.holder, ph.taken, 0, 0 FROM pool_holders ph
		LEFT JOIN t ON t.pool_id = ph.pool_id AND t.holder = ph.holder
		WHERE ph.taken <> 0 AND t.pool_id IS NULL`)
	if err != nil {
		return r, err
	}
	for rows.Next() {
		var pool, holder string
		var taken, n, limit int64
		if err := rows.Scan(&pool, &holder, &taken, &n, &limit); err != nil {
			rows.Close()
			return r, err
		}
		if taken != n {
			diff("pool %s holder %q: total %d, recount %d", pool, holder, taken, n)
		}
		if limit > 0 && n > limit {
			diff("pool %s holder %q: holds %d, over the limit of %d", pool, holder, n, limit)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return r, err
	}

	if err := s.db.QueryRow(ctx, `SELECT COUNT(*) FROM units`).Scan(&r.Units); err != nil {
		return r, err
	}
	// Double-booking, recounted from the hold states rather than from the
	// active flag the unique index watches.
	rows, err = s.db.Query(ctx, `SELECT c.unit_id, COUNT(*) FROM unit_claims c
		JOIN holds h ON h.id = c.hold_id JOIN units u ON u.id = c.unit_id JOIN groups g ON g.id = u.group_id
		WHERE `+activeClaim+` GROUP BY c.unit_id HAVING COUNT(*) > 1 ORDER BY c.unit_id`)
	if err != nil {
		return r, err
	}
	for rows.Next() {
		var unit string
		var n int64
		if err := rows.Scan(&unit, &n); err != nil {
			rows.Close()
			return r, err
		}
		r.DoubleBooked++
		diff("unit %s: %d active claims", unit, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return r, err
	}
	// A claim's active flag must follow its hold's state.
	rows, err = s.db.Query(ctx, `SELECT c.unit_id, c.hold_id, h.status FROM unit_claims c
		JOIN holds h ON h.id = c.hold_id JOIN units u ON u.id = c.unit_id JOIN groups g ON g.id = u.group_id
		WHERE c.active <> `+activeClaim+` ORDER BY c.unit_id`)
	if err != nil {
		return r, err
	}
	for rows.Next() {
		var unit, hold, status string
		if err := rows.Scan(&unit, &hold, &status); err != nil {
			rows.Close()
			return r, err
		}
		diff("unit %s: claim by hold %s (%s) has the wrong active flag", unit, hold, status)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return r, err
	}
	// The unit's holder must be its active claim's hold.
	rows, err = s.db.Query(ctx, `SELECT u.id, COALESCE(u.hold_id, ''), COALESCE(c.hold_id, '') FROM units u
		LEFT JOIN unit_claims c ON c.unit_id = u.id AND c.active
		WHERE COALESCE(u.hold_id, '') <> COALESCE(c.hold_id, '') ORDER BY u.id`)
	if err != nil {
		return r, err
	}
	defer rows.Close()
	for rows.Next() {
		var unit, holder, claim string
		if err := rows.Scan(&unit, &holder, &claim); err != nil {
			return r, err
		}
		diff("unit %s: taken by %q, active claim by %q", unit, holder, claim)
	}
	if err := rows.Err(); err != nil {
		return r, err
	}
	return r, s.auditPayments(ctx, &r, diff)
}

// auditPayments checks that every payment ended as a ticket or a refund:
// a captured payment's hold is confirmed (or completed); the rest are due
// back or refunded. Those due back for more than a day are listed.
func (s *Store) auditPayments(ctx context.Context, r *holdfast.AuditReport, diff func(string, ...any)) error {
	r.RefundsDueOld = []string{}
	var n int64
	if _, err := queryRow(ctx, s.db, `SELECT COUNT(*) FROM payments`, nil, &n); err != nil {
		return err
	}
	r.Payments = int(n)
	return QueryAll(ctx, s.db, []Query{
		{`SELECT p.ref, p.hold_id, COALESCE(h.status, 'missing') FROM payments p LEFT JOIN holds h ON h.id = p.hold_id
			WHERE p.status = 'captured' AND COALESCE(h.status, '') NOT IN ('confirmed', 'completed') ORDER BY p.ref`, nil, func(row Row) error {
			var ref, hold, status string
			err := row.Scan(&ref, &hold, &status)
			diff("payment %s: captured, but its hold %s is %s: neither a ticket nor a refund", ref, hold, status)
			return err
		}},
		{`SELECT ref FROM payments WHERE status = 'refund_due' AND created_at < holdfast_now_ms() - 86400000
			ORDER BY created_at LIMIT 100`, nil, func(row Row) error {
			var ref string
			err := row.Scan(&ref)
			r.RefundsDueOld = append(r.RefundsDueOld, ref)
			return err
		}},
	})
}
