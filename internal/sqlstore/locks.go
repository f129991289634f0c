package sqlstore

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/holdfast/holdfast"
)

// ---- advisory ----

// Advisory takes a transaction-scoped advisory lock per resource
// (pg_advisory_xact_lock), in the global lock order, then checks and
// writes with plain statements. Every writer of a resource takes its lock,
// so the check cannot go stale; the lock is released at commit.
type Advisory struct{ base }

func (a Advisory) Prepare(context.Context, Reader, holdfast.HoldRequest) (Prepared, error) {
	return nil, nil
}

func (a Advisory) lock(ctx context.Context, tx Querier, key string) error {
	_, err := tx.Exec(ctx, a.d.AdvisoryLock, "holdfast:"+key)
	return err
}

func (a Advisory) ClaimPool(ctx context.Context, tx Querier, _ Prepared, pool string, q int64, confirmed bool) (int64, bool, error) {
	if err := a.lock(ctx, tx, "pool:"+pool); err != nil {
		return 0, false, err
	}
	return lockedClaimPool(ctx, tx, "", a.think, pool, q, confirmed)
}

func (a Advisory) ClaimUnits(ctx context.Context, tx Querier, _ Prepared, holdID, channel string, ids []string) ([]string, error) {
	for _, id := range ids { // sorted by the engine
		if err := a.lock(ctx, tx, "unit:"+id); err != nil {
			return nil, err
		}
	}
	if err := think(ctx, a.think); err != nil {
		return nil, err
	}
	// Conditional, because a buyer of "any k" from the same group holds
	// the group's lock, not the units'.
	return Atomic(a).ClaimUnits(ctx, tx, nil, holdID, channel, ids)
}

func (a Advisory) ClaimAny(ctx context.Context, tx Querier, _ Prepared, holdID, group, channel string, k int64) ([]string, error) {
	// A buyer of "any k" and a buyer of named units of the same group take
	// different locks; the conditional write keeps them apart.
	if err := a.lock(ctx, tx, "group:"+group); err != nil {
		return nil, err
	}
	if err := think(ctx, a.think); err != nil {
		return nil, err
	}
	return Atomic(a).ClaimAny(ctx, tx, nil, holdID, group, channel, k)
}

// ---- redislock ----

// Locker is a distributed lock with fencing tokens (package redis
// implements it on Redis).
type Locker interface {
	// Lock takes the lock on key, waiting for it until ctx's deadline, and
	// returns a fencing token larger than any it returned for key before,
	// and the function that releases the lock (only if still ours).
	Lock(ctx context.Context, key string) (fence int64, unlock func(), err error)
	// Raise makes the next token for key larger than floor: after the
	// lock service lost its counters (a Redis flush), the database's
	// last-seen token is the floor.
	Raise(ctx context.Context, key string, floor int64) error
}

// RedisLock serializes claims with a lock per resource held in Redis,
// taken before the transaction and released after it: under the locks it
// reads availability, then writes — the lock is what makes the check
// valid. A lock can expire while its holder is paused (GC, a stalled VM),
// so the lock alone is not enough: each lock comes with a fencing token,
// written with the claim, and the database refuses a write whose token is
// not larger than the last one it saw for that resource. A holder that
// lost its lock cannot write on the strength of its stale check.
type RedisLock struct {
	base
	locker Locker
	// beforeWrite, when set, runs after the locks are taken and before the
	// transaction: the tests stall a holder there past its lock's TTL.
	beforeWrite func(ctx context.Context)
}

type heldLocks struct {
	fences  map[string]int64
	unlocks []func()
	read    unsafeRead // availability, read under the locks
}

func lockKeys(r holdfast.HoldRequest) []string {
	var pools, units, groups []string
	for _, l := range r.Lines {
		switch l.Kind() {
		case holdfast.LinePool:
			pools = append(pools, "pool:"+l.Pool)
		case holdfast.LineUnits:
			for _, u := range l.Units {
				units = append(units, "unit:"+u)
			}
		case holdfast.LineAny:
			groups = append(groups, "group:"+l.Group)
		}
	}
	slices.Sort(pools)
	slices.Sort(units)
	slices.Sort(groups)
	// The engine's lock order: pools, then units, then groups.
	return slices.Compact(append(append(pools, units...), groups...))
}

// maxLockKeys bounds the distinct resources one redislock claim locks:
// each is a round trip to Redis and a key there.
const maxLockKeys = 200

func (r RedisLock) Prepare(ctx context.Context, db Reader, req holdfast.HoldRequest) (Prepared, error) {
	keys := lockKeys(req)
	if len(keys) > maxLockKeys {
		return nil, holdfast.Errorf(holdfast.CodeInvalid, "a hold may name at most %d distinct pools, units and groups with the redislock strategy (this one names %d)", maxLockKeys, len(keys))
	}
	// Lock only what exists: a made-up id cannot be claimed (the claim
	// answers not_found), and must not leave a key in Redis behind.
	keys, err := existing(ctx, db, r.d, keys)
	if err != nil {
		return nil, err
	}
	held := &heldLocks{fences: map[string]int64{}}
	for _, key := range keys {
		fence, unlock, err := r.locker.Lock(ctx, key)
		if err != nil {
			r.Finish(held)
			return nil, fmt.Errorf("%w: waiting for the lock on %s: %v", holdfast.ErrBusy, key, err)
		}
		held.fences[key] = fence
		held.unlocks = append(held.unlocks, unlock)
	}
	if held.read, err = readUnlocked(ctx, db, r.d, req); err != nil {
		r.Finish(held)
		return nil, err
	}
	if r.beforeWrite != nil {
		r.beforeWrite(ctx)
	}
	if err := think(ctx, r.think); err != nil {
		r.Finish(held)
		return nil, err
	}
	return held, nil
}

