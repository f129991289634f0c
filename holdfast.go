package holdfast

import (
	"context"
	"encoding/json"
	"time"
)

// Pool is counted capacity: GA tickets, stock. Invariant, in every backend and
// at every instant: Held + Confirmed <= Capacity.
type Pool struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Capacity int64  `json:"capacity"`
	// Partition names what the pool belongs to (an event, a venue, a
	// tenant) where events are spread over several databases: a
	// partition lives on one shard. Empty: the pool's own id. One
	// database ignores it.
	Partition string `json:"partition,omitempty"`
	// PerHolderLimit caps what one holder may have held or confirmed in this
	// pool across all of their active holds. 0 means no limit.
	PerHolderLimit int64 `json:"per_holder_limit"`
	// LateConfirm is what a confirm after a hold's expiry does (see
	// LatePolicy); LateConfirmGrace how late, in seconds, it may come.
	LateConfirm      LatePolicy `json:"late_confirm"`
	LateConfirmGrace int64      `json:"late_confirm_grace"`
	// OfferTTLSeconds is how long a waitlist offer (a hold made for the
	// entry's holder) lasts; 0 means DefaultOfferTTL.
	OfferTTLSeconds int64 `json:"offer_ttl_seconds"`

	// Availability, as of the read. Capacity held by holds past their expiry
	// counts as available, because the next claim reclaims it.
	Available int64 `json:"available"`
	Held      int64 `json:"held"`
	Confirmed int64 `json:"confirmed"`
	// Waitlisted is what the waitlist's waiting entries ask for: capacity
	// that comes back goes to them before any new buyer.
	Waitlisted int64 `json:"waitlisted"`
	// Allocations are the parts of the pool set aside for sales channels
	// (see Allocation). Available is what the general sale can take;
	// Held and Confirmed count every channel's too, so that Capacity =
	// Available + Held + Confirmed + Waitlisted + each allocation's
	// Available.
	Allocations []Allocation `json:"allocations"`
}

// Allocation is part of a pool set aside for one sales channel (a
// presale, a reseller, the box office): only holds of that channel take
// from it — a key bound to the channel, or an admin naming the channel
// on a line — and the general sale never does. Its Held and Confirmed
// are the channel's sales; Available what it can still take.
type Allocation struct {
	Channel   string `json:"channel"`
	Quantity  int64  `json:"quantity"`
	Held      int64  `json:"held"`
	Confirmed int64  `json:"confirmed"`
	Available int64  `json:"available"`
	// ReleaseAt, when set, is when what the channel has not sold goes
	// back to the general sale (a presale that ends), by the database
	// clock.
	ReleaseAt *time.Time `json:"release_at"`
}

// AllocationRequest sets a pool's allocation for a channel. ReleaseAt
// nil: until it is deleted.
type AllocationRequest struct {
	Pool      string
	Channel   string
	Quantity  int64
	ReleaseAt *time.Time
	// Existing changes an allocation the channel has (ErrNotFound if
	// none) rather than setting one.
	Existing bool
}

// Group is a set of identified units: the seats of one event's seat map, the
// riders of one fleet.
type Group struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Partition is as for a pool.
	Partition string `json:"partition,omitempty"`
	// Reusable units return to the group when their hold is completed (a
	// rider back from a delivery); others stay taken (a seat that was used).
	Reusable bool `json:"reusable"`
	// LateConfirm and LateConfirmGrace are as for a pool.
	LateConfirm      LatePolicy `json:"late_confirm"`
	LateConfirmGrace int64      `json:"late_confirm_grace"`
	// Layout, when given at creation, is the venue map of the group's
	// units (every seat in it becomes a unit of the group). It is read
	// back on its own (GET /v1/groups/{id}/layout): a stadium's is large.
	Layout *Layout `json:"layout,omitempty"`
}

// LatePolicy says what a confirm after a hold's expiry does: a payment
// that succeeded a few seconds after the hold lapsed.
type LatePolicy string

const (
	// LateRefuse refuses it: hold_expired (the default).
	LateRefuse LatePolicy = "refuse"
	// LateIfAvailable takes the same capacity or the same units again, if
	// they are still free, and confirms in one step; if they are not, or
	// the grace has passed, hold_expired with reclaimable false.
	LateIfAvailable LatePolicy = "if_available"
)

