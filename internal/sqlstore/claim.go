package sqlstore

import (
	"context"
	"fmt"

	"github.com/holdfast/holdfast"
)

// Claimer is the strategy seam: how one claim on one resource is made atomic.
// Each method runs inside the hold's write transaction, which the engine
// opened and will roll back if any line fails; the engine calls them in one
// global lock order (pools by id, then explicit units by id, then groups).
type Claimer interface {
	// ClaimPool takes q from the pool, into held or (book-now) confirmed.
	// ok is false if the pool has less than q available or does not exist;
	// the engine then works out which, outside the transaction. limit is the
	// pool's per_holder_limit, for the engine to enforce.
	ClaimPool(ctx context.Context, tx Querier, pool string, q int64, confirmed bool) (limit int64, ok bool, err error)
	// ClaimUnits gives exactly the free units among ids (sorted) to holdID and
	// returns those it took; the engine compares with what it asked for.
	ClaimUnits(ctx context.Context, tx Querier, holdID string, ids []string) ([]string, error)
	// ClaimAny gives up to k free units of group to holdID and returns them.
	ClaimAny(ctx context.Context, tx Querier, holdID, group string, k int64) ([]string, error)
}

func newClaimer(s holdfast.Strategy, d Dialect) (Claimer, error) {
	switch s {
	case holdfast.Atomic, "":
		return Atomic{D: d}, nil
	}
	return nil, holdfast.Errorf(holdfast.CodeUnsupported, "strategy %q is not available on %s", s, d.Name)
}

// Atomic is the atomic strategy: every claim is one conditional UPDATE whose
// WHERE clause is the availability check, with the rows affected (or
// returned) as the answer. There is no window between check and write for
// another server to slip into; concurrent claims on a row queue on its lock
// and each re-evaluates the condition on the row as the previous one left it.
type Atomic struct{ D Dialect }

func (a Atomic) ClaimPool(ctx context.Context, tx Querier, pool string, q int64, confirmed bool) (int64, bool, error) {
	col := "held"
	if confirmed {
		col = "confirmed"
	}
	rows, err := tx.Query(ctx, fmt.Sprintf(`UPDATE pools SET %[1]s = %[1]s + $2, version = version + 1
		WHERE id = $1 AND capacity - held - confirmed >= $2 RETURNING per_holder_limit`, col), pool, q)
	if err != nil {
		return 0, false, err
	}
	defer rows.Close()
	var limit int64
	ok := rows.Next()
	if ok {
		if err := rows.Scan(&limit); err != nil {
			return 0, false, err
		}
	}
	return limit, ok, rows.Err()
}

func (a Atomic) ClaimUnits(ctx context.Context, tx Querier, holdID string, ids []string) ([]string, error) {
	// The inner SELECT locks the free rows in id order (PostgreSQL locks as
	// it emits sorted rows), so two holds over overlapping seats queue
	// instead of deadlocking; after waiting, a row taken meanwhile no longer
	// matches hold_id IS NULL and is left out.
	return queryStrings(ctx, tx, `UPDATE units SET hold_id = $1 WHERE id IN (
		SELECT id FROM units WHERE id IN (`+a.D.ListSelect(2)+`) AND hold_id IS NULL ORDER BY id`+a.D.ForUpdate+`)
		RETURNING id`, holdID, a.D.ListArg(ids))
}

func (a Atomic) ClaimAny(ctx context.Context, tx Querier, holdID, group string, k int64) ([]string, error) {
	// SKIP LOCKED: buyers of "any k" never wait behind each other; each
	// takes free units nobody else is taking at this instant.
	return queryStrings(ctx, tx, `UPDATE units SET hold_id = $1 WHERE id IN (
		SELECT id FROM units WHERE group_id = $2 AND hold_id IS NULL ORDER BY id LIMIT $3`+a.D.SkipLocked+`)
		RETURNING id`, holdID, group, k)
}

func queryStrings(ctx context.Context, q Querier, sql string, args ...any) ([]string, error) {
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
