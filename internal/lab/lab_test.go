package lab

import (
	"bytes"
	"errors"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// An interrupted write leaves the old report whole and no temporary file.
func TestWriteFileAtomicInterrupted(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "report.json")
	if err := WriteFileAtomic(path, func(w io.Writer) error { _, err := io.WriteString(w, `{"old":true}`); return err }); err != nil {
		t.Fatal(err)
	}
	interrupted := errors.New("interrupted")
	err := WriteFileAtomic(path, func(w io.Writer) error {
		io.WriteString(w, `{"new":`) // half a report, then the run dies
		return interrupted
	})
	if !errors.Is(err, interrupted) {
		t.Fatalf("got %v", err)
	}
	b, _ := os.ReadFile(path)
	if string(b) != `{"old":true}` {
		t.Fatalf("report after an interrupted write: %q", b)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("left behind: %v", entries)
	}
	if err := WriteFileAtomic(filepath.Join(dir, "missing", "x.json"), func(io.Writer) error { return nil }); err == nil {
		t.Fatal("wrote into a missing directory")
	}
}

func TestCharts(t *testing.T) {
	results := []Result{
		{Target: "atomic", Scenario: ScenarioPool, Capacity: 10, Clients: 20, Granted: 10, RequestsPS: 900, P99: 3 * time.Millisecond},
		{Target: "unsafe", Scenario: ScenarioPool, Capacity: 10, Clients: 20, Granted: 19, Oversold: 9},
	}
	svg := string(SVG(results))
	if !strings.Contains(svg, "<svg") || !strings.Contains(svg, "OVERSOLD 9") || !strings.Contains(svg, "#d62728") {
		t.Fatalf("svg lacks the oversell:\n%s", svg)
	}
	var buf bytes.Buffer
	if err := PNG(&buf, results); err != nil {
		t.Fatal(err)
	}
	if _, err := png.Decode(&buf); err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if err := WriteChart(filepath.Join(t.TempDir(), "c.gif"), results); err == nil {
		t.Fatal("wrote a .gif chart")
	}
}

func TestSummarizeFalseBusy(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	res := Result{Errors: map[string]int64{}, Elapsed: time.Second}
	samples := []sample{
		{start: at(0), end: at(5)},                   // granted
		{start: at(1), end: at(2), code: "sold_out"}, // refused before the last unit's request began: false
		{start: at(6), end: at(9)},                   // granted: the last unit
		{start: at(7), end: at(10), code: "sold_out"},
	}
	summarize(&res, samples, t0, Config{Scenario: ScenarioPool, Capacity: 2, Quantity: 1})
	if res.FalseBusy != 1 || res.Granted != 2 || res.SoldOut != 2 || res.SellOut != 9*time.Millisecond {
		t.Fatalf("%+v", res)
	}
}
