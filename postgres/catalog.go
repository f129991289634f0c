package postgres

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/internal/sqlstore"
	"github.com/holdfast/holdfast/shard"
)

// OpenShards opens every shard (the first URL is the catalog), applies
// the migrations on each, checks that the shards are the ones, in the
// order, the catalog knows (a new URL at the end is a new shard), and
// returns them as one store (see package shard). opts applies to every
// shard; the strategy must be atomic.
//
// Every database needs max_prepared_transactions above 0 for holds across
// shards. The set runs ResolvePrepared every few seconds (see
// Options.ResolveEvery).
func OpenShards(ctx context.Context, urls []string, opts Options) (*shard.Set, error) {
	s, _, err := openShards(ctx, urls, opts)
	return s, err
}

// openShards is OpenShards, with the backend (tests reach its two-phase
// coordinator).
func openShards(ctx context.Context, urls []string, opts Options) (*shard.Set, *shardDB, error) {
	if len(urls) == 0 {
		return nil, nil, errors.New("postgres: no databases to shard over")
	}
	if opts.Strategy != "" && opts.Strategy != holdfast.Atomic {
		return nil, nil, holdfast.Errorf(holdfast.CodeUnsupported, "shards take the atomic strategy only")
	}
	db := &shardDB{}
	var nodes []shard.Node
	closeAll := func() {
		for _, st := range db.stores {
			st.Close()
		}
		db.Close()
	}
	parts := map[string]*pgxpool.Pool{}
	for i, url := range urls {
		o := opts
		o.holdPrefix = shard.HoldPrefix(i)
		st, err := Open(ctx, url, o)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("shard %d: %w", i, err)
		}
		db.stores = append(db.stores, st)
		nodes = append(nodes, st)
		if len(urls) > 1 {
			// Holds across shards prepare a part on each: refuse at start,
			// not at the first such hold with a 500.
			if err := checkPrepared(ctx, st.pool, i); err != nil {
				closeAll()
				return nil, nil, err
			}
		}
		cfg := st.pool.Config().Copy()
		cfg.MaxConns, cfg.MinConns = 4, 0
		control, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("shard %d: %w", i, err)
		}
		db.control = append(db.control, control)
		name := fmt.Sprintf("shard%04d", i) // sorts in shard order
		db.names = append(db.names, name)
		parts[name] = control
	}
	if err := db.join(ctx); err != nil {
		closeAll()
		return nil, nil, err
	}
	db.tp = NewTwoPhase(db.control[0], parts)
	s, err := shard.Open(ctx, nodes, db, shard.Options{ResolveEvery: opts.ResolveEvery, ResolveAfter: opts.ResolveAfter, Logger: opts.Logger})
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return s, db, nil
}

// shardDB is the shard.Backend on PostgreSQL: the catalog's map in the
// first database (shard_partitions, shard_placements, shard_hold_homes),
// two-phase commit with PREPARE TRANSACTION, and moves by COPY.
type shardDB struct {
	stores []*Store
	// control is a small pool per shard for ending prepared parts: never
	// the store's own, whose connections may all be waiting on the row
	// locks a prepared part holds until it is committed.
	control []*pgxpool.Pool
	tp      *TwoPhase
	names   []string // a shard's name in the two-phase coordinator
}

var _ shard.Backend = (*shardDB)(nil)

func (db *shardDB) catalog() *pgxpool.Pool { return db.stores[0].pool }

// Close closes the control pools (the stores are the Set's nodes).
func (db *shardDB) Close() {
	for _, c := range db.control {
		c.Close()
	}
}

// checkPrepared refuses a shard whose server cannot prepare transactions
// (max_prepared_transactions 0, most installs' default): every hold across
// shards prepares a part on each shard it touches.
func checkPrepared(ctx context.Context, pool *pgxpool.Pool, shard int) error {
	var prepared int
	if err := pool.QueryRow(ctx, `SELECT current_setting('max_prepared_transactions')::int`).Scan(&prepared); err != nil {
		return fmt.Errorf("shard %d: reading max_prepared_transactions: %w", shard, err)
	}
	if prepared > 0 {
		return nil
	}
	name := "the catalog (shard 0)"
	if shard > 0 {
		name = fmt.Sprintf("shard %d", shard)
	}
	return fmt.Errorf("postgres: %s has max_prepared_transactions = %d; holds across shards need it above 0 — as many as this server's connections to it (%d) to never wait: set max_prepared_transactions = %d in its postgresql.conf and restart it",
		name, prepared, pool.Config().MaxConns, max(pool.Config().MaxConns, 100))
}

