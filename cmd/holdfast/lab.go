package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast"
	hfhttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/internal/lab"
	"github.com/holdfast/holdfast/postgres"
	"github.com/holdfast/holdfast/sqlite"
)

type labFlags struct {
	db          string
	redis       string
	strategies  string
	scenario    string
	clients     int
	capacity    int64
	quantity    int64
	duration    time.Duration
	think       time.Duration
	instances   int
	targets     string
	key         string
	auditDB     string
	json        bool
	chart       string
	report      string
	seed        uint64
	bench       bool
	benchN      []int
	benchShapes string
	shards      int
	coalesce    bool
	cpuprofile  string
	joiners     int
	admitRate   float64
}

func labCmd(e env) *cobra.Command {
	var f labFlags
	c := &cobra.Command{
		Use:   "lab",
		Short: "Storm strategies with concurrent buyers and audit what was oversold",
		Long: `lab runs the race the articles describe: concurrent buyers for a few tickets,
against each strategy in turn, each on a fresh database (never one of yours:
SQLite files in a temporary directory, or a fresh schema, dropped after, in
the PostgreSQL database --db names). After each run it counts in the
database whether anything was oversold or double-booked.

With no flags: 10 tickets, 20 buyers, every strategy SQLite offers, until
sold out. unsafe oversells; every other strategy must audit clean.`,
		Example: `  holdfast lab
  holdfast lab --db postgres://localhost/holdfast --redis redis://localhost:6379 --strategy all
  holdfast lab --scenario seats --capacity 200 --clients 64 --chart race.svg
  holdfast lab --target http://127.0.0.1:8080,http://127.0.0.1:8081 --key $ADMIN --audit-db postgres://…`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runLab(cmd.Context(), e, f) },
	}
	fs := c.Flags()
	fs.StringVar(&f.db, "db", envOr(e, "HOLDFAST_LAB_DB", ""), "where the lab's databases go: empty for temporary SQLite files, or a postgres:// URL (a fresh schema per strategy)")
	fs.StringVar(&f.redis, "redis", envOr(e, "HOLDFAST_REDIS", ""), "Redis URL, for the redislock strategy")
	fs.StringVar(&f.strategies, "strategy", "all", "strategies to run: name[,name…] or all")
	fs.StringVar(&f.scenario, "scenario", "pool", "pool (N tickets), seats (a seat map, 1–4 adjacent seats per buyer), riders (any free rider, who returns) or queue (a sale behind a waiting room: --joiners, --admit-per-second)")
	fs.IntVar(&f.joiners, "joiners", 20000, "queue: people who join the waiting room, a quarter before it opens")
	fs.Float64Var(&f.admitRate, "admit-per-second", 200, "queue: the room's admission rate")
	fs.IntVar(&f.clients, "clients", 20, "concurrent buyers")
	fs.Int64Var(&f.capacity, "capacity", 10, "tickets, seats or riders")
	fs.Int64Var(&f.quantity, "quantity", 1, "tickets per request (pool)")
	fs.DurationVar(&f.duration, "duration", 0, "how long to run; 0 runs until sold out (riders: 3s)")
	fs.DurationVar(&f.think, "think", 5*time.Millisecond, "pause between a strategy's check and its write, like a payment check in a real handler")
	fs.IntVar(&f.instances, "instances", 1, "in-process servers sharing each database (in-process locks are not enough)")
	fs.StringVar(&f.targets, "target", "", "storm running servers instead: URL[,URL…]")
	secretVar(fs, &f.key, "key", e, "HOLDFAST_KEY", "API key for --target (admin, to create the lab's pool)")
	fs.StringVar(&f.auditDB, "audit-db", "", "with --target: the servers' database, audited directly after the run")
	fs.BoolVar(&f.json, "json", false, "print the results as JSON")
	fs.StringVar(&f.chart, "chart", "", "write a chart: out.svg or out.png")
	fs.StringVar(&f.report, "report", "", "write the JSON report to this file")
	fs.Uint64Var(&f.seed, "seed", 1, "seed of the buyers' choices")
	fs.BoolVar(&f.coalesce, "coalesce", true, "combine concurrent claims on a pool into one transaction (atomic)")
	fs.BoolVar(&f.bench, "bench", false, "the benchmark: every shape of sale (--bench-shapes) against pgbench running the same shape one transaction per booking, then holdfast over HTTP (with and without keys) and as a library on PostgreSQL, and over HTTP on SQLite (--duration per run, default 10s; needs --db postgres://…)")
	fs.IntSliceVar(&f.benchN, "bench-clients", []int{64, 256}, "client counts the --bench buying shapes run at")
	fs.IntVar(&f.shards, "shards", 0, "with --bench: the sharding benchmark instead, over this many shards (databases on the --db server, which needs max_prepared_transactions > 0): one partition alone, every shard busy, holds within one shard and across two, and across two with 1 ms added between server and shards (Toxiproxy)")
	fs.StringVar(&f.benchShapes, "bench-shapes", "all", "the --bench shapes: all, or some of pool,pool-limit-book,events,seats,riders,mixed,sellout,viewers,streams,webhooks")
	fs.StringVar(&f.cpuprofile, "cpuprofile", "", "write a CPU profile of the whole run (go tool pprof) to this file")
	return c
}

