package postgres

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/internal/loop"
)

// Shards is holdfast on several PostgreSQL primaries behind one API. The
// first database is the catalog: it records which shard each partition
// (an event, a venue, a tenant: see Pool.Partition) lives on, and keeps
// API keys, webhooks and two-phase decisions; it may hold partitions too.
//
// A hold whose lines all live on one shard (a checkout for one event) runs
// on that shard alone, batched as on one database. A hold spanning shards
// (a festival pass) is made atomically with PostgreSQL's two-phase commit
// (TwoPhase): a part per shard, prepared in shard order, decided in the
// catalog, then committed. Its later changes (confirm, release…) go
// through two-phase commit too, so a hold is never half confirmed.
//
// Every database needs max_prepared_transactions above 0 for holds across
// shards. Each Shards runs ResolvePrepared every few seconds (see
// Options.ResolveEvery).
type Shards struct {
	*view
	holdfast.KeyStore
	holdfast.WebhookStore
	set      *shardSet
	resolver *loop.Loop // nil when ResolveEvery < 0
}

var _ holdfast.Store = (*Shards)(nil)

// shardSet is what every view of a Shards shares.
type shardSet struct {
	stores []*Store
	// control is a small pool per shard for ending prepared parts: never
	// the store's own, whose connections may all be waiting on the row
	// locks a prepared part holds until it is committed.
	control []*pgxpool.Pool
	tp      *TwoPhase
	names   []string // a shard's name in the two-phase coordinator

	mu    sync.RWMutex
	where map[placeKey]placed // pools, groups, units and rooms
	// homes are the shards of holds that no longer live where their ids
	// say (a partition moved: see MovePartition), as far as known.
	homes map[string][]int
	// version is the map's version these were read at: when the
	// catalog's changes, they are forgotten (see watchMap).
	version int64
}

// placed is where a pool, group, unit or room is.
type placed struct {
	shard     int
	partition string
}

type placeKey struct{ kind, id string }

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

// OpenShards opens every shard (the first URL is the catalog), applies
// the migrations on each, and checks that the shards are the ones, in the
// order, the catalog knows (a new URL at the end is a new shard). opts
// applies to every shard; the strategy must be atomic.
func OpenShards(ctx context.Context, urls []string, opts Options) (*Shards, error) {
	if len(urls) == 0 {
		return nil, errors.New("postgres: no databases to shard over")
	}
	if opts.Strategy != "" && opts.Strategy != holdfast.Atomic {
		return nil, holdfast.Errorf(holdfast.CodeUnsupported, "shards take the atomic strategy only")
	}
	set := &shardSet{where: map[placeKey]placed{}, homes: map[string][]int{}, version: -1}
	closeAll := func() {
		for _, st := range set.stores {
			st.Close()
		}
		for _, c := range set.control {
			c.Close()
		}
	}
	parts := map[string]*pgxpool.Pool{}
	for i, url := range urls {
		o := opts
		o.holdPrefix = shardPrefix(i)
		st, err := Open(ctx, url, o)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("shard %d: %w", i, err)
		}
		set.stores = append(set.stores, st)
		if len(urls) > 1 {
			// Holds across shards prepare a part on each: refuse at start,
			// not at the first such hold with a 500.
			if err := checkPrepared(ctx, st.pool, i); err != nil {
				closeAll()
				return nil, err
			}
		}
		cfg := st.pool.Config().Copy()
		cfg.MaxConns, cfg.MinConns = 4, 0
		control, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("shard %d: %w", i, err)
		}
		set.control = append(set.control, control)
		name := fmt.Sprintf("shard%04d", i) // sorts in shard order
		set.names = append(set.names, name)
		parts[name] = control
	}
	if err := set.join(ctx); err != nil {
		closeAll()
		return nil, err
	}
	if err := set.watchMap(ctx); err != nil {
		closeAll()
		return nil, err
	}
	set.tp = NewTwoPhase(set.control[0], parts)
	cat := set.stores[0]
	s := &Shards{view: &view{set: set}, KeyStore: cat, WebhookStore: cat, set: set}
	if opts.ResolveEvery >= 0 {
		s.resolver = s.resolveEvery(cmp.Or(opts.ResolveEvery, 2*time.Second), cmp.Or(opts.ResolveAfter, 5*time.Second), cmp.Or(opts.Logger, slog.Default()))
		// The resolver is the store's own: parts a dead coordinator left
		// must end whether or not the program runs the background
		// services (package service), so it lives from Open to Close.
		_ = s.resolver.Start(ctx)
	}
	return s, nil
}

