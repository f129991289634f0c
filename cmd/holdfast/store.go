package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/postgres"
	"github.com/holdfast/holdfast/redis"
	"github.com/holdfast/holdfast/sqlite"
)

// dbFlags are the storage flags the server-side commands share.
type dbFlags struct {
	db       string
	shards   []string
	strategy string
	redis    string
	coalesce bool
	conns    int
	lockTTL  time.Duration
}

func (f *dbFlags) register(fs *pflag.FlagSet, e env) {
	fs.StringVar(&f.db, "db", envOr(e, "HOLDFAST_DB", "./holdfast.db"),
		"database: a SQLite file path or a postgres:// URL (env HOLDFAST_DB)")
	fs.StringArrayVar(&f.shards, "shard", envFields(e, "HOLDFAST_SHARDS"),
		"another PostgreSQL primary to spread partitions (events) over, beside --db, which holds the catalog; repeat for each, always in the same order, new ones last (env HOLDFAST_SHARDS, separated by spaces)")
	fs.StringVar(&f.strategy, "strategy", envOr(e, "HOLDFAST_STRATEGY", string(holdfast.Atomic)),
		"how claims are made atomic: atomic, pessimistic, optimistic, serializable, advisory, redislock, unsafe (env HOLDFAST_STRATEGY)")
	fs.BoolVar(&f.coalesce, "coalesce", envBool(e, "HOLDFAST_COALESCE", true),
		"combine concurrent holds and lifecycle changes (every shape) into shared transactions (atomic strategy; env HOLDFAST_COALESCE)")
	fs.IntVar(&f.conns, "db-conns", envInt(e, "HOLDFAST_DB_CONNS", 32),
		"PostgreSQL connections per server: coalescing runs one transaction per hot pool at a time, so a few dozen serve thousands of clients; keep instances × db-conns under max_connections (env HOLDFAST_DB_CONNS)")
	fs.StringVar(&f.redis, "redis", envOr(e, "HOLDFAST_REDIS", ""), "Redis URL (redis://host:6379/0), for the redislock strategy (env HOLDFAST_REDIS)")
	fs.DurationVar(&f.lockTTL, "lock-ttl", envDuration(e, "HOLDFAST_LOCK_TTL", 5*time.Second),
		"redislock: how long a lock outlives a stalled holder; the fencing token makes a stalled holder's late write fail (env HOLDFAST_LOCK_TTL)")
}

// secretVar registers a flag for a secret whose default comes from the
// environment variable key: --help says whether the variable is set,
// never its value (pflag would print a default, the secret, in every
// command's help).
func secretVar(fs *pflag.FlagSet, p *string, name string, e env, key, usage string) {
	state := "not set"
	if e.getenv(key) != "" {
		state = "set"
	}
	fs.StringVar(p, name, "", fmt.Sprintf("%s (env %s: %s)", usage, key, state))
	*p = e.getenv(key)
}

func envOr(e env, key, def string) string {
	if v := e.getenv(key); v != "" {
		return v
	}
	return def
}

// The env helpers read a setting's default from the environment. A value
// that does not parse is an error at start-up (see env.check), never a
// silent fall back to the default.

func envDuration(e env, key string, def time.Duration) time.Duration {
	return envParse(e, key, def, "a duration such as 30s", time.ParseDuration)
}

func envFloat(e env, key string, def float64) float64 {
	return envParse(e, key, def, "a number", func(v string) (float64, error) { return strconv.ParseFloat(v, 64) })
}

func envInt(e env, key string, def int) int {
	return envParse(e, key, def, "an integer", strconv.Atoi)
}

// days is a duration flag that also takes whole days ("30d").
type days struct{ d *time.Duration }

func (v days) String() string {
	if v.d == nil {
		return ""
	}
	if *v.d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(*v.d/(24*time.Hour)), 10) + "d"
	}
	return v.d.String()
}

func (v days) Set(s string) error {
	d, err := parseDays(s)
	if err != nil {
		return err
	}
	*v.d = d
	return nil
}

func (v days) Type() string { return "duration" }

func parseDays(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		d, err := strconv.ParseInt(n, 10, 64)
		if err != nil || d < 0 {
			return 0, fmt.Errorf("%q is not a number of days", s)
		}
		return time.Duration(d) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err == nil && d < 0 {
		err = fmt.Errorf("%q is negative", s)
	}
	return d, err
}

func envDays(e env, key string, def time.Duration) time.Duration {
	return envParse(e, key, def, "a duration such as 30d or 720h", parseDays)
}

func envBool(e env, key string, def bool) bool {
	return envParse(e, key, def, "true or false", strconv.ParseBool)
}

