package sqlstore

import (
	"context"
	"sync"
	"time"
)

// soldOutCache makes a sold-out storm cheap without ever answering from
// stale memory. A pool that answered sold_out recently is marked; a hold
// on a marked pool is answered by a shared read of the pool's
// availability instead of a write transaction. One read serves every
// request that arrived before it was sent, so a storm costs one round
// trip per read, not per request; and since each request's read starts
// after the request arrived, its sold_out is true at a moment within the
// request — also when another instance gave capacity back a millisecond
// before (a remembered answer with a time bound would be stale then, and
// the chaos harness's linearizability check catches exactly that).
//
// The mark is only a routing hint: a read that finds room (or a per-holder
// limit, or expired holds to reclaim) sends the request down the write
// path. Give-backs on this store drop the mark at once.
type soldOutCache struct {
	mu      sync.Mutex
	entries map[string]*soldOutEntry
}

type soldOutEntry struct {
	until   time.Time // the mark's end
	running bool      // a read is in flight
	next    *availRead
}

// availRead is one shared read; done closes when avail and ok are set.
type availRead struct {
	done  chan struct{}
	avail int64
	ok    bool // false: take the write path (room, a limit, expired holds, an error)
}

// soldOutMark is how long a sold_out keeps a pool on the read path.
const soldOutMark = time.Second

// refuses reports whether a claim of q on pool is sold out now, from a
// shared read; false means: take the write path.
func (s *Store) refusesSoldOut(ctx context.Context, pool string, q int64) (int64, bool) {
	c := &s.soldOut
	if !c.marked(pool) {
		return 0, false
	}
	// A pool a waiting room guards takes the write path: the room's rule
	// comes before the inventory's (grant), and this read does not ask it.
	if snap, err := s.protected(ctx, s.db); err != nil || snap.pools[pool] != "" {
		return 0, false
	}
	c.mu.Lock()
	e, ok := c.entries[pool]
	if !ok || time.Now().After(e.until) {
		c.mu.Unlock()
		return 0, false
	}
	r := e.next
	if r == nil {
		r = &availRead{done: make(chan struct{})}
		e.next = r
	}
	if !e.running {
		if !s.spawn(func() { s.readAvailability(pool, e, r) }) {
			c.mu.Unlock()
			return 0, false
		}
		e.running, e.next = true, nil
	}
	c.mu.Unlock()
	select {
	case <-r.done:
	case <-ctx.Done():
		return 0, false
	}
	return r.avail, r.ok && q > r.avail
}

// readAvailability runs reads for a pool while requests wait for one.
func (s *Store) readAvailability(pool string, e *soldOutEntry, r *availRead) {
	c := &s.soldOut
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var avail, limit int64
		var expired bool
		found, err := queryRow(ctx, s.db, `SELECT p.capacity - p.held - p.confirmed - p.waitlisted - p.allocated, p.per_holder_limit,
			EXISTS (SELECT 1 FROM holds h WHERE h.status = 'held' AND h.expires_at <= holdfast_now_ms()
				AND EXISTS (SELECT 1 FROM hold_lines l WHERE l.hold_id = h.id AND l.pool_id = p.id))
			FROM pools p WHERE p.id = $1`, []any{pool}, &avail, &limit, &expired)
		cancel()
		r.avail, r.ok = avail, err == nil && found && limit == 0 && !expired
		close(r.done)
		c.mu.Lock()
		if r = e.next; r == nil {
			e.running = false
			c.mu.Unlock()
			return
		}
		e.next = nil
		c.mu.Unlock()
	}
}

// marked reports whether pool answered sold_out in the last mark.
func (c *soldOutCache) marked(pool string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[pool]
	return ok && !time.Now().After(e.until)
}

// remember marks pool as sold out.
func (c *soldOutCache) remember(pool string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[string]*soldOutEntry{}
	}
	now := time.Now()
	if e, ok := c.entries[pool]; ok {
		e.until = now.Add(soldOutMark)
		return
	}
	// Marks that ended go, so the cache holds only pools sold out in the
	// last second (and never a pool that does not exist: only a real
	// pool answers sold_out).
	for p, e := range c.entries {
		if !e.running && now.After(e.until) {
			delete(c.entries, p)
		}
	}
	c.entries[pool] = &soldOutEntry{until: now.Add(soldOutMark)}
}

// size is how many pools have a mark.
func (c *soldOutCache) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// forget drops the marks of pools this store gave capacity back to.
func (c *soldOutCache) forget(pools ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range pools {
		delete(c.entries, p)
	}
}
