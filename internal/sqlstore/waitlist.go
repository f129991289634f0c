package sqlstore

import (
	"context"
	"errors"

	"github.com/holdfast/holdfast"
)

// Waitlists. A pool's waitlisted column is what its waiting entries ask
// for, and every claim's availability check subtracts it: capacity that
// comes back (a release, an expiry, a cancel, capacity raised) is the
// list's before it is a new buyer's, with no window in between, because
// the freeing transaction does not need to know about the list at all.
// OfferWaitlists then turns the head entry into a hold for its holder, in
// one transaction that moves the entry's quantity from waitlisted into
// held through the strategy's own claim.

// offersPerTick bounds the offers one pool gets per OfferWaitlists call,
// so one long list does not hold the others up.
const offersPerTick = 200

func (s *Store) JoinWaitlist(ctx context.Context, r holdfast.WaitlistRequest) (holdfast.WaitlistEntry, error) {
	if err := r.Validate(); err != nil {
		return holdfast.WaitlistEntry{}, err
	}
	join := s.joinWaitlist
	if r.Group != "" {
		join = s.joinGroupWaitlist
	}
	e, err := join(ctx, r)
	if errors.Is(err, errJoinedMeanwhile) {
		// The same holder joined at the same moment: that entry is theirs.
		return join(ctx, r)
	}
	return e, err
}

func (s *Store) joinWaitlist(ctx context.Context, r holdfast.WaitlistRequest) (holdfast.WaitlistEntry, error) {
	var id string
	err := s.db.Transact(ctx, func(tx Querier) error {
		id = holdfast.NewID("wl_", s.clock.Now())
		found, err := queryRow(ctx, tx, `SELECT id FROM waitlist_entries WHERE pool_id = $1 AND owner = $2 AND holder = $3
			AND status IN ('waiting', 'offered')`, []any{r.Pool, r.Owner, r.Holder}, &id)
		if err != nil {
			return err
		}
		if found { // the same entry again
			e, err := s.waitlistEntry(ctx, tx, r.Pool, id)
			if err != nil {
				return err
			}
			return s.record(ctx, tx, e)
		}
		// The pool's row, updated first, is locked until commit: joins
		// take their numbers one at a time, and an offer (which updates
		// the same row) sees every entry whose ask it counts.
		var capacity, limit, free, floor int64
		found, err = queryRow(ctx, tx, `UPDATE pools SET waitlisted = waitlisted + $2 WHERE id = $1
			RETURNING capacity, per_holder_limit, capacity - held - confirmed - waitlisted - allocated + $2, waitlist_floor`,
			[]any{r.Pool, r.Quantity}, &capacity, &limit, &free, &floor)
		if err != nil {
			return err
		}
		if !found {
			return holdfast.Errorf(holdfast.CodeNotFound, "pool %q not found", r.Pool)
		}
		// The rules a hold keeps apply at the join, in a hold's order:
		// the room's admission (spent on the entry) first, the key's
		// quota last, in which waiting units count (the key's row locked
		// after the pool's, the claim's order).
		handoff, err := s.guardRoomJoin(ctx, tx, r, id)
		if err != nil {
			return err
		}
		switch {
		case r.Quantity > capacity:
			return holdfast.Errorf(holdfast.CodeInvalid, "quantity %d is more than pool %q's capacity of %d", r.Quantity, r.Pool, capacity)
		case limit > 0 && r.Quantity > limit:
			return holdfast.Errorf(holdfast.CodeLimitExceeded, "quantity %d is more than pool %q's per-holder limit of %d", r.Quantity, r.Pool, limit)
		}
		if limit > 0 {
			// What the holder has now counts, as it would for a hold.
			var taken int64
			if _, err := queryRow(ctx, tx, `SELECT taken FROM pool_holders WHERE pool_id = $1 AND holder = $2`,
				[]any{r.Pool, holderScope(r.Owner, r.Holder)}, &taken); err != nil {
				return err
			}
			if taken+r.Quantity > limit {
				return holdfast.Errorf(holdfast.CodeLimitExceeded, "%d more of pool %q would pass its per-holder limit of %d", r.Quantity, r.Pool, limit)
			}
		}
		switch {
		case free >= r.Quantity:
			// A line is for what cannot be had: one that waited for what
			// is free would reserve it from every buyer meanwhile.
			return holdfast.Errorf(holdfast.CodeNotSoldOut, "pool %q has %d available, %d asked: hold it instead", r.Pool, free, r.Quantity)
		}
		if err := s.quotaJoin(ctx, tx, r); err != nil {
			return err
		}
		// Numbered after every entry and past the numbers a sold-out
		// room reserved for its places; a place moving from the room
		// takes its reserved number.
		seq := handoff
		if seq == 0 {
			if _, err := queryRow(ctx, tx, `SELECT COALESCE(MAX(seq), 0) FROM waitlist_entries WHERE pool_id = $1`, []any{r.Pool}, &seq); err != nil {
				return err
			}
			seq = max(seq, floor) + 1
		}
		_, err = tx.Exec(ctx, `INSERT INTO waitlist_entries (id, pool_id, seq, holder, owner, quota_key, quantity, status, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, 'waiting', holdfast_now_ms(), holdfast_now_ms())`,
			id, r.Pool, seq, r.Holder, r.Owner, r.QuotaKey, r.Quantity)
		if err != nil {
			if s.d.Classify(err) == KindUnique {
				return errJoinedMeanwhile
			}
			return err
		}
		e, err := s.waitlistEntry(ctx, tx, r.Pool, id)
		if err != nil {
			return err
		}
		return s.record(ctx, tx, e)
	})
	if err != nil {
		return holdfast.WaitlistEntry{}, err
	}
	return s.waitlistEntry(ctx, s.db, r.Pool, id)
}

