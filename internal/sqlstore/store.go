package sqlstore

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/holdfast/holdfast"
)

// Store implements holdfast.Store on a DB and Dialect.
type Store struct {
	*shared
	// key guards the one change made through a Store that Keyed returned
	// (nil on the store itself); answer is what that change recorded.
	key    *holdfast.Idempotency
	answer *holdfast.StoredResponse
}

// shared is the store's state: a Store and every keyed view of it
// share one.
type shared struct {
	db       DB
	d        Dialect
	cfg      holdfast.Config
	strategy Claimer
	// retries counts claims sent round again (ErrRetry), for metrics.
	retries atomic.Int64

	coalesce       bool
	batches        coalescer
	soldOut        soldOutCache
	batched        atomic.Int64 // claims decided in batches
	batchCount     atomic.Int64 // batch transactions
	batchFailures  atomic.Int64 // batch transactions that failed whole
	changes        changeQueue  // lifecycle changes waiting for a batch
	changeBatches  atomic.Int64 // batched transactions of changes
	changesBatched atomic.Int64 // changes decided in them
	claimStmts     atomic.Int64 // statements sent by claim batches
	changeStmts    atomic.Int64 // statements sent by batches of changes
	offerRounds    atomic.Int64 // rounds of waitlist offers written
	offersMade     atomic.Int64 // offers made in them
	offerStmts     atomic.Int64 // statements sent by them
	logger         *slog.Logger
	clock          holdfast.Clock
	holdPrefix     string // of the hold ids this store makes
	routed         bool   // see Env.Routed
	layouts        layouts
	picks          picks        // seats together picked, not yet claimed
	addedUnits     atomic.Int64 // units added since the statistics were refreshed
	holdStats      holdStats    // holds made, for the statistics' refresh

	// bg is the engine's background work (batch drainers and their
	// batches, sold-out reads); Close waits for it. bgMu orders every
	// start of background work before Close's wait.
	bgMu   sync.Mutex
	closed bool
	bg     sync.WaitGroup

	purged purgedThrough // the feed's watermark
	rooms  roomGuard     // what waiting rooms protect
}

// spawn runs f in the background, unless the store is closed (false).
func (s *Store) spawn(f func()) bool {
	s.bgMu.Lock()
	defer s.bgMu.Unlock()
	if s.closed {
		return false
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		f()
	}()
	return true
}

func (s *Store) log(msg string, args ...any) { s.logger.Warn(msg, args...) }

var _ holdfast.Store = (*Store)(nil)

// Env is what a store is given from the program around it.
type Env struct {
	// Logger receives what the store recovers from (default slog.Default).
	Logger *slog.Logger
	// Clock is the app server's wall clock: it stamps hold ids and audit
	// reports, and decides nothing (default time.Now).
	Clock holdfast.Clock
	// HoldPrefix begins every hold id this store makes (default "h_"):
	// a shard's own prefix says where its holds live.
	HoldPrefix string
	// Routed is a store behind a shard router: a revoked key's claims
	// span every shard, so the router ends them (EndKeyClaims with its
	// own release), not the catalog's RevokeKey.
	Routed bool
	// CacheFor is how long the store keeps what every request reads and
	// rarely changes — what waiting rooms protect, the feed's purge
	// watermark (default a second; negative: never kept, every request
	// reads them — the tests that race those reads).
	CacheFor time.Duration
}

// New returns a Store claiming through c (see NewClaimer). With coalesce,
// concurrent claims and lifecycle changes of every shape are combined into
// batches (atomic strategy only).
func New(db DB, d Dialect, cfg holdfast.Config, c Claimer, coalesce bool, env Env) *Store {
	if err := d.check(); err != nil {
		panic(err) // a backend's programming error, found by its first test
	}
	_, atomicStrategy := c.(Atomic)
	return &Store{shared: &shared{db: db, d: d, cfg: cfg.WithDefaults(), strategy: c, coalesce: coalesce && atomicStrategy,
		logger: cmp.Or(env.Logger, slog.Default()), clock: env.Clock, holdPrefix: cmp.Or(env.HoldPrefix, "h_"), routed: env.Routed,
		rooms: roomGuard{keep: cmp.Or(env.CacheFor, time.Second)}, purged: purgedThrough{keep: cmp.Or(env.CacheFor, time.Second)}}}
}

