package sqlstore

import (
	"context"
	"sync"
	"sync/atomic"
)

// PostgreSQL plans a prepared statement for the table sizes it knows and
// keeps that plan, on each connection, until the table's statistics
// change; autovacuum refreshes them at most once a minute. On tables that
// grow fast from empty (a new deployment, a lab run, a venue put on sale)
// the plans made in the first seconds are plans for tiny tables, kept
// while the tables grow: a batch's look-up of its requests' keys read
// every key (363 pages a batch 6 s into a sale), its reads of holds by id
// every hold. The store refreshes the statistics itself while the tables
// are young, so the plans follow the tables.

// analyzeUnitsAfter is how many units added make the store refresh the
// planner's statistics of units (Dialect.AnalyzeUnits), before the call
// that added them returns. A venue made and put on sale at once is
// otherwise planned as the group of one unit the statistics knew: a pick
// of seats together read the whole group, 30–110 ms a read at 100,000
// seats on PostgreSQL, against 2 ms after.
const analyzeUnitsAfter = 10_000

// unitsAdded counts n units added, and refreshes the statistics every
// analyzeUnitsAfter of them. A refresh that fails is logged: the units
// are made.
func (s *Store) unitsAdded(ctx context.Context, n int) {
	if s.d.AnalyzeUnits == "" || s.addedUnits.Add(int64(n)) < analyzeUnitsAfter {
		return
	}
	s.addedUnits.Store(0)
	if err := s.db.Transact(ctx, func(tx Querier) error {
		_, err := tx.Exec(ctx, s.d.AnalyzeUnits)
		return err
	}); err != nil {
		s.log("refreshing the statistics of units", "err", err)
	}
}

// firstHoldsAnalyze is the number of holds made by this process at which
// it first refreshes the statistics of the tables a hold writes
// (Dialect.AnalyzeHolds); it refreshes them again each time the number
// doubles. Past a few doublings the plans no longer change with the
// tables' size (an index read beats a scan from a few thousand rows on),
// and autovacuum's own refreshes take over; a process started on large
// tables spends a few refreshes of sampled rows on it.
const firstHoldsAnalyze = 256

// holdStats counts the holds this process made, and when the statistics
// are next refreshed.
type holdStats struct {
	made    atomic.Int64
	next    atomic.Int64 // past firstHoldsAnalyze: the next doubling
	running sync.Mutex   // one refresh at a time
}

// holdsMade counts n holds written, and refreshes the statistics in the
// background when their number reached the next doubling: never on a
// request's path.
func (s *Store) holdsMade(n int) {
	if s.d.AnalyzeHolds == "" || n <= 0 {
		return
	}
	made := s.holdStats.made.Add(int64(n))
	next := s.holdStats.next.Load()
	if made < max(next, firstHoldsAnalyze) || !s.holdStats.next.CompareAndSwap(next, 2*made) {
		return
	}
	s.spawn(func() {
		if !s.holdStats.running.TryLock() {
			return // one is running; the next doubling refreshes again
		}
		defer s.holdStats.running.Unlock()
		ctx := context.Background()
		if err := s.db.Transact(ctx, func(tx Querier) error {
			_, err := tx.Exec(ctx, s.d.AnalyzeHolds)
			return err
		}); err != nil {
			s.log("refreshing the statistics of holds", "err", err)
		}
	})
}
