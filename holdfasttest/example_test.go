package holdfasttest_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/holdfasttest"
	"github.com/holdfast/holdfast/sqlite"
)

// Run the conformance suite against a backend: Open returns a store on a
// fresh database and a way to open another store on the same database
// (another server), for the races. Your own backend (or a wrapper around
// one, such as a cache) passes the same suite. The store must implement
// holdfasttest.Raw for the tests that count in the database.
func ExampleRun() {
	_ = func(t *testing.T) { // in your _test.go file: func TestConformance(t *testing.T)
		holdfasttest.Run(t, holdfasttest.Harness{
			Open: func(t testing.TB) (holdfast.Store, func(testing.TB) holdfast.Store) {
				path := filepath.Join(t.TempDir(), "holdfast.db")
				open := func(t testing.TB) holdfast.Store {
					s, err := sqlite.Open(context.Background(), path, sqlite.Options{})
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { s.Close() })
					return s
				}
				return open(t), open
			},
		})
	}
}
