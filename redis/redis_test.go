package redis_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/holdfasttest"
	"github.com/holdfast/holdfast/internal/testrig/pgtest"
	"github.com/holdfast/holdfast/internal/testrig/redistest"
	"github.com/holdfast/holdfast/postgres"
	"github.com/holdfast/holdfast/redis"
)

var pg *pgtest.DB

func TestMain(m *testing.M) { pgtest.Main(m, &pg) }

func TestLockerTokensGrow(t *testing.T) {
	l := redis.NewLocker(redistest.Client(t), redis.Config{Prefix: redistest.Prefix(), TTL: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f1, unlock, err := l.Lock(ctx, "pool:p")
	if err != nil {
		t.Fatal(err)
	}
	// Held: a second taker waits until its deadline, then gives up.
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	if _, _, err := l.Lock(short, "pool:p"); err == nil {
		t.Fatal("took a held lock")
	}
	cancelShort()
	unlock()
	f2, unlock2, err := l.Lock(ctx, "pool:p")
	if err != nil {
		t.Fatal(err)
	}
	unlock2()
	if f2 <= f1 {
		t.Fatalf("tokens %d then %d: must grow", f1, f2)
	}
	// After the counter is lost (a Redis flush), Raise puts it past the
	// database's last token.
	if err := l.Raise(ctx, "pool:p", 1000); err != nil {
		t.Fatal(err)
	}
	f3, unlock3, err := l.Lock(ctx, "pool:p")
	if err != nil {
		t.Fatal(err)
	}
	unlock3()
	if f3 <= 1000 {
		t.Fatalf("token after Raise(1000): %d", f3)
	}
}

// The pause scenario: holder A takes the lock and stalls past its TTL; B
// takes the lock and commits; A wakes and tries to write. A's write must
// be refused by the database's fencing check, and nothing oversold.
func TestFencingRefusesAStalledHolder(t *testing.T) {
	client := redistest.Client(t)
	prefix := redistest.Prefix()
	const ttl = 300 * time.Millisecond
	url := pg.Migrated(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	aHasLock := make(chan struct{})
	bDone := make(chan struct{})
	var once sync.Once
	stall := func(ctx context.Context) {
		once.Do(func() {
			close(aHasLock)
			<-bDone // A is paused (a GC pause, a stalled VM) until B has committed
		})
	}
	open := func(hook func(context.Context)) *postgres.Store {
		s, err := postgres.Open(ctx, url, postgres.Options{Strategy: holdfast.RedisLock, MaxConns: 4, BeforeWrite: hook,
			Locker: redis.NewLocker(client, redis.Config{Prefix: prefix, TTL: ttl})})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := open(stall), open(nil)
	holdfasttest.MustCreatePool(t, a, "last", 1, 0)

	aErr := make(chan error, 1)
	go func() {
		_, err := a.Hold(ctx, holdfast.HoldRequest{Holder: "a", Lines: []holdfast.Line{{Pool: "last", Quantity: 1}}})
		aErr <- err
	}()
	<-aHasLock
	// B waits for the lock until A's expires, then takes it (a newer token)
	// and commits.
	if _, err := b.Hold(ctx, holdfast.HoldRequest{Holder: "b", Lines: []holdfast.Line{{Pool: "last", Quantity: 1}}}); err != nil {
		t.Fatalf("B: %v", err)
	}
	close(bDone)
	err := <-aErr
	// A's stale write was refused (a retry), and the retry, with a fresh
	// lock and token, finds the pool sold out.
	if holdfast.ErrorCode(err) != holdfast.CodeSoldOut {
		t.Fatalf("A after waking: %v, want sold_out", err)
	}
	if r := a.Stats().Retries; r != 1 {
		t.Fatalf("A's claim was retried %d times, want 1 (its fenced write refused)", r)
	}
	p := holdfasttest.MustPool(t, a, "last")
	if p.Held != 1 {
		t.Fatalf("pool %+v, want exactly B's 1 held", p)
	}
	if n := holdfasttest.MustCount(t, a, `SELECT COUNT(*) FROM holds`); n != 1 {
		t.Fatalf("holds: %d, want 1", n)
	}
	holdfasttest.MustAuditClean(t, a)
	var _ postgres.Locker = (*redis.Locker)(nil)
}

// A hold naming ids that do not exist leaves no key in Redis (it locked
// nothing), fencing counters have a lifetime, and one claim locks at most
// a bounded number of resources.
func TestRedisKeysAreBounded(t *testing.T) {
	client := redistest.Client(t)
	prefix := redistest.Prefix()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := postgres.Open(ctx, pg.Migrated(t), postgres.Options{Strategy: holdfast.RedisLock, MaxConns: 4,
		Locker: redis.NewLocker(client, redis.Config{Prefix: prefix, TTL: time.Second})})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	holdfasttest.MustCreateGroup(t, s, "hall", false, "A-1")
	keys := func() []string {
		k, err := client.Keys(ctx, prefix+"*").Result()
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	for i := 0; i < 1000; i += 100 {
		var units []string
		for j := range 100 {
			units = append(units, fmt.Sprintf("ghost-%d", i+j))
		}
		_, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "x", Lines: []holdfast.Line{{Units: units}}})
		if holdfast.ErrorCode(err) != holdfast.CodeNotFound {
			t.Fatalf("hold of unknown units: %v, want not_found", err)
		}
	}
	if k := keys(); len(k) != 0 {
		t.Fatalf("1,000 unknown units left %d keys in Redis: %v", len(k), k[:min(len(k), 5)])
	}
	if _, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "x", Lines: []holdfast.Line{{Units: []string{"A-1"}}}}); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys() {
		if ttl, err := client.PTTL(ctx, k).Result(); err != nil || ttl <= 0 {
			t.Errorf("key %s lives for ever (PTTL %v, %v)", k, ttl, err)
		}
	}
	var lines []holdfast.Line
	for i := range 3 {
		var units []string
		for j := range 100 {
			units = append(units, fmt.Sprintf("u-%d-%d", i, j))
		}
		lines = append(lines, holdfast.Line{Units: units})
	}
	_, err = s.Hold(ctx, holdfast.HoldRequest{Holder: "x", Lines: lines})
	if holdfast.ErrorCode(err) != holdfast.CodeInvalid {
		t.Fatalf("a hold naming 300 units with redislock: %v, want invalid", err)
	}
}