func envParse[T any](e env, key string, def T, want string, parse func(string) (T, error)) T {
	v := e.getenv(key)
	if v == "" {
		return def
	}
	x, err := parse(v)
	if err != nil {
		e.bad(fmt.Errorf("%s=%q is not %s", key, v, want))
		return def
	}
	return x
}

// envFields reads a list of values separated by spaces (URLs may hold
// commas: several hosts).
func envFields(e env, key string) []string { return strings.Fields(e.getenv(key)) }

// open opens the store --db names, applying migrations, with the
// program's logger and clock (tu's other fields come from the flags).
func (f *dbFlags) open(ctx context.Context, cfg holdfast.Config, tu tuning) (holdfast.Store, error) {
	st, err := holdfast.ParseStrategy(f.strategy)
	if err != nil {
		return nil, err
	}
	tu.conns, tu.lockTTL = f.conns, f.lockTTL
	if len(f.shards) > 0 {
		return f.openShards(ctx, st, postgres.Options{Strategy: st, Config: cfg, NoCoalesce: !f.coalesce, Logger: tu.log, Clock: tu.clock, MaxConns: int32(min(max(f.conns, 1), 1000))})
	}
	return openStore(ctx, f.db, f.redis, st, cfg, tu.think, !f.coalesce, tu)
}

// openShards opens --db and every --shard as one store.
func (f *dbFlags) openShards(ctx context.Context, st holdfast.Strategy, opts postgres.Options) (holdfast.Store, error) {
	if !postgres.IsURL(f.db) {
		return nil, fmt.Errorf("--shard needs --db to be a postgres:// URL: the catalog")
	}
	for _, u := range f.shards {
		if !postgres.IsURL(u) {
			return nil, fmt.Errorf("--shard %q is not a postgres:// URL", describe(u))
		}
	}
	if st != holdfast.Atomic {
		return nil, fmt.Errorf("--shard takes the atomic strategy only")
	}
	return postgres.OpenShards(ctx, append([]string{f.db}, f.shards...), opts)
}

// openExisting opens the database --db names as it is, for commands that
// only read: no migration, and a missing SQLite file or an old schema is
// an error.
func (f *dbFlags) openExisting(ctx context.Context) (holdfast.Store, error) {
	if !postgres.IsURL(f.db) {
		return sqlite.Open(ctx, f.db, sqlite.Options{Existing: true, NoCoalesce: true})
	}
	if len(f.shards) > 0 {
		return f.openShards(ctx, holdfast.Atomic, postgres.Options{NoMigrate: true, NoCoalesce: true, MaxConns: 4, ResolveEvery: -1})
	}
	return postgres.Open(ctx, f.db, postgres.Options{NoMigrate: true, NoCoalesce: true, MaxConns: 4})
}

// tuning is what serve may set beyond the defaults (zero values: defaults).
type tuning struct {
	conns   int
	lockTTL time.Duration
	// think pauses a strategy between its read and its write (fault
	// injection: it widens the window the unsafe strategy loses in).
	think time.Duration
	log   *slog.Logger
	clock holdfast.Clock
}

// openStore opens a store of strategy st on db (a SQLite path or a
// postgres:// URL), with Redis at redisURL for redislock, pausing think
// between each claim's check and write.
func openStore(ctx context.Context, db, redisURL string, st holdfast.Strategy, cfg holdfast.Config, think time.Duration, noCoalesce bool, tu tuning) (holdfast.Store, error) {
	if !postgres.IsURL(db) {
		return sqlite.Open(ctx, db, sqlite.Options{Strategy: st, Config: cfg, Think: think, NoCoalesce: noCoalesce, Logger: tu.log, Clock: tu.clock})
	}
	opts := postgres.Options{Strategy: st, Config: cfg, Think: think, NoCoalesce: noCoalesce, Logger: tu.log, Clock: tu.clock}
	if tu.conns > 0 {
		opts.MaxConns = int32(min(tu.conns, 1000))
	}
	if st == holdfast.RedisLock && redisURL != "" {
		client, err := redis.Open(ctx, redisURL)
		if err != nil {
			return nil, fmt.Errorf("redis: %w", err)
		}
		opts.Locker = redis.NewLocker(client, redis.Config{TTL: tu.lockTTL})
	}
	return postgres.Open(ctx, db, opts)
}

// describe names the database for output without its password.
func describe(db string) string {
	if postgres.IsURL(db) {
		if u, err := url.Parse(db); err == nil {
			return u.Redacted()
		}
		return "postgres"
	}
	return "sqlite:" + db
}
