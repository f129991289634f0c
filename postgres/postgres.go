// Package postgres is holdfast on PostgreSQL, through pgx v5 and pgxpool:
// the backend for several server instances sharing one database.
//
// Transactions run at READ COMMITTED: every claim is a conditional UPDATE
// whose WHERE clause PostgreSQL re-evaluates on the newest row version after
// waiting for a concurrent writer, which is exactly the check-and-act in one
// step that the atomic strategy needs. Transact retries serialization
// failures and deadlocks (neither is expected by design) a bounded number of
// times with jitter.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/internal/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

func init() {
	fsys, _ := fs.Sub(migrations, "migrations")
	dialect.SchemaVersion = sqlstore.NewestMigration(fsys)
}

// Strategies lists the strategies this backend implements (redislock
// needs Options.Locker).
var Strategies = []holdfast.Strategy{holdfast.Atomic, holdfast.Pessimistic, holdfast.Optimistic,
	holdfast.Serializable, holdfast.Advisory, holdfast.RedisLock, holdfast.Unsafe}

// Options configure Open.
type Options struct {
	Strategy holdfast.Strategy
	Config   holdfast.Config
	// MaxConns sizes the connection pool (default 32). Claims on one hot
	// pool queue on its row lock, not on connections; cold pools gain from
	// more connections up to what PostgreSQL's max_connections allows for
	// all instances together.
	MaxConns int32
	// Think is the strategies' pause between check and write (the lab).
	Think time.Duration
	// NoCoalesce turns off the batching of concurrent claims and lifecycle
	// changes (every shape) into shared transactions (on by default with
	// the atomic strategy): each request then runs a transaction of its own.
	NoCoalesce bool
	// Locker is the lock service of the redislock strategy (package redis).
	Locker Locker
	// Logger receives what the store recovers from (default slog.Default).
	Logger *slog.Logger
	// Clock is this server's wall clock (default time.Now). It stamps hold
	// ids and audit reports; expiry is the database clock's alone.
	Clock holdfast.Clock
	// NoMigrate opens the database as it is, for commands that only read
	// (holdfast audit): a schema older than this build is an error.
	NoMigrate bool
	// BeforeWrite is a test hook of the redislock strategy.
	BeforeWrite func(context.Context)

	// ResolveEvery is how often OpenShards' store ends the prepared
	// parts of holds across shards left older than ResolveAfter by a
	// coordinator that died (defaults 2 s and 5 s; negative: never, for
	// tests that watch them).
	ResolveEvery, ResolveAfter time.Duration

	holdPrefix string        // a shard's (see OpenShards)
	cacheFor   time.Duration // sqlstore.Env.CacheFor (tests)
}

// Locker is a distributed lock with fencing tokens: redis.Locker.
type Locker interface {
	// Lock takes the lock on key, waiting for it until ctx's deadline, and
	// returns a fencing token larger than any it returned for key before,
	// and the function that releases the lock (only if still ours).
	Lock(ctx context.Context, key string) (fence int64, unlock func(), err error)
	// Raise makes the next token for key larger than floor.
	Raise(ctx context.Context, key string, floor int64) error
}

// engine is the SQL engine both backends share; embedded under this name,
// its methods are the Store's without its type showing in the API.
type engine = sqlstore.Store

// IsURL reports whether db names a PostgreSQL database (postgres:// or
// postgresql://) rather than a SQLite file.
func IsURL(db string) bool {
	return strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://")
}

// Store is a holdfast.Store on PostgreSQL.
type Store struct {
	*engine
	pool *pgxpool.Pool
}

var _ holdfast.Store = (*Store)(nil)

