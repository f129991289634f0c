package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/holdfasttest"
	"github.com/holdfast/holdfast/sqlite"
)

func open(t testing.TB, path string) holdfast.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	holdfasttest.Run(t, holdfasttest.Harness{
		Open: func(t testing.TB) (holdfast.Store, func(testing.TB) holdfast.Store) {
			path := filepath.Join(t.TempDir(), "holdfast.db")
			return open(t, path), func(t testing.TB) holdfast.Store { return open(t, path) }
		},
	})
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
