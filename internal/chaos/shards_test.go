package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast"
	hfhttp "github.com/holdfast/holdfast/http"
)

// passRun is the festival passes sold beside the shard-crash storm: each
// a hold across two shards (two-phase commit), then confirmed or
// released, some confirmed ones cancelled.
type passRun struct {
	mu      sync.Mutex
	acked   map[string]string // hold id → the state last acknowledged
	refused int
	unknown int
	cross   bool // a pass's id named two shards
}

func (p *passRun) ack(id, status string) {
	p.mu.Lock()
	p.acked[id] = status
	p.mu.Unlock()
}

// startPasses creates two pools in two partitions (they land on two
// shards) and runs 8 buyers of passes until stopped.
func (h *harness) startPasses(ctx context.Context, drv *driver) (*passRun, func()) {
	c := hfhttp.NewClient(h.instances[0].url(), adminKey)
	for _, id := range []string{"pass-x", "pass-y"} {
		if _, err := c.CreatePool(ctx, holdfast.Pool{ID: id, Capacity: 40, Partition: "fest-" + id}); err != nil {
			h.t.Fatalf("setting up %s: %v", id, err)
		}
	}
	run := &passRun{acked: map[string]string{}}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for n := 0; ctx.Err() == nil; n++ {
				body := map[string]any{"holder": fmt.Sprintf("pass-%d-%d", w, n),
					"lines": []map[string]any{{"pool": "pass-x", "quantity": 1}, {"pool": "pass-y", "quantity": 1}}}
				out, _ := drv.do(ctx, w, "/v1/holds", body, newKey())
				switch {
				case out.Unknown:
					run.mu.Lock()
					run.unknown++
					run.mu.Unlock()
					continue
				case out.Code != "":
					run.mu.Lock()
					run.refused++
					run.mu.Unlock()
					time.Sleep(20 * time.Millisecond) // sold out: a buyer's pause before trying again
					continue
				}
				run.ack(out.ID, "held")
				if strings.HasPrefix(out.ID, "hx") {
					run.mu.Lock()
					run.cross = true
					run.mu.Unlock()
				}
				verb, status := "confirm", "confirmed"
				if rng.IntN(5) < 2 {
					verb, status = "release", "released"
				}
				// Most confirmed passes are cancelled (refunds), so the
				// sale goes on for the whole storm.
				if !passStep(ctx, drv, run, w, out.ID, verb, status) || verb == "release" || rng.IntN(5) == 0 {
					continue
				}
				passStep(ctx, drv, run, w, out.ID, "cancel", "cancelled")
			}
		})
	}
	return run, func() { cancel(); wg.Wait() }
}

// passStep changes a pass and records the answer: true if acknowledged.
func passStep(ctx context.Context, drv *driver, run *passRun, home int, id, verb, status string) bool {
	var body any = map[string]any{}
	if verb == "confirm" {
		body = map[string]any{"payment_ref": "pay-" + id}
	}
	out, _ := drv.do(ctx, home, "/v1/holds/"+id+"/"+verb, body, newKey())
	switch {
	case out.Unknown:
		run.ack(id, "?") // either: not checked
		return false
	case out.Code != "":
		return false
	}
	run.ack(id, status)
	return true
}

// passShards reads the shards a hold across shards names ("hx0-2_…").
func passShards(id string) []int {
	head, _, ok := strings.Cut(strings.TrimPrefix(id, "hx"), "_")
	if !ok || !strings.HasPrefix(id, "hx") {
		return nil
	}
	var out []int
	for _, f := range strings.Split(head, "-") {
		k, err := strconv.Atoi(f)
		if err != nil {
			return nil
		}
		out = append(out, k)
	}
	return out
}

// checkPasses checks, once the servers have resolved every prepared
// part, that every pass is whole — a row on each of its shards, in one
// state — and in the state last acknowledged.
func checkPasses(ctx context.Context, dbs []*pgx.Conn, run *passRun) ([]string, string) {
	var bad []string
	fail := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }
	deadline := time.Now().Add(30 * time.Second)
	for {
		prepared := 0
		for _, db := range dbs {
			var n int
			if err := db.QueryRow(ctx, `SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()`).Scan(&n); err != nil {
				fail("prepared transactions: %v", err)
			}
			prepared += n
		}
		if prepared == 0 {
			break
		}
		if time.Now().After(deadline) {
			fail("%d prepared transactions left 30 s after the storm: the servers' resolvers did not end them", prepared)
			break
		}
		time.Sleep(200 * time.Millisecond) // the servers' resolvers run every 2 s
	}
	states := map[string]map[int]string{} // pass → shard → status
	for i, db := range dbs {
		rows, err := db.Query(ctx, `SELECT id, status FROM holds WHERE id LIKE 'hx%'`)
		if err != nil {
			fail("passes on shard %d: %v", i, err)
			continue
		}
		for rows.Next() {
			var id, status string
			if err := rows.Scan(&id, &status); err != nil {
				fail("%v", err)
				break
			}
			if states[id] == nil {
				states[id] = map[int]string{}
			}
			states[id][i] = status
		}
		rows.Close()
	}
	for id, by := range states {
		var seen []string
		for _, sh := range passShards(id) {
			st, ok := by[sh]
			if !ok {
				fail("pass %s is missing on shard %d: half applied", id, sh)
				continue
			}
			seen = append(seen, st)
		}
		for _, st := range seen[min(1, len(seen)):] {
			if st != seen[0] {
				fail("pass %s is %v across its shards: half applied", id, by)
				break
			}
		}
	}
	run.mu.Lock()
	defer run.mu.Unlock()
	counts := map[string]int{}
	for id, want := range run.acked {
		counts[want]++
		if want == "?" {
			continue
		}
		for _, st := range states[id] {
			if st != want && !(want == "held" && st == "expired") {
				fail("pass %s: %s was acknowledged, but it is %s now", id, want, st)
				break
			}
		}
		if len(states[id]) == 0 {
			fail("pass %s was acknowledged (%s) but is in no database", id, want)
		}
	}
	if len(run.acked) > 0 && !run.cross {
		fail("no pass spanned two shards: the scenario did not test two-phase commit")
	}
	if len(bad) > 20 {
		bad = append(bad[:20], fmt.Sprintf("… and %d more", len(bad)-20))
	}
	return bad, fmt.Sprintf("passes across two shards: %d held, %d confirmed, %d released, %d cancelled, %d of unknown outcome, %d refused; %d in the databases, each whole",
		counts["held"], counts["confirmed"], counts["released"], counts["cancelled"], counts["?"]+run.unknown, run.refused, len(states))
}
