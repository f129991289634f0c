package shard_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/holdfasttest"
	"github.com/holdfast/holdfast/postgres"
	"github.com/holdfast/holdfast/shard"
)

// A partition moves between shards while two servers sell it: one makes
// the moves, the other never reads the map's version (it learns of a move
// only from a shard that no longer has the rows). Holds of a pool, of any
// seat, and across partitions are made, confirmed and released throughout.
// No request is refused for a row its shard lost, and afterwards every
// hold answered is found, from both servers, in the state its last answer
// gave; the pools and seats count exactly the holds; the audit (every
// shard, and the holds across shards) is clean.
func TestShardsMove(t *testing.T) {
	three := shardCluster(t)
	urls := three(t)
	ctx := context.Background()
	a := openShards(t, urls)
	stale, err := postgres.OpenShards(ctx, urls, postgres.Options{MaxConns: 8, ResolveEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stale.Close() })

	// fest is the first partition (shard 0), other the second (shard 1).
	if _, err := a.CreatePool(ctx, holdfast.Pool{ID: "fest-ga", Partition: "fest", Capacity: 400}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CreatePool(ctx, holdfast.Pool{ID: "other", Capacity: 400}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CreateGroup(ctx, holdfast.Group{ID: "fest-seats", Partition: "fest"}); err != nil {
		t.Fatal(err)
	}
	seats := make([]string, 150)
	for i := range seats {
		seats[i] = fmt.Sprintf("seat-%03d", i)
	}
	if err := a.AddUnits(ctx, "fest-seats", seats); err != nil {
		t.Fatal(err)
	}

	// The storm: each worker alternates servers and remembers, for each
	// hold it was answered, the state of its last answer.
	type made struct {
		pool, other, seats int64 // what it holds of each
		status             holdfast.Status
	}
	var mu sync.Mutex
	holds := map[string]*made{}
	refusals := map[string]int{}
	stormCtx, stop := context.WithCancel(ctx)
	started := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			servers := []holdfast.Store{a, stale}
			for n := 0; stormCtx.Err() == nil; n++ {
				st := servers[n%2]
				var r holdfast.HoldRequest
				m := &made{status: holdfast.StatusHeld}
				switch rng.IntN(3) {
				case 0:
					r.Lines, m.pool = []holdfast.Line{{Pool: "fest-ga", Quantity: 1}}, 1
				case 1:
					r.Lines, m.seats = []holdfast.Line{{Group: "fest-seats", Any: 1}}, 1
				default: // a festival pass: both partitions
					r.Lines, m.pool, m.other = []holdfast.Line{{Pool: "fest-ga", Quantity: 1}, {Pool: "other", Quantity: 1}}, 1, 1
				}
				r.Holder = fmt.Sprintf("w%d", w)
				h, err := st.Hold(ctx, r)
				if err != nil {
					if holdfast.ErrorCode(err) == holdfast.CodeNotFound {
						t.Logf("hold %v on server %d: %v", r.Lines, n%2, err)
					}
					mu.Lock()
					refusals[string(holdfast.ErrorCode(err))]++
					mu.Unlock()
					continue
				}
				mu.Lock()
				holds[h.ID] = m
				if len(holds) == 40 {
					once.Do(func() { close(started) })
				}
				mu.Unlock()
				var next holdfast.Status
				switch rng.IntN(3) {
				case 0:
					next = holdfast.StatusHeld
				case 1:
					_, err = servers[(n+1)%2].Confirm(ctx, h.ID, "")
					next = holdfast.StatusConfirmed
				default:
					_, err = servers[(n+1)%2].Release(ctx, h.ID)
					next = holdfast.StatusReleased
				}
				if holdfast.ErrorCode(err) == holdfast.CodeNotFound {
					t.Logf("%s %s on server %d: %v", next, h.ID, (n+1)%2, err)
				}
				mu.Lock()
				if err != nil {
					refusals[string(holdfast.ErrorCode(err))]++
				} else {
					m.status = next
				}
				mu.Unlock()
			}
		}()
	}
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		stop()
		wg.Wait()
		t.Fatalf("the storm made no 40 holds in 30 s: %v", refusals)
	}
	move := func(to int) shard.MoveReport {
		t.Helper()
		rep, err := a.MovePartition(ctx, "fest", to)
		if err != nil {
			t.Fatalf("moving fest to shard %d: %v", to, err)
		}
		t.Logf("moved: %+v", rep)
		return rep
	}
	if rep := move(2); rep.From != 0 || rep.Pools != 1 || rep.Groups != 1 || rep.Units != len(seats) {
		t.Fatalf("the first move: %+v", rep)
	}
	move(1) // onto other's shard: the passes' two parts become one hold
	// Back to shard 0 would split the open passes: refused.
	if _, err := a.MovePartition(ctx, "fest", 0); holdfast.ErrorCode(err) != holdfast.CodeConflict {
		t.Fatalf("moving fest off the shard it shares with open passes: %v, want conflict", err)
	}
	stop()
	wg.Wait()
	if refusals[string(holdfast.CodeNotFound)] > 0 || refusals[string(holdfast.CodeInternal)] > 0 {
		t.Fatalf("requests refused during the moves: %v", refusals)
	}
	t.Logf("%d holds, refusals %v", len(holds), refusals)

	// check finds every hold, from each server, in the state of its last
	// answer, and the pools and seats counting exactly those.
	check := func(servers ...holdfast.Store) {
		t.Helper()
		var want struct{ held, confirmed, otherHeld, otherConfirmed, seatsTaken int64 }
		for id, m := range holds {
			for _, st := range servers {
				h, err := st.GetHold(ctx, id)
				if err != nil || h.Status != m.status || len(h.Lines) != map[bool]int{true: 2, false: 1}[m.other > 0] {
					t.Fatalf("hold %s: %+v, %v; want %s", id, h, err, m.status)
				}
			}
			switch m.status {
			case holdfast.StatusHeld:
				want.held += m.pool
				want.otherHeld += m.other
				want.seatsTaken += m.seats
			case holdfast.StatusConfirmed:
				want.confirmed += m.pool
				want.otherConfirmed += m.other
				want.seatsTaken += m.seats
			}
		}
		for _, st := range servers {
			p, err := st.Pool(ctx, "fest-ga")
			if err != nil || p.Held != want.held || p.Confirmed != want.confirmed {
				t.Fatalf("fest-ga: %+v, %v; want held %d, confirmed %d", p, err, want.held, want.confirmed)
			}
			o, err := st.Pool(ctx, "other")
			if err != nil || o.Held != want.otherHeld || o.Confirmed != want.otherConfirmed {
				t.Fatalf("other: %+v, %v; want held %d, confirmed %d", o, err, want.otherHeld, want.otherConfirmed)
			}
			g, err := st.Group(ctx, "fest-seats")
			if err != nil || g.Free != int64(len(seats))-want.seatsTaken {
				t.Fatalf("fest-seats: %+v, %v; want %d free", g, err, int64(len(seats))-want.seatsTaken)
			}
		}
	}
	check(a, stale)

	// The passes still open end; then fest moves back, splitting the
	// ended ones.
	for id, m := range holds {
		if m.other > 0 && m.status != holdfast.StatusReleased {
			end, to := a.Release, holdfast.StatusReleased
			if m.status == holdfast.StatusConfirmed {
				end, to = a.Cancel, holdfast.StatusCancelled
			}
			if _, err := end(ctx, id); err != nil {
				t.Fatalf("ending pass %s (%s): %v", id, m.status, err)
			}
			m.status = to
		}
	}
	move(0)
	// The stale server reads a split hold (ended, with lines in both
	// partitions) whole only once it reads the map's new version, which
	// it never does; a server started now does.
	check(a, openShards(t, urls))

	for _, table := range []string{"pools", "groups", "units"} {
		n := holdfasttest.MustCount(t, a, `SELECT count(*) FROM `+table+` WHERE id LIKE 'fest%' OR id LIKE 'seat-%'`)
		want := map[string]int64{"pools": 1, "groups": 1, "units": int64(len(seats))}[table]
		if n != want {
			t.Fatalf("%s of fest over every shard: %d; want %d (each on one shard)", table, n, want)
		}
	}
	rep, err := a.Audit(ctx)
	if err != nil || len(rep.Differences) > 0 || rep.Oversold > 0 || rep.DoubleBooked > 0 {
		t.Fatalf("audit: %+v, %v", rep, err)
	}
}

