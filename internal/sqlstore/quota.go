package sqlstore

import (
	"context"

	"github.com/holdfast/holdfast"
)

// A key's quota: the tickets and units its holds may have held at once.
// api_keys.held_units counts them, changed in the same transaction as the
// holds (taken when a hold is made, given back when it is confirmed,
// released or expired), and each hold records what it counted, so exactly
// that goes back. The audit recounts it.

// quotaColumns read a key's id and quota. What the key's waitlist entries
// wait for counts as held: a key cannot queue past its quota what it
// could not hold.
const quotaColumns = `id, max_held_units, held_units
		+ (SELECT COALESCE(SUM(quantity), 0) FROM waitlist_entries WHERE quota_key = api_keys.id AND status = 'waiting')
		+ (SELECT COALESCE(SUM(any_count), 0) FROM group_waitlist_entries WHERE quota_key = api_keys.id AND status = 'waiting')`

// readQuota reads key id's quota (lock: a locking clause, or ""). A key
// that does not exist has none.
func readQuota(ctx context.Context, q Reader, id, lock string) (quota, error) {
	var k quota
	_, err := queryRow(ctx, q, `SELECT `+quotaColumns+` FROM api_keys WHERE id = $1`+lock, []any{id}, new(string), &k.max, &k.held)
	return k, err
}

// takeQuota counts hold holdID's units against r.QuotaKey, or reports the
// line at which it would pass the quota.
func (s *Store) takeQuota(ctx context.Context, tx Querier, holdID string, r holdfast.HoldRequest) (int, bool, error) {
	k, err := readQuota(ctx, tx, r.QuotaKey, s.d.ForUpdate)
	if err != nil || k.max == 0 {
		return 0, err == nil, err // no quota (never set, or removed since)
	}
	if line, over := k.passes(r); over {
		return line, false, nil
	}
	n := heldUnits(r)
	if _, err := tx.Exec(ctx, `UPDATE api_keys SET held_units = held_units + $2 WHERE id = $1`, r.QuotaKey, n); err != nil {
		return 0, false, err
	}
	_, err = tx.Exec(ctx, `UPDATE holds SET quota_key = $2, quota_units = $3 WHERE id = $1`, holdID, r.QuotaKey, n)
	return 0, err == nil, err
}

// giveQuota gives back what the holds ids counted against their keys'
// quotas: they leave the held state (confirmed, released, expired).
func (s *Store) giveQuota(ctx context.Context, tx Querier, ids []string) error {
	var back []quotaBack
	if err := QueryAll(ctx, tx, []Query{s.quotaQuery(ids, &back)}); err != nil {
		return err
	}
	_, err := ExecAll(ctx, tx, s.quotaStmts(back))
	return err
}

// quotaBack is what holds counted against one key's quota.
type quotaBack struct {
	key string
	n   int64
}

// quotaQuery reads what the holds ids counted against each key, in key
// order: the global lock order ends with keys.
func (s *Store) quotaQuery(ids []string, out *[]quotaBack) Query {
	return Query{`SELECT quota_key, SUM(quota_units) FROM holds
		WHERE id IN (` + s.d.ListSelect(1) + `) AND quota_units > 0 GROUP BY quota_key ORDER BY quota_key`, []any{s.d.ListArg(ids)}, func(r Row) error {
		var c quotaBack
		err := r.Scan(&c.key, &c.n)
		*out = append(*out, c)
		return err
	}}
}

// quotaStmts gives back what quotaQuery found.
func (s *Store) quotaStmts(back []quotaBack) []Stmt {
	var out []Stmt
	for _, c := range back {
		out = append(out, Stmt{`UPDATE api_keys SET held_units = held_units - $2 WHERE id = $1`, []any{c.key, c.n}})
	}
	return out
}
