package sqlstore

import (
	"context"
	"slices"

	"github.com/holdfast/holdfast"
)

// Transfer gives a held or confirmed hold to another holder of the same
// key: the same lines and units, and the pools' counts do not move, not
// for an instant — only whose the hold is. The receiver's per-holder
// limit is a hold's rule, asked at the line that would pass it; what the
// giver had counted under it goes with the hold.
func (s *Store) Transfer(ctx context.Context, id, holder string) (holdfast.Hold, error) {
	if err := holdfast.ValidateHolder(holder); err != nil {
		return holdfast.Hold{}, err
	}
	if holdfast.ValidateID("hold", id) != nil {
		return holdfast.Hold{}, holdfast.Errorf(holdfast.CodeNotFound, "hold %q not found", id)
	}
	var h holdfast.Hold
	err := s.db.Transact(ctx, func(tx Querier) error {
		var status, owner, from string
		var expired bool
		found, err := queryRow(ctx, tx, `SELECT status, owner, holder, status = 'held' AND expires_at <= holdfast_now_ms() FROM holds WHERE id = $1`+s.d.ForUpdate,
			[]any{id}, &status, &owner, &from, &expired)
		if err != nil {
			return err
		}
		switch st := holdfast.Status(status); {
		case !found:
			return holdfast.Errorf(holdfast.CodeNotFound, "hold %q not found", id)
		case expired || st == holdfast.StatusExpired:
			return holdfast.Errorf(holdfast.CodeHoldExpired, "hold %q expired", id)
		case st != holdfast.StatusHeld && st != holdfast.StatusConfirmed:
			return holdfast.Errorf(holdfast.CodeInvalidState, "hold %q is %s: only a held or confirmed hold is transferred", id, st)
		}
		if from == holder { // already theirs: nothing moves, nothing to tell
			if h, err = s.getHold(ctx, tx, id); err != nil {
				return err
			}
			return s.record(ctx, tx, h)
		}
		// The limited pools' lines, in line order, for the refusal's line.
		type line struct {
			no       int
			pool     string
			quantity int64
			limit    int64
		}
		lines, err := collect(ctx, tx, func(r Row) (line, error) {
			var l line
			return l, r.Scan(&l.no, &l.pool, &l.quantity, &l.limit)
		}, `SELECT l.line_no, l.pool_id, l.quantity, p.per_holder_limit FROM hold_lines l JOIN pools p ON p.id = l.pool_id
			WHERE l.hold_id = $1 AND l.kind = 'pool' AND p.per_holder_limit > 0 ORDER BY l.line_no`, id)
		if err != nil {
			return err
		}
		give, take := holderScope(owner, from), holderScope(owner, holder)
		per := map[string]int64{}
		for _, l := range lines {
			per[l.pool] += l.quantity
		}
		pools := make([]string, 0, len(per))
		for p := range per {
			pools = append(pools, p)
		}
		slices.Sort(pools) // the claims' lock order
		for _, p := range pools {
			limit := int64(0)
			first := -1
			for _, l := range lines {
				if l.pool == p {
					limit = l.limit
					if first < 0 {
						first = l.no
					}
				}
			}
			if ok, err := s.takeHolderLimit(ctx, tx, p, take, per[p], limit); err != nil {
				return err
			} else if !ok {
				return holdfast.LineErrorf(holdfast.CodeLimitExceeded, first, "%s would pass pool %q's per-holder limit of %d", holder, p, limit)
			}
			if _, err := tx.Exec(ctx, `UPDATE pool_holders SET taken = taken - $3 WHERE pool_id = $1 AND holder = $2`, p, give, per[p]); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `UPDATE holds SET holder = $2, updated_at = holdfast_now_ms() WHERE id = $1`, id, holder); err != nil {
			return err
		}
		if h, err = s.getHold(ctx, tx, id); err != nil {
			return err
		}
		// The event says who had it: the hold, with transferred_from.
		if err := s.event(ctx, tx, holdfast.EventHoldTransferred, id, "", struct {
			holdfast.Hold
			TransferredFrom string `json:"transferred_from"`
		}{h, from}); err != nil {
			return err
		}
		return s.record(ctx, tx, h)
	})
	return h, err
}
