package sqlstore

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/holdfast/holdfast"
)

// Waitlist offers through the one decision and the one writer. The heads
// of a pool's line are offered in one transaction: their entries locked
// in line order, then every row their holds touch in the global order
// (lockBatch), each decided in line order by grant — capacity, the
// holder's per-holder limit, the key's quota — and the holds written by
// the batch's writer, beside the entries' new states and their events.
// Strictly in order: the first entry that cannot have its ask yet stops
// the line (those behind it wait with it); one that can never have it —
// past the pool's capacity, its key revoked, past its holder's limit or
// its key's quota — ends (expired or cancelled, with the reason), and its
// ask goes to the next.

// offerHead is a waiting entry at the head of a pool's line, as its
// offer needs it.
type offerHead struct {
	id, holder, owner, quotaKey string
	quantity, ttl, capacity     int64
	revoked                     bool
}

// offer makes offers to the pool's waiting entries, head first, while the
// capacity allows, at most offersPerTick.
func (s *Store) offer(ctx context.Context, pool string) (int, error) {
	offered := 0
	for offered < offersPerTick {
		n, more, err := s.offerHeads(ctx, pool, offersPerTick-offered)
		offered += n
		if err != nil || !more {
			return offered, err
		}
	}
	return offered, nil
}

// offerHeads offers to up to limit heads of pool's line in one
// transaction. more: every head it read was offered or ended, so the line
// may go on.
func (s *Store) offerHeads(ctx context.Context, pool string, limit int) (offered int, more bool, err error) {
	err = s.db.Transact(ctx, func(tx Querier) error {
		offered, more = 0, false
		lock := s.d.ForUpdate
		if lock != "" {
			lock += " OF e"
		}
		// Locked before the pool's row, as a leave and the sweeper's
		// settling lock an entry before its pool.
		heads, err := collect(ctx, tx, func(r Row) (offerHead, error) {
			var h offerHead
			err := r.Scan(&h.id, &h.holder, &h.owner, &h.quotaKey, &h.quantity, &h.ttl, &h.capacity, &h.revoked)
			return h, err
		}, `SELECT e.id, e.holder, e.owner, e.quota_key, e.quantity, p.offer_ttl_ms, p.capacity,
				EXISTS (SELECT 1 FROM api_keys k WHERE e.owner LIKE 'key:%' AND k.id = substr(e.owner, 5) AND k.revoked_at IS NOT NULL)
			FROM waitlist_entries e JOIN pools p ON p.id = e.pool_id WHERE e.pool_id = $1 AND e.status = 'waiting'
			ORDER BY e.seq LIMIT $2`+lock, pool, limit)
		if err != nil || len(heads) == 0 {
			return err
		}
		type end struct {
			id     string
			to     holdfast.WaitlistStatus
			reason string
		}
		var ends []end
		var reqs []*claimReq
		var asking []offerHead
		for _, h := range heads {
			switch {
			case h.quantity > h.capacity:
				// The capacity was lowered below the ask since it joined: it
				// could never be served, and would hold the line for good.
				ends = append(ends, end{h.id, holdfast.WaitlistExpired, fmt.Sprintf("asks for %d, more than the pool's capacity of %d", h.quantity, h.capacity)})
				continue
			case h.revoked:
				// Revocation ends a key's entries; one that slipped in at
				// that moment ends here, never offered.
				ends = append(ends, end{h.id, holdfast.WaitlistCancelled, "the key was revoked"})
				continue
			}
			ttl := time.Duration(h.ttl) * time.Millisecond
			if ttl == 0 {
				ttl = holdfast.DefaultOfferTTL
			}
			reqs = append(reqs, &claimReq{ctx: ctx, ttl: ttl, r: holdfast.HoldRequest{Holder: h.holder, Owner: h.owner, QuotaKey: h.quotaKey,
				Lines: []holdfast.Line{{Pool: pool, Quantity: h.quantity}}}})
			asking = append(asking, h)
		}
		// The head of the line comes before every other ask: the pool's
		// capacity is read whole, not less what the line waits for.
		results := make([]claimResult, len(reqs))
		st, now, err := s.lockBatch(withWaitlistHead(ctx), tx, reqs, results, false)
		if err != nil {
			return err
		}
		w := newHoldWriter(s.d)
		w.sale = st.sale
		var granted []string
		var holdCases binds
		var holdWhen string
		stopped := false
		for i, req := range reqs {
			h := asking[i]
			// The entry's ask counted toward its key's quota as waiting;
			// offered, it counts as held instead.
			if k, ok := st.quotas[h.quotaKey]; ok && h.quotaKey != "" {
				k.held -= h.quantity
				st.quotas[h.quotaKey] = k
			}
			hold, fail := st.grant(req, now)
			if fail != nil && fail.code == holdfast.CodeSoldOut {
				stopped = true // not enough back yet: the head waits
				break
			}
			if fail != nil {
				// The holder cannot have it (their per-holder limit or
				// their key's quota is full since they joined): the entry
				// ends, and the capacity goes to the next.
				ends = append(ends, end{h.id, holdfast.WaitlistCancelled, fmt.Sprintf("the offer could not be made: %s", fail.code)})
				continue
			}
			var q quotaTake
			if _, counted := st.counted(req); counted {
				q = quotaTake{h.quotaKey, h.quantity}
			}
			if _, err := w.add(hold, false, q, nil, now); err != nil {
				return err
			}
			holdWhen += ` WHEN ` + holdCases.add(h.id) + ` THEN ` + holdCases.add(hold.ID)
			granted = append(granted, h.id)
		}
		if len(granted) == 0 && len(ends) == 0 {
			return nil
		}

		var stmts []Stmt
		var checks []int64
		if len(granted) > 0 {
			// While the holds are claimed the pool's row shows no ask (the
			// heads may have what those behind them reserve); the rest of
			// the ask is counted again after.
			stmts = append(stmts, Stmt{`UPDATE pools SET waitlisted = 0 WHERE id = $1`, []any{pool}})
			checks = append(checks, 1)
			n := len(holdCases.args)
			stmts = append(stmts, Stmt{`UPDATE waitlist_entries SET status = 'offered', hold_id = CASE id` + holdWhen + ` END, updated_at = ` + holdCases.add(now) +
				` WHERE id IN (` + s.d.ListSelect(n+2) + `) AND status = 'waiting'`, append(holdCases.args, s.d.ListArg(granted))})
			checks = append(checks, int64(len(granted)))
			batch, counts := w.batchStmts(st)
			stmts, checks = append(stmts, batch...), append(checks, counts...)
		}
		var ended []string
		if len(ends) > 0 {
			var p binds
			var to, why string
			for _, e := range ends {
				to += ` WHEN ` + p.add(e.id) + ` THEN ` + p.add(string(e.to))
				why += ` WHEN ` + p.add(e.id) + ` THEN ` + p.add(e.reason)
				ended = append(ended, e.id)
			}
			stmts = append(stmts, Stmt{`UPDATE waitlist_entries SET status = CASE id` + to + ` END, reason = CASE id` + why + ` END, updated_at = ` + p.add(now) +
				` WHERE id IN (` + s.d.ListSelect(len(p.args)+1) + `) AND status = 'waiting'`, append(p.args, s.d.ListArg(ended))})
			checks = append(checks, int64(len(ends)))
		}
		// Joins update the pool's row before they add their entry, so
		// every entry that counts is visible now, and no other.
		stmts = append(stmts, Stmt{`UPDATE pools SET waitlisted = (SELECT COALESCE(SUM(quantity), 0) FROM waitlist_entries
			WHERE pool_id = $1 AND status = 'waiting') WHERE id = $1`, []any{pool}})
		checks = append(checks, 1)
		n, err := ExecAll(ctx, tx, stmts)
		if err != nil {
			return err
		}
		for k, want := range checks {
			if want >= 0 && n[k] != want {
				return fmt.Errorf("sqlstore: an offer batch's statement %d changed %d rows, not %d: rolled back", k, n[k], want)
			}
		}
		// Each entry's event carries the entry as it is now.
		entries, err := collect(ctx, tx, scanEntry, `SELECT `+entryColumns+` FROM waitlist_entries e LEFT JOIN holds h ON h.id = e.hold_id
			WHERE e.id IN (`+s.d.ListSelect(1)+`) ORDER BY e.seq`, s.d.ListArg(append(slices.Clone(granted), ended...)))
		if err != nil {
			return err
		}
		var rows string
		var args []any
		for _, e := range entries {
			typ := holdfast.EventWaitlistOffered
			switch e.Status {
			case holdfast.WaitlistExpired:
				typ = holdfast.EventWaitlistExpired
			case holdfast.WaitlistCancelled:
				typ = holdfast.EventWaitlistCancelled
			}
			st, err := s.eventStmt(typ, e.HoldID, pool, e)
			if err != nil {
				return err
			}
			rows += sep(len(args)) + "(" + fmt.Sprintf("$%d, holdfast_now_ms(), NULLIF($%d, ''), NULLIF($%d, ''), $%d", len(args)+1, len(args)+2, len(args)+3, len(args)+4) + ")"
			args = append(args, st.Args...)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO events (type, at, hold_id, subject, data) VALUES `+rows, args...); err != nil {
			return err
		}
		offered, more = len(granted), !stopped && len(heads) == limit
		return nil
	})
	if err != nil {
		return 0, false, err
	}
	return offered, more, nil
}
