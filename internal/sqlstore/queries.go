package sqlstore

import (
	"context"
	"strconv"
)

// The queries more than one path needs, each written once.

// poolRead is a pool's capacity, counters and per-holder limit. capacity
// is what new claims may have: the pool's less what its waitlist asks for
// (capacity that comes back is the list's first).
type poolRead struct {
	capacity, held, confirmed, limit int64
}

func (p poolRead) available() int64 { return p.capacity - p.held - p.confirmed }

// readPool reads pool id (lock: a locking clause, or ""); found is false
// when there is no such pool.
func readPool(ctx context.Context, q Reader, id, lock string) (p poolRead, found bool, err error) {
	open := `capacity - waitlisted - allocated`
	if forWaitlistHead(ctx) {
		open = `capacity - allocated` // the head of the line comes before every other ask
	}
	found, err = queryRow(ctx, q, `SELECT `+open+`, held, confirmed, per_holder_limit FROM pools WHERE id = $1`+lock,
		[]any{id}, &p.capacity, &p.held, &p.confirmed, &p.limit)
	return p, found, err
}

// poolVersion reads the version optimistic claims check; found is false
// when there is no such pool.
func poolVersion(ctx context.Context, q Reader, id string) (v int64, found bool, err error) {
	found, err = queryRow(ctx, q, `SELECT version FROM pools WHERE id = $1`, []any{id}, &v)
	return v, found, err
}

// groupExists reports whether group id exists.
func groupExists(ctx context.Context, q Reader, id string) (bool, error) {
	return queryRow(ctx, q, `SELECT 1 FROM groups WHERE id = $1`, []any{id}, new(int))
}

// A per-holder limit counts per API key and holder: two clients' buyers
// who both call themselves "alice" are two people. pool_holders keeps the
// holder scoped by the key that made the hold ("" for a library caller,
// whose holders stay as they are). An owner has no spaces, so the scoped
// name is unambiguous.

// holderScope is the holder as pool_holders keys it.
func holderScope(owner, holder string) string {
	if owner == "" {
		return holder
	}
	return owner + " " + holder
}

// scopedHolder is holderScope in SQL, for a hold row h.
const scopedHolder = `CASE WHEN h.owner = '' THEN h.holder ELSE h.owner || ' ' || h.holder END`

// collect runs a query and scans each row with scan: the one loop for
// list reads.
func collect[T any](ctx context.Context, q Reader, scan func(Row) (T, error), sql string, args ...any) ([]T, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// binds numbers a statement's parameters as they are added, so a
// fragment written in one place and a statement built in another never
// disagree on which $n is which.
type binds struct{ args []any }

// add binds v and returns its placeholder.
func (p *binds) add(v any) string {
	p.args = append(p.args, v)
	return "$" + strconv.Itoa(len(p.args))
}

type waitlistHeadKey struct{}

// withWaitlistHead marks a claim made for the head of a pool's waitlist:
// the strategies' reads see the whole of what is free, not what is left
// after the line's ask (which is the head's own, and those behind it).
func withWaitlistHead(ctx context.Context) context.Context {
	return context.WithValue(ctx, waitlistHeadKey{}, true)
}

func forWaitlistHead(ctx context.Context) bool { return ctx.Value(waitlistHeadKey{}) != nil }
