package labrun

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/holdfast/holdfast"
	hfhttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/internal/lab"
	"github.com/holdfast/holdfast/internal/rawsql"
	"github.com/holdfast/holdfast/webhook"
	"github.com/holdfast/holdfast/webhook/signature"
)

// The benchmark's shapes: the sales users run, not the one the code is
// fastest at. Each buying shape is measured against pgbench running the
// same shape one transaction per booking, in the same run; over HTTP every
// POST carries an Idempotency-Key unless the mode says "no keys".

// shapeEngine is what a shape drives: a holdfast.Store or an API client,
// as the lab's Engine.
type shapeEngine = lab.Engine

// shapeOp makes one buyer's attempt: the units it sold (0 when refused)
// and the answer's error.
type shapeOp func(ctx context.Context, e shapeEngine, buyer, n int, rng *rand.Rand) (int64, error)

type benchShape struct {
	name, about string
	// setup creates the shape's pools and groups and returns the buyers'
	// operation.
	setup func(ctx context.Context, e shapeEngine) (shapeOp, error)
	// pgSetup and pgScript are the same shape for pgbench, one transaction
	// per booking; pgSold, when set, counts the units sold afterwards
	// (else each transaction is one).
	pgSetup  []string
	pgScript string
	pgSold   string
}

const (
	seatRows, seatsPerRow = 2000, 50
	eventPools            = 200
	fleetSize             = 500
)

func seatID(row, seat int) string { return fmt.Sprintf("S-%04d-%02d", row, seat) }

// addSeats creates a seat map of rows × perRow seats.
func addSeats(ctx context.Context, e shapeEngine, group string, rows, perRow int) error {
	if _, err := e.CreateGroup(ctx, holdfast.Group{ID: group, Name: "bench seat map"}); err != nil {
		return err
	}
	ids := make([]string, 0, holdfast.MaxUnitsPerAdd)
	for r := 0; r < rows; r++ {
		for s := 0; s < perRow; s++ {
			if ids = append(ids, seatID(r, s)); len(ids) == holdfast.MaxUnitsPerAdd {
				if err := e.AddUnits(ctx, group, ids); err != nil {
					return err
				}
				ids = ids[:0]
			}
		}
	}
	if len(ids) > 0 {
		return e.AddUnits(ctx, group, ids)
	}
	return nil
}

// seatMap is the seat-map shape on rows × 50 seats: each request 2–4
// adjacent seats in one row, the front wanted more.
func seatMap(rows int) func(ctx context.Context, e shapeEngine) (shapeOp, error) {
	return func(ctx context.Context, e shapeEngine) (shapeOp, error) {
		if err := addSeats(ctx, e, "hall", rows, seatsPerRow); err != nil {
			return nil, err
		}
		return func(ctx context.Context, e shapeEngine, buyer, n int, rng *rand.Rand) (int64, error) {
			row, k := frontRow(rng, rows), 2+rng.IntN(3)
			at := rng.IntN(seatsPerRow - k + 1)
			ids := make([]string, k)
			for i := range ids {
				ids[i] = seatID(row, at+i)
			}
			return holdOne(ctx, e, fmt.Sprintf("b%d-%d", buyer, n), holdfast.Line{Units: ids})
		}, nil
	}
}

// frontRow picks a row, the front wanted more: the smaller of two.
func frontRow(rng *rand.Rand, rows int) int { return min(rng.IntN(rows), rng.IntN(rows)) }

func holdOne(ctx context.Context, e shapeEngine, holder string, lines ...holdfast.Line) (int64, error) {
	h, err := e.Hold(ctx, holdfast.HoldRequest{Holder: holder, Lines: lines})
	if err != nil {
		return 0, err
	}
	var n int64
	for _, l := range h.Lines {
		n += l.Quantity + int64(len(l.Units))
	}
	return n, nil
}

