package lab

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/holdfast/holdfast"
)

type workload struct {
	cfg   Config
	pool  string
	group string
	seats [][]string // rows
}

// newWorkload creates the scenario's pool or group, with ids of its own
// so a run against a live deployment touches nothing else.
func newWorkload(ctx context.Context, cfg Config, e Engine) (*workload, error) {
	tag := fmt.Sprintf("lab-%d", time.Now().UnixNano())
	w := &workload{cfg: cfg}
	switch cfg.Scenario {
	case ScenarioPool:
		w.pool = tag
		_, err := e.CreatePool(ctx, holdfast.Pool{ID: w.pool, Name: "lab: " + string(cfg.Scenario), Capacity: cfg.Capacity})
		return w, err
	case ScenarioSeats, ScenarioRiders:
		w.group = tag
		if _, err := e.CreateGroup(ctx, holdfast.Group{ID: w.group, Name: "lab: " + string(cfg.Scenario), Reusable: cfg.Scenario == ScenarioRiders}); err != nil {
			return w, err
		}
		var ids []string
		for i := int64(0); i < cfg.Capacity; i++ {
			id := fmt.Sprintf("%s-%d-%d", tag, i/20, i%20)
			ids = append(ids, id)
			if i%20 == 0 {
				w.seats = append(w.seats, nil)
			}
			w.seats[len(w.seats)-1] = append(w.seats[len(w.seats)-1], id)
		}
		for len(ids) > 0 {
			n := min(len(ids), holdfast.MaxUnitsPerAdd)
			if err := e.AddUnits(ctx, w.group, ids[:n]); err != nil {
				return w, err
			}
			ids = ids[n:]
		}
		return w, nil
	}
	return w, fmt.Errorf("unknown scenario %q (pool, seats or riders)", cfg.Scenario)
}

// definite reports whether a code ends a buyer's attempts: the thing is
// gone. Anything else (a busy database, a refused write) is tried again.
func definite(c holdfast.Code) bool {
	return c == holdfast.CodeSoldOut || c == holdfast.CodeUnavailable || c == holdfast.CodeLimitExceeded
}

// maxErrors bounds how often one buyer retries after errors.
const maxErrors = 50

func (w *workload) client(ctx context.Context, e Engine, i int, rng *rand.Rand, record func(sample)) {
	holder := fmt.Sprintf("buyer-%d", i)
	call := func(f func() error) holdfast.Code {
		s := sample{start: time.Now()}
		err := f()
		s.end = time.Now()
		s.code = holdfast.ErrorCode(err)
		if ctx.Err() != nil && s.code != "" && !definite(s.code) {
			return s.code // the run's deadline, not the engine's answer
		}
		record(s)
		return s.code
	}
	// Each buyer wants its share of the pool (at least one request's
	// worth): demand covers capacity, so the pool sells out, and with the
	// classic 20 buyers for 10 tickets each buyer wants one.
	want := max(1, (w.cfg.Capacity+int64(w.cfg.Clients)*w.cfg.Quantity-1)/(int64(w.cfg.Clients)*w.cfg.Quantity))
	var got int64
	errs := 0
	for ctx.Err() == nil && errs < maxErrors {
		switch w.cfg.Scenario {
		case ScenarioPool:
			code := call(func() error {
				_, err := e.Hold(ctx, holdfast.HoldRequest{Holder: holder, Lines: []holdfast.Line{{Pool: w.pool, Quantity: w.cfg.Quantity}}})
				return err
			})
			switch {
			case code == "":
				if got++; got >= want {
					return
				}
			case definite(code):
				return // sold out: this buyer goes home
			default:
				errs++
			}
		case ScenarioSeats:
			row := w.seats[rng.IntN(len(w.seats))]
			n := min(len(row), 1+rng.IntN(4))
			at := rng.IntN(len(row) - n + 1)
			code := call(func() error {
				_, err := e.Hold(ctx, holdfast.HoldRequest{Holder: holder, Lines: []holdfast.Line{{Units: row[at : at+n]}}})
				return err
			})
			switch {
			case definite(code):
				// Taken: pick again while the map has free seats.
				if g, err := e.Group(ctx, w.group); err == nil && g.Free == 0 {
					return
				}
			case code != "":
				errs++
			}
		case ScenarioRiders:
			// Dispatched in one request (a booking: held and confirmed),
			// as the orders of a delivery app are.
			var h holdfast.Hold
			code := call(func() error {
				var err error
				h, err = e.Book(ctx, holdfast.HoldRequest{Holder: holder, Lines: []holdfast.Line{{Group: w.group, Any: 1}}}, "")
				return err
			})
			switch {
			case code == "":
				// The rider delivers and comes back.
				_, _ = e.Complete(ctx, h.ID)
			case definite(code):
				// Every rider is out: wait a moment for one to return.
				t := time.NewTimer(time.Millisecond)
				select {
				case <-ctx.Done():
				case <-t.C:
				}
			default:
				errs++
			}
		}
	}
}
