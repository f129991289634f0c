// Package sqlstore is the hold engine written once for both SQL backends.
//
// The algorithm — lock order, conditional updates, reclaiming expired holds,
// outbox events — is the same on SQLite and PostgreSQL; only the connection,
// the transaction, a few SQL fragments and the driver's error codes differ.
// The sqlite and postgres packages supply those through DB and Dialect, so
// every fix to the algorithm lands on both backends at once, and the
// conformance suite checks both.
//
// SQL is written with PostgreSQL's $1 placeholders; the sqlite package
// rewrites them to SQLite's ?1, which binds the same way.
package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"github.com/holdfast/holdfast"
)

// Row is one result row.
type Row interface {
	Scan(dest ...any) error
}

// Rows is a result set.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// Querier runs statements inside a transaction.
type Querier interface {
	Reader
	Exec(ctx context.Context, sql string, args ...any) (rowsAffected int64, err error)
}

// Stmt is one statement of several sent together (see ExecAll).
type Stmt struct {
	SQL  string
	Args []any
}

// ExecAll runs stmts in order, stopping at the first error, and returns
// the rows each affected. A Querier that can pipeline (PostgreSQL) sends
// them in one round trip: inside a transaction that holds a hot row's
// lock, every round trip saved is time the lock is not held.
func ExecAll(ctx context.Context, q Querier, stmts []Stmt) ([]int64, error) {
	if len(stmts) == 0 {
		return nil, nil // not even a round trip
	}
	if p, ok := q.(interface {
		ExecAll(ctx context.Context, stmts []Stmt) ([]int64, error)
	}); ok {
		return p.ExecAll(ctx, stmts)
	}
	n := make([]int64, len(stmts))
	for i, st := range stmts {
		var err error
		if n[i], err = q.Exec(ctx, st.SQL, st.Args...); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// Query is one query of several sent together (see QueryAll): its rows
// go to Scan, called once per row.
type Query struct {
	SQL  string
	Args []any
	Scan func(r Row) error
}

// QueryAll runs queries in order, stopping at the first error, handing
// each row to its query's Scan. A Querier that can pipeline (PostgreSQL)
// sends them in one round trip, as ExecAll does for statements.
func QueryAll(ctx context.Context, q Reader, queries []Query) error {
	if len(queries) == 0 {
		return nil
	}
	if p, ok := q.(interface {
		QueryAll(ctx context.Context, queries []Query) error
	}); ok {
		return p.QueryAll(ctx, queries)
	}
	for _, qu := range queries {
		rows, err := q.Query(ctx, qu.SQL, qu.Args...)
		if err != nil {
			return err
		}
		for rows.Next() {
			if err := qu.Scan(rows); err != nil {
				rows.Close()
				return err
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
	}
	return nil
}

// Reader runs reads outside a transaction. It has no Exec: every write
// goes through Transact, which on SQLite is the one write connection (the
// read pool is opened read-only, so a write that slipped past this type
// would fail, not wait on the writer's lock).
type Reader interface {
	Query(ctx context.Context, sql string, args ...any) (Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) Row
}

// DB is a backend's connection.
type DB interface {
	Reader
	// Transact runs fn in a read-committed write transaction and commits if fn
	// returns nil. It may call fn more than once (after a serialization
	// failure, a deadlock, or SQLITE_BUSY), with bounded, jittered backoff;
	// fn must not keep state across calls.
	Transact(ctx context.Context, fn func(tx Querier) error) error
	// TransactSerializable is Transact at SERIALIZABLE isolation, retrying
	// serialization failures until ctx's deadline (bounded, jittered).
	TransactSerializable(ctx context.Context, fn func(tx Querier) error) error
	// Stats reports the connection pool and the retries Transact made.
	Stats() Stats
	Close() error
}

// Stats is what a backend reports for metrics (holdfast.Stats).
type Stats = holdfast.Stats

// ErrNoRows is what Row.Scan returns when the query found nothing; backends
// translate their own.
var ErrNoRows = errors.New("sqlstore: no rows")

// ErrorKind classifies a driver error so the engine can turn it into a
// domain error without knowing the driver.
type ErrorKind int

const (
	KindOther      ErrorKind = iota
	KindUnique               // a unique or primary key constraint refused the write
	KindForeignKey           // a foreign key constraint refused the write
	KindCheck                // a CHECK constraint refused the write
)

// Dialect is what differs in SQL between backends.
type Dialect struct {
	Name string
	// ListSelect returns a SELECT yielding one row per element of the string
	// list bound at placeholder n, in a column named value.
	ListSelect func(n int) string
	// ListArg converts a string list into the value bound for ListSelect.
	ListArg func([]string) any
	// RowLocks says transactions lock rows (PostgreSQL). Without them (one
	// writer at a time: SQLite) a transaction needs no lock on the rows it
	// reads, and the three clauses below are empty; with them, none is.
	RowLocks bool
	// ForUpdate and SkipLocked are the row-locking clauses.
	ForUpdate  string
	SkipLocked string
	// ForNoKeyUpdate locks a row whose non-key columns will change: foreign
	// key checks of inserts that reference it (KEY SHARE) are not blocked.
	ForNoKeyUpdate string
	// ForKeyShare is the weakest lock: many hold it at once, and only
	// FOR UPDATE waits for them (or they for it).
	ForKeyShare string
	// EventXid is the SQL for the writing transaction's number, by which
	// the feed is ordered first (a constant where commit order is seq order).
	EventXid string
	// EventsVisible is an extra condition on feed reads (" AND …"): only
	// events that no transaction still running could precede.
	EventsVisible string
	// EventAfter is the feed's condition "after cursor ($1 xid, $2 seq)",
	// written so the feed's index serves it; EventOrder is the feed's
	// order by that index.
	EventAfter, EventOrder string
	// AdvisoryLocks says the backend has transaction-scoped advisory locks;
	// AdvisoryLock is the statement taking one on the string $1.
	AdvisoryLocks bool
	AdvisoryLock  string
	// ArrayRows says multi-row statements take their rows as one array a
	// column (unnest), not as VALUES lists (see rowSet).
	ArrayRows bool
	// GenericPlans, sent first in a batch's transaction, makes the
	// database plan the batch's statements once for any rows (PostgreSQL:
	// it otherwise plans a statement over a short array again on every
	// call, the array's length making the plan look cheaper than the
	// one kept); empty where there is no plan cache.
	GenericPlans string
	// AnalyzeUnits refreshes the planner's statistics of the units
	// table, after many units were added (PostgreSQL); empty where the
	// planner needs none.
	AnalyzeUnits string
	// AnalyzeHolds refreshes the planner's statistics of the tables a
	// hold writes and a batch reads back by key (PostgreSQL), while they
	// grow from empty (see holdsMade); empty where the planner needs none.
	AnalyzeHolds string
	// BlobType is the SQL type name of a byte string.
	BlobType string
	// AsyncCommits says a transaction may commit without waiting for its
	// log flush; AsyncCommit is the statement that makes it so.
	AsyncCommits bool
	AsyncCommit  string
	// QueuesLockWaiters says transactions wait in line for a row lock,
	// so the next coalesced batch can be waiting at the pool's row while
	// the one before commits (see drain). False with one writer.
	QueuesLockWaiters bool
	// Fencing says the schema has fence columns for the redislock strategy.
	Fencing bool
	// SchemaVersion is the newest migration the backend embeds.
	SchemaVersion int64
	// Classify tells what a driver error means.
	Classify func(error) ErrorKind
}

// check reports a dialect whose capability fields and SQL fragments
// disagree: a capability without its statement, or a statement for a
// capability the backend says it lacks.
func (d Dialect) check() error {
	for _, c := range []struct {
		name string
		has  bool
		sql  []string
	}{
		{"RowLocks", d.RowLocks, []string{d.ForUpdate, d.SkipLocked, d.ForNoKeyUpdate, d.ForKeyShare}},
		{"AdvisoryLocks", d.AdvisoryLocks, []string{d.AdvisoryLock}},
		{"AsyncCommits", d.AsyncCommits, []string{d.AsyncCommit}},
	} {
		for _, q := range c.sql {
			if (q != "") != c.has {
				return fmt.Errorf("sqlstore: dialect %s: %s is %v but a statement for it is %q", d.Name, c.name, c.has, q)
			}
		}
	}
	if d.ListSelect == nil || d.ListArg == nil || d.Classify == nil || d.EventAfter == "" || d.EventOrder == "" || d.EventXid == "" || d.BlobType == "" {
		return fmt.Errorf("sqlstore: dialect %s lacks a required field", d.Name)
	}
	return nil
}

// NewestMigration returns the version of the newest goose migration in
// fsys (the number its file name starts with), for Dialect.SchemaVersion.
func NewestMigration(fsys fs.FS) int64 {
	entries, _ := fs.ReadDir(fsys, ".")
	var newest int64
	for _, e := range entries {
		num, _, _ := strings.Cut(e.Name(), "_")
		if v, err := strconv.ParseInt(num, 10, 64); err == nil && v > newest {
			newest = v
		}
	}
	return newest
}

// genericPlans is the query a batch's transaction sends first, with its
// reads, so its statements are planned once (Dialect.GenericPlans); none
// where the dialect has no such setting.
func (d Dialect) genericPlans() []Query {
	if d.GenericPlans == "" {
		return nil
	}
	return []Query{{d.GenericPlans, nil, nil}}
}

// rowSet is the rows of one multi-row statement, held column by column,
// which the statement reads as the table v (see with).
//
// On PostgreSQL (Dialect.ArrayRows) the rows go as one array a column,
// unnested by the statement: its text is the same whatever the number of
// rows, so each connection prepares and plans it once. Sent as VALUES
// lists, every batch size was a statement of its own — 50 to 120 texts
// for each of a batch's writes, each prepared on every connection and
// planned anew for its first executions there: 14 % of PostgreSQL's CPU in
// the riders shape went to planning them. SQLite takes VALUES lists,
// which it parses in microseconds.
type rowSet struct {
	names string   // the columns' names in v, "id, hold_id, channel"
	types []string // their SQL types (text, bigint, integer, boolean, bytea)
	cols  [][]any  // cols[c]: column c's values, nil for NULL
}

// newRows makes an empty set of rows of columns names (comma-separated)
// of types, one a column.
func newRows(names string, types ...string) rowSet {
	return rowSet{names: names, types: types, cols: make([][]any, len(types))}
}

// add appends a row: one value a column, in order.
func (r *rowSet) add(vals ...any) {
	if len(vals) != len(r.cols) {
		panic("sqlstore: a row of " + strconv.Itoa(len(vals)) + " values for " + strconv.Itoa(len(r.cols)) + " columns")
	}
	for c, v := range vals {
		r.cols[c] = append(r.cols[c], v)
	}
}

// len is the number of rows.
func (r *rowSet) len() int {
	if len(r.cols) == 0 {
		return 0
	}
	return len(r.cols[0])
}

// with is the common table expression `v (names) AS (…)` of the rows, its
// parameters numbered from $first, and their arguments.
func (r *rowSet) with(d Dialect, first int) (string, []any) {
	var b strings.Builder
	b.WriteString("v (" + r.names + ") AS (")
	if d.ArrayRows {
		b.WriteString("SELECT * FROM unnest(")
		for c, t := range r.types {
			if c > 0 {
				b.WriteString(", ")
			}
			b.WriteString("$" + strconv.Itoa(first+c) + "::" + t + "[]")
		}
		b.WriteString("))")
		args := make([]any, len(r.cols))
		for c, vals := range r.cols {
			args[c] = vals
		}
		return b.String(), args
	}
	b.WriteString("VALUES ")
	n := r.len()
	args := make([]any, 0, n*len(r.cols))
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(" + params(first+len(args), len(r.cols)) + ")")
		for c := range r.cols {
			args = append(args, r.cols[c][i])
		}
	}
	b.WriteString(")")
	return b.String(), args
}

// stmt is the statement `WITH v (…) AS (…) ` + sql, which reads the rows
// as v and has no parameters of its own.
func (r *rowSet) stmt(d Dialect, sql string) Stmt {
	cte, args := r.with(d, 1)
	return Stmt{"WITH " + cte + "\n" + sql, args}
}

// query is stmt's text and arguments as a Query with scan.
func (r *rowSet) query(d Dialect, sql string, scan func(Row) error) Query {
	st := r.stmt(d, sql)
	return Query{st.SQL, st.Args, scan}
}
