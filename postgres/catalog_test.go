package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/internal/testrig/pgtest"
	"github.com/holdfast/holdfast/shard"
)

// threeShards starts three PostgreSQL servers of the test's own, one
// shard each (the first the catalog), and a pool on each: "a" on the
// catalog, "b" and "c" on the others.
func threeShards(t *testing.T) ([]*pgtest.Cluster, *shard.Set, *shardDB) {
	t.Helper()
	ctx := context.Background()
	var cls []*pgtest.Cluster
	var urls []string
	for range 3 {
		cl := pgtest.StartCluster(t, "max_prepared_transactions=20")
		cl.CreateDatabase(ctx, "hf")
		cls = append(cls, cl)
		urls = append(urls, cl.URL("hf"))
	}
	s, db, err := openShards(ctx, urls, Options{MaxConns: 8, ResolveEvery: -1}) // the test resolves
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for i, id := range []string{"a", "b", "c"} {
		if _, err := s.CreatePool(ctx, holdfast.Pool{ID: id, Capacity: 10}); err != nil {
			t.Fatal(err)
		}
		if p, err := db.Locate(ctx, []string{"pool"}, []string{id}); err != nil || len(p) != 1 || p[0].Shard != i {
			t.Fatalf("pool %s placed %+v (%v), want on shard %d: partitions go to the least loaded shard", id, p, err, i)
		}
	}
	return cls, s, db
}

// eventually retries f until it succeeds: the first calls after a
// server's restart meet the connections it closed.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	var err error
	for range 50 {
		if err = f(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond) // a restarted server's pool reconnecting, not a synchronisation
	}
	t.Fatalf("%s: %v", what, err)
}

// held reads b's and c's held counts and the prepared parts left on
// every shard, once every shard answers.
func heldAndPrepared(t *testing.T, s *shard.Set, db *shardDB) (b, c int64, prepared int) {
	t.Helper()
	ctx := context.Background()
	eventually(t, "read the shards", func() error {
		pb, err := s.Pool(ctx, "b")
		if err != nil {
			return err
		}
		pc, err := s.Pool(ctx, "c")
		if err != nil {
			return err
		}
		prepared = 0
		for _, st := range db.stores {
			gids, err := preparedParts(ctx, st.pool, 0)
			if err != nil {
				return err
			}
			prepared += len(gids)
		}
		b, c = pb.Held, pc.Held
		return nil
	})
	return b, c, prepared
}

func resolveAll(t *testing.T, s *shard.Set) {
	t.Helper()
	eventually(t, "resolve", func() error { _, _, err := s.ResolvePrepared(context.Background(), 0); return err })
}

func auditClean(t *testing.T, s *shard.Set) {
	t.Helper()
	var rep holdfast.AuditReport
	eventually(t, "audit", func() error {
		var err error
		rep, err = s.Audit(context.Background())
		return err
	})
	if !rep.OK() || rep.Oversold != 0 || rep.DoubleBooked != 0 {
		t.Fatalf("audit: %+v", rep)
	}
}

var festivalPass = holdfast.HoldRequest{Holder: "fan", Lines: []holdfast.Line{{Pool: "b", Quantity: 2}, {Pool: "c", Quantity: 3}}}