// guardRoomJoin spends the admission a join of entry id needs when a
// waiting room protects its pool: the holder's place in the room ends,
// and their place in line begins.
//
// Or, with a ticket instead, moves a place the room's sell-out ended to
// the waitlist: the seq it returns is the number the sell-out reserved
// for the place's rank (0: number it as any join).
func (s *Store) guardRoomJoin(ctx context.Context, tx Querier, r holdfast.WaitlistRequest, id string) (int64, error) {
	rooms, err := s.protectingRooms(ctx, tx, r.HoldRequest())
	if err != nil {
		return 0, err
	}
	if len(rooms) == 0 {
		if r.Ticket != "" {
			return 0, holdfast.Errorf(holdfast.CodeInvalid, "no waiting room protects pool %q: join its waitlist without a ticket", r.Pool)
		}
		return 0, nil
	}
	if r.Ticket == "" {
		if err := admissionFor(rooms, r.Admission); err != nil {
			return 0, err
		}
	}
	if err := admissionUnits(ctx, tx, rooms[0], r.HoldRequest().Lines); err != nil {
		var e *holdfast.Error
		if errors.As(err, &e) {
			e.Line = -1 // a join has no lines
		}
		return 0, err
	}
	if r.Ticket != "" {
		return s.moveTicket(ctx, tx, rooms[0], r, id)
	}
	return 0, s.spendAdmission(ctx, tx, rooms[0], r.Admission, r.Holder, r.Owner, id, "done")
}

// moveTicket moves a place that the room's sell-out ended to entry id,
// once: its rank's reserved number, or (a place taken after the sell-out,
// never numbered) the next number, as any join.
func (s *Store) moveTicket(ctx context.Context, tx Querier, room string, r holdfast.WaitlistRequest, id string) (int64, error) {
	var status, owner, holder string
	var rank, base *int64
	var moved *string
	found, err := queryRow(ctx, tx, `SELECT t.status, t.owner, t.holder, t.rank, t.waitlist_id, r.handoff_base FROM room_tickets t JOIN rooms r ON r.id = t.room_id
		WHERE t.ticket = $1 AND t.room_id = $2`+s.d.ForUpdate, []any{r.Ticket, room}, &status, &owner, &holder, &rank, &moved, &base)
	if err != nil {
		return 0, err
	}
	if !found || owner != r.Owner {
		return 0, holdfast.Errorf(holdfast.CodeNotFound, "ticket %q not found in room %q", r.Ticket, room)
	}
	switch {
	case holder != r.Holder:
		return 0, holdfast.Errorf(holdfast.CodeInvalid, "ticket %q is %s's place, not %s's", r.Ticket, holder, r.Holder)
	case holdfast.TicketStatus(status) != holdfast.TicketSoldOut:
		return 0, holdfast.Errorf(holdfast.CodeInvalidState, "ticket %q is %s: a place moves to the waitlist once the room has sold out", r.Ticket, status)
	case moved != nil:
		return 0, holdfast.Errorf(holdfast.CodeInvalidState, "ticket %q has already moved to the waitlist (entry %s)", r.Ticket, *moved)
	}
	if _, err := tx.Exec(ctx, `UPDATE room_tickets SET waitlist_id = $2 WHERE ticket = $1`, r.Ticket, id); err != nil {
		return 0, err
	}
	if rank == nil || base == nil {
		return 0, nil
	}
	return *base + *rank, nil
}

// quotaJoin refuses a join past the key's quota of held units.
func (s *Store) quotaJoin(ctx context.Context, tx Querier, r holdfast.WaitlistRequest) error {
	if r.QuotaKey == "" {
		return nil
	}
	q, err := readQuota(ctx, tx, r.QuotaKey, s.d.ForUpdate)
	if err != nil {
		return err
	}
	if _, over := q.passes(r.HoldRequest()); over {
		return quotaRefusal(-1, q)
	}
	return nil
}

