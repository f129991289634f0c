package holdfast

import (
	"context"
	"time"
)

// Room is a waiting room in front of a sale: while it protects a pool or a
// group, a hold on it needs an admission, and admissions are handed out
// in queue order at a set rate. Everyone who joins before OpensAt is
// ordered by the room's draw (see DrawOrder: no advantage to a bot
// joining at the last millisecond, and anyone can check it); after it,
// first come, first served.
type Room struct {
	ID     string   `json:"id"`
	Pools  []string `json:"pools"`
	Groups []string `json:"groups"`
	// OpensAt is when admissions start.
	OpensAt time.Time `json:"opens_at"`
	// AdmitPerSecond is the admission rate; AdmitTTLSeconds how long an
	// admission is valid; MaxInside bounds the admitted who are not done
	// (a hold made and then confirmed, released or expired, or the
	// admission expired, is done).
	AdmitPerSecond  float64 `json:"admit_per_second"`
	AdmitTTLSeconds int64   `json:"admit_ttl_seconds"`
	MaxInside       int64   `json:"max_inside"`
	// MaxPerKey bounds the places one client key may take (0: no
	// bound). A shop's backend speaking for all its buyers with one key
	// needs none; set it when clients are apps you do not run.
	MaxPerKey int64 `json:"max_per_key"`
	// MaxUnitsPerAdmission bounds what one admission buys: a hold or
	// booking made with it takes at most this many units, a waitlist
	// join asks for at most this many (0: no bound).
	MaxUnitsPerAdmission int64 `json:"max_units_per_admission"`
	// Admit is how the room admits: AdmitRate (the default) by its rate
	// and MaxInside; AdmitStock also keeps the admissions out and unused,
	// times MaxUnitsPerAdmission, within what its pools and groups have
	// free: nobody is let in to a sale that cannot sell them anything,
	// and admissions resume when held capacity comes back.
	Admit     AdmitMode `json:"admit"`
	CreatedAt time.Time `json:"created_at"`

	// The draw (see DrawOrder). SeedCommitment is the hex SHA-256 of the
	// room's random seed, fixed at creation, before anyone joins; Seed
	// (hex) is shown from opens_at on. Rooms made before draws existed
	// have neither.
	SeedCommitment string `json:"seed_commitment,omitempty"`
	Seed           string `json:"seed,omitempty"`

	// As of the read: waiting, admitted and not done, and whether the
	// protected inventory is sold out (then no one else is admitted and
	// everyone waiting is told so).
	Waiting int64 `json:"waiting"`
	Inside  int64 `json:"inside"`
	SoldOut bool  `json:"sold_out"`
	// AdmittedThrough is the rank of the last place admitted: a ranked
	// waiting place's position is its Rank less this.
	AdmittedThrough int64 `json:"-"`
}

// AdmitMode is how a room admits.
type AdmitMode string

const (
	AdmitRate  AdmitMode = "rate"
	AdmitStock AdmitMode = "stock"
)

// TicketStatus is where a place in a room stands.
type TicketStatus string

const (
	TicketWaiting  TicketStatus = "waiting"
	TicketAdmitted TicketStatus = "admitted"
	// TicketDone: the admission was used for a hold that has ended, or
	// it expired unused.
	TicketDone    TicketStatus = "done"
	TicketSoldOut TicketStatus = "sold_out"
)

// RoomTicket is one holder's place in a room.
type RoomTicket struct {
	Ticket string       `json:"ticket"`
	Room   string       `json:"room"`
	Holder string       `json:"holder"`
	Status TicketStatus `json:"status"`
	// Position is 1 for the next to be admitted (0 once not waiting);
	// EstimatedWaitSeconds follows from it and the rate.
	Position             int64   `json:"position"`
	EstimatedWaitSeconds float64 `json:"estimated_wait_seconds"`
	// Admission is the token a hold on the room's inventory carries
	// (Holdfast-Admission header or "admission"), bound to Holder, valid
	// until AdmissionExpiresAt, for one hold. Only the ticket's own
	// reads show it.
	Admission          string     `json:"admission,omitempty"`
	AdmissionExpiresAt *time.Time `json:"admission_expires_at,omitempty"`
	// HoldID is the hold the admission was used for.
	HoldID string `json:"hold_id,omitempty"`
	Owner  string `json:"-"`
	// Place is the ticket's number in the queue, from 1, fixed when the
	// room opens (0 before): the draw's order for those who joined
	// before opening, join order after.
	Place int64 `json:"place,omitempty"`
	// Rank is the place's number in the queue once the room opened (0
	// before).
	Rank int64 `json:"-"`
}

