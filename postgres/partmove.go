package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/shard"
)

// errContested is a fence that met a change in flight holding a hold's
// row and waiting for the fence: it is tried again, soon.
var errContested = errors.New("a change in flight holds a row of the partition")

// moveLockTimeout bounds how long the fence waits for a row a change in
// flight holds (a prepared part of a hold across shards holds its rows
// until it is committed): the fence is short or it is not.
const moveLockTimeout = 3 * time.Second

// maxFences bounds the fences a move tries.
const maxFences = 50

// Move moves a partition — its pools, groups, units, holds,
// holders' counts and waitlists — to shard to, online:
//
//  1. The idempotency keys of the old shard are copied to the new one
//     (a retry of a change made there finds its key where the change
//     goes now), outside the fence.
//  2. The fence: in one transaction per database, the partition's map
//     entry is locked in the catalog (a pool or unit being placed in it
//     waits), its rows on the old shard are locked (every hold, confirm
//     or release on it waits), copied to the new shard, deleted from the
//     old one, and the map flipped — all made atomic by two-phase commit,
//     and committed new shard first, then the map, then the old shard.
//  3. A change that waited on the fence finds its rows gone when it
//     resumes; the server, any server, then reads the map again and tries
//     the change where the partition is now. A change is never written
//     to the wrong place: the old shard no longer has the rows.
//
// Holds keep their ids (which name the shards they were made on); where
// they live since is recorded in the catalog (shard_hold_homes). A hold
// still open (held, confirmed or expired) with lines in this partition
// and in another on the same shard is not split: the move is refused
// (ErrConflict) until it ends. So is a partition with a waiting room
// (ErrUnsupported).
func (db *shardDB) Move(ctx context.Context, partition string, to int, named func(string) ([]int, bool)) (shard.MoveReport, error) {
	rep := shard.MoveReport{Partition: partition, To: to}
	if err := db.catalog().QueryRow(ctx, `SELECT shard FROM shard_partitions WHERE partition = $1`, partition).Scan(&rep.From); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return rep, holdfast.Errorf(holdfast.CodeNotFound, "partition %q not found", partition)
		}
		return rep, interpret(err)
	}
	if rep.From == to {
		return rep, nil
	}
	since := time.Now().Add(-time.Second).UnixMilli()
	n, err := copyKeys(ctx, db.stores[rep.From].pool, db.stores[to].pool, 0)
	if err != nil {
		return rep, fmt.Errorf("copying idempotency keys: %w", err)
	}
	rep.Keys = n
	for {
		rep.Attempts++
		err := db.fence(ctx, &rep, since, named)
		var pe *pgconn.PgError
		again := errors.Is(err, errContested) || errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "55P03")
		if again && rep.Attempts < maxFences {
			// A deadlock with a change in flight, a lock held too long,
			// or a contested row: the changes go on, and the fence is
			// tried again a moment later.
			select {
			case <-time.After(time.Duration(rand.Int64N(int64(20 * time.Millisecond)))):
				continue
			case <-ctx.Done():
				return rep, ctx.Err()
			}
		}
		if errors.Is(err, errContested) {
			return rep, fmt.Errorf("%w: the fence met changes in flight %d times; try again", holdfast.ErrBusy, rep.Attempts)
		}
		if err != nil {
			return rep, err
		}
		break
	}
	return rep, nil
}

// moving is one fence's work: a transaction per database taking part.
type moving struct {
	db        *shardDB
	named     func(holdID string) ([]int, bool)
	partition string
	from, to  int
	txs       map[int]pgx.Tx
	pools     []string
	groups    []string
	units     int
	// holds with lines in the partition: whole (every line moves) or
	// split (a part stays), by id, and their lines that move.
	whole, split []string
	lineHold     []string
	lineNo       []int32
}

