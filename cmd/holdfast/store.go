package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/internal/opendb"
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

// options are the store --db and the other storage flags name, with
// cfg; callers add the logger, clock and faults.
func (f *dbFlags) options(cfg holdfast.Config) (opendb.Options, error) {
	st, err := holdfast.ParseStrategy(f.strategy)
	return opendb.Options{DB: f.db, Shards: f.shards, Redis: f.redis, Strategy: st, Config: cfg,
		NoCoalesce: !f.coalesce, Conns: f.conns, LockTTL: f.lockTTL}, err
}

// open opens the store the flags name, applying migrations.
func (f *dbFlags) open(ctx context.Context, cfg holdfast.Config) (holdfast.Store, error) {
	o, err := f.options(cfg)
	if err != nil {
		return nil, err
	}
	return opendb.Open(ctx, o)
}

// openExisting opens the database --db names as it is, for commands that
// only read: no migration, and a missing SQLite file or an old schema is
// an error.
func (f *dbFlags) openExisting(ctx context.Context) (holdfast.Store, error) {
	return opendb.OpenExisting(ctx, f.db, f.shards)
}