// DefaultLateConfirmGrace is the grace of if_available when none is set.
const DefaultLateConfirmGrace = 600

// MaxLateConfirmGrace bounds the grace: a week.
const MaxLateConfirmGrace = 7 * 24 * 3600

// Normalize fills in the defaults (refuse; 600 s with if_available) and
// checks the policy.
func (l *LatePolicy) Normalize(grace *int64) error {
	switch *l {
	case "":
		*l = LateRefuse
	case LateRefuse, LateIfAvailable:
	default:
		return Errorf(CodeInvalid, "late_confirm must be refuse or if_available")
	}
	if *grace < 0 || *grace > MaxLateConfirmGrace {
		return Errorf(CodeInvalid, "late_confirm_grace must be from 0 to %d seconds", MaxLateConfirmGrace)
	}
	if *l == LateIfAvailable && *grace == 0 {
		*grace = DefaultLateConfirmGrace
	}
	return nil
}

// PartLine is one line of a partial confirm: for a pool line the quantity
// to keep (from 1 to the line's), for a unit line the units to keep (a
// non-empty subset of its units). The rest of the line is released.
type PartLine struct {
	Line     int      `json:"line"`
	Quantity int64    `json:"quantity,omitempty"`
	Units    []string `json:"units,omitempty"`
}

// GroupAvailability counts a group's units by status.
type GroupAvailability struct {
	Group
	Units     int64 `json:"units"`
	Free      int64 `json:"free"`
	Held      int64 `json:"held"`
	Confirmed int64 `json:"confirmed"`
	// Free and FreeUnits are the general sale's: units set aside for a
	// channel are counted in Allocations, those kept for the waitlist in
	// Waitlisted, so Units = Free + Held + Confirmed + Σ
	// Allocations[i].Available + Waitlisted (Held and Confirmed count every
	// channel's).
	FreeUnits []string `json:"free_units"`
	// Allocations are the named units set aside per sales channel.
	Allocations []UnitAllocation `json:"allocations"`
	// Waitlisted counts the free units kept for the group's waitlist: they
	// came back while entries waited, and are offered to them first.
	Waitlisted int64 `json:"waitlisted"`
}

// UnitAllocation is a channel's named units of a group: how many, and
// how many of them are held, sold and free for the channel.
type UnitAllocation struct {
	Channel   string `json:"channel"`
	Units     int64  `json:"units"`
	Held      int64  `json:"held"`
	Confirmed int64  `json:"confirmed"`
	Available int64  `json:"available"`
}

// UnitAllocationRequest sets named units of a group aside for a channel.
type UnitAllocationRequest struct {
	Group   string
	Channel string
	Units   []string
}

// UnitStatus is what a unit is doing now.
type UnitStatus string

const (
	UnitFree      UnitStatus = "free"
	UnitHeld      UnitStatus = "held"
	UnitConfirmed UnitStatus = "confirmed"
)

// Unit is one identified thing. Unit ids are unique across all groups, so a
// unit line names units without naming their group.
type Unit struct {
	ID     string     `json:"id"`
	Group  string     `json:"group"`
	Status UnitStatus `json:"status"`
	HoldID string     `json:"hold_id,omitempty"`
	// Channel is the sales channel the unit is set aside for ("" in the
	// general sale; see UnitAllocation).
	Channel string `json:"channel,omitempty"`
	// Owner is the key whose hold holds the unit: a client key is shown
	// the hold ids of its own holds only.
	Owner string `json:"-"`
}

// Status is a hold's state. held → confirmed | released | expired;
// confirmed → cancelled | completed.
type Status string

const (
	StatusHeld      Status = "held"
	StatusConfirmed Status = "confirmed"
	StatusReleased  Status = "released"
	StatusExpired   Status = "expired"
	StatusCancelled Status = "cancelled"
	StatusCompleted Status = "completed"
)

// Active reports whether a hold in this state occupies capacity.
func (s Status) Active() bool { return s == StatusHeld || s == StatusConfirmed }

