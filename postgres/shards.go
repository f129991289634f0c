package postgres

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/internal/sqlstore"
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
	set          *shardSet
	stopResolver func()
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
}

// placed is where a pool, group, unit or room is.
type placed struct {
	shard     int
	partition string
}

type placeKey struct{ kind, id string }

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
	set := &shardSet{where: map[placeKey]placed{}}
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
	set.tp = NewTwoPhase(set.control[0], parts)
	cat := set.stores[0]
	s := &Shards{view: &view{set: set}, KeyStore: cat, WebhookStore: cat, set: set, stopResolver: func() {}}
	if opts.ResolveEvery >= 0 {
		s.stopResolver = s.resolveEvery(cmp.Or(opts.ResolveEvery, 2*time.Second), cmp.Or(opts.ResolveAfter, 5*time.Second), cmp.Or(opts.Logger, slog.Default()))
	}
	return s, nil
}

// resolveEvery runs ResolvePrepared every interval until the returned
// func is called (and waits for a run in progress): every server does,
// so parts left by a coordinator that died end within seconds.
func (s *Shards) resolveEvery(interval, after time.Duration, log *slog.Logger) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			c, r, err := s.ResolvePrepared(ctx, after)
			if err != nil && ctx.Err() == nil {
				log.Warn("resolving prepared parts of holds across shards", "err", err)
			}
			if c+r > 0 {
				log.Info("resolved prepared parts of holds across shards", "committed", c, "rolled_back", r)
			}
		}
	}()
	return func() { cancel(); <-done }
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

