package labrun

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
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
	"github.com/holdfast/holdfast/internal/lab"
	"github.com/holdfast/holdfast/postgres"
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

// runBench is `holdfast lab --bench`: every shape of sale measured against
// PostgreSQL's own one-transaction-per-booking ceiling for the same shape,
// in one run; then the sell-out, and buyers with viewers watching.
func runBench(ctx context.Context, e env, f Options) error {
	if !postgres.IsURL(f.DB) {
		return &UsageError{Err: fmt.Errorf("--bench needs --db postgres://… (the pgbench reference runs there)")}
	}
	d := f.Duration
	if d == 0 {
		d = 10 * time.Second
	}
	want := map[string]bool{}
	for _, s := range strings.Split(f.BenchShapes, ",") {
		want[strings.TrimSpace(s)] = true
	}
	all := want["all"]
	var rows []benchRow
	emit := func(r benchRow) {
		rows = append(rows, r)
		fmt.Fprintf(e.stderr, "bench: %s, %s, %d clients: %.0f/s, p99 %s\n", r.Scenario, r.Mode, r.Clients, r.PerSec, durMs(r.P99))
	}
	for _, shape := range benchShapes {
		if !all && !want[shape.name] {
			continue
		}
		for _, clients := range f.BenchClients {
			ref, err := pgbenchCeiling(ctx, f.DB, shape, clients, d)
			if err != nil {
				return fmt.Errorf("%s, pgbench, %d clients: %w", shape.name, clients, err)
			}
			emit(ref)
			for _, mode := range benchModes {
				r, err := shapeMode(ctx, f, shape, mode, clients, d, nil)
				if err != nil {
					return fmt.Errorf("%s, %s, %d clients: %w", shape.name, mode, clients, err)
				}
				if ref.PerSec > 0 {
					r.Ratio = r.PerSec / ref.PerSec
				}
				emit(r)
			}
		}
	}
	if all || want["sellout"] {
		// 1,000 tickets to 256 buyers: bookings, a per-holder limit, keys.
		shape := benchShape{name: "sell-out", setup: func(ctx context.Context, e shapeEngine) (shapeOp, error) {
			_, err := e.CreatePool(ctx, holdfast.Pool{ID: "hot", Capacity: 1000, PerHolderLimit: 4})
			return func(ctx context.Context, e shapeEngine, buyer, n int, _ *rand.Rand) (int64, error) {
				_, err := e.Book(ctx, holdfast.HoldRequest{Holder: fmt.Sprintf("b%d", buyer), Lines: []holdfast.Line{{Pool: "hot", Quantity: 1}}}, "")
				if err != nil {
					return 0, err
				}
				return 1, nil
			}, err
		}}
		for _, mode := range benchModes {
			r, err := shapeMode(ctx, f, shape, mode, 256, d, nil)
			if err != nil {
				return fmt.Errorf("%s, %s: %w", shape.name, mode, err)
			}
			emit(r)
		}
	}
	if all || want["viewers"] {
		// 64 buyers on a 20,000-seat map, then again with 500 viewers
		// re-reading the map.
		shape := benchShape{name: "seats 20k", setup: seatMap(400)}
		for _, viewers := range []int{0, 500} {
			var extra extraLoad
			if viewers > 0 {
				extra = mapViewers(viewers, "hall")
				shape.name = "seats 20k + 500 map viewers"
			}
			r, err := shapeMode(ctx, f, shape, benchModes[0], 64, d, extra)
			if err != nil {
				return fmt.Errorf("%s: %w", shape.name, err)
			}
			emit(r)
		}
	}
	if all || want["streams"] {
		shape := benchShapes[0]
		for _, viewers := range []int{0, 1000} {
			var extra extraLoad
			if viewers > 0 {
				extra = streamViewers(viewers)
				shape.name = "pool + 1,000 stream viewers"
			}
			r, err := shapeMode(ctx, f, shape, benchModes[0], 64, d, extra)
			if err != nil {
				return fmt.Errorf("%s: %w", shape.name, err)
			}
			emit(r)
		}
	}
	if all || want["webhooks"] {
		// The hot pool, then again with an endpoint that takes 5 s to
		// answer every event: the booking path must not notice. Twice
		// each, alternating: one run's noise on 2 cores is ±10%.
		for _, slow := range []bool{false, true, false, true} {
			shape := benchShapes[0]
			var extra extraLoad
			if slow {
				extra = slowWebhook(5 * time.Second)
				shape.name = "pool + a webhook answering in 5 s"
			}
			r, err := shapeMode(ctx, f, shape, benchModes[0], 64, d, extra)
			if err != nil {
				return fmt.Errorf("%s: %w", shape.name, err)
			}
			emit(r)
		}
	}

	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "shape\tmode\tclients\tper second\t× pgbench\tp50\tp99\tmax\tsold out in\tfalse-busy\taudit\t")
	for _, r := range rows {
		ratio := "-"
		if r.Ratio > 0 {
			ratio = fmt.Sprintf("%.2f×", r.Ratio)
		}
		sell := "-"
		if r.SellOut > 0 {
			sell = r.SellOut.Round(time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t\n", r.Scenario, r.Mode, r.Clients, r.PerSec, ratio,
			durMs(r.P50), durMs(r.P99), durMs(r.Max), sell, r.Busy, r.Oversold)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if f.Chart != "" {
		if err := benchChart(f.Chart, rows); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "chart written to %s\n", f.Chart)
	}
	for _, r := range rows {
		if r.Note != "" {
			fmt.Fprintf(e.stdout, "%s, %s, %d clients: %s\n", r.Scenario, r.Mode, r.Clients, r.Note)
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

const pgbenchScript = `BEGIN;
UPDATE hot SET available = available - 1 WHERE id = 1 AND available >= 1 RETURNING available;
INSERT INTO bookings (item) VALUES (1);
COMMIT;
`

// pgbenchCeiling measures PostgreSQL's one-transaction-per-booking rate
// for a shape with pgbench, at the same client count: the ceiling any
// design that commits each booking alone runs into.
func pgbenchCeiling(ctx context.Context, db string, shape benchShape, clients int, d time.Duration) (benchRow, error) {
	row := benchRow{Mode: "pgbench, 1 booking per transaction", Scenario: shape.name, Clients: clients}
	schema := "holdfast_bench_" + randomSuffix()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		return row, err
	}
	defer conn.Close(ctx)
	// pgbench needs a connection per client, and aborts the run if one is
	// refused. The server may allow fewer than asked, and other programs
	// (other test packages, in make test) may hold many of them: ask for
	// at most what is free now, less a margin for holdfast's own pools.
	var maxConns, inUse int
	if err := conn.QueryRow(ctx, `SELECT current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int,
		(SELECT count(*) FROM pg_stat_activity)::int`).Scan(&maxConns, &inUse); err != nil {
		return row, err
	}
	if limit := max(1, min(maxConns-20, maxConns-inUse-40)); clients > limit {
		row.Note = fmt.Sprintf("pgbench ran %d clients: %d of max_connections %d were free", limit, maxConns-inUse, maxConns)
		clients = limit
	}
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		return row, err
	}
	defer conn.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
	if _, err := conn.Exec(ctx, "SET search_path TO "+schema); err != nil {
		return row, err
	}
	for _, sql := range shape.pgSetup {
		if _, err := conn.Exec(ctx, sql); err != nil {
			return row, fmt.Errorf("%s: %w", sql, err)
		}
	}
	dir, err := os.MkdirTemp("", "holdfast-pgbench-")
	if err != nil {
		return row, err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "booking.sql")
	if err := os.WriteFile(script, []byte(shape.pgScript), 0o644); err != nil {
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
	if row.PerSec == 0 && !strings.Contains(string(out), "processed: 0") {
		return row, fmt.Errorf("no tps in pgbench's output: %s", out)
	}
	if shape.pgSold != "" {
		var sold int64
		if err := conn.QueryRow(ctx, shape.pgSold).Scan(&sold); err != nil {
			return row, err
		}
		row.PerSec = float64(sold) / d.Seconds()
		row.Note = strings.TrimPrefix(row.Note+"; units sold per second, counted in the table after the run", "; ")
	}
	return row, nil
}

// benchChart writes bookings/s and p99 against client count, per mode.
func benchChart(path string, rows []benchRow) error {
	perSec, p99 := map[string]*lab.Series{}, map[string]*lab.Series{}
	var modes []string
	for _, r := range rows {
		if r.Scenario != "pool" {
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
