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
}

// KeyStore keeps API keys.
type KeyStore interface {
	// CreateKey stores a key. ErrInvalid for a bad name; ErrConflict if
	// the id exists.
	CreateKey(ctx context.Context, k APIKey) (APIKey, error)
	// APIKey returns a key by id. ErrNotFound.
	APIKey(ctx context.Context, id string) (APIKey, error)
}
