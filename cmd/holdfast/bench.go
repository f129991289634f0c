package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast"
	hfhttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/internal/lab"
	"github.com/holdfast/holdfast/internal/sqlstore"
)

// benchRow is one line of the flash-sale benchmark.
type benchRow struct {
	Mode     string        `json:"mode"`
	Scenario string        `json:"scenario"`
	Clients  int           `json:"clients"`
	PerSec   float64       `json:"bookings_per_second"`
	P50      time.Duration `json:"p50_ns"`
	P99      time.Duration `json:"p99_ns"`
	Max      time.Duration `json:"max_ns"`
	SellOut  time.Duration `json:"time_to_sell_out_ns,omitempty"`
	Busy     int64         `json:"false_busy"`
	Oversold int64         `json:"oversold"`
	Ratio    float64       `json:"ratio_to_pgbench,omitempty"`
	Note     string        `json:"note,omitempty"`
}

// runBench is `holdfast lab --bench`: the flash sale measured against
// PostgreSQL's own one-transaction-per-booking ceiling, in one run.
func runBench(ctx context.Context, e env, f labFlags) error {
	if !isPostgres(f.db) {
		return &exitError{code: 2, err: fmt.Errorf("--bench needs --db postgres://… (the pgbench reference runs there)")}
	}
	d := f.duration
	if d == 0 {
		d = 15 * time.Second
	}
	var rows []benchRow
	for _, clients := range f.benchN {
		ref, err := pgbenchCeiling(ctx, f.db, clients, d)
		if err != nil {
			return fmt.Errorf("pgbench: %w", err)
		}
		rows = append(rows, ref)
		for _, mode := range benchModes {
			r, err := benchMode(ctx, f, mode, lab.Config{Scenario: lab.ScenarioPool, Clients: clients, Capacity: 1 << 40, Duration: d})
			if err != nil {
				return err
			}
			r.Ratio = r.PerSec / ref.PerSec
			rows = append(rows, r)
		}
	}
	for _, mode := range benchModes {
		r, err := benchMode(ctx, f, mode, lab.Config{Scenario: lab.ScenarioPool, Clients: 256, Capacity: 1000})
		if err != nil {
			return err
		}
		rows = append(rows, r)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tscenario\tclients\tbookings/s\t× pgbench\tp50\tp99\tmax\tsold out in\tfalse-busy\toversold\t")
	for _, r := range rows {
		ratio := "-"
		if r.Ratio > 0 {
			ratio = fmt.Sprintf("%.1f×", r.Ratio)
		}
		sell := "-"
		if r.SellOut > 0 {
			sell = r.SellOut.Round(time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t\n", r.Mode, r.Scenario, r.Clients, r.PerSec, ratio,
			durMs(r.P50), durMs(r.P99), durMs(r.Max), sell, r.Busy, r.Oversold)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if f.chart != "" {
		if err := benchChart(f.chart, rows); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "chart written to %s\n", f.chart)
	}
	for _, r := range rows {
		if r.Note != "" {
			fmt.Fprintf(e.stdout, "%s, %d clients: %s\n", r.Mode, r.Clients, r.Note)
		}
	}
	return nil
}

func durMs(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000)
}

// benchModes are the ways holdfast is measured. Over HTTP every POST
// carries an Idempotency-Key, as a careful client sends it; "no keys"
// shows what the keys cost.
var benchModes = []string{"holdfast http postgres", "holdfast http postgres, no keys", "holdfast library postgres", "holdfast http sqlite"}

// benchMode runs the lab's pool workload on one holdfast mode.
func benchMode(ctx context.Context, f labFlags, mode string, cfg lab.Config) (benchRow, error) {
	lf := f
	lf.think, lf.instances, lf.coalesce = 0, 1, true
	if mode == "holdfast http sqlite" {
		lf.db = ""
	}
	t, err := localTarget(ctx, lf, holdfast.Atomic)
	if err != nil {
		return benchRow{}, err
	}
	defer t.Close()
	store := t.Engines[0].(holdfast.Store)
	if mode != "holdfast library postgres" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return benchRow{}, err
		}
		srv := &http.Server{Handler: hfhttp.NewServer(hfhttp.Config{Store: store, Logger: slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))})}
		go srv.Serve(ln)
		defer srv.Close()
		c := hfhttp.NewClient("http://"+ln.Addr().String(), "")
		c.NoIdempotencyKeys = strings.HasSuffix(mode, "no keys")
		c.HTTP.Transport.(*http.Transport).MaxIdleConnsPerHost = cfg.Clients
		t.Engines = []lab.Engine{c}
	}
	t.Name = mode
	stats, _ := store.(interface{ Stats() sqlstore.Stats })
	r, err := lab.Run(ctx, cfg, t)
	if err != nil {
		return benchRow{}, err
	}
	var note string
	if stats != nil {
		if st := stats.Stats(); st.Batches > 0 {
			note = fmt.Sprintf("%d claims in %d transactions (%.1f per transaction)", st.BatchedClaims, st.Batches, float64(st.BatchedClaims)/float64(st.Batches))
		}
	}
	scenario := fmt.Sprintf("open pool, %s", cfg.Duration)
	if cfg.Duration == 0 {
		scenario = fmt.Sprintf("%d tickets, until sold out", cfg.Capacity)
	}
	return benchRow{Mode: mode, Scenario: scenario, Clients: cfg.Clients, PerSec: float64(r.Granted) / r.Elapsed.Seconds(),
		P50: r.P50, P99: r.P99, Max: r.Max, SellOut: r.SellOut, Busy: r.FalseBusy, Oversold: r.Oversold, Note: note}, nil
}