// Open connects to the database at url (postgres://…), applies the
// migrations (under an advisory lock, so several servers starting at once
// migrate once) and returns a Store.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	st, err := sqlstore.ChooseStrategy("postgres", opts.Strategy, Strategies)
	if err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	// A server that vanishes mid-transaction (crashed, cut off) must not
	// keep a hot row locked until TCP gives up, hours later.
	if _, set := cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"]; !set {
		cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = "60000"
	}
	cfg.MaxConns = opts.MaxConns
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 32
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if !opts.NoMigrate {
		if err := Migrate(ctx, pool); err != nil {
			pool.Close()
			return nil, err
		}
	}
	c, err := sqlstore.NewClaimer(st, dialect, sqlstore.Options{Think: opts.Think, Locker: opts.Locker, BeforeWrite: opts.BeforeWrite})
	if err != nil {
		pool.Close()
		return nil, err
	}
	s := &Store{engine: sqlstore.New(&db{pool: pool}, dialect, opts.Config, c, !opts.NoCoalesce, sqlstore.Env{Logger: opts.Logger, Clock: opts.Clock, HoldPrefix: opts.holdPrefix, Routed: opts.holdPrefix != "", CacheFor: opts.cacheFor}), pool: pool}
	if opts.NoMigrate {
		if err := s.Ready(ctx); err != nil {
			s.Close()
			return nil, fmt.Errorf("postgres: %w", err)
		}
	}
	return s, nil
}

// Migrate applies the embedded migrations, each in its own transaction,
// holding a session advisory lock so concurrent callers take turns.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	sqlDB := stdlib.OpenDBFromPool(pool)
	defer sqlDB.Close()
	// The lock is per schema (advisory locks are already per database), so
	// instances sharing a schema migrate one at a time while unrelated
	// schemas — one per test — do not wait on each other.
	var schema string
	if err := pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	h := fnv.New64a()
	h.Write([]byte("holdfast migrations " + schema))
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(int64(h.Sum64())), lock.WithLockTimeout(1, 300))
	if err != nil {
		return err
	}
	fsys, _ := fs.Sub(migrations, "migrations")
	p, err := goose.NewProvider(goose.DialectPostgres, sqlDB, fsys, goose.WithSessionLocker(locker))
	if err != nil {
		return err
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	return nil
}

// execRaw runs a statement bypassing the engine, for tests that show the
// database refusing a buggy write (reached through internal/rawsql).
func (s *Store) execRaw(ctx context.Context, query string, args ...any) error {
	_, err := s.pool.Exec(ctx, query, args...)
	return err
}

// ConnPool exposes the connection pool, for readiness checks and metrics.
func (s *Store) ConnPool() *pgxpool.Pool { return s.pool }

var dialect = sqlstore.Dialect{
	Name:       "postgres",
	ListSelect: func(n int) string { return fmt.Sprintf("SELECT unnest($%d::text[]) AS value", n) },
	ListArg:    func(ids []string) any { return ids },
	RowLocks:   true,
	ForUpdate:  " FOR UPDATE",
	// See migrations/00003: the feed goes by (xid, seq) up to the oldest
	// running transaction.
	EventXid:      "CAST(CAST(xid AS text) AS bigint)",
	EventsVisible: " AND xid < pg_snapshot_xmin(pg_current_snapshot())",
	// A row comparison on the indexed xid8 itself: a comparison on the
	// bigint cast of it cannot use events_feed and read the whole outbox
	// on every page (every stream poll, once per viewer).
	EventAfter:        "(xid, seq) > (CAST(CAST(CAST($1 AS bigint) AS text) AS xid8), $2)",
	EventOrder:        "xid, seq",
	AdvisoryLocks:     true,
	AdvisoryLock:      "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
	Fencing:           true,
	QueuesLockWaiters: true,
	AsyncCommits:      true,
	AsyncCommit:       "SET LOCAL synchronous_commit TO OFF",
	BlobType:          "bytea",
	AnalyzeUnits:      "ANALYZE units",
	AnalyzeHolds:      "ANALYZE holds, hold_lines, unit_claims, units, pool_holders, idempotency_keys, events, room_tickets",
	ArrayRows:         true,
	GenericPlans:      "SET LOCAL plan_cache_mode = force_generic_plan",
	SkipLocked:        " FOR UPDATE SKIP LOCKED",
	ForNoKeyUpdate:    " FOR NO KEY UPDATE",
	ForKeyShare:       " FOR KEY SHARE",
	Classify:          classify,
}

