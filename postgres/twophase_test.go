package postgres

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/holdfast/holdfast/internal/testrig/pgtest"
)

// twoPhaseCluster starts a cluster of the test's own (the shared test
// server may not allow prepared transactions) with a catalog database
// and two more, each with a counter.
func twoPhaseCluster(t *testing.T) (*pgtest.Cluster, *TwoPhase) {
	t.Helper()
	cl := pgtest.StartCluster(t, "max_prepared_transactions=20")
	ctx := context.Background()
	pools := map[string]*pgxpool.Pool{}
	for _, name := range []string{"catalog", "east", "west"} {
		cl.CreateDatabase(ctx, name)
		pool, err := pgxpool.New(ctx, cl.URL(name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		pools[name] = pool
	}
	if err := Migrate(ctx, pools["catalog"]); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"east", "west"} {
		if _, err := pools[name].Exec(ctx, `CREATE TABLE seats (id int PRIMARY KEY, taken int NOT NULL CHECK (taken <= 1))`); err != nil {
			t.Fatal(err)
		}
		if _, err := pools[name].Exec(ctx, `INSERT INTO seats VALUES (1, 0)`); err != nil {
			t.Fatal(err)
		}
	}
	return cl, NewTwoPhase(pools["catalog"], map[string]*pgxpool.Pool{"east": pools["east"], "west": pools["west"]})
}

func take(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `UPDATE seats SET taken = taken + 1 WHERE id = 1`)
	return err
}

func both() map[string]func(context.Context, pgx.Tx) error {
	return map[string]func(context.Context, pgx.Tx) error{"east": take, "west": take}
}

// taken reads the counter on each database and counts the prepared
// transactions left.
func taken(t *testing.T, c *TwoPhase) (east, west, prepared int) {
	t.Helper()
	ctx := context.Background()
	for name, n := range map[string]*int{"east": &east, "west": &west} {
		if err := c.parts[name].QueryRow(ctx, `SELECT taken FROM seats WHERE id = 1`).Scan(n); err != nil {
			t.Fatal(err)
		}
		var p int
		if err := c.parts[name].QueryRow(ctx, `SELECT COUNT(*) FROM pg_prepared_xacts WHERE database = current_database()`).Scan(&p); err != nil {
			t.Fatal(err)
		}
		prepared += p
	}
	return east, west, prepared
}

// A change over two databases commits on both, and one whose part fails
// (a constraint, on the second database) leaves both as they were.
func TestTwoPhaseAllOrNothing(t *testing.T) {
	_, c := twoPhaseCluster(t)
	ctx := context.Background()
	if err := c.Run(ctx, both()); err != nil {
		t.Fatal(err)
	}
	if e, w, p := taken(t, c); e != 1 || w != 1 || p != 0 {
		t.Fatalf("after a commit: east %d, west %d, %d prepared", e, w, p)
	}
	// The seat is taken on both: CHECK (taken <= 1) refuses the second
	// database's part after the first's is prepared.
	if _, err := c.parts["east"].Exec(ctx, `UPDATE seats SET taken = 0`); err != nil {
		t.Fatal(err)
	}
	if err := c.Run(ctx, both()); err == nil {
		t.Fatal("a change whose part failed was committed")
	}
	if e, w, p := taken(t, c); e != 0 || w != 1 || p != 0 {
		t.Fatalf("after a failed part: east %d (its prepared part must be rolled back), west %d, %d prepared", e, w, p)
	}
}

// The coordinator dies between the prepares and the decision: the
// resolver rolls both parts back, and a coordinator that wakes up late
// finds its change aborted. It dies after the decision: the resolver
// commits both.
func TestTwoPhaseCoordinatorDies(t *testing.T) {
	_, c := twoPhaseCluster(t)
	ctx := context.Background()
	died := errors.New("the coordinator died")
	c.hook = func(step string) error {
		if step == "prepared" {
			return died
		}
		return nil
	}
	if err := c.Run(ctx, both()); !errors.Is(err, died) {
		t.Fatalf("Run = %v", err)
	}
	if e, w, p := taken(t, c); e != 0 || w != 0 || p != 2 {
		t.Fatalf("between prepare and decision: east %d, west %d, %d prepared (want 0, 0, 2)", e, w, p)
	}
	// Both parts hold their row locks meanwhile: a plain write waits.
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err := c.parts["east"].Exec(short, `UPDATE seats SET taken = 0 WHERE id = 1`)
	cancel()
	if err == nil {
		t.Fatal("a row of a prepared part was not locked")
	}
	if n, m, err := c.Resolve(ctx, 0); err != nil || n != 0 || m != 2 {
		t.Fatalf("Resolve = %d committed, %d rolled back, %v; want 0, 2", n, m, err)
	}
	if e, w, p := taken(t, c); e != 0 || w != 0 || p != 0 {
		t.Fatalf("after resolving an undecided change: east %d, west %d, %d prepared", e, w, p)
	}

	c.hook = func(step string) error {
		if step == "decided" {
			return died
		}
		return nil
	}
	if err := c.Run(ctx, both()); !errors.Is(err, died) {
		t.Fatalf("Run = %v", err)
	}
	if n, m, err := c.Resolve(ctx, 0); err != nil || n != 2 || m != 0 {
		t.Fatalf("Resolve = %d committed, %d rolled back, %v; want 2, 0", n, m, err)
	}
	if e, w, p := taken(t, c); e != 1 || w != 1 || p != 0 {
		t.Fatalf("after resolving a decided change: east %d, west %d, %d prepared", e, w, p)
	}

	// A resolver that runs while the coordinator is between prepare and
	// decision decides first: the coordinator's change is rolled back.
	if _, err := c.parts["east"].Exec(ctx, `UPDATE seats SET taken = 0`); err != nil {
		t.Fatal(err)
	}
	if _, err := c.parts["west"].Exec(ctx, `UPDATE seats SET taken = 0`); err != nil {
		t.Fatal(err)
	}
	c.hook = func(step string) error {
		if step == "prepared" {
			if _, _, err := c.Resolve(ctx, 0); err != nil {
				return fmt.Errorf("resolve: %w", err)
			}
		}
		return nil
	}
	if err := c.Run(ctx, both()); !errors.Is(err, ErrTwoPhaseAborted) {
		t.Fatalf("Run racing a resolver = %v, want ErrTwoPhaseAborted", err)
	}
	if e, w, p := taken(t, c); e != 0 || w != 0 || p != 0 {
		t.Fatalf("after losing to the resolver: east %d, west %d, %d prepared", e, w, p)
	}
}

// A database crashes (pg_ctl stop -m immediate) with a part prepared: the
// prepared transaction survives the restart, and the resolver commits it
// as decided.
func TestTwoPhaseDatabaseCrash(t *testing.T) {
	cl, c := twoPhaseCluster(t)
	ctx := context.Background()
	c.hook = func(step string) error {
		if step == "decided" {
			cl.Crash()
			cl.Start()
		}
		return nil
	}
	if err := c.Run(ctx, both()); err != nil {
		t.Fatalf("Run = %v (decided: it must succeed)", err)
	}
	c.hook = nil
	// The commits went to a database that was restarting: the parts are
	// still prepared, or already committed by Run.
	// The resolver runs again and again on every server; its first calls
	// may meet connections the restart closed.
	var err error
	for range 10 {
		if _, _, err = c.Resolve(ctx, 0); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if e, w, p := taken(t, c); e != 1 || w != 1 || p != 0 {
		t.Fatalf("after the crash and the resolver: east %d, west %d, %d prepared", e, w, p)
	}
}
