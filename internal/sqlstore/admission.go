package sqlstore

import (
	"context"

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