func (s *shared) newHoldID() string { return holdfast.NewID(s.holdPrefix, s.clock.Now()) }

// Config returns the store's hold lifetime bounds, defaults filled in.
func (s *Store) Config() holdfast.Config { return s.cfg }

// Capabilities are every optional contract: both SQL backends offer them
// all.
func (s *Store) Capabilities() []holdfast.Capability { return holdfast.AllCapabilities }

// Ready reports whether the database answers and its schema is at the
// version this build ships.
func (s *Store) Ready(ctx context.Context) error {
	var v int64
	if err := s.db.QueryRow(ctx, `SELECT COALESCE(MAX(version_id), 0) FROM goose_db_version WHERE is_applied`).Scan(&v); err != nil {
		return fmt.Errorf("database not reachable: %w", err)
	}
	if v < s.d.SchemaVersion {
		return fmt.Errorf("schema at version %d, this build needs %d: run holdfast migrate", v, s.d.SchemaVersion)
	}
	return nil
}

// Stats reports the connection pool and transaction retries, for metrics.
func (s *Store) Stats() Stats {
	st := s.db.Stats()
	st.Retries += s.retries.Load()
	st.Batches, st.BatchedClaims, st.BatchFailures = s.batchCount.Load(), s.batched.Load(), s.batchFailures.Load()
	st.ChangeBatches, st.BatchedChanges = s.changeBatches.Load(), s.changesBatched.Load()
	st.ClaimStatements, st.ChangeStatements = s.claimStmts.Load(), s.changeStmts.Load()
	st.OfferRounds, st.Offers, st.OfferStatements = s.offerRounds.Load(), s.offersMade.Load(), s.offerStmts.Load()
	st.PoolMarks = s.soldOut.size()
	return st
}

// Close stops the store's background work, waiting for what is running
// (claims queued for a batch get their answers), and closes the database.
func (s *Store) Close() error {
	s.bgMu.Lock()
	s.closed = true
	s.bgMu.Unlock()
	s.bg.Wait()
	return s.db.Close()
}

func msTime(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// errRollback is returned from a transaction function to roll back without
// an error of its own: the outcome is carried out of the closure instead.
var errRollback = errors.New("sqlstore: rollback")

func (s *Store) event(ctx context.Context, tx Querier, typ holdfast.EventType, holdID, subject string, data any) error {
	st, err := s.eventStmt(typ, holdID, subject, data)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, st.SQL, st.Args...)
	return err
}

// eventStmt is the statement writing an outbox event.
func (s *Store) eventStmt(typ holdfast.EventType, holdID, subject string, data any) (Stmt, error) {
	b, err := json.Marshal(data)
	if err != nil {
		return Stmt{}, err
	}
	return Stmt{`INSERT INTO events (type, at, hold_id, subject, data) VALUES ($1, holdfast_now_ms(), NULLIF($2, ''), NULLIF($3, ''), $4)`,
		[]any{string(typ), holdID, subject, string(b)}}, nil
}

// ---- pools ----

const poolColumns = `p.id, p.name, p.capacity, p.held, p.confirmed, p.per_holder_limit, p.late_confirm, p.late_confirm_grace, p.offer_ttl_ms, p.waitlisted, p.allocated,
	COALESCE((SELECT SUM(l.quantity) FROM holds h JOIN hold_lines l ON l.hold_id = h.id
	          WHERE h.status = 'held' AND h.expires_at <= holdfast_now_ms() AND l.pool_id = p.id), 0)`

