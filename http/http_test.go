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
	"github.com/holdfast/holdfast/internal/pgtest"
	"github.com/holdfast/holdfast/postgres"
	"github.com/holdfast/holdfast/sqlite"
)

var pg *pgtest.DB

func TestMain(m *testing.M) { pgtest.Main(m, &pg) }

func openSQLite(t testing.TB, path string) holdfast.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), path, sqlite.Options{})
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

// remote is a store reached over HTTP: the API through the Client, and,
// for what the API does not offer (the sweeper, the audit, raw SQL for the
// suite), the store behind the server.
type remote struct {
	*hfhttp.Client
	local holdfast.Store
}

func (r remote) ExpireDue(ctx context.Context, limit int) (int, error) {
	return r.local.ExpireDue(ctx, limit)
}
func (r remote) Audit(ctx context.Context) (holdfast.AuditReport, error) { return r.local.Audit(ctx) }
func (r remote) Close() error                                            { return nil }
func (r remote) BeginIdempotent(ctx context.Context, scope, key, fp string, stale time.Duration) (string, *holdfast.StoredResponse, error) {
	return r.local.BeginIdempotent(ctx, scope, key, fp, stale)
}
func (r remote) FinishIdempotent(ctx context.Context, scope, key, fp, token string, resp holdfast.StoredResponse) error {
	return r.local.FinishIdempotent(ctx, scope, key, fp, token, resp)
}
func (r remote) AbandonIdempotent(ctx context.Context, scope, key, token string) error {
	return r.local.AbandonIdempotent(ctx, scope, key, token)
}
func (r remote) PurgeIdempotency(ctx context.Context) (int, error) {
	return r.local.PurgeIdempotency(ctx)
}
func (r remote) CreateKey(ctx context.Context, k holdfast.APIKey) (holdfast.APIKey, error) {
	return r.local.CreateKey(ctx, k)
}
func (r remote) APIKey(ctx context.Context, id string) (holdfast.APIKey, error) {
	return r.local.APIKey(ctx, id)
}
func (r remote) Exec(ctx context.Context, sql string, args ...any) error {
	return r.local.(holdfasttest.Raw).Exec(ctx, sql, args...)
}
func (r remote) QueryInt(ctx context.Context, sql string, args ...any) (int64, error) {
	return r.local.(holdfasttest.Raw).QueryInt(ctx, sql, args...)
}

var _ holdfast.Store = remote{}

func overHTTP(t testing.TB, s holdfast.Store) holdfast.Store {
	// A long deadline: three servers on one SQLite file share one writer,
	// and the races queue hundreds of requests on it under -race.
	srv := serve(t, s, hfhttp.Config{RequestTimeout: time.Minute})
	return remote{Client: hfhttp.NewClient(srv.URL, ""), local: s}
}

// The whole conformance suite, races included, through real HTTP servers:
// each "instance" of a race is its own server on the shared database.
func TestConformanceOverHTTP(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		holdfasttest.Run(t, holdfasttest.Harness{Remote: true,
			Open: func(t testing.TB) (holdfast.Store, func(testing.TB) holdfast.Store) {
				path := filepath.Join(t.TempDir(), "holdfast.db")
				return overHTTP(t, openSQLite(t, path)), func(t testing.TB) holdfast.Store { return overHTTP(t, openSQLite(t, path)) }
			}})
	})
	t.Run("postgres", func(t *testing.T) {
		holdfasttest.Run(t, holdfasttest.Harness{Remote: true,
			Open: func(t testing.TB) (holdfast.Store, func(testing.TB) holdfast.Store) {
				url := pg.Schema(t)
				return overHTTP(t, openPostgres(t, url)), func(t testing.TB) holdfast.Store { return overHTTP(t, openPostgres(t, url)) }
			}})
	})
}