// Line is one all-or-nothing part of a hold, in exactly one of three forms:
//   - {Pool, Quantity}: Quantity from a pool;
//   - {Units}: exactly these units;
//   - {Group, Any}: any Any free units of a group.
//
// In a hold read back, Units lists the units the line actually took (also
// for the {Group, Any} form).
type Line struct {
	Pool     string   `json:"pool,omitempty"`
	Quantity int64    `json:"quantity,omitempty"`
	Units    []string `json:"units,omitempty"`
	Group    string   `json:"group,omitempty"`
	Any      int64    `json:"any,omitempty"`
	// Together, on a {group, any} line, takes Any free seats next to each
	// other in one row of the group's layout, the block nearest the stage,
	// or refuses (unavailable): never seats apart.
	Together bool `json:"together,omitempty"`
	// Channel takes from what is set aside for that sales channel instead
	// of the general sale: on a pool line the pool's allocation (see
	// Allocation), on a {units} or {group, any} line the channel's named
	// units (see UnitAllocation).
	Channel string `json:"channel,omitempty"`
}

// LineKind names the form of a line.
type LineKind int

const (
	LineInvalid LineKind = iota
	LinePool
	LineUnits
	LineAny
)

// Kind reports which form l has; LineInvalid if it mixes forms or has none.
// A {Group, Any} line read back also carries Units, so Any decides.
func (l Line) Kind() LineKind {
	switch {
	case l.Pool != "" && l.Units == nil && l.Group == "" && l.Any == 0:
		return LinePool
	case l.Group != "" && l.Pool == "" && l.Quantity == 0:
		return LineAny
	case len(l.Units) > 0 && l.Pool == "" && l.Group == "" && l.Quantity == 0 && l.Any == 0:
		return LineUnits
	}
	return LineInvalid
}

// Hold is one claim by a holder over one or more lines.
type Hold struct {
	ID         string    `json:"id"`
	Holder     string    `json:"holder"`
	Status     Status    `json:"status"`
	Lines      []Line    `json:"lines"`
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	PaymentRef string    `json:"payment_ref,omitempty"`
	// Late is true when the hold was confirmed after its expiry, under
	// an if_available late-confirm policy.
	Late bool `json:"late,omitempty"`
	// Owner is the API key that created the hold; only it (and an admin)
	// may see or change the hold.
	Owner string `json:"-"`
}

// HoldRequest asks for a hold. TTL 0 means the store's default.
type HoldRequest struct {
	Holder string        `json:"holder"`
	TTL    time.Duration `json:"-"`
	Lines  []Line        `json:"lines"`
	// Owner is the API key making the hold ("" when keys are not in use).
	Owner string `json:"-"`
	// QuotaKey, when set, is the id of the API key whose quota of held
	// units (APIKey.MaxHeldUnits) the hold counts against: a hold that
	// would pass it takes nothing and answers ErrQuotaExceeded. A booking
	// is never held, and counts against nothing.
	QuotaKey string `json:"-"`
	// Admission is the token a waiting room gave Holder, required when a
	// room protects a pool or group the hold names; one hold per token.
	Admission string `json:"-"`
}

// EventType names a state change recorded in the outbox.
type EventType string

const (
	EventPoolCreated   EventType = "pool.created"
	EventPoolChanged   EventType = "pool.changed"
	EventGroupCreated  EventType = "group.created"
	EventGroupChanged  EventType = "group.changed"
	EventUnitsAdded    EventType = "group.units_added"
	EventHoldCreated   EventType = "hold.created"
	EventHoldConfirmed EventType = "hold.confirmed"
	EventHoldReleased  EventType = "hold.released"
	EventHoldExtended  EventType = "hold.extended"
	EventHoldExpired   EventType = "hold.expired"
	EventHoldCancelled EventType = "hold.cancelled"
	EventHoldCompleted EventType = "hold.completed"
	// A held or confirmed hold was given to another holder (its data has
	// transferred_from).
	EventHoldTransferred EventType = "hold.transferred"
	// Units of a held or confirmed hold were swapped for others (its data
	// has exchanged: old unit → new).
	EventHoldExchanged EventType = "hold.exchanged"
	// A pool's allocation for a channel was made or changed, or ended
	// (deleted, or its release_at came): what the channel had not sold
	// went back to the general sale. The data is the pool.
	EventAllocationChanged  EventType = "allocation.changed"
	EventAllocationReleased EventType = "allocation.released"
	// A waitlist entry was offered capacity (as a hold for its holder),
	// or its offer lapsed unconfirmed and went to the next entry.
	EventWaitlistOffered EventType = "waitlist.offered"
	EventWaitlistExpired EventType = "waitlist.expired"
	// A waitlist entry ended because a rule refused it (its key revoked,
	// its holder's limit or key's quota full): see its reason.
	EventWaitlistCancelled EventType = "waitlist.cancelled"
)