// resolveEvery is a loop running ResolvePrepared every interval: every
// server runs one, so parts left by a coordinator that died end within
// seconds.
func (s *Shards) resolveEvery(interval, after time.Duration, log *slog.Logger) *loop.Loop {
	return loop.Every(interval, func(ctx context.Context) {
		if err := s.set.watchMap(ctx); err != nil && ctx.Err() == nil {
			log.Warn("reading the shard map's version", "err", err)
		}
		c, r, err := s.ResolvePrepared(ctx, after)
		if err != nil && ctx.Err() == nil {
			log.Warn("resolving prepared parts of holds across shards", "err", err)
		}
		if c+r > 0 {
			log.Info("resolved prepared parts of holds across shards", "committed", c, "rolled_back", r)
		}
	})
}

// shardPrefix begins the ids of the holds made on shard i alone: the
// catalog's are plain ("h_": a single database grown into shards keeps
// its holds where they are).
func shardPrefix(i int) string {
	if i == 0 {
		return "h_"
	}
	return "h" + strconv.Itoa(i) + "_"
}

// crossPrefix begins the id of a hold across shards, naming them.
func crossPrefix(shards []int) string {
	var b strings.Builder
	b.WriteString("hx")
	for i, k := range shards {
		if i > 0 {
			b.WriteByte('-')
		}
		b.WriteString(strconv.Itoa(k))
	}
	b.WriteByte('_')
	return b.String()
}

// holdShards is the shards a hold lives on: where a move put it, as far
// as this server knows, else the ones its id names; false for an id no
// shard made.
func (set *shardSet) holdShards(id string) ([]int, bool) {
	named, ok := set.shardsNamed(id)
	if !ok {
		return nil, false
	}
	set.mu.RLock()
	home, moved := set.homes[id]
	set.mu.RUnlock()
	if moved {
		return home, true
	}
	return named, true
}

// shardsNamed reads from a hold's id the shards it was made on.
func (set *shardSet) shardsNamed(id string) ([]int, bool) {
	if !strings.HasPrefix(id, "h") {
		return nil, false
	}
	head, _, ok := strings.Cut(id[1:], "_")
	if !ok {
		return nil, false
	}
	if head == "" {
		return []int{0}, true
	}
	cross := strings.HasPrefix(head, "x")
	var out []int
	for _, f := range strings.Split(strings.TrimPrefix(head, "x"), "-") {
		k, err := strconv.Atoi(f)
		if err != nil || k < 0 || k >= len(set.stores) || (len(out) > 0 && k <= out[len(out)-1]) || (!cross && k == 0) {
			return nil, false
		}
		out = append(out, k)
	}
	if cross != (len(out) > 1) {
		return nil, false
	}
	return out, true
}