const pgHot = "CREATE TABLE hot (id int PRIMARY KEY, available bigint NOT NULL CHECK (available >= 0))"
const pgBookings = "CREATE TABLE bookings (id bigserial PRIMARY KEY, item int NOT NULL, at timestamptz NOT NULL DEFAULT now())"
const pgSeats = "CREATE TABLE seats (row_no int, seat_no int, booking bigint, PRIMARY KEY (row_no, seat_no))"

var benchShapes = []benchShape{
	{
		name: "pool", about: "one hot pool, holds of 1",
		setup: func(ctx context.Context, e shapeEngine) (shapeOp, error) {
			_, err := e.CreatePool(ctx, holdfast.Pool{ID: "hot", Capacity: holdfast.MaxCapacity})
			return func(ctx context.Context, e shapeEngine, buyer, n int, _ *rand.Rand) (int64, error) {
				return holdOne(ctx, e, fmt.Sprintf("b%d-%d", buyer, n), holdfast.Line{Pool: "hot", Quantity: 1})
			}, err
		},
		pgSetup:  []string{pgHot, "INSERT INTO hot VALUES (1, 1000000000000)", pgBookings},
		pgScript: pgbenchScript,
	},
	{
		name: "pool-limit-book", about: "POST /v1/bookings, per_holder_limit 4, distinct holders",
		setup: func(ctx context.Context, e shapeEngine) (shapeOp, error) {
			_, err := e.CreatePool(ctx, holdfast.Pool{ID: "hot", Capacity: holdfast.MaxCapacity, PerHolderLimit: 4})
			return func(ctx context.Context, e shapeEngine, buyer, n int, _ *rand.Rand) (int64, error) {
				_, err := e.Book(ctx, holdfast.HoldRequest{Holder: fmt.Sprintf("b%d-%d", buyer, n), Lines: []holdfast.Line{{Pool: "hot", Quantity: 1}}}, "")
				if err != nil {
					return 0, err
				}
				return 1, nil
			}, err
		},
		pgSetup: []string{pgHot, "INSERT INTO hot VALUES (1, 1000000000000)", pgBookings,
			"CREATE TABLE holder_counts (item int, holder bigint, taken int NOT NULL, PRIMARY KEY (item, holder))"},
		pgScript: `\set h random(1, 1000000000)
BEGIN;
UPDATE hot SET available = available - 1 WHERE id = 1 AND available >= 1 RETURNING available;
INSERT INTO holder_counts VALUES (1, :h, 1) ON CONFLICT (item, holder) DO UPDATE SET taken = holder_counts.taken + 1 WHERE holder_counts.taken + 1 <= 4;
INSERT INTO bookings (item) VALUES (1);
COMMIT;
`,
	},
	{
		name: "events", about: "200 pools on sale at once, holds of 1 spread over them",
		setup: func(ctx context.Context, e shapeEngine) (shapeOp, error) {
			for i := 0; i < eventPools; i++ {
				if _, err := e.CreatePool(ctx, holdfast.Pool{ID: fmt.Sprintf("event-%03d", i), Capacity: holdfast.MaxCapacity}); err != nil {
					return nil, err
				}
			}
			return func(ctx context.Context, e shapeEngine, buyer, n int, rng *rand.Rand) (int64, error) {
				return holdOne(ctx, e, fmt.Sprintf("b%d-%d", buyer, n), holdfast.Line{Pool: fmt.Sprintf("event-%03d", rng.IntN(eventPools)), Quantity: 1})
			}, nil
		},
		pgSetup:  []string{pgHot, "INSERT INTO hot SELECT g, 1000000000000 FROM generate_series(1, 200) g", pgBookings},
		pgScript: "\\set p random(1, 200)\n" + strings.Replace(strings.Replace(pgbenchScript, "id = 1", "id = :p", 1), "VALUES (1)", "VALUES (:p)", 1),
	},
	{
		name: "seats", about: "100,000-seat map (2,000 rows × 50), 2–4 adjacent seats per request, front rows wanted more; seats sold/s",
		setup:   seatMap(seatRows),
		pgSetup: []string{pgSeats, "INSERT INTO seats SELECT r, s, NULL FROM generate_series(0, 1999) r, generate_series(0, 49) s", pgBookings},
		pgScript: `\set r1 random(0, 1999)
\set r2 random(0, 1999)
\set r least(:r1, :r2)
\set n random(2, 4)
\set s random(0, 50 - :n)
BEGIN;
WITH locked AS (SELECT seat_no, booking FROM seats WHERE row_no = :r AND seat_no BETWEEN :s AND :s + :n - 1 ORDER BY seat_no FOR UPDATE)
UPDATE seats SET booking = 1 WHERE row_no = :r AND seat_no BETWEEN :s AND :s + :n - 1 AND (SELECT count(*) FROM locked WHERE booking IS NULL) = :n;
INSERT INTO bookings (item) VALUES (:r);
COMMIT;
`,
		pgSold: "SELECT count(*) FROM seats WHERE booking IS NOT NULL",
	},
	{
		name: "riders", about: "500 riders: book any: 1 (POST /v1/bookings), then complete the delivery",
		setup: func(ctx context.Context, e shapeEngine) (shapeOp, error) {
			if _, err := e.CreateGroup(ctx, holdfast.Group{ID: "fleet", Reusable: true}); err != nil {
				return nil, err
			}
			ids := make([]string, fleetSize)
			for i := range ids {
				ids[i] = fmt.Sprintf("r-%03d", i)
			}
			if err := e.AddUnits(ctx, "fleet", ids); err != nil {
				return nil, err
			}
			return func(ctx context.Context, e shapeEngine, buyer, n int, _ *rand.Rand) (int64, error) {
				// As the first article dispatches: one request assigns any
				// free rider, one frees it on delivery.
				h, err := e.Book(ctx, holdfast.HoldRequest{Holder: fmt.Sprintf("o%d-%d", buyer, n), Lines: []holdfast.Line{{Group: "fleet", Any: 1}}}, "")
				if err != nil {
					return 0, err
				}
				if _, err := e.Complete(ctx, h.ID); err != nil {
					return 0, err
				}
				return 1, nil
			}, nil
		},
		pgSetup: []string{"CREATE TABLE riders (id int PRIMARY KEY, busy boolean NOT NULL DEFAULT false)",
			"INSERT INTO riders SELECT g FROM generate_series(1, 500) g", pgBookings},
		pgScript: `BEGIN;
UPDATE riders SET busy = true WHERE id = (SELECT id FROM riders WHERE NOT busy ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id AS rider \gset
INSERT INTO bookings (item) VALUES (:rider);
COMMIT;
UPDATE riders SET busy = false WHERE id = :rider;
`,
	},
	{
		name: "mixed", about: "one seat of a 100,000-seat map + one parking ticket per hold",
		setup: func(ctx context.Context, e shapeEngine) (shapeOp, error) {
			if err := addSeats(ctx, e, "hall", seatRows, seatsPerRow); err != nil {
				return nil, err
			}
			if _, err := e.CreatePool(ctx, holdfast.Pool{ID: "parking", Capacity: holdfast.MaxCapacity}); err != nil {
				return nil, err
			}
			return func(ctx context.Context, e shapeEngine, buyer, n int, rng *rand.Rand) (int64, error) {
				seat := seatID(rng.IntN(seatRows), rng.IntN(seatsPerRow))
				if _, err := holdOne(ctx, e, fmt.Sprintf("b%d-%d", buyer, n), holdfast.Line{Units: []string{seat}}, holdfast.Line{Pool: "parking", Quantity: 1}); err != nil {
					return 0, err
				}
				return 1, nil
			}, nil
		},
		pgSetup: []string{pgSeats, "INSERT INTO seats SELECT r, s, NULL FROM generate_series(0, 1999) r, generate_series(0, 49) s",
			pgHot, "INSERT INTO hot VALUES (1, 1000000000000)", pgBookings},
		pgScript: `\set r random(0, 1999)
\set s random(0, 49)
BEGIN;
UPDATE seats SET booking = 1 WHERE row_no = :r AND seat_no = :s AND booking IS NULL;
UPDATE hot SET available = available - 1 WHERE id = 1 AND available >= 1;
INSERT INTO bookings (item) VALUES (:r);
COMMIT;
`,
		pgSold: "SELECT count(*) FROM seats WHERE booking IS NOT NULL",
	},
}

