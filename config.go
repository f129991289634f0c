package holdfast

import (
	"cmp"
	"time"
)

// Limits bound what one request may ask for. They are checked before any
// database work, so a bad request changes nothing.
const (
	MaxLines       = 100       // lines in one hold
	MaxUnitsOnLine = 100       // unit ids on one {units} line
	MaxQuantity    = 1_000_000 // quantity on a pool line, and any on a group line
	MaxCapacity    = 1 << 40   // a pool's capacity
	MaxHolderLen   = 200       // characters in a holder reference
	MaxIDLen       = 128       // characters in a pool, group or unit id
	MaxNameLen     = 200       // characters in a pool or group name
	MaxPaymentRef  = 200       // characters in a payment reference
	MaxUnitsPerAdd = 10_000    // unit ids in one AddUnits call
)

// Config bounds hold lifetimes. The zero value is the documented default.
type Config struct {
	// DefaultTTL is a hold's lifetime when the request names none (10 min).
	DefaultTTL time.Duration
	// MaxTTL is the longest TTL a hold or an extension may ask for (1 h).
	MaxTTL time.Duration
	// MaxLifetime is how long after creation a hold may be extended to (2 h):
	// extensions cannot keep capacity held for ever.
	MaxLifetime time.Duration
}

// WithDefaults fills unset fields with the defaults.
func (c Config) WithDefaults() Config {
	c.DefaultTTL = cmp.Or(c.DefaultTTL, 10*time.Minute)
	c.MaxTTL = cmp.Or(c.MaxTTL, time.Hour)
	c.MaxLifetime = cmp.Or(c.MaxLifetime, 2*time.Hour)
	if c.DefaultTTL > c.MaxTTL {
		c.DefaultTTL = c.MaxTTL
	}
	if c.MaxLifetime < c.MaxTTL {
		c.MaxLifetime = c.MaxTTL
	}
	return c
}