// A hold across shards whose coordinating server dies between the
// prepares and the decision, or between the decision and the commits:
// nothing is half applied, and the resolver leaves no prepared part.
func TestShardsCoordinatorDies(t *testing.T) {
	_, s, db := threeShards(t)
	ctx := context.Background()
	died := errors.New("the coordinating server died")
	for _, tc := range []struct {
		step       string
		wantB      int64
		wantC      int64
		wantStatus holdfast.Status
	}{
		{"prepared", 0, 0, ""},
		{"decided", 2, 3, holdfast.StatusHeld},
	} {
		before, _, _ := heldAndPrepared(t, s, db)
		db.tp.hook = func(step string) error {
			if step == tc.step {
				return died
			}
			return nil
		}
		_, err := s.Hold(ctx, festivalPass)
		db.tp.hook = nil
		if !errors.Is(err, died) {
			t.Fatalf("%s: Hold = %v", tc.step, err)
		}
		if _, _, p := heldAndPrepared(t, s, db); p != 2 {
			t.Fatalf("%s: %d parts prepared, want 2 (one per shard)", tc.step, p)
		}
		resolveAll(t, s)
		b, c, p := heldAndPrepared(t, s, db)
		if b-before != tc.wantB || p != 0 {
			t.Fatalf("%s: after resolving, b held %d more, c %d, %d prepared; want %d, %d, 0", tc.step, b-before, c, p, tc.wantB, tc.wantC)
		}
		if tc.wantStatus != "" {
			hs, err := s.Holds(ctx, "fan", "")
			if err != nil || len(hs) != 1 || hs[0].Status != tc.wantStatus || len(hs[0].Lines) != 2 || hs[0].Lines[1].Quantity != 3 {
				t.Fatalf("%s: the decided hold reads %+v, %v", tc.step, hs, err)
			}
			// Whole: it confirms on both shards at once.
			if h, err := s.Confirm(ctx, hs[0].ID, "pay"); err != nil || h.Status != holdfast.StatusConfirmed {
				t.Fatalf("%s: confirm the resolved hold: %+v, %v", tc.step, h, err)
			}
		}
		auditClean(t, s)
	}
}

// A shard crashes (pg_ctl stop -m immediate) at each step of a hold
// across shards: before its part is prepared (the hold fails, and the
// other shard's prepared part is rolled back), after the decision (its
// prepared part survives the restart and the resolver commits it), and
// the catalog between the prepares and the decision (nothing decided:
// rolled back).
func TestShardsShardCrashes(t *testing.T) {
	cls, s, db := threeShards(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		crash   int    // which server
		step    string // when: "before" the hold, or a two-phase step
		wantErr bool
		want    int64 // more held on c afterwards
	}{
		{"shard before its part", 2, "before", true, 0},
		{"shard after the decision", 2, "decided", false, 3},
		{"catalog before the decision", 0, "prepared", true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, before, _ := heldAndPrepared(t, s, db)
			crash := func() { cls[tc.crash].Crash() }
			if tc.step == "before" {
				crash()
			} else {
				db.tp.hook = func(step string) error {
					if step == tc.step {
						crash()
					}
					return nil
				}
			}
			_, err := s.Hold(ctx, festivalPass)
			db.tp.hook = nil
			if (err != nil) != tc.wantErr {
				t.Fatalf("Hold = %v, want error %v", err, tc.wantErr)
			}
			cls[tc.crash].Start()
			resolveAll(t, s)
			_, c, p := heldAndPrepared(t, s, db)
			if c-before != tc.want || p != 0 {
				t.Fatalf("c held %d more, %d prepared; want %d, 0", c-before, p, tc.want)
			}
			auditClean(t, s)
		})
	}
	// Every shard still takes holds, within and across shards.
	for _, r := range []holdfast.HoldRequest{festivalPass, {Holder: "x", Lines: []holdfast.Line{{Pool: "a", Quantity: 1}}}} {
		eventually(t, fmt.Sprintf("hold %v after the crashes", r.Lines), func() error { _, err := s.Hold(ctx, r); return err })
	}
	auditClean(t, s)
}

// The audit finds a hold across shards that is not whole: a part gone
// from one shard, or parts in different states.
func TestShardsAuditFindsHalfAppliedHold(t *testing.T) {
	_, s, db := threeShards(t)
	ctx := context.Background()
	h, err := s.Hold(ctx, festivalPass)
	if err != nil {
		t.Fatal(err)
	}
	auditClean(t, s)
	// Made long ago: the audit leaves changes of the last minute alone.
	for _, st := range db.stores[1:] {
		if _, err := st.pool.Exec(ctx, `UPDATE holds SET updated_at = updated_at - 3600000 WHERE id = $1`, h.ID); err != nil {
			t.Fatal(err)
		}
	}
	auditClean(t, s)
	if _, err := db.stores[2].pool.Exec(ctx, `UPDATE holds SET status = 'confirmed' WHERE id = $1`, h.ID); err != nil {
		t.Fatal(err)
	}
	rep, err := s.Audit(ctx)
	if err != nil || rep.OK() || !strings.Contains(strings.Join(rep.Differences, "\n"), "held on one shard and confirmed on shard 2") {
		t.Fatalf("the audit missed parts in two states: %+v, %v", rep, err)
	}
}
