package sqlstore

import (
	"context"
	"slices"

	"github.com/holdfast/holdfast"
)

// The waiting room's rule, one for every door: a request that takes from
// a pool or group behind a room needs an admission of that room (one
// room's admission admits to that room only), and spends it in the same
// transaction as what it takes. Every door asks admissionFor and
// overAdmission: on a store that batches, the decision (grant, on the
// ticket its batch locked; the writer spends it); on one that does not,
// guardRoom before the claim and spendAdmission in it; a waitlist join
// in guardRoomJoin.

// protectingRooms returns the rooms that protect the pools and groups r
// names, in order, each once.
func (s *Store) protectingRooms(ctx context.Context, q Reader, r holdfast.HoldRequest) ([]string, error) {
	snap, err := s.protected(ctx, q)
	if err != nil {
		return nil, err
	}
	groupOf, err := s.unitGroups(ctx, q, snap, []holdfast.HoldRequest{r})
	if err != nil {
		return nil, err
	}
	return snap.rooms(r, groupOf), nil
}

// unitGroups reads the group of every named unit of rs, in one query,
// when a room guards some group (nil otherwise: no unit is guarded).
func (s *Store) unitGroups(ctx context.Context, q Reader, snap *roomSnapshot, rs []holdfast.HoldRequest) (map[string]string, error) {
	if len(snap.groups) == 0 {
		return nil, nil
	}
	var units []string
	for _, r := range rs {
		for _, l := range r.Lines {
			units = append(units, l.Units...)
		}
	}
	if len(units) == 0 {
		return nil, nil
	}
	groupOf := map[string]string{}
	rows, err := q.Query(ctx, `SELECT id, group_id FROM units WHERE id IN (`+s.d.ListSelect(1)+`)`, s.d.ListArg(units))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id, group string
		if err := rows.Scan(&id, &group); err != nil {
			return nil, err
		}
		groupOf[id] = group
	}
	return groupOf, rows.Err()
}

// rooms returns the rooms guarding what r names (its named units' groups
// in groupOf), in order, each once.
func (snap *roomSnapshot) rooms(r holdfast.HoldRequest, groupOf map[string]string) []string {
	if len(snap.pools)+len(snap.groups) == 0 {
		return nil
	}
	var rooms []string
	add := func(room string) {
		if room != "" && !slices.Contains(rooms, room) {
			rooms = append(rooms, room)
		}
	}
	for _, l := range r.Lines {
		switch l.Kind() {
		case holdfast.LinePool:
			pool, _ := splitPool(l.Pool) // a channel's allocation: its pool's room
			add(snap.pools[pool])
		case holdfast.LineAny:
			add(snap.groups[l.Group])
		case holdfast.LineUnits:
			for _, u := range l.Units {
				add(snap.groups[groupOf[u]])
			}
		}
	}
	slices.Sort(rooms)
	return rooms
}

// guardRoom is the waiting room's rule for a strategy's one-by-one claim
// (a store that batches decides it in grant, on the ticket its batch
// locks): a hold on a protected pool or group without an admission is
// refused; with one, the claim spends it (useAdmission). An admission on
// a hold no room protects is left unspent.
func (s *Store) guardRoom(ctx context.Context, r holdfast.HoldRequest) (holdfast.HoldRequest, error) {
	rooms, err := s.protectingRooms(ctx, s.db, r)
	if err != nil {
		return r, err
	}
	if len(rooms) == 0 {
		r.Admission = ""
		return r, nil
	}
	if err := admissionFor(rooms, r.Admission); err != nil {
		return r, err
	}
	// The room's rule comes before the capacity's, as at every door: an
	// admission that cannot be spent here is refused before the claim
	// (which spends it, and refuses one spent meanwhile).
	// One read: the ticket, and what its room lets an admission buy.
	var most int64
	if found, err := queryRow(ctx, s.db, `SELECT r.max_units_per_admission FROM room_tickets t JOIN rooms r ON r.id = t.room_id
		WHERE t.token = $1 AND t.holder = $2 AND t.owner = $3 AND t.room_id = $4
		AND t.status = 'admitted' AND t.hold_id IS NULL AND t.expires_at > holdfast_now_ms()`, []any{r.Admission, r.Holder, r.Owner, rooms[0]}, &most); err != nil {
		return r, err
	} else if !found {
		return r, errAdmissionInvalid
	}
	if err := overAdmission(rooms[0], most, r.Lines); err != nil {
		return r, err
	}
	return r, nil
}

// admissionUnits keeps what one admission buys within its room's
// max_units_per_admission: the line at which the request passes it is
// refused, limit_exceeded, as a holder's limit is.
func admissionUnits(ctx context.Context, q Reader, room string, lines []holdfast.Line) error {
	var most int64
	if _, err := queryRow(ctx, q, `SELECT max_units_per_admission FROM rooms WHERE id = $1`, []any{room}, &most); err != nil {
		return err
	}
	if err := overAdmission(room, most, lines); err != nil {
		return err
	}
	return nil
}

// overAdmission is the rule itself, for an admission of room that buys
// at most most units (0: no bound).
func overAdmission(room string, most int64, lines []holdfast.Line) *holdfast.Error {
	if most == 0 {
		return nil
	}
	var units int64
	for i, l := range lines {
		units += l.Quantity + int64(len(l.Units)) + l.Any
		if units > most {
			return holdfast.LineErrorf(holdfast.CodeLimitExceeded, i, "an admission of room %q buys at most %d units; this request asks for %d", room, most, units)
		}
	}
	return nil
}

