package postgres_test

import (
	"context"
	"strings"
	"testing"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/holdfasttest"
	"github.com/holdfast/holdfast/internal/pgtest"
	"github.com/holdfast/holdfast/internal/redistest"
	"github.com/holdfast/holdfast/postgres"
	"github.com/holdfast/holdfast/redis"
)

var pg *pgtest.DB

func TestMain(m *testing.M) { pgtest.Main(m, &pg) }

func open(t testing.TB, url string, opts postgres.Options) holdfast.Store {
	t.Helper()
	// Small pools: the races open three instances, and tests run side by
	// side on a server with max_connections 100.
	opts.MaxConns = 12
	s, err := postgres.Open(context.Background(), url, opts)
	if err != nil {
		t.Fatalf("postgres.Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// The whole suite, once per strategy (unsafe exists to fail it).
func TestConformance(t *testing.T) {
	variants := []postgres.Options{{Strategy: holdfast.Atomic, NoCoalesce: true}}
	for _, st := range postgres.Strategies {
		if st != holdfast.Unsafe {
			variants = append(variants, postgres.Options{Strategy: st})
		}
	}
	for _, opts := range variants {
		name := string(opts.Strategy)
		if opts.NoCoalesce {
			name += "-no-coalesce"
		}
		t.Run(name, func(t *testing.T) {
			if opts.Strategy == holdfast.RedisLock {
				opts.Locker = redis.NewLocker(redistest.Client(t), redis.Config{Prefix: redistest.Prefix()})
			}
			holdfasttest.Run(t, holdfasttest.Harness{
				Open: func(t testing.TB) (holdfast.Store, func(testing.TB) holdfast.Store) {
					url := pg.Schema(t)
					return open(t, url, opts), func(t testing.TB) holdfast.Store { return open(t, url, opts) }
				},
			})
		})
	}
}

func TestRedisLockNeedsRedis(t *testing.T) {
	_, err := postgres.Open(context.Background(), pg.Schema(t), postgres.Options{Strategy: holdfast.RedisLock})
	if holdfast.ErrorCode(err) != holdfast.CodeUnsupported || !strings.Contains(err.Error(), "--redis") {
		t.Fatalf("Open with strategy redislock and no Redis: got %v, want unsupported", err)
	}
}

func BenchmarkHold(b *testing.B) {
	holdfasttest.Bench(b, holdfasttest.Harness{
		Open: func(t testing.TB) (holdfast.Store, func(testing.TB) holdfast.Store) {
			s, err := postgres.Open(context.Background(), pg.Schema(t), postgres.Options{MaxConns: 32})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s, nil
		},
	})
}
