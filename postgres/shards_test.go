package postgres_test

import (
	"context"
	"testing"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/holdfasttest"
	"github.com/holdfast/holdfast/internal/pgtest"
	"github.com/holdfast/holdfast/postgres"
)

// shardCluster starts a PostgreSQL server of the test's own that allows
// prepared transactions (the shared test server need not), with a
// database in which each test's shards are schemas of their own.
func shardCluster(t *testing.T) func(t testing.TB) []string {
	t.Helper()
	cl := pgtest.StartCluster(t, "max_prepared_transactions=100", "max_connections=400")
	cl.CreateDatabase(context.Background(), "shards")
	return func(t testing.TB) []string {
		return []string{cl.Schema(t, "shards"), cl.Schema(t, "shards"), cl.Schema(t, "shards")}
	}
}

func openShards(t testing.TB, urls []string) *postgres.Shards {
	t.Helper()
	s, err := postgres.OpenShards(context.Background(), urls, postgres.Options{MaxConns: 4})
	if err != nil {
		t.Fatalf("postgres.OpenShards: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// The conformance suite on three shards: every pool and group is its own
// partition, so they spread over the shards, and a hold of several lines
// mostly spans shards (two-phase commit).
func TestShardsConformance(t *testing.T) {
	three := shardCluster(t)
	holdfasttest.Run(t, holdfasttest.Harness{
		Open: func(t testing.TB) (holdfast.Store, func(testing.TB) holdfast.Store) {
			urls := three(t)
			return openShards(t, urls), func(t testing.TB) holdfast.Store { return openShards(t, urls) }
		},
		Unsupported: map[string]string{
			"KeyQuota":      "a key's quota is counted on the catalog shard only",
			"Race/KeyQuota": "a key's quota is counted on the catalog shard only",
		},
	})
}
