package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/lab"
	"github.com/holdfast/holdfast/internal/testrig/pgtest"
	"github.com/holdfast/holdfast/internal/testrig/redistest"
)

func labJSON(t *testing.T, args ...string) []lab.Result {
	t.Helper()
	code, out, errOut := runCmd(t, append([]string{"lab", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("lab %v: exit %d\n%s", args, code, errOut)
	}
	var rep struct{ Results []lab.Result }
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("lab --json: %v\n%s", err, out)
	}
	return rep.Results
}

// wantOnlyUnsafeOversells proves the auditor can fail: unsafe's oversell
// is detected, and every other strategy at the same settings is clean.
func wantOnlyUnsafeOversells(t *testing.T, results []lab.Result, strategies int) {
	t.Helper()
	if len(results) != strategies {
		t.Fatalf("%d results, want %d", len(results), strategies)
	}
	for _, r := range results {
		switch {
		case r.Target == "unsafe" && r.Oversold == 0:
			t.Errorf("unsafe: the audit found no oversell (%d granted of %d)", r.Granted, r.Capacity)
		case r.Target != "unsafe" && (!r.Clean() || r.Granted != r.Capacity || r.ErrorCount() != 0 || r.FalseBusy != 0):
			t.Errorf("%s: %+v", r.Target, r)
		}
	}
}

// The classic demo, as `holdfast lab` runs it with no flags.
func TestLabDefault(t *testing.T) {
	code, out, errOut := runCmd(t, "lab")
	if code != 0 || !strings.Contains(out, "OVERSOLD") || strings.Count(out, "clean") != 3 {
		t.Fatalf("lab: exit %d\n%s%s", code, out, errOut)
	}
	wantOnlyUnsafeOversells(t, labJSON(t, "--think", "20ms"), 4)
}

func TestLabInstancesAndFiles(t *testing.T) {
	dir := t.TempDir()
	chart, report := filepath.Join(dir, "race.svg"), filepath.Join(dir, "race.json")
	results := labJSON(t, "--instances", "3", "--think", "20ms", "--chart", chart, "--report", report)
	wantOnlyUnsafeOversells(t, results, 4)
	if b, err := os.ReadFile(chart); err != nil || !strings.Contains(string(b), "<svg") {
		t.Fatalf("chart: %v", err)
	}
	if b, err := os.ReadFile(report); err != nil || !json.Valid(b) {
		t.Fatalf("report: %v", err)
	}
}

func TestLabPostgresEveryStrategy(t *testing.T) {
	pg := pgtest.New()
	defer pg.Close()
	url := pg.Schema(t) // skips (or fails under CI) without PostgreSQL
	redistest.Client(t)
	wantOnlyUnsafeOversells(t, labJSON(t, "--db", url, "--redis", redistest.URL(), "--think", "20ms"), 7)
}

func TestLabSeatsAndRiders(t *testing.T) {
	for _, r := range labJSON(t, "--scenario", "seats", "--capacity", "60", "--clients", "24", "--strategy", "atomic,pessimistic,optimistic") {
		if !r.Clean() || r.Granted == 0 || r.ErrorCount() != 0 {
			t.Errorf("seats, %s: %+v", r.Target, r)
		}
	}
	for _, r := range labJSON(t, "--scenario", "riders", "--capacity", "5", "--clients", "16", "--duration", "300ms", "--think", "0s") {
		if !r.Clean() || r.Granted == 0 {
			t.Errorf("riders, %s: %+v", r.Target, r)
		}
	}
}

func TestLabAgainstRunningServers(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "served.db")
	a := startServer(t, "--db", db)
	b := startServer(t, "--db", db)
	results := labJSON(t, "--target", a+","+b, "--audit-db", db, "--capacity", "30", "--clients", "40")
	if len(results) != 1 || !results[0].Clean() || results[0].Granted != 30 {
		t.Fatalf("%+v", results)
	}
}

// `lab --bench` runs end to end (briefly): pgbench's reference and every
// holdfast mode, nothing oversold. Speed is measured, never asserted.
// Three shapes: one of many pools with every mode beside pgbench, the
// sell-out, and the extra load of a slow webhook (each mode's run costs
// ~4 s here whatever --duration, most of it waiting for PostgreSQL's
// counts; the hot pool's own shape adds nothing the others do not run).
func TestLabBenchRuns(t *testing.T) {
	pg := pgtest.New()
	defer pg.Close()
	url := pg.Schema(t)
	chart := filepath.Join(t.TempDir(), "bench.svg")
	code, out, errOut := runCmd(t, "lab", "--bench", "--db", url, "--duration", "1s", "--chart", chart,
		"--bench-shapes", "events,sellout,webhooks", "--bench-clients", "16")
	if code != 0 {
		t.Fatalf("lab --bench: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"pgbench, 1 booking per transaction", "holdfast http postgres", "holdfast library postgres", "holdfast http sqlite", "events", "sell-out", "a webhook answering in 5 s", "deliveries queued in the database",
		// Counted from the transaction ids the server handed out: a count
		// that broke (0 over a run) leaves the note out.
		"database write transactions per request",
		// The HTTP rows on PostgreSQL ran `holdfast serve` as a process
		// of its own, its CPU counted apart.
		"server CPU per request (holdfast serve, a process of its own)"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// A batch fails whole only when the database does (it must stay 0),
	// not because the run ended.
	if strings.Contains(out, "failed whole") {
		t.Errorf("batches failed whole in the run:\n%s", out)
	}
	if b, err := os.ReadFile(chart); err != nil || !strings.Contains(string(b), "<polyline") {
		t.Errorf("bench chart: %v", err)
	}
}

// The queue scenario: a sale behind a waiting room, in order, sold out.
func TestLabQueue(t *testing.T) {
	code, out, errOut := runCmd(t, "lab", "--scenario", "queue", "--joiners", "300", "--capacity", "30", "--admit-per-second", "100", "--clients", "8")
	if code != 0 {
		t.Fatalf("lab --scenario queue: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"0 admitted after someone behind them, 0 places skipped", "sold: 30 of 30; oversold 0, double-booked 0, audit differences 0", "sold out: the room told everyone waiting"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "errors:") {
		t.Errorf("errors in the run:\n%s", out)
	}
}