func (s *Store) WaitlistEntry(ctx context.Context, pool, id string) (holdfast.WaitlistEntry, error) {
	return s.waitlistEntry(ctx, s.db, pool, id)
}

const entryColumns = `e.id, e.pool_id, e.holder, e.owner, e.quantity, e.status, COALESCE(e.hold_id, ''), e.reason, e.created_at,
	CASE WHEN e.status = 'offered' THEN h.expires_at END,
	CASE WHEN e.status = 'waiting' THEN (SELECT COUNT(*) FROM waitlist_entries o
		WHERE o.pool_id = e.pool_id AND o.status = 'waiting' AND o.seq < e.seq) + 1 ELSE 0 END`

func scanEntry(r Row) (holdfast.WaitlistEntry, error) {
	var e holdfast.WaitlistEntry
	var status string
	var created int64
	var expires *int64
	if err := r.Scan(&e.ID, &e.Pool, &e.Holder, &e.Owner, &e.Quantity, &status, &e.HoldID, &e.Reason, &created, &expires, &e.Position); err != nil {
		return e, err
	}
	e.Status, e.CreatedAt = holdfast.WaitlistStatus(status), msTime(created)
	if expires != nil {
		t := msTime(*expires)
		e.OfferExpiresAt = &t
	}
	return e, nil
}

func (s *Store) waitlistEntry(ctx context.Context, q Reader, pool, id string) (holdfast.WaitlistEntry, error) {
	e, err := scanEntry(q.QueryRow(ctx, `SELECT `+entryColumns+` FROM waitlist_entries e LEFT JOIN holds h ON h.id = e.hold_id
		WHERE e.id = $1 AND e.pool_id = $2`, id, pool))
	if errors.Is(err, ErrNoRows) {
		return e, holdfast.Errorf(holdfast.CodeNotFound, "waitlist entry %q not found on pool %q", id, pool)
	}
	return e, err
}

func (s *Store) Waitlist(ctx context.Context, pool string) ([]holdfast.WaitlistEntry, error) {
	if _, err := s.pool(ctx, s.db, pool); err != nil {
		return nil, err
	}
	return collect(ctx, s.db, scanEntry, `SELECT `+entryColumns+` FROM waitlist_entries e LEFT JOIN holds h ON h.id = e.hold_id
		WHERE e.pool_id = $1 AND e.status IN ('waiting', 'offered') ORDER BY e.seq`, pool)
}

func (s *Store) LeaveWaitlist(ctx context.Context, pool, id, owner string) (holdfast.WaitlistEntry, error) {
	e, err := s.waitlistEntry(ctx, s.db, pool, id)
	if err != nil {
		return e, err
	}
	if owner != "" && e.Owner != owner {
		return holdfast.WaitlistEntry{}, holdfast.Errorf(holdfast.CodeNotFound, "waitlist entry %q not found on pool %q", id, pool)
	}
	if e.Status == holdfast.WaitlistOffered {
		// The offer is the holder's hold: releasing it gives its capacity
		// to the next entry. One that ended meanwhile is settled below.
		if _, err := (&Store{shared: s.shared}).Release(ctx, e.HoldID); err != nil && !isEnded(err) {
			return holdfast.WaitlistEntry{}, err
		}
	}
	err = s.db.Transact(ctx, func(tx Querier) error {
		switch e.Status {
		case holdfast.WaitlistWaiting:
			n, err := tx.Exec(ctx, `UPDATE waitlist_entries SET status = 'left', updated_at = holdfast_now_ms() WHERE id = $1 AND status = 'waiting'`, id)
			if err != nil {
				return err
			}
			if n == 0 {
				return holdfast.Errorf(holdfast.CodeConflict, "waitlist entry %q was offered meanwhile: leave it again to release the offer", id)
			}
			if _, err := tx.Exec(ctx, `UPDATE pools SET waitlisted = waitlisted - $2 WHERE id = $1`, pool, e.Quantity); err != nil {
				return err
			}
		case holdfast.WaitlistOffered:
			if _, err := s.settleOffer(ctx, tx, id); err != nil {
				return err
			}
		default:
			return holdfast.Errorf(holdfast.CodeConflict, "waitlist entry %q is %s", id, e.Status)
		}
		var err error
		if e, err = s.waitlistEntry(ctx, tx, pool, id); err != nil {
			return err
		}
		return s.record(ctx, tx, e)
	})
	return e, err
}

// isEnded is a lifecycle refusal because the hold is no longer held.
func isEnded(err error) bool {
	switch holdfast.ErrorCode(err) {
	case holdfast.CodeHoldExpired, holdfast.CodeInvalidState:
		return true
	}
	return false
}

