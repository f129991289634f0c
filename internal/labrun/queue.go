package labrun

import (
	"container/heap"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/internal/loop"
	"github.com/holdfast/holdfast/internal/rawsql"
)

// runQueue is `holdfast lab --scenario queue`: a sale behind a waiting
// room. --joiners people join, a quarter before opening; --clients
// workers play their pages, each polling its ticket as a page would (at
// half its estimated wait, between 200 ms and 5 s) and booking one ticket
// with the admission when admitted. The store admits as serve does. The
// report: admissions per second against the configured rate, the order
// kept, admission to booking, tickets sold, and how soon after the last
// ticket the room told everyone waiting that it sold out.
func runQueue(ctx context.Context, e env, f Options) error {
	lf := f
	lf.Think, lf.Instances, lf.Coalesce = 0, 1, true
	t, err := localTarget(ctx, lf, holdfast.Atomic)
	if err != nil {
		return err
	}
	defer t.Close()
	store := t.Engines[0].(holdfast.Store)
	counter, ok := rawsql.Of(store)
	if !ok {
		return fmt.Errorf("the lab's store cannot be counted in")
	}
	rate := f.AdmitRate
	if _, err := store.CreatePool(ctx, holdfast.Pool{ID: "sale", Capacity: f.Capacity}); err != nil {
		return err
	}
	opens := time.Now().Add(3 * time.Second)
	if _, err := store.CreateRoom(ctx, holdfast.Room{ID: "queue", Pools: []string{"sale"}, OpensAt: opens,
		AdmitPerSecond: rate, AdmitTTLSeconds: 30, MaxInside: int64(5 * rate)}); err != nil {
		return err
	}
	admitter := loop.Every(100*time.Millisecond, func(ctx context.Context) { _, _ = store.AdmitRooms(ctx) })
	_ = admitter.Start(ctx)
	defer admitter.Stop(context.Background())

	// Everyone's page: a heap of tickets by next poll.
	q := &pollQueue{}
	var mu sync.Mutex
	cond := sync.NewCond(&mu)
	var sold, soldOutTold, errs atomic.Int64
	var lastSale atomic.Int64 // unix nanos of the last booking
	var toHold []time.Duration
	var firstErr atomic.Value
	fail := func(err error) {
		if errs.Add(1) == 1 {
			firstErr.Store(err.Error())
		}
	}
	deadline := opens.Add(time.Duration(float64(f.Capacity)/rate*float64(time.Second))*3 + 30*time.Second)
	runCtx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()

	var pending atomic.Int64
	pending.Store(int64(f.Joiners))
	join := func(i int) {
		tk, err := store.JoinRoom(runCtx, "queue", fmt.Sprintf("fan-%05d", i), "")
		if err != nil {
			fail(err)
			pending.Add(-1)
			return
		}
		mu.Lock()
		heap.Push(q, pollItem{at: time.Now().Add(200 * time.Millisecond), ticket: tk.Ticket, holder: tk.Holder})
		cond.Signal()
		mu.Unlock()
	}
	early := f.Joiners / 4
	var joins sync.WaitGroup
	joinRange := func(from, to int) {
		work := make(chan int)
		for range f.Clients {
			joins.Add(1)
			go func() {
				defer joins.Done()
				for i := range work {
					join(i)
				}
			}()
		}
		for i := from; i < to; i++ {
			work <- i
		}
		close(work)
	}
	go func() { // wake every page at the deadline
		<-runCtx.Done()
		mu.Lock()
		cond.Broadcast()
		mu.Unlock()
	}()
	var workers sync.WaitGroup
	for range f.Clients {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for {
				mu.Lock()
				for q.Len() == 0 && pending.Load() > 0 && runCtx.Err() == nil {
					cond.Wait()
				}
				if pending.Load() == 0 || runCtx.Err() != nil {
					mu.Unlock()
					return
				}
				it := heap.Pop(q).(pollItem)
				mu.Unlock()
				if wait := time.Until(it.at); wait > 0 {
					select {
					case <-time.After(wait):
					case <-runCtx.Done():
						return
					}
				}
				tk, err := store.RoomTicket(runCtx, "queue", it.ticket)
				if err != nil {
					fail(err)
					pending.Add(-1)
					continue
				}
				switch tk.Status {
				case holdfast.TicketAdmitted:
					admittedAt := tk.AdmissionExpiresAt.Add(-30 * time.Second)
					_, err := store.Book(runCtx, holdfast.HoldRequest{Holder: tk.Holder, Admission: tk.Admission,
						Lines: []holdfast.Line{{Pool: "sale", Quantity: 1}}}, "")
					switch holdfast.ErrorCode(err) {
					case "":
						sold.Add(1)
						lastSale.Store(time.Now().UnixNano())
						mu.Lock()
						toHold = append(toHold, time.Since(admittedAt))
						mu.Unlock()
					case holdfast.CodeSoldOut:
					default:
						fail(err)
					}
					pending.Add(-1)
				case holdfast.TicketSoldOut:
					soldOutTold.Add(1)
					pending.Add(-1)
				case holdfast.TicketDone:
					pending.Add(-1)
				default:
					next := time.Duration(tk.EstimatedWaitSeconds / 2 * float64(time.Second))
					mu.Lock()
					heap.Push(q, pollItem{at: time.Now().Add(min(5*time.Second, max(200*time.Millisecond, next))), ticket: it.ticket, holder: it.holder})
					cond.Signal()
					mu.Unlock()
				}
				if pending.Load() == 0 {
					cond.Broadcast()
				}
			}
		}()
	}
	// A watcher notes when the room says sold out.
	var soldOutAt atomic.Int64
	go func() {
		for runCtx.Err() == nil && soldOutAt.Load() == 0 {
			if r, err := store.Room(runCtx, "queue"); err == nil && r.SoldOut {
				soldOutAt.Store(time.Now().UnixNano())
			}
			time.Sleep(20 * time.Millisecond) // sampling the room, as a dashboard does
		}
	}()
	start := time.Now()
	joinRange(0, early)
	joins.Wait()
	time.Sleep(time.Until(opens)) // the rest join after opening
	joinRange(early, f.Joiners)
	joins.Wait()
	joined := time.Since(start)
	workers.Wait()
	mu.Lock()
	cond.Broadcast()
	mu.Unlock()
	cancel()

	count := func(sql string) int64 {
		n, err := counter.QueryInt(ctx, sql)
		if err != nil {
			fail(err)
		}
		return n
	}
	admitted := count(`SELECT COUNT(*) FROM room_tickets WHERE admitted_at IS NOT NULL`)
	first := count(`SELECT COALESCE(MIN(admitted_at), 0) FROM room_tickets`)
	last := count(`SELECT COALESCE(MAX(admitted_at), 0) FROM room_tickets`)
	inversions := count(`SELECT COUNT(*) FROM room_tickets a JOIN room_tickets b ON a.room_id = b.room_id
		WHERE a.admitted_at IS NOT NULL AND b.admitted_at IS NOT NULL AND a.rank < b.rank AND a.admitted_at > b.admitted_at`)
	skipped := count(`SELECT COUNT(*) FROM room_tickets WHERE admitted_at IS NULL AND rank < (SELECT MAX(rank) FROM room_tickets WHERE admitted_at IS NOT NULL)`)
	rep, err := store.Audit(ctx)
	if err != nil {
		return err
	}
	achieved := 0.0
	if span := float64(last-opens.UnixMilli()) / 1000; admitted > 0 && span > 0 {
		// From the opening to the last admission: a late first pass
		// catches up with the credit it earned meanwhile.
		achieved = float64(admitted) / span
	}
	_ = first
	fmt.Fprintf(e.stdout, "queue: %d joiners (%d before opening, joined in %s), %d tickets, admit %.0f/s, max inside %d, %d pages polling\n",
		f.Joiners, early, joined.Round(time.Millisecond), f.Capacity, rate, int64(5*rate), f.Clients)
	fmt.Fprintf(e.stdout, "admissions: %d, %.1f/s achieved (%.1f%% of the rate)\n", admitted, achieved, 100*achieved/rate)
	fmt.Fprintf(e.stdout, "order: %d admitted after someone behind them, %d places skipped\n", inversions, skipped)
	mu.Lock()
	fmt.Fprintf(e.stdout, "admission to booking: p50 %s, p99 %s\n", durMs(durationQuantile(toHold, 0.5)), durMs(durationQuantile(toHold, 0.99)))
	mu.Unlock()
	fmt.Fprintf(e.stdout, "sold: %d of %d; oversold %d, double-booked %d, audit differences %d\n", sold.Load(), f.Capacity, rep.Oversold, rep.DoubleBooked, len(rep.Differences))
	if s, l := soldOutAt.Load(), lastSale.Load(); s > 0 && l > 0 {
		fmt.Fprintf(e.stdout, "sold out: the room told everyone waiting %s after the last ticket; %d pages saw sold_out\n",
			time.Duration(max(0, s-l)).Round(time.Millisecond), soldOutTold.Load())
	}
	if n := errs.Load(); n > 0 {
		fmt.Fprintf(e.stdout, "errors: %d, first: %v\n", n, firstErr.Load())
	}
	return nil
}

type pollItem struct {
	at             time.Time
	ticket, holder string
}

type pollQueue []pollItem

func (q pollQueue) Len() int           { return len(q) }
func (q pollQueue) Less(i, j int) bool { return q[i].at.Before(q[j].at) }
func (q pollQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *pollQueue) Push(x any)        { *q = append(*q, x.(pollItem)) }
func (q *pollQueue) Pop() any {
	old := *q
	it := old[len(old)-1]
	*q = old[:len(old)-1]
	return it
}

// durationQuantile is the q-quantile of ds (0 when empty).
func durationQuantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}
