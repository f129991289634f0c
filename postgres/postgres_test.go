package postgres_test

import (
	"context"
	"os"
	"testing"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/holdfasttest"
	"github.com/holdfast/holdfast/internal/pgtest"
	"github.com/holdfast/holdfast/postgres"
)

var pg *pgtest.DB

func TestMain(m *testing.M) {
	pg = pgtest.New()
	code := m.Run()
	pg.Close()
	os.Exit(code)
}

func open(t testing.TB, url string) holdfast.Store {
	t.Helper()
	// Small pools: the races open three instances, and tests run side by
	// side on a server with max_connections 100.
	s, err := postgres.Open(context.Background(), url, postgres.Options{MaxConns: 12})
	if err != nil {
		t.Fatalf("postgres.Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	holdfasttest.Run(t, holdfasttest.Harness{
		Open: func(t testing.TB) (holdfast.Store, func(testing.TB) holdfast.Store) {
			url := pg.Schema(t)
			return open(t, url), func(t testing.TB) holdfast.Store { return open(t, url) }
		},
	})
}

func TestUnsupportedStrategy(t *testing.T) {
	_, err := postgres.Open(context.Background(), pg.Schema(t), postgres.Options{Strategy: holdfast.Unsafe})
	if holdfast.ErrorCode(err) != holdfast.CodeUnsupported {
		t.Fatalf("Open with strategy unsafe: got %v, want unsupported", err)
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