// join writes each shard's identity into its database (once) and checks
// the list against the catalog's.
func (set *shardSet) join(ctx context.Context) error {
	cat := set.stores[0].pool
	for i, st := range set.stores {
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
	if n != len(set.stores) {
		return fmt.Errorf("postgres: the catalog knows %d shards, %d were given: a shard cannot be left out", n, len(set.stores))
	}
	return nil
}

// Capabilities: the optional contracts shards offer. Stats are each
// shard's (Shard(i)), not the set's; the webhook queue is the catalog's
// alone and is not routed.
func (s *Shards) Capabilities() []holdfast.Capability {
	return []holdfast.Capability{holdfast.CapLayouts, holdfast.CapUnitPages, holdfast.CapEventTail, holdfast.CapConfig}
}

var (
	_ holdfast.Capable      = (*Shards)(nil)
	_ holdfast.GroupLayouts = (*Shards)(nil)
	_ holdfast.UnitPages    = (*Shards)(nil)
	_ holdfast.EventTail    = (*Shards)(nil)
	_ holdfast.Configured   = (*Shards)(nil)
)

// Close closes every shard.
func (s *Shards) Close() error {
	var errs []error
	if s.resolver != nil {
		errs = append(errs, s.resolver.Stop(context.Background()))
	}
	for _, st := range s.set.stores {
		errs = append(errs, st.Close())
	}
	for _, c := range s.set.control {
		c.Close()
	}
	return errors.Join(errs...)
}

// Shard returns shard i's own store, for what concerns one database: its
// metrics, its audit.
func (s *Shards) Shard(i int) *Store { return s.set.stores[i] }

// Len is how many shards there are.
func (s *Shards) Len() int { return len(s.set.stores) }

// Config is every shard's hold lifetime bounds.
func (s *Shards) Config() holdfast.Config { return s.set.stores[0].Config() }

// ResolvePrepared ends the parts of changes across shards prepared more
// than olderThan ago, as the catalog decided them (see TwoPhase.Resolve).
func (s *Shards) ResolvePrepared(ctx context.Context, olderThan time.Duration) (committed, rolledBack int, err error) {
	return s.set.tp.Resolve(ctx, olderThan)
}

// ---- placement ----

// place records a new pool, group or room (kind, id) in partition, which
// is put on a shard now if it is new (shard, when not -1, chosen by the
// caller; else the shard with the fewest partitions). ErrConflict if the
// id is placed already, unless on the same partition (a create that
// failed after placing, tried again).
func (set *shardSet) place(ctx context.Context, kind, id, partition string) (int, error) {
	var shard int
	err := pgx.BeginFunc(ctx, set.stores[0].pool, func(tx pgx.Tx) error {
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
	if err != nil {
		return 0, interpret(err)
	}
	set.mu.Lock()
	set.where[placeKey{kind, id}] = placed{shard, partition}
	set.mu.Unlock()
	return shard, nil
}

// placeUnits records units in their group's partition. ErrConflict if a
// unit is placed in another.
func (set *shardSet) placeUnits(ctx context.Context, group string, ids []string) error {
	err := pgx.BeginFunc(ctx, set.stores[0].pool, func(tx pgx.Tx) error {
		// A move of the partition in progress is waited for (see
		// MovePartition), and the group read again after it.
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

// locate finds where (kind, id) pairs are: from memory, else from the
// catalog. A pair placed nowhere is not in the answer.
func (set *shardSet) locate(ctx context.Context, keys []placeKey) (map[placeKey]placed, error) {
	out := make(map[placeKey]placed, len(keys))
	var missKinds, missIDs []string
	set.mu.RLock()
	for _, k := range keys {
		if p, ok := set.where[k]; ok {
			out[k] = p
		} else {
			missKinds, missIDs = append(missKinds, k.kind), append(missIDs, k.id)
		}
	}
	set.mu.RUnlock()
	if len(missIDs) == 0 {
		return out, nil
	}
	rows, err := set.stores[0].pool.Query(ctx, `SELECT pl.kind, pl.id, p.shard, p.partition
		FROM unnest($1::text[], $2::text[]) AS k (kind, id)
		JOIN shard_placements pl ON pl.kind = k.kind AND pl.id = k.id
		JOIN shard_partitions p ON p.partition = pl.partition`, missKinds, missIDs)
	if err != nil {
		return nil, interpret(err)
	}
	defer rows.Close()
	set.mu.Lock()
	defer set.mu.Unlock()
	for rows.Next() {
		var k placeKey
		var p placed
		if err := rows.Scan(&k.kind, &k.id, &p.shard, &p.partition); err != nil {
			return nil, interpret(err)
		}
		out[k] = p
		set.where[k] = p
	}
	return out, interpret(rows.Err())
}

// partitionShown is a pool's or group's partition as read back: empty
// when it is its own id (the default).
func (set *shardSet) partitionShown(ctx context.Context, kind, id string) string {
	m, err := set.locate(ctx, []placeKey{{kind, id}})
	if p := m[placeKey{kind, id}]; err == nil && p.partition != id {
		return p.partition
	}
	return ""
}

// shardOf is locate for one pair; ErrNotFound when it is placed nowhere.
func (set *shardSet) shardOf(ctx context.Context, kind, id string) (int, error) {
	if err := holdfast.ValidateID(kind, id); err != nil {
		return 0, holdfast.Errorf(holdfast.CodeNotFound, "%s %q not found", kind, id)
	}
	k := placeKey{kind, id}
	m, err := set.locate(ctx, []placeKey{k})
	if err != nil {
		return 0, err
	}
	p, ok := m[k]
	if !ok {
		return 0, holdfast.Errorf(holdfast.CodeNotFound, "%s %q not found", kind, id)
	}
	return p.shard, nil
}
