package labrun

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/postgres"
	"github.com/holdfast/holdfast/shard"
)

// coldPools is how many pools each many-events scenario spreads over.
const coldPools = 64

// runShardBench is `holdfast lab --bench --shards N`: what sharding costs
// and buys, measured as a library on PostgreSQL (the server's HTTP cost is
// the same with or without shards). Every shard is a database of its own
// on the --db server: on one machine the shards share its cores and disk,
// so the total cannot grow with them; what is measured is the cost of the
// routing, of two-phase commit, and of a shard's neighbours.
func runShardBench(ctx context.Context, e env, f Options) error {
	if !postgres.IsURL(f.DB) {
		return &UsageError{Err: fmt.Errorf("--bench --shards needs --db postgres://…")}
	}
	if f.Shards < 2 {
		return &UsageError{Err: fmt.Errorf("--shards must be at least 2")}
	}
	d := f.Duration
	if d == 0 {
		d = 10 * time.Second
	}
	clients := 64
	if len(f.BenchClients) > 0 {
		clients = f.BenchClients[0]
	}
	var rows []benchRow
	emit := func(r benchRow) {
		rows = append(rows, r)
		fmt.Fprintf(e.stderr, "bench: %s, %d clients: %.0f/s, p99 %s\n", r.Scenario, r.Clients, r.PerSec, durMs(r.P99))
	}
	n := f.Shards
	one := func(pool string) shapeOp {
		return func(ctx context.Context, e shapeEngine, buyer, _ int, _ *rand.Rand) (int64, error) {
			_, err := e.Hold(ctx, holdfast.HoldRequest{Holder: fmt.Sprintf("b%d", buyer), Lines: []holdfast.Line{{Pool: pool, Quantity: 1}}})
			return 1, err
		}
	}
	spread := func(ctx context.Context, e shapeEngine, buyer, _ int, _ *rand.Rand) (int64, error) {
		_, err := e.Hold(ctx, holdfast.HoldRequest{Holder: fmt.Sprintf("b%d", buyer), Lines: []holdfast.Line{{Pool: fmt.Sprintf("p%d", buyer%n), Quantity: 1}}})
		return 1, err
	}
	pair := func(a, b string) shapeOp {
		return func(ctx context.Context, e shapeEngine, buyer, _ int, _ *rand.Rand) (int64, error) {
			_, err := e.Hold(ctx, holdfast.HoldRequest{Holder: fmt.Sprintf("b%d", buyer), Lines: []holdfast.Line{{Pool: a, Quantity: 1}, {Pool: b, Quantity: 1}}})
			return 1, err
		}
	}
	// Many events: each buyer its own pair of pools, so no two holds wait
	// on one row: the cost of the machinery alone.
	coldPair := func(a, b string) shapeOp {
		return func(ctx context.Context, e shapeEngine, buyer, _ int, _ *rand.Rand) (int64, error) {
			_, err := e.Hold(ctx, holdfast.HoldRequest{Holder: fmt.Sprintf("b%d", buyer), Lines: []holdfast.Line{
				{Pool: fmt.Sprintf("%s-%d", a, buyer%coldPools), Quantity: 1}, {Pool: fmt.Sprintf("%s-%d", b, buyer%coldPools), Quantity: 1}}})
			return 1, err
		}
	}
	for _, sc := range []struct {
		name    string
		shards  int
		latency bool
		op      shapeOp
		perPool bool
		move    bool
	}{
		{"one database, one hot pool (reference)", 1, false, one("p0"), false, false},
		{fmt.Sprintf("%d shards, one hot partition (the others idle)", n), n, false, one("p1"), false, false},
		{fmt.Sprintf("%d shards, a hot partition on every shard", n), n, false, spread, true, false},
		{fmt.Sprintf("%d shards, holds of 2 lines within one shard", n), n, false, pair("p1", "p1b"), false, false},
		{fmt.Sprintf("%d shards, holds of 2 lines across 2 shards (two-phase commit)", n), n, false, pair("p1", "p2"), false, false},
		{fmt.Sprintf("%d shards, 2 lines within one shard, many events", n), n, false, coldPair("a", "ab"), false, false},
		{fmt.Sprintf("%d shards, 2 lines across 2 shards, many events", n), n, false, coldPair("a", "b"), false, false},
		{fmt.Sprintf("%d shards, one hot partition moved to another shard halfway", n), n, false, one("p1"), false, true},
		{fmt.Sprintf("%d shards + 1 ms to each, holds within one shard", n), n, true, pair("p1", "p1b"), false, false},
		{fmt.Sprintf("%d shards + 1 ms to each, holds across 2 shards", n), n, true, pair("p1", "p2"), false, false},
		{fmt.Sprintf("%d shards + 1 ms to each, within one shard, many events", n), n, true, coldPair("a", "ab"), false, false},
		{fmt.Sprintf("%d shards + 1 ms to each, across 2 shards, many events", n), n, true, coldPair("a", "b"), false, false},
	} {
		r, err := shardRun(ctx, f.DB, sc.shards, sc.latency, sc.op, sc.perPool, sc.move, clients, d)
		if err != nil {
			return fmt.Errorf("%s: %w", sc.name, err)
		}
		r.Scenario = sc.name
		emit(r)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tclients\tholds per second\tp50\tp99\tmax\tfalse-busy\taudit\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%s\t%s\t%s\t%d\t%d\t\n", r.Scenario, r.Clients, r.PerSec, durMs(r.P50), durMs(r.P99), durMs(r.Max), r.Busy, r.Oversold)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range rows {
		if r.Note != "" {
			fmt.Fprintf(e.stdout, "%s: %s\n", r.Scenario, r.Note)
		}
	}
	return nil
}