// shapeResult is what one run of buyers measured.
type shapeResult struct {
	sold, requests, refused, busy, errs int64
	lat                                 []time.Duration
	elapsed                             time.Duration
	lastSale                            time.Duration // since the start
	firstErr                            string
}

// runBuyers runs clients buyers doing op until d has passed (or every
// buyer met a refusal for 200 attempts in a row: sold out).
func runBuyers(ctx context.Context, e shapeEngine, op shapeOp, clients int, d time.Duration) shapeResult {
	var res shapeResult
	var mu sync.Mutex
	var sold, requests, refused, busy, errs, last atomic.Int64
	// The run's end cancels the buyers' requests but is not their
	// deadline: a store batches requests to the latest deadline among
	// them, and requests that all end at one instant would fail their
	// batch whole (logged and counted as a batch failure, which must stay
	// 0), where a real sale's requests each have their own.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Over HTTP every client first opens its connection, untimed, and the
	// clock starts when all have (pgbench too connects its clients before
	// it counts): a sale's buyers reach servers behind a balancer whose
	// connections are open, and 256 handshakes at the first instant would
	// be measured as the sale. /readyz also asks the database, so the
	// server's pool is open as a serving server's is.
	var ready sync.WaitGroup
	r, _ := e.(interface{ Ready(context.Context) error })
	gate := make(chan struct{})
	var start time.Time // set before gate closes
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		ready.Add(1)
		go func() {
			defer wg.Done()
			if r != nil {
				_ = r.Ready(ctx)
			}
			ready.Done()
			<-gate
			rng := rand.New(rand.NewPCG(uint64(c)+1, 11))
			lat := make([]time.Duration, 0, 4096)
			misses := 0
			for n := 0; ctx.Err() == nil && misses < 200; n++ {
				t := time.Now()
				k, err := op(ctx, e, c, n, rng)
				if ctx.Err() != nil && err != nil {
					break // the run's end, not the engine's answer
				}
				lat = append(lat, time.Since(t))
				requests.Add(1)
				switch code := holdfast.ErrorCode(err); {
				case err == nil:
					sold.Add(k)
					last.Store(int64(time.Since(start)))
					misses = 0
				case code == holdfast.CodeSoldOut || code == holdfast.CodeUnavailable:
					refused.Add(1)
					misses++
				case code == holdfast.CodeLimitExceeded:
					// This buyer has all it may have: it goes home.
					refused.Add(1)
					misses = 200
				case code == holdfast.CodeBusy:
					busy.Add(1)
				default:
					if errs.Add(1) == 1 {
						mu.Lock()
						res.firstErr = err.Error()
						mu.Unlock()
					}
				}
			}
			mu.Lock()
			res.lat = append(res.lat, lat...)
			mu.Unlock()
		}()
	}
	ready.Wait()
	end := time.AfterFunc(d, cancel)
	defer end.Stop()
	start = time.Now()
	close(gate)
	wg.Wait()
	res.elapsed = time.Since(start)
	res.lastSale = time.Duration(last.Load())
	res.sold, res.requests, res.refused, res.busy, res.errs = sold.Load(), requests.Load(), refused.Load(), busy.Load(), errs.Load()
	slices.Sort(res.lat)
	return res
}

