// Package redistest gives tests a Redis and a key prefix of their own, so
// no test sees keys another test or an earlier run left.
//
// The server comes from HOLDFAST_TEST_REDIS (default redis://127.0.0.1:6379/0,
// which `make test` makes sure of). If it does not answer, tests skip with
// a message saying how to run them — except under CI=true, where a missing
// service fails the run.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/holdfast/holdfast/redis"
)

// DefaultURL is the server `make test` starts or finds.
const DefaultURL = "redis://127.0.0.1:6379/0"

// URL returns the test Redis's URL.
func URL() string {
	if u := os.Getenv("HOLDFAST_TEST_REDIS"); u != "" {
		return u
	}
	return DefaultURL
}

// Client returns a client of the test Redis, closed when the test ends.
func Client(t testing.TB) *goredis.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := redis.Open(ctx, URL())
	if err != nil {
		msg := "Redis not reachable at " + URL() + " (" + err.Error() + "); run `make test`, which starts one, or set HOLDFAST_TEST_REDIS"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Prefix returns a fresh key prefix for one test.
func Prefix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "holdfast-test-" + hex.EncodeToString(b[:]) + ":"
}
