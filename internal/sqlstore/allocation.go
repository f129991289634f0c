package sqlstore

import (
	"context"

	"github.com/holdfast/holdfast"
)

// Allocations per sales channel. A channel's allocation of pool P is a
// pool row of its own, id "P~channel" (no pool id can hold '~'), with
// parent_id P: its capacity is the allocation, its held and confirmed the
// channel's sales. A line {pool P, channel c} is a line on that row from
// the moment a hold is asked (channelLines), so every claim path, the one
// decision, every give-back, per-holder limit, late confirm and audit
// serves a channel exactly as it serves a pool, with no rule of its own;
// reads turn the row's id back into pool and channel (publicLine).
//
// The parent keeps allocated = the sum of its allocations' capacities,
// which the general sale's every check subtracts (capacity - held -
// confirmed - waitlisted - allocated), and the database checks held +
// confirmed + allocated <= capacity. An allocation that ends (deleted, or
// its release_at passed) shrinks to what the channel still has (held +
// confirmed) and gives the rest back to the general sale; what the
// channel then releases goes back too (settleAllocations, on every sweep).

// Allocate sets a channel's allocation of a pool to req.Quantity: more
// taken from what the general sale has free, less given back to it.
func (s *Store) Allocate(ctx context.Context, req holdfast.AllocationRequest) (holdfast.Pool, error) {
	if err := req.Validate(); err != nil {
		return holdfast.Pool{}, err
	}
	for attempt := 0; ; attempt++ {
		var out holdfast.Pool
		short := int64(-1)
		err := s.db.Transact(ctx, func(tx Querier) error {
			// The parent's row first, then the allocation's: pool rows in
			// id order, as every claim locks them ("P" < "P~c").
			var free int64
			found, err := queryRow(ctx, tx, `SELECT capacity - held - confirmed - waitlisted - allocated FROM pools
				WHERE id = $1 AND parent_id IS NULL`+s.d.ForUpdate, []any{req.Pool}, &free)
			if err != nil {
				return err
			}
			if !found {
				return holdfast.Errorf(holdfast.CodeNotFound, "pool %q not found", req.Pool)
			}
			id := allocID(req.Pool, req.Channel)
			var cur, taken int64
			var live bool
			exists, err := queryRow(ctx, tx, `SELECT capacity, held + confirmed, ended_at IS NULL FROM pools WHERE id = $1`+s.d.ForUpdate, []any{id}, &cur, &taken, &live)
			if err != nil {
				return err
			}
			if req.Existing && !(exists && live) {
				return holdfast.Errorf(holdfast.CodeNotFound, "pool %q has no allocation for channel %q", req.Pool, req.Channel)
			}
			if req.Quantity < taken {
				return holdfast.Errorf(holdfast.CodeConflict, "channel %q holds and sold %d of pool %q; its allocation cannot go below that", req.Channel, taken, req.Pool)
			}
			delta := req.Quantity - cur
			if delta > free {
				short = free
				return errRollback
			}
			var releaseAt *int64
			if req.ReleaseAt != nil {
				ms := req.ReleaseAt.UnixMilli()
				releaseAt = &ms
			}
			stmts := []Stmt{{`UPDATE pools SET allocated = allocated + $2, version = version + 1 WHERE id = $1`, []any{req.Pool, delta}}}
			if exists {
				stmts = append(stmts, Stmt{`UPDATE pools SET capacity = $2, release_at = $3, ended_at = NULL, version = version + 1 WHERE id = $1`,
					[]any{id, req.Quantity, releaseAt}})
			} else {
				// The channel's row keeps the pool's rules: its per-holder
				// limit (a holder's allowance per channel) and its
				// late-confirm policy.
				stmts = append(stmts, Stmt{`INSERT INTO pools (id, name, capacity, per_holder_limit, late_confirm, late_confirm_grace, offer_ttl_ms, created_at, parent_id, channel, release_at)
					SELECT $1, name, $2, per_holder_limit, late_confirm, late_confirm_grace, offer_ttl_ms, holdfast_now_ms(), id, $3, $4 FROM pools WHERE id = $5`,
					[]any{id, req.Quantity, req.Channel, releaseAt, req.Pool}})
			}
			if _, err := ExecAll(ctx, tx, stmts); err != nil {
				return err
			}
			s.soldOut.forget(req.Pool)
			s.soldOut.forget(id)
			if out, err = s.pool(ctx, tx, req.Pool); err != nil {
				return err
			}
			if err := s.event(ctx, tx, holdfast.EventAllocationChanged, "", req.Pool, out); err != nil {
				return err
			}
			return s.record(ctx, tx, out)
		})
		if short < 0 {
			return out, err
		}
		// Expired holds may be what stands in the way: reclaim and retry.
		if attempt < 3 {
			if n, err := s.reclaimResources(ctx, []string{req.Pool}, nil, nil); err != nil {
				return holdfast.Pool{}, err
			} else if n > 0 {
				continue
			}
		}
		return holdfast.Pool{}, holdfast.Errorf(holdfast.CodeConflict,
			"pool %q has %d unsold for the general sale; allocations never exceed what is unsold", req.Pool, max(0, short))
	}
}

