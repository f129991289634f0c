package sqlstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/holdfast/holdfast"
)

// Waitlists of unit groups: an entry waits for any k free units of the
// group, or k next to each other in one row (together). A pool's
// waitlist reserves a count; a group's cannot (which seats an entry will
// want depends on which come back), so it reserves the seats themselves:
// every statement that frees units (unitsBack) moves a general-sale unit
// of a group with waiting entries to the waitlist's sale ('~waitlist', a
// channel no key can name), out of every new buyer's reach in the same
// statement. OfferWaitlists then goes down the group's entries in join
// order: each one that the waitlist's seats and the free seats beside
// them can serve gets them as a hold, claimed through the strategy as any
// hold is; an entry they cannot serve is passed over, not in the way of
// a later one; and what no entry can use goes back to the general sale.

// waitlistSale is the sale of units kept for a group's waiting entries.
const waitlistSale = "~waitlist"

// unitsBack is the SET clause of every statement that frees units: a unit
// of the general sale that comes back while its group has waiting entries
// is the waitlist's first.
const unitsBack = `hold_id = NULL, channel = CASE WHEN channel = '' AND EXISTS (SELECT 1 FROM group_waitlist_entries w
	WHERE w.group_id = units.group_id AND w.status = 'waiting') THEN '` + waitlistSale + `' ELSE channel END`

