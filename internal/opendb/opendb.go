// Package opendb opens the store a database URL names, as the holdfast
// binary and its lab do: a SQLite path or a postgres:// URL, a strategy,
// Redis for redislock, shards beside a catalog.
package opendb

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/postgres"
	"github.com/holdfast/holdfast/redis"
	"github.com/holdfast/holdfast/shard"
	"github.com/holdfast/holdfast/sqlite"
)

// Options say which store to open and how (zero values: defaults).
type Options struct {
	// DB is a SQLite file path or a postgres:// URL (with Shards: the
	// catalog's).
	DB string
	// Shards are further PostgreSQL primaries, in their fixed order.
	Shards     []string
	Redis      string // redislock's Redis URL
	Strategy   holdfast.Strategy
	Config     holdfast.Config
	NoCoalesce bool
	Conns      int           // PostgreSQL connections (default the driver's)
	LockTTL    time.Duration // redislock
	// Think pauses a strategy between its read and its write (fault
	// injection: it widens the window the unsafe strategy loses in).
	Think  time.Duration
	Logger *slog.Logger
	Clock  holdfast.Clock
}

// Open opens the store o names, applying migrations.
func Open(ctx context.Context, o Options) (holdfast.Store, error) {
	st := o.Strategy
	if len(o.Shards) > 0 {
		return OpenShards(ctx, o.DB, o.Shards, postgres.Options{Strategy: st, Config: o.Config, NoCoalesce: o.NoCoalesce,
			Logger: o.Logger, Clock: o.Clock, MaxConns: int32(min(max(o.Conns, 1), 1000))})
	}
	if !postgres.IsURL(o.DB) {
		return sqlite.Open(ctx, o.DB, sqlite.Options{Strategy: st, Config: o.Config, Think: o.Think, NoCoalesce: o.NoCoalesce, Logger: o.Logger, Clock: o.Clock})
	}
	opts := postgres.Options{Strategy: st, Config: o.Config, Think: o.Think, NoCoalesce: o.NoCoalesce, Logger: o.Logger, Clock: o.Clock}
	if o.Conns > 0 {
		opts.MaxConns = int32(min(o.Conns, 1000))
	}
	if st == holdfast.RedisLock && o.Redis != "" {
		client, err := redis.Open(ctx, o.Redis)
		if err != nil {
			return nil, fmt.Errorf("redis: %w", err)
		}
		opts.Locker = redis.NewLocker(client, redis.Config{TTL: o.LockTTL})
	}
	return postgres.Open(ctx, o.DB, opts)
}

// OpenShards opens the catalog db and every shard as one store.
func OpenShards(ctx context.Context, db string, shards []string, opts postgres.Options) (*shard.Set, error) {
	if !postgres.IsURL(db) {
		return nil, fmt.Errorf("--shard needs --db to be a postgres:// URL: the catalog")
	}
	for _, u := range shards {
		if !postgres.IsURL(u) {
			return nil, fmt.Errorf("--shard %q is not a postgres:// URL", Describe(u))
		}
	}
	if opts.Strategy != "" && opts.Strategy != holdfast.Atomic {
		return nil, fmt.Errorf("--shard takes the atomic strategy only")
	}
	return postgres.OpenShards(ctx, append([]string{db}, shards...), opts)
}

// OpenExisting opens the database as it is, for commands that only read:
// no migration, and a missing SQLite file or an old schema is an error.
func OpenExisting(ctx context.Context, db string, shards []string) (holdfast.Store, error) {
	if !postgres.IsURL(db) {
		return sqlite.Open(ctx, db, sqlite.Options{Existing: true, NoCoalesce: true})
	}
	if len(shards) > 0 {
		return OpenShards(ctx, db, shards, postgres.Options{NoMigrate: true, NoCoalesce: true, MaxConns: 4, ResolveEvery: -1})
	}
	return postgres.Open(ctx, db, postgres.Options{NoMigrate: true, NoCoalesce: true, MaxConns: 4})
}

// Describe names the database for output without its password.
func Describe(db string) string {
	if postgres.IsURL(db) {
		if u, err := url.Parse(db); err == nil {
			return u.Redacted()
		}
		return "postgres"
	}
	return "sqlite:" + db
}