func (r shapeResult) quantile(q float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	return r.lat[min(len(r.lat)-1, int(q*float64(len(r.lat))))]
}

// shapeMode runs one shape on one holdfast mode: a fresh database, the
// shape's set-up, the buyers, the audit.
// extraLoad runs beside a bench's buyers from set-up to the end of the
// run (viewers, a webhook endpoint): it is given the server's base URL
// and its store, and its stop reports what it saw.
type extraLoad func(base string, store holdfast.Store) (stop func() string)

func shapeMode(ctx context.Context, f Options, shape benchShape, mode string, clients int, d time.Duration, extra extraLoad) (benchRow, error) {
	row := benchRow{Mode: mode, Scenario: shape.name, Clients: clients}
	lf := f
	lf.Think, lf.Instances, lf.Coalesce = 0, 1, true
	if strings.Contains(mode, "sqlite") {
		lf.DB = ""
	}
	t, err := localTarget(ctx, lf, holdfast.Atomic)
	if err != nil {
		return row, err
	}
	defer t.Close()
	store := t.Engines[0].(holdfast.Store)
	var e shapeEngine = store
	var base string
	// The HTTP rows on PostgreSQL run `holdfast serve` as a process of its
	// own, as a user runs it: its CPU is counted apart from the load
	// generator's. The rows with extra load (viewers, streams, a webhook)
	// and SQLite's (one process owns the file) serve in this process.
	var server *serverProc
	op, err := shape.setup(ctx, store)
	if err != nil {
		return row, fmt.Errorf("%s set-up: %w", shape.name, err)
	}
	if strings.Contains(mode, "http") && !strings.Contains(mode, "sqlite") && extra == nil && f.Serve != nil {
		if server, err = startServer(ctx, f.Serve, t.DB); err != nil {
			return row, err
		}
		defer server.stop()
		base = server.base
	} else if strings.Contains(mode, "http") {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return row, err
		}
		srv := &http.Server{Handler: hfhttp.NewServer(hfhttp.Config{Store: store, Logger: slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))})}
		go srv.Serve(ln)
		defer srv.Close()
		base = "http://" + ln.Addr().String()
	}
	if base != "" {
		c := hfhttp.NewClient(base, "")
		c.NoIdempotencyKeys = strings.HasSuffix(mode, "no keys")
		c.HTTP.Transport.(*http.Transport).MaxIdleConnsPerHost = clients
		e = c
	}
	var stopExtra func() string
	if extra != nil {
		stopExtra = extra(base, store)
	}
	stats := func() (holdfast.Stats, bool) {
		if server != nil {
			st, err := server.stats(ctx)
			return st, err == nil
		}
		if r, ok := store.(holdfast.StatsReporter); ok {
			return r.Stats(), true
		}
		return holdfast.Stats{}, false
	}
	before, _ := stats()
	xacts := dbWrites(ctx, store)
	cpu, serverCPU := processCPU(), time.Duration(0)
	if server != nil {
		serverCPU = server.cpu()
	}
	res := runBuyers(ctx, e, op, clients, d)
	cpu = processCPU() - cpu
	if server != nil {
		serverCPU = server.cpu() - serverCPU
	}
	xacts = dbWrites(ctx, store) - xacts
	after, statsOK := stats()
	if server != nil {
		// Its batches are done: nothing of the run is left in flight when
		// the database is audited.
		server.stop()
	}
	if stopExtra != nil {
		row.Note = stopExtra()
	}
	rep, err := store.Audit(ctx)
	if err != nil {
		return row, err
	}
	var notes []string
	if row.Note != "" {
		notes = append(notes, row.Note)
	}
	notes = append(notes, res.fill(&row, rep))
	if shape.name == "sell-out" {
		row.SellOut = res.lastSale
	}
	if statsOK {
		st := after
		if st.Batches > before.Batches {
			notes = append(notes, fmt.Sprintf("%.1f claims and %.1f statements per claim batch", float64(st.BatchedClaims-before.BatchedClaims)/float64(st.Batches-before.Batches),
				float64(st.ClaimStatements-before.ClaimStatements)/float64(st.Batches-before.Batches)))
		}
		if n := st.BatchFailures - before.BatchFailures; n > 0 {
			notes = append(notes, fmt.Sprintf("%d batches failed whole (their requests went one by one)", n))
		}
		if st.ChangeBatches > before.ChangeBatches {
			notes = append(notes, fmt.Sprintf("%.1f changes and %.1f statements per change batch", float64(st.BatchedChanges-before.BatchedChanges)/float64(st.ChangeBatches-before.ChangeBatches),
				float64(st.ChangeStatements-before.ChangeStatements)/float64(st.ChangeBatches-before.ChangeBatches)))
		}
	}
	switch {
	case res.requests > 0 && server != nil && serverCPU > 0:
		notes = append(notes, fmt.Sprintf("%.0f µs server CPU per request (holdfast serve, a process of its own), %.0f µs the load generator's",
			float64(serverCPU.Microseconds())/float64(res.requests), float64(cpu.Microseconds())/float64(res.requests)))
	case res.requests > 0 && cpu > 0 && server == nil:
		// One process runs the server and the load generator: this is
		// their sum, an upper bound on the server's own cost.
		notes = append(notes, fmt.Sprintf("%.0f µs CPU per request (server and load generator, one process)", float64(cpu.Microseconds())/float64(res.requests)))
	}
	if res.requests > 0 && xacts > 0 {
		notes = append(notes, fmt.Sprintf("%.2f database write transactions per request", float64(xacts)/float64(res.requests)))
	}
	if res.errs > 0 {
		notes = append(notes, fmt.Sprintf("%d errors, first: %s", res.errs, res.firstErr))
	}
	row.Note = strings.Join(notes, "; ")
	return row, nil
}

