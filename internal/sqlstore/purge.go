package sqlstore

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/holdfast/holdfast"
)

// purgeBatch is how many rows one purge transaction deletes: small, so a
// purge never holds a lock for long, and claims never wait on it (it only
// touches rows no claim reads: old events, finished holds).
const purgeBatch = 500

func (s *Store) Purge(ctx context.Context, r holdfast.Retention) (holdfast.PurgeReport, error) {
	var rep holdfast.PurgeReport
	if r.Events > 0 {
		defer func() { // this server sees its own purge at once
			s.purged.mu.Lock()
			s.purged.at = time.Time{}
			s.purged.mu.Unlock()
		}()
		if err := drain(&rep.Events, func() (int, error) { return s.purgeEvents(ctx, r.Events) }); err != nil {
			return rep, err
		}
	}
	if r.Holds > 0 {
		if err := drain(&rep.Holds, func() (int, error) { return s.purgeHolds(ctx, r.Holds) }); err != nil {
			return rep, err
		}
	}
	if r.Events > 0 {
		// Deliveries that succeeded or failed are history, kept as long
		// as the events they carried.
		return rep, drain(&rep.Deliveries, func() (n int, err error) {
			err = s.db.Transact(ctx, func(tx Querier) error {
				n, err = s.purgeDeliveries(ctx, tx, r.Events)
				return err
			})
			return n, err
		})
	}
	return rep, nil
}

// drain runs batch until it deletes fewer than a purge batch, adding
// what each deleted to total.
func drain(total *int, batch func() (int, error)) error {
	for {
		n, err := batch()
		*total += n
		if err != nil || n < purgeBatch {
			return err
		}
	}
}

// purgeDeliveries deletes one batch of finished deliveries older than keep.
func (s *Store) purgeDeliveries(ctx context.Context, tx Querier, keep time.Duration) (int, error) {
	n, err := tx.Exec(ctx, `DELETE FROM webhook_deliveries WHERE (webhook_id, event_seq) IN (
		SELECT webhook_id, event_seq FROM webhook_deliveries WHERE status <> 'pending' AND updated_at < holdfast_now_ms() - $1
		ORDER BY updated_at LIMIT $2)`, keep.Milliseconds(), purgeBatch)
	return int(n), err
}

// purgeEvents deletes one batch of the oldest events, if they are older
// than keep, and moves the feed's watermark past them. It looks only at
// the oldest events by seq (the primary key): no scan of the outbox.
func (s *Store) purgeEvents(ctx context.Context, keep time.Duration) (int, error) {
	var n int
	err := s.db.Transact(ctx, func(tx Querier) error {
		// An event still to be sent to a webhook stays (a pending
		// delivery's, or one after an enabled webhook's cursor), and the
		// ones after it: the purge goes oldest first and stops there.
		seqs, err := queryStrings(ctx, tx, `SELECT CAST(seq AS TEXT) FROM (SELECT seq, at FROM events ORDER BY seq LIMIT $2) AS oldest
			WHERE at < holdfast_now_ms() - $1
			AND seq < COALESCE((SELECT MIN(event_seq) FROM webhook_deliveries WHERE status = 'pending'), seq + 1)
			AND seq <= COALESCE((SELECT MIN(cursor_seq) FROM webhooks WHERE enabled), seq) ORDER BY seq`, keep.Milliseconds(), purgeBatch)
		if err != nil || len(seqs) == 0 {
			n = 0
			return err
		}
		through, _ := strconv.ParseInt(seqs[len(seqs)-1], 10, 64)
		if _, err := tx.Exec(ctx, `DELETE FROM events WHERE seq IN (SELECT CAST(value AS BIGINT) FROM (`+s.d.ListSelect(1)+`) AS l)`, s.d.ListArg(seqs)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO purges (what, through) VALUES ('events', $1)
			ON CONFLICT (what) DO UPDATE SET through = excluded.through WHERE purges.through < excluded.through`, through); err != nil {
			return err
		}
		n = len(seqs)
		return nil
	})
	return n, err
}

// purgeHolds deletes one batch of holds that ended without a booking
// (released, expired, cancelled) longer than keep ago, with their lines
// and (inactive) unit claims. They count in no counter and hold no seat,
// so the audit's recount is the same without them.
func (s *Store) purgeHolds(ctx context.Context, keep time.Duration) (int, error) {
	var n int
	err := s.db.Transact(ctx, func(tx Querier) error {
		ids, err := queryStrings(ctx, tx, `SELECT id FROM holds WHERE status IN ('released', 'expired', 'cancelled')
			AND updated_at < holdfast_now_ms() - $1 ORDER BY updated_at LIMIT $2`+s.d.SkipLocked, keep.Milliseconds(), purgeBatch)
		if err != nil || len(ids) == 0 {
			n = 0
			return err
		}
		list := s.d.ListArg(ids)
		for _, table := range []string{"unit_claims", "hold_lines"} {
			if _, err := tx.Exec(ctx, `DELETE FROM `+table+` WHERE hold_id IN (`+s.d.ListSelect(1)+`)`, list); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `DELETE FROM holds WHERE id IN (`+s.d.ListSelect(1)+`)`, list); err != nil {
			return err
		}
		// Waitlist entries end with their offers (and those that ended
		// without one, as old): what is left is the line and the sales.
		if _, err := ExecAll(ctx, tx, []Stmt{
			{`DELETE FROM waitlist_entries WHERE hold_id IN (` + s.d.ListSelect(1) + `) AND status IN ('expired', 'released')`, []any{list}},
			{`DELETE FROM waitlist_entries WHERE hold_id IS NULL AND status IN ('expired', 'left') AND updated_at < holdfast_now_ms() - $1`, []any{keep.Milliseconds()}},
			{`DELETE FROM group_waitlist_entries WHERE hold_id IN (` + s.d.ListSelect(1) + `) AND status IN ('expired', 'released')`, []any{list}},
			{`DELETE FROM group_waitlist_entries WHERE hold_id IS NULL AND status IN ('left', 'cancelled') AND updated_at < holdfast_now_ms() - $1`, []any{keep.Milliseconds()}},
		}); err != nil {
			return err
		}
		n = len(ids)
		return nil
	})
	return n, err
}

// purgedThrough is the feed's watermark: the last event seq purged, read
// at most once a second (a purge on another server shows within it; the
// events it purges are days old).
type purgedThrough struct {
	mu      sync.Mutex
	through int64
	at      time.Time
	keep    time.Duration // how long a read is kept (Env.CacheFor)
}

// eventsPurgedThrough is the watermark, read on q. A caller inside a
// transaction (the webhooks' queue) passes its own connection and, when
// the kept watermark is old, reads it there for itself: it must wait
// neither for the pool nor for a reader waiting for the pool (see
// protected).
func (s *Store) eventsPurgedThrough(ctx context.Context, q Reader) (int64, error) {
	const query = `SELECT through FROM purges WHERE what = 'events'`
	w := &s.purged
	w.mu.Lock()
	if q != s.db {
		through, fresh := w.through, time.Since(w.at) < w.keep
		w.mu.Unlock()
		if fresh {
			return through, nil
		}
		var now int64
		_, err := queryRow(ctx, q, query, nil, &now)
		return now, err
	}
	defer w.mu.Unlock()
	if time.Since(w.at) < w.keep {
		return w.through, nil
	}
	var through int64
	if _, err := queryRow(ctx, s.db, query, nil, &through); err != nil {
		return 0, err
	}
	w.through, w.at = through, time.Now()
	return through, nil
}
