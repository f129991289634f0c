// Package expiry runs the hold sweeper: it marks held holds past their
// expiry as expired, returns their capacity and writes their outbox events.
//
// The sweeper only tidies up. Correctness never waits for it: a confirm
// after expiry is refused by the confirm itself, and a claim reclaims the
// expired holds in its way (guarantee 6). A dead sweeper delays events; it
// never oversells or strands capacity. Many sweepers (one per server) may
// run against one database at once: the store's ExpireDue expires each hold
// exactly once.
package expiry

import (
	"cmp"
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/holdfast/holdfast/internal/loop"
	"github.com/holdfast/holdfast/internal/testrig/testsignal"
)

// Expirer is what the sweeper needs from a store.
type Expirer interface {
	ExpireDue(ctx context.Context, limit int) (int, error)
}

// Config configures a Sweeper. The zero value is the documented default.
type Config struct {
	// Interval between sweeps (default 1 s).
	Interval time.Duration
	// Batch is how many holds one transaction expires (default 100); a
	// sweep repeats batches until one comes back short.
	Batch  int
	Logger *slog.Logger
}

// Stats counts what the sweeper did, for metrics.
type Stats struct {
	Sweeps, Expired, Failures int64
}

// Sweeper expires due holds on an interval.
type Sweeper struct {
	e    Expirer
	cfg  Config
	loop *loop.Loop

	sweeps, expired, failures atomic.Int64
	// testSignals are off unless a test in this package turns them on.
	testSignals struct {
		swept testsignal.Signal[sweepResult]
	}
}

type sweepResult struct {
	expired int
	err     error
}

// Stats reports the sweeps so far.
func (s *Sweeper) Stats() Stats {
	return Stats{Sweeps: s.sweeps.Load(), Expired: s.expired.Load(), Failures: s.failures.Load()}
}

// New returns a stopped Sweeper.
func New(e Expirer, cfg Config) *Sweeper {
	cfg.Interval = cmp.Or(cfg.Interval, time.Second)
	cfg.Batch = cmp.Or(cfg.Batch, 100)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	s := &Sweeper{e: e, cfg: cfg}
	s.loop = loop.Every(cfg.Interval, s.round)
	return s
}

// Start runs the sweeper until Stop; the first sweep runs at once. Its
// sweeps outlive ctx's cancellation: only Stop ends them.
func (s *Sweeper) Start(ctx context.Context) error {
	return s.loop.Start(ctx)
}

// Stop stops the sweeper and waits for a sweep in progress to finish, or
// for ctx. A sweeper never started stops at once.
func (s *Sweeper) Stop(ctx context.Context) error {
	return s.loop.Stop(ctx)
}

// round is one sweep of the loop.
func (s *Sweeper) round(ctx context.Context) {
	n, err := s.Sweep(ctx)
	if err != nil && ctx.Err() == nil {
		s.cfg.Logger.Warn("sweep failed", "err", err, "expired", n)
	} else if n > 0 {
		s.cfg.Logger.Info("expired holds", "count", n)
	}
	// A sweep cut short by Stop is not a failed sweep: it is not
	// counted (CI once saw "context canceled" from the sweep that was
	// running when a test stopped the sweeper).
	if ctx.Err() == nil {
		s.sweeps.Add(1)
		s.expired.Add(int64(n))
		if err != nil {
			s.failures.Add(1)
		}
		s.testSignals.swept.Signal(sweepResult{n, err})
	}
}

// Sweep expires every due hold, batch by batch, and reports how many.
func (s *Sweeper) Sweep(ctx context.Context) (int, error) {
	total := 0
	for {
		n, err := s.e.ExpireDue(ctx, s.cfg.Batch)
		total += n
		if err != nil || n < s.cfg.Batch {
			return total, err
		}
	}
}
