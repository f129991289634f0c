package postgres_test

import (
	"context"
	"fmt"
	"net/url"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/holdfasttest"
	"github.com/holdfast/holdfast/internal/pgtest"
	"github.com/holdfast/holdfast/postgres"
)

// shardCluster is a PostgreSQL server of the test's own that allows
// prepared transactions (the shared test server need not), with a
// database in which each test's shards are schemas of their own.
type shardCluster struct {
	cl      *pgtest.Cluster
	schemas atomic.Int64
}

func startShardCluster(t *testing.T) *shardCluster {
	t.Helper()
	cl := pgtest.StartCluster(t, "max_prepared_transactions=100", "max_connections=400")
	cl.CreateDatabase(context.Background(), "shards")
	return &shardCluster{cl: cl}
}

// urls makes n fresh schemas and returns a URL for each.
func (sc *shardCluster) urls(t testing.TB, n int) []string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, sc.cl.URL("shards"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var out []string
	for range n {
		name := fmt.Sprintf("s%d", sc.schemas.Add(1))
		if _, err := conn.Exec(ctx, "CREATE SCHEMA "+name); err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse(sc.cl.URL("shards"))
		q := u.Query()
		q.Set("search_path", name)
		u.RawQuery = q.Encode()
		out = append(out, u.String())
	}
	return out
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
	sc := startShardCluster(t)
	holdfasttest.Run(t, holdfasttest.Harness{
		Open: func(t testing.TB) (holdfast.Store, func(testing.TB) holdfast.Store) {
			urls := sc.urls(t, 3)
			return openShards(t, urls), func(t testing.TB) holdfast.Store { return openShards(t, urls) }
		},
		Unsupported: map[string]string{
			"KeyQuota":      "a key's quota is counted on the catalog shard only",
			"Race/KeyQuota": "a key's quota is counted on the catalog shard only",
		},
	})
}
