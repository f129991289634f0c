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
		owner, from, err := s.lockOwned(ctx, tx, id, "is transferred")
		if err != nil {
			return err
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

// Exchange swaps units within a held or confirmed hold, all pairs or
// none: each new unit is taken and its old one given back in one step, on
// the old one's line. A new unit that is not free is 409 unavailable on
// that line, and the hold stays exactly as it was. A unit held by a hold
// that has expired but not been swept is free: it is reclaimed, as a
// claim would, and the exchange tried again.
func (s *Store) Exchange(ctx context.Context, id string, swaps map[string]string) (holdfast.Hold, error) {
	// A part of a hold across shards may have none of the pairs (the
	// router gives each part its own): it still takes part, changing
	// nothing of its own.
	if len(swaps) > 0 || partOf(ctx) == nil {
		if err := holdfast.ValidateSwaps(swaps); err != nil {
			return holdfast.Hold{}, err
		}
	}
	olds := make([]string, 0, len(swaps))
	for o := range swaps {
		olds = append(olds, o)
	}
	slices.Sort(olds)
	if holdfast.ValidateID("hold", id) != nil {
		return holdfast.Hold{}, holdfast.Errorf(holdfast.CodeNotFound, "hold %q not found", id)
	}
	for attempt := 0; ; attempt++ {
		h, lapsed, err := s.exchangeOnce(ctx, id, olds, swaps)
		if len(lapsed) > 0 && attempt == 0 {
			if n, rerr := s.reclaimResources(ctx, nil, lapsed, nil); rerr != nil {
				return h, rerr
			} else if n > 0 {
				continue
			}
		}
		return h, err
	}
}

func (s *Store) exchangeOnce(ctx context.Context, id string, olds []string, swaps map[string]string) (holdfast.Hold, []string, error) {
	var h holdfast.Hold
	var lapsed []string
	err := s.db.Transact(ctx, func(tx Querier) error {
		lapsed = nil
		_, _, err := s.lockOwned(ctx, tx, id, "exchanges units")
		if err != nil {
			return err
		}
		if len(olds) == 0 {
			if _, err := tx.Exec(ctx, `UPDATE holds SET updated_at = holdfast_now_ms() WHERE id = $1`, id); err != nil {
				return err
			}
			h, err = s.getHold(ctx, tx, id)
			return err
		}
		// Every unit involved, locked in id order (the claims' order).
		all := slices.Clone(olds)
		for _, o := range olds {
			all = append(all, swaps[o])
		}
		slices.Sort(all)
		list := s.d.ListArg(all)
		if err := lockUnitsInOrder(ctx, tx, s.d, `id IN (`+s.d.ListSelect(1)+`)`, list); err != nil {
			return err
		}
		type unit struct {
			group, hold, sale string
			lapsed            bool
		}
		units := map[string]unit{}
		rows, err := tx.Query(ctx, `SELECT u.id, u.group_id, COALESCE(u.hold_id, ''), COALESCE(h.status = 'held' AND h.expires_at <= holdfast_now_ms(), FALSE), u.channel
			FROM units u LEFT JOIN holds h ON h.id = u.hold_id WHERE u.id IN (`+s.d.ListSelect(1)+`)`, list)
		if err != nil {
			return err
		}
		for rows.Next() {
			var uid string
			var u unit
			if err := rows.Scan(&uid, &u.group, &u.hold, &u.lapsed, &u.sale); err != nil {
				rows.Close()
				return err
			}
			units[uid] = u
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		lines := map[string]int{}
		claims, err := collect(ctx, tx, func(r Row) (struct {
			unit string
			line int
		}, error) {
			var c struct {
				unit string
				line int
			}
			return c, r.Scan(&c.unit, &c.line)
		}, `SELECT unit_id, line_no FROM unit_claims WHERE hold_id = $1 AND active`, id)
		if err != nil {
			return err
		}
		for _, c := range claims {
			lines[c.unit] = c.line
		}
		for _, o := range olds {
			nu := swaps[o]
			line, mine := lines[o]
			if !mine {
				return holdfast.Errorf(holdfast.CodeInvalid, "unit %q is not in hold %q", o, id)
			}
			u, ok := units[nu]
			switch {
			case !ok:
				return holdfast.LineErrorf(holdfast.CodeNotFound, line, "unit %q not found", nu)
			case u.group != units[o].group:
				return holdfast.LineErrorf(holdfast.CodeInvalid, line, "unit %q is in group %q, %q in group %q: a unit is exchanged for one of its group", nu, u.group, o, units[o].group)
			case u.hold == id:
				return holdfast.LineErrorf(holdfast.CodeInvalid, line, "unit %q is already in hold %q", nu, id)
			case u.sale != units[o].sale:
				// A seat is swapped within its sale: a channel's for a
				// channel's, the general sale's for the general sale's.
				return holdfast.LineErrorf(holdfast.CodeUnavailable, line, "unit %q is taken", nu)
			case u.hold != "" && u.lapsed:
				lapsed = append(lapsed, nu)
			case u.hold != "":
				return holdfast.LineErrorf(holdfast.CodeUnavailable, line, "unit %q is not available", nu)
			}
		}
		if len(lapsed) > 0 {
			return holdfast.Errorf(holdfast.CodeUnavailable, "units %v are held by holds that have expired: reclaiming them", lapsed)
		}
		news := make([]string, 0, len(olds))
		var stmts []Stmt
		for _, o := range olds {
			news = append(news, swaps[o])
			stmts = append(stmts, Stmt{`INSERT INTO unit_claims (hold_id, line_no, unit_id, active) VALUES ($1, $2, $3, TRUE)`, []any{id, lines[o], swaps[o]}})
		}
		stmts = append([]Stmt{
			{`DELETE FROM unit_claims WHERE hold_id = $1 AND unit_id IN (` + s.d.ListSelect(2) + `)`, []any{id, s.d.ListArg(olds)}},
			{`UPDATE units SET ` + unitsBack + ` WHERE hold_id = $1 AND id IN (` + s.d.ListSelect(2) + `)`, []any{id, s.d.ListArg(olds)}},
		}, stmts...)
		stmts = append(stmts,
			Stmt{`UPDATE units SET hold_id = $1 WHERE id IN (` + s.d.ListSelect(2) + `)`, []any{id, s.d.ListArg(news)}},
			Stmt{`UPDATE holds SET updated_at = holdfast_now_ms() WHERE id = $1`, []any{id}})
		if _, err := ExecAll(ctx, tx, stmts); err != nil {
			if s.d.Classify(err) == KindUnique {
				return holdfast.Errorf(holdfast.CodeUnavailable, "a unit of the exchange was taken meanwhile")
			}
			return err
		}
		if h, err = s.getHold(ctx, tx, id); err != nil {
			return err
		}
		if err := s.event(ctx, tx, holdfast.EventHoldExchanged, id, "", struct {
			holdfast.Hold
			Exchanged map[string]string `json:"exchanged"`
		}{h, swaps}); err != nil {
			return err
		}
		return s.record(ctx, tx, h)
	})
	return h, lapsed, err
}

// lockOwned locks a hold that is someone's — held (and not past its
// expiry) or confirmed — for a transfer or an exchange, and returns its
// owner and holder; what says what the refused change does.
func (s *Store) lockOwned(ctx context.Context, tx Querier, id, what string) (owner, holder string, err error) {
	var status string
	var expired bool
	found, err := queryRow(ctx, tx, `SELECT status, owner, holder, status = 'held' AND expires_at <= holdfast_now_ms() FROM holds WHERE id = $1`+s.d.ForUpdate,
		[]any{id}, &status, &owner, &holder, &expired)
	if err != nil {
		return "", "", err
	}
	switch st := holdfast.Status(status); {
	case !found:
		return "", "", holdfast.Errorf(holdfast.CodeNotFound, "hold %q not found", id)
	case expired || st == holdfast.StatusExpired:
		return "", "", holdfast.Errorf(holdfast.CodeHoldExpired, "hold %q expired", id)
	case st != holdfast.StatusHeld && st != holdfast.StatusConfirmed:
		return "", "", holdfast.Errorf(holdfast.CodeInvalidState, "hold %q is %s: only a held or confirmed hold %s", id, st, what)
	}
	return owner, holder, nil
}
