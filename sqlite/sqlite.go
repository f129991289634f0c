// Package sqlite is holdfast's embedded default: everything in one file,
// no server to install, on modernc.org/sqlite (pure Go, no cgo).
//
// SQLite has one writer at a time. The store keeps two connection pools on
// the file: a write pool of exactly one connection, whose transactions begin
// IMMEDIATE (taking the write lock up front, so a transaction never fails
// half-way on upgrading a read lock), and a read pool for everything else,
// which WAL lets run beside the writer. Writers inside this process queue on
// the one connection; writers in other processes (holdfast audit, a second
// server on the same file) wait on the busy timeout.
package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"regexp"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pressly/goose/v3"
	sqlite3 "modernc.org/sqlite"
	sqlite3lib "modernc.org/sqlite/lib"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/internal/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

func init() {
	fsys, _ := fs.Sub(migrations, "migrations")
	dialect.SchemaVersion = sqlstore.NewestMigration(fsys)
}

// newDriver returns a SQLite driver whose connections have holdfast_now_ms,
// the database clock, read from now: on the embedded backend the process
// clock is the database's. Each store has its own, so a simulation can
// move one store's time by hand without touching another's.
func newDriver(now holdfast.Clock) *sqlite3.Driver {
	d := &sqlite3.Driver{}
	d.MustRegisterScalarFunction("holdfast_now_ms", 0, func(*sqlite3.FunctionContext, []driver.Value) (driver.Value, error) {
		return now.Now().UnixMilli(), nil
	})
	return d
}

// connector opens connections to one DSN on one driver.
type connector struct {
	d   *sqlite3.Driver
	dsn string
}

func (c connector) Connect(ctx context.Context) (driver.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return c.d.Open(c.dsn)
}

func (c connector) Driver() driver.Driver { return c.d }

// Strategies lists the strategies this backend implements: with one writer
// at a time, pessimistic is the up-front write lock of BEGIN IMMEDIATE, and
// there are no row locks to serialize, advise or fence.
var Strategies = []holdfast.Strategy{holdfast.Atomic, holdfast.Pessimistic, holdfast.Optimistic, holdfast.Unsafe}

// Options configure Open.
type Options struct {
	Strategy holdfast.Strategy
	Config   holdfast.Config
	// BusyTimeout is how long a write waits for another process holding
	// the write lock (default 10 s).
	BusyTimeout time.Duration
	// Think is the strategies' pause between check and write (the lab).
	Think time.Duration
	// NoCoalesce turns off the batching of concurrent claims and lifecycle
	// changes (every shape) into shared transactions (on by default with
	// the atomic strategy): each request then runs a transaction of its own.
	NoCoalesce bool
	// Logger receives what the store recovers from (default slog.Default).
	Logger *slog.Logger
	// Clock is the database's clock, which on SQLite is the process's
	// (default time.Now): it decides expiry. A simulation moves it by hand.
	Clock holdfast.Clock
	// Existing opens only a database that exists, as it is, for commands
	// that only read (holdfast audit): a missing file is an error (not a
	// new, empty database that audits clean), and so is a schema older
	// than this build.
	Existing bool
}

// engine is the SQL engine both backends share; embedded under this name,
// its methods are the Store's without its type showing in the API.
type engine = sqlstore.Store

// Store is a holdfast.Store on a SQLite file.
type Store struct {
	*engine
	db *db
}

var _ holdfast.Store = (*Store)(nil)