// holdShards reads from a hold's id the shards it lives on; false for an
// id no shard made.
func (set *shardSet) holdShards(id string) ([]int, bool) {
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

// Close closes every shard.
func (s *Shards) Close() error {
	s.stopResolver()
	var errs []error
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
		return tx.QueryRow(ctx, `SELECT shard FROM shard_partitions WHERE partition = $1`, partition).Scan(&shard)
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

// ---- the routed contracts ----

// target is what a shard's store offers a view: itself, or its keyed view.
type target interface {
	holdfast.Catalog
	holdfast.Booking
	holdfast.RoomStore
	holdfast.WaitlistStore
}

// view routes the catalog, bookings, rooms and waitlists to the shards:
// Shards' own, and a keyed one per request (see Keyed).
type view struct {
	set *shardSet
	key *holdfast.Idempotency

	mu   sync.Mutex
	used holdfast.Keyed // the keyed shard view the change went through
	// tried is the shard the change was tried on, or -1: a refusal is
	// recorded there (see keyedShards.FinishIdempotent).
	tried int
}

// on is shard i as this view reaches it: keyed if the view is.
func (v *view) on(i int) target {
	if v.key == nil {
		return v.set.stores[i]
	}
	k := v.set.stores[i].Keyed(*v.key)
	v.mu.Lock()
	v.used, v.tried = k, i
	v.mu.Unlock()
	return k
}

func partitionOf(given, id string) (string, error) {
	if given == "" {
		return id, nil
	}
	if err := holdfast.ValidateID("partition", given); err != nil {
		return "", err
	}
	return given, nil
}

func (v *view) CreatePool(ctx context.Context, p holdfast.Pool) (holdfast.Pool, error) {
	if err := holdfast.ValidateID("pool", p.ID); err != nil {
		return holdfast.Pool{}, err
	}
	part, err := partitionOf(p.Partition, p.ID)
	if err != nil {
		return holdfast.Pool{}, err
	}
	sh, err := v.set.place(ctx, "pool", p.ID, part)
	if err != nil {
		return holdfast.Pool{}, err
	}
	p.Partition = ""
	out, err := v.on(sh).CreatePool(ctx, p)
	if err == nil && part != p.ID {
		out.Partition = part
	}
	return out, err
}

func (v *view) Pool(ctx context.Context, id string) (holdfast.Pool, error) {
	sh, err := v.set.shardOf(ctx, "pool", id)
	if err != nil {
		return holdfast.Pool{}, err
	}
	p, err := v.on(sh).Pool(ctx, id)
	p.Partition = v.set.partitionShown(ctx, "pool", id)
	return p, err
}

func (v *view) Pools(ctx context.Context) ([]holdfast.Pool, error) {
	var out []holdfast.Pool
	for i := range v.set.stores {
		ps, err := v.set.stores[i].Pools(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, ps...)
	}
	keys := make([]placeKey, len(out))
	for i, p := range out {
		keys[i] = placeKey{"pool", p.ID}
	}
	m, err := v.set.locate(ctx, keys)
	if err != nil {
		return nil, err
	}
	for i, p := range out {
		if part := m[placeKey{"pool", p.ID}].partition; part != p.ID {
			out[i].Partition = part
		}
	}
	slices.SortFunc(out, func(a, b holdfast.Pool) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

func (v *view) SetCapacity(ctx context.Context, id string, capacity int64) (holdfast.Pool, error) {
	sh, err := v.set.shardOf(ctx, "pool", id)
	if err != nil {
		return holdfast.Pool{}, err
	}
	return v.on(sh).SetCapacity(ctx, id, capacity)
}

func (v *view) SetPoolLateConfirm(ctx context.Context, id string, policy holdfast.LatePolicy, grace int64) (holdfast.Pool, error) {
	sh, err := v.set.shardOf(ctx, "pool", id)
	if err != nil {
		return holdfast.Pool{}, err
	}
	return v.on(sh).SetPoolLateConfirm(ctx, id, policy, grace)
}

func (v *view) CreateGroup(ctx context.Context, g holdfast.Group) (holdfast.Group, error) {
	if err := holdfast.ValidateID("group", g.ID); err != nil {
		return holdfast.Group{}, err
	}
	part, err := partitionOf(g.Partition, g.ID)
	if err != nil {
		return holdfast.Group{}, err
	}
	sh, err := v.set.place(ctx, "group", g.ID, part)
	if err != nil {
		return holdfast.Group{}, err
	}
	g.Partition = ""
	out, err := v.on(sh).CreateGroup(ctx, g)
	if err == nil && part != g.ID {
		out.Partition = part
	}
	return out, err
}

func (v *view) AddUnits(ctx context.Context, group string, ids []string) error {
	sh, err := v.set.shardOf(ctx, "group", group)
	if err != nil {
		return err
	}
	if err := holdfast.ValidateUnitIDs(ids); err != nil {
		return err
	}
	// Placed first: a unit id is unique across every group of every
	// shard, and only the catalog sees them all.
	if err := v.set.placeUnits(ctx, group, ids); err != nil {
		return err
	}
	return v.on(sh).AddUnits(ctx, group, ids)
}

func (v *view) Group(ctx context.Context, id string) (holdfast.GroupAvailability, error) {
	sh, err := v.set.shardOf(ctx, "group", id)
	if err != nil {
		return holdfast.GroupAvailability{}, err
	}
	g, err := v.on(sh).Group(ctx, id)
	g.Partition = v.set.partitionShown(ctx, "group", id)
	return g, err
}

func (v *view) SetGroupLateConfirm(ctx context.Context, id string, policy holdfast.LatePolicy, grace int64) (holdfast.Group, error) {
	sh, err := v.set.shardOf(ctx, "group", id)
	if err != nil {
		return holdfast.Group{}, err
	}
	return v.on(sh).SetGroupLateConfirm(ctx, id, policy, grace)
}

func (v *view) Units(ctx context.Context, group string, status holdfast.UnitStatus) ([]holdfast.Unit, error) {
	sh, err := v.set.shardOf(ctx, "group", group)
	if err != nil {
		return nil, err
	}
	return v.on(sh).Units(ctx, group, status)
}

// ---- holds ----

// route finds the shard of every line of r. A units line must name
// units of one shard; a line naming something placed nowhere answers
// ErrNotFound, first in request order.
func (set *shardSet) route(ctx context.Context, r holdfast.HoldRequest) ([]int, error) {
	var keys []placeKey
	for _, l := range r.Lines {
		switch l.Kind() {
		case holdfast.LinePool:
			keys = append(keys, placeKey{"pool", l.Pool})
		case holdfast.LineAny:
			keys = append(keys, placeKey{"group", l.Group})
		case holdfast.LineUnits:
			for _, u := range l.Units {
				keys = append(keys, placeKey{"unit", u})
			}
		}
	}
	m, err := set.locate(ctx, keys)
	if err != nil {
		return nil, err
	}
	shards := make([]int, len(r.Lines))
	for i, l := range r.Lines {
		var names []placeKey
		switch l.Kind() {
		case holdfast.LinePool:
			names = []placeKey{{"pool", l.Pool}}
		case holdfast.LineAny:
			names = []placeKey{{"group", l.Group}}
		default:
			for _, u := range l.Units {
				names = append(names, placeKey{"unit", u})
			}
		}
		for j, k := range names {
			p, ok := m[k]
			sh := p.shard
			if !ok {
				return nil, holdfast.LineErrorf(holdfast.CodeNotFound, i, "%s %q not found", k.kind, k.id)
			}
			if j > 0 && sh != shards[i] {
				return nil, holdfast.LineErrorf(holdfast.CodeInvalid, i, "a units line names units of one partition's shard; split it into a line per event")
			}
			shards[i] = sh
		}
	}
	return shards, nil
}

func (v *view) Hold(ctx context.Context, r holdfast.HoldRequest) (holdfast.Hold, error) {
	return v.hold(ctx, r, false, "")
}

func (v *view) Book(ctx context.Context, r holdfast.HoldRequest, paymentRef string) (holdfast.Hold, error) {
	if err := holdfast.ValidatePaymentRef(paymentRef); err != nil {
		return holdfast.Hold{}, err
	}
	return v.hold(ctx, r, true, paymentRef)
}

func (v *view) hold(ctx context.Context, r holdfast.HoldRequest, confirm bool, paymentRef string) (holdfast.Hold, error) {
	if err := r.Validate(v.set.stores[0].Config()); err != nil {
		return holdfast.Hold{}, err
	}
	lineShard, err := v.set.route(ctx, r)
	if err != nil {
		return holdfast.Hold{}, err
	}
	var shards []int
	for _, sh := range lineShard {
		if !slices.Contains(shards, sh) {
			shards = append(shards, sh)
		}
	}
	slices.Sort(shards)
	if len(shards) == 1 {
		// The common case: one event's checkout, on its shard alone.
		t := v.on(shards[0])
		if confirm {
			return t.Book(ctx, r, paymentRef)
		}
		return t.Hold(ctx, r)
	}
	if r.Admission != "" {
		return holdfast.Hold{}, holdfast.Errorf(holdfast.CodeInvalid, "a hold spending a waiting room's admission names pools and groups of one partition")
	}
	v.triedOn(shards)
	id := holdfast.NewID(crossPrefix(shards), time.Now())
	nos := map[int][]int{}
	for i, sh := range lineShard {
		nos[sh] = append(nos[sh], i)
	}
	var got parts
	fn := map[string]func(context.Context, string) error{}
	for _, sh := range shards {
		sub := r
		sub.Lines = nil
		for _, i := range nos[sh] {
			sub.Lines = append(sub.Lines, r.Lines[i])
		}
		fn[v.set.names[sh]] = func(ctx context.Context, gid string) error {
			ctx = sqlstore.AsPart(ctx, sqlstore.Part{GID: gid, HoldID: id, LineNos: nos[sh]})
			t := v.lastKeyed(sh, shards, &got, nos, len(r.Lines))
			var h holdfast.Hold
			var err error
			if confirm {
				h, err = t.Book(ctx, sub, paymentRef)
			} else {
				h, err = t.Hold(ctx, sub)
			}
			if err != nil {
				return lineIn(err, nos[sh])
			}
			got.add(sh, h)
			return nil
		}
	}
	if err := v.set.tp.RunParts(ctx, fn); err != nil {
		return holdfast.Hold{}, v.firstFailing(ctx, err, r, id, nos, confirm, paymentRef)
	}
	return got.assemble(id, nos, len(r.Lines)), nil
}

// parts collects the parts of a change across shards as they are made.
type parts struct {
	mu sync.Mutex
	m  map[int]holdfast.Hold
}

func (p *parts) add(sh int, h holdfast.Hold) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[int]holdfast.Hold{}
	}
	p.m[sh] = h
}

// assemble merges the parts into the hold across shards.
func (p *parts) assemble(id string, nos map[int][]int, lines int) holdfast.Hold {
	p.mu.Lock()
	defer p.mu.Unlock()
	h := holdfast.Hold{ID: id, Lines: make([]holdfast.Line, lines)}
	shards := make([]int, 0, len(p.m))
	for sh := range p.m {
		shards = append(shards, sh)
	}
	slices.Sort(shards)
	for _, sh := range shards {
		merge(&h, p.m[sh], nos[sh])
	}
	return h
}

// triedOn notes that a change across shards is tried: its key, and a
// refusal's record, live on its last shard (see lastKeyed).
func (v *view) triedOn(shards []int) {
	v.mu.Lock()
	v.tried = shards[len(shards)-1]
	v.mu.Unlock()
}

// lastKeyed is the store a part of a change across shards is made
// through: the last shard's part (prepared last, when the others are
// made) records the whole change's answer under the view's idempotency
// key, in its own transaction; the others record nothing.
func (v *view) lastKeyed(sh int, shards []int, got *parts, nos map[int][]int, lines int) target {
	if v.key == nil || sh != shards[len(shards)-1] {
		return v.set.stores[sh]
	}
	k := *v.key
	render := k.Render
	k.Render = func(result any) holdfast.StoredResponse {
		part, ok := result.(holdfast.Hold)
		if !ok {
			return render(result)
		}
		got.add(sh, part)
		return render(got.assemble(part.ID, nos, lines))
	}
	kv := v.set.stores[sh].Keyed(k)
	v.mu.Lock()
	v.used, v.tried = kv, sh
	v.mu.Unlock()
	return kv
}

// firstFailing answers a hold across shards that a part refused at line
// L. Parts are made in shard order, not request order: a shard not yet
// tried may refuse an earlier line, and the answer must name the first
// failing line in request order. Each such shard is asked for its lines
// before L alone, as a part prepared and at once rolled back.
func (v *view) firstFailing(ctx context.Context, err error, r holdfast.HoldRequest, id string, nos map[int][]int, confirm bool, paymentRef string) error {
	err = unpart(err)
	var he *holdfast.Error
	if !errors.As(err, &he) || he.Line <= 0 {
		return err
	}
	best := err
	for sh, lines := range nos {
		var sub holdfast.HoldRequest
		var subNos []int
		for _, i := range lines {
			if i < he.Line {
				subNos = append(subNos, i)
			}
		}
		if len(subNos) == 0 {
			continue
		}
		sub = r
		sub.Lines = nil
		for _, i := range subNos {
			sub.Lines = append(sub.Lines, r.Lines[i])
		}
		var b [12]byte
		_, _ = rand.Read(b[:])
		gid := gidPrefix + hex.EncodeToString(b[:]) + ".probe"
		pctx := sqlstore.AsPart(ctx, sqlstore.Part{GID: gid, HoldID: id, LineNos: subNos})
		var perr error
		if confirm {
			_, perr = v.set.stores[sh].Book(pctx, sub, paymentRef)
		} else {
			_, perr = v.set.stores[sh].Hold(pctx, sub)
		}
		if perr == nil {
			// Prepared: roll it back (if this fails, the resolver does:
			// no decision is ever written for a probe).
			_, _ = v.set.control[sh].Exec(context.WithoutCancel(ctx), "ROLLBACK PREPARED '"+gid+"'")
			continue
		}
		perr = lineIn(perr, subNos)
		var pe *holdfast.Error
		if errors.As(perr, &pe) && pe.Line >= 0 && pe.Line < holdfast.ErrorLine(best) {
			best = perr
		}
	}
	return best
}

// lineIn renumbers a part's line error as the whole request's line.
func lineIn(err error, nos []int) error {
	var he *holdfast.Error
	if !errors.As(err, &he) || he.Line < 0 || he.Line >= len(nos) {
		return err
	}
	c := *he
	c.Line = nos[he.Line]
	return &c
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

// merge adds a part of a hold across shards (its lines numbered nos in
// the whole) to h. The parts agree on all but their lines and times: the
// hold reads as its least advanced part (an expired part makes it
// expired), and expires with its first part.
func merge(h *holdfast.Hold, part holdfast.Hold, nos []int) {
	first := h.Holder == "" && h.Status == ""
	for j, l := range part.Lines {
		if j < len(nos) && nos[j] < len(h.Lines) {
			h.Lines[nos[j]] = l
		}
	}
	if first {
		lines, id := h.Lines, h.ID
		*h = part
		h.Lines, h.ID = lines, id
		return
	}
	if rank(part.Status) < rank(h.Status) {
		h.Status = part.Status
	}
	if part.ExpiresAt.Before(h.ExpiresAt) {
		h.ExpiresAt = part.ExpiresAt
	}
	if part.CreatedAt.Before(h.CreatedAt) {
		h.CreatedAt = part.CreatedAt
	}
	if part.UpdatedAt.After(h.UpdatedAt) {
		h.UpdatedAt = part.UpdatedAt
	}
	h.Late = h.Late || part.Late
}

// rank orders a hold's states so that a hold across shards reads as the
// part that has moved least, or that ended without a sale.
func rank(s holdfast.Status) int {
	switch s {
	case holdfast.StatusExpired, holdfast.StatusReleased, holdfast.StatusCancelled:
		return 0
	case holdfast.StatusHeld:
		return 1
	case holdfast.StatusConfirmed:
		return 2
	}
	return 3
}

// lineNos reads which of a hold's lines live on shard sh.
func (set *shardSet) lineNos(ctx context.Context, sh int, id string) ([]int, error) {
	rows, err := set.stores[sh].pool.Query(ctx, `SELECT line_no FROM hold_lines WHERE hold_id = $1 ORDER BY line_no`, id)
	if err != nil {
		return nil, interpret(err)
	}
	nos, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	out := make([]int, len(nos))
	for i, n := range nos {
		out[i] = int(n)
	}
	return out, interpret(err)
}

// crossHold reads a hold across shards, every part.
func (set *shardSet) crossHold(ctx context.Context, id string, shards []int) (holdfast.Hold, map[int][]int, error) {
	parts := map[int]holdfast.Hold{}
	nos := map[int][]int{}
	n := 0
	for _, sh := range shards {
		p, err := set.stores[sh].GetHold(ctx, id)
		if err != nil {
			return holdfast.Hold{}, nil, err
		}
		if nos[sh], err = set.lineNos(ctx, sh, id); err != nil {
			return holdfast.Hold{}, nil, err
		}
		parts[sh] = p
		n += len(p.Lines)
	}
	h := holdfast.Hold{ID: id, Lines: make([]holdfast.Line, n)}
	for _, sh := range shards {
		merge(&h, parts[sh], nos[sh])
	}
	return h, nos, nil
}

func (v *view) GetHold(ctx context.Context, id string) (holdfast.Hold, error) {
	shards, ok := v.set.holdShards(id)
	if !ok {
		return holdfast.Hold{}, holdfast.Errorf(holdfast.CodeNotFound, "hold %q not found", id)
	}
	if len(shards) == 1 {
		return v.on(shards[0]).GetHold(ctx, id)
	}
	h, _, err := v.set.crossHold(ctx, id, shards)
	return h, err
}

func (v *view) Holds(ctx context.Context, holder, owner string) ([]holdfast.Hold, error) {
	var out []holdfast.Hold
	seen := map[string]bool{}
	for i := range v.set.stores {
		hs, err := v.set.stores[i].Holds(ctx, holder, owner)
		if err != nil {
			return nil, err
		}
		for _, h := range hs {
			if seen[h.ID] {
				continue
			}
			seen[h.ID] = true
			if shards, _ := v.set.holdShards(h.ID); len(shards) > 1 {
				if h, _, err = v.set.crossHold(ctx, h.ID, shards); err != nil {
					return nil, err
				}
			}
			out = append(out, h)
		}
	}
	slices.SortFunc(out, func(a, b holdfast.Hold) int {
		return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), cmp.Compare(b.ID, a.ID))
	})
	return out, nil
}

// change makes one change to a hold: on its shard, or on every shard of
// a hold across shards at once (two-phase commit). do makes the change on
// one shard's part, given the part's line numbers and the hold's count.
func (v *view) change(ctx context.Context, id string, do func(ctx context.Context, t target, nos []int, lines int) (holdfast.Hold, error)) (holdfast.Hold, error) {
	shards, ok := v.set.holdShards(id)
	if !ok {
		return holdfast.Hold{}, holdfast.Errorf(holdfast.CodeNotFound, "hold %q not found", id)
	}
	if len(shards) == 1 {
		return do(ctx, v.on(shards[0]), nil, 0)
	}
	before, nos, err := v.set.crossHold(ctx, id, shards)
	if err != nil {
		return holdfast.Hold{}, err
	}
	lines := len(before.Lines)
	v.triedOn(shards)
	var got parts
	fn := map[string]func(context.Context, string) error{}
	for _, sh := range shards {
		fn[v.set.names[sh]] = func(ctx context.Context, gid string) error {
			t := v.lastKeyed(sh, shards, &got, nos, lines)
			h, err := do(sqlstore.AsPart(ctx, sqlstore.Part{GID: gid}), t, nos[sh], lines)
			if err == nil {
				got.add(sh, h)
			}
			return err
		}
	}
	if err := v.set.tp.RunParts(ctx, fn); err != nil {
		return holdfast.Hold{}, unpart(err)
	}
	return got.assemble(id, nos, lines), nil
}

func (v *view) Confirm(ctx context.Context, id, paymentRef string) (holdfast.Hold, error) {
	return v.change(ctx, id, func(ctx context.Context, t target, _ []int, _ int) (holdfast.Hold, error) {
		return t.Confirm(ctx, id, paymentRef)
	})
}

func (v *view) ConfirmPart(ctx context.Context, id, paymentRef string, part []holdfast.PartLine) (holdfast.Hold, error) {
	return v.change(ctx, id, func(ctx context.Context, t target, nos []int, lines int) (holdfast.Hold, error) {
		if nos == nil {
			return t.ConfirmPart(ctx, id, paymentRef, part)
		}
		for i, p := range part {
			if p.Line < 0 || p.Line >= lines {
				return holdfast.Hold{}, holdfast.LineErrorf(holdfast.CodeInvalid, i, "line %d is not a line of the hold", p.Line)
			}
		}
		// This shard's share of the part: the lines it has, by their
		// numbers in the whole hold (as the part's lines are stored).
		var mine []holdfast.PartLine
		var idx []int
		for i, p := range part {
			if slices.Contains(nos, p.Line) {
				mine, idx = append(mine, p), append(idx, i)
			}
		}
		if len(mine) == 0 {
			return t.Confirm(ctx, id, paymentRef)
		}
		h, err := t.ConfirmPart(ctx, id, paymentRef, mine)
		return h, lineIn(err, idx)
	})
}

func (v *view) Release(ctx context.Context, id string) (holdfast.Hold, error) {
	return v.change(ctx, id, func(ctx context.Context, t target, _ []int, _ int) (holdfast.Hold, error) { return t.Release(ctx, id) })
}

func (v *view) Extend(ctx context.Context, id string, ttl time.Duration) (holdfast.Hold, error) {
	return v.change(ctx, id, func(ctx context.Context, t target, _ []int, _ int) (holdfast.Hold, error) {
		return t.Extend(ctx, id, ttl)
	})
}

func (v *view) Cancel(ctx context.Context, id string) (holdfast.Hold, error) {
	return v.change(ctx, id, func(ctx context.Context, t target, _ []int, _ int) (holdfast.Hold, error) { return t.Cancel(ctx, id) })
}

func (v *view) Complete(ctx context.Context, id string) (holdfast.Hold, error) {
	return v.change(ctx, id, func(ctx context.Context, t target, _ []int, _ int) (holdfast.Hold, error) { return t.Complete(ctx, id) })
}

// ---- rooms and waitlists: on the shard of what they protect ----

func (v *view) CreateRoom(ctx context.Context, r holdfast.Room) (holdfast.Room, error) {
	if err := holdfast.ValidateID("room", r.ID); err != nil {
		return holdfast.Room{}, err
	}
	var keys []placeKey
	for _, p := range r.Pools {
		keys = append(keys, placeKey{"pool", p})
	}
	for _, g := range r.Groups {
		keys = append(keys, placeKey{"group", g})
	}
	m, err := v.set.locate(ctx, keys)
	if err != nil {
		return holdfast.Room{}, err
	}
	var part string
	for _, k := range keys {
		pl, ok := m[k]
		if !ok {
			return holdfast.Room{}, holdfast.Errorf(holdfast.CodeNotFound, "%s %q not found", k.kind, k.id)
		}
		p := pl.partition
		if part != "" && p != part {
			return holdfast.Room{}, holdfast.Errorf(holdfast.CodeInvalid, "a room protects pools and groups of one partition")
		}
		part = p
	}
	if part == "" {
		return v.on(0).CreateRoom(ctx, r) // nothing to protect: its own refusal
	}
	sh, err := v.set.place(ctx, "room", r.ID, part)
	if err != nil {
		return holdfast.Room{}, err
	}
	return v.on(sh).CreateRoom(ctx, r)
}

func (v *view) Room(ctx context.Context, id string) (holdfast.Room, error) {
	sh, err := v.set.shardOf(ctx, "room", id)
	if err != nil {
		return holdfast.Room{}, err
	}
	return v.on(sh).Room(ctx, id)
}

func (v *view) JoinRoom(ctx context.Context, room, holder, owner string) (holdfast.RoomTicket, error) {
	sh, err := v.set.shardOf(ctx, "room", room)
	if err != nil {
		return holdfast.RoomTicket{}, err
	}
	return v.on(sh).JoinRoom(ctx, room, holder, owner)
}

func (v *view) RoomTicket(ctx context.Context, room, ticket string) (holdfast.RoomTicket, error) {
	sh, err := v.set.shardOf(ctx, "room", room)
	if err != nil {
		return holdfast.RoomTicket{}, err
	}
	return v.on(sh).RoomTicket(ctx, room, ticket)
}

func (v *view) JoinWaitlist(ctx context.Context, r holdfast.WaitlistRequest) (holdfast.WaitlistEntry, error) {
	sh, err := v.set.shardOf(ctx, "pool", r.Pool)
	if err != nil {
		return holdfast.WaitlistEntry{}, err
	}
	return v.on(sh).JoinWaitlist(ctx, r)
}

func (v *view) WaitlistEntry(ctx context.Context, pool, id string) (holdfast.WaitlistEntry, error) {
	sh, err := v.set.shardOf(ctx, "pool", pool)
	if err != nil {
		return holdfast.WaitlistEntry{}, err
	}
	return v.on(sh).WaitlistEntry(ctx, pool, id)
}

func (v *view) Waitlist(ctx context.Context, pool string) ([]holdfast.WaitlistEntry, error) {
	sh, err := v.set.shardOf(ctx, "pool", pool)
	if err != nil {
		return nil, err
	}
	return v.on(sh).Waitlist(ctx, pool)
}

func (v *view) LeaveWaitlist(ctx context.Context, pool, id, owner string) (holdfast.WaitlistEntry, error) {
	sh, err := v.set.shardOf(ctx, "pool", pool)
	if err != nil {
		return holdfast.WaitlistEntry{}, err
	}
	return v.on(sh).LeaveWaitlist(ctx, pool, id, owner)
}

// ---- idempotency: the key lives with the change it guards ----

// Keyed returns the shards with their changes guarded by k: a change on
// one shard records its answer there, in its own transaction, as on one
// database. A change across shards records nothing itself (the server
// stores its answer after the fact).
func (s *Shards) Keyed(k holdfast.Idempotency) holdfast.Keyed {
	cat := s.set.stores[0].Keyed(k)
	return &keyedShards{view: &view{set: s.set, key: &k, tried: -1}, KeyStore: cat, WebhookStore: cat, catalog: cat, shards: s}
}

type keyedShards struct {
	*view
	holdfast.KeyStore
	holdfast.WebhookStore
	catalog holdfast.Keyed
	shards  *Shards
}

// FinishIdempotent records a refusal on the shard the change was tried
// on (the last shard of a hold across shards, whose part claims the key):
// a retry with the key claims it there, in its change's transaction, and
// so finds the refusal. A request refused before it reached a shard is
// recorded as Shards.FinishIdempotent does.
func (k *keyedShards) FinishIdempotent(ctx context.Context, scope, key, fingerprint, token string, r holdfast.StoredResponse) error {
	k.mu.Lock()
	tried := k.tried
	k.mu.Unlock()
	if tried < 0 {
		return k.shards.FinishIdempotent(ctx, scope, key, fingerprint, token, r)
	}
	return k.set.stores[tried].FinishIdempotent(ctx, scope, key, fingerprint, token, r)
}

func (k *keyedShards) Answer() (holdfast.StoredResponse, bool) {
	k.mu.Lock()
	used := k.used
	k.mu.Unlock()
	if used != nil {
		if r, ok := used.Answer(); ok {
			return r, true
		}
	}
	return k.catalog.Answer()
}

// keyShard finds the shard that has (scope, key), the catalog if none.
func (s *Shards) keyShard(ctx context.Context, scope, key string) (int, error) {
	for i, st := range s.set.stores {
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

func (s *Shards) BeginIdempotent(ctx context.Context, scope, key, fingerprint string, staleAfter time.Duration) (string, *holdfast.StoredResponse, error) {
	sh, err := s.keyShard(ctx, scope, key)
	if err != nil {
		return "", nil, err
	}
	return s.set.stores[sh].BeginIdempotent(ctx, scope, key, fingerprint, staleAfter)
}

func (s *Shards) FinishIdempotent(ctx context.Context, scope, key, fingerprint, token string, r holdfast.StoredResponse) error {
	sh, err := s.keyShard(ctx, scope, key)
	if err != nil {
		return err
	}
	return s.set.stores[sh].FinishIdempotent(ctx, scope, key, fingerprint, token, r)
}

func (s *Shards) AbandonIdempotent(ctx context.Context, scope, key, token string) error {
	sh, err := s.keyShard(ctx, scope, key)
	if err != nil {
		return err
	}
	return s.set.stores[sh].AbandonIdempotent(ctx, scope, key, token)
}

func (s *Shards) PurgeIdempotency(ctx context.Context) (int, error) {
	return sumShards(s, func(st *Store) (int, error) { return st.PurgeIdempotency(ctx) })
}

// ---- operations: every shard ----

func sumShards(s *Shards, fn func(st *Store) (int, error)) (int, error) {
	total := 0
	for i, st := range s.set.stores {
		n, err := fn(st)
		total += n
		if err != nil {
			return total, fmt.Errorf("shard %d: %w", i, err)
		}
	}
	return total, nil
}

func (s *Shards) ExpireDue(ctx context.Context, limit int) (int, error) {
	return sumShards(s, func(st *Store) (int, error) { return st.ExpireDue(ctx, limit) })
}

func (s *Shards) AdmitRooms(ctx context.Context) (int, error) {
	return sumShards(s, func(st *Store) (int, error) { return st.AdmitRooms(ctx) })
}

func (s *Shards) OfferWaitlists(ctx context.Context) (int, error) {
	return sumShards(s, func(st *Store) (int, error) { return st.OfferWaitlists(ctx) })
}

func (s *Shards) Ready(ctx context.Context) error {
	_, err := sumShards(s, func(st *Store) (int, error) { return 0, st.Ready(ctx) })
	return err
}

func (s *Shards) Purge(ctx context.Context, r holdfast.Retention) (holdfast.PurgeReport, error) {
	var out holdfast.PurgeReport
	_, err := sumShards(s, func(st *Store) (int, error) {
		p, err := st.Purge(ctx, r)
		out.Events += p.Events
		out.Holds += p.Holds
		out.Deliveries += p.Deliveries
		return 0, err
	})
	return out, err
}

// Audit audits every shard (each recounts its own pools and units: a
// part of a hold across shards claims on its shard alone) and that no
// prepared part has been left undecided past a resolver's period.
func (s *Shards) Audit(ctx context.Context) (holdfast.AuditReport, error) {
	var out holdfast.AuditReport
	for i, st := range s.set.stores {
		r, err := st.Audit(ctx)
		if err != nil {
			return out, fmt.Errorf("shard %d: %w", i, err)
		}
		out.Pools += r.Pools
		out.Units += r.Units
		out.Oversold += r.Oversold
		out.DoubleBooked += r.DoubleBooked
		for _, d := range r.Differences {
			out.Differences = append(out.Differences, fmt.Sprintf("shard %d: %s", i, d))
		}
		out.At = r.At
		gids, err := preparedParts(ctx, st.pool, time.Minute)
		if err != nil {
			return out, fmt.Errorf("shard %d: %w", i, err)
		}
		for _, gid := range gids {
			out.Differences = append(out.Differences, fmt.Sprintf("shard %d: part %s of a change across shards is still prepared after a minute", i, gid))
		}
	}
	out.Differences = slices.Clip(out.Differences)
	return out, nil
}

// ---- the feed: every shard's, interleaved ----

// Events reads every shard's outbox after its own cursor, and answers
// them in time order across shards, each shard's in its commit order. The
// cursor is every shard's, joined by "~". Seq is a shard's own.
func (s *Shards) Events(ctx context.Context, after string, limit int) ([]holdfast.Event, string, error) {
	n := len(s.set.stores)
	cursors := make([]string, n)
	switch {
	case after == "":
	case !strings.Contains(after, "~"):
		// A cursor from before the shards (one database, now the
		// catalog): it goes on there, and the others start.
		cursors[0] = after
	default:
		cursors = strings.Split(after, "~")
		if len(cursors) != n {
			return nil, "", holdfast.Errorf(holdfast.CodeInvalid, "after must be a cursor from a previous page")
		}
	}
	pages := make([][]holdfast.Event, n)
	for i, st := range s.set.stores {
		es, _, err := st.Events(ctx, cursors[i], limit)
		if err != nil {
			return nil, "", err
		}
		pages[i] = es
	}
	// A merge of the shards' pages by time: each shard's events stay in
	// its commit order, and a shard's cursor moves past what was answered
	// of it, never more.
	var out []holdfast.Event
	for len(out) < limit {
		next := -1
		for i, p := range pages {
			if len(p) > 0 && (next < 0 || p[0].At.Before(pages[next][0].At)) {
				next = i
			}
		}
		if next < 0 {
			break
		}
		e := pages[next][0]
		pages[next] = pages[next][1:]
		cursors[next] = e.Cursor
		e.Cursor = strings.Join(cursors, "~")
		out = append(out, e)
	}
	return out, strings.Join(cursors, "~"), nil
}

// ---- raw access, for tests that count in the databases ----

// Exec runs a statement on every shard. A shard that refuses it for a
// foreign key (a row of a pool on another shard) is passed over when
// another shard wrote rows with it.
func (s *Shards) Exec(ctx context.Context, query string, args ...any) error {
	var refused error
	wrote := false
	for _, st := range s.set.stores {
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

// QueryInt runs a query returning one integer on every shard and sums
// what the shards that have a row answer.
func (s *Shards) QueryInt(ctx context.Context, query string, args ...any) (int64, error) {
	var total int64
	found := false
	for _, st := range s.set.stores {
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

// ---- what the HTTP server uses when a store offers it ----

// LastEventCursor is a cursor after every shard's newest event.
func (s *Shards) LastEventCursor(ctx context.Context) (string, error) {
	cursors := make([]string, len(s.set.stores))
	for i, st := range s.set.stores {
		c, err := st.LastEventCursor(ctx)
		if err != nil {
			return "", err
		}
		cursors[i] = c
	}
	return strings.Join(cursors, "~"), nil
}

// UnitsPage is a page of a group's units, from the group's shard.
func (s *Shards) UnitsPage(ctx context.Context, group string, status holdfast.UnitStatus, after string, limit int) ([]holdfast.Unit, string, error) {
	sh, err := s.set.shardOf(ctx, "group", group)
	if err != nil {
		return nil, "", err
	}
	return s.set.stores[sh].UnitsPage(ctx, group, status, after, limit)
}

// UnitStatuses is every unit's status in a group, from its shard.
func (s *Shards) UnitStatuses(ctx context.Context, group string) (string, error) {
	sh, err := s.set.shardOf(ctx, "group", group)
	if err != nil {
		return "", err
	}
	return s.set.stores[sh].UnitStatuses(ctx, group)
}

// CreateWebhook is refused: a webhook sees one database's outbox, and a
// sharded deployment has one per shard (not built yet). Better refused
// than a webhook that never fires for most events.
func (s *Shards) CreateWebhook(ctx context.Context, w holdfast.Webhook) (holdfast.Webhook, error) {
	return holdfast.Webhook{}, holdfast.Errorf(holdfast.CodeUnsupported, "webhooks are not delivered on a sharded deployment yet: read GET /v1/events, which follows every shard")
}

// CreateWebhook is refused as on Shards.
func (k *keyedShards) CreateWebhook(ctx context.Context, w holdfast.Webhook) (holdfast.Webhook, error) {
	return (*Shards)(nil).CreateWebhook(ctx, w)
}