// join writes each shard's identity into its database (once) and checks
// the list against the catalog's.
func (db *shardDB) join(ctx context.Context) error {
	cat := db.catalog()
	for i, st := range db.stores {
		var b [16]byte
		_, _ = rand.Read(b[:])
		var identity string
		if err := st.pool.QueryRow(ctx, `INSERT INTO shard_self (identity) VALUES ($1)
			ON CONFLICT (only_row) DO UPDATE SET identity = shard_self.identity RETURNING identity`, hex.EncodeToString(b[:])).Scan(&identity); err != nil {
			return fmt.Errorf("shard %d: %w", i, err)
		}
		var known string
		err := cat.QueryRow(ctx, `INSERT INTO shard_members (shard, identity) VALUES ($1, $2)
			ON CONFLICT (shard) DO UPDATE SET shard = excluded.shard RETURNING identity`, i, identity).Scan(&known)
		if err != nil {
			return fmt.Errorf("shard %d: %w", i, err)
		}
		if known != identity {
			return fmt.Errorf("postgres: shard %d is not the database the catalog knows as shard %d: give the shards in the order they were first given, new ones last", i, i)
		}
	}
	var n int
	if err := cat.QueryRow(ctx, `SELECT count(*) FROM shard_members`).Scan(&n); err != nil {
		return err
	}
	if n != len(db.stores) {
		return fmt.Errorf("postgres: the catalog knows %d shards, %d were given: a shard cannot be left out", n, len(db.stores))
	}
	return nil
}

// ---- the map ----