func (db *shardDB) fence(ctx context.Context, rep *shard.MoveReport, since int64, named func(string) ([]int, bool)) error {
	m := &moving{db: db, named: named, partition: rep.Partition, from: rep.From, to: rep.To, txs: map[int]pgx.Tx{}}
	var prepared []int
	for _, sh := range []int{0, m.from, m.to} {
		if m.txs[sh] != nil {
			continue
		}
		conn, err := db.stores[sh].pool.Acquire(ctx)
		if err != nil {
			return interpret(err)
		}
		defer conn.Release()
		tx, err := conn.Begin(ctx)
		if err != nil {
			return interpret(err)
		}
		defer func() {
			if !slices.Contains(prepared, sh) {
				_ = tx.Rollback(context.WithoutCancel(ctx))
			}
		}()
		if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL lock_timeout = %d", moveLockTimeout.Milliseconds())); err != nil {
			return interpret(err)
		}
		m.txs[sh] = tx
	}
	if err := m.lockMap(ctx); err != nil {
		return err
	}
	began := time.Now()
	if err := m.lockRows(ctx); err != nil {
		return err
	}
	if err := m.copyRows(ctx, since, rep); err != nil {
		return err
	}
	if err := m.deleteRows(ctx); err != nil {
		return err
	}
	if err := m.flipMap(ctx); err != nil {
		return err
	}
	fn := map[string]func(context.Context, string) error{}
	for sh, tx := range m.txs {
		fn[db.names[sh]] = func(ctx context.Context, gid string) error {
			if _, err := tx.Exec(ctx, "PREPARE TRANSACTION '"+gid+"'"); err != nil {
				return err
			}
			prepared = append(prepared, sh)
			return nil
		}
	}
	// The new shard first (a server that reads the new map finds the
	// rows there), then the map, then the old shard (a change that waited
	// on the fence, finding its rows gone, finds the new map).
	err := db.tp.runParts(ctx, fn, []string{db.names[m.to], db.names[0], db.names[m.from]})
	if err != nil {
		var pe *PartError
		if errors.As(err, &pe) {
			return pe.Err
		}
		return err
	}
	rep.Fenced = time.Since(began)
	rep.Pools, rep.Groups, rep.Units, rep.Holds = len(m.pools), len(m.groups), m.units, len(m.whole)+len(m.split)
	return nil
}

