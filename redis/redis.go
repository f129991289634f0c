// Package redis is holdfast's Redis adapter: the lock service of the
// redislock strategy, with fencing tokens.
//
// The lock is bsm/redislock's (SET key token NX PX ttl, released only by
// its holder with a compare-and-delete script, waited for with backoff
// until the caller's deadline instead of refused). A Redis lock can expire
// while its holder is paused, so each lock also hands out a fencing token
// — INCR on a counter per key, so tokens only grow — which the database
// checks on the claim's rows (see internal/sqlstore's RedisLock).
package redis

import (
	"cmp"
	"context"
	"errors"
	"time"

	"github.com/bsm/redislock"
	goredis "github.com/redis/go-redis/v9"
)

// Open connects to Redis at url (redis://host:port/db) and checks it answers.
func Open(ctx context.Context, url string) (*goredis.Client, error) {
	opt, err := goredis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	c := goredis.NewClient(opt)
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Locker locks resources in Redis and hands out fencing tokens.
type Locker struct {
	client goredis.UniversalClient
	locks  *redislock.Client
	ttl    time.Duration
	prefix string
}

// Config configures a Locker. The zero value is the documented default.
type Config struct {
	// TTL is how long a lock lives if its holder stalls (default 5 s).
	TTL time.Duration
	// Prefix namespaces the keys (default "holdfast:").
	Prefix string
}

// NewLocker returns a Locker on client.
func NewLocker(client goredis.UniversalClient, cfg Config) *Locker {
	return &Locker{client: client, locks: redislock.New(client), ttl: cmp.Or(cfg.TTL, 5*time.Second), prefix: cmp.Or(cfg.Prefix, "holdfast:")}
}

// Lock takes the lock on key, waiting (exponential backoff, 1–8 ms: a short poll hands a contended lock on quickly) until
// ctx's deadline, and returns a fencing token and the unlock function.
func (l *Locker) Lock(ctx context.Context, key string) (int64, func(), error) {
	lock, err := l.locks.Obtain(ctx, l.prefix+"lock:"+key, l.ttl, &redislock.Options{
		RetryStrategy: redislock.ExponentialBackoff(time.Millisecond, 8*time.Millisecond),
	})
	if err != nil {
		return 0, nil, err
	}
	unlock := func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		// ErrLockNotHeld: it expired and someone else may hold it now;
		// the compare-and-delete left theirs alone.
		if err := lock.Release(ctx); err != nil && !errors.Is(err, redislock.ErrLockNotHeld) {
			_ = err // the lock expires on its own; nothing more to do
		}
	}
	fence, err := nextFence.Run(ctx, l.client, []string{l.prefix + "fence:" + key}, fenceTTL.Milliseconds()).Int64()
	if err != nil {
		unlock()
		return 0, nil, err
	}
	return fence, unlock, nil
}

// fenceTTL is how long a fencing counter outlives its last use. A counter
// that expires is a counter lost, which fencing already survives (as after
// a Redis flush): the row keeps the last token it saw, refuses a smaller
// one, and Raise puts the counter past it. Without a lifetime, every id
// ever locked would keep a key for ever.
const fenceTTL = 24 * time.Hour

var nextFence = goredis.NewScript(`
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return n`)

var raise = goredis.NewScript(`
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
return 0`)

// Raise makes key's next fencing token larger than floor.
func (l *Locker) Raise(ctx context.Context, key string, floor int64) error {
	return raise.Run(ctx, l.client, []string{l.prefix + "fence:" + key}, floor, fenceTTL.Milliseconds()).Err()
}

// TTL is the lock's time to live.
func (l *Locker) TTL() time.Duration { return l.ttl }
