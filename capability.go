package holdfast

import (
	"context"
	"slices"
)

// The optional contracts: what a backend may offer beyond Store, each a
// small interface its callers find by type assertion (the HTTP server,
// the metrics, the background services). A backend declares the ones it
// offers with Capabilities, and the conformance suite (holdfasttest)
// checks that every declared capability is implemented and works, and
// that nothing implemented goes undeclared — as a River driver declares
// what its database supports.

// Capability names an optional contract.
type Capability string

const (
	// CapLayouts: GroupLayouts, a group's venue map (GET
	// /v1/groups/{id}/layout; without it the API answers unsupported).
	CapLayouts Capability = "layouts"
	// CapUnitPages: UnitPages, a big group's units a page at a time and
	// their statuses in one string (the venue map's reads).
	CapUnitPages Capability = "unit_pages"
	// CapEventTail: EventTail, the cursor of the feed's newest event (a
	// stream starts there without reading the feed from its start).
	CapEventTail Capability = "event_tail"
	// CapConfig: Configured, the hold TTLs the store was opened with (the
	// API validates requests against them).
	CapConfig Capability = "config"
	// CapStats: StatsReporter, connection and batch counts for /metrics.
	CapStats Capability = "stats"
	// CapWebhookQueue: the store keeps the webhook delivery queue
	// (webhook.Queue): a server runs a dispatcher on it.
	CapWebhookQueue Capability = "webhook_queue"
)

// AllCapabilities lists every capability, in a stable order.
var AllCapabilities = []Capability{CapLayouts, CapUnitPages, CapEventTail, CapConfig, CapStats, CapWebhookQueue}

// Capable is a backend that declares its capabilities.
type Capable interface {
	// Capabilities lists the optional contracts the store offers: it
	// implements each, and no other.
	Capabilities() []Capability
}

// Declares reports whether store declares capability c.
func Declares(store any, c Capability) bool {
	s, ok := store.(Capable)
	return ok && slices.Contains(s.Capabilities(), c)
}

// GroupLayouts reads a group's layout (CapLayouts).
type GroupLayouts interface {
	// GroupLayout returns the group's layout, nil if it has none.
	// ErrNotFound.
	GroupLayout(ctx context.Context, group string) (*Layout, error)
}

// UnitPages reads a group's units a page at a time (CapUnitPages).
type UnitPages interface {
	// UnitsPage lists up to limit of a group's units after the unit id
	// after (ordered by id, filtered by status when set); next is the
	// last id listed when there may be more, else "". ErrNotFound.
	UnitsPage(ctx context.Context, group string, status UnitStatus, after string, limit int) ([]Unit, string, error)
	// UnitStatuses returns the group's statuses as one character per
	// unit, in unit id order: f free, a free but set aside for a sales
	// channel, h held, c confirmed — a 100,000-seat map in 100 KB.
	// ErrNotFound.
	UnitStatuses(ctx context.Context, group string) (string, error)
}

// EventTail reads where the feed ends (CapEventTail).
type EventTail interface {
	// LastEventCursor returns the cursor of the newest event a feed read
	// can see now ("" for an empty feed): a stream that starts there
	// misses no event committed later.
	LastEventCursor(ctx context.Context) (string, error)
}

// Configured reports the configuration a store was opened with
// (CapConfig).
type Configured interface {
	// Config returns the store's hold lifetime bounds, defaults filled in.
	Config() Config
}

// KeyedFinisher is a keyed view that records the final answer of a
// change itself (FinishIdempotent): a store spread over several
// databases records it where the change was tried, so that a retry's
// claim of the key finds it there. The HTTP server prefers it to the
// store's own FinishIdempotent.
type KeyedFinisher interface {
	FinishIdempotent(ctx context.Context, scope, key, fingerprint, token string, r StoredResponse) error
}