// lockMap locks the partition's entry in the catalog (placing a pool,
// group or unit in it waits until the move ends, then goes to the new
// shard) and reads what is placed in it.
func (m *moving) lockMap(ctx context.Context) error {
	cat := m.txs[0]
	var shard int
	if err := cat.QueryRow(ctx, `SELECT shard FROM shard_partitions WHERE partition = $1 FOR UPDATE`, m.partition).Scan(&shard); err != nil {
		return interpret(err)
	}
	if shard != m.from {
		return holdfast.Errorf(holdfast.CodeConflict, "partition %q moved to shard %d meanwhile", m.partition, shard)
	}
	rows, err := cat.Query(ctx, `SELECT kind, id FROM shard_placements WHERE partition = $1 AND kind <> 'unit' ORDER BY id`, m.partition)
	if err != nil {
		return interpret(err)
	}
	for rows.Next() {
		var kind, id string
		if err := rows.Scan(&kind, &id); err != nil {
			rows.Close()
			return interpret(err)
		}
		switch kind {
		case "pool":
			m.pools = append(m.pools, id)
		case "group":
			m.groups = append(m.groups, id)
		case "room":
			rows.Close()
			return holdfast.Errorf(holdfast.CodeUnsupported, "partition %q has a waiting room (%s): a partition with a room cannot move", m.partition, id)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return interpret(err)
	}
	if err := interpret(cat.QueryRow(ctx, `SELECT count(*) FROM shard_placements WHERE partition = $1 AND kind = 'unit'`, m.partition).Scan(&m.units)); err != nil {
		return err
	}
	// A channel's allocation is a pool row the catalog does not place
	// (allocation.go): it would stay behind.
	var allocated int
	if err := m.txs[m.from].QueryRow(ctx, `SELECT count(*) FROM pools WHERE parent_id = ANY($1)`, m.pools).Scan(&allocated); err != nil {
		return interpret(err)
	}
	if allocated > 0 {
		return holdfast.Errorf(holdfast.CodeUnsupported, "partition %q has pools with channel allocations: end them before moving it", m.partition)
	}
	return nil
}

// lockRows locks the partition's rows on the old shard: every hold with
// a line in it, then its pools, groups and units (the order a confirm or
// release takes them: a hold, then what it holds), then the holds made
// in between. One of those already locked is a change in flight that
// waits for the pools or units this fence holds: rather than deadlock
// with it, the fence gives up (errContested) and is tried again. A pool,
// group or unit placed in the catalog but not yet on the shard (a create
// in flight) fails the move: try again.
func (m *moving) lockRows(ctx context.Context) error {
	src := m.txs[m.from]
	// Rows this transaction locked are not skipped: the second pass
	// counts them too.
	lockHolds := func(skip string) (int, error) {
		var n int
		err := src.QueryRow(ctx, `SELECT count(*) FROM (SELECT id FROM holds WHERE id IN (`+ourHolds+`) ORDER BY id FOR UPDATE`+skip+`) l`, m.pools, m.groups).Scan(&n)
		return n, interpret(err)
	}
	if _, err := lockHolds(""); err != nil {
		return err
	}
	for _, q := range []struct {
		query string
		ids   []string
		want  int
		what  string
	}{
		{`SELECT count(*) FROM (SELECT 1 FROM pools WHERE id = ANY($1) ORDER BY id FOR UPDATE) l`, m.pools, len(m.pools), "pools"},
		{`SELECT count(*) FROM (SELECT 1 FROM groups WHERE id = ANY($1) ORDER BY id FOR UPDATE) l`, m.groups, len(m.groups), "groups"},
		{`SELECT count(*) FROM (SELECT 1 FROM units WHERE group_id = ANY($1) ORDER BY id FOR UPDATE) l`, m.groups, m.units, "units"},
	} {
		var n int
		if err := src.QueryRow(ctx, q.query, q.ids).Scan(&n); err != nil {
			return interpret(err)
		}
		if n != q.want {
			return holdfast.Errorf(holdfast.CodeConflict, "partition %q: %d %s on shard %d, %d in the catalog (one is being created): try again", m.partition, n, q.what, m.from, q.want)
		}
	}
	// No hold on the partition can commit now (its pool or unit rows are
	// locked): after this, the list is whole.
	got, err := lockHolds(" SKIP LOCKED")
	if err != nil {
		return err
	}
	var all int
	if err := src.QueryRow(ctx, `SELECT count(*) FROM (`+ourHolds+`) h`, m.pools, m.groups).Scan(&all); err != nil {
		return interpret(err)
	}
	if got != all {
		return errContested
	}
	// How many lines each of those holds has in all (planned apart: a
	// join of the two lists is one the planner misjudges badly).
	rows, err := src.Query(ctx, `SELECT hold_id, count(*) FROM hold_lines WHERE hold_id IN (`+ourHolds+`) GROUP BY hold_id`, m.pools, m.groups)
	if err != nil {
		return interpret(err)
	}
	total := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			rows.Close()
			return interpret(err)
		}
		total[id] = n
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return interpret(err)
	}
	rows, err = src.Query(ctx, `SELECT o.hold_id, o.line_no, h.status FROM (`+ourLinesOf+`) o JOIN holds h ON h.id = o.hold_id
		ORDER BY o.hold_id, o.line_no`, m.pools, m.groups)
	if err != nil {
		return interpret(err)
	}
	defer rows.Close()
	status := map[string]string{}
	mine := map[string]int{}
	for rows.Next() {
		var id, st string
		var no int32
		if err := rows.Scan(&id, &no, &st); err != nil {
			return interpret(err)
		}
		m.lineHold, m.lineNo = append(m.lineHold, id), append(m.lineNo, no)
		if mine[id] == 0 {
			status[id] = st
		}
		mine[id]++
	}
	if err := rows.Err(); err != nil {
		return interpret(err)
	}
	for i, id := range m.lineHold {
		if i > 0 && m.lineHold[i-1] == id {
			continue
		}
		switch {
		case total[id] == mine[id]:
			m.whole = append(m.whole, id)
		case ended(status[id]):
			m.split = append(m.split, id)
		default:
			return holdfast.Errorf(holdfast.CodeConflict, "hold %s is %s with lines in partition %q and in another on shard %d: the move waits until it ends", id, status[id], m.partition, m.from)
		}
	}
	return nil
}

// ourLinesOf lists the lines (hold_id, line_no) in the pools $1 and the
// groups $2; ourHolds, their holds.
const (
	ourLinesOf = `SELECT hold_id, line_no FROM hold_lines WHERE pool_id = ANY($1) OR group_id = ANY($2)
		UNION SELECT c.hold_id, c.line_no FROM unit_claims c JOIN units u ON u.id = c.unit_id WHERE u.group_id = ANY($2)`
	ourHolds = `SELECT hold_id FROM hold_lines WHERE pool_id = ANY($1) OR group_id = ANY($2)
		UNION SELECT c.hold_id FROM unit_claims c JOIN units u ON u.id = c.unit_id WHERE u.group_id = ANY($2)`
)

// ended is a hold's status from which it never changes again.
func ended(status string) bool {
	switch holdfast.Status(status) {
	case holdfast.StatusReleased, holdfast.StatusCancelled, holdfast.StatusCompleted:
		return true
	}
	return false
}

// ourLines matches the moving lines (hold_id, line_no) given as $1, $2.
const ourLines = `(hold_id, line_no) IN (SELECT * FROM unnest($1::text[], $2::integer[]))`

