package sqlstore

import (
	"context"

	"github.com/holdfast/holdfast"
)

// The admitter: at the rate and within MaxInside (and, under admit
// "stock", never beyond what the guarded inventory has free), the next
// places of every open room are admitted; a sold-out room tells everyone
// waiting at once and may hand them to the waitlist.

// AdmitRooms admits the next places of every open room, as the rate and
// MaxInside allow, and closes what is done.
func (s *Store) AdmitRooms(ctx context.Context) (int, error) {
	ids, err := queryStrings(ctx, s.db, `SELECT id FROM rooms WHERE opens_at <= holdfast_now_ms() AND NOT sold_out ORDER BY id`)
	if err != nil {
		return 0, err
	}
	admitted := 0
	for _, id := range ids {
		err := s.db.Transact(ctx, func(tx Querier) error {
			var rate, credit float64
			var ttl, maxInside, creditedAt, opens, now, perAdmission int64
			var admit string
			// NO KEY UPDATE: joins insert tickets referencing the room's row
			// (a KEY SHARE lock for the foreign key), and must not wait
			// for the admitter — nor it for them (it would deadlock with a
			// join holding the numbering row).
			lock := ""
			if s.d.RowLocks {
				lock = s.d.ForNoKeyUpdate + " SKIP LOCKED"
			}
			found, err := queryRow(ctx, tx, `SELECT admit_per_second, credit, credited_at, opens_at, admit_ttl_ms, max_inside, holdfast_now_ms(), admit, max_units_per_admission
				FROM rooms WHERE id = $1 AND NOT sold_out`+lock, []any{id}, &rate, &credit, &creditedAt, &opens, &ttl, &maxInside, &now, &admit, &perAdmission)
			if err != nil || !found {
				return err // another server is admitting
			}
			var ranked bool
			if _, err := queryRow(ctx, tx, `SELECT ranked FROM room_places WHERE room_id = $1`, []any{id}, &ranked); err != nil {
				return err
			}
			if !ranked {
				// Numbered once, with the numbering row locked: a join
				// after opening waits for it.
				if _, err := queryRow(ctx, tx, `SELECT ranked FROM room_places WHERE room_id = $1`+s.d.ForUpdate, []any{id}, &ranked); err != nil {
					return err
				}
				if !ranked {
					if err := rankRoom(ctx, tx, id); err != nil {
						return err
					}
				}
			}
			// Done: admissions that expired unused, or whose hold ended.
			if _, err := tx.Exec(ctx, `UPDATE room_tickets SET status = 'done' WHERE room_id = $1 AND status = 'admitted' AND (
				(hold_id IS NULL AND expires_at <= $2)
				OR hold_id IN (SELECT id FROM holds WHERE status <> 'held' OR expires_at <= $2))`, id, now); err != nil {
				return err
			}
			free, unused, soldOut, err := s.roomInventory(ctx, tx, id)
			if err != nil {
				return err
			}
			if soldOut {
				// Everyone still waiting is told at once, and may move to
				// a guarded pool's waitlist keeping their order: the
				// numbers after every entry so far are theirs, one per
				// rank, and later joins come after them (handoff).
				base, err := s.reserveHandoff(ctx, tx, id)
				if err != nil {
					return err
				}
				_, err = ExecAll(ctx, tx, []Stmt{
					{`UPDATE rooms SET sold_out = TRUE, handoff_base = $2 WHERE id = $1`, []any{id, base}},
					{`UPDATE room_tickets SET status = 'sold_out' WHERE room_id = $1 AND status = 'waiting'`, []any{id}},
				})
				return err
			}
			burst := max(1, rate)
			credit = min(burst, credit+rate*float64(now-max(creditedAt, opens))/1000)
			var inside int64
			if _, err := queryRow(ctx, tx, `SELECT COUNT(*) FROM room_tickets WHERE room_id = $1 AND status = 'admitted'`, []any{id}, &inside); err != nil {
				return err
			}
			n := min(int64(credit), maxInside-inside)
			if free <= 0 {
				n = 0 // everything is held: admit no one until some comes back
			}
			if holdfast.AdmitMode(admit) == holdfast.AdmitStock && perAdmission > 0 {
				// The admissions out and unused, each good for
				// perAdmission units, stay within what is free: what an
				// admission already bought is held, out of free. Counted
				// under the room's row lock, which every admitter takes, from
				// one snapshot (roomInventory).
				n = min(n, free/perAdmission-unused)
			}
			if n > 0 {
				type place struct {
					ticket string
					rank   int64
				}
				next, err := collect(ctx, tx, func(r Row) (place, error) {
					var p place
					return p, r.Scan(&p.ticket, &p.rank)
				}, `SELECT ticket, rank FROM room_tickets WHERE room_id = $1 AND status = 'waiting' ORDER BY place LIMIT $2`, id, n)
				if err != nil {
					return err
				}
				var stmts []Stmt
				for _, t := range next {
					stmts = append(stmts, Stmt{`UPDATE room_tickets SET status = 'admitted', token = $2, admitted_at = $3, expires_at = $4 WHERE ticket = $1 AND status = 'waiting'`,
						[]any{t.ticket, holdfast.NewID("adm_", s.clock.Now()), now, now + ttl}})
				}
				if len(next) > 0 {
					// In place order: the last admitted is the furthest.
					stmts = append(stmts, Stmt{`UPDATE rooms SET admitted_through = $2 WHERE id = $1`, []any{id, next[len(next)-1].rank}})
				}
				if _, err := ExecAll(ctx, tx, stmts); err != nil {
					return err
				}
				credit -= float64(len(next))
				admitted += len(next)
			}
			_, err = tx.Exec(ctx, `UPDATE rooms SET credit = $2, credited_at = $3 WHERE id = $1`, id, credit, now)
			return err
		})
		if err != nil {
			return admitted, err
		}
	}
	return admitted, nil
}