func (db *shardDB) Place(ctx context.Context, kind, id, partition string) (int, error) {
	var shard int
	err := pgx.BeginFunc(ctx, db.catalog(), func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO shard_partitions (partition, shard, created_at)
			SELECT $1, m.shard, holdfast_now_ms() FROM shard_members m
			ORDER BY (SELECT count(*) FROM shard_partitions p WHERE p.shard = m.shard), m.shard LIMIT 1
			ON CONFLICT (partition) DO NOTHING`, partition); err != nil {
			return err
		}
		var placed string
		if err := tx.QueryRow(ctx, `INSERT INTO shard_placements (kind, id, partition) VALUES ($1, $2, $3)
			ON CONFLICT (kind, id) DO UPDATE SET kind = excluded.kind RETURNING partition`, kind, id, partition).Scan(&placed); err != nil {
			return err
		}
		if placed != partition {
			return holdfast.Errorf(holdfast.CodeConflict, "%s %q exists", kind, id)
		}
		// FOR SHARE: a move of the partition in progress is waited for.
		return tx.QueryRow(ctx, `SELECT shard FROM shard_partitions WHERE partition = $1 FOR SHARE`, partition).Scan(&shard)
	})
	return shard, interpret(err)
}

func (db *shardDB) PlaceUnits(ctx context.Context, group string, ids []string) error {
	err := pgx.BeginFunc(ctx, db.catalog(), func(tx pgx.Tx) error {
		// A move of the partition in progress is waited for (see
		// Move), and the group read again after it.
		if _, err := tx.Exec(ctx, `SELECT 1 FROM shard_partitions p JOIN shard_placements g ON g.partition = p.partition
			WHERE g.kind = 'group' AND g.id = $1 FOR SHARE OF p`, group); err != nil {
			return err
		}
		n, err := tx.Exec(ctx, `INSERT INTO shard_placements (kind, id, partition)
			SELECT 'unit', u, g.partition FROM unnest($2::text[]) u, shard_placements g WHERE g.kind = 'group' AND g.id = $1
			ON CONFLICT (kind, id) DO UPDATE SET kind = excluded.kind WHERE shard_placements.partition = excluded.partition`, group, ids)
		if err != nil {
			return err
		}
		if n.RowsAffected() != int64(len(ids)) {
			return holdfast.Errorf(holdfast.CodeConflict, "a unit id exists in another group")
		}
		return nil
	})
	return interpret(err)
}

func (db *shardDB) Locate(ctx context.Context, kinds, ids []string) ([]shard.Placement, error) {
	rows, err := db.catalog().Query(ctx, `SELECT pl.kind, pl.id, p.shard, p.partition
		FROM unnest($1::text[], $2::text[]) AS k (kind, id)
		JOIN shard_placements pl ON pl.kind = k.kind AND pl.id = k.id
		JOIN shard_partitions p ON p.partition = pl.partition`, kinds, ids)
	if err != nil {
		return nil, interpret(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (shard.Placement, error) {
		var p shard.Placement
		err := r.Scan(&p.Kind, &p.ID, &p.Shard, &p.Partition)
		return p, err
	})
	return out, interpret(err)
}

func (db *shardDB) MapVersion(ctx context.Context) (int64, error) {
	var v int64
	err := db.catalog().QueryRow(ctx, `SELECT coalesce(sum(version), 0)::bigint FROM shard_partitions`).Scan(&v)
	return v, interpret(err)
}

func (db *shardDB) Homes(ctx context.Context) (map[string][]int, error) {
	rows, err := db.catalog().Query(ctx, `SELECT hold_id, shards FROM shard_hold_homes`)
	if err != nil {
		return nil, interpret(err)
	}
	defer rows.Close()
	homes := map[string][]int{}
	for rows.Next() {
		var id string
		var shards []int32
		if err := rows.Scan(&id, &shards); err != nil {
			return nil, interpret(err)
		}
		homes[id] = ints(shards)
	}
	return homes, interpret(rows.Err())
}

func (db *shardDB) Home(ctx context.Context, id string) ([]int, bool, error) {
	var shards []int32
	err := db.catalog().QueryRow(ctx, `SELECT shards FROM shard_hold_homes WHERE hold_id = $1`, id).Scan(&shards)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, interpret(err)
	}
	return ints(shards), true, nil
}

func ints(in []int32) []int {
	out := make([]int, len(in))
	for i, n := range in {
		out[i] = int(n)
	}
	return out
}

// PurgeHomes holds the whole map (FOR SHARE) while it looks: a move in
// progress is waited for, and none starts meanwhile — a hold moving
// between two shards could otherwise be missed on both.
func (db *shardDB) PurgeHomes(ctx context.Context) error {
	err := pgx.BeginFunc(ctx, db.catalog(), func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT 1 FROM shard_partitions FOR SHARE`); err != nil {
			return err
		}
		ids, err := queryIDs(ctx, tx, `SELECT hold_id FROM shard_hold_homes`)
		if err != nil || len(ids) == 0 {
			return err
		}
		gone := make(map[string]bool, len(ids))
		for _, id := range ids {
			gone[id] = true
		}
		for i, st := range db.stores {
			found, err := queryIDs(ctx, st.pool, `SELECT id FROM holds WHERE id = ANY($1)`, ids)
			if err != nil {
				return fmt.Errorf("shard %d: %w", i, err)
			}
			for _, id := range found {
				delete(gone, id)
			}
		}
		var drop []string
		for id := range gone {
			drop = append(drop, id)
		}
		_, err = tx.Exec(ctx, `DELETE FROM shard_hold_homes WHERE hold_id = ANY($1)`, drop)
		return err
	})
	return interpret(err)
}