// copyRows copies the partition's rows to the new shard, and the keys
// written on the old one since the first copy.
func (m *moving) copyRows(ctx context.Context, since int64, rep *shard.MoveReport) error {
	src, dst := m.txs[m.from], m.txs[m.to]
	holds := append(slices.Clone(m.whole), m.split...)
	// A hold across shards may have a part on the new shard already:
	// its lines join that part, which must be in the same state.
	rows, err := dst.Query(ctx, `SELECT d.id FROM holds d WHERE d.id = ANY($1)`, holds)
	if err != nil {
		return interpret(err)
	}
	there, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return interpret(err)
	}
	for _, id := range there {
		var a, b string
		if err := src.QueryRow(ctx, `SELECT status FROM holds WHERE id = $1`, id).Scan(&a); err != nil {
			return interpret(err)
		}
		if err := dst.QueryRow(ctx, `SELECT status FROM holds WHERE id = $1`, id).Scan(&b); err != nil {
			return interpret(err)
		}
		if a != b {
			return holdfast.Errorf(holdfast.CodeConflict, "hold %s is %s on shard %d and %s on shard %d: the move waits until its parts agree", id, a, m.from, b, m.to)
		}
	}
	newHolds := slices.DeleteFunc(slices.Clone(holds), func(id string) bool { return slices.Contains(there, id) })
	for _, c := range []struct {
		table, where string
		args         []any
	}{
		{"pools", "id = ANY($1)", []any{m.pools}},
		{"groups", "id = ANY($1)", []any{m.groups}},
		{"holds", "id = ANY($1)", []any{newHolds}},
		{"hold_lines", ourLines, []any{m.lineHold, m.lineNo}},
		{"units", "group_id = ANY($1)", []any{m.groups}},
		{"unit_claims", ourLines, []any{m.lineHold, m.lineNo}},
		{"pool_holders", "pool_id = ANY($1)", []any{m.pools}},
		{"waitlist_entries", "pool_id = ANY($1)", []any{m.pools}},
		{"group_waitlist_entries", "group_id = ANY($1)", []any{m.groups}},
	} {
		if _, err := copyTable(ctx, src, dst, c.table, c.where, c.args...); err != nil {
			return fmt.Errorf("copying %s: %w", c.table, err)
		}
	}
	n, err := copyKeys(ctx, src, dst, since)
	rep.Keys += n
	return err
}

// deleteRows removes the partition's rows from the old shard, children
// first. The outbox stays: it is the old shard's history, and the feed
// reads every shard's.
func (m *moving) deleteRows(ctx context.Context) error {
	src := m.txs[m.from]
	for _, d := range []struct {
		query string
		args  []any
	}{
		{`DELETE FROM unit_claims WHERE ` + ourLines, []any{m.lineHold, m.lineNo}},
		{`DELETE FROM waitlist_entries WHERE pool_id = ANY($1)`, []any{m.pools}},
		{`DELETE FROM group_waitlist_entries WHERE group_id = ANY($1)`, []any{m.groups}},
		{`DELETE FROM pool_holders WHERE pool_id = ANY($1)`, []any{m.pools}},
		{`DELETE FROM units WHERE group_id = ANY($1)`, []any{m.groups}},
		{`DELETE FROM hold_lines WHERE ` + ourLines, []any{m.lineHold, m.lineNo}},
		{`DELETE FROM holds WHERE id = ANY($1)`, []any{m.whole}},
		{`DELETE FROM pools WHERE id = ANY($1)`, []any{m.pools}},
		{`DELETE FROM groups WHERE id = ANY($1)`, []any{m.groups}},
	} {
		if _, err := src.Exec(ctx, d.query, d.args...); err != nil {
			return interpret(err)
		}
	}
	return nil
}