// Event is one outbox row, written in the same transaction as the change it
// records. Seq increases with every event.
type Event struct {
	Seq int64 `json:"seq"`
	// Cursor continues the feed after this event.
	Cursor string    `json:"cursor"`
	Type   EventType `json:"type"`
	At     time.Time `json:"at"`
	HoldID string    `json:"hold_id,omitempty"`
	// Subject is the pool or group the event is about, when it is about one.
	Subject string `json:"subject,omitempty"`
	// Data is the JSON snapshot of the hold, pool or group after the change.
	Data json.RawMessage `json:"data,omitempty"`
}

// AuditReport is a recount of every pool and unit from the claim rows,
// compared with the counters the engine keeps.
type AuditReport struct {
	Pools int `json:"pools"`
	Units int `json:"units"`
	// Oversold is how many units of capacity the claim rows give out beyond
	// pool capacities, summed over pools. Must be 0.
	Oversold int64 `json:"oversold"`
	// DoubleBooked is how many units have more than one active claim. Must be 0.
	DoubleBooked int64 `json:"double_booked"`
	// Payments counts the payments recorded; RefundsDueOld lists those
	// due back for more than a day (a refund the shop has not made).
	Payments      int      `json:"payments"`
	RefundsDueOld []string `json:"refunds_due_old"`
	// Differences lists every counter that does not match its recount.
	Differences []string  `json:"differences"`
	At          time.Time `json:"at"`
}

// OK reports whether the recount matched the counters everywhere.
func (r AuditReport) OK() bool { return len(r.Differences) == 0 }

// The contracts below are split by who uses them: an application books
// through Catalog and Booking (which the HTTP client implements too), a
// page follows the Feed, an operator runs Operations, and the HTTP server
// alone needs IdempotencyStore and KeyStore. Store is all of them: what a
// backend implements and the conformance suite (package holdfasttest)
// enforces. Every change is atomic: it happens whole, with its outbox
// events, or not at all.

// Catalog is the inventory: pools of counted capacity and groups of
// identified units.
type Catalog interface {
	// CreatePool creates a pool. ErrInvalid for a bad id, name, capacity or
	// limit; ErrConflict if the id exists.
	CreatePool(ctx context.Context, p Pool) (Pool, error)
	// Pool returns a pool with its availability. ErrNotFound.
	Pool(ctx context.Context, id string) (Pool, error)
	// Pools lists all pools, ordered by id.
	Pools(ctx context.Context) ([]Pool, error)
	// SetCapacity changes a pool's capacity. ErrConflict if the new capacity
	// is below what is held and confirmed; ErrNotFound; ErrInvalid.
	SetCapacity(ctx context.Context, id string, capacity int64) (Pool, error)

	// SetPoolLateConfirm sets what a confirm after a hold's expiry does for
	// the pool's holds (see LatePolicy); grace 0 with if_available is the
	// default grace. ErrNotFound; ErrInvalid.
	SetPoolLateConfirm(ctx context.Context, id string, policy LatePolicy, grace int64) (Pool, error)

	// CreateGroup creates a unit group. ErrInvalid; ErrConflict if it exists.
	CreateGroup(ctx context.Context, g Group) (Group, error)
	// AddUnits adds units to a group, all or none. ErrNotFound for the group;
	// ErrConflict if any unit id exists (in any group); ErrInvalid.
	AddUnits(ctx context.Context, group string, ids []string) error
	// Group returns a group's unit counts and its free units. ErrNotFound.
	Group(ctx context.Context, id string) (GroupAvailability, error)
	// SetGroupLateConfirm is SetPoolLateConfirm for a group's units.
	SetGroupLateConfirm(ctx context.Context, id string, policy LatePolicy, grace int64) (Group, error)
	// Units lists a group's units ordered by id, filtered by status when
	// status is not "". ErrNotFound; ErrInvalid for an unknown status.
	Units(ctx context.Context, group string, status UnitStatus) ([]Unit, error)
}

