package http_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"

	"github.com/holdfast/holdfast"
	hfhttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/sqlite"
)

// The API client is the same Catalog and Booking contract as a store: code
// written against them runs in-process or against a server unchanged.
func ExampleClient() {
	dir, _ := os.MkdirTemp("", "holdfast-example-")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(dir, "holdfast.db"), sqlite.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	srv := httptest.NewServer(hfhttp.NewServer(hfhttp.Config{Store: s})) // open mode: no keys
	defer srv.Close()

	var shop interface {
		holdfast.Catalog
		holdfast.Booking
	} = hfhttp.NewClient(srv.URL, "")
	if _, err := shop.CreatePool(ctx, holdfast.Pool{ID: "gala", Capacity: 1}); err != nil {
		fmt.Println(err)
		return
	}
	h, err := shop.Book(ctx, holdfast.HoldRequest{Holder: "alice", Lines: []holdfast.Line{{Pool: "gala", Quantity: 1}}}, "pay_1")
	fmt.Println(h.Status, err)
	_, err = shop.Hold(ctx, holdfast.HoldRequest{Holder: "bob", Lines: []holdfast.Line{{Pool: "gala", Quantity: 1}}})
	fmt.Println(holdfast.ErrorCode(err))
	// Output:
	// confirmed <nil>
	// sold_out
}