// flipMap points the partition at its new shard and records where its
// holds live now.
func (m *moving) flipMap(ctx context.Context) error {
	cat := m.txs[0]
	if _, err := cat.Exec(ctx, `UPDATE shard_partitions SET shard = $2, version = version + 1 WHERE partition = $1`, m.partition, m.to); err != nil {
		return interpret(err)
	}
	all := append(slices.Clone(m.whole), m.split...)
	rows, err := cat.Query(ctx, `SELECT hold_id, shards FROM shard_hold_homes WHERE hold_id = ANY($1)`, all)
	if err != nil {
		return interpret(err)
	}
	homes := map[string][]int{}
	for rows.Next() {
		var id string
		var shards []int32
		if err := rows.Scan(&id, &shards); err != nil {
			rows.Close()
			return interpret(err)
		}
		for _, sh := range shards {
			homes[id] = append(homes[id], int(sh))
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return interpret(err)
	}
	whole := make(map[string]bool, len(m.whole))
	for _, id := range m.whole {
		whole[id] = true
	}
	var rowsNext [][]any
	for _, id := range all {
		cur, ok := homes[id]
		if !ok {
			cur, _ = m.named(id)
		}
		next := slices.Clone(cur)
		if whole[id] {
			next = slices.DeleteFunc(next, func(sh int) bool { return sh == m.from })
		}
		if !slices.Contains(next, m.to) {
			next = append(next, m.to)
		}
		slices.Sort(next)
		if named, _ := m.named(id); !slices.Equal(named, next) {
			shards := make([]int32, len(next))
			for i, sh := range next {
				shards[i] = int32(sh)
			}
			rowsNext = append(rowsNext, []any{id, shards})
		}
	}
	if _, err := cat.Exec(ctx, `DELETE FROM shard_hold_homes WHERE hold_id = ANY($1)`, all); err != nil {
		return interpret(err)
	}
	_, err = cat.CopyFrom(ctx, pgx.Identifier{"shard_hold_homes"}, []string{"hold_id", "shards"}, pgx.CopyFromRows(rowsNext))
	return interpret(err)
}

// source is a pool or a transaction to copy from.
type source interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// copyTable copies table's rows matching where from src to dst, every
// column as it is (the shards have the same schema: the same migrations).
func copyTable(ctx context.Context, src source, dst pgx.Tx, table, where string, args ...any) (int64, error) {
	rows, err := src.Query(ctx, `SELECT * FROM `+table+` WHERE `+where, args...)
	if err != nil {
		return 0, interpret(err)
	}
	var cols []string
	for _, f := range rows.FieldDescriptions() {
		cols = append(cols, f.Name)
	}
	var data [][]any
	for rows.Next() {
		v, err := rows.Values()
		if err != nil {
			rows.Close()
			return 0, interpret(err)
		}
		data = append(data, v)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(data) == 0 {
		return 0, interpret(err)
	}
	n, err := dst.CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromRows(data))
	return n, interpret(err)
}

// copyKeys copies the idempotency keys updated since (ms) on src that
// dst does not have. dst is a pool (one transaction) or a transaction.
func copyKeys(ctx context.Context, src source, dst any, since int64) (int, error) {
	run := func(tx pgx.Tx) (int, error) {
		rows, err := src.Query(ctx, `SELECT scope, key FROM idempotency_keys WHERE updated_at >= $1`, since)
		if err != nil {
			return 0, interpret(err)
		}
		type key struct{ scope, key string }
		var scopes, keys []string
		for rows.Next() {
			var k key
			if err := rows.Scan(&k.scope, &k.key); err != nil {
				rows.Close()
				return 0, interpret(err)
			}
			scopes, keys = append(scopes, k.scope), append(keys, k.key)
		}
		rows.Close()
		if err := rows.Err(); err != nil || len(keys) == 0 {
			return 0, interpret(err)
		}
		have, err := tx.Query(ctx, `SELECT k.scope, k.key FROM idempotency_keys k JOIN unnest($1::text[], $2::text[]) AS v (scope, key) ON k.scope = v.scope AND k.key = v.key`, scopes, keys)
		if err != nil {
			return 0, interpret(err)
		}
		skip := map[key]bool{}
		for have.Next() {
			var k key
			if err := have.Scan(&k.scope, &k.key); err != nil {
				have.Close()
				return 0, interpret(err)
			}
			skip[k] = true
		}
		have.Close()
		if err := have.Err(); err != nil {
			return 0, interpret(err)
		}
		var ms, mk []string
		for i := range keys {
			if !skip[key{scopes[i], keys[i]}] {
				ms, mk = append(ms, scopes[i]), append(mk, keys[i])
			}
		}
		n, err := copyTable(ctx, src, tx, "idempotency_keys", `(scope, key) IN (SELECT * FROM unnest($1::text[], $2::text[]))`, ms, mk)
		return int(n), err
	}
	switch d := dst.(type) {
	case pgx.Tx:
		return run(d)
	case *pgxpool.Pool:
		var n int
		err := pgx.BeginFunc(ctx, d, func(tx pgx.Tx) error {
			var err error
			n, err = run(tx)
			return err
		})
		return n, err
	}
	return 0, fmt.Errorf("copyKeys: %T is not a destination", dst)
}
