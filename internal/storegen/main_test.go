package main

import "testing"

// The stores' generated methods follow the contract: a method added to
// holdfast.Store (or its documentation changed) without running the
// generator fails here.
func TestStoreMethodsUpToDate(t *testing.T) {
	stale, err := run("../..", false)
	if err != nil {
		t.Fatal(err)
	}
	if len(stale) > 0 {
		t.Fatalf("out of date: %v (run go run ./internal/storegen)", stale)
	}
}