// dbWrites is how many transaction ids the PostgreSQL server has handed
// out: every transaction that writes takes one, a read-only one none. Its
// difference over a run is the run's write transactions, exact and read at
// once (pg_stat_database's counts reach the view up to seconds late: the
// lab waited a second before each read, and was still short). It counts
// the whole server's, so a run beside other work counts that work too.
// 0 on SQLite.
func dbWrites(ctx context.Context, store holdfast.Store) int64 {
	q, ok := rawsql.Of(store)
	if !ok {
		return 0
	}
	n, _ := q.QueryInt(ctx, `SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint`)
	return n
}

// fill puts a run's rates, latencies and audit into row, and returns
// the note on its requests.
func (res shapeResult) fill(row *benchRow, rep holdfast.AuditReport) string {
	row.PerSec = float64(res.sold) / res.elapsed.Seconds()
	row.P50, row.P99, row.Max = res.quantile(0.5), res.quantile(0.99), res.quantile(1)
	row.Busy = res.busy
	row.Oversold = rep.Oversold + rep.DoubleBooked + int64(len(rep.Differences))
	return fmt.Sprintf("%d requests, %d refused", res.requests, res.refused)
}

// mapViewers starts n clients re-reading a seat map's compact form (with
// If-None-Match, as a page does) until stopped; stop reports reads/s.
func mapViewers(n int, group string) extraLoad {
	return func(base string, _ holdfast.Store) func() string {
		ctx, cancel := context.WithCancel(context.Background())
		var reads, notModified atomic.Int64
		var wg sync.WaitGroup
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}}
		start := time.Now()
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				etag := ""
				for ctx.Err() == nil {
					req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/groups/"+group+"/units?format=compact", nil)
					if etag != "" {
						req.Header.Set("If-None-Match", etag)
					}
					resp, err := client.Do(req)
					if err != nil {
						continue
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusNotModified {
						notModified.Add(1)
					} else {
						etag = resp.Header.Get("ETag")
					}
					reads.Add(1)
				}
			}()
		}
		return func() string {
			el := time.Since(start)
			cancel()
			wg.Wait()
			return fmt.Sprintf("%d map viewers: %.0f map reads/s (%.0f%% answered 304)", n, float64(reads.Load())/el.Seconds(),
				100*float64(notModified.Load())/max(1, float64(reads.Load())))
		}
	}
}

