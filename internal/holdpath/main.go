// Command holdpath makes one plain hold on a fresh SQLite store and
// writes what that hold ran, as the counters of a coverage build cleared
// just before it, to the directory it is given. TestHoldPath (and
// scripts/holdpath.sh, which runs it) turns them into the functions and
// files a hold passes through: docs/design.md's "A hold's way through the
// code" is read off it, and the test keeps it true.
//
// Build it with go build -cover -covermode=atomic; a build without
// coverage says so and fails.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/coverage"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/sqlite"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: holdpath DIR (a coverage build, -covermode=atomic)")
		os.Exit(2)
	}
	if err := run(context.Background(), os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "holdpath:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out string) error {
	dir, err := os.MkdirTemp("", "holdpath-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	s, err := sqlite.Open(ctx, filepath.Join(dir, "holdfast.db"), sqlite.Options{})
	if err != nil {
		return err
	}
	defer s.Close()
	if _, err := s.CreatePool(ctx, holdfast.Pool{ID: "gala", Name: "Gala", Capacity: 100}); err != nil {
		return err
	}
	hold := func(holder string) error {
		_, err := s.Hold(ctx, holdfast.HoldRequest{Holder: holder, Lines: []holdfast.Line{{Pool: "gala", Quantity: 1}}})
		return err
	}
	// Warm: the first holds read what later ones find cached (the
	// guarded pools' map, prepared statements).
	for range 3 {
		if err := hold("warm"); err != nil {
			return err
		}
	}
	if err := coverage.ClearCounters(); err != nil {
		return err
	}
	if err := hold("alice"); err != nil {
		return err
	}
	if err := coverage.WriteMetaDir(out); err != nil {
		return err
	}
	return coverage.WriteCountersDir(out)
}
