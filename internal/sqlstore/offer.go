package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/holdfast/holdfast"
)

// Waitlist offers through the one decision and the one writer. A round of
// offers — the heads of a pool's line, or a group's entries its seats can
// serve — is one transaction: the entries locked in line order, then
// every row their holds touch in the global order (lockBatch), each ask
// decided in line order by grant — capacity, units free, the holder's
// per-holder limit, the key's quota — and the holds written by the
// batch's writer, beside the entries' new states and their events, in
// statements that do not grow with the round. The first ask that cannot
// be had yet stops the line (those behind it wait with it); one a rule
// refuses ends (cancelled, with the rule), and what it asked goes to the
// next.

// offerAsk is one waiting entry's ask.
type offerAsk struct {
	entry string
	req   *claimReq
	// waiting is what the ask counts toward its key's quota while it
	// waits (quotaColumns): offered, it counts as held instead.
	waiting int64
}

// offerEnd is an entry a round ends without an offer.
type offerEnd struct {
	entry  string
	to     holdfast.WaitlistStatus
	reason string
}

// offerRound is a round of offers decided.
type offerRound struct {
	granted, holds []string // the entries offered, in line order, and their holds
	ends           []offerEnd
	stopped        bool // an ask could not be had yet: the line waits
	w              *holdWriter
	st             *batchState
	now            int64
}

// decideOffers locks what asks take and decides them in line order. An
// ask refused with code stop stops the line; any other refusal ends its
// entry.
func (s *Store) decideOffers(ctx context.Context, tx Querier, asks []offerAsk, stop holdfast.Code) (*offerRound, error) {
	reqs := make([]*claimReq, len(asks))
	for i, a := range asks {
		reqs[i] = a.req
	}
	st, now, err := s.lockBatch(ctx, tx, reqs, make([]claimResult, len(reqs)), &s.offerStmts)
	if err != nil {
		return nil, err
	}
	r := &offerRound{w: newHoldWriter(s.d), st: st, now: now}
	r.w.sale = st.sale
	for _, a := range asks {
		if key := a.req.r.QuotaKey; key != "" {
			if k, ok := st.quotas[key]; ok {
				k.held -= a.waiting
				st.quotas[key] = k
			}
		}
		hold, fail := st.grant(a.req, now)
		if fail != nil && fail.code == stop {
			r.stopped = true
			break
		}
		if fail != nil {
			// The holder cannot have it (their per-holder limit or their
			// key's quota is full since they joined): the entry ends, and
			// what it asked goes to the next.
			r.ends = append(r.ends, offerEnd{a.entry, holdfast.WaitlistCancelled, fmt.Sprintf("the offer could not be made: %s", fail.code)})
			continue
		}
		if _, err := r.w.grant(st, a.req, hold, now); err != nil {
			return nil, err
		}
		r.granted, r.holds = append(r.granted, a.entry), append(r.holds, hold.ID)
	}
	return r, nil
}

// entryList is what tells a pool's waitlist from a group's.
type entryList struct {
	table, columns string
	scan           func(Row) (holdfast.WaitlistEntry, error)
}

var (
	poolList  = entryList{"waitlist_entries", entryColumns, scanEntry}
	groupList = entryList{"group_waitlist_entries", groupEntryColumns, scanGroupEntry}
)

