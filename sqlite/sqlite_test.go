package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/holdfasttest"
	"github.com/holdfast/holdfast/sqlite"
)

func open(t testing.TB, path string, opts ...sqlite.Options) holdfast.Store {
	t.Helper()
	var o sqlite.Options
	if len(opts) > 0 {
		o = opts[0]
	}
	s, err := sqlite.Open(context.Background(), path, o)
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// The whole suite, once per strategy (unsafe exists to fail it).
func TestConformance(t *testing.T) {
	variants := []sqlite.Options{{Strategy: holdfast.Atomic, NoCoalesce: true}}
	for _, st := range sqlite.Strategies {
		if st != holdfast.Unsafe {
			variants = append(variants, sqlite.Options{Strategy: st})
		}
	}
	for _, o := range variants {
		name := string(o.Strategy)
		if o.NoCoalesce {
			name += "-no-coalesce"
		}
		t.Run(name, func(t *testing.T) {
			holdfasttest.Run(t, holdfasttest.Harness{
				Open: func(t testing.TB) (holdfast.Store, func(testing.TB) holdfast.Store) {
					path := filepath.Join(t.TempDir(), "holdfast.db")
					return open(t, path, o), func(t testing.TB) holdfast.Store { return open(t, path, o) }
				},
			})
		})
	}
}

func TestUnsupportedStrategy(t *testing.T) {
	_, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "x.db"), sqlite.Options{Strategy: holdfast.Advisory})
	if holdfast.ErrorCode(err) != holdfast.CodeUnsupported {
		t.Fatalf("Open with strategy advisory: got %v, want unsupported", err)
	}
}

func BenchmarkHold(b *testing.B) {
	holdfasttest.Bench(b, holdfasttest.Harness{
		Open: func(t testing.TB) (holdfast.Store, func(testing.TB) holdfast.Store) {
			path := filepath.Join(t.TempDir(), "holdfast.db")
			return open(t, path), func(t testing.TB) holdfast.Store { return open(t, path) }
		},
	})
}
