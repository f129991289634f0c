package http_test

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/holdfasttest"
	hfhttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/internal/testrig/pgtest"
	"github.com/holdfast/holdfast/internal/testrig/sqlitetest"
	"github.com/holdfast/holdfast/postgres"
	"github.com/holdfast/holdfast/sqlite"
)

var pg *pgtest.DB

func TestMain(m *testing.M) { pgtest.Main(m, &pg) }

func openSQLite(t testing.TB, path string, opts ...sqlite.Options) holdfast.Store {
	t.Helper()
	var o sqlite.Options
	if len(opts) > 0 {
		o = opts[0]
	}
	s, err := sqlite.Open(context.Background(), sqlitetest.Migrated(t, path), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openPostgres(t testing.TB, url string) holdfast.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), url, postgres.Options{MaxConns: 12})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// serve starts a real HTTP server for s on a loopback port.
func serve(t testing.TB, s holdfast.Store, cfg hfhttp.Config) *httptest.Server {
	t.Helper()
	cfg.Store = s
	srv := httptest.NewServer(hfhttp.NewServer(cfg))
	t.Cleanup(srv.Close)
	return srv
}

func overHTTP(t testing.TB, s holdfast.Store) holdfast.Store {
	// A long deadline: three servers on one SQLite file share one writer,
	// and the races queue hundreds of requests on it under -race.
	srv := serve(t, s, hfhttp.Config{RequestTimeout: time.Minute})
	return holdfasttest.OverAPI(hfhttp.NewClient(srv.URL, ""), s)
}

// The whole conformance suite, races included, through real HTTP servers:
// each "instance" of a race is its own server on the shared database.
func TestConformanceOverHTTP(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		holdfasttest.Run(t, holdfasttest.Harness{Remote: true, Capabilities: []holdfast.Capability{holdfast.CapLayouts},
			Open: func(t testing.TB) (holdfast.Store, func(testing.TB) holdfast.Store) {
				path := filepath.Join(t.TempDir(), "holdfast.db")
				return overHTTP(t, openSQLite(t, path)), func(t testing.TB) holdfast.Store { return overHTTP(t, openSQLite(t, path)) }
			}})
	})
	t.Run("postgres", func(t *testing.T) {
		holdfasttest.Run(t, holdfasttest.Harness{Remote: true, Capabilities: []holdfast.Capability{holdfast.CapLayouts},
			Open: func(t testing.TB) (holdfast.Store, func(testing.TB) holdfast.Store) {
				url := pg.Migrated(t)
				return overHTTP(t, openPostgres(t, url)), func(t testing.TB) holdfast.Store { return overHTTP(t, openPostgres(t, url)) }
			}})
	})
	// Three shards behind each server (schemas of a server of the test's
	// own, which allows prepared transactions): every request's key
	// recorded on the shard of its change, holds across shards answered
	// and replayed whole.
	t.Run("postgres-shards", func(t *testing.T) {
		cl := pgtest.StartCluster(t, "max_prepared_transactions=100", "max_connections=400")
		cl.CreateDatabase(context.Background(), "shards")
		holdfasttest.Run(t, holdfasttest.Harness{Remote: true, Capabilities: []holdfast.Capability{holdfast.CapLayouts},
			Open: func(t testing.TB) (holdfast.Store, func(testing.TB) holdfast.Store) {
				urls := []string{cl.Migrated(t, "shards"), cl.Migrated(t, "shards"), cl.Migrated(t, "shards")}
				return overHTTP(t, openShards(t, urls)), func(t testing.TB) holdfast.Store { return overHTTP(t, openShards(t, urls)) }
			},
			Unsupported: map[string]string{
				"KeyQuota":              "a key's quota is counted on the catalog shard only",
				"Race/KeyQuota":         "a key's quota is counted on the catalog shard only",
				"Payments":              "payments are not recorded across shards yet",
				"Race/PaymentVsSweeper": "payments are not recorded across shards yet",
				"BatchConfirmsPaid":     "payments are not recorded across shards yet",
			},
			// Every race runs on the shards themselves (the shard package's
			// conformance) and over HTTP on one database (above); here,
			// those of what the wire adds to shards: changes batched beside
			// claims, each answered under its key, the feed merged across
			// shards, and the claim's own storm.
			Races: []string{"PoolNoOversell", "ChangesWithClaims", "EventFeedSkipsNothing"}})
	})
}

func openShards(t testing.TB, urls []string) holdfast.Store {
	t.Helper()
	s, err := postgres.OpenShards(context.Background(), urls, postgres.Options{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