// shardRun opens shards databases (fresh schemas on db), with latency
// through Toxiproxy if asked, makes the pools p0…, p1b (p1's partition),
// and runs op.
func shardRun(ctx context.Context, db string, shards int, latency bool, op shapeOp, perPool, move bool, clients int, d time.Duration) (benchRow, error) {
	row := benchRow{Mode: "holdfast library postgres", Clients: clients}
	u, err := url.Parse(db)
	if err != nil {
		return row, err
	}
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		return row, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var prepared int
	if err := conn.QueryRow(ctx, "SELECT current_setting('max_prepared_transactions')::int").Scan(&prepared); err != nil {
		return row, err
	}
	if shards > 1 && prepared == 0 {
		return row, fmt.Errorf("the server at --db has max_prepared_transactions = 0: holds across shards need it above 0 (scripts/services.sh starts its server with 100)")
	}
	var px []*toxiproxy.Proxy
	if latency {
		srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
		p := toxiproxy.NewProxy(srv, "shards", "127.0.0.1:0", u.Host)
		if err := p.Start(); err != nil {
			return row, err
		}
		defer p.Stop()
		// 1 ms on every round trip: on the way to the database.
		if _, err := p.Toxics.AddToxicJson(strings.NewReader(`{"name":"lat","type":"latency","stream":"upstream","toxicity":1,"attributes":{"latency":1}}`)); err != nil {
			return row, err
		}
		px = append(px, p)
	}
	var urls []string
	for range shards {
		schema := "holdfast_shard_" + randomSuffix()
		if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
			return row, err
		}
		defer conn.Exec(context.WithoutCancel(ctx), "DROP SCHEMA "+schema+" CASCADE")
		v := *u
		if latency {
			v.Host = px[0].Listen
		}
		q := v.Query()
		q.Set("search_path", schema)
		v.RawQuery = q.Encode()
		urls = append(urls, v.String())
	}
	var store holdfast.Store
	if shards == 1 {
		store, err = postgres.Open(ctx, urls[0], postgres.Options{})
	} else {
		store, err = postgres.OpenShards(ctx, urls, postgres.Options{})
	}
	if err != nil {
		return row, err
	}
	defer store.Close()
	// p0 on the catalog, p1… on the others (least loaded first); p1b
	// shares p1's partition.
	var pools []string
	for i := range max(shards, 3) {
		pools = append(pools, fmt.Sprintf("p%d", i))
	}
	for _, p := range pools {
		if _, err := store.CreatePool(ctx, holdfast.Pool{ID: p, Capacity: 1 << 40}); err != nil {
			return row, err
		}
	}
	if _, err := store.CreatePool(ctx, holdfast.Pool{ID: "p1b", Capacity: 1 << 40, Partition: "p1"}); err != nil {
		return row, err
	}
	// The many events: a-i and ab-i on p1's shard, b-i on p2's.
	for i := range coldPools {
		for prefix, part := range map[string]string{"a": "p1", "ab": "p1", "b": "p2"} {
			if _, err := store.CreatePool(ctx, holdfast.Pool{ID: fmt.Sprintf("%s-%d", prefix, i), Capacity: 1 << 40, Partition: part}); err != nil {
				return row, err
			}
		}
	}
	// The move: p1's partition (p1, p1b and the many events a-…, ab-…)
	// to the next shard, halfway through the run, under the load.
	moved := make(chan string, 1)
	if move {
		go func() {
			select {
			case <-time.After(d / 2):
			case <-ctx.Done():
				moved <- "not moved: cancelled"
				return
			}
			rep, err := store.(*shard.Set).MovePartition(ctx, "p1", 2%shards)
			if err != nil {
				moved <- "the move failed: " + err.Error()
				return
			}
			moved <- fmt.Sprintf("moved p1 (%d pools, %d holds) from shard %d to %d halfway: writes to it waited %s (%d fences tried)",
				rep.Pools, rep.Holds, rep.From, rep.To, durMs(rep.Fenced), rep.Attempts)
		}()
	}
	res := runBuyers(ctx, store, op, clients, d)
	var moveNote string
	if move {
		moveNote = <-moved
	}
	if sh, ok := store.(*shard.Set); ok {
		// Nothing may be left prepared when the schemas go.
		if _, _, err := sh.ResolvePrepared(ctx, 0); err != nil {
			return row, err
		}
	}
	rep, err := store.Audit(ctx)
	if err != nil {
		return row, err
	}
	notes := []string{res.fill(&row, rep)}
	if move {
		notes = append(notes, moveNote)
	}
	if perPool {
		var per []string
		for i := range shards {
			p, err := store.Pool(ctx, fmt.Sprintf("p%d", i))
			if err != nil {
				return row, err
			}
			per = append(per, fmt.Sprintf("shard %d %.0f/s", i, float64(p.Held)/res.elapsed.Seconds()))
		}
		notes = append(notes, strings.Join(per, ", "))
	}
	if res.errs > 0 {
		notes = append(notes, fmt.Sprintf("%d errors, first: %s", res.errs, res.firstErr))
	}
	row.Note = strings.Join(notes, "; ")
	return row, nil
}
