package sqlite_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/sqlite"
)

// Open a SQLite file, create a pool of two tickets, hold one and confirm
// it. The last ticket cannot be held twice.
func ExampleOpen() {
	dir, _ := os.MkdirTemp("", "holdfast-example-")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(dir, "holdfast.db"), sqlite.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()

	if _, err := s.CreatePool(ctx, holdfast.Pool{ID: "gala", Name: "Gala night", Capacity: 2}); err != nil {
		fmt.Println(err)
		return
	}
	h, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "alice", Lines: []holdfast.Line{{Pool: "gala", Quantity: 1}}})
	if err != nil {
		fmt.Println(err)
		return
	}
	h, err = s.Confirm(ctx, h.ID, "pay_123")
	fmt.Println(h.Status, err)

	_, err = s.Hold(ctx, holdfast.HoldRequest{Holder: "bob", Lines: []holdfast.Line{{Pool: "gala", Quantity: 2}}})
	fmt.Println(holdfast.ErrorCode(err))
	p, _ := s.Pool(ctx, "gala")
	fmt.Println(p.Available, "available")
	// Output:
	// confirmed <nil>
	// sold_out
	// 1 available
}