// Open opens (creating if needed) the SQLite database at path, applies the
// migrations, and returns a Store.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	st, err := sqlstore.ChooseStrategy("sqlite", opts.Strategy, Strategies)
	if err != nil {
		return nil, err
	}
	busy := opts.BusyTimeout
	if busy == 0 {
		busy = 10 * time.Second
	}
	if opts.Existing {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("sqlite: %w", err)
		}
	}
	if err := tighten(path, cmp.Or(opts.Logger, slog.Default())); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	dsn := func(txlock string) string {
		q := url.Values{}
		q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds()))
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "foreign_keys(1)")
		// FULL: a confirmed booking survives a power cut, not only a crash.
		q.Add("_pragma", "synchronous(FULL)")
		if txlock != "" {
			q.Set("_txlock", txlock)
		} else {
			// The read pool cannot write: every write goes through the
			// one write connection, and one that did not would fail here
			// at once instead of queueing on the busy timeout.
			q.Add("_pragma", "query_only(1)")
		}
		return "file:" + path + "?" + q.Encode()
	}
	drv := newDriver(opts.Clock)
	w := sql.OpenDB(connector{drv, dsn("immediate")})
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	r := sql.OpenDB(connector{drv, dsn("")})
	r.SetMaxOpenConns(max(4, runtime.GOMAXPROCS(0)))
	d := &db{w: w, r: r}
	if !opts.Existing {
		if err := Migrate(ctx, w, path); err != nil {
			d.Close()
			return nil, err
		}
	}
	c, err := sqlstore.NewClaimer(st, dialect, sqlstore.Options{Think: opts.Think})
	if err != nil {
		d.Close()
		return nil, err
	}
	s := &Store{engine: sqlstore.New(d, dialect, opts.Config, c, !opts.NoCoalesce, sqlstore.Env{Logger: opts.Logger, Clock: opts.Clock}), db: d}
	if opts.Existing {
		if err := s.Ready(ctx); err != nil {
			s.Close()
			return nil, fmt.Errorf("sqlite: %s: %w", path, err)
		}
	}
	return s, nil
}

// tighten makes an existing database file, and its -wal and -shm, readable
// and writable by their owner only: bookings, holders and keys' hashes
// are in them. A new file is made so; one made looser (by hand, by a
// copy, by an older build) is tightened, and the log says so.
func tighten(path string, log *slog.Logger) error {
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o077 == 0 {
			continue
		}
		if err := os.Chmod(p, fi.Mode().Perm()&0o700|0o600); err != nil {
			return fmt.Errorf("%s is readable by others (mode %v) and could not be made private: %w", p, fi.Mode().Perm(), err)
		}
		log.Warn("the database file was readable by others: made private", "file", p, "was", fi.Mode().Perm().String(), "now", "-rw-------")
	}
	return nil
}

