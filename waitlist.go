package holdfast

import (
	"context"
	"time"
)

// DefaultOfferTTL is how long a waitlist offer lasts when the pool does
// not say (OfferTTLSeconds 0).
const DefaultOfferTTL = 10 * time.Minute

// WaitlistStatus is where a waitlist entry stands.
type WaitlistStatus string

const (
	// WaitlistWaiting: in line; returned capacity goes to the first
	// waiting entry before any new buyer.
	WaitlistWaiting WaitlistStatus = "waiting"
	// WaitlistOffered: the capacity came back and is held for the entry's
	// holder (HoldID), until OfferExpiresAt; confirm the hold to buy.
	WaitlistOffered WaitlistStatus = "offered"
	// WaitlistConfirmed: the offer's hold was confirmed.
	WaitlistConfirmed WaitlistStatus = "confirmed"
	// WaitlistExpired: the offer lapsed unconfirmed (its capacity went to
	// the next entry), or could not be made for this holder (Reason).
	WaitlistExpired WaitlistStatus = "expired"
	// WaitlistReleased: the holder released the offer's hold.
	WaitlistReleased WaitlistStatus = "released"
	// WaitlistLeft: the holder left the line before an offer.
	WaitlistLeft WaitlistStatus = "left"
	// WaitlistCancelled: the entry could not be served by the rules every
	// hold keeps (the holder's limit or the key's quota is full, the key
	// was revoked): it ended, and its capacity went to the next (Reason).
	WaitlistCancelled WaitlistStatus = "cancelled"
)

