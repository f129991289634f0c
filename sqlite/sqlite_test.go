package sqlite_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/holdfasttest"
	"github.com/holdfast/holdfast/internal/testrig/sqlitetest"
	"github.com/holdfast/holdfast/sqlite"
)

// open opens a store on path, closed when t ends; a new file starts as a
// copy of the migrated template.
func open(t testing.TB, path string, opts ...sqlite.Options) holdfast.Store {
	t.Helper()
	var o sqlite.Options
	if len(opts) > 0 {
		o = opts[0]
	}
	s, err := sqlite.Open(context.Background(), sqlitetest.Migrated(t, path), o)
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// The whole suite on the default strategy, batched and one by one; every
// other strategy (unsafe exists to fail it) on the tests that reach its
// claim (holdfasttest.Harness.ClaimsOnly).
func TestConformance(t *testing.T) {
	variants := []sqlite.Options{{Strategy: holdfast.Atomic, NoCoalesce: true}}
	for _, st := range sqlite.Strategies {
		if st != holdfast.Unsafe {
			variants = append(variants, sqlite.Options{Strategy: st})
		}
	}
	for _, o := range variants {
		t.Run(holdfasttest.Variant(o.Strategy, o.NoCoalesce), func(t *testing.T) {
			holdfasttest.Run(t, holdfasttest.Harness{
				Open: func(t testing.TB) (holdfast.Store, func(testing.TB) holdfast.Store) {
					path := filepath.Join(t.TempDir(), "holdfast.db")
					return open(t, path, o), func(t testing.TB) holdfast.Store { return open(t, path, o) }
				},
				ClaimsOnly: o.Strategy != holdfast.Atomic, Capabilities: holdfast.AllCapabilities,
			})
		})
	}
}

func TestUnsupportedStrategy(t *testing.T) {
	_, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "x.db"), sqlite.Options{Strategy: holdfast.Advisory})
	if holdfast.ErrorCode(err) != holdfast.CodeUnsupported {
		t.Fatalf("Open with strategy advisory: got %v, want unsupported", err)
	}
}

func BenchmarkHold(b *testing.B) {
	holdfasttest.Bench(b, holdfasttest.Harness{
		Open: func(t testing.TB) (holdfast.Store, func(testing.TB) holdfast.Store) {
			path := filepath.Join(t.TempDir(), "holdfast.db")
			return open(t, path), func(t testing.TB) holdfast.Store { return open(t, path) }
		},
	})
}

// Servers started at the same moment on one new file migrate it once: none
// fails with "table pools already exists", and the schema is whole. Each
// server is a process of its own (this test binary, run again), as two
// holdfast serve would be.
func TestConcurrentOpenMigratesOnce(t *testing.T) {
	if path := os.Getenv("HOLDFAST_TEST_OPEN"); path != "" {
		s, err := sqlite.Open(context.Background(), path, sqlite.Options{})
		if err == nil {
			err = s.Ready(context.Background())
			s.Close()
		}
		if err != nil {
			fmt.Println("open:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	path := filepath.Join(t.TempDir(), "new.db")
	const servers = 6
	cmds := make([]*exec.Cmd, servers)
	outs := make([]bytes.Buffer, servers)
	for i := range cmds {
		cmds[i] = exec.Command(os.Args[0], "-test.run=^TestConcurrentOpenMigratesOnce$")
		cmds[i].Env = append(os.Environ(), "HOLDFAST_TEST_OPEN="+path)
		cmds[i].Stdout, cmds[i].Stderr = &outs[i], &outs[i]
	}
	for _, c := range cmds {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Errorf("server %d: %v\n%s", i, err, outs[i].String())
		}
	}
	s := open(t, path)
	holdfasttest.MustCreatePool(t, s, "p", 1, 0)
	if n := holdfasttest.MustCount(t, s, `SELECT COUNT(*) - COUNT(DISTINCT version_id) FROM goose_db_version`); n != 0 {
		t.Fatalf("%d migrations applied twice", n)
	}
}

// holdfast audit opens a database as it is: a missing file is an error
// and is not created.
func TestOpenExistingOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing.db")
	if s, err := sqlite.Open(context.Background(), path, sqlite.Options{Existing: true}); err == nil {
		s.Close()
		t.Fatal("Existing opened a file that does not exist")
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("Existing created the file: %v", err)
	}
}

// Close waits for the engine's background work: claims queued for a
// batch when Close is called get their answers, and every answer matches
// the database — a granted hold is there, a refused one is not.
func TestCloseWaitsForBatches(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.db")
	s, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	holdfasttest.MustCreatePool(t, s, "p", 1000, 0)
	const buyers = 64
	granted := make(chan string, buyers)
	started := make(chan struct{}, buyers)
	var wg sync.WaitGroup
	for i := range buyers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			started <- struct{}{}
			h, err := s.Hold(context.Background(), holdfast.HoldRequest{Holder: fmt.Sprint("b", i), Lines: []holdfast.Line{{Pool: "p", Quantity: 1}}})
			if err == nil {
				granted <- h.ID
			}
		}()
	}
	for range buyers / 2 {
		<-started
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(granted)
	s2 := open(t, path)
	n := int64(0)
	for id := range granted {
		n++
		if _, err := s2.GetHold(context.Background(), id); err != nil {
			t.Errorf("hold %s was granted but is not in the database: %v", id, err)
		}
	}
	if got := holdfasttest.MustCount(t, s2, `SELECT COUNT(*) FROM holds`); got != n {
		t.Fatalf("%d holds in the database, %d granted", got, n)
	}
	holdfasttest.MustAuditClean(t, s2)
}

// Client input cannot grow the store's memory: holds naming thousands of
// pools that do not exist leave nothing behind, and a sold-out pool's mark
// is the only per-pool state, for real pools only.
func TestUnknownPoolsLeaveNoState(t *testing.T) {
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "x.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < 5000; i += 8 {
				_, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "x", Lines: []holdfast.Line{{Pool: fmt.Sprint("nope-", i), Quantity: 1}}})
				if holdfast.ErrorCode(err) != holdfast.CodeNotFound {
					t.Errorf("hold on an unknown pool: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := s.Stats().PoolMarks; n != 0 {
		t.Fatalf("5,000 unknown pools left %d pools' state in memory", n)
	}
	holdfasttest.MustCreatePool(t, s, "p", 0, 0)
	if _, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "x", Lines: []holdfast.Line{{Pool: "p", Quantity: 1}}}); holdfast.ErrorCode(err) != holdfast.CodeSoldOut {
		t.Fatalf("hold on an empty pool: %v", err)
	}
	if n := s.Stats().PoolMarks; n != 1 {
		t.Fatalf("a sold-out pool: %d marks, want 1", n)
	}
}

// A database file (and its -wal and -shm) that others can read is made
// private at start, and the log says so; a private one is left alone.
func TestLooseDatabaseFileIsTightened(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "holdfast.db")
	s, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	holdfasttest.MustCreatePool(t, s, "p", 1, 0)
	s.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if _, err := os.Stat(p); os.IsNotExist(err) {
			continue // checkpointed and gone at close
		}
		if err := os.Chmod(p, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var logs bytes.Buffer
	s, err = sqlite.Open(ctx, path, sqlite.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v after start, want 0600", p, fi.Mode().Perm())
		}
	}
	if !bytes.Contains(logs.Bytes(), []byte("made private")) {
		t.Errorf("the log does not say the file was made private: %s", logs.String())
	}
	if _, err := s.Pool(ctx, "p"); err != nil {
		t.Fatalf("the data after: %v", err)
	}
}
