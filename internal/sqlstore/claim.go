package sqlstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/holdfast/holdfast"
)

// Claimer is the strategy seam: how the claims of one hold are made atomic.
//
// Prepare runs first, outside any transaction (reads a strategy does before
// it writes: optimistic's versions, unsafe's check). The claims then run
// inside the hold's write transaction, which the engine opened with the
// isolation Serializable asks for and rolls back if any line fails; the
// engine calls them in one global lock order (pools by id, then explicit
// units by id, then groups). A claim returns ErrRetry when its reads went
// stale (a version moved, a fencing token was superseded): the engine then
// backs off with jitter and runs Prepare and the transaction again, within
// the request's deadline.
type Claimer interface {
	Prepare(ctx context.Context, db Reader, r holdfast.HoldRequest) (Prepared, error)
	// ClaimPool takes q from the pool, into held or (book-now) confirmed.
	// ok is false if the pool has less than q available or does not exist;
	// the engine then works out which, outside the transaction. limit is
	// the pool's per_holder_limit, for the engine to enforce.
	ClaimPool(ctx context.Context, tx Querier, p Prepared, pool string, q int64, confirmed bool) (limit int64, ok bool, err error)
	// ClaimUnits gives the free units among ids (sorted) of the sale
	// channel names ("" the general sale; anyChannel: whichever) to holdID
	// and returns those it took; the engine compares with what it asked for.
	ClaimUnits(ctx context.Context, tx Querier, p Prepared, holdID, channel string, ids []string) ([]string, error)
	// ClaimAny gives up to k free units of group in channel's sale to
	// holdID and returns them.
	ClaimAny(ctx context.Context, tx Querier, p Prepared, holdID, group, channel string, k int64) ([]string, error)
	// Serializable asks for a SERIALIZABLE transaction.
	Serializable() bool
	// Finish runs after the transaction, committed or not (unlocking).
	Finish(p Prepared)
}

// Prepared is what a Claimer's Prepare hands to its claims.
type Prepared any

// ErrRetry tells the engine to run the claim again.
var ErrRetry = errors.New("sqlstore: the claim's reads went stale; retry")

// Options tune the strategies.
type Options struct {
	// Think is a pause between a strategy's check and its write, like the
	// payment or fraud check of a real handler; the lab uses it to make the
	// race window realistic. Strategies without a check pause before the
	// transaction.
	Think time.Duration
	// Locker is the lock service of the redislock strategy.
	Locker Locker
	// BeforeWrite is a test hook of the redislock strategy: it runs with
	// the locks held, before the transaction.
	BeforeWrite func(context.Context)
}

// think pauses for d (the lab's think time), or returns ctx's error.
func think(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	return sleep(ctx, d)
}

// sleep waits d, or returns ctx's error if it ends first.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// ChooseStrategy is a backend's strategy: st, atomic when unset; an
// unsupported error names what the backend offers.
func ChooseStrategy(backend string, st holdfast.Strategy, available []holdfast.Strategy) (holdfast.Strategy, error) {
	st = cmp.Or(st, holdfast.Atomic)
	if !slices.Contains(available, st) {
		return "", holdfast.Errorf(holdfast.CodeUnsupported, "strategy %q is not available on %s (available: %v)", st, backend, available)
	}
	return st, nil
}

// NewClaimer returns the strategy's claimer for the dialect. Backends call
// it for the strategies they offer; ones that need more (advisory locks,
// Redis) are built by the backend itself.
func NewClaimer(s holdfast.Strategy, d Dialect, o Options) (Claimer, error) {
	base := base{d: d, think: o.Think}
	switch s {
	case holdfast.Atomic, "":
		return Atomic{base}, nil
	case holdfast.Pessimistic:
		return Pessimistic{base}, nil
	case holdfast.Optimistic:
		return Optimistic{base}, nil
	case holdfast.Serializable:
		return Serializable{base}, nil
	case holdfast.Unsafe:
		return Unsafe{base}, nil
	case holdfast.Advisory:
		if d.AdvisoryLocks {
			return Advisory{base}, nil
		}
	case holdfast.RedisLock:
		if d.Fencing && o.Locker != nil {
			return NewRedisLock(d, o, o.Locker, o.BeforeWrite), nil
		}
		if d.Fencing {
			return nil, holdfast.Errorf(holdfast.CodeUnsupported, "strategy redislock needs Redis: pass --redis")
		}
	}
	return nil, holdfast.Errorf(holdfast.CodeUnsupported, "strategy %q is not available on %s", s, d.Name)
}

