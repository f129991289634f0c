package postgres_test

import (
	"context"
	"log"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/postgres"
)

// Open a PostgreSQL database (migrating it, once, however many servers
// start at the same moment) and book a seat. Several servers may share
// the database: nothing is given out twice across them.
func ExampleOpen() {
	ctx := context.Background()
	s, err := postgres.Open(ctx, "postgres://localhost/holdfast", postgres.Options{Strategy: holdfast.Atomic, MaxConns: 32})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	h, err := s.Book(ctx, holdfast.HoldRequest{Holder: "alice", Lines: []holdfast.Line{{Units: []string{"A-12"}}}}, "pay_123")
	if err != nil {
		log.Fatal(err) // holdfast.ErrorCode(err) is unavailable if A-12 is taken
	}
	log.Println("booked", h.ID)
}