// OfferWaitlists settles the offers whose holds ended and makes new
// offers, pool by pool, then group by group (groupwait.go).
func (s *Store) OfferWaitlists(ctx context.Context) (int, error) {
	n, err := s.offerPools(ctx)
	if err != nil {
		return n, err
	}
	m, err := s.offerGroups(ctx)
	return n + m, err
}

func (s *Store) offerPools(ctx context.Context) (int, error) {
	pools, err := queryStrings(ctx, s.db, `SELECT id FROM pools WHERE waitlisted > 0
		UNION SELECT pool_id FROM waitlist_entries WHERE status = 'offered' ORDER BY 1`)
	if err != nil || len(pools) == 0 {
		return 0, err
	}
	// Offers that lapsed give their capacity back now, not at the next
	// sweep, so it goes to the next entry at once.
	if _, err := s.reclaimResources(ctx, pools, nil, nil); err != nil {
		return 0, err
	}
	offered := 0
	for _, pool := range pools {
		if err := s.settleOffers(ctx, pool); err != nil {
			return offered, err
		}
		n, err := s.offer(ctx, pool)
		offered += n
		if err != nil {
			return offered, err
		}
	}
	return offered, nil
}

// settleOffers closes the pool's offers whose holds ended.
func (s *Store) settleOffers(ctx context.Context, pool string) error {
	ids, err := queryStrings(ctx, s.db, `SELECT e.id FROM waitlist_entries e LEFT JOIN holds h ON h.id = e.hold_id
		WHERE e.pool_id = $1 AND e.status = 'offered' AND (h.status IS NULL OR h.status <> 'held') ORDER BY e.seq`, pool)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := s.db.Transact(ctx, func(tx Querier) error {
			_, err := s.settleOffer(ctx, tx, id)
			return err
		}); err != nil {
			return err
		}
	}
	return nil
}

// settleOffer gives an offered entry the end its hold had (the hold's row
// is read, so its end is known): confirmed, released, or expired with the
// waitlist.expired event. ok is false if the hold is still held or
// another server settled the entry first.
func (s *Store) settleOffer(ctx context.Context, tx Querier, id string) (bool, error) {
	var hold, status string
	// A hold purged already ended long ago, unconfirmed.
	found, err := queryRow(ctx, tx, `SELECT e.hold_id, COALESCE(h.status, 'expired') FROM waitlist_entries e LEFT JOIN holds h ON h.id = e.hold_id
		WHERE e.id = $1 AND e.status = 'offered'`, []any{id}, &hold, &status)
	if err != nil || !found {
		return false, err
	}
	to := holdfast.WaitlistConfirmed
	switch holdfast.Status(status) {
	case holdfast.StatusHeld:
		return false, nil
	case holdfast.StatusExpired:
		to = holdfast.WaitlistExpired
	case holdfast.StatusReleased:
		to = holdfast.WaitlistReleased
	}
	n, err := tx.Exec(ctx, `UPDATE waitlist_entries SET status = $2, updated_at = holdfast_now_ms() WHERE id = $1 AND status = 'offered'`, id, string(to))
	if err != nil || n == 0 || to != holdfast.WaitlistExpired {
		return n == 1, err
	}
	e, err := s.waitlistEntryTx(ctx, tx, id)
	if err != nil {
		return false, err
	}
	return true, s.event(ctx, tx, holdfast.EventWaitlistExpired, hold, e.Pool, e)
}

func (s *Store) waitlistEntryTx(ctx context.Context, tx Querier, id string) (holdfast.WaitlistEntry, error) {
	var pool string
	if _, err := queryRow(ctx, tx, `SELECT pool_id FROM waitlist_entries WHERE id = $1`, []any{id}, &pool); err != nil {
		return holdfast.WaitlistEntry{}, err
	}
	return s.waitlistEntry(ctx, tx, pool, id)
}

// dropEntry ends a waiting entry that cannot be offered (to status:
// expired, or cancelled by a rule), with the reason and its event.
func (s *Store) dropEntry(ctx context.Context, tx Querier, id, pool string, q int64, to holdfast.WaitlistStatus, reason string) error {
	n, err := tx.Exec(ctx, `UPDATE waitlist_entries SET status = $3, reason = $2, updated_at = holdfast_now_ms() WHERE id = $1 AND status = 'waiting'`, id, reason, string(to))
	if err != nil || n == 0 {
		return err
	}
	typ := holdfast.EventWaitlistExpired
	if to == holdfast.WaitlistCancelled {
		typ = holdfast.EventWaitlistCancelled
	}
	if _, err := tx.Exec(ctx, `UPDATE pools SET waitlisted = waitlisted - $2 WHERE id = $1`, pool, q); err != nil {
		return err
	}
	e, err := s.waitlistEntry(ctx, tx, pool, id)
	if err != nil {
		return err
	}
	return s.event(ctx, tx, typ, "", pool, e)
}