// writeOffers writes a decided round: pre, the entries offered, the
// holds, the entries ended, post (each statement's row count checked
// where it is known: checks, -1 for any), then one event per entry,
// carrying the entry as it is now.
func (s *Store) writeOffers(ctx context.Context, tx Querier, l entryList, subject string, r *offerRound, pre, post []Stmt, checks []int64) error {
	stmts := slices.Clone(pre)
	// The entries' updates go as rows (one statement text whatever the
	// round's size: see rowSet), each checked to change exactly its rows.
	update := func(set string, rows *rowSet) {
		stmts = append(stmts, rows.stmt(s.d, `UPDATE `+l.table+` SET `+set+`, updated_at = v.at FROM v
			WHERE `+l.table+`.id = v.id AND `+l.table+`.status = 'waiting'`))
		checks = append(checks, int64(rows.len()))
	}
	if len(r.granted) > 0 {
		offered := newRows("id, hold_id, at", "text", "text", "bigint")
		for i, id := range r.granted {
			offered.add(id, r.holds[i], r.now)
		}
		update(`status = 'offered', hold_id = v.hold_id`, &offered)
		batch, counts, _ := r.w.batchStmts(r.st)
		stmts, checks = append(stmts, batch...), append(checks, counts...)
	}
	var ended []string
	if len(r.ends) > 0 {
		ends := newRows("id, status, reason, at", "text", "text", "text", "bigint")
		for _, e := range r.ends {
			ends.add(e.entry, string(e.to), e.reason, r.now)
			ended = append(ended, e.entry)
		}
		update(`status = v.status, reason = v.reason`, &ends)
	}
	stmts = append(stmts, post...)
	for range post {
		checks = append(checks, -1)
	}
	n, err := ExecAll(ctx, tx, stmts)
	if err != nil {
		return err
	}
	if len(r.granted) > 0 {
		s.holdsMade(r.w.holdRows.len()) // the offers' holds count as claims' do
	}
	for k, want := range checks {
		if want >= 0 && n[k] != want {
			return fmt.Errorf("sqlstore: a round of offers' statement %d changed %d rows, not %d: rolled back", k, n[k], want)
		}
	}
	// And the entries' lock before, their read and the events' insert
	// after.
	s.offerStmts.Add(int64(len(stmts)) + 3)
	s.offerRounds.Add(1)
	s.offersMade.Add(int64(len(r.granted)))
	entries, err := collect(ctx, tx, l.scan, `SELECT `+l.columns+` FROM `+l.table+` e LEFT JOIN holds h ON h.id = e.hold_id
		WHERE e.id IN (`+s.d.ListSelect(1)+`) ORDER BY e.seq`, s.d.ListArg(append(slices.Clone(r.granted), ended...)))
	if err != nil || len(entries) == 0 {
		return err
	}
	rows := newRows("type, hold_id, subject, data", "text", "text", "text", "text")
	for _, e := range entries {
		typ := holdfast.EventWaitlistOffered
		switch e.Status {
		case holdfast.WaitlistExpired:
			typ = holdfast.EventWaitlistExpired
		case holdfast.WaitlistCancelled:
			typ = holdfast.EventWaitlistCancelled
		}
		b, err := json.Marshal(e)
		if err != nil {
			return err
		}
		rows.add(string(typ), e.HoldID, subject, string(b))
	}
	st := rows.stmt(s.d, `INSERT INTO events (type, at, hold_id, subject, data)
		SELECT type, holdfast_now_ms(), NULLIF(hold_id, ''), NULLIF(subject, ''), data FROM v`)
	_, err = tx.Exec(ctx, st.SQL, st.Args...)
	return err
}

// offerHead is a waiting entry at the head of a pool's line.
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

// offerHeads makes one round of offers to up to limit heads of pool's
// line. more: every head it read was offered or ended, so the line may
// go on.
func (s *Store) offerHeads(ctx context.Context, pool string, limit int) (offered int, more bool, err error) {
	err = s.db.Transact(ctx, func(tx Querier) error {
		offered, more = 0, false
		lock := s.d.ForUpdate
		if lock != "" {
			lock += " OF e"
		}
		// Locked before the pool's row, as a leave and the settling of
		// an offer lock an entry before its pool.
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
		var ends []offerEnd
		var asks []offerAsk
		for _, h := range heads {
			switch {
			case h.quantity > h.capacity:
				// The capacity was lowered below the ask since it joined: it
				// could never be served, and would hold the line for good.
				ends = append(ends, offerEnd{h.id, holdfast.WaitlistExpired, fmt.Sprintf("asks for %d, more than the pool's capacity of %d", h.quantity, h.capacity)})
				continue
			case h.revoked:
				// Revocation ends a key's entries; one that slipped in at
				// that moment ends here, never offered.
				ends = append(ends, offerEnd{h.id, holdfast.WaitlistCancelled, "the key was revoked"})
				continue
			}
			ttl := time.Duration(h.ttl) * time.Millisecond
			if ttl == 0 {
				ttl = holdfast.DefaultOfferTTL
			}
			asks = append(asks, offerAsk{entry: h.id, waiting: h.quantity, req: &claimReq{ctx: ctx, ttl: ttl,
				r: holdfast.HoldRequest{Holder: h.holder, Owner: h.owner, QuotaKey: h.quotaKey, Lines: []holdfast.Line{{Pool: pool, Quantity: h.quantity}}}}})
		}
		// The head of the line comes before every other ask: the pool's
		// capacity is read whole, not less what the line waits for.
		r, err := s.decideOffers(withWaitlistHead(ctx), tx, asks, holdfast.CodeSoldOut)
		if err != nil {
			return err
		}
		r.ends = append(ends, r.ends...)
		if len(r.granted) == 0 && len(r.ends) == 0 {
			return nil
		}
		var pre []Stmt
		var checks []int64
		if len(r.granted) > 0 {
			// While the holds are claimed the pool's row shows no ask (the
			// heads may have what those behind them reserve); what is
			// still asked is counted again after.
			pre, checks = []Stmt{{`UPDATE pools SET waitlisted = 0 WHERE id = $1`, []any{pool}}}, []int64{1}
		}
		// Joins update the pool's row before they add their entry, so
		// every entry that counts is visible now, and no other.
		post := []Stmt{{`UPDATE pools SET waitlisted = (SELECT COALESCE(SUM(quantity), 0) FROM waitlist_entries
			WHERE pool_id = $1 AND status = 'waiting') WHERE id = $1`, []any{pool}}}
		if err := s.writeOffers(ctx, tx, poolList, pool, r, pre, post, checks); err != nil {
			return err
		}
		offered, more = len(r.granted), !r.stopped && len(heads) == limit
		return nil
	})
	if err != nil {
		return 0, false, err
	}
	return offered, more, nil
}