// streamViewers starts n clients on /v1/events/stream until stopped;
// stop reports events received and the lag from an event's commit
// stamp to its arrival (sampled).
func streamViewers(n int) extraLoad {
	return func(base string, _ holdfast.Store) func() string {
		ctx, cancel := context.WithCancel(context.Background())
		var events atomic.Int64
		var mu sync.Mutex
		var lags []time.Duration
		var wg sync.WaitGroup
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: 0}}
		ready := make(chan struct{}, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/events/stream", nil)
				resp, err := client.Do(req)
				ready <- struct{}{}
				if err != nil {
					return
				}
				defer resp.Body.Close()
				br := bufio.NewReaderSize(resp.Body, 64<<10)
				var mine []time.Duration
				k := 0
				for {
					line, err := br.ReadSlice('\n')
					if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
						break
					}
					if len(line) < 6 || string(line[:6]) != "data: " {
						continue
					}
					events.Add(1)
					if k++; k%100 != 1 {
						continue
					}
					// "at":"2026-…Z" — the event's commit stamp.
					if i := strings.Index(string(line), `"at":"`); i >= 0 {
						rest := string(line[i+6:])
						if j := strings.IndexByte(rest, '"'); j > 0 {
							if at, err := time.Parse(time.RFC3339Nano, rest[:j]); err == nil {
								mine = append(mine, time.Since(at))
							}
						}
					}
				}
				mu.Lock()
				lags = append(lags, mine...)
				mu.Unlock()
			}()
		}
		for i := 0; i < n; i++ {
			<-ready
		}
		start := time.Now()
		return func() string {
			el := time.Since(start)
			cancel()
			wg.Wait()
			slices.Sort(lags)
			p99 := time.Duration(0)
			if len(lags) > 0 {
				p99 = lags[min(len(lags)-1, len(lags)*99/100)]
			}
			return fmt.Sprintf("%d stream viewers: %.0f events/s received in all, lag p99 %s", n, float64(events.Load())/el.Seconds(), durMs(p99))
		}
	}
}

