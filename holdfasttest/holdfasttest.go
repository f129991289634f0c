// Package holdfasttest is the conformance suite every holdfast backend
// passes: each behaviour and guarantee of holdfast.Store, written once and
// run against SQLite and PostgreSQL (and, as they come, every strategy).
//
// A backend's test calls Run with a Harness that opens stores on fresh
// databases. Concurrency tests use several stores on one database, as
// several servers would, and after each one the suite counts in the
// database directly, not through the engine's counters.
package holdfasttest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/internal/rawsql"
)

// Harness opens stores for the suite.
type Harness struct {
	// Open returns a store on a fresh, empty database, and a function that
	// opens another store on the same database (another server instance).
	// Every store is closed by t.Cleanup.
	Open func(t testing.TB) (holdfast.Store, func(t testing.TB) holdfast.Store)
	// Remote marks a store reached through the HTTP API: the tests of
	// store internals (idempotency records, key storage, hold owners),
	// which the API covers in its own tests, are skipped.
	Remote bool
	// Unsupported names the suite's tests of what the backend does not
	// offer, each with the reason (said in the test's output): they are
	// skipped. Keep it short, and say it in the backend's documentation.
	Unsupported map[string]string
	// ClaimsOnly marks a variant that differs from one the suite runs in
	// full only in how it claims (a strategy other than the default):
	// only the tests that reach a claim — the claim shapes, taking
	// capacity again, waitlist offers — and the races of the claim itself
	// run. The engine around the claim (validation, events, idempotency
	// records, keys, rooms, payments, retention) takes the same path
	// whatever the strategy, and runs once per backend, as do the storms
	// of features built on the claim (see engineOnly).
	ClaimsOnly bool
	// Capabilities are the optional contracts the backend promises (see
	// holdfast.Capability): the suite checks its stores declare exactly
	// these. Nil checks only that what they declare is what they
	// implement.
	Capabilities []holdfast.Capability
	// NoRaces leaves the races out: another harness of the same backend
	// runs them (the suite on a pool of one connection, whose races would
	// only queue).
	NoRaces bool
	// Races, when set, names the only races this harness runs (without
	// "Race/"): the others run on another harness of the same store, and
	// these are the ones that test what this one adds (a transport over
	// a store whose races run on the store itself).
	Races []string
}

// Raw is what the suite needs from a store to reach past the engine: to make
// time pass for a hold, to attempt buggy writes, and to count rows. SQL uses
// $1 placeholders and the schema's table names. A backend outside this
// module implements it on its store; holdfast's own stores keep it out of
// their API and are reached through internal/rawsql.
type Raw interface {
	Exec(ctx context.Context, sql string, args ...any) error
	QueryInt(ctx context.Context, sql string, args ...any) (int64, error)
}

func raw(t testing.TB, s holdfast.Store) Raw {
	t.Helper()
	r, ok := rawsql.Of(s)
	if !ok {
		t.Fatalf("%T does not implement holdfasttest.Raw", s)
	}
	return r
}

// API is the part of a store a transport carries: the catalog, bookings
// and the feed. http.Client implements it.
type API interface {
	holdfast.Catalog
	holdfast.Allocations
	holdfast.Payments
	holdfast.Booking
	holdfast.Feed
}

// OverAPI returns a Store whose catalog, bookings and feed go through api
// (an HTTP client on a server for local, say), and whose operations,
// idempotency records, keys, webhooks and raw SQL go straight to local: the suite
// run through a transport, with the database still in reach for counting.
func OverAPI(api API, local holdfast.Store) holdfast.Store {
	r, _ := rawsql.Of(local)
	return overAPI{API: api, Operations: local, IdempotencyStore: local, KeyStore: local, WebhookStore: local, RoomStore: local, WaitlistStore: local, raw: r}
}

type overAPI struct {
	API
	holdfast.Operations
	holdfast.IdempotencyStore
	holdfast.KeyStore
	holdfast.WebhookStore
	holdfast.RoomStore
	holdfast.WaitlistStore
	raw Raw
}

func (o overAPI) Close() error { return nil }

// Capabilities are the transport's: of the optional contracts, overAPI
// carries layouts.
func (o overAPI) Capabilities() []holdfast.Capability {
	if holdfast.Declares(o.API, holdfast.CapLayouts) {
		return []holdfast.Capability{holdfast.CapLayouts}
	}
	return nil
}

// GroupLayout reads a layout through the transport.
func (o overAPI) GroupLayout(ctx context.Context, group string) (*holdfast.Layout, error) {
	l, ok := o.API.(holdfast.GroupLayouts)
	if !ok {
		return nil, holdfast.Errorf(holdfast.CodeUnsupported, "%T reads no layouts", o.API)
	}
	return l.GroupLayout(ctx, group)
}
func (o overAPI) Exec(ctx context.Context, sql string, args ...any) error {
	return o.raw.Exec(ctx, sql, args...)
}
func (o overAPI) QueryInt(ctx context.Context, sql string, args ...any) (int64, error) {
	return o.raw.QueryInt(ctx, sql, args...)
}

