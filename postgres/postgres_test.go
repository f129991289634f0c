package postgres_test

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/holdfasttest"
	"github.com/holdfast/holdfast/internal/testrig/pgtest"
	"github.com/holdfast/holdfast/internal/testrig/redistest"
	"github.com/holdfast/holdfast/postgres"
	"github.com/holdfast/holdfast/redis"
	"github.com/holdfast/holdfast/webhook"
	"github.com/holdfast/holdfast/webhook/signature"
)

var pg *pgtest.DB

func TestMain(m *testing.M) { pgtest.Main(m, &pg) }

// open opens a store on url, closed when t ends: a pool of 12
// connections unless opts says (small: the races open three instances,
// and tests run side by side on a server with max_connections 100).
func open(t testing.TB, url string, opts postgres.Options) holdfast.Store {
	t.Helper()
	opts.MaxConns = cmp.Or(opts.MaxConns, 12)
	s, err := postgres.Open(context.Background(), url, opts)
	if err != nil {
		t.Fatalf("postgres.Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// The whole suite on the default strategy, batched and one by one; every
// other strategy (unsafe exists to fail it) on the tests that reach its
// claim (holdfasttest.Harness.ClaimsOnly).
func TestConformance(t *testing.T) {
	variants := []postgres.Options{{Strategy: holdfast.Atomic, NoCoalesce: true}}
	for _, st := range postgres.Strategies {
		if st != holdfast.Unsafe {
			variants = append(variants, postgres.Options{Strategy: st})
		}
	}
	for _, opts := range variants {
		t.Run(holdfasttest.Variant(opts.Strategy, opts.NoCoalesce), func(t *testing.T) {
			if opts.Strategy == holdfast.RedisLock {
				opts.Locker = redis.NewLocker(redistest.Client(t), redis.Config{Prefix: redistest.Prefix()})
			}
			holdfasttest.Run(t, holdfasttest.Harness{
				Open: func(t testing.TB) (holdfast.Store, func(testing.TB) holdfast.Store) {
					url := pg.Migrated(t)
					return open(t, url, opts), func(t testing.TB) holdfast.Store { return open(t, url, opts) }
				},
				ClaimsOnly: opts.Strategy != holdfast.Atomic, Capabilities: holdfast.AllCapabilities,
			})
		})
	}
}

func TestRedisLockNeedsRedis(t *testing.T) {
	_, err := postgres.Open(context.Background(), pg.Schema(t), postgres.Options{Strategy: holdfast.RedisLock})
	if holdfast.ErrorCode(err) != holdfast.CodeUnsupported || !strings.Contains(err.Error(), "--redis") {
		t.Fatalf("Open with strategy redislock and no Redis: got %v, want unsupported", err)
	}
}

func BenchmarkHold(b *testing.B) {
	holdfasttest.Bench(b, holdfasttest.Harness{
		Open: func(t testing.TB) (holdfast.Store, func(testing.TB) holdfast.Store) {
			return open(t, pg.Migrated(t), postgres.Options{MaxConns: 32}), nil
		},
	})
}

// The suite (its races aside) on stores whose pool has one connection: a
// transaction that took a second connection from its own pool, which
// stalls a loaded server once the pool is full of claims waiting on that
// transaction's locks, hangs here at once (see
// TestOneConnectionServesTheGroupWaitlist). Nothing is cached (the rooms,
// the feed's watermark are read by every request), so a read of them on
// the pool inside a transaction hangs too, not only in the second after
// the cache ages.
func TestConformanceOnOneConnection(t *testing.T) {
	one := func(t testing.TB, url string) holdfast.Store {
		return open(t, url, postgres.Uncached(postgres.Options{Strategy: holdfast.Atomic, MaxConns: 1}))
	}
	holdfasttest.Run(t, holdfasttest.Harness{
		Open: func(t testing.TB) (holdfast.Store, func(testing.TB) holdfast.Store) {
			url := pg.Migrated(t)
			return one(t, url), func(t testing.TB) holdfast.Store { return one(t, url) }
		},
		Capabilities: holdfast.AllCapabilities, NoRaces: true,
	})
}

// The races on stores whose pool has one connection, with nothing
// cached (what waiting rooms protect is read by every hold). A claim inside its transaction must
// never wait for something that waits for a connection: a late confirm
// taking its ticket again read the rooms and waited for a buyer's read of
// them on the pool, which waited for the confirm's own connection — on
// pools of 12 under CI's load, once the cached read had aged past its
// second mid-race, every request of one server stalled until its
// deadline. Here any such wait stalls at once (LateConfirmVsBuyer did).
func TestRacesOnSmallPools(t *testing.T) {
	for _, opts := range []postgres.Options{{Strategy: holdfast.Atomic}, {Strategy: holdfast.Atomic, NoCoalesce: true}, {Strategy: holdfast.Pessimistic}} {
		opts = postgres.Uncached(opts)
		opts.MaxConns = 1
		t.Run(holdfasttest.Variant(opts.Strategy, opts.NoCoalesce), func(t *testing.T) {
			holdfasttest.Races(t, holdfasttest.Harness{
				Open: func(t testing.TB) (holdfast.Store, func(testing.TB) holdfast.Store) {
					url := pg.Migrated(t)
					return open(t, url, opts), func(t testing.TB) holdfast.Store { return open(t, url, opts) }
				},
			})
		})
	}
}

// The webhooks' queue reads the feed inside its transaction (a webhook's
// row locked, so two servers never queue the same events), the purge
// watermark a cursor is checked against included: on that transaction's
// connection. Read on the pool, it waited for the pool's one connection,
// its own, until the deadline.
func TestWebhookQueueOnOneConnection(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := open(t, pg.Migrated(t), postgres.Uncached(postgres.Options{MaxConns: 1}))
	if _, err := s.CreateWebhook(ctx, holdfast.Webhook{ID: "wh_one", URL: "https://hooks.example.com/holdfast",
		Events: []holdfast.EventType{holdfast.EventPoolCreated}, Secret: signature.NewSecret()}); err != nil {
		t.Fatal(err)
	}
	q := s.(webhook.Queue)
	// The second round reads after the cursor the first one left.
	for round := range 2 {
		if _, err := s.CreatePool(ctx, holdfast.Pool{ID: fmt.Sprintf("p%d", round), Capacity: 1}); err != nil {
			t.Fatal(err)
		}
		for queued := 0; queued == 0; { // the feed shows a commit within moments
			n, err := q.QueueDeliveries(ctx, time.Now(), 10)
			if err != nil {
				t.Fatalf("round %d: QueueDeliveries: %v", round, err)
			}
			queued = n
		}
	}
}

// A unit locked by a claim in flight that then rolls back (a crashed
// server's, a hold whose other line failed) is free: an "any" claim must
// wait for it and take it, not skip it and refuse while it is free.
func TestAnyWaitsForAClaimThatRollsBack(t *testing.T) {
	ctx := context.Background()
	url := pg.Migrated(t)
	for _, st := range []holdfast.Strategy{holdfast.Atomic, holdfast.Pessimistic} {
		t.Run(string(st), func(t *testing.T) {
			s := open(t, url, postgres.Options{Strategy: st})
			group := "riders-" + string(st)
			if _, err := s.CreateGroup(ctx, holdfast.Group{ID: group, Reusable: true}); err != nil {
				t.Fatal(err)
			}
			if err := s.AddUnits(ctx, group, []string{group + "-1", group + "-2"}); err != nil {
				t.Fatal(err)
			}
			holdfasttest.MustHold(t, s, "first", holdfast.Line{Group: group, Any: 1}) // takes -1
			conn, err := pgx.Connect(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			tx, err := conn.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var pid int
			if err := tx.QueryRow(ctx, `SELECT pg_backend_pid() FROM units WHERE id = $1 FOR UPDATE`, group+"-2").Scan(&pid); err != nil {
				t.Fatal(err)
			}
			type res struct {
				h   holdfast.Hold
				err error
			}
			done := make(chan res, 1)
			go func() {
				h, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "second", Lines: []holdfast.Line{{Group: group, Any: 1}}})
				done <- res{h, err}
			}()
			// Roll back once the claim waits on our lock (or has answered).
			for waiting := false; !waiting; {
				select {
				case r := <-done:
					t.Fatalf("answered while the only free unit was locked by a claim that had not finished: %+v, %v", r.h, r.err)
				default:
				}
				var n int
				row := tx.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE NOT granted AND $1 = ANY (pg_blocking_pids(pid))`, pid)
				if err := row.Scan(&n); err != nil {
					t.Fatal(err)
				}
				waiting = n > 0
			}
			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			r := <-done
			if r.err != nil || len(r.h.Lines) != 1 || len(r.h.Lines[0].Units) != 1 || r.h.Lines[0].Units[0] != group+"-2" {
				t.Fatalf("after the other claim rolled back: %+v, %v; want %s-2", r.h, r.err, group)
			}
		})
	}
}

// Servers started at the same moment on one new database migrate it once
// (under an advisory lock): every one opens, and no migration ran twice.
func TestConcurrentOpenMigratesOnce(t *testing.T) {
	url := pg.Schema(t)
	const servers = 6
	start := make(chan struct{})
	errs := make(chan error, servers)
	for range servers {
		go func() {
			<-start
			s, err := postgres.Open(context.Background(), url, postgres.Options{MaxConns: 2})
			if err == nil {
				err = s.Ready(context.Background())
				s.Close()
			}
			errs <- err
		}()
	}
	close(start)
	for range servers {
		if err := <-errs; err != nil {
			t.Errorf("open: %v", err)
		}
	}
	s := open(t, url, postgres.Options{})
	if n := holdfasttest.MustCount(t, s, `SELECT COUNT(*) - COUNT(DISTINCT version_id) FROM goose_db_version`); n != 0 {
		t.Fatalf("%d migrations applied twice", n)
	}
}

// Opened with NoMigrate (holdfast audit), a database without the schema
// is an error, and is left without it.
func TestNoMigrateRefusesEmptyDatabase(t *testing.T) {
	url := pg.Schema(t)
	if s, err := postgres.Open(context.Background(), url, postgres.Options{NoMigrate: true, MaxConns: 2}); err == nil {
		s.Close()
		t.Fatal("NoMigrate opened a database without the schema")
	}
	s := open(t, url, postgres.Options{})
	if n := holdfasttest.MustCount(t, s, `SELECT COUNT(*) FROM goose_db_version WHERE version_id > 0`); n == 0 {
		t.Fatal("no migrations after a normal open")
	}
}

// A transaction never takes a second connection from its own store's
// pool: with the pool full of claims waiting on that transaction's locks,
// the second connection never comes and everything stalls until the
// deadline (seen in CI: a room's holds on shards of four connections,
// which read the rooms' map on a second connection inside the claim). On a
// pool of one connection any such path hangs at once; here the group
// waitlist's, which read a seat map inside their transactions, on a
// store that has not cached it.
func TestOneConnectionServesTheGroupWaitlist(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	url := pg.Migrated(t)
	s := open(t, url, postgres.Options{})
	row := holdfast.Row{Name: "A"}
	for n := 1; n <= 4; n++ {
		row.Seats = append(row.Seats, holdfast.Seat{Unit: fmt.Sprintf("A-%d", n), Number: fmt.Sprint(n), X: float64(n * 10)})
	}
	if _, err := s.CreateGroup(ctx, holdfast.Group{ID: "hall", Layout: &holdfast.Layout{Sections: []holdfast.Section{{ID: "s", Name: "S", Rows: []holdfast.Row{row}}}}}); err != nil {
		t.Fatal(err)
	}
	h, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "all", TTL: time.Hour, Lines: []holdfast.Line{{Group: "hall", Any: 4}}})
	if err != nil {
		t.Fatal(err)
	}
	one := func() holdfast.Store { // a new store: nothing cached
		return open(t, url, postgres.Options{MaxConns: 1})
	}
	e, err := one().JoinWaitlist(ctx, holdfast.WaitlistRequest{Group: "hall", Holder: "pair", Any: 2, Together: true})
	if err != nil {
		t.Fatalf("join for seats together on a pool of one connection: %v", err)
	}
	if _, err := s.Release(ctx, h.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := one().OfferWaitlists(ctx); err != nil {
		t.Fatalf("offers on a pool of one connection: %v", err)
	}
	if got, err := s.GroupWaitlistEntry(ctx, "hall", e.ID); err != nil || got.Status != holdfast.WaitlistOffered {
		t.Fatalf("the pair's entry: %+v, %v; want offered", got, err)
	}
}

// The suites open their stores on schemas pgtest migrated with one script
// (pgtest.Migrated) rather than goose, for speed: such a schema must be
// the one goose leaves — every column, default, constraint, index,
// function, trigger, type, row and version — or the suites would test a
// schema no server runs on. Opening it, goose finds nothing to apply.
func TestScriptMigratedSchemaIsGooses(t *testing.T) {
	byGoose, byScript := pg.Schema(t), pg.Migrated(t)
	open(t, byGoose, postgres.Options{MaxConns: 2})
	open(t, byScript, postgres.Options{MaxConns: 2})
	want, got := catalog(t, byGoose), catalog(t, byScript)
	if len(want) < 100 {
		t.Fatalf("the catalog of a migrated schema has %d entries; the query reads nothing", len(want))
	}
	if diff := gocmp.Diff(want, got); diff != "" {
		t.Fatalf("a schema pgtest migrated differs from one goose migrated (-goose +pgtest):\n%s", diff)
	}
}

// catalog describes the schema url's connections use, one line per
// object, with the schema's own name left out.
func catalog(t *testing.T, url string) []string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `
		SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' ' || coalesce(column_default, '')
		  FROM information_schema.columns WHERE table_schema = current_schema()
		UNION ALL SELECT 'constraint ' || conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
		  FROM pg_constraint WHERE connamespace = current_schema()::regnamespace
		UNION ALL SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = current_schema()
		UNION ALL SELECT 'function ' || pg_get_functiondef(oid) FROM pg_proc WHERE pronamespace = current_schema()::regnamespace
		UNION ALL SELECT 'trigger ' || pg_get_triggerdef(t.oid)
		  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE c.relnamespace = current_schema()::regnamespace AND NOT t.tgisinternal
		UNION ALL SELECT 'type ' || typname || ' ' || typtype::text FROM pg_type
		  WHERE typnamespace = current_schema()::regnamespace AND typrelid = 0 AND typelem = 0
		UNION ALL SELECT 'sequence ' || sequencename || ' ' || coalesce(last_value, 0) FROM pg_sequences WHERE schemaname = current_schema()
		UNION ALL SELECT 'rows ' || table_name || ' ' || (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %I', table_name), false, true, '')))[1]::text
		  FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'
		UNION ALL SELECT 'version ' || version_id || ' ' || is_applied FROM goose_db_version`)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	var schema string
	if err := conn.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		t.Fatal(err)
	}
	for i, l := range lines {
		lines[i] = strings.ReplaceAll(l, schema+".", "")
	}
	slices.Sort(lines)
	return lines
}

// TestHoldsRefreshStatistics: a store started on empty tables refreshes
// the planner's statistics of the tables holds are written to once it
// has made a few hundred holds, so the plans it prepared while they were
// empty (a scan of the whole table for a read by id) are made again.
func TestHoldsRefreshStatistics(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	url := pg.Migrated(t)
	s := open(t, url, postgres.Options{})
	holdfasttest.MustCreatePool(t, s, "gig", 1000, 0)
	for i := range 300 {
		if _, err := s.Hold(ctx, holdfast.HoldRequest{Holder: fmt.Sprint("fan-", i), Lines: []holdfast.Line{{Pool: "gig", Quantity: 1}}}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close() // waits for the store's background work, the refresh among it
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	for _, table := range []string{"holds", "hold_lines", "events"} {
		var n float64
		if err := c.QueryRow(ctx, `SELECT reltuples FROM pg_class WHERE oid = to_regclass($1)`, table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n < 256 {
			t.Errorf("after 300 holds the statistics of %s know %v rows, want at least 256", table, n)
		}
	}
}

// A venue of many seats is put on sale the moment it is made: the store
// refreshes the planner's statistics of units once 10,000 were added, or
// PostgreSQL plans the picks of seats together as for the empty table it
// last saw (reading the whole group each time).
func TestManyUnitsRefreshStatistics(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := open(t, pg.Migrated(t), postgres.Options{})
	holdfasttest.MustCreateGroup(t, s, "hall", false)
	tuples := func() float64 {
		var n float64
		if err := s.(*postgres.Store).ConnPool().QueryRow(ctx, `SELECT reltuples FROM pg_class WHERE oid = 'units'::regclass`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	ids := make([]string, holdfast.MaxUnitsPerAdd)
	for i := range ids {
		ids[i] = fmt.Sprint("seat-", i)
	}
	if err := s.AddUnits(ctx, "hall", ids[:100]); err != nil {
		t.Fatal(err)
	}
	before := tuples()
	if err := s.AddUnits(ctx, "hall", ids[100:]); err != nil {
		t.Fatal(err)
	}
	if after := tuples(); after < float64(len(ids)) {
		t.Fatalf("after %d units added the statistics know %v rows (%v before)", len(ids), after, before)
	}
}
