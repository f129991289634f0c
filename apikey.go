package holdfast

import (
	"context"
	"time"
)

// Role is what an API key may do.
type Role string

const (
	// RoleAdmin manages pools, groups, units and keys, and may do
	// everything a client may.
	RoleAdmin Role = "admin"
	// RoleClient creates holds and sees and changes only its own.
	RoleClient Role = "client"
)

// APIKey is a stored client key. The secret is never stored: only its
// SHA-256, compared in constant time.
type APIKey struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Role      Role      `json:"role"`
	Hash      []byte    `json:"-"`
	CreatedAt time.Time `json:"created_at"`
	// LastUsedAt is when the key last authenticated a request (recorded
	// at most once a minute per server); nil if never.
	LastUsedAt *time.Time `json:"last_used_at"`
	// RevokedAt is when the key was revoked; a revoked key authenticates
	// nothing. nil while the key is live.
	RevokedAt *time.Time `json:"revoked_at"`
	// MaxHeldUnits is the key's quota: the tickets and units its holds may
	// have in held state at once (0: no quota). Confirming frees quota.
	MaxHeldUnits int64 `json:"max_held_units"`
	// HeldUnits is what the key's holds have held now, against the quota.
	HeldUnits int64 `json:"held_units"`
	// Channel, when set, binds a client key to a sales channel: its holds
	// and bookings take only from its channel's allocations (see
	// Allocation), never from the general sale.
	Channel string `json:"channel,omitempty"`
	// Secret is the bearer key, set only on what creating a key through
	// the API answers (http.Client's CreateKey): the server keeps only
	// Hash, and shows the secret this once.
	Secret string `json:"-"`
}

// KeyStore keeps API keys.
type KeyStore interface {
	// CreateKey stores a key. ErrInvalid for a bad name; ErrConflict if
	// the id exists.
	CreateKey(ctx context.Context, k APIKey) (APIKey, error)
	// APIKey returns a key by id, revoked or not. ErrNotFound.
	APIKey(ctx context.Context, id string) (APIKey, error)
	// Keys lists every key, oldest first.
	Keys(ctx context.Context) ([]APIKey, error)
	// RevokeKey revokes a key for good and returns it; revoking a revoked
	// key changes nothing. ErrNotFound.
	RevokeKey(ctx context.Context, id string) (APIKey, error)
	// TouchKey records that the key authenticated a request now.
	TouchKey(ctx context.Context, id string) error
	// SetKeyQuota sets a key's MaxHeldUnits (0: none). A quota below what
	// the key holds now refuses new holds until enough are confirmed,
	// released or expired. ErrNotFound; ErrInvalid for a negative quota.
	SetKeyQuota(ctx context.Context, id string, maxHeldUnits int64) (APIKey, error)
}

// KeyOwner is the owner a key's holds, entries and places carry
// (HoldRequest.Owner): what revoking the key ends.
func KeyOwner(id string) string { return "key:" + id }