func classify(err error) sqlstore.ErrorKind {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return sqlstore.KindOther
	}
	switch pe.Code {
	case "23505":
		return sqlstore.KindUnique
	case "23503":
		return sqlstore.KindForeignKey
	case "23514":
		return sqlstore.KindCheck
	}
	return sqlstore.KindOther
}

// retryable reports a transaction that failed only because of its
// interleaving with others: serialization_failure and deadlock_detected.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// interpret turns driver errors into domain errors at the boundary.
func interpret(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, pgx.ErrNoRows):
		return sqlstore.ErrNoRows
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: deadline passed waiting for the database: %v", holdfast.ErrBusy, err)
	case unreachable(err):
		// The database is down, restarting or cut off: a retry may succeed
		// (503), and an Idempotency-Key makes it safe even if this attempt
		// committed before its answer was lost.
		return fmt.Errorf("%w: the database is unreachable: %v", holdfast.ErrBusy, err)
	}
	return err
}

// unreachable reports an error of the connection rather than of the
// statement: connecting failed, the connection broke, or the server is
// shutting down, starting up or in recovery.
func unreachable(err error) bool {
	var ce *pgconn.ConnectError
	var ne net.Error
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &ce), errors.As(err, &ne), pgconn.SafeToRetry(err), pgconn.Timeout(err),
		errors.Is(err, pgconn.ErrConnClosed), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF),
		errors.Is(err, net.ErrClosed), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED):
		return true
	case errors.As(err, &pe):
		// 08: connection exception; 57P01–57P03: admin/crash shutdown,
		// cannot connect now (starting up, recovering).
		return strings.HasPrefix(pe.Code, "08") || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03"
	}
	return err.Error() == "conn closed"
}

type db struct {
	pool    *pgxpool.Pool
	retries atomic.Int64
}

func (d *db) Stats() sqlstore.Stats {
	st := d.pool.Stat()
	return sqlstore.Stats{Retries: d.retries.Load(), Open: int(st.TotalConns()), InUse: int(st.AcquiredConns()),
		Idle: int(st.IdleConns()), Max: int(st.MaxConns())}
}

func (d *db) Close() error { d.pool.Close(); return nil }

// Transact runs fn in a READ COMMITTED transaction. fn may be called more
// than once: after a serialization failure or a deadlock (neither expected
// at this level) it is retried up to 5 times with capped exponential
// backoff and full jitter, within ctx.
func (d *db) Transact(ctx context.Context, fn func(tx sqlstore.Querier) error) error {
	return d.retry(ctx, pgx.ReadCommitted, 5, fn)
}

// TransactSerializable runs fn in a SERIALIZABLE transaction, where two
// claims that would not be serializable abort one (40001); it is retried
// with capped exponential backoff and full jitter until ctx's deadline
// (at most 1,000 times).
func (d *db) TransactSerializable(ctx context.Context, fn func(tx sqlstore.Querier) error) error {
	return d.retry(ctx, pgx.Serializable, 1000, fn)
}

func (d *db) retry(ctx context.Context, iso pgx.TxIsoLevel, attempts int, fn func(tx sqlstore.Querier) error) error {
	backoff := 2 * time.Millisecond
	for i := 0; ; i++ {
		err := d.transact(ctx, iso, fn)
		if err == nil || !retryable(err) || i == attempts-1 {
			return interpret(err)
		}
		d.retries.Add(1)
		t := time.NewTimer(rand.N(backoff) + 1)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w: gave up retrying: %v", holdfast.ErrBusy, err)
		case <-t.C:
		}
		backoff = min(2*backoff, 50*time.Millisecond)
	}
}