// queryIDs runs a query of one text column.
func queryIDs(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, sql string, args ...any) ([]string, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

func (db *shardDB) Partitions(ctx context.Context) ([]shard.Partition, error) {
	rows, err := db.catalog().Query(ctx, `SELECT p.partition, p.shard, p.version,
			count(*) FILTER (WHERE pl.kind = 'pool'), count(*) FILTER (WHERE pl.kind = 'group'), count(*) FILTER (WHERE pl.kind = 'unit')
		FROM shard_partitions p LEFT JOIN shard_placements pl ON pl.partition = p.partition
		GROUP BY p.partition, p.shard, p.version ORDER BY p.partition`)
	if err != nil {
		return nil, interpret(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (shard.Partition, error) {
		var p shard.Partition
		err := r.Scan(&p.Partition, &p.Shard, &p.Version, &p.Pools, &p.Groups, &p.Units)
		return p, err
	})
	return out, interpret(err)
}

// ---- the shards' rows ----

func (db *shardDB) KeyShard(ctx context.Context, scope, key string) (int, error) {
	for i, st := range db.stores {
		var one int
		err := st.pool.QueryRow(ctx, `SELECT 1 FROM idempotency_keys WHERE scope = $1 AND key = $2`, scope, key).Scan(&one)
		if err == nil {
			return i, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return 0, interpret(err)
		}
	}
	return 0, nil
}

func (db *shardDB) LineNos(ctx context.Context, sh int, id string) ([]int, error) {
	rows, err := db.stores[sh].pool.Query(ctx, `SELECT line_no FROM hold_lines WHERE hold_id = $1 ORDER BY line_no`, id)
	if err != nil {
		return nil, interpret(err)
	}
	nos, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	return ints(nos), interpret(err)
}

func (db *shardDB) HoldStates(ctx context.Context, sh int, also []string) ([]shard.HoldState, error) {
	rows, err := db.stores[sh].pool.Query(ctx, `SELECT id, status, updated_at > holdfast_now_ms() - 60000 FROM holds WHERE id LIKE 'hx%' OR id = ANY($1)`, also)
	if err != nil {
		return nil, interpret(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (shard.HoldState, error) {
		var h shard.HoldState
		err := r.Scan(&h.ID, &h.Status, &h.Recent)
		return h, err
	})
	return out, interpret(err)
}

func (db *shardDB) PreparedParts(ctx context.Context, sh int, olderThan time.Duration) ([]string, error) {
	return preparedParts(ctx, db.stores[sh].pool, olderThan)
}

// ---- two-phase commit ----

func (db *shardDB) RunParts(ctx context.Context, fn map[int]func(ctx context.Context, gid string) error) error {
	named := make(map[string]func(context.Context, string) error, len(fn))
	for sh, f := range fn {
		named[db.names[sh]] = f
	}
	return unpart(db.tp.RunParts(ctx, named))
}

// unpart unwraps a failed part's error: the caller sees the refusal, not
// the machinery.
func unpart(err error) error {
	var pe *PartError
	if errors.As(err, &pe) {
		return pe.Err
	}
	if errors.Is(err, ErrTwoPhaseAborted) {
		return fmt.Errorf("%w: %v", holdfast.ErrBusy, err)
	}
	return err
}

func (db *shardDB) InPart(ctx context.Context, gid, holdID string, lineNos []int) context.Context {
	return sqlstore.AsPart(ctx, sqlstore.Part{GID: gid, HoldID: holdID, LineNos: lineNos})
}

func (db *shardDB) Probe(ctx context.Context, sh int, holdID string, lineNos []int, fn func(ctx context.Context) error) error {
	var b [12]byte
	_, _ = rand.Read(b[:])
	gid := gidPrefix + hex.EncodeToString(b[:]) + ".probe"
	if err := fn(db.InPart(ctx, gid, holdID, lineNos)); err != nil {
		return err
	}
	// Prepared: roll it back (if this fails, the resolver does: no
	// decision is ever written for a probe).
	_, _ = db.control[sh].Exec(context.WithoutCancel(ctx), "ROLLBACK PREPARED '"+gid+"'")
	return nil
}

func (db *shardDB) Resolve(ctx context.Context, olderThan time.Duration) (committed, rolledBack int, err error) {
	return db.tp.Resolve(ctx, olderThan)
}

// ---- raw access, for tests that count in the databases ----

// execRaw runs a statement on every shard (internal/rawsql). A shard that
// refuses it for a foreign key (a row of a pool on another shard) is
// passed over when another shard wrote rows with it.
func (db *shardDB) execRaw(ctx context.Context, query string, args ...any) error {
	var refused error
	wrote := false
	for _, st := range db.stores {
		tag, err := st.pool.Exec(ctx, query, args...)
		var pgErr interface{ SQLState() string }
		switch {
		case err == nil:
			wrote = wrote || tag.RowsAffected() > 0
		case errors.As(err, &pgErr) && pgErr.SQLState() == "23503":
			refused = cmp.Or(refused, err)
		default:
			return err
		}
	}
	if refused != nil && !wrote {
		return refused
	}
	return nil
}

// queryInt runs a query returning one integer on every shard and sums
// what the shards that have a row answer (internal/rawsql).
func (db *shardDB) queryInt(ctx context.Context, query string, args ...any) (int64, error) {
	var total int64
	found := false
	for _, st := range db.stores {
		var n *int64
		err := st.pool.QueryRow(ctx, query, args...).Scan(&n)
		if errors.Is(err, pgx.ErrNoRows) {
			continue
		}
		if err != nil {
			return 0, err
		}
		found = true
		if n != nil {
			total += *n
		}
	}
	if !found {
		return 0, pgx.ErrNoRows
	}
	return total, nil
}