// WaitlistEntry is one holder's place on a sold-out pool's waitlist, or
// on a group's (Group, Any, Together instead of Pool and Quantity).
type WaitlistEntry struct {
	ID       string         `json:"id"`
	Pool     string         `json:"pool,omitempty"`
	Group    string         `json:"group,omitempty"`
	Holder   string         `json:"holder"`
	Quantity int64          `json:"quantity,omitempty"`
	Any      int64          `json:"any,omitempty"`
	Together bool           `json:"together,omitempty"`
	Status   WaitlistStatus `json:"status"`
	// Position is 1 for the next to be offered (0 once not waiting).
	Position int64 `json:"position"`
	// HoldID is the offer: a hold for Holder, confirmed like any other.
	HoldID         string     `json:"hold_id,omitempty"`
	OfferExpiresAt *time.Time `json:"offer_expires_at,omitempty"`
	// Reason says why an entry expired without an offer.
	Reason    string    `json:"reason,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	Owner     string    `json:"-"`
}

// WaitlistRequest asks for a place on a pool's waitlist (Pool,
// Quantity), or on a group's (Group, Any: any k of its units; with
// Together, k next to each other in one row, as a together line takes).
type WaitlistRequest struct {
	Pool     string
	Group    string
	Holder   string
	Quantity int64
	Any      int64
	Together bool
	// Owner is the client key's id ("" in open mode or for the admin);
	// QuotaKey, when set, is the key whose quota of held units the offer
	// counts against, as a hold would.
	Owner    string
	QuotaKey string
	// Admission is a waiting room's token, required when a room protects
	// the pool: the join spends it, as a hold would (one use per token).
	Admission string
	// Ticket, instead of an admission, is the holder's place in the
	// room that protects the pool, told sold_out at the sell-out: the
	// entry keeps the place's order — behind the entries made before the
	// sell-out, ahead of anyone who joins later, in queue order among
	// those who move. A ticket moves once.
	Ticket string
}

// HoldRequest is the hold an offer to r makes: every rule a hold keeps
// is asked of it.
func (r WaitlistRequest) HoldRequest() HoldRequest {
	line := Line{Pool: r.Pool, Quantity: r.Quantity}
	if r.Group != "" {
		line = Line{Group: r.Group, Any: r.Any, Together: r.Together}
	}
	return HoldRequest{Holder: r.Holder, Owner: r.Owner, QuotaKey: r.QuotaKey, Admission: r.Admission, Lines: []Line{line}}
}

// Validate checks a waitlist request.
func (r WaitlistRequest) Validate() error {
	if r.Group != "" {
		if r.Pool != "" || r.Quantity != 0 {
			return Errorf(CodeInvalid, "a waitlist is a pool's (quantity) or a group's (any), not both")
		}
		if err := ValidateID("group", r.Group); err != nil {
			return err
		}
		if r.Any < 1 || r.Any > MaxUnitsOnLine {
			return Errorf(CodeInvalid, "any must be between 1 and %d", MaxUnitsOnLine)
		}
		if r.Ticket != "" {
			return Errorf(CodeInvalid, "a place from a waiting room moves to a pool's waitlist")
		}
		return ValidateHolder(r.Holder)
	}
	if r.Any != 0 || r.Together {
		return Errorf(CodeInvalid, "any and together are for a group's waitlist")
	}
	if err := ValidateID("pool", r.Pool); err != nil {
		return err
	}
	if err := ValidateHolder(r.Holder); err != nil {
		return err
	}
	if r.Quantity < 1 || r.Quantity > MaxQuantity {
		return Errorf(CodeInvalid, "quantity must be between 1 and %d", MaxQuantity)
	}
	if r.Ticket != "" && r.Admission != "" {
		return Errorf(CodeInvalid, "give an admission or a ticket, not both")
	}
	if r.Ticket != "" {
		return ValidateID("ticket", r.Ticket)
	}
	return nil
}

// WaitlistStore keeps pools' waitlists. Capacity that comes back to a
// pool (a release, an expiry, a cancel, capacity raised) is offered to its
// waiting entries in order, as holds made for their holders, before any
// new buyer can take it: while entries wait, a new hold gets only what is
// left beyond everything they ask for.
type WaitlistStore interface {
	// JoinWaitlist puts the holder on the pool's waitlist; the same holder
	// (and owner) joining again while their entry is waiting or offered
	// gets that entry. ErrNotFound; ErrInvalid past the pool's capacity;
	// ErrLimitExceeded past its per-holder limit; ErrQuotaExceeded past
	// the key's quota (waiting units count in it); not_sold_out while the
	// quantity can be held now; admission_required / admission_invalid
	// behind a waiting room, as for a hold.
	JoinWaitlist(ctx context.Context, r WaitlistRequest) (WaitlistEntry, error)
	// WaitlistEntry reads an entry with its position. ErrNotFound.
	WaitlistEntry(ctx context.Context, pool, id string) (WaitlistEntry, error)
	// Waitlist lists a pool's waiting and offered entries, in order.
	// ErrNotFound.
	Waitlist(ctx context.Context, pool string) ([]WaitlistEntry, error)
	// LeaveWaitlist takes an entry off the line (an offered one releases
	// its hold, and the capacity goes to the next). owner, when not "",
	// must be the entry's. ErrNotFound; ErrConflict once the entry ended.
	LeaveWaitlist(ctx context.Context, pool, id, owner string) (WaitlistEntry, error)
	// GroupWaitlist lists a group's waiting and offered entries, in order.
	// (JoinWaitlist with r.Group joins one: units that come back while
	// entries wait are theirs first, offered in join order to each entry
	// they can serve — any k, or k together — before any new buyer; an
	// entry they cannot serve does not stop a later one.) ErrNotFound.
	GroupWaitlist(ctx context.Context, group string) ([]WaitlistEntry, error)
	// GroupWaitlistEntry reads a group's entry with its position.
	// ErrNotFound.
	GroupWaitlistEntry(ctx context.Context, group, id string) (WaitlistEntry, error)
	// LeaveGroupWaitlist is LeaveWaitlist for a group's entry.
	LeaveGroupWaitlist(ctx context.Context, group, id, owner string) (WaitlistEntry, error)
}