// scanPool reads poolColumns, then more (columns after them), into p.
// Available is the general sale's: without the channels' allocations.
func scanPool(r Row, more ...any) (holdfast.Pool, error) {
	var p holdfast.Pool
	var expired, offerTTL, allocated int64
	var late string
	if err := r.Scan(append([]any{&p.ID, &p.Name, &p.Capacity, &p.Held, &p.Confirmed, &p.PerHolderLimit, &late, &p.LateConfirmGrace, &offerTTL, &p.Waitlisted, &allocated, &expired}, more...)...); err != nil {
		return p, err
	}
	// Expired holds not yet swept are free for the next claim, so they are
	// shown as available, not held (guarantee 6).
	p.Held -= expired
	p.LateConfirm = holdfast.LatePolicy(late)
	// The offer TTL in force, not the 0 that means "the default".
	p.OfferTTLSeconds = cmp.Or(offerTTL/1000, int64(holdfast.DefaultOfferTTL/time.Second))
	// What a new buyer may have: the waitlist's ask comes first.
	p.Available = max(0, p.Capacity-p.Held-p.Confirmed-p.Waitlisted-allocated)
	return p, nil
}

func (s *Store) CreatePool(ctx context.Context, p holdfast.Pool) (holdfast.Pool, error) {
	if err := p.Validate(); err != nil {
		return holdfast.Pool{}, err
	}
	if err := p.LateConfirm.Normalize(&p.LateConfirmGrace); err != nil {
		return holdfast.Pool{}, err
	}
	var out holdfast.Pool
	err := s.db.Transact(ctx, func(tx Querier) error {
		_, err := tx.Exec(ctx, `INSERT INTO pools (id, name, capacity, per_holder_limit, late_confirm, late_confirm_grace, offer_ttl_ms, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, holdfast_now_ms())`,
			p.ID, p.Name, p.Capacity, p.PerHolderLimit, string(p.LateConfirm), p.LateConfirmGrace, p.OfferTTLSeconds*1000)
		if err != nil {
			if s.d.Classify(err) == KindUnique {
				return holdfast.Errorf(holdfast.CodeConflict, "pool %q already exists", p.ID)
			}
			return err
		}
		if out, err = s.pool(ctx, tx, p.ID); err != nil {
			return err
		}
		if err := s.event(ctx, tx, holdfast.EventPoolCreated, "", p.ID, out); err != nil {
			return err
		}
		return s.record(ctx, tx, out)
	})
	return out, err
}

func (s *Store) pool(ctx context.Context, q Reader, id string) (holdfast.Pool, error) {
	p, err := scanPool(q.QueryRow(ctx, `SELECT `+poolColumns+` FROM pools p WHERE p.id = $1 AND p.parent_id IS NULL`, id))
	if errors.Is(err, ErrNoRows) {
		return p, holdfast.Errorf(holdfast.CodeNotFound, "pool %q not found", id)
	}
	if err != nil {
		return p, err
	}
	allocs, err := s.allocations(ctx, q, id)
	withAllocations(&p, allocs[id])
	return p, err
}

func (s *Store) Pool(ctx context.Context, id string) (holdfast.Pool, error) {
	if err := holdfast.ValidateID("pool", id); err != nil {
		return holdfast.Pool{}, err
	}
	return s.pool(ctx, s.db, id)
}

func (s *Store) Pools(ctx context.Context) ([]holdfast.Pool, error) {
	pools, err := collect(ctx, s.db, func(r Row) (holdfast.Pool, error) { return scanPool(r) },
		`SELECT `+poolColumns+` FROM pools p WHERE p.parent_id IS NULL ORDER BY p.id`)
	if err != nil {
		return nil, err
	}
	allocs, err := s.allocations(ctx, s.db)
	for i := range pools {
		withAllocations(&pools[i], allocs[pools[i].ID])
	}
	return pools, err
}