func (s *Store) joinGroupWaitlist(ctx context.Context, r holdfast.WaitlistRequest) (holdfast.WaitlistEntry, error) {
	var e holdfast.WaitlistEntry
	err := s.db.Transact(ctx, func(tx Querier) error {
		// The group's row, locked first: joins take their numbers one at a
		// time, and an offer (which locks it too) sees every entry.
		found, err := queryRow(ctx, tx, `SELECT id FROM groups WHERE id = $1`+s.d.ForUpdate, []any{r.Group}, new(string))
		if err != nil {
			return err
		}
		if !found {
			return holdfast.Errorf(holdfast.CodeNotFound, "group %q not found", r.Group)
		}
		var id string
		found, err = queryRow(ctx, tx, `SELECT id FROM group_waitlist_entries WHERE group_id = $1 AND owner = $2 AND holder = $3
			AND status IN ('waiting', 'offered')`, []any{r.Group, r.Owner, r.Holder}, &id)
		if err != nil {
			return err
		}
		if found { // the same entry again
			if e, err = s.groupEntry(ctx, tx, r.Group, id); err != nil {
				return err
			}
			return s.record(ctx, tx, e)
		}
		id = holdfast.NewID("wl_", s.clock.Now())
		// The rules a hold keeps, in a hold's order: the room's admission
		// (spent on the entry), what can be had now, the key's quota (in
		// which waiting units count).
		if _, err := s.guardRoomJoin(ctx, tx, r, id); err != nil {
			return err
		}
		var units int64
		if _, err := queryRow(ctx, tx, `SELECT COUNT(*) FROM units WHERE group_id = $1`, []any{r.Group}, &units); err != nil {
			return err
		}
		if r.Any > units {
			return holdfast.Errorf(holdfast.CodeInvalid, "any %d is more than group %q's %d units", r.Any, r.Group, units)
		}
		layout, err := s.waitLayout(ctx, tx, r.Group, r.Together)
		if err != nil {
			return err
		}
		free, err := s.waitFree(ctx, tx, r.Group, "")
		if err != nil {
			return err
		}
		if pickFor(layout, free, r.Any, r.Together) != nil {
			// A line is for what cannot be had: one that waited for seats
			// that are free would keep them from every buyer meanwhile.
			return holdfast.Errorf(holdfast.CodeNotSoldOut, "group %q has %s free now: hold them instead", r.Group, what(r.Any, r.Together))
		}
		if err := s.quotaJoin(ctx, tx, r); err != nil {
			return err
		}
		var seq int64
		if _, err := queryRow(ctx, tx, `SELECT COALESCE(MAX(seq), 0) FROM group_waitlist_entries WHERE group_id = $1`, []any{r.Group}, &seq); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO group_waitlist_entries (id, group_id, seq, holder, owner, quota_key, any_count, together, status, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'waiting', holdfast_now_ms(), holdfast_now_ms())`,
			id, r.Group, seq+1, r.Holder, r.Owner, r.QuotaKey, r.Any, r.Together); err != nil {
			if s.d.Classify(err) == KindUnique {
				return errJoinedMeanwhile
			}
			return err
		}
		if e, err = s.groupEntry(ctx, tx, r.Group, id); err != nil {
			return err
		}
		return s.record(ctx, tx, e)
	})
	return e, err
}

// what names an ask in a refusal.
func what(k int64, together bool) string {
	if together {
		return fmt.Sprintf("%d seats together", k)
	}
	return fmt.Sprintf("%d units", k)
}

// waitLayout is the group's layout when an ask is for seats together.
func (s *Store) waitLayout(ctx context.Context, q Reader, group string, together bool) (*holdfast.Layout, error) {
	if !together {
		return nil, nil
	}
	r, err := s.layout(ctx, q, group)
	if holdfast.ErrorCode(err) == holdfast.CodeNotFound {
		return nil, holdfast.Errorf(holdfast.CodeInvalid, "group %q has no layout: seats together need its rows", group)
	}
	if err != nil {
		return nil, err
	}
	return r.l, nil
}

// waitFree lists the group's free units in the sales given (the empty
// channel is the general sale), the waitlist's first, then by id.
func (s *Store) waitFree(ctx context.Context, q Reader, group string, sales ...string) ([]string, error) {
	ids, _, err := s.waitFreeSales(ctx, q, group, sales...)
	return ids, err
}

// waitFreeSales is waitFree, also naming those of the waitlist's sale:
// one read, so the two agree.
func (s *Store) waitFreeSales(ctx context.Context, q Reader, group string, sales ...string) ([]string, map[string]bool, error) {
	type unit struct{ id, sale string }
	units, err := collect(ctx, q, func(r Row) (unit, error) {
		var u unit
		return u, r.Scan(&u.id, &u.sale)
	}, `SELECT id, channel FROM units WHERE group_id = $1 AND channel IN (`+s.d.ListSelect(2)+`) AND hold_id IS NULL ORDER BY id`,
		group, s.d.ListArg(sales))
	if err != nil {
		return nil, nil, err
	}
	slices.SortStableFunc(units, func(a, b unit) int { return cmp.Compare(b.sale, a.sale) }) // '~waitlist' before ''
	ids := make([]string, len(units))
	kept := map[string]bool{}
	for i, u := range units {
		ids[i] = u.id
		if u.sale == waitlistSale {
			kept[u.id] = true
		}
	}
	return ids, kept, nil
}

// pickFor picks k of free (in its order) for an ask: any k, or k next to
// each other in one row of layout. nil if free cannot serve it.
func pickFor(layout *holdfast.Layout, free []string, k int64, together bool) []string {
	if !together {
		if int64(len(free)) < k {
			return nil
		}
		return slices.Sorted(slices.Values(free[:k]))
	}
	if layout == nil {
		return nil
	}
	isFree := make(map[string]bool, len(free))
	for _, u := range free {
		isFree[u] = true
	}
	return layout.Together(int(k), func(u string) bool { return isFree[u] })
}

const groupEntryColumns = `e.id, e.group_id, e.holder, e.owner, e.any_count, e.together, e.status, COALESCE(e.hold_id, ''), e.reason, e.created_at,
	CASE WHEN e.status = 'offered' THEN h.expires_at END,
	CASE WHEN e.status = 'waiting' THEN (SELECT COUNT(*) FROM group_waitlist_entries o
		WHERE o.group_id = e.group_id AND o.status = 'waiting' AND o.seq < e.seq) + 1 ELSE 0 END`

func scanGroupEntry(r Row) (holdfast.WaitlistEntry, error) {
	var e holdfast.WaitlistEntry
	var status string
	var created int64
	var expires *int64
	if err := r.Scan(&e.ID, &e.Group, &e.Holder, &e.Owner, &e.Any, &e.Together, &status, &e.HoldID, &e.Reason, &created, &expires, &e.Position); err != nil {
		return e, err
	}
	e.Status, e.CreatedAt = holdfast.WaitlistStatus(status), msTime(created)
	if expires != nil {
		t := msTime(*expires)
		e.OfferExpiresAt = &t
	}
	return e, nil
}

func (s *Store) groupEntry(ctx context.Context, q Reader, group, id string) (holdfast.WaitlistEntry, error) {
	e, err := scanGroupEntry(q.QueryRow(ctx, `SELECT `+groupEntryColumns+` FROM group_waitlist_entries e LEFT JOIN holds h ON h.id = e.hold_id
		WHERE e.id = $1 AND e.group_id = $2`, id, group))
	if errors.Is(err, ErrNoRows) {
		return e, holdfast.Errorf(holdfast.CodeNotFound, "waitlist entry %q not found on group %q", id, group)
	}
	return e, err
}

func (s *Store) GroupWaitlistEntry(ctx context.Context, group, id string) (holdfast.WaitlistEntry, error) {
	return s.groupEntry(ctx, s.db, group, id)
}

func (s *Store) GroupWaitlist(ctx context.Context, group string) ([]holdfast.WaitlistEntry, error) {
	if found, err := groupExists(ctx, s.db, group); err != nil || !found {
		if err == nil {
			err = holdfast.Errorf(holdfast.CodeNotFound, "group %q not found", group)
		}
		return nil, err
	}
	return collect(ctx, s.db, scanGroupEntry, `SELECT `+groupEntryColumns+` FROM group_waitlist_entries e LEFT JOIN holds h ON h.id = e.hold_id
		WHERE e.group_id = $1 AND e.status IN ('waiting', 'offered') ORDER BY e.seq`, group)
}

func (s *Store) LeaveGroupWaitlist(ctx context.Context, group, id, owner string) (holdfast.WaitlistEntry, error) {
	e, err := s.groupEntry(ctx, s.db, group, id)
	if err != nil {
		return e, err
	}
	if owner != "" && e.Owner != owner {
		return holdfast.WaitlistEntry{}, holdfast.Errorf(holdfast.CodeNotFound, "waitlist entry %q not found on group %q", id, group)
	}
	if e.Status == holdfast.WaitlistOffered {
		// The offer is the holder's hold: releasing it gives its seats to
		// the next entry. One that ended meanwhile is settled below.
		if _, err := (&Store{shared: s.shared}).Release(ctx, e.HoldID); err != nil && !isEnded(err) {
			return holdfast.WaitlistEntry{}, err
		}
	}
	err = s.db.Transact(ctx, func(tx Querier) error {
		switch e.Status {
		case holdfast.WaitlistWaiting:
			n, err := tx.Exec(ctx, `UPDATE group_waitlist_entries SET status = 'left', updated_at = holdfast_now_ms() WHERE id = $1 AND status = 'waiting'`, id)
			if err != nil {
				return err
			}
			if n == 0 {
				return holdfast.Errorf(holdfast.CodeConflict, "waitlist entry %q was offered meanwhile: leave it again to release the offer", id)
			}
		case holdfast.WaitlistOffered:
			if _, err := s.settleGroupOffer(ctx, tx, id); err != nil {
				return err
			}
		default:
			return holdfast.Errorf(holdfast.CodeConflict, "waitlist entry %q is %s", id, e.Status)
		}
		var err error
		if e, err = s.groupEntry(ctx, tx, group, id); err != nil {
			return err
		}
		return s.record(ctx, tx, e)
	})
	return e, err
}

// offerGroups settles the groups' offers whose holds ended, makes new
// offers, and gives back to the general sale what no entry can use.
func (s *Store) offerGroups(ctx context.Context) (int, error) {
	groups, err := queryStrings(ctx, s.db, `SELECT group_id FROM group_waitlist_entries WHERE status IN ('waiting', 'offered')
		UNION SELECT group_id FROM units WHERE channel = '`+waitlistSale+`' AND channel <> '' ORDER BY 1`) // <> '': the partial index units_channel
	if err != nil || len(groups) == 0 {
		return 0, err
	}
	// Offers that lapsed give their seats back now (to the waitlist, as
	// entries wait), not at the next sweep.
	if _, err := s.reclaimResources(ctx, nil, nil, groups); err != nil {
		return 0, err
	}
	offered := 0
	for _, g := range groups {
		if err := s.settleGroupOffers(ctx, g); err != nil {
			return offered, err
		}
		n, err := s.offerGroup(ctx, g)
		offered += n
		if err != nil {
			return offered, err
		}
	}
	return offered, nil
}

func (s *Store) settleGroupOffers(ctx context.Context, group string) error {
	ids, err := queryStrings(ctx, s.db, `SELECT e.id FROM group_waitlist_entries e LEFT JOIN holds h ON h.id = e.hold_id
		WHERE e.group_id = $1 AND e.status = 'offered' AND (h.status IS NULL OR h.status <> 'held') ORDER BY e.seq`, group)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := s.db.Transact(ctx, func(tx Querier) error {
			_, err := s.settleGroupOffer(ctx, tx, id)
			return err
		}); err != nil {
			return err
		}
	}
	return nil
}

// settleGroupOffer gives an offered entry the end its hold had, as
// settleOffer does for a pool's.
func (s *Store) settleGroupOffer(ctx context.Context, tx Querier, id string) (bool, error) {
	var group, hold, status string
	found, err := queryRow(ctx, tx, `SELECT e.group_id, e.hold_id, COALESCE(h.status, 'expired') FROM group_waitlist_entries e LEFT JOIN holds h ON h.id = e.hold_id
		WHERE e.id = $1 AND e.status = 'offered'`, []any{id}, &group, &hold, &status)
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
	n, err := tx.Exec(ctx, `UPDATE group_waitlist_entries SET status = $2, updated_at = holdfast_now_ms() WHERE id = $1 AND status = 'offered'`, id, string(to))
	if err != nil || n == 0 || to != holdfast.WaitlistExpired {
		return n == 1, err
	}
	e, err := s.groupEntry(ctx, tx, group, id)
	if err != nil {
		return false, err
	}
	return true, s.event(ctx, tx, holdfast.EventWaitlistExpired, hold, group, e)
}

// offerGroup offers the group's waitlist seats (and free seats beside
// them) to its waiting entries in join order: each entry they can serve
// gets them; one they cannot is passed over. Then what no entry took goes
// back to the general sale.
func (s *Store) offerGroup(ctx context.Context, group string) (int, error) {
	type entry struct {
		id, holder, owner, quotaKey string
		k                           int64
		together, revoked           bool
	}
	entries, err := collect(ctx, s.db, func(r Row) (entry, error) {
		var e entry
		return e, r.Scan(&e.id, &e.holder, &e.owner, &e.quotaKey, &e.k, &e.together, &e.revoked)
	}, `SELECT e.id, e.holder, e.owner, e.quota_key, e.any_count, e.together,
			EXISTS (SELECT 1 FROM api_keys k WHERE e.owner LIKE 'key:%' AND k.id = substr(e.owner, 5) AND k.revoked_at IS NOT NULL)
		FROM group_waitlist_entries e WHERE e.group_id = $1 AND e.status = 'waiting' ORDER BY e.seq LIMIT $2`, group, offersPerTick)
	if err != nil {
		return 0, err
	}
	var layout *holdfast.Layout
	// One look at the free seats for the whole pass, taken from as asks
	// are picked: a seat that comes back during the pass waits for the
	// next, which starts again from the first entry — never to a later
	// entry ahead of an earlier one it could serve.
	free, err := s.waitFree(ctx, s.db, group, "", waitlistSale)
	if err != nil {
		return 0, err
	}
	var ends []offerEnd
	var asks []offerAsk
	var ids []string
	for _, e := range entries {
		if e.revoked {
			// Revocation ends a key's entries; one that slipped in at that
			// moment ends here, never offered.
			ends, ids = append(ends, offerEnd{e.id, holdfast.WaitlistCancelled, "the key was revoked"}), append(ids, e.id)
			continue
		}
		if e.together && layout == nil {
			if layout, err = s.waitLayout(ctx, s.db, group, true); err != nil {
				return 0, err
			}
		}
		pick := pickFor(layout, free, e.k, e.together)
		if pick == nil {
			continue // not served by what is free: a later entry may be
		}
		free = slices.DeleteFunc(free, func(u string) bool { return slices.Contains(pick, u) })
		// The seats picked, whichever sale each is in now: the waitlist's,
		// or the general sale's beside them.
		asks = append(asks, offerAsk{entry: e.id, waiting: e.k, req: &claimReq{ctx: ctx, ttl: holdfast.DefaultOfferTTL,
			r: holdfast.HoldRequest{Holder: e.holder, Owner: e.owner, QuotaKey: e.quotaKey, Lines: []holdfast.Line{{Units: pick, Channel: anyChannel}}}}})
		ids = append(ids, e.id)
	}
	if len(ids) == 0 {
		return 0, s.releaseUnused(ctx, group)
	}
	offered, stopped := 0, false
	err = s.db.Transact(ctx, func(tx Querier) error {
		offered, stopped = 0, false
		// The entries first, as a leave and the settling of an offer lock
		// them; one no longer waiting was offered or left meanwhile
		// (another server is offering this list): the pass ends.
		waiting, err := queryStrings(ctx, tx, `SELECT id FROM group_waitlist_entries WHERE id IN (`+s.d.ListSelect(1)+`) AND status = 'waiting'
			ORDER BY seq`+s.d.ForUpdate, s.d.ListArg(ids))
		if err != nil || len(waiting) != len(ids) {
			stopped = true
			return err
		}
		// A seat taken between the look and now (another server's offer):
		// the pass ends there, the next looks again.
		r, err := s.decideOffers(ctx, tx, asks, holdfast.CodeUnavailable)
		if err != nil {
			return err
		}
		r.ends = append(ends, r.ends...)
		if len(r.granted) == 0 && len(r.ends) == 0 {
			stopped = r.stopped
			return nil
		}
		// The seats are the holds' now: in the general sale when they end.
		var post []Stmt
		if len(r.holds) > 0 {
			post = []Stmt{{`UPDATE units SET channel = '' WHERE hold_id IN (` + s.d.ListSelect(1) + `) AND channel = '` + waitlistSale + `'`, []any{s.d.ListArg(r.holds)}}}
		}
		if err := s.writeOffers(ctx, tx, groupList, group, r, nil, post, nil); err != nil {
			return err
		}
		offered, stopped = len(r.granted), r.stopped
		return nil
	})
	if err != nil || stopped {
		return offered, err
	}
	return offered, s.releaseUnused(ctx, group)
}

// releaseUnused gives the waitlist's seats that no waiting entry can use
// back to the general sale. The entries are asked again, in order, on the
// seats as they are now: a seat that came back during this pass, or that
// an entry could have and was not offered (another server was offering),
// stays the waitlist's for the next.
func (s *Store) releaseUnused(ctx context.Context, group string) error {
	return s.db.Transact(ctx, func(tx Querier) error {
		type ask struct {
			k        int64
			together bool
		}
		asks, err := collect(ctx, tx, func(r Row) (ask, error) {
			var a ask
			return a, r.Scan(&a.k, &a.together)
		}, `SELECT any_count, together FROM group_waitlist_entries WHERE group_id = $1 AND status = 'waiting' ORDER BY seq`, group)
		if err != nil {
			return err
		}
		// The seats in the same read as the waitlist's: one that comes back
		// after it is left for the next pass.
		free, reservedSet, err := s.waitFreeSales(ctx, tx, group, "", waitlistSale)
		if err != nil {
			return err
		}
		kept := map[string]bool{}
		var layout *holdfast.Layout
		for _, a := range asks {
			if a.together && layout == nil {
				if layout, err = s.waitLayout(ctx, tx, group, true); err != nil {
					return err
				}
			}
			if pick := pickFor(layout, free, a.k, a.together); pick != nil {
				for _, u := range pick {
					kept[u] = true
				}
				free = slices.DeleteFunc(free, func(u string) bool { return kept[u] })
			}
		}
		var unused []string
		for u := range reservedSet {
			if !kept[u] {
				unused = append(unused, u)
			}
		}
		slices.Sort(unused)
		if len(unused) == 0 {
			return nil
		}
		_, err = tx.Exec(ctx, `UPDATE units SET channel = '' WHERE id IN (`+s.d.ListSelect(1)+`) AND channel = '`+waitlistSale+`' AND hold_id IS NULL`,
			s.d.ListArg(unused))
		return err
	})
}

// dropGroupEntry cancels a waiting entry a rule ends, with its event.
func (s *Store) dropGroupEntry(ctx context.Context, tx Querier, id, group, reason string) error {
	n, err := tx.Exec(ctx, `UPDATE group_waitlist_entries SET status = 'cancelled', reason = $2, updated_at = holdfast_now_ms() WHERE id = $1 AND status = 'waiting'`, id, reason)
	if err != nil || n == 0 {
		return err
	}
	e, err := s.groupEntry(ctx, tx, group, id)
	if err != nil {
		return err
	}
	return s.event(ctx, tx, holdfast.EventWaitlistCancelled, "", group, e)
}