// reserveHandoff reserves, at a room's sell-out, the waitlist numbers of
// its guarded pools that its places may move to: base + rank, after every
// entry so far. The pools' rows are locked first (a join locks them first
// too), so no join takes a number in between; later joins are numbered
// past the reserve (waitlist_floor).
func (s *Store) reserveHandoff(ctx context.Context, tx Querier, room string) (int64, error) {
	pools, err := queryStrings(ctx, tx, `SELECT resource FROM room_resources WHERE room_id = $1 AND kind = 'pool' ORDER BY resource`, room)
	if err != nil {
		return 0, err
	}
	var base, top int64
	for _, p := range pools {
		var floor, last int64
		if _, err := queryRow(ctx, tx, `UPDATE pools SET waitlist_floor = waitlist_floor WHERE id = $1 RETURNING waitlist_floor`, []any{p}, &floor); err != nil {
			return 0, err
		}
		if _, err := queryRow(ctx, tx, `SELECT COALESCE(MAX(seq), 0) FROM waitlist_entries WHERE pool_id = $1`, []any{p}, &last); err != nil {
			return 0, err
		}
		base = max(base, floor, last)
	}
	if _, err := queryRow(ctx, tx, `SELECT COALESCE(MAX(rank), 0) FROM room_tickets WHERE room_id = $1`, []any{room}, &top); err != nil {
		return 0, err
	}
	for _, p := range pools {
		if _, err := tx.Exec(ctx, `UPDATE pools SET waitlist_floor = $2 WHERE id = $1`, p, base+top); err != nil {
			return 0, err
		}
	}
	return base, nil
}

// roomInventory reports whether a room's pools and groups have anything
// to hold now, and whether they are sold out: everything confirmed.
//
// And the admissions out and unused, in the same statement: one snapshot
// (PostgreSQL's read committed takes one per statement). Counted apart, a
// hold spending an admission between the two reads showed its admission
// gone but not yet the units it took, and a stock room let one buyer too
// many in (raceAdmitStock saw it).
func (s *Store) roomInventory(ctx context.Context, tx Querier, room string) (free, unused int64, soldOut bool, err error) {
	var unconfirmed int64
	_, err = queryRow(ctx, tx, `SELECT
		COALESCE((SELECT SUM(p.capacity - p.held - p.confirmed - p.waitlisted - p.allocated) FROM pools p JOIN room_resources r ON r.kind = 'pool' AND r.resource = p.id WHERE r.room_id = $1), 0)
		+ (SELECT COUNT(*) FROM units u JOIN room_resources r ON r.kind = 'group' AND r.resource = u.group_id
			LEFT JOIN holds h ON h.id = u.hold_id WHERE r.room_id = $1 AND u.channel = '' AND `+unitFree+`),
		COALESCE((SELECT SUM(p.capacity - p.confirmed - p.allocated) FROM pools p JOIN room_resources r ON r.kind = 'pool' AND r.resource = p.id WHERE r.room_id = $1), 0)
		+ (SELECT COUNT(*) FROM units u JOIN room_resources r ON r.kind = 'group' AND r.resource = u.group_id
			LEFT JOIN holds h ON h.id = u.hold_id WHERE r.room_id = $1 AND ((u.hold_id IS NULL AND u.channel = '') OR h.status = 'held')),
		(SELECT COUNT(*) FROM room_tickets WHERE room_id = $1 AND status = 'admitted' AND hold_id IS NULL)`,
		[]any{room}, &free, &unconfirmed, &unused)
	// Held capacity past its expiry still counts in a pool's held until
	// swept: it shows as available within a sweep.
	return free, unused, unconfirmed == 0, err
}

// protected returns what rooms protect, read again when a second old.