func runLab(ctx context.Context, e env, f labFlags) error {
	if f.cpuprofile != "" {
		out, err := os.Create(f.cpuprofile)
		if err != nil {
			return err
		}
		defer out.Close()
		if err := pprof.StartCPUProfile(out); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if f.bench && f.shards > 0 {
		return runShardBench(ctx, e, f)
	}
	if f.bench {
		return runBench(ctx, e, f)
	}
	if f.scenario == "queue" {
		if f.joiners < 1 || f.admitRate <= 0 || f.clients < 1 || f.capacity < 1 {
			return &exitError{code: 2, err: fmt.Errorf("--joiners, --admit-per-second, --clients and --capacity must be positive")}
		}
		return runQueue(ctx, e, f)
	}
	cfg := lab.Config{Scenario: lab.Scenario(f.scenario), Clients: f.clients, Capacity: f.capacity, Quantity: f.quantity,
		Duration: f.duration, Seed: f.seed}
	if f.clients < 1 || f.capacity < 1 || f.quantity < 1 || f.instances < 1 {
		return &exitError{code: 2, err: fmt.Errorf("--clients, --capacity, --quantity and --instances must be at least 1")}
	}
	if isTerminal(e.stderr) && !f.json {
		cfg.Progress = e.stderr
	}
	var targets []func() (lab.Target, error)
	var notes []string
	if f.targets != "" {
		targets = append(targets, func() (lab.Target, error) { return remoteTarget(ctx, f) })
	} else {
		strategies, skipped, err := labStrategies(f)
		if err != nil {
			return &exitError{code: 2, err: err}
		}
		notes = skipped
		for _, st := range strategies {
			targets = append(targets, func() (lab.Target, error) { return localTarget(ctx, f, st) })
		}
	}
	var results []lab.Result
	for _, open := range targets {
		t, err := open()
		if err != nil {
			return err
		}
		r, err := lab.Run(ctx, cfg, t)
		t.Close()
		if err != nil {
			return err
		}
		results = append(results, r)
	}
	if f.json {
		b, err := lab.JSON(results)
		if err != nil {
			return err
		}
		e.stdout.Write(b)
	} else {
		lab.WriteTable(e.stdout, results)
		for _, n := range notes {
			fmt.Fprintln(e.stdout, n)
		}
	}
	if f.report != "" {
		b, err := lab.JSON(results)
		if err != nil {
			return err
		}
		if err := lab.WriteFileAtomic(f.report, func(w io.Writer) error { _, err := w.Write(b); return err }); err != nil {
			return err
		}
	}
	if f.chart != "" {
		if err := lab.WriteChart(f.chart, results); err != nil {
			return err
		}
		if !f.json {
			fmt.Fprintf(e.stdout, "chart written to %s\n", f.chart)
		}
	}
	return nil
}

// labStrategies resolves --strategy against what the backend offers.
func labStrategies(f labFlags) ([]holdfast.Strategy, []string, error) {
	offered := sqlite.Strategies
	if isPostgres(f.db) {
		offered = postgres.Strategies
	}
	var notes []string
	if f.strategies == "all" {
		var out []holdfast.Strategy
		for _, st := range offered {
			if st == holdfast.RedisLock && f.redis == "" {
				notes = append(notes, "redislock skipped: pass --redis redis://… to run it")
				continue
			}
			out = append(out, st)
		}
		if !isPostgres(f.db) {
			notes = append(notes, "serializable, advisory and redislock need PostgreSQL: pass --db postgres://…")
		}
		return out, notes, nil
	}
	var out []holdfast.Strategy
	for _, name := range strings.Split(f.strategies, ",") {
		st, err := holdfast.ParseStrategy(strings.TrimSpace(name))
		if err != nil {
			return nil, nil, err
		}
		found := false
		for _, o := range offered {
			found = found || o == st
		}
		if !found {
			return nil, nil, fmt.Errorf("strategy %q needs PostgreSQL: pass --db postgres://…", st)
		}
		out = append(out, st)
	}
	return out, nil, nil
}

func randomSuffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// localTarget opens --instances stores of strategy st on a fresh database.
func localTarget(ctx context.Context, f labFlags, st holdfast.Strategy) (lab.Target, error) {
	var dbURL string
	var cleanup func()
	if isPostgres(f.db) {
		schema := "holdfast_lab_" + randomSuffix() + "_" + string(st)
		conn, err := pgx.Connect(ctx, f.db)
		if err != nil {
			return lab.Target{}, err
		}
		if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
			conn.Close(ctx)
			return lab.Target{}, err
		}
		conn.Close(ctx)
		u, err := url.Parse(f.db)
		if err != nil {
			return lab.Target{}, err
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		dbURL = u.String()
		cleanup = func() {
			c, err := pgx.Connect(context.Background(), f.db)
			if err == nil {
				c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
				c.Close(context.Background())
			}
		}
	} else {
		dir, err := os.MkdirTemp(f.db, "holdfast-lab-")
		if err != nil {
			return lab.Target{}, err
		}
		dbURL = filepath.Join(dir, string(st)+".db")
		cleanup = func() { os.RemoveAll(dir) }
	}
	t := lab.Target{Name: string(st)}
	var stores []holdfast.Store
	closeAll := func() {
		for _, s := range stores {
			s.Close()
		}
		cleanup()
	}
	for i := 0; i < f.instances; i++ {
		s, err := openStore(ctx, dbURL, f.redis, st, holdfast.Config{}, f.think, !f.coalesce, tuning{})
		if err != nil {
			closeAll()
			return lab.Target{}, err
		}
		stores = append(stores, s)
		t.Engines = append(t.Engines, s)
	}
	t.Audit = stores[0].Audit
	t.Close = closeAll
	return t, nil
}

// remoteTarget storms running servers through the API.
func remoteTarget(ctx context.Context, f labFlags) (lab.Target, error) {
	t := lab.Target{Name: "target", Close: func() {}}
	for _, u := range strings.Split(f.targets, ",") {
		c := hfhttp.NewClient(strings.TrimSpace(u), f.key)
		c.HTTP.Timeout = time.Minute
		t.Engines = append(t.Engines, c)
	}
	if f.auditDB != "" {
		t.Audit = func(ctx context.Context) (holdfast.AuditReport, error) {
			s, err := openStore(ctx, f.auditDB, "", holdfast.Atomic, holdfast.Config{}, 0, true, tuning{})
			if err != nil {
				return holdfast.AuditReport{}, err
			}
			defer s.Close()
			return s.Audit(ctx)
		}
	}
	return t, nil
}

// isTerminal reports whether w is a terminal (the progress bar's place).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