// existing keeps the lock keys ("pool:id", "unit:id", "group:id") whose
// rows exist, in order.
func existing(ctx context.Context, db Reader, d Dialect, keys []string) ([]string, error) {
	ids := map[string][]string{}
	for _, k := range keys {
		kind, id, _ := strings.Cut(k, ":")
		ids[kind] = append(ids[kind], id)
	}
	found := map[string]bool{}
	for kind, table := range map[string]string{"pool": "pools", "unit": "units", "group": "groups"} {
		if len(ids[kind]) == 0 {
			continue
		}
		have, err := queryStrings(ctx, db, `SELECT id FROM `+table+` WHERE id IN (`+d.ListSelect(1)+`)`, d.ListArg(ids[kind]))
		if err != nil {
			return nil, err
		}
		for _, id := range have {
			found[kind+":"+id] = true
		}
	}
	out := keys[:0:0]
	for _, k := range keys {
		if found[k] {
			out = append(out, k)
		}
	}
	return out, nil
}

func (r RedisLock) Finish(p Prepared) {
	if held, ok := p.(*heldLocks); ok && held != nil {
		for _, unlock := range held.unlocks {
			unlock()
		}
		held.unlocks = nil
	}
}

// fence writes the token for key on the row; a row that has seen a larger
// token refuses it. The conditional UPDATE also locks the row until commit.
func (r RedisLock) fence(ctx context.Context, tx Querier, p Prepared, table, id, key string) (bool, error) {
	token := p.(*heldLocks).fences[key]
	n, err := tx.Exec(ctx, `UPDATE `+table+` SET fence = $2 WHERE id = $1 AND fence < $2`, id, token)
	if err != nil || n == 1 {
		return n == 1, err
	}
	var last int64
	found, err := queryRow(ctx, tx, `SELECT fence FROM `+table+` WHERE id = $1`, []any{id}, &last)
	if err != nil || !found {
		return false, err // no such row: the engine says not_found
	}
	// Our lock expired and someone newer wrote: refuse, and make sure the
	// next token beats the database's (also after a lost Redis counter).
	if err := r.locker.Raise(ctx, key, last); err != nil {
		return false, err
	}
	return false, ErrRetry
}

func (r RedisLock) ClaimPool(ctx context.Context, tx Querier, p Prepared, pool string, q int64, confirmed bool) (int64, bool, error) {
	if ok, err := r.fence(ctx, tx, p, "pools", pool, "pool:"+pool); !ok || err != nil {
		return 0, false, err
	}
	rd := p.(*heldLocks).read
	if v, ok := rd.pools[pool]; !ok || v[0]-v[1]-v[2] < q {
		return 0, false, nil
	}
	// Fencing refuses a holder older than the newest token the row has
	// seen, but a new holder may have read while an old one was still
	// writing: the write is conditional too, so that case is a definite
	// refusal rather than a constraint violation.
	return Atomic{r.base}.ClaimPool(ctx, tx, nil, pool, q, confirmed)
}

func (r RedisLock) ClaimUnits(ctx context.Context, tx Querier, p Prepared, holdID, channel string, ids []string) ([]string, error) {
	for _, id := range ids {
		if ok, err := r.fence(ctx, tx, p, "units", id, "unit:"+id); err != nil || !ok {
			return nil, err
		}
	}
	free := p.(*heldLocks).read.free
	var taken []string
	for _, id := range ids {
		if free[id] {
			taken = append(taken, id)
		}
	}
	if len(taken) < len(ids) {
		return taken, nil
	}
	return Atomic{r.base}.ClaimUnits(ctx, tx, nil, holdID, channel, taken) // conditional, as for pools
}

func (r RedisLock) ClaimAny(ctx context.Context, tx Querier, p Prepared, holdID, group, channel string, k int64) ([]string, error) {
	if ok, err := r.fence(ctx, tx, p, "groups", group, "group:"+group); err != nil || !ok {
		return nil, err
	}
	free, ok := p.(*heldLocks).read.pick(group, channel, k)
	if !ok {
		return free, nil
	}
	return Atomic{r.base}.ClaimUnits(ctx, tx, nil, holdID, channel, free) // conditional, as for pools
}

// NewRedisLock returns the redislock claimer. beforeWrite may be nil.
func NewRedisLock(d Dialect, o Options, l Locker, beforeWrite func(context.Context)) RedisLock {
	return RedisLock{base: base{d: d, think: o.Think}, locker: l, beforeWrite: beforeWrite}
}
