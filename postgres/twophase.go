package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/holdfast/holdfast"
)

// TwoPhase makes one change on several PostgreSQL databases atomically,
// with PostgreSQL's own two-phase commit: each database's part runs in a
// transaction of its own and is prepared (PREPARE TRANSACTION), the
// decision is written to the catalog database, then every part is
// committed (COMMIT PREPARED). A coordinator that dies between prepare and
// commit leaves prepared transactions holding their locks; Resolve, run
// by every server, ends them from the catalog's record: committed if the
// decision was written, else rolled back — never half.
//
// The databases need max_prepared_transactions above 0.
type TwoPhase struct {
	catalog *pgxpool.Pool
	parts   map[string]*pgxpool.Pool
	// hook, for tests, runs after the prepares ("prepared") and after the
	// decision ("decided"); an error stops Run there, as the death of the
	// coordinator would, leaving the rest to Resolve.
	hook func(step string) error
}

// NewTwoPhase coordinates changes over the named databases, deciding on
// catalog (which may be one of them).
func NewTwoPhase(catalog *pgxpool.Pool, databases map[string]*pgxpool.Pool) *TwoPhase {
	return &TwoPhase{catalog: catalog, parts: databases}
}

// gidPrefix marks holdfast's prepared transactions: Resolve touches no
// other.
const gidPrefix = "hf2pc_"

// ErrTwoPhaseAborted is a change rolled back because a resolver decided
// it first (the coordinator was too slow between prepare and decision).
var ErrTwoPhaseAborted = errors.New("postgres: the change was rolled back by a resolver before it was decided")

// Run runs fn[name] on each named database and commits all or none. An
// error from a part, or a prepare that fails, rolls every part back. Once
// the decision is written Run succeeds, even if a commit then fails: the
// prepared part stays, holding its locks, until Resolve commits it.
func (c *TwoPhase) Run(ctx context.Context, fn map[string]func(ctx context.Context, tx pgx.Tx) error) error {
	parts := make(map[string]func(context.Context, string) error, len(fn))
	for name, f := range fn {
		pool := c.parts[name]
		parts[name] = func(ctx context.Context, gid string) error { return prepare(ctx, pool, gid, f) }
	}
	return c.RunParts(ctx, parts)
}

// RunParts is Run for parts that run their own transaction: each must
// prepare it as the gid it is given (PREPARE TRANSACTION), or fail having
// changed nothing.
func (c *TwoPhase) RunParts(ctx context.Context, fn map[string]func(ctx context.Context, gid string) error) error {
	return c.runParts(ctx, fn, nil)
}

// runParts is RunParts committing the parts named in first before the
// others, in that order (a partition's move: where it goes, then the map,
// then where it was — see shardDB.Move).
func (c *TwoPhase) runParts(ctx context.Context, fn map[string]func(ctx context.Context, gid string) error, first []string) error {
	var b [12]byte
	_, _ = rand.Read(b[:])
	gid := gidPrefix + hex.EncodeToString(b[:])
	names := make([]string, 0, len(fn))
	for name := range fn {
		if c.parts[name] == nil {
			return fmt.Errorf("postgres: no database %q in this two-phase coordinator", name)
		}
		names = append(names, name)
	}
	// One global order: two changes over the same databases prepare them
	// in the same order.
	slices.Sort(names)
	// A prepared transaction's id is unique in its PostgreSQL cluster,
	// and several databases may share one: each part gets the change's id
	// and its place.
	part := map[string]string{}
	for i, name := range names {
		part[name] = gid + "." + strconv.Itoa(i)
	}
	var prepared []string
	rollback := func(cause error) error {
		// Whatever is not rolled back here (a database unreachable) the
		// resolver rolls back: no decision is written for it.
		bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		for _, name := range prepared {
			_, _ = c.parts[name].Exec(bg, "ROLLBACK PREPARED '"+part[name]+"'")
		}
		return cause
	}
	for _, name := range names {
		if err := fn[name](ctx, part[name]); err != nil {
			return rollback(&PartError{Database: name, Err: err})
		}
		prepared = append(prepared, name)
	}
	if err := c.step("prepared"); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		// The caller gave up while the parts were prepared: undecided,
		// they roll back now rather than wait for the resolver.
		return rollback(err)
	}
	// From here the change ends whatever the caller does: a decision
	// half-written by a cancelled request would leave the parts to the
	// resolver, holding their locks for seconds.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	committed, err := decide(ctx, c.catalog, gid, true)
	if err != nil {
		// The decision may or may not be written: the resolver reads it.
		return fmt.Errorf("%w: the outcome of a change across databases is not known yet: %v", holdfast.ErrBusy, err)
	}
	if !committed {
		return rollback(ErrTwoPhaseAborted)
	}
	if err := c.step("decided"); err != nil {
		return err
	}
	order := slices.Clone(prepared)
	slices.SortStableFunc(order, func(a, b string) int {
		return rankIn(first, a) - rankIn(first, b)
	})
	for _, name := range order {
		_, _ = c.parts[name].Exec(ctx, "COMMIT PREPARED '"+part[name]+"'") // else the resolver commits it
	}
	return nil
}