const pgbenchScript = `BEGIN;
UPDATE hot SET available = available - 1 WHERE id = 1 AND available >= 1 RETURNING available;
INSERT INTO bookings (item) VALUES (1);
COMMIT;
`

// pgbenchCeiling measures PostgreSQL's one-transaction-per-booking rate on
// one hot row with pgbench, at the same client count: the ceiling any
// design that commits each booking alone runs into.
func pgbenchCeiling(ctx context.Context, db string, clients int, d time.Duration) (benchRow, error) {
	row := benchRow{Mode: "pgbench, 1 booking per transaction", Scenario: fmt.Sprintf("one hot row, %s", d), Clients: clients}
	schema := "holdfast_bench_" + randomSuffix()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		return row, err
	}
	defer conn.Close(ctx)
	// pgbench needs a connection per client; PostgreSQL may allow fewer.
	var maxConns int
	if err := conn.QueryRow(ctx, "SELECT current_setting('max_connections')::int").Scan(&maxConns); err != nil {
		return row, err
	}
	if limit := maxConns - 20; clients > limit {
		row.Note = fmt.Sprintf("pgbench ran %d clients: max_connections is %d", limit, maxConns)
		clients = limit
	}
	for _, sql := range []string{
		"CREATE SCHEMA " + schema,
		"CREATE TABLE " + schema + ".hot (id int PRIMARY KEY, available bigint NOT NULL CHECK (available >= 0))",
		"INSERT INTO " + schema + ".hot VALUES (1, 1000000000000)",
		"CREATE TABLE " + schema + ".bookings (id bigserial PRIMARY KEY, item int NOT NULL, at timestamptz NOT NULL DEFAULT now())",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			return row, err
		}
	}
	defer conn.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
	dir, err := os.MkdirTemp("", "holdfast-pgbench-")
	if err != nil {
		return row, err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "booking.sql")
	if err := os.WriteFile(script, []byte(pgbenchScript), 0o644); err != nil {
		return row, err
	}
	u, err := url.Parse(db)
	if err != nil {
		return row, err
	}
	q := u.Query()
	q.Del("search_path")
	u.RawQuery = q.Encode()
	cmd := exec.CommandContext(ctx, "pgbench", "-n", "-c", strconv.Itoa(clients), "-j", "2", "-T", strconv.Itoa(int(d.Seconds())),
		"-f", script, "-r", u.String())
	cmd.Env = append(os.Environ(), "PGOPTIONS=-c search_path="+schema)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return row, fmt.Errorf("%v: %s", err, out)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	tps := regexp.MustCompile(`tps = ([0-9.]+)`)
	lat := regexp.MustCompile(`latency average = ([0-9.]+) ms`)
	for sc.Scan() {
		if m := tps.FindStringSubmatch(sc.Text()); m != nil {
			row.PerSec, _ = strconv.ParseFloat(m[1], 64)
		}
		if m := lat.FindStringSubmatch(sc.Text()); m != nil {
			ms, _ := strconv.ParseFloat(m[1], 64)
			row.P50 = time.Duration(ms * float64(time.Millisecond))
			row.Note = strings.TrimPrefix(row.Note+"; pgbench reports the mean latency (shown as p50)", "; ")
		}
	}
	if row.PerSec == 0 {
		return row, fmt.Errorf("no tps in pgbench's output: %s", out)
	}
	return row, nil
}

// benchChart writes bookings/s and p99 against client count, per mode.
func benchChart(path string, rows []benchRow) error {
	perSec, p99 := map[string]*lab.Series{}, map[string]*lab.Series{}
	var modes []string
	for _, r := range rows {
		if !strings.HasPrefix(r.Scenario, "open pool") && !strings.HasPrefix(r.Scenario, "one hot row") {
			continue
		}
		if _, ok := perSec[r.Mode]; !ok {
			modes = append(modes, r.Mode)
			perSec[r.Mode] = &lab.Series{Name: r.Mode, Points: map[int]float64{}}
			p99[r.Mode] = &lab.Series{Name: r.Mode, Points: map[int]float64{}}
		}
		perSec[r.Mode].Points[r.Clients] = r.PerSec
		if r.P99 > 0 {
			p99[r.Mode].Points[r.Clients] = float64(r.P99.Microseconds()) / 1000
		}
	}
	panels := map[string][]lab.Series{}
	for _, m := range modes {
		panels["bookings/s"] = append(panels["bookings/s"], *perSec[m])
		if len(p99[m].Points) > 0 {
			panels["p99 latency (ms)"] = append(panels["p99 latency (ms)"], *p99[m])
		}
	}
	svg := lab.LineChartSVG("holdfast flash sale: one hot pool", panels, []string{"bookings/s", "p99 latency (ms)"})
	if !strings.HasSuffix(strings.ToLower(path), ".svg") {
		return fmt.Errorf("--chart %s: the benchmark's chart is written as .svg", path)
	}
	return lab.WriteFileAtomic(path, func(w io.Writer) error { _, err := w.Write(svg); return err })
}