func (s *Store) SetCapacity(ctx context.Context, id string, capacity int64) (holdfast.Pool, error) {
	if err := holdfast.ValidateID("pool", id); err != nil {
		return holdfast.Pool{}, err
	}
	if err := holdfast.ValidateCapacity(capacity); err != nil {
		return holdfast.Pool{}, err
	}
	for attempt := 0; ; attempt++ {
		var out holdfast.Pool
		var short bool
		err := s.db.Transact(ctx, func(tx Querier) error {
			// Conditional, so lowering below what is taken can never race
			// with a claim: the row lock orders them.
			n, err := tx.Exec(ctx, `UPDATE pools SET capacity = $2, version = version + 1 WHERE id = $1 AND parent_id IS NULL AND held + confirmed + allocated <= $2`, id, capacity)
			if err != nil {
				return err
			}
			s.soldOut.forget(id)
			if out, err = s.pool(ctx, tx, id); err != nil {
				return err
			}
			if n == 0 {
				short = true
				return errRollback
			}
			if err := s.event(ctx, tx, holdfast.EventPoolChanged, "", id, out); err != nil {
				return err
			}
			return s.record(ctx, tx, out)
		})
		if !short {
			return out, err
		}
		// Expired holds may be what stands in the way: reclaim and retry.
		if attempt < 3 {
			if n, err := s.reclaimResources(ctx, []string{id}, nil, nil); err != nil {
				return holdfast.Pool{}, err
			} else if n > 0 {
				continue
			}
		}
		setAside := int64(0)
		for _, a := range out.Allocations {
			setAside += a.Available
		}
		return holdfast.Pool{}, holdfast.Errorf(holdfast.CodeConflict,
			"pool %q has %d taken or allocated; capacity cannot go below that", id, out.Held+out.Confirmed+setAside)
	}
}

// SetPoolLateConfirm sets a pool's late-confirm policy; it applies to
// every confirm from then on, of holds made before too.
func (s *Store) SetPoolLateConfirm(ctx context.Context, id string, policy holdfast.LatePolicy, grace int64) (holdfast.Pool, error) {
	if err := holdfast.ValidateID("pool", id); err != nil {
		return holdfast.Pool{}, err
	}
	if err := policy.Normalize(&grace); err != nil {
		return holdfast.Pool{}, err
	}
	var out holdfast.Pool
	err := s.db.Transact(ctx, func(tx Querier) error {
		n, err := tx.Exec(ctx, `UPDATE pools SET late_confirm = $2, late_confirm_grace = $3 WHERE id = $1 AND parent_id IS NULL`, id, string(policy), grace)
		if err != nil {
			return err
		}
		// The pool's channels' allocations keep its rules.
		if _, err := tx.Exec(ctx, `UPDATE pools SET late_confirm = $2, late_confirm_grace = $3 WHERE parent_id = $1`, id, string(policy), grace); err != nil {
			return err
		}
		if n == 0 {
			return holdfast.Errorf(holdfast.CodeNotFound, "pool %q not found", id)
		}
		if out, err = s.pool(ctx, tx, id); err != nil {
			return err
		}
		if err := s.event(ctx, tx, holdfast.EventPoolChanged, "", id, out); err != nil {
			return err
		}
		return s.record(ctx, tx, out)
	})
	return out, err
}

// SetGroupLateConfirm sets a group's late-confirm policy.
func (s *Store) SetGroupLateConfirm(ctx context.Context, id string, policy holdfast.LatePolicy, grace int64) (holdfast.Group, error) {
	if err := holdfast.ValidateID("group", id); err != nil {
		return holdfast.Group{}, err
	}
	if err := policy.Normalize(&grace); err != nil {
		return holdfast.Group{}, err
	}
	var out holdfast.Group
	err := s.db.Transact(ctx, func(tx Querier) error {
		var late string
		err := tx.QueryRow(ctx, `UPDATE groups SET late_confirm = $2, late_confirm_grace = $3 WHERE id = $1
			RETURNING id, name, reusable, late_confirm, late_confirm_grace`, id, string(policy), grace).Scan(&out.ID, &out.Name, &out.Reusable, &late, &out.LateConfirmGrace)
		if errors.Is(err, ErrNoRows) {
			return holdfast.Errorf(holdfast.CodeNotFound, "group %q not found", id)
		}
		if err != nil {
			return err
		}
		out.LateConfirm = holdfast.LatePolicy(late)
		if err := s.event(ctx, tx, holdfast.EventGroupChanged, "", id, out); err != nil {
			return err
		}
		return s.record(ctx, tx, out)
	})
	return out, err
}