// MustCreatePool creates a pool or fails the test.
func MustCreatePool(tb testing.TB, s holdfast.Store, id string, capacity, limit int64) holdfast.Pool {
	tb.Helper()
	p, err := s.CreatePool(context.Background(), holdfast.Pool{ID: id, Name: id, Capacity: capacity, PerHolderLimit: limit})
	if err != nil {
		tb.Fatalf("CreatePool(%s): %v", id, err)
	}
	return p
}

// MustCreateGroup creates a group with units or fails the test.
func MustCreateGroup(tb testing.TB, s holdfast.Store, id string, reusable bool, units ...string) {
	tb.Helper()
	ctx := context.Background()
	if _, err := s.CreateGroup(ctx, holdfast.Group{ID: id, Name: id, Reusable: reusable}); err != nil {
		tb.Fatalf("CreateGroup(%s): %v", id, err)
	}
	if len(units) > 0 {
		if err := s.AddUnits(ctx, id, units); err != nil {
			tb.Fatalf("AddUnits(%s): %v", id, err)
		}
	}
}

// MustCreateKey creates a client key named name (with a throwaway hash)
// and returns its id.
func MustCreateKey(tb testing.TB, s holdfast.Store, name string) string {
	tb.Helper()
	id := fmt.Sprintf("key%d", time.Now().UnixNano())
	if _, err := s.CreateKey(context.Background(), holdfast.APIKey{ID: id, Name: name, Role: holdfast.RoleClient, Hash: []byte{0}}); err != nil {
		tb.Fatalf("CreateKey(%s): %v", name, err)
	}
	return id
}

// MustHold makes a hold or fails the test.
func MustHold(tb testing.TB, s holdfast.Store, holder string, lines ...holdfast.Line) holdfast.Hold {
	tb.Helper()
	h, err := s.Hold(context.Background(), holdfast.HoldRequest{Holder: holder, Lines: lines})
	if err != nil {
		tb.Fatalf("Hold(%s, %+v): %v", holder, lines, err)
	}
	return h
}

// MustPool reads a pool or fails the test.
func MustPool(tb testing.TB, s holdfast.Store, id string) holdfast.Pool {
	tb.Helper()
	p, err := s.Pool(context.Background(), id)
	if err != nil {
		tb.Fatalf("Pool(%s): %v", id, err)
	}
	return p
}

// MustAuditClean runs the store's audit and fails the test on any difference.
func MustAuditClean(tb testing.TB, s holdfast.Store) holdfast.AuditReport {
	tb.Helper()
	r, err := s.Audit(context.Background())
	if err != nil {
		tb.Fatalf("Audit: %v", err)
	}
	if !r.OK() || r.Oversold != 0 || r.DoubleBooked != 0 {
		tb.Fatalf("audit found differences: oversold %d, double-booked %d:\n%v", r.Oversold, r.DoubleBooked, r.Differences)
	}
	MustNotFailBatches(tb, s)
	return r
}

// MustNotFailBatches fails the test if a coalesced batch failed whole on
// s: its claims would still be right (they go one by one), which is
// exactly why only this check can see it.
func MustNotFailBatches(tb testing.TB, s holdfast.Store) {
	tb.Helper()
	if st, ok := s.(holdfast.StatsReporter); ok {
		if n := st.Stats().BatchFailures; n != 0 {
			tb.Fatalf("%d coalesced batches failed", n)
		}
	}
}

// MustExpire makes a hold's expiry pass now, as if its TTL had run out,
// by moving its expires_at into the past in the database.
func MustExpire(tb testing.TB, s holdfast.Store, holdIDs ...string) {
	tb.Helper()
	for _, id := range holdIDs {
		if err := raw(tb, s).Exec(context.Background(), `UPDATE holds SET expires_at = holdfast_now_ms() - 1000 WHERE id = $1`, id); err != nil {
			tb.Fatalf("expire %s: %v", id, err)
		}
	}
}

// MustExec runs a statement directly against the database.
func MustExec(tb testing.TB, s holdfast.Store, sql string, args ...any) {
	tb.Helper()
	if err := raw(tb, s).Exec(context.Background(), sql, args...); err != nil {
		tb.Fatalf("exec %q: %v", sql, err)
	}
}

// MustCount runs a counting query directly against the database.
func MustCount(tb testing.TB, s holdfast.Store, sql string, args ...any) int64 {
	tb.Helper()
	n, err := raw(tb, s).QueryInt(context.Background(), sql, args...)
	if err != nil {
		tb.Fatalf("count %q: %v", sql, err)
	}
	return n
}

// wantCode fails the test unless err carries code (and line, if line >= 0).
func wantCode(tb testing.TB, err error, code holdfast.Code, line int) {
	tb.Helper()
	if got := holdfast.ErrorCode(err); got != code {
		tb.Fatalf("error %v: got code %q, want %q", err, got, code)
	}
	if line >= 0 {
		if got := holdfast.ErrorLine(err); got != line {
			tb.Fatalf("error %v: got line %d, want %d", err, got, line)
		}
	}
	if code != "" && !errors.Is(err, &holdfast.Error{Code: code}) {
		tb.Fatalf("errors.Is(%v, %s) = false", err, code)
	}
}

func ctxT(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	tb.Cleanup(cancel)
	return ctx
}