// rankIn is name's place in first, len(first) when it is not there.
func rankIn(first []string, name string) int {
	if i := slices.Index(first, name); i >= 0 {
		return i
	}
	return len(first)
}

// PartError is a part that failed (and rolled every part back): its
// database's name and its error.
type PartError struct {
	Database string
	Err      error
}

func (e *PartError) Error() string { return "database " + e.Database + ": " + e.Err.Error() }
func (e *PartError) Unwrap() error { return e.Err }

func (c *TwoPhase) step(name string) error {
	if c.hook == nil {
		return nil
	}
	return c.hook(name)
}

// prepare runs fn in a transaction on pool and prepares it as gid. The
// connection goes back to the pool idle: a prepared transaction belongs
// to no session.
func prepare(ctx context.Context, pool *pgxpool.Pool, gid string, fn func(context.Context, pgx.Tx) error) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	if err := fn(ctx, tx); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return err
	}
	if _, err := tx.Exec(ctx, "PREPARE TRANSACTION '"+gid+"'"); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return err
	}
	return nil
}

// decide writes the decision for gid unless one is written, and returns
// the one that stands.
func decide(ctx context.Context, catalog *pgxpool.Pool, gid string, commit bool) (bool, error) {
	var committed bool
	err := catalog.QueryRow(ctx, `INSERT INTO twophase_decisions (gid, committed, decided_at) VALUES ($1, $2, holdfast_now_ms())
		ON CONFLICT (gid) DO UPDATE SET gid = excluded.gid RETURNING committed`, gid, commit).Scan(&committed)
	return committed, err
}

// Resolve ends holdfast's prepared transactions older than olderThan on
// every database, as the catalog decided them (rolled back when there is
// no decision yet: it writes that first, so a coordinator that wakes up
// late finds the change aborted), and forgets decisions a day old. It
// reports how many it committed and rolled back.
func (c *TwoPhase) Resolve(ctx context.Context, olderThan time.Duration) (committed, rolledBack int, err error) {
	names := make([]string, 0, len(c.parts))
	for name := range c.parts {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		pool := c.parts[name]
		gids, err := preparedParts(ctx, pool, olderThan)
		if err != nil {
			return committed, rolledBack, fmt.Errorf("database %s: %w", name, err)
		}
		for _, gid := range gids {
			change, _, _ := strings.Cut(gid, ".")
			commit, err := decide(ctx, c.catalog, change, false)
			if err != nil {
				return committed, rolledBack, err
			}
			verb := "ROLLBACK PREPARED"
			if commit {
				verb = "COMMIT PREPARED"
			}
			if _, err := pool.Exec(ctx, verb+" '"+gid+"'"); err != nil {
				var pgErr interface{ SQLState() string }
				if errors.As(err, &pgErr) && pgErr.SQLState() == "42704" {
					continue // ended meanwhile, by its coordinator or another resolver
				}
				return committed, rolledBack, fmt.Errorf("database %s: %s %s: %w", name, verb, gid, err)
			}
			if commit {
				committed++
			} else {
				rolledBack++
			}
		}
	}
	// A decision is kept while any part of it is still prepared (a
	// database down for a day must still find it); then for a day.
	var pending []string
	for _, name := range names {
		gids, err := preparedParts(ctx, c.parts[name], 0)
		if err != nil {
			return committed, rolledBack, fmt.Errorf("database %s: %w", name, err)
		}
		for _, gid := range gids {
			change, _, _ := strings.Cut(gid, ".")
			pending = append(pending, change)
		}
	}
	_, err = c.catalog.Exec(ctx, `DELETE FROM twophase_decisions WHERE decided_at < holdfast_now_ms() - 86400000 AND NOT (gid = ANY($1))`, pending)
	return committed, rolledBack, err
}

// preparedParts lists holdfast's prepared transactions on pool's database
// prepared at least olderThan ago.
func preparedParts(ctx context.Context, pool *pgxpool.Pool, olderThan time.Duration) ([]string, error) {
	rows, err := pool.Query(ctx, `SELECT gid FROM pg_prepared_xacts WHERE database = current_database()
		AND starts_with(gid, $1) AND prepared <= now() - make_interval(secs => $2)`, gidPrefix, olderThan.Seconds())
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