// ---- events ----

func (s *Store) Events(ctx context.Context, after string, limit int) ([]holdfast.Event, string, error) {
	return s.events(ctx, s.db, after, limit, true)
}

// events reads the feed through q: in a transaction, it sees only events
// of transactions that finished before it began. Without data, events
// come without their Data (what the webhook queue needs).
func (s *Store) events(ctx context.Context, q Reader, after string, limit int, data bool) ([]holdfast.Event, string, error) {
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	var xid, seq int64
	if after != "" {
		x, sq, ok := strings.Cut(after, ".")
		var err1, err2 error
		xid, err1 = strconv.ParseInt(x, 10, 64)
		seq, err2 = strconv.ParseInt(sq, 10, 64)
		if !ok || err1 != nil || err2 != nil || xid < 0 || seq < 0 {
			return nil, "", holdfast.Errorf(holdfast.CodeInvalid, "after must be a cursor from a previous page")
		}
		// A cursor from before the purged events would skip them in
		// silence: refuse it, naming where the feed now starts.
		through, err := s.eventsPurgedThrough(ctx, q)
		if err != nil {
			return nil, "", err
		}
		if seq < through {
			return nil, "", holdfast.Errorf(holdfast.CodeCursorExpired,
				"events up to seq %d were purged (retention); read the feed from its start (no cursor), which is now the oldest event kept", through)
		}
	}
	x := s.d.EventXid
	dataColumn := "data"
	if !data {
		dataColumn = "''"
	}
	rows, err := q.Query(ctx, `SELECT `+x+`, seq, type, at, COALESCE(hold_id, ''), COALESCE(subject, ''), `+dataColumn+`
		FROM events WHERE `+s.d.EventAfter+s.d.EventsVisible+`
		ORDER BY `+s.d.EventOrder+` LIMIT $3`, xid, seq, limit)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	events := []holdfast.Event{}
	next := after
	for rows.Next() {
		var e holdfast.Event
		var at, exid int64
		var data string
		if err := rows.Scan(&exid, &e.Seq, &e.Type, &at, &e.HoldID, &e.Subject, &data); err != nil {
			return nil, "", err
		}
		e.At = msTime(at)
		e.Data = json.RawMessage(data)
		e.Cursor = strconv.FormatInt(exid, 10) + "." + strconv.FormatInt(e.Seq, 10)
		next = e.Cursor
		events = append(events, e)
	}
	return events, next, rows.Err()
}

// LastEventCursor returns the cursor of the newest event a feed read can
// see now ("" for an empty outbox): a stream that starts at the present
// continues after it and misses no event committed later.
func (s *Store) LastEventCursor(ctx context.Context) (string, error) {
	return s.lastEventCursor(ctx, s.db)
}

func (s *Store) lastEventCursor(ctx context.Context, q Reader) (string, error) {
	desc := descending(s.d.EventOrder)
	var xid, seq int64
	found, err := queryRow(ctx, q, `SELECT `+s.d.EventXid+`, seq FROM events WHERE 1 = 1`+s.d.EventsVisible+`
		ORDER BY `+desc+` LIMIT 1`, nil, &xid, &seq)
	if err != nil || !found {
		return "", err
	}
	return strconv.FormatInt(xid, 10) + "." + strconv.FormatInt(seq, 10), nil
}

// descending turns an ORDER BY list into its descending order.
func descending(order string) string {
	cols := strings.Split(order, ", ")
	for i := range cols {
		cols[i] += " DESC"
	}
	return strings.Join(cols, ", ")
}

// params returns "$start, $start+1, …" for n parameters.
func params(start, n int) string {
	// By hand, not fmt: a batch's writer calls this for every row of
	// every statement.
	b := make([]byte, 0, n*6)
	for i := 0; i < n; i++ {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(start+i), 10)
	}
	return string(b)
}