// admissionFor is the rule of waiting rooms, whichever door is used: a
// request behind rooms needs an admission, and one admission admits to one
// room, so a request behind two cannot carry a valid one.
func admissionFor(rooms []string, admission string) *holdfast.Error {
	if admission == "" {
		e := holdfast.Errorf(holdfast.CodeAdmissionRequired, "a waiting room protects this sale: join room %q and hold with its admission", rooms[0])
		e.Room = rooms[0]
		return e
	}
	if len(rooms) > 1 {
		return holdfast.Errorf(holdfast.CodeAdmissionInvalid, "this request is behind rooms %q and %q; an admission admits to one room: take them in separate holds", rooms[0], rooms[1])
	}
	return nil
}

// useAdmission spends r's admission on hold id, in the claim's own
// transaction: the holder's, the key's, of the room that protects what
// the hold takes, unexpired, unused.
func (s *Store) useAdmission(ctx context.Context, tx Querier, id string, r holdfast.HoldRequest) error {
	rooms, err := s.protectingRooms(ctx, tx, r)
	if err != nil {
		return err
	}
	switch {
	case len(rooms) == 0: // no longer protected: nothing to spend
		return nil
	case len(rooms) > 1:
		return admissionFor(rooms, r.Admission)
	}
	return s.spendAdmission(ctx, tx, rooms[0], r.Admission, r.Holder, r.Owner, id, "admitted")
}

// ticketsQuery finds the rooms guarding what each gated request of a
// batch takes (req.rooms; the decision, grant, applies the room's rule)
// and the one whose admission it spends (req.room), and returns the query
// that reads those admissions into out — locked unless lock is "" —, each
// spendable one with what its room lets an admission buy (0: no bound).
// nil: none to read.
func (s *Store) ticketsQuery(ctx context.Context, tx Reader, batch []*claimReq, results []claimResult, lock string, out map[ticket]int64) (*Query, error) {
	// The rooms of the whole batch from the cached map, and its named
	// units' groups in one query: not a round trip per request.
	snap, err := s.protected(ctx, tx)
	if err != nil {
		return nil, err
	}
	var gated []holdfast.HoldRequest
	for i, req := range batch {
		req.rooms, req.room = nil, ""
		if results[i].err == nil && req.gated {
			gated = append(gated, req.r)
		}
	}
	groupOf, err := s.unitGroups(ctx, tx, snap, gated)
	if err != nil {
		return nil, err
	}
	var rows string
	var args []any
	for i, req := range batch {
		if results[i].err != nil || !req.gated {
			continue
		}
		rooms := snap.rooms(req.r, groupOf)
		req.rooms = rooms
		if len(rooms) != 1 || req.r.Admission == "" {
			continue // no room, or refused by grant
		}
		req.room = rooms[0]
		rows += sep(len(args)) + "(" + params(len(args)+1, 4) + ")"
		args = append(args, req.r.Admission, rooms[0], req.r.Holder, req.r.Owner)
	}
	if rows == "" {
		return nil, nil
	}
	if lock != "" {
		lock += " OF t"
	}
	return &Query{`WITH v (token, room_id, holder, owner) AS (VALUES ` + rows + `)
		SELECT t.token, t.room_id, t.holder, t.owner, r.max_units_per_admission FROM room_tickets t JOIN v ON t.token = v.token AND t.room_id = v.room_id AND t.holder = v.holder AND t.owner = v.owner
		JOIN rooms r ON r.id = t.room_id
		WHERE t.status = 'admitted' AND t.hold_id IS NULL AND t.expires_at > holdfast_now_ms() ORDER BY t.token` + lock, args, func(r Row) error {
		var t ticket
		var most int64
		err := r.Scan(&t.token, &t.room, &t.holder, &t.owner, &most)
		out[t] = most
		return err
	}}, nil
}

// ticket is an admission as one request would spend it: the token, of
// that room, that holder and that key's owner.
type ticket struct{ token, room, holder, owner string }

// ticketOf is the admission req would spend.
func ticketOf(req *claimReq) ticket {
	return ticket{req.r.Admission, req.room, req.r.Holder, req.r.Owner}
}

// spendAdmission marks the admission token of room used by target (a hold
// or a waitlist entry), leaving the ticket in status to; any other token
// (another room's, holder's or key's, expired, used) is admission_invalid.
func (s *Store) spendAdmission(ctx context.Context, tx Querier, room, token, holder, owner, target, to string) error {
	n, err := tx.Exec(ctx, `UPDATE room_tickets SET hold_id = $1, status = $6 WHERE token = $2 AND holder = $3 AND owner = $4 AND room_id = $5
		AND status = 'admitted' AND hold_id IS NULL AND expires_at > holdfast_now_ms()`, target, token, holder, owner, room, to)
	if err != nil {
		if s.d.Classify(err) == KindUnique {
			return errAdmissionInvalid
		}
		return err
	}
	if n != 1 {
		return errAdmissionInvalid
	}
	return nil
}

var errAdmissionInvalid = holdfast.Errorf(holdfast.CodeAdmissionInvalid, "the admission is not valid for this request: another holder's or room's, expired, already used, or unknown")