func (d *db) transact(ctx context.Context, iso pgx.TxIsoLevel, fn func(tx sqlstore.Querier) error) error {
	tx, err := d.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: iso})
	if err != nil {
		return err
	}
	if err := fn(querier{tx}); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return err
	}
	if gid := sqlstore.PreparingAs(ctx); gid != "" {
		// A part of a change across shards: prepared, it belongs to no
		// session any more, and the coordinator ends it (see TwoPhase).
		if _, err := tx.Exec(ctx, "PREPARE TRANSACTION '"+gid+"'"); err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
			return err
		}
		// Nothing is left to commit: this only hands the connection back.
		_ = tx.Commit(context.WithoutCancel(ctx))
		return nil
	}
	return tx.Commit(ctx)
}

func (d *db) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	return querier{d.pool}.Exec(ctx, q, args...)
}
func (d *db) Query(ctx context.Context, q string, args ...any) (sqlstore.Rows, error) {
	return querier{d.pool}.Query(ctx, q, args...)
}
func (d *db) QueryRow(ctx context.Context, q string, args ...any) sqlstore.Row {
	return querier{d.pool}.QueryRow(ctx, q, args...)
}

type pgxQuerier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// ExecAll sends the statements in one round trip (pgx's pipeline), and
// reads each one's result in order.
func (q querier) ExecAll(ctx context.Context, stmts []sqlstore.Stmt) ([]int64, error) {
	var b pgx.Batch
	for _, st := range stmts {
		b.Queue(st.SQL, st.Args...)
	}
	res := q.q.SendBatch(ctx, &b)
	n := make([]int64, len(stmts))
	for i := range stmts {
		tag, err := res.Exec()
		if err != nil {
			res.Close()
			return nil, interpret(err)
		}
		n[i] = tag.RowsAffected()
	}
	return n, interpret(res.Close())
}

// QueryAll sends the queries in one round trip (pgx's pipeline), and
// reads each one's rows in order.
func (q querier) QueryAll(ctx context.Context, queries []sqlstore.Query) error {
	var b pgx.Batch
	for _, qu := range queries {
		b.Queue(qu.SQL, qu.Args...)
	}
	res := q.q.SendBatch(ctx, &b)
	for _, qu := range queries {
		rows, err := res.Query()
		if err != nil {
			res.Close()
			return interpret(err)
		}
		for rows.Next() {
			if err := qu.Scan(rows); err != nil {
				rows.Close()
				res.Close()
				return err
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			res.Close()
			return interpret(err)
		}
	}
	return interpret(res.Close())
}

type querier struct{ q pgxQuerier }

func (q querier) Exec(ctx context.Context, sql string, args ...any) (int64, error) {
	tag, err := q.q.Exec(ctx, sql, args...)
	if err != nil {
		return 0, interpret(err)
	}
	return tag.RowsAffected(), nil
}

func (q querier) Query(ctx context.Context, sql string, args ...any) (sqlstore.Rows, error) {
	rows, err := q.q.Query(ctx, sql, args...)
	if err != nil {
		return nil, interpret(err)
	}
	return pgRows{rows}, nil
}

func (q querier) QueryRow(ctx context.Context, sql string, args ...any) sqlstore.Row {
	return pgRow{q.q.QueryRow(ctx, sql, args...)}
}

type pgRows struct{ pgx.Rows }

func (r pgRows) Err() error { return interpret(r.Rows.Err()) }

type pgRow struct{ pgx.Row }

func (r pgRow) Scan(dest ...any) error { return interpret(r.Row.Scan(dest...)) }

// queryInt runs a query returning one integer, bypassing the engine, for
// tests and the lab that count in the database directly (reached through
// internal/rawsql).
func (s *Store) queryInt(ctx context.Context, query string, args ...any) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, query, args...).Scan(&n)
	return n, err
}