// Migrate applies the embedded migrations to db, the database at path,
// each in its own transaction. Several processes opening one new file at
// once migrate it once: each takes an exclusive lock on the file first
// (flock, which SQLite's own fcntl locks do not see), and the later ones
// find the schema applied.
func Migrate(ctx context.Context, db *sql.DB, path string) error {
	unlock, err := lockFile(ctx, path)
	if err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	defer unlock()
	fsys, _ := fs.Sub(migrations, "migrations")
	p, err := goose.NewProvider(goose.DialectSQLite3, db, fsys)
	if err != nil {
		return err
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	return nil
}

// execRaw runs a statement on the write connection, bypassing the engine,
// for tests that show the database refusing a buggy write (reached through
// internal/rawsql).
func (s *Store) execRaw(ctx context.Context, query string, args ...any) error {
	_, err := s.db.w.ExecContext(ctx, rewrite(query), args...)
	return s.db.interpret(err)
}

var dialect = sqlstore.Dialect{
	Name:       "sqlite",
	ListSelect: func(n int) string { return fmt.Sprintf("SELECT value FROM json_each($%d)", n) },
	ListArg:    listArg,
	// One writer at a time: commit order is seq order.
	EventXid: "CAST(0 AS INTEGER)",
	// One writer: commit order is seq order ($1, the xid, is always 0).
	EventAfter: "(seq > $2 AND $1 >= 0)",
	EventOrder: "seq",
	BlobType:   "BLOB",
	Classify:   classify,
}

func listArg(ids []string) any {
	if ids == nil {
		// json_each('null') is one row of NULL, and "id NOT IN (NULL)"
		// is never true: an empty list must be an empty array.
		ids = []string{}
	}
	b, _ := json.Marshal(ids)
	return string(b)
}

func classify(err error) sqlstore.ErrorKind {
	var se *sqlite3.Error
	if !errors.As(err, &se) {
		return sqlstore.KindOther
	}
	switch se.Code() {
	case sqlite3lib.SQLITE_CONSTRAINT_UNIQUE, sqlite3lib.SQLITE_CONSTRAINT_PRIMARYKEY:
		return sqlstore.KindUnique
	case sqlite3lib.SQLITE_CONSTRAINT_FOREIGNKEY:
		return sqlstore.KindForeignKey
	case sqlite3lib.SQLITE_CONSTRAINT_CHECK:
		return sqlstore.KindCheck
	}
	return sqlstore.KindOther
}

func isBusy(err error) bool {
	var se *sqlite3.Error
	if !errors.As(err, &se) {
		return false
	}
	return se.Code()&0xff == sqlite3lib.SQLITE_BUSY || se.Code()&0xff == sqlite3lib.SQLITE_LOCKED
}

// placeholder matches PostgreSQL's $n; SQLite binds ?n the same way.
var placeholder = regexp.MustCompile(`\$(\d+)`)

var rewritten sync.Map // string → string

func rewrite(q string) string {
	if v, ok := rewritten.Load(q); ok {
		return v.(string)
	}
	r := placeholder.ReplaceAllString(q, "?$1")
	rewritten.Store(q, r)
	return r
}

type db struct {
	w, r    *sql.DB
	retries atomic.Int64
	// The engine's statements, prepared once per connection pool: SQLite
	// otherwise parses every statement on every run (a twentieth of a
	// busy server's CPU). Bounded: SQL built per request is not cached.
	wStmts, rStmts stmtCache
}

// stmtCache holds prepared statements by their SQL, up to maxStmts.
type stmtCache struct {
	mu      sync.Mutex
	m       map[string]*sql.Stmt
	pending map[string]bool
	closed  bool
	// preparing counts the background prepares, which close waits for:
	// one still running after the store closed could open a connection
	// to a file being removed.
	preparing sync.WaitGroup
}

const maxStmts = 512

// get returns q prepared on pool, or nil when it is not yet. A miss
// prepares q in the background, never in the caller: on the writer, the
// caller's transaction holds the one connection a prepare would wait for.
func (c *stmtCache) get(pool *sql.DB, q string) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.m[q]; ok || c.closed || c.pending[q] || len(c.m)+len(c.pending) >= maxStmts {
		return st
	}
	if c.pending == nil {
		c.pending, c.m = map[string]bool{}, map[string]*sql.Stmt{}
	}
	c.pending[q] = true
	c.preparing.Add(1)
	go func() {
		defer c.preparing.Done()
		st, err := pool.Prepare(q)
		c.mu.Lock()
		defer c.mu.Unlock()
		delete(c.pending, q)
		switch {
		case c.closed:
			if err == nil {
				_ = st.Close()
			}
		case err != nil:
			// Left unprepared for good: it runs as it is, and says its
			// error there.
			c.m[q] = nil
		default:
			c.m[q] = st
		}
	}()
	return nil
}

func (c *stmtCache) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.preparing.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.m {
		_ = st.Close()
	}
	c.m = nil
}

func (d *db) Stats() sqlstore.Stats {
	w, r := d.w.Stats(), d.r.Stats()
	return sqlstore.Stats{Retries: d.retries.Load(), Open: w.OpenConnections + r.OpenConnections,
		InUse: w.InUse + r.InUse, Idle: w.Idle + r.Idle, Max: w.MaxOpenConnections + r.MaxOpenConnections}
}

func (d *db) Close() error {
	d.wStmts.close()
	d.rStmts.close()
	return errors.Join(d.w.Close(), d.r.Close())
}

// interpret turns driver errors into domain errors at the boundary:
// SQLITE_BUSY past the busy timeout becomes ErrBusy, a deadline becomes
// ErrBusy too; constraint errors stay as they are for the engine to classify.
func (d *db) interpret(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sql.ErrNoRows):
		return sqlstore.ErrNoRows
	case isBusy(err):
		return fmt.Errorf("%w: database is locked by another writer: %v", holdfast.ErrBusy, err)
	}
	return err
}

