package labrun

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast"
	hfhttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/internal/lab"
	"github.com/holdfast/holdfast/internal/opendb"
	"github.com/holdfast/holdfast/postgres"
	"github.com/holdfast/holdfast/sqlite"
)

// Options are the lab's settings: the flags of holdfast lab.
type Options struct {
	DB, Redis, Strategies, Scenario string
	Clients                         int
	Capacity, Quantity              int64
	Duration, Think                 time.Duration
	Instances                       int
	Targets, Key, AuditDB           string
	JSON                            bool
	Chart, Report                   string
	Seed                            uint64
	Bench                           bool
	BenchClients                    []int
	BenchShapes                     string
	Shards                          int
	Coalesce                        bool
	CPUProfile                      string
	Joiners                         int
	AdmitRate                       float64
	// Serve starts `holdfast serve` with args as a process of its own:
	// the benchmark's HTTP rows on PostgreSQL run their server there, so
	// the server's CPU is measured apart from the load generator's. Nil:
	// those rows serve HTTP in the lab's own process.
	Serve func(ctx context.Context, args ...string) *exec.Cmd
}

// UsageError is a setting that cannot work: the command exits 2.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// env is where the lab writes.
type env struct{ stdout, stderr io.Writer }

// Run runs the lab as o says: the race, the queue, or the benchmarks.
func Run(ctx context.Context, stdout, stderr io.Writer, o Options) error {
	return runLab(ctx, env{stdout, stderr}, o)
}

func runLab(ctx context.Context, e env, f Options) error {
	if f.CPUProfile != "" {
		out, err := os.Create(f.CPUProfile)
		if err != nil {
			return err
		}
		defer out.Close()
		if err := pprof.StartCPUProfile(out); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if f.Bench && f.Shards > 0 {
		return runShardBench(ctx, e, f)
	}
	if f.Bench {
		return runBench(ctx, e, f)
	}
	if f.Scenario == "queue" {
		if f.Joiners < 1 || f.AdmitRate <= 0 || f.Clients < 1 || f.Capacity < 1 {
			return &UsageError{Err: fmt.Errorf("--joiners, --admit-per-second, --clients and --capacity must be positive")}
		}
		return runQueue(ctx, e, f)
	}
	cfg := lab.Config{Scenario: lab.Scenario(f.Scenario), Clients: f.Clients, Capacity: f.Capacity, Quantity: f.Quantity,
		Duration: f.Duration, Seed: f.Seed}
	if f.Clients < 1 || f.Capacity < 1 || f.Quantity < 1 || f.Instances < 1 {
		return &UsageError{Err: fmt.Errorf("--clients, --capacity, --quantity and --instances must be at least 1")}
	}
	if isTerminal(e.stderr) && !f.JSON {
		cfg.Progress = e.stderr
	}
	var targets []func() (lab.Target, error)
	var notes []string
	if f.Targets != "" {
		targets = append(targets, func() (lab.Target, error) { return remoteTarget(ctx, f) })
	} else {
		strategies, skipped, err := labStrategies(f)
		if err != nil {
			return &UsageError{Err: err}
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
	if f.JSON {
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
	if f.Report != "" {
		b, err := lab.JSON(results)
		if err != nil {
			return err
		}
		if err := lab.WriteFileAtomic(f.Report, func(w io.Writer) error { _, err := w.Write(b); return err }); err != nil {
			return err
		}
	}
	if f.Chart != "" {
		if err := lab.WriteChart(f.Chart, results); err != nil {
			return err
		}
		if !f.JSON {
			fmt.Fprintf(e.stdout, "chart written to %s\n", f.Chart)
		}
	}
	return nil
}

// labStrategies resolves --strategy against what the backend offers.
func labStrategies(f Options) ([]holdfast.Strategy, []string, error) {
	offered := sqlite.Strategies
	if postgres.IsURL(f.DB) {
		offered = postgres.Strategies
	}
	var notes []string
	if f.Strategies == "all" {
		var out []holdfast.Strategy
		for _, st := range offered {
			if st == holdfast.RedisLock && f.Redis == "" {
				notes = append(notes, "redislock skipped: pass --redis redis://… to run it")
				continue
			}
			out = append(out, st)
		}
		if !postgres.IsURL(f.DB) {
			notes = append(notes, "serializable, advisory and redislock need PostgreSQL: pass --db postgres://…")
		}
		return out, notes, nil
	}
	var out []holdfast.Strategy
	for _, name := range strings.Split(f.Strategies, ",") {
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
func localTarget(ctx context.Context, f Options, st holdfast.Strategy) (lab.Target, error) {
	var dbURL string
	var cleanup func()
	if postgres.IsURL(f.DB) {
		schema := "holdfast_lab_" + randomSuffix() + "_" + string(st)
		conn, err := pgx.Connect(ctx, f.DB)
		if err != nil {
			return lab.Target{}, err
		}
		if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
			conn.Close(ctx)
			return lab.Target{}, err
		}
		conn.Close(ctx)
		u, err := url.Parse(f.DB)
		if err != nil {
			return lab.Target{}, err
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		dbURL = u.String()
		cleanup = func() {
			c, err := pgx.Connect(context.Background(), f.DB)
			if err == nil {
				c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
				c.Close(context.Background())
			}
		}
	} else {
		dir, err := os.MkdirTemp(f.DB, "holdfast-lab-")
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
	for i := 0; i < f.Instances; i++ {
		s, err := opendb.Open(ctx, opendb.Options{DB: dbURL, Redis: f.Redis, Strategy: st, Think: f.Think, NoCoalesce: !f.Coalesce})
		if err != nil {
			closeAll()
			return lab.Target{}, err
		}
		stores = append(stores, s)
		t.Engines = append(t.Engines, s)
	}
	t.Audit = stores[0].Audit
	t.Close = closeAll
	t.DB = dbURL
	return t, nil
}

// remoteTarget storms running servers through the API.
func remoteTarget(ctx context.Context, f Options) (lab.Target, error) {
	t := lab.Target{Name: "target", Close: func() {}}
	for _, u := range strings.Split(f.Targets, ",") {
		c := hfhttp.NewClient(strings.TrimSpace(u), f.Key)
		c.HTTP.Timeout = time.Minute
		t.Engines = append(t.Engines, c)
	}
	if f.AuditDB != "" {
		t.Audit = func(ctx context.Context) (holdfast.AuditReport, error) {
			s, err := opendb.Open(ctx, opendb.Options{DB: f.AuditDB, Strategy: holdfast.Atomic, NoCoalesce: true})
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

// Race runs the classic race (lab.Config's defaults) against every
// strategy o names, each on a throwaway database: what the page's Race
// button shows.
func Race(ctx context.Context, o Options) ([]lab.Result, error) {
	strategies, _, err := labStrategies(o)
	if err != nil {
		return nil, err
	}
	var results []lab.Result
	for _, st := range strategies {
		t, err := localTarget(ctx, o, st)
		if err != nil {
			return nil, err
		}
		r, err := lab.Run(ctx, lab.Config{}, t)
		t.Close()
		if err != nil {
			return nil, err
		}
		results = append(results, r)
	}
	return results, nil
}
