package holdfast

import (
	"context"
	"time"
)

// Idempotency errors.
const (
	// CodeIdempotencyMismatch: the key was used before for a different request.
	CodeIdempotencyMismatch Code = "idempotency_mismatch"
	// CodeIdempotencyInFlight: the first request with this key has not finished.
	CodeIdempotencyInFlight Code = "idempotency_in_flight"
)

// CodeIdempotencyKeyUsed says a deferred key (see Idempotency.Deferred)
// turned out to be in use already: the change was not made, and the
// caller looks the key up to answer (a replay, a mismatch, in flight).
// It never reaches a client.
const CodeIdempotencyKeyUsed Code = "idempotency_key_used"

var (
	ErrIdempotencyMismatch = &Error{Code: CodeIdempotencyMismatch, Line: -1}
	ErrIdempotencyInFlight = &Error{Code: CodeIdempotencyInFlight, Line: -1}
	ErrIdempotencyKeyUsed  = &Error{Code: CodeIdempotencyKeyUsed, Line: -1}
)

// IdempotencyTTL is how long a key is remembered with a success.
const IdempotencyTTL = 24 * time.Hour

// IdempotencyRefusalTTL is how long a key is remembered with a refusal
// (a 4xx): a retry within it replays the refusal; refusals cost nothing
// to make, so they are kept for less, and a flood of them is gone sooner.
const IdempotencyRefusalTTL = time.Hour

// StoredResponse is the first answer given for an idempotency key.
type StoredResponse struct {
	Status int
	Body   []byte
}

// Idempotency is an idempotency key claimed for one change. A store given
// one (see IdempotencyStore.Keyed) records the change's answer against the
// key in the same transaction as the change, and refuses the change
// (rolling it back) if the key is no longer this request's: so a key has
// exactly one effect, even if a retry took the key over from a request
// that stalled.
type Idempotency struct {
	Scope, Key string
	// Token identifies this request's claim on the key.
	Token string
	// Deferred: the key has not been claimed yet. The store claims it in
	// the change's own transaction — no transaction of its own first — and
	// returns ErrIdempotencyKeyUsed, changing nothing, if it is taken.
	Deferred    bool
	Fingerprint string
	// Render turns the change's result into the answer to store. The
	// store calls it inside the change's transaction.
	Render func(result any) StoredResponse
	// RenderError, when set, turns a refusal into the answer to store: a
	// store may record a refusal (sold out, unavailable, a limit) in the
	// transaction that decided it, instead of leaving it to a transaction
	// of the caller's after (Keyed.Answer then reports it).
	RenderError func(err error) StoredResponse
}

// Keyed is a store's catalog, bookings, keys and webhooks with one idempotency key:
// the change made through it records its answer under the key in its own
// transaction. A Keyed value serves one request.
type Keyed interface {
	Catalog
	Allocations
	Payments
	Booking
	KeyStore
	WebhookStore
	RoomStore
	WaitlistStore
	// Answer returns the answer the change recorded under the key — its
	// result, or a refusal recorded with RenderError — and false if no
	// change made through this value recorded one.
	Answer() (StoredResponse, bool)
}

// IdempotencyStore keeps idempotency keys.
type IdempotencyStore interface {
	// BeginIdempotent claims (scope, key) for a request with the given
	// fingerprint. It returns the token for the claim when the key is new
	// (or forgotten, or held by a request in flight for longer than
	// staleAfter, which is taken over); the stored response when the key
	// has one; ErrIdempotencyMismatch when the key was used with another
	// fingerprint; ErrIdempotencyInFlight while the first request runs.
	BeginIdempotent(ctx context.Context, scope, key, fingerprint string, staleAfter time.Duration) (token string, replay *StoredResponse, err error)
	// FinishIdempotent records the response of a request that changed
	// nothing (a refusal), so that a retry gets the same answer: on the
	// claim token holds, or as a new record if the key is unclaimed (a
	// deferred key). ErrIdempotencyKeyUsed, writing nothing, if another
	// request holds the key.
	FinishIdempotent(ctx context.Context, scope, key, fingerprint, token string, r StoredResponse) error
	// AbandonIdempotent forgets a claim whose request failed without an
	// answer worth replaying (the database was down), so a retry can run.
	AbandonIdempotent(ctx context.Context, scope, key, token string) error
	// PurgeIdempotency deletes keys older than IdempotencyTTL, and those
	// holding a refusal older than IdempotencyRefusalTTL.
	PurgeIdempotency(ctx context.Context) (int, error)
	// Keyed returns the store with its changes guarded by k (claimed with
	// BeginIdempotent, or Deferred).
	Keyed(k Idempotency) Keyed
}