func (d *db) Transact(ctx context.Context, fn func(tx sqlstore.Querier) error) error {
	const attempts = 5
	backoff := 5 * time.Millisecond
	for i := 0; ; i++ {
		err := d.transact(ctx, fn)
		if err == nil || !errors.Is(err, holdfast.ErrBusy) || i == attempts-1 || ctx.Err() != nil {
			return err
		}
		// Another process held the write lock past the busy timeout: back
		// off with full jitter and try again, within the caller's deadline.
		d.retries.Add(1)
		t := time.NewTimer(rand.N(backoff))
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		backoff *= 2
	}
}

// TransactSerializable is Transact: SQLite transactions are serializable.
func (d *db) TransactSerializable(ctx context.Context, fn func(tx sqlstore.Querier) error) error {
	return d.Transact(ctx, fn)
}

func (d *db) transact(ctx context.Context, fn func(tx sqlstore.Querier) error) (err error) {
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return d.interpret(err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if err := fn(querier{tx, d}); err != nil {
		return err
	}
	return d.interpret(tx.Commit())
}

func (d *db) Query(ctx context.Context, q string, args ...any) (sqlstore.Rows, error) {
	return querier{d.r, d}.Query(ctx, q, args...)
}
func (d *db) QueryRow(ctx context.Context, q string, args ...any) sqlstore.Row {
	return querier{d.r, d}.QueryRow(ctx, q, args...)
}

type sqlQuerier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

type querier struct {
	q sqlQuerier
	d *db
}

// stmt is query, rewritten for SQLite, and what runs it: the statement
// prepared for q (a transaction on the writer, or the readers), or q
// itself when it is not cached.
func (q querier) stmt(ctx context.Context, query string) (sqlQuerier, string) {
	query = rewrite(query)
	return q.prepared(ctx, query), query
}

func (q querier) prepared(ctx context.Context, query string) sqlQuerier {
	switch c := q.q.(type) {
	case *sql.Tx:
		if st := q.d.wStmts.get(q.d.w, query); st != nil {
			return stmtQuerier{c.StmtContext(ctx, st)}
		}
	case *sql.DB:
		if c == q.d.r {
			if st := q.d.rStmts.get(q.d.r, query); st != nil {
				return stmtQuerier{st}
			}
		}
	}
	return q.q
}

// stmtQuerier runs its prepared statement, whatever SQL it is given
// (the same SQL it was prepared from).
type stmtQuerier struct{ st *sql.Stmt }

func (s stmtQuerier) ExecContext(ctx context.Context, _ string, args ...any) (sql.Result, error) {
	return s.st.ExecContext(ctx, args...)
}
func (s stmtQuerier) QueryContext(ctx context.Context, _ string, args ...any) (*sql.Rows, error) {
	return s.st.QueryContext(ctx, args...)
}
func (s stmtQuerier) QueryRowContext(ctx context.Context, _ string, args ...any) *sql.Row {
	return s.st.QueryRowContext(ctx, args...)
}

func (q querier) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	run, query := q.stmt(ctx, query)
	res, err := run.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, q.d.interpret(err)
	}
	return res.RowsAffected()
}

func (q querier) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	run, query := q.stmt(ctx, query)
	rows, err := run.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, q.d.interpret(err)
	}
	return sqlRows{rows, q.d}, nil
}

func (q querier) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	run, query := q.stmt(ctx, query)
	return sqlRow{run.QueryRowContext(ctx, query, args...), q.d}
}

type sqlRows struct {
	*sql.Rows
	d *db
}

func (r sqlRows) Close()     { _ = r.Rows.Close() }
func (r sqlRows) Err() error { return r.d.interpret(r.Rows.Err()) }

type sqlRow struct {
	*sql.Row
	d *db
}

func (r sqlRow) Scan(dest ...any) error { return r.d.interpret(r.Row.Scan(dest...)) }

// queryInt runs a query returning one integer, bypassing the engine, for
// tests and the lab that count in the database directly (internal/rawsql).
func (s *Store) queryInt(ctx context.Context, query string, args ...any) (int64, error) {
	var n int64
	err := s.db.r.QueryRowContext(ctx, rewrite(query), args...).Scan(&n)
	return n, err
}