// slowWebhook registers an endpoint that answers every call after delay
// and runs the webhook dispatcher, as serve does, for the run; stop
// reports the calls, the queue left and the heap before and after.
func slowWebhook(delay time.Duration) extraLoad {
	return func(_ string, store holdfast.Store) func() string {
		done := make(chan struct{})
		var calls atomic.Int64
		receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
			case <-done:
			}
			w.WriteHeader(http.StatusNoContent)
		}))
		q, _ := store.(webhook.Queue)
		ctx, cancel := context.WithCancel(context.Background())
		var heapBefore runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&heapBefore)
		finished := make(chan struct{})
		_, err := store.CreateWebhook(ctx, holdfast.Webhook{ID: "wh_bench", URL: receiver.URL, Secret: signature.NewSecret()})
		if err != nil || q == nil {
			close(finished)
		} else {
			d := webhook.New(webhook.Config{Queue: q, AllowPrivate: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			go func() {
				defer close(finished)
				_ = d.Run(ctx)
			}()
		}
		return func() string {
			var heapAfter runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&heapAfter)
			var backlog holdfast.DeliveryBacklog
			if q != nil {
				backlog, _ = q.DeliveryBacklog(context.Background(), time.Now())
			}
			cancel()
			close(done)
			<-finished
			receiver.Close()
			if err != nil {
				return "webhook: " + err.Error()
			}
			return fmt.Sprintf("a webhook answering after %s: %d calls, %d deliveries queued in the database, heap %d→%d MiB",
				delay, calls.Load(), backlog.Pending, heapBefore.HeapAlloc>>20, heapAfter.HeapAlloc>>20)
		}
	}
}