// RoomDraw is a room's published draw: every ticket taken before
// opening, as the SHA-256 of its id with its HMAC and its place, in
// place order. A buyer checks their own line; anyone checks the order
// (VerifyDraw). Ticket is filled in for the admin only.
type RoomDraw struct {
	Room           string      `json:"room"`
	SeedCommitment string      `json:"seed_commitment"`
	Seed           string      `json:"seed"`
	Total          int         `json:"total"`
	Entries        []DrawEntry `json:"entries"`
}

// DrawEntry is one ticket of a draw.
type DrawEntry struct {
	TicketSHA256 string `json:"ticket_sha256"`
	Draw         string `json:"draw"`
	Place        int64  `json:"place"`
	Ticket       string `json:"ticket,omitempty"`
}

// RoomStore keeps waiting rooms.
type RoomStore interface {
	// CreateRoom creates a room. ErrInvalid; ErrNotFound for a pool or
	// group that does not exist; ErrConflict if the id exists or a pool
	// or group is already behind another room.
	CreateRoom(ctx context.Context, r Room) (Room, error)
	// Room returns a room with its counts. ErrNotFound.
	Room(ctx context.Context, id string) (Room, error)
	// Rooms returns every room with its counts, by id: what an operator
	// watches (and /metrics exports) during a sale.
	Rooms(ctx context.Context) ([]Room, error)
	// JoinRoom gives holder a place (the same place on every call for
	// the same holder and owner). ErrNotFound; ErrQuotaExceeded past the
	// key's cap of places.
	JoinRoom(ctx context.Context, room, holder, owner string) (RoomTicket, error)
	// RoomTicket reads a place. ErrNotFound.
	RoomTicket(ctx context.Context, room, ticket string) (RoomTicket, error)
	// RoomDraw publishes the draw of a room that has opened. ErrNotFound;
	// ErrInvalidState before opens_at (the seed is still secret).
	RoomDraw(ctx context.Context, room string) (RoomDraw, error)
}

// Validate checks a room to be created.
func (r Room) Validate() error {
	if err := ValidateID("room", r.ID); err != nil {
		return err
	}
	if len(r.Pools)+len(r.Groups) == 0 {
		return Errorf(CodeInvalid, "a room protects at least one pool or group")
	}
	if len(r.Pools)+len(r.Groups) > MaxLines {
		return Errorf(CodeInvalid, "a room protects at most %d pools and groups", MaxLines)
	}
	for _, p := range r.Pools {
		if err := ValidateID("pool", p); err != nil {
			return err
		}
	}
	for _, g := range r.Groups {
		if err := ValidateID("group", g); err != nil {
			return err
		}
	}
	switch {
	case r.AdmitPerSecond <= 0 || r.AdmitPerSecond > 100000:
		return Errorf(CodeInvalid, "admit_per_second must be above 0 and at most 100000")
	case r.AdmitTTLSeconds < 1 || r.AdmitTTLSeconds > 86400:
		return Errorf(CodeInvalid, "admit_ttl_seconds must be from 1 to 86400")
	case r.MaxInside < 1 || r.MaxInside > MaxCapacity:
		return Errorf(CodeInvalid, "max_inside must be from 1 to %d", int64(MaxCapacity))
	case r.MaxPerKey < 0 || r.MaxPerKey > MaxCapacity:
		return Errorf(CodeInvalid, "max_per_key must be from 0 (no bound) to %d", int64(MaxCapacity))
	case r.MaxUnitsPerAdmission < 0 || r.MaxUnitsPerAdmission > MaxCapacity:
		return Errorf(CodeInvalid, "max_units_per_admission must be from 0 (no bound) to %d", int64(MaxCapacity))
	case r.OpensAt.IsZero():
		return Errorf(CodeInvalid, "opens_at is required (RFC 3339)")
	case r.Admit != "" && r.Admit != AdmitRate && r.Admit != AdmitStock:
		return Errorf(CodeInvalid, "admit must be rate or stock")
	case r.Admit == AdmitStock && r.MaxUnitsPerAdmission == 0:
		// Stock is counted in admissions × what one buys: without a
		// bound, one admission could buy everything.
		return Errorf(CodeInvalid, "admit stock needs max_units_per_admission (what one admission buys, counted against the stock)")
	}
	return nil
}
