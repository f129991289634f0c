package holdfast_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/service"
	"github.com/holdfast/holdfast/sqlite"
)

// The library, as README.md's "Using holdfast from Go" shows it: the
// code between the markers is the README's, word for word
// (TestReadmeLibraryIsTheExample).
func Example_library() {
	dir, _ := os.MkdirTemp("", "holdfast-example-")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "holdfast.db")
	// README:begin
	ctx := context.Background()
	// SQLite, no server needed; postgres.Open(ctx, "postgres://…", postgres.Options{}) for several app servers.
	s, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		panic(err)
	}
	defer s.Close()

	// What holdfast serve runs beside its API: the sweeper (expired holds
	// are freed for the next claim anyway; it writes their events), the
	// invariant monitor, webhooks, waiting rooms and waitlists.
	bg := service.Background(s, service.Config{})
	if err := bg.Start(ctx); err != nil {
		panic(err)
	}
	defer bg.Stop(ctx)

	if _, err := s.CreatePool(ctx, holdfast.Pool{ID: "gala", Capacity: 3, PerHolderLimit: 2}); err != nil {
		panic(err)
	}
	line := []holdfast.Line{{Pool: "gala", Quantity: 2}}
	h, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "alice", Lines: line})
	if err != nil {
		panic(err)
	}
	h, err = s.Confirm(ctx, h.ID, "pay_123")
	fmt.Println(h.Status, err)

	other, _ := s.Hold(ctx, holdfast.HoldRequest{Holder: "bob", Lines: []holdfast.Line{{Pool: "gala", Quantity: 1}}})
	_, err = s.Hold(ctx, holdfast.HoldRequest{Holder: "carol", Lines: line})
	var refusal *holdfast.Error
	if errors.Is(err, holdfast.ErrSoldOut) && errors.As(err, &refusal) {
		fmt.Println(holdfast.CodeOf(err), "on line", refusal.Line)
	}
	if _, err := s.Release(ctx, other.ID); err != nil {
		panic(err)
	}
	_, err = s.Hold(ctx, holdfast.HoldRequest{Holder: "alice", Lines: line})
	fmt.Println(holdfast.CodeOf(err)) // alice has 2 already: her limit
	// README:end

	// Output:
	// confirmed <nil>
	// sold_out on line 0
	// limit_exceeded
}