type base struct {
	d     Dialect
	think time.Duration
}

func (base) Serializable() bool { return false }
func (base) Finish(Prepared)    {}

func col(confirmed bool) string {
	if confirmed {
		return "confirmed"
	}
	return "held"
}

// queryRow runs a query returning at most one row into dest; ok says if
// there was one.
func queryRow(ctx context.Context, q Reader, sql string, args []any, dest ...any) (bool, error) {
	err := q.QueryRow(ctx, sql, args...).Scan(dest...)
	if errors.Is(err, ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// ---- atomic ----

// Atomic is the atomic strategy: every claim is one conditional UPDATE whose
// WHERE clause is the availability check, with the rows affected (or
// returned) as the answer. There is no window between check and write for
// another server to slip into; concurrent claims on a row queue on its lock
// and each re-evaluates the condition on the row as the previous one left it.
type Atomic struct{ base }

func (a Atomic) Prepare(ctx context.Context, _ Reader, _ holdfast.HoldRequest) (Prepared, error) {
	return nil, think(ctx, a.think)
}

func (a Atomic) ClaimPool(ctx context.Context, tx Querier, _ Prepared, pool string, q int64, confirmed bool) (int64, bool, error) {
	var limit int64
	ok, err := queryRow(ctx, tx, fmt.Sprintf(`UPDATE pools SET %[1]s = %[1]s + $2, version = version + 1
		WHERE id = $1 AND capacity - held - confirmed - waitlisted - allocated >= $2 RETURNING per_holder_limit`, col(confirmed)), []any{pool, q}, &limit)
	return limit, ok, err
}

func (a Atomic) ClaimUnits(ctx context.Context, tx Querier, _ Prepared, holdID, channel string, ids []string) ([]string, error) {
	// The inner SELECT locks the free rows in id order (PostgreSQL locks as
	// it emits sorted rows), so two holds over overlapping seats queue
	// instead of deadlocking; after waiting, a row taken meanwhile no longer
	// matches hold_id IS NULL and is left out.
	cond, args := inChannel(channel, 3, holdID, a.d.ListArg(ids))
	return queryStrings(ctx, tx, `UPDATE units SET hold_id = $1 WHERE id IN (
		SELECT id FROM units WHERE id IN (`+a.d.ListSelect(2)+`) AND hold_id IS NULL`+cond+` ORDER BY id`+a.d.ForUpdate+`)
		RETURNING id`, args...)
}

// anyChannel, as the channel of a unit claim, takes units whatever sale
// they are in: a late confirm taking its own units again.
const anyChannel = "\x00any"

// inChannel is the condition that keeps a unit claim to its sale's units
// (the channel's, or the general sale's for ""), as $n after args.
func inChannel(channel string, n int, args ...any) (string, []any) {
	if channel == anyChannel {
		return "", args
	}
	return fmt.Sprintf(" AND channel = $%d", n), append(args, channel)
}

func (a Atomic) ClaimAny(ctx context.Context, tx Querier, _ Prepared, holdID, group, channel string, k int64) ([]string, error) {
	// SKIP LOCKED: buyers of "any k" never wait behind each other; each
	// takes free units nobody else is taking at this instant (see
	// skipLocked for the retry). A row whose claimer committed while we
	// waited for it no longer matches hold_id IS NULL and is left out.
	//
	// The pick is a materialized CTE, not an IN (subquery): PostgreSQL may
	// run a LIMIT … FOR UPDATE subquery of an UPDATE again after waiting
	// for a row, and update the rows of both runs — the chaos harness saw
	// an "any 1" get two riders. A CTE runs once.
	cond, args := inChannel(channel, 4, holdID, group, k)
	return queryStrings(ctx, tx, `WITH picked AS MATERIALIZED (
		SELECT id FROM units WHERE group_id = $2 AND hold_id IS NULL`+cond+` ORDER BY id LIMIT $3`+skipLocked(ctx, a.d)+`)
		UPDATE units SET hold_id = $1 FROM picked WHERE units.id = picked.id AND units.hold_id IS NULL
		RETURNING units.id`, args...)
}

// ---- pessimistic ----

// Pessimistic locks the rows first (SELECT … FOR UPDATE; on SQLite the
// transaction's up-front write lock), checks, then writes. Correct, but
// every buyer of a pool waits for the one before to finish its check.
type Pessimistic struct{ base }

func (p Pessimistic) Prepare(context.Context, Reader, holdfast.HoldRequest) (Prepared, error) {
	return nil, nil
}

// lockedClaimPool is check-then-write on a row the caller has made safe
// to check (locked it, or taken a lock every writer takes).
func lockedClaimPool(ctx context.Context, tx Querier, lock string, pause time.Duration, pool string, q int64, confirmed bool) (int64, bool, error) {
	p, found, err := readPool(ctx, tx, pool, lock)
	if err != nil || !found || p.available() < q {
		return 0, false, err
	}
	limit := p.limit
	if err := think(ctx, pause); err != nil {
		return 0, false, err
	}
	_, err = tx.Exec(ctx, fmt.Sprintf(`UPDATE pools SET %[1]s = %[1]s + $2, version = version + 1 WHERE id = $1`, col(confirmed)), pool, q)
	return limit, err == nil, err
}

// takeUnits gives the units to holdID, unconditionally: the caller has
// checked them under a lock (or, for unsafe, not).
func takeUnits(ctx context.Context, tx Querier, d Dialect, holdID string, ids []string) ([]string, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	_, err := tx.Exec(ctx, `UPDATE units SET hold_id = $1 WHERE id IN (`+d.ListSelect(2)+`)`, holdID, d.ListArg(ids))
	return ids, err
}

func (p Pessimistic) ClaimPool(ctx context.Context, tx Querier, _ Prepared, pool string, q int64, confirmed bool) (int64, bool, error) {
	return lockedClaimPool(ctx, tx, p.d.ForUpdate, p.think, pool, q, confirmed)
}

func (p Pessimistic) ClaimUnits(ctx context.Context, tx Querier, _ Prepared, holdID, channel string, ids []string) ([]string, error) {
	return checkedClaimUnits(ctx, tx, p.base, p.d.ForUpdate, holdID, channel, ids)
}

func (p Pessimistic) ClaimAny(ctx context.Context, tx Querier, _ Prepared, holdID, group, channel string, k int64) ([]string, error) {
	return checkedClaimAny(ctx, tx, p.base, skipLocked(ctx, p.d), holdID, group, channel, k)
}

// checkedClaimUnits reads which of ids are free (with the lock clause),
// pauses, and takes them if all are: check-then-write, safe when the lock
// clause, the isolation or an outer lock makes it so.
func checkedClaimUnits(ctx context.Context, tx Querier, b base, lock, holdID, channel string, ids []string) ([]string, error) {
	cond, args := inChannel(channel, 2, b.d.ListArg(ids))
	free, err := queryStrings(ctx, tx, `SELECT id FROM units WHERE id IN (`+b.d.ListSelect(1)+`) AND hold_id IS NULL`+cond+` ORDER BY id`+lock, args...)
	if err != nil || len(free) < len(ids) {
		return free, err
	}
	if err := think(ctx, b.think); err != nil {
		return nil, err
	}
	return takeUnits(ctx, tx, b.d, holdID, free)
}

// checkedClaimAny picks k free units of group (with the lock clause),
// pauses, and takes them.
func checkedClaimAny(ctx context.Context, tx Querier, b base, lock, holdID, group, channel string, k int64) ([]string, error) {
	cond, args := inChannel(channel, 3, group, k)
	free, err := queryStrings(ctx, tx, `SELECT id FROM units WHERE group_id = $1 AND hold_id IS NULL`+cond+` ORDER BY id LIMIT $2`+lock, args...)
	if err != nil || int64(len(free)) < k {
		return free, err
	}
	if err := think(ctx, b.think); err != nil {
		return nil, err
	}
	return takeUnits(ctx, tx, b.d, holdID, free)
}

// ---- optimistic ----

// Optimistic reads each pool's version outside the transaction, then
// writes only if the version is unchanged (compare-and-swap); a moved
// version sends the whole claim round again, after a jittered backoff.
// Unit claims are conditional on hold_id IS NULL, itself a compare-and-set.
type Optimistic struct{ base }

type versions map[string]int64

func (o Optimistic) Prepare(ctx context.Context, db Reader, r holdfast.HoldRequest) (Prepared, error) {
	v := versions{}
	for _, l := range r.Lines {
		if l.Kind() != holdfast.LinePool {
			continue
		}
		ver, found, err := poolVersion(ctx, db, l.Pool)
		if err != nil {
			return nil, err
		}
		if found {
			v[l.Pool] = ver
		}
	}
	return v, think(ctx, o.think)
}

func (o Optimistic) ClaimPool(ctx context.Context, tx Querier, p Prepared, pool string, q int64, confirmed bool) (int64, bool, error) {
	ver, ok := p.(versions)[pool]
	if !ok {
		return 0, false, nil
	}
	var limit int64
	found, err := queryRow(ctx, tx, fmt.Sprintf(`UPDATE pools SET %[1]s = %[1]s + $2, version = version + 1
		WHERE id = $1 AND version = $3 AND capacity - held - confirmed - waitlisted - allocated >= $2 RETURNING per_holder_limit`, col(confirmed)),
		[]any{pool, q, ver}, &limit)
	if err != nil || found {
		return limit, found, err
	}
	now, _, err := poolVersion(ctx, tx, pool)
	if err != nil {
		return 0, false, err
	}
	if now != ver {
		return 0, false, ErrRetry
	}
	return 0, false, nil
}

func (o Optimistic) ClaimUnits(ctx context.Context, tx Querier, p Prepared, holdID, channel string, ids []string) ([]string, error) {
	return Atomic(o).ClaimUnits(ctx, tx, p, holdID, channel, ids)
}

func (o Optimistic) ClaimAny(ctx context.Context, tx Querier, p Prepared, holdID, group, channel string, k int64) ([]string, error) {
	return Atomic(o).ClaimAny(ctx, tx, p, holdID, group, channel, k)
}

// ---- serializable ----

// Serializable checks and writes with plain reads in a SERIALIZABLE
// transaction; PostgreSQL aborts one of two that conflict (40001) and the
// transaction runs again after a jittered backoff.
type Serializable struct{ base }

func (s Serializable) Serializable() bool { return true }

func (s Serializable) Prepare(context.Context, Reader, holdfast.HoldRequest) (Prepared, error) {
	return nil, nil
}

func (s Serializable) ClaimPool(ctx context.Context, tx Querier, _ Prepared, pool string, q int64, confirmed bool) (int64, bool, error) {
	return lockedClaimPool(ctx, tx, "", s.think, pool, q, confirmed)
}

func (s Serializable) ClaimUnits(ctx context.Context, tx Querier, _ Prepared, holdID, channel string, ids []string) ([]string, error) {
	return checkedClaimUnits(ctx, tx, s.base, "", holdID, channel, ids)
}

func (s Serializable) ClaimAny(ctx context.Context, tx Querier, _ Prepared, holdID, group, channel string, k int64) ([]string, error) {
	return checkedClaimAny(ctx, tx, s.base, "", holdID, group, channel, k)
}

// ---- unsafe ----

// Unsafe is check-then-act with no lock: it reads availability outside
// the transaction, pauses, then writes the counter it computed from that
// read — the lost update of the articles. It exists only to show the race:
// the pool counter never exceeds capacity (so no CHECK can see it), but the
// claim rows do, and the audit counts the oversell. On units the partial
// unique index refuses the second claim: the database has the last word.
type Unsafe struct{ base }

type unsafeRead struct {
	pools map[string][3]int64 // capacity, held, confirmed
	limit map[string]int64
	free  map[string]bool
	picks map[string][]string
	used  map[string]int // picks already given to earlier lines
}

// pick hands out k of the units read free for group in channel's sale,
// or ok false.
func (rd unsafeRead) pick(group, channel string, k int64) ([]string, bool) {
	key := group + "\x00" + channel
	free := rd.picks[key][rd.used[key]:]
	if int64(len(free)) < k {
		return free, false
	}
	rd.used[key] += int(k)
	return free[:k], true
}

func (u Unsafe) Prepare(ctx context.Context, db Reader, r holdfast.HoldRequest) (Prepared, error) {
	rd, err := readUnlocked(ctx, db, u.d, r)
	if err != nil {
		return nil, err
	}
	return rd, think(ctx, u.think)
}

// readUnlocked reads, without locks, what r's lines would take: the
// check of a check-then-act.
func readUnlocked(ctx context.Context, db Reader, d Dialect, r holdfast.HoldRequest) (unsafeRead, error) {
	rd := unsafeRead{pools: map[string][3]int64{}, limit: map[string]int64{}, free: map[string]bool{}, picks: map[string][]string{}, used: map[string]int{}}
	// "Any k" picks leave out the units the hold names itself, and take
	// enough for every "any" line on the group.
	named := []string{}
	wanted := map[string]int64{}
	for _, l := range r.Lines {
		named = append(named, l.Units...)
		if l.Kind() == holdfast.LineAny {
			wanted[l.Group+"\x00"+l.Channel] += l.Any
		}
	}
	for _, l := range r.Lines {
		switch l.Kind() {
		case holdfast.LinePool:
			p, found, err := readPool(ctx, db, l.Pool, "")
			if err != nil {
				return rd, err
			}
			if found {
				rd.pools[l.Pool], rd.limit[l.Pool] = [3]int64{p.capacity, p.held, p.confirmed}, p.limit
			}
		case holdfast.LineUnits:
			cond, args := inChannel(l.Channel, 2, d.ListArg(l.Units))
			free, err := queryStrings(ctx, db, `SELECT id FROM units WHERE id IN (`+d.ListSelect(1)+`) AND hold_id IS NULL`+cond, args...)
			if err != nil {
				return rd, err
			}
			for _, id := range free {
				rd.free[id] = true
			}
		case holdfast.LineAny:
			key := l.Group + "\x00" + l.Channel
			if _, done := rd.picks[key]; done {
				continue
			}
			free, err := queryStrings(ctx, db, `SELECT id FROM units WHERE group_id = $1 AND hold_id IS NULL AND channel = $4
				AND id NOT IN (`+d.ListSelect(3)+`) ORDER BY id LIMIT $2`, l.Group, wanted[key], d.ListArg(named), l.Channel)
			if err != nil {
				return rd, err
			}
			rd.picks[key] = free
		}
	}
	return rd, nil
}

func (u Unsafe) ClaimPool(ctx context.Context, tx Querier, p Prepared, pool string, q int64, confirmed bool) (int64, bool, error) {
	rd := p.(unsafeRead)
	v, ok := rd.pools[pool]
	if !ok || v[0]-v[1]-v[2] < q {
		return 0, false, nil
	}
	// The bug: write the value computed from the stale read.
	n := v[1] + q
	if confirmed {
		n = v[2] + q
	}
	_, err := tx.Exec(ctx, fmt.Sprintf(`UPDATE pools SET %s = $2, version = version + 1 WHERE id = $1`, col(confirmed)), pool, n)
	return rd.limit[pool], err == nil, err
}

func (u Unsafe) ClaimUnits(ctx context.Context, tx Querier, p Prepared, holdID, _ string, ids []string) ([]string, error) {
	rd := p.(unsafeRead)
	var free []string
	for _, id := range ids {
		if rd.free[id] {
			free = append(free, id)
		}
	}
	if len(free) < len(ids) {
		return free, nil
	}
	return takeUnits(ctx, tx, u.d, holdID, free)
}

func (u Unsafe) ClaimAny(ctx context.Context, tx Querier, p Prepared, holdID, group, channel string, k int64) ([]string, error) {
	free, ok := p.(unsafeRead).pick(group, channel, k)
	if !ok {
		return free, nil
	}
	return takeUnits(ctx, tx, u.d, holdID, free)
}

func queryStrings(ctx context.Context, q Reader, sql string, args ...any) ([]string, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}