// EndAllocation gives what a channel has not sold back to the general sale.
func (s *Store) EndAllocation(ctx context.Context, pool, channel string) (holdfast.Pool, error) {
	if err := holdfast.ValidateID("pool", pool); err != nil {
		return holdfast.Pool{}, err
	}
	if err := holdfast.ValidateID("channel", channel); err != nil {
		return holdfast.Pool{}, err
	}
	var out holdfast.Pool
	err := s.db.Transact(ctx, func(tx Querier) error {
		ended, err := s.endAllocation(ctx, tx, allocID(pool, channel), false)
		if err != nil {
			return err
		}
		if !ended {
			return holdfast.Errorf(holdfast.CodeNotFound, "pool %q has no allocation for channel %q", pool, channel)
		}
		if out, err = s.pool(ctx, tx, pool); err != nil {
			return err
		}
		return s.record(ctx, tx, out)
	})
	return out, err
}

// endAllocation ends the live allocation id (or, with settle, gives back
// what an ended one's channel has released since) and reports whether
// there was one to end or settle. Its event is written here.
func (s *Store) endAllocation(ctx context.Context, tx Querier, id string, settle bool) (bool, error) {
	pool, _ := splitPool(id)
	if _, err := queryRow(ctx, tx, `SELECT id FROM pools WHERE id = $1`+s.d.ForUpdate, []any{pool}, new(string)); err != nil {
		return false, err
	}
	var free int64
	var live bool
	found, err := queryRow(ctx, tx, `SELECT capacity - held - confirmed, ended_at IS NULL FROM pools WHERE id = $1 AND parent_id IS NOT NULL`+s.d.ForUpdate,
		[]any{id}, &free, &live)
	if err != nil || !found || (!live && !settle) || (!live && free == 0) {
		return false, err
	}
	if _, err := ExecAll(ctx, tx, []Stmt{
		{`UPDATE pools SET capacity = held + confirmed, ended_at = COALESCE(ended_at, holdfast_now_ms()), release_at = NULL, version = version + 1 WHERE id = $1`, []any{id}},
		{`UPDATE pools SET allocated = allocated - $2, version = version + 1 WHERE id = $1`, []any{pool, free}},
	}); err != nil {
		return false, err
	}
	s.soldOut.forget(pool)
	if !live {
		return true, nil // settled: the allocation had already ended
	}
	p, err := s.pool(ctx, tx, pool)
	if err != nil {
		return false, err
	}
	_, channel := splitPool(id)
	return true, s.event(ctx, tx, holdfast.EventAllocationReleased, "", pool, struct {
		holdfast.Pool
		Channel string `json:"channel"`
	}{p, channel})
}

// settleAllocations ends the allocations whose release_at has come, and
// gives back what ended ones' channels released since: run by every
// sweep (ExpireDue). Each in a transaction of its own.
func (s *Store) settleAllocations(ctx context.Context) (int, error) {
	ids, err := queryStrings(ctx, s.db, `SELECT id FROM pools WHERE parent_id IS NOT NULL
		AND ((ended_at IS NULL AND release_at <= holdfast_now_ms()) OR (ended_at IS NOT NULL AND capacity > held + confirmed))
		ORDER BY id LIMIT 100`)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, id := range ids {
		err := s.db.Transact(ctx, func(tx Querier) error {
			// Checked again under the locks: another server may have
			// settled it, or an admin changed release_at.
			var due bool
			if _, err := queryRow(ctx, tx, `SELECT ended_at IS NOT NULL OR release_at <= holdfast_now_ms() FROM pools WHERE id = $1`, []any{id}, &due); err != nil || !due {
				return err
			}
			ended, err := s.endAllocation(ctx, tx, id, true)
			if ended {
				n++
			}
			return err
		})
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// allocations reads the allocation rows of the pools named (all pools if
// none), by parent: every row, live or ended, since the parent's held and
// confirmed count them all.
func (s *Store) allocations(ctx context.Context, q Reader, pools ...string) (map[string][]allocRow, error) {
	where, args := `p.parent_id IS NOT NULL`, []any(nil)
	if len(pools) > 0 {
		where, args = `p.parent_id IN (`+s.d.ListSelect(1)+`)`, []any{s.d.ListArg(pools)}
	}
	out := map[string][]allocRow{}
	err := QueryAll(ctx, q, []Query{{`SELECT ` + poolColumns + `, p.release_at, p.ended_at IS NOT NULL FROM pools p WHERE ` + where + ` ORDER BY p.id`, args,
		func(r Row) error {
			var a allocRow
			var releaseAt *int64
			p, err := scanPool(r, &releaseAt, &a.ended)
			if err != nil {
				return err
			}
			parent, channel := splitPool(p.ID)
			a.Allocation = holdfast.Allocation{Channel: channel, Quantity: p.Capacity, Held: p.Held, Confirmed: p.Confirmed,
				Available: max(0, p.Capacity-p.Held-p.Confirmed)}
			if releaseAt != nil {
				t := msTime(*releaseAt)
				a.ReleaseAt = &t
			}
			out[parent] = append(out[parent], a)
			return nil
		}}})
	return out, err
}

type allocRow struct {
	holdfast.Allocation
	ended bool
}

// withAllocations adds a pool's allocations to what it shows: the
// channels' sales to its held and confirmed, each live allocation to
// its list.
func withAllocations(p *holdfast.Pool, rows []allocRow) {
	p.Allocations = []holdfast.Allocation{}
	for _, a := range rows {
		p.Held += a.Held
		p.Confirmed += a.Confirmed
		if !a.ended {
			p.Allocations = append(p.Allocations, a.Allocation)
		}
	}
}