// A move is refused, changing nothing, for a partition that is not
// there, a shard that is not there, and a partition with a waiting room.
func TestShardsMoveRefusals(t *testing.T) {
	three := shardCluster(t)
	s := openShards(t, three(t))
	ctx := context.Background()
	if _, err := s.CreatePool(ctx, holdfast.Pool{ID: "p", Capacity: 5}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreatePool(ctx, holdfast.Pool{ID: "q", Capacity: 5}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateRoom(ctx, holdfast.Room{ID: "room", Pools: []string{"q"}, AdmitPerSecond: 1, AdmitTTLSeconds: 60, MaxInside: 1, OpensAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		partition string
		to        int
		want      holdfast.Code
	}{
		{"nope", 1, holdfast.CodeNotFound},
		{"p", 3, holdfast.CodeInvalid},
		{"p", -1, holdfast.CodeInvalid},
		{"bad id!", 1, holdfast.CodeInvalid},
		{"q", 2, holdfast.CodeUnsupported},
	} {
		if _, err := s.MovePartition(ctx, c.partition, c.to); holdfast.ErrorCode(err) != c.want {
			t.Errorf("move %q to %d: %v, want %s", c.partition, c.to, err, c.want)
		}
	}
	if p, err := s.Pool(ctx, "p"); err != nil || p.Capacity != 5 {
		t.Fatalf("p after refused moves: %+v, %v", p, err)
	}
	// Moving where it is changes nothing.
	if rep, err := s.MovePartition(ctx, "p", 0); err != nil || rep.From != 0 || rep.Pools != 0 {
		t.Fatalf("move p where it is: %+v, %v", rep, err)
	}
}

// A change made under an Idempotency-Key before its partition moved is
// found by a retry with the key after: replayed, not made again on the
// new shard.
func TestShardsMoveKeys(t *testing.T) {
	three := shardCluster(t)
	s := openShards(t, three(t))
	ctx := context.Background()
	if _, err := s.CreatePool(ctx, holdfast.Pool{ID: "p", Capacity: 5}); err != nil {
		t.Fatal(err)
	}
	render := func(result any) holdfast.StoredResponse {
		return holdfast.StoredResponse{Status: 201, Body: []byte(`{"id":"` + result.(holdfast.Hold).ID + `"}`)}
	}
	r := holdfast.HoldRequest{Holder: "x", Lines: []holdfast.Line{{Pool: "p", Quantity: 2}}}
	first := s.Keyed(holdfast.Idempotency{Scope: "c", Key: "k", Token: "t1", Deferred: true, Fingerprint: "fp", Render: render})
	h, err := first.Hold(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := s.MovePartition(ctx, "p", 2)
	if err != nil || rep.Keys != 1 || rep.Holds != 1 {
		t.Fatalf("move: %+v, %v; want the hold and its key moved", rep, err)
	}
	retry := s.Keyed(holdfast.Idempotency{Scope: "c", Key: "k", Token: "t2", Deferred: true, Fingerprint: "fp", Render: render})
	if _, err := retry.Hold(ctx, r); holdfast.ErrorCode(err) != holdfast.CodeIdempotencyKeyUsed {
		t.Fatalf("a retry after the move: %v, want the key found used (then the answer replayed)", err)
	}
	_, replay, err := s.BeginIdempotent(ctx, "c", "k", "fp", time.Minute)
	if err != nil || replay == nil || replay.Status != 201 || string(replay.Body) != `{"id":"`+h.ID+`"}` {
		t.Fatalf("the replay: %+v, %v", replay, err)
	}
	if p, err := s.Pool(ctx, "p"); err != nil || p.Held != 2 {
		t.Fatalf("p after the retry: %+v, %v; want held 2 (one hold)", p, err)
	}
	if got, err := s.GetHold(ctx, h.ID); err != nil || got.Status != holdfast.StatusHeld {
		t.Fatalf("the hold after the move: %+v, %v", got, err)
	}
}

// Where a moved hold lives is forgotten once it is purged from every
// shard, and kept while it is not.
func TestShardsMovePurge(t *testing.T) {
	three := shardCluster(t)
	s := openShards(t, three(t))
	ctx := context.Background()
	if _, err := s.CreatePool(ctx, holdfast.Pool{ID: "p", Capacity: 5}); err != nil {
		t.Fatal(err)
	}
	ended, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "x", Lines: []holdfast.Line{{Pool: "p", Quantity: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	open, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "y", Lines: []holdfast.Line{{Pool: "p", Quantity: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Release(ctx, ended.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.MovePartition(ctx, "p", 1); err != nil {
		t.Fatal(err)
	}
	homes := func() int64 {
		return holdfasttest.MustCount(t, s.Shard(0), `SELECT count(*) FROM shard_hold_homes`)
	}
	if n := homes(); n != 2 {
		t.Fatalf("homes after the move: %d, want 2", n)
	}
	if _, err := s.Purge(ctx, holdfast.Retention{Events: time.Hour, Holds: time.Nanosecond}); err != nil {
		t.Fatal(err)
	}
	if n := homes(); n != 1 {
		t.Fatalf("homes after the released hold was purged: %d, want 1 (the open one's)", n)
	}
	if h, err := s.GetHold(ctx, open.ID); err != nil || h.Status != holdfast.StatusHeld {
		t.Fatalf("the open hold after the purge: %+v, %v", h, err)
	}
}