// Booking is holds and their lifecycle.
type Booking interface {
	// Hold claims every line or nothing. Errors name the failing line (the
	// first in request order): ErrLimitExceeded before ErrSoldOut for a pool
	// line, ErrUnavailable for a unit line, ErrNotFound for an unknown pool,
	// group or unit, ErrInvalid for a malformed request.
	Hold(ctx context.Context, r HoldRequest) (Hold, error)
	// Book is Hold and Confirm in one transaction: the hold is never seen held.
	Book(ctx context.Context, r HoldRequest, paymentRef string) (Hold, error)
	// Confirm turns a held hold into a booking. ErrHoldExpired if its
	// expires_at has passed (decided by the database clock in the same
	// transaction, whether or not a sweeper ran), unless every pool and
	// group it holds has the if_available late-confirm policy, the grace
	// has not passed and what it held is still free: then it takes it
	// again and confirms, in one step, and the hold reads Late. Otherwise
	// ErrHoldExpired, with Reclaimable false under if_available.
	// ErrInvalidState from any state but held (or expired, late);
	// ErrNotFound.
	Confirm(ctx context.Context, id, paymentRef string) (Hold, error)
	// ConfirmPart confirms part of a hold and releases the rest in one
	// step (a buyer who paid for 2 of 4): each PartLine names a line and
	// what of it to keep; lines not named are kept whole. Late as Confirm.
	// ErrInvalid for a part that is not a part of the hold (the failing
	// entry's index in Line), and as Confirm.
	ConfirmPart(ctx context.Context, id, paymentRef string, part []PartLine) (Hold, error)
	// Release gives a held hold's capacity back. ErrHoldExpired if past its
	// expiry; ErrInvalidState; ErrNotFound.
	Release(ctx context.Context, id string) (Hold, error)
	// Extend moves a held hold's expiry to now+ttl. ErrHoldExpired;
	// ErrInvalidState; ErrInvalid if ttl is out of bounds or the hold would
	// live past the store's maximum hold lifetime; ErrNotFound.
	Extend(ctx context.Context, id string, ttl time.Duration) (Hold, error)
	// Cancel (a refund) gives a confirmed hold's capacity back.
	// ErrInvalidState; ErrNotFound.
	Cancel(ctx context.Context, id string) (Hold, error)
	// Complete marks a confirmed hold used: reusable units become free, pool
	// quantity stays consumed. ErrInvalidState; ErrNotFound.
	Complete(ctx context.Context, id string) (Hold, error)
	// Transfer gives a held or confirmed hold to another holder (of the
	// same key): the same lines and units, no capacity moves. The
	// receiver's per-holder limit applies (ErrLimitExceeded, Line set).
	// ErrHoldExpired; ErrInvalidState from any other state; ErrNotFound.
	Transfer(ctx context.Context, id, holder string) (Hold, error)
	// Exchange swaps units of a held or confirmed hold (old → new, each
	// new unit of the old one's group, on its line): all pairs or none,
	// in one step. ErrUnavailable (Line set) if a new unit is not free,
	// the hold as it was; ErrInvalid for a unit not in the hold;
	// ErrHoldExpired; ErrInvalidState; ErrNotFound.
	Exchange(ctx context.Context, id string, swaps map[string]string) (Hold, error)
	// GetHold returns a hold. A held hold past its expiry reads as expired.
	// ErrNotFound.
	GetHold(ctx context.Context, id string) (Hold, error)
	// Holds lists a holder's holds, newest first; only those created by
	// owner unless owner is "".
	Holds(ctx context.Context, holder, owner string) ([]Hold, error)
}

// Feed is the outbox, read in commit order.
type Feed interface {
	// Events returns up to limit outbox events after the cursor (from a
	// previous call's next; "" for the start), in commit order, and the
	// cursor to continue from. A reader following next never skips an event,
	// even one whose transaction commits late. ErrInvalid for a bad cursor.
	Events(ctx context.Context, after string, limit int) (events []Event, next string, err error)
}

// Operations is what runs beside the API: the sweeper, the audit, the
// readiness probe.
type Operations interface {
	// ExpireDue marks up to limit held holds past their expiry as expired,
	// returning their capacity, and reports how many it expired. Safe to run
	// from many goroutines and processes at once: each hold expires once.
	ExpireDue(ctx context.Context, limit int) (int, error)
	// Audit recounts every pool and unit from the claim rows. It only reads.
	Audit(ctx context.Context) (AuditReport, error)
	// Ready reports whether the database answers and has every migration
	// this build knows applied.
	Ready(ctx context.Context) error
	// Purge deletes, in small batches, outbox events and finished holds
	// (released, expired, cancelled) older than r says, and finished
	// webhook deliveries as old as the events, and reports how many; an
	// event still to be sent to a webhook is kept. Safe on every server at once; it never touches a hold that
	// holds capacity or a seat. A feed cursor from before the purged
	// events answers ErrCursorExpired from then on.
	Purge(ctx context.Context, r Retention) (PurgeReport, error)
	// AdmitRooms admits, in every open waiting room, as many of the
	// waiting as the rate and MaxInside allow, in place order, closes
	// what is done, and reports how many it admitted. Safe on every
	// server at once: a room's row is locked while it admits, so no
	// place is admitted twice or skipped.
	AdmitRooms(ctx context.Context) (int, error)
	// OfferWaitlists settles the offers that ended (confirmed, released,
	// expired) and offers returned capacity to the next entries of every
	// pool's waitlist, in order, and reports how many it offered. Safe on
	// every server at once: an entry is offered once.
	OfferWaitlists(ctx context.Context) (int, error)
}

// Retention is how long the database keeps what it no longer needs: outbox
// events, and holds that ended without a booking. 0 keeps them for ever.
type Retention struct {
	Events, Holds time.Duration
}

// PurgeReport counts what a purge deleted.
type PurgeReport struct {
	Events int `json:"events"`
	Holds  int `json:"holds"`
	// Deliveries counts webhook deliveries that had succeeded or failed
	// (kept as long as events).
	Deliveries int `json:"deliveries"`
}

// Allocations set parts of pools aside for sales channels.
type Allocations interface {
	// Allocate sets aside req.Quantity of a pool for req.Channel, taken
	// from what the general sale has free (ErrConflict if it has less:
	// allocations never exceed what is unsold), or changes the channel's
	// allocation to req.Quantity (ErrConflict below what the channel holds
	// and sold). ErrNotFound; ErrInvalid.
	Allocate(ctx context.Context, req AllocationRequest) (Pool, error)
	// EndAllocation gives what a channel has not sold of a pool back to
	// the general sale; what it holds goes back when released or expired.
	// ErrNotFound if the pool has no allocation for the channel.
	EndAllocation(ctx context.Context, pool, channel string) (Pool, error)
	// AllocateUnits sets req.Units of a group aside for req.Channel: from
	// then on only lines naming the channel take them. Each must be a unit
	// of the group, free, and in the general sale (or the channel's
	// already: setting it again changes nothing); else ErrUnavailable
	// naming the first that is not, and nothing changes. ErrNotFound;
	// ErrInvalid.
	AllocateUnits(ctx context.Context, req UnitAllocationRequest) (GroupAvailability, error)
	// EndUnitAllocation gives a channel's named units of a group back to
	// the general sale: the free ones at once, the held and sold ones
	// with them (when their hold ends, they are the general sale's).
	// ErrNotFound if the channel has no units there.
	EndUnitAllocation(ctx context.Context, group, channel string) (GroupAvailability, error)
}

// Store is every contract together: what a backend implements.
type Store interface {
	Catalog
	Allocations
	Payments
	Booking
	Feed
	Operations
	IdempotencyStore
	KeyStore
	WebhookStore
	RoomStore
	WaitlistStore
	Close() error
}

// ValidateSwaps checks an exchange's pairs (old unit → new): at least one,
// at most MaxUnitsOnLine, valid ids, no unit named twice.
func ValidateSwaps(swaps map[string]string) error {
	if len(swaps) == 0 || len(swaps) > MaxUnitsOnLine {
		return Errorf(CodeInvalid, "units must pair from 1 to %d units of the hold with the units to take instead", MaxUnitsOnLine)
	}
	seen := map[string]bool{}
	for old, nu := range swaps {
		for _, u := range []string{old, nu} {
			if err := ValidateID("unit", u); err != nil {
				return err
			}
			if seen[u] {
				return Errorf(CodeInvalid, "unit %q is named twice", u)
			}
			seen[u] = true
		}
	}
	return nil
}
