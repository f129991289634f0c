package holdfasttest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/holdfast/holdfast"
)

// engineOnly names the tests that never reach a strategy's claim, or reach
// it only as any other test does: a ClaimsOnly variant leaves them out
// (see Harness.ClaimsOnly).
var engineOnly = map[string]bool{
	"Pools": true, "PoolValidation": true, "Groups": true, "InvalidTransitions": true, "Extend": true,
	"HoldValidation": true, "Events": true, "HoldsByHolder": true, "AuditFindsDifference": true,
	"IdempotencyReplay": true, "IdempotencyTakeover": true, "IdempotencyDeferred": true, "IdempotencyEveryChange": true,
	"Keys": true, "Retention": true, "SoldOutTurnsCorrect": true, "Transfer": true, "Payments": true,
	"Rooms": true, "RoomDraw": true, "Capabilities": true, "AdmitStock": true, "AdmissionUnits": true,
	// The batches' order: only the default strategy batches.
	"BatchStraddlesLastUnits": true, "BatchesGrantInArrivalOrder": true, "BatchEveryShape": true, "UnitBatchesGrantInArrivalOrder": true, "BatchCountsQuotas": true, "BatchSpendsAdmissions": true, "BatchRecordsPayments": true, "BatchTakesChannelSeats": true, "BatchConfirmsParts": true, "BatchConfirmsLate": true, "BatchConfirmsPaid": true,
	"Race/RoomAdmission": true, "Race/AdmitStock": true, "Race/PaymentVsSweeper": true, "Race/Sweepers": true,
	"Race/IdempotencySameKey": true, "Race/EventFeedSkipsNothing": true, "Race/TransferVsConfirmExpiry": true,
	// Races of a feature built on the claim (lifecycle changes, exchanges,
	// allocations, waitlist offers, quotas): the feature's own code is the
	// same whatever the strategy, and its storm runs on the default one;
	// each strategy still runs the feature's test, and the races of the
	// claim itself (pools, seats, riders, limits, expired capacity, late
	// confirms, seats together) with their full storms.
	"Race/ConfirmVsExpiry": true, "Race/ReleaseVsConfirm": true, "Race/ExchangeVsClaims": true, "Race/Allocation": true,
	"Race/UnitAllocation": true, "Race/ChangesWithClaims": true, "Race/Waitlist": true, "Race/WaitlistLeaves": true, "Race/GroupWaitlist": true,
	"Race/KeyQuota": true,
}

// Variant names a store's variant in subtest names: its strategy, and
// "-no-coalesce" when batching is off.
func Variant(st holdfast.Strategy, noCoalesce bool) string {
	if noCoalesce {
		return string(st) + "-no-coalesce"
	}
	return string(st)
}

// Run runs the whole conformance suite against the backend h opens.
func Run(t *testing.T, h Harness) {
	tests := []struct {
		name string
		fn   func(t *testing.T, h Harness)
	}{
		{"Pools", testPools},
		{"PoolValidation", testPoolValidation},
		{"Groups", testGroups},
		{"HoldLifecycle", testHoldLifecycle},
		{"InvalidTransitions", testInvalidTransitions},
		{"Book", testBook},
		{"Extend", testExtend},
		{"HoldValidation", testHoldValidation},
		{"AllOrNothing", testAllOrNothing},
		{"FirstFailingLine", testFirstFailingLine},
		{"LimitBeforeSoldOut", testLimitBeforeSoldOut},
		{"Units", testUnits},
		{"CompleteReusable", testCompleteReusable},
		{"Expiry", testExpiry},
		{"ExpiredCapacityIsFree", testExpiredCapacityIsFree},
		{"SetCapacity", testSetCapacity},
		{"Events", testEvents},
		{"HoldsByHolder", testHoldsByHolder},
		{"DatabaseHasLastWord", testDatabaseHasLastWord},
		{"AuditFindsDifference", testAuditFindsDifference},
		{"IdempotencyReplay", testIdempotencyReplay},
		{"IdempotencyTakeover", testIdempotencyTakeover},
		{"IdempotencyDeferred", testIdempotencyDeferred},
		{"IdempotencyEveryChange", testIdempotencyEveryChange},
		{"Keys", testKeys},
		{"KeyQuota", testKeyQuota},
		{"Retention", testRetention},
		{"PerHolderLimitPerKey", testPerHolderLimitPerKey},
		{"BatchStraddlesLastUnits", testBatchStraddlesLastUnits},
		{"BatchesGrantInArrivalOrder", testBatchesGrantInArrivalOrder},
		{"BatchEveryShape", testBatchEveryShape},
		{"UnitBatchesGrantInArrivalOrder", testUnitBatchesGrantInArrivalOrder},
		{"BatchCountsQuotas", testBatchCountsQuotas},
		{"BatchConfirmsParts", testBatchConfirmsParts},
		{"BatchConfirmsLate", testBatchConfirmsLate},
		{"BatchConfirmsPaid", testBatchConfirmsPaid},
		{"BatchSpendsAdmissions", testBatchSpendsAdmissions},
		{"BatchRecordsPayments", testBatchRecordsPayments},
		{"BatchTakesChannelSeats", testBatchTakesChannelSeats},
		{"SoldOutTurnsCorrect", testSoldOutTurnsCorrect},
		{"LateConfirm", testLateConfirm},
		{"PartialConfirm", testPartialConfirm},
		{"Rooms", testRooms},
		{"RoomDraw", testRoomDraw},
		{"AdmitStock", testAdmitStock},
		{"RoomToWaitlist", testRoomToWaitlist},
		{"Transfer", testTransfer},
		{"Exchange", testExchange},
		{"Allocations", testAllocations},
		{"UnitAllocations", testUnitAllocations},
		{"Payments", testPayments},
		{"Waitlist", testWaitlist},
		{"WaitlistOffersByTheRules", testWaitlistOffersByTheRules},
		{"GroupWaitlist", testGroupWaitlist},
		{"SeatsTogether", testSeatsTogether},
		{"SideDoors", testSideDoors},
		{"AdmissionUnits", testAdmissionUnits},
		{"RoomBeforeSoldOut", testRoomBeforeSoldOut},
		{"BookingBesideAFullQuota", testBookingBesideAFullQuota},
		{"OfferBreakingARuleIsCancelled", testOfferBreakingARuleIsCancelled},
		{"RulesByDoor", testRulesByDoor},
		{"Capabilities", testCapabilities},
	}
	left := 0 // engineOnly tests left out, to catch a misspelt name
	for _, tt := range tests {
		if h.ClaimsOnly && engineOnly[tt.name] {
			left++
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			if why, ok := h.Unsupported[tt.name]; ok {
				t.Skip("not offered by this backend: " + why)
			}
			t.Parallel()
			tt.fn(t, h)
		})
	}
	for _, tt := range races {
		if h.ClaimsOnly && engineOnly["Race/"+tt.name] {
			left++
		}
	}
	if h.ClaimsOnly && left != len(engineOnly) {
		t.Errorf("engineOnly names %d tests, %d of them are in the suite", len(engineOnly), left)
	}
	if h.NoRaces {
		return
	}
	// The races run one at a time: each has many connections of its own.
	t.Run("Race", func(t *testing.T) {
		for _, tt := range races {
			if h.ClaimsOnly && engineOnly["Race/"+tt.name] {
				continue
			}
			t.Run(tt.name, func(t *testing.T) {
				if why, ok := h.Unsupported["Race/"+tt.name]; ok {
					t.Skip("not offered by this backend: " + why)
				}
				if h.Races != nil && !slices.Contains(h.Races, tt.name) {
					t.Skip("run on the store itself, by another harness")
				}
				tt.fn(t, h)
			})
		}
	})
}

// races are the suite's races, run one at a time (each has many
// connections of its own).
type race struct {
	name string
	fn   func(t *testing.T, h Harness)
}

var races = []race{
	{"PoolNoOversell", racePoolNoOversell},
	{"SameSeat", raceSameSeat},
	{"AnyRider", raceAnyRider},
	{"AnyRiderChurn", raceAnyRiderChurn},
	{"OverlappingSeats", raceOverlappingSeats},
	{"ConfirmVsExpiry", raceConfirmVsExpiry},
	{"ReleaseVsConfirm", raceReleaseVsConfirm},
	{"LateConfirmVsBuyer", raceLateConfirmVsBuyer},
	{"RoomAdmission", raceRoomAdmission},
	{"AdmitStock", raceAdmitStock},
	{"ExchangeVsClaims", raceExchangeVsClaims},
	{"Allocation", raceAllocation},
	{"UnitAllocation", raceUnitAllocation},
	{"PaymentVsSweeper", racePaymentVsSweeper},
	{"TransferVsConfirmExpiry", raceTransferVsConfirmExpiry},
	{"ChangesWithClaims", raceChangesWithClaims},
	{"Waitlist", raceWaitlist},
	{"WaitlistLeaves", raceWaitlistLeaves},
	{"GroupWaitlist", raceGroupWaitlist},
	{"SeatsTogether", raceSeatsTogether},
	{"PerHolderLimit", racePerHolderLimit},
	{"KeyQuota", raceKeyQuota},
	{"Sweepers", raceSweepers},
	{"ExpiredCapacityUnderLoad", raceExpiredCapacity},
	{"IdempotencySameKey", raceIdempotencySameKey},
	{"EventFeedSkipsNothing", raceEventFeed},
}

// Races runs the suite's races named (without "Race/"; all of them when
// none is), one at a time, each a subtest: for a backend's configurations
// the whole suite need not run on (pools of one connection).
func Races(t *testing.T, h Harness, names ...string) {
	for _, n := range names {
		if !slices.ContainsFunc(races, func(r race) bool { return r.name == n }) {
			t.Fatalf("no race %q in the suite", n)
		}
	}
	for _, tt := range races {
		if len(names) == 0 || slices.Contains(names, tt.name) {
			t.Run(tt.name, func(t *testing.T) { tt.fn(t, h) })
		}
	}
}

func testPools(t *testing.T, h Harness) {
	s, _ := h.Open(t)
	ctx := ctxT(t)
	p := MustCreatePool(t, s, "concert", 10, 4)
	want := holdfast.Pool{ID: "concert", Name: "concert", Capacity: 10, PerHolderLimit: 4, Available: 10, LateConfirm: holdfast.LateRefuse,
		OfferTTLSeconds: int64(holdfast.DefaultOfferTTL / time.Second), Allocations: []holdfast.Allocation{}}
	if diff := cmp.Diff(want, p); diff != "" {
		t.Fatalf("CreatePool (-want +got):\n%s", diff)
	}
	_, err := s.CreatePool(ctx, holdfast.Pool{ID: "concert", Capacity: 5})
	wantCode(t, err, holdfast.CodeConflict, -1)
	if got := MustPool(t, s, "concert").Capacity; got != 10 {
		t.Fatalf("duplicate create changed capacity to %d", got)
	}
	_, err = s.Pool(ctx, "nope")
	wantCode(t, err, holdfast.CodeNotFound, -1)
	MustCreatePool(t, s, "a-first", 1, 0)
	pools, err := s.Pools(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, p := range pools {
		ids = append(ids, p.ID)
	}
	if diff := cmp.Diff([]string{"a-first", "concert"}, ids); diff != "" {
		t.Fatalf("Pools ids (-want +got):\n%s", diff)
	}
}

func testPoolValidation(t *testing.T, h Harness) {
	s, _ := h.Open(t)
	ctx := ctxT(t)
	for _, tc := range []struct {
		name string
		p    holdfast.Pool
	}{
		{"empty id", holdfast.Pool{Capacity: 1}},
		{"bad id", holdfast.Pool{ID: "a b", Capacity: 1}},
		{"long id", holdfast.Pool{ID: string(make([]byte, 200)), Capacity: 1}},
		{"negative capacity", holdfast.Pool{ID: "p", Capacity: -1}},
		{"huge capacity", holdfast.Pool{ID: "p", Capacity: 1 << 50}},
		{"negative limit", holdfast.Pool{ID: "p", Capacity: 1, PerHolderLimit: -1}},
		{"control in name", holdfast.Pool{ID: "p", Name: "a\x00b", Capacity: 1}},
	} {
		_, err := s.CreatePool(ctx, tc.p)
		if holdfast.ErrorCode(err) != holdfast.CodeInvalid {
			t.Errorf("%s: got %v, want invalid", tc.name, err)
		}
	}
	if n := MustCount(t, s, `SELECT COUNT(*) FROM pools`); n != 0 {
		t.Fatalf("invalid creates wrote %d pools", n)
	}
	if n := MustCount(t, s, `SELECT COUNT(*) FROM events`); n != 0 {
		t.Fatalf("invalid creates wrote %d events", n)
	}
}

func testGroups(t *testing.T, h Harness) {
	s, _ := h.Open(t)
	ctx := ctxT(t)
	MustCreateGroup(t, s, "hall", false, "A-1", "A-2", "A-3")
	_, err := s.CreateGroup(ctx, holdfast.Group{ID: "hall"})
	wantCode(t, err, holdfast.CodeConflict, -1)
	// All or none: one existing id refuses the whole batch.
	err = s.AddUnits(ctx, "hall", []string{"A-4", "A-1"})
	wantCode(t, err, holdfast.CodeConflict, -1)
	err = s.AddUnits(ctx, "nope", []string{"X-1"})
	wantCode(t, err, holdfast.CodeNotFound, -1)
	err = s.AddUnits(ctx, "hall", []string{"B-1", "B-1"})
	wantCode(t, err, holdfast.CodeInvalid, -1)
	if n := MustCount(t, s, `SELECT COUNT(*) FROM units`); n != 3 {
		t.Fatalf("units after refused adds: got %d, want 3", n)
	}
	MustHold(t, s, "alice", holdfast.Line{Units: []string{"A-2"}})
	g, err := s.Group(ctx, "hall")
	if err != nil {
		t.Fatal(err)
	}
	want := holdfast.GroupAvailability{Group: holdfast.Group{ID: "hall", Name: "hall", LateConfirm: holdfast.LateRefuse}, Units: 3, Free: 2, Held: 1, FreeUnits: []string{"A-1", "A-3"}, Allocations: []holdfast.UnitAllocation{}}
	if diff := cmp.Diff(want, g); diff != "" {
		t.Fatalf("Group (-want +got):\n%s", diff)
	}
	held, err := s.Units(ctx, "hall", holdfast.UnitHeld)
	if err != nil {
		t.Fatal(err)
	}
	if len(held) != 1 || held[0].ID != "A-2" || held[0].HoldID == "" {
		t.Fatalf("held units: got %+v, want A-2 with its hold", held)
	}
	_, err = s.Units(ctx, "hall", "sold")
	wantCode(t, err, holdfast.CodeInvalid, -1)
	_, err = s.Group(ctx, "nope")
	wantCode(t, err, holdfast.CodeNotFound, -1)
}

func testHoldLifecycle(t *testing.T, h Harness) {
	s, _ := h.Open(t)
	ctx := ctxT(t)
	MustCreatePool(t, s, "p", 10, 0)
	check := func(held, confirmed int64) {
		t.Helper()
		p := MustPool(t, s, "p")
		if p.Held != held || p.Confirmed != confirmed || p.Available != 10-held-confirmed {
			t.Fatalf("pool: got held %d confirmed %d available %d, want %d %d %d", p.Held, p.Confirmed, p.Available, held, confirmed, 10-held-confirmed)
		}
	}
	a := MustHold(t, s, "alice", holdfast.Line{Pool: "p", Quantity: 3})
	if a.Status != holdfast.StatusHeld || len(a.Lines) != 1 || a.Lines[0].Quantity != 3 {
		t.Fatalf("hold: got %+v", a)
	}
	if d := a.ExpiresAt.Sub(a.CreatedAt); d < 9*time.Minute || d > 11*time.Minute {
		t.Fatalf("default TTL: expires %s after creation, want 10m", d)
	}
	check(3, 0)
	c, err := s.Confirm(ctx, a.ID, "pay_123")
	if err != nil {
		t.Fatal(err)
	}
	if c.Status != holdfast.StatusConfirmed || c.PaymentRef != "pay_123" {
		t.Fatalf("confirm: got %+v", c)
	}
	check(0, 3)
	b := MustHold(t, s, "bob", holdfast.Line{Pool: "p", Quantity: 2})
	check(2, 3)
	if r, err := s.Release(ctx, b.ID); err != nil || r.Status != holdfast.StatusReleased {
		t.Fatalf("release: %+v, %v", r, err)
	}
	check(0, 3)
	if r, err := s.Cancel(ctx, a.ID); err != nil || r.Status != holdfast.StatusCancelled {
		t.Fatalf("cancel: %+v, %v", r, err)
	}
	check(0, 0)
	d := MustHold(t, s, "dave", holdfast.Line{Pool: "p", Quantity: 4})
	if _, err := s.Confirm(ctx, d.ID, ""); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Complete(ctx, d.ID); err != nil || r.Status != holdfast.StatusCompleted {
		t.Fatalf("complete: %+v, %v", r, err)
	}
	check(0, 4) // a used ticket stays consumed
	got, err := s.GetHold(ctx, d.ID)
	if err != nil || got.Status != holdfast.StatusCompleted {
		t.Fatalf("GetHold: %+v, %v", got, err)
	}
	_, err = s.GetHold(ctx, "h_nope")
	wantCode(t, err, holdfast.CodeNotFound, -1)
	MustAuditClean(t, s)
}

func testInvalidTransitions(t *testing.T, h Harness) {
	s, _ := h.Open(t)
	ctx := ctxT(t)
	MustCreatePool(t, s, "p", 10, 0)
	held := MustHold(t, s, "a", holdfast.Line{Pool: "p", Quantity: 1})
	confirmed := MustHold(t, s, "b", holdfast.Line{Pool: "p", Quantity: 1})
	if _, err := s.Confirm(ctx, confirmed.ID, ""); err != nil {
		t.Fatal(err)
	}
	released := MustHold(t, s, "c", holdfast.Line{Pool: "p", Quantity: 1})
	if _, err := s.Release(ctx, released.ID); err != nil {
		t.Fatal(err)
	}
	ops := map[string]func(id string) error{
		"confirm":  func(id string) error { _, err := s.Confirm(ctx, id, ""); return err },
		"release":  func(id string) error { _, err := s.Release(ctx, id); return err },
		"cancel":   func(id string) error { _, err := s.Cancel(ctx, id); return err },
		"complete": func(id string) error { _, err := s.Complete(ctx, id); return err },
		"extend":   func(id string) error { _, err := s.Extend(ctx, id, time.Minute); return err },
	}
	for _, tc := range []struct {
		op, id string
		want   holdfast.Code
	}{
		{"cancel", held.ID, holdfast.CodeInvalidState},
		{"complete", held.ID, holdfast.CodeInvalidState},
		{"confirm", confirmed.ID, holdfast.CodeInvalidState},
		{"release", confirmed.ID, holdfast.CodeInvalidState},
		{"extend", confirmed.ID, holdfast.CodeInvalidState},
		{"confirm", released.ID, holdfast.CodeInvalidState},
		{"release", released.ID, holdfast.CodeInvalidState},
		{"cancel", released.ID, holdfast.CodeInvalidState},
		{"confirm", "h_missing", holdfast.CodeNotFound},
		{"cancel", "h_missing", holdfast.CodeNotFound},
	} {
		if got := holdfast.ErrorCode(ops[tc.op](tc.id)); got != tc.want {
			t.Errorf("%s on %s: got %q, want %q", tc.op, tc.id, got, tc.want)
		}
	}
	p := MustPool(t, s, "p")
	if p.Held != 1 || p.Confirmed != 1 {
		t.Fatalf("refused changes moved counters: %+v", p)
	}
	MustAuditClean(t, s)
}

func testBook(t *testing.T, h Harness) {
	s, _ := h.Open(t)
	ctx := ctxT(t)
	MustCreatePool(t, s, "p", 2, 0)
	MustCreateGroup(t, s, "fleet", true, "r-1")
	b, err := s.Book(ctx, holdfast.HoldRequest{Holder: "a", Lines: []holdfast.Line{{Pool: "p", Quantity: 2}, {Group: "fleet", Any: 1}}}, "pay_1")
	if err != nil {
		t.Fatal(err)
	}
	if b.Status != holdfast.StatusConfirmed || b.PaymentRef != "pay_1" || !slices.Equal(b.Lines[1].Units, []string{"r-1"}) {
		t.Fatalf("book: got %+v", b)
	}
	if p := MustPool(t, s, "p"); p.Held != 0 || p.Confirmed != 2 {
		t.Fatalf("book counters: %+v", p)
	}
	_, err = s.Book(ctx, holdfast.HoldRequest{Holder: "b", Lines: []holdfast.Line{{Pool: "p", Quantity: 1}}}, "")
	wantCode(t, err, holdfast.CodeSoldOut, 0)
	MustAuditClean(t, s)
}

func testExtend(t *testing.T, h Harness) {
	s, _ := h.Open(t)
	ctx := ctxT(t)
	MustCreatePool(t, s, "p", 2, 0)
	a, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "a", TTL: 5 * time.Second, Lines: []holdfast.Line{{Pool: "p", Quantity: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	e, err := s.Extend(ctx, a.ID, 30*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if d := e.ExpiresAt.Sub(a.ExpiresAt); d < 29*time.Minute {
		t.Fatalf("extend moved expiry by %s, want ~30m", d)
	}
	_, err = s.Extend(ctx, a.ID, 0)
	wantCode(t, err, holdfast.CodeInvalid, -1)
	_, err = s.Extend(ctx, a.ID, 2*time.Hour)
	wantCode(t, err, holdfast.CodeInvalid, -1)
	// Past the maximum lifetime (2h by default): created 1h59m ago.
	if err := raw(t, s).Exec(ctx, `UPDATE holds SET created_at = holdfast_now_ms() - 7140000 WHERE id = $1`, a.ID); err != nil {
		t.Fatal(err)
	}
	_, err = s.Extend(ctx, a.ID, 10*time.Minute)
	wantCode(t, err, holdfast.CodeInvalid, -1)
	MustExpire(t, s, a.ID)
	_, err = s.Extend(ctx, a.ID, time.Minute)
	wantCode(t, err, holdfast.CodeHoldExpired, -1)
	_, err = s.Release(ctx, a.ID)
	wantCode(t, err, holdfast.CodeHoldExpired, -1)
}

func testHoldValidation(t *testing.T, h Harness) {
	s, _ := h.Open(t)
	ctx := ctxT(t)
	MustCreatePool(t, s, "p", 10, 0)
	MustCreateGroup(t, s, "g", false, "u1", "u2")
	tooMany := make([]holdfast.Line, 101)
	for i := range tooMany {
		tooMany[i] = holdfast.Line{Pool: fmt.Sprintf("p%d", i), Quantity: 1}
	}
	for _, tc := range []struct {
		name string
		r    holdfast.HoldRequest
		line int
	}{
		{"no holder", holdfast.HoldRequest{Lines: []holdfast.Line{{Pool: "p", Quantity: 1}}}, -1},
		{"long holder", holdfast.HoldRequest{Holder: fmt.Sprintf("%0201d", 0), Lines: []holdfast.Line{{Pool: "p", Quantity: 1}}}, -1},
		{"no lines", holdfast.HoldRequest{Holder: "a"}, -1},
		{"too many lines", holdfast.HoldRequest{Holder: "a", Lines: tooMany}, -1},
		{"zero quantity", holdfast.HoldRequest{Holder: "a", Lines: []holdfast.Line{{Pool: "p"}}}, 0},
		{"negative quantity", holdfast.HoldRequest{Holder: "a", Lines: []holdfast.Line{{Pool: "p", Quantity: -1}}}, 0},
		{"huge quantity", holdfast.HoldRequest{Holder: "a", Lines: []holdfast.Line{{Pool: "p", Quantity: 1 << 40}}}, 0},
		{"mixed forms", holdfast.HoldRequest{Holder: "a", Lines: []holdfast.Line{{Pool: "p", Quantity: 1}, {Pool: "p", Units: []string{"u1"}}}}, 1},
		{"group with units", holdfast.HoldRequest{Holder: "a", Lines: []holdfast.Line{{Group: "g", Any: 1, Units: []string{"u1"}}}}, 0},
		{"empty line", holdfast.HoldRequest{Holder: "a", Lines: []holdfast.Line{{}}}, 0},
		{"unit twice", holdfast.HoldRequest{Holder: "a", Lines: []holdfast.Line{{Units: []string{"u1"}}, {Units: []string{"u2", "u1"}}}}, 1},
		{"pool twice", holdfast.HoldRequest{Holder: "a", Lines: []holdfast.Line{{Pool: "p", Quantity: 1}, {Pool: "p", Quantity: 1}}}, 1},
		{"any zero", holdfast.HoldRequest{Holder: "a", Lines: []holdfast.Line{{Group: "g"}}}, 0},
		{"ttl too long", holdfast.HoldRequest{Holder: "a", TTL: 5 * time.Hour, Lines: []holdfast.Line{{Pool: "p", Quantity: 1}}}, -1},
		{"ttl too short", holdfast.HoldRequest{Holder: "a", TTL: time.Millisecond, Lines: []holdfast.Line{{Pool: "p", Quantity: 1}}}, -1},
	} {
		_, err := s.Hold(ctx, tc.r)
		if holdfast.ErrorCode(err) != holdfast.CodeInvalid || holdfast.ErrorLine(err) != tc.line {
			t.Errorf("%s: got %v (line %d), want invalid on line %d", tc.name, err, holdfast.ErrorLine(err), tc.line)
		}
	}
	if n := MustCount(t, s, `SELECT COUNT(*) FROM holds`); n != 0 {
		t.Fatalf("invalid holds wrote %d rows", n)
	}
	// Unknown resources are not_found, naming the line.
	_, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "a", Lines: []holdfast.Line{{Pool: "p", Quantity: 1}, {Pool: "nope", Quantity: 1}}})
	wantCode(t, err, holdfast.CodeNotFound, 1)
	_, err = s.Hold(ctx, holdfast.HoldRequest{Holder: "a", Lines: []holdfast.Line{{Units: []string{"u1", "zz"}}}})
	wantCode(t, err, holdfast.CodeNotFound, 0)
	_, err = s.Hold(ctx, holdfast.HoldRequest{Holder: "a", Lines: []holdfast.Line{{Group: "nope", Any: 1}}})
	wantCode(t, err, holdfast.CodeNotFound, 0)
	if n := MustCount(t, s, `SELECT COUNT(*) FROM holds`); n != 0 {
		t.Fatalf("failed holds left %d rows", n)
	}
	MustAuditClean(t, s)
}

func testAllOrNothing(t *testing.T, h Harness) {
	s, _ := h.Open(t)
	ctx := ctxT(t)
	MustCreatePool(t, s, "p", 10, 0)
	MustCreateGroup(t, s, "hall", false, "A-1", "A-2", "A-3")
	MustHold(t, s, "bob", holdfast.Line{Units: []string{"A-3"}})
	_, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "alice", Lines: []holdfast.Line{
		{Pool: "p", Quantity: 2},
		{Units: []string{"A-1", "A-2"}},
		{Units: []string{"A-3"}},
	}})
	wantCode(t, err, holdfast.CodeUnavailable, 2)
	if p := MustPool(t, s, "p"); p.Held != 0 {
		t.Fatalf("failed hold left %d held in the pool", p.Held)
	}
	if n := MustCount(t, s, `SELECT COUNT(*) FROM units WHERE hold_id IS NOT NULL`); n != 1 {
		t.Fatalf("failed hold left units taken: %d taken, want 1", n)
	}
	if n := MustCount(t, s, `SELECT COUNT(*) FROM holds WHERE holder = 'alice'`); n != 0 {
		t.Fatalf("failed hold left %d hold rows", n)
	}
	MustAuditClean(t, s)
}

func testFirstFailingLine(t *testing.T, h Harness) {
	s, _ := h.Open(t)
	ctx := ctxT(t)
	// Lock order takes pool "a" before "b"; the answer must still name the
	// first failing line in request order.
	MustCreatePool(t, s, "a", 1, 0)
	MustCreatePool(t, s, "b", 1, 0)
	_, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "x", Lines: []holdfast.Line{{Pool: "b", Quantity: 2}, {Pool: "a", Quantity: 2}}})
	wantCode(t, err, holdfast.CodeSoldOut, 0)
	_, err = s.Hold(ctx, holdfast.HoldRequest{Holder: "x", Lines: []holdfast.Line{{Pool: "b", Quantity: 1}, {Pool: "a", Quantity: 2}}})
	wantCode(t, err, holdfast.CodeSoldOut, 1)
}

func testLimitBeforeSoldOut(t *testing.T, h Harness) {
	s, _ := h.Open(t)
	ctx := ctxT(t)
	MustCreatePool(t, s, "p", 5, 4)
	MustHold(t, s, "alice", holdfast.Line{Pool: "p", Quantity: 3})
	_, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "alice", Lines: []holdfast.Line{{Pool: "p", Quantity: 2}}})
	wantCode(t, err, holdfast.CodeLimitExceeded, 0)
	_, err = s.Hold(ctx, holdfast.HoldRequest{Holder: "bob", Lines: []holdfast.Line{{Pool: "p", Quantity: 5}}})
	wantCode(t, err, holdfast.CodeLimitExceeded, 0) // over the limit and too little capacity: limit wins
	_, err = s.Hold(ctx, holdfast.HoldRequest{Holder: "bob", Lines: []holdfast.Line{{Pool: "p", Quantity: 3}}})
	wantCode(t, err, holdfast.CodeSoldOut, 0)
	b := MustHold(t, s, "bob", holdfast.Line{Pool: "p", Quantity: 2})
	// Releasing gives the holder's allowance back.
	if _, err := s.Release(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	MustHold(t, s, "alice", holdfast.Line{Pool: "p", Quantity: 1})
	MustAuditClean(t, s)
}

func testUnits(t *testing.T, h Harness) {
	s, _ := h.Open(t)
	ctx := ctxT(t)
	MustCreateGroup(t, s, "hall", false, "A-1", "A-2", "A-3", "A-4")
	a := MustHold(t, s, "alice", holdfast.Line{Units: []string{"A-2", "A-1"}}, holdfast.Line{Group: "hall", Any: 1})
	if got := a.Lines[0].Units; !slices.Equal(got, []string{"A-2", "A-1"}) {
		t.Fatalf("unit line echoes %v, want [A-2 A-1]", got)
	}
	if got := a.Lines[1].Units; len(got) != 1 || got[0] == "A-1" || got[0] == "A-2" {
		t.Fatalf("any line took %v, want one other unit", got)
	}
	_, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "bob", Lines: []holdfast.Line{{Units: []string{"A-1"}}}})
	wantCode(t, err, holdfast.CodeUnavailable, 0)
	_, err = s.Hold(ctx, holdfast.HoldRequest{Holder: "bob", Lines: []holdfast.Line{{Group: "hall", Any: 2}}})
	wantCode(t, err, holdfast.CodeUnavailable, 0)
	MustHold(t, s, "bob", holdfast.Line{Group: "hall", Any: 1})
	g, _ := s.Group(ctx, "hall")
	if g.Free != 0 || g.Held != 4 {
		t.Fatalf("group: %+v", g)
	}
	if _, err := s.Release(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	got, _ := s.GetHold(ctx, a.ID)
	if !slices.Equal(got.Lines[1].Units, a.Lines[1].Units) {
		t.Fatalf("released hold forgot its units: %+v", got.Lines)
	}
	MustHold(t, s, "carol", holdfast.Line{Units: []string{"A-1", "A-2"}})
	MustAuditClean(t, s)
}

func testCompleteReusable(t *testing.T, h Harness) {
	s, _ := h.Open(t)
	ctx := ctxT(t)
	MustCreateGroup(t, s, "fleet", true, "r-1")
	MustCreateGroup(t, s, "hall", false, "A-1")
	for i := 0; i < 3; i++ {
		hd := MustHold(t, s, fmt.Sprintf("order-%d", i), holdfast.Line{Group: "fleet", Any: 1})
		if _, err := s.Confirm(ctx, hd.ID, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Complete(ctx, hd.ID); err != nil {
			t.Fatal(err)
		}
	}
	seat := MustHold(t, s, "a", holdfast.Line{Units: []string{"A-1"}})
	if _, err := s.Confirm(ctx, seat.ID, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Complete(ctx, seat.ID); err != nil {
		t.Fatal(err)
	}
	_, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "b", Lines: []holdfast.Line{{Units: []string{"A-1"}}}})
	wantCode(t, err, holdfast.CodeUnavailable, 0) // a used seat stays taken
	MustAuditClean(t, s)
}

func testExpiry(t *testing.T, h Harness) {
	s, _ := h.Open(t)
	ctx := ctxT(t)
	MustCreatePool(t, s, "p", 5, 0)
	MustCreateGroup(t, s, "hall", false, "A-1", "A-2", "A-3")
	a := MustHold(t, s, "alice", holdfast.Line{Pool: "p", Quantity: 5})
	b := MustHold(t, s, "bob", holdfast.Line{Units: []string{"A-1"}}, holdfast.Line{Group: "hall", Any: 1})
	MustExpire(t, s, a.ID, b.ID)
	// No sweeper has run: the hold still reads expired and cannot be confirmed.
	got, err := s.GetHold(ctx, a.ID)
	if err != nil || got.Status != holdfast.StatusExpired {
		t.Fatalf("GetHold after expiry: %+v, %v", got.Status, err)
	}
	if p := MustPool(t, s, "p"); p.Available != 5 {
		t.Fatalf("expired capacity shows as unavailable: %+v", p)
	}
	_, err = s.Confirm(ctx, a.ID, "")
	wantCode(t, err, holdfast.CodeHoldExpired, -1)
	n, err := s.ExpireDue(ctx, 100)
	if err != nil || n != 2 {
		t.Fatalf("ExpireDue: %d, %v; want 2", n, err)
	}
	if n, _ := s.ExpireDue(ctx, 100); n != 0 {
		t.Fatalf("second ExpireDue expired %d again", n)
	}
	_, err = s.Confirm(ctx, a.ID, "")
	wantCode(t, err, holdfast.CodeHoldExpired, -1)
	if p := MustPool(t, s, "p"); p.Held != 0 || p.Available != 5 {
		t.Fatalf("pool after sweep: %+v", p)
	}
	if n := MustCount(t, s, `SELECT COUNT(*) FROM events WHERE type = 'hold.expired' AND hold_id = $1`, a.ID); n != 1 {
		t.Fatalf("expired events: %d, want 1", n)
	}
	// Each expiry's event carries the hold as it reads now, lines and
	// units and all (the sweep writes them together, in one insert).
	events := feedFrom(t, s, "", func(es []holdfast.Event) bool {
		n := 0
		for _, e := range es {
			if e.Type == holdfast.EventHoldExpired {
				n++
			}
		}
		return n >= 2
	})
	seen := 0
	for _, e := range events {
		if e.Type != holdfast.EventHoldExpired {
			continue
		}
		seen++
		var got holdfast.Hold
		if err := json.Unmarshal(e.Data, &got); err != nil {
			t.Fatal(err)
		}
		want, err := s.GetHold(ctx, e.HoldID)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(want, got); d != "" || got.Status != holdfast.StatusExpired {
			t.Errorf("hold.expired of %s carries (-GetHold +event):\n%s", e.HoldID, d)
		}
	}
	if seen != 2 {
		t.Errorf("%d hold.expired events, want 2", seen)
	}
	if g := MustGroupAvailability(t, s, "hall"); g.Free != 3 {
		t.Errorf("hall after the sweep: %d free, want 3", g.Free)
	}
	MustAuditClean(t, s)
}

func testExpiredCapacityIsFree(t *testing.T, h Harness) {
	s, _ := h.Open(t)
	ctx := ctxT(t)
	MustCreatePool(t, s, "p", 2, 2)
	MustCreateGroup(t, s, "hall", false, "A-1", "A-2")
	a := MustHold(t, s, "alice", holdfast.Line{Pool: "p", Quantity: 2}, holdfast.Line{Units: []string{"A-1"}})
	b := MustHold(t, s, "bob", holdfast.Line{Group: "hall", Any: 1})
	MustExpire(t, s, a.ID, b.ID)
	// No sweeper: the next claims reclaim what the expired holds sat on,
	// including alice's own per-holder allowance.
	MustHold(t, s, "alice", holdfast.Line{Pool: "p", Quantity: 2})
	MustHold(t, s, "carol", holdfast.Line{Units: []string{"A-1"}})
	MustHold(t, s, "dave", holdfast.Line{Group: "hall", Any: 1})
	for _, id := range []string{a.ID, b.ID} {
		// (No row of it left held: a hold across shards has one per shard.)
		if n := MustCount(t, s, `SELECT COUNT(*) FROM holds WHERE id = $1 AND status <> 'expired'`, id); n != 0 || mustGetHold(t, s, id).Status != holdfast.StatusExpired {
			t.Fatalf("hold %s was not marked expired by the claim that reclaimed it", id)
		}
	}
	_, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "erin", Lines: []holdfast.Line{{Pool: "p", Quantity: 1}}})
	wantCode(t, err, holdfast.CodeSoldOut, 0)
	MustAuditClean(t, s)
}

func testSetCapacity(t *testing.T, h Harness) {
	s, _ := h.Open(t)
	ctx := ctxT(t)
	MustCreatePool(t, s, "p", 5, 0)
	a := MustHold(t, s, "a", holdfast.Line{Pool: "p", Quantity: 3})
	if p, err := s.SetCapacity(ctx, "p", 8); err != nil || p.Capacity != 8 || p.Available != 5 {
		t.Fatalf("raise: %+v, %v", p, err)
	}
	_, err := s.SetCapacity(ctx, "p", 2)
	wantCode(t, err, holdfast.CodeConflict, -1)
	if p, err := s.SetCapacity(ctx, "p", 3); err != nil || p.Available != 0 {
		t.Fatalf("lower to taken: %+v, %v", p, err)
	}
	_, err = s.SetCapacity(ctx, "nope", 3)
	wantCode(t, err, holdfast.CodeNotFound, -1)
	_, err = s.SetCapacity(ctx, "p", -3)
	wantCode(t, err, holdfast.CodeInvalid, -1)
	// Capacity held by an expired hold does not stand in the way.
	MustExpire(t, s, a.ID)
	if p, err := s.SetCapacity(ctx, "p", 0); err != nil || p.Capacity != 0 {
		t.Fatalf("lower past expired hold: %+v, %v", p, err)
	}
	MustAuditClean(t, s)
}

func testEvents(t *testing.T, h Harness) {
	s, _ := h.Open(t)
	ctx := ctxT(t)
	MustCreatePool(t, s, "p", 5, 0)
	a := MustHold(t, s, "a", holdfast.Line{Pool: "p", Quantity: 1})
	if _, err := s.Extend(ctx, a.ID, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Confirm(ctx, a.ID, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Cancel(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	b := MustHold(t, s, "b", holdfast.Line{Pool: "p", Quantity: 1})
	if _, err := s.Release(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetCapacity(ctx, "p", 6); err != nil {
		t.Fatal(err)
	}
	_, _ = s.Confirm(ctx, b.ID, "") // refused: writes no event
	events := feed(t, s, 8)
	var types []holdfast.EventType
	var last int64
	for _, e := range events {
		if e.Seq <= last {
			t.Fatalf("events out of order: %d after %d", e.Seq, last)
		}
		last = e.Seq
		types = append(types, e.Type)
	}
	want := []holdfast.EventType{holdfast.EventPoolCreated, holdfast.EventHoldCreated, holdfast.EventHoldExtended,
		holdfast.EventHoldConfirmed, holdfast.EventHoldCancelled, holdfast.EventHoldCreated, holdfast.EventHoldReleased, holdfast.EventPoolChanged}
	if diff := cmp.Diff(want, types); diff != "" {
		t.Fatalf("event types (-want +got):\n%s", diff)
	}
	page, next, err := s.Events(ctx, events[2].Cursor, 2)
	if err != nil || len(page) != 2 || page[0].Seq != events[3].Seq || next != page[1].Cursor {
		t.Fatalf("Events(after %s, 2): %+v, %q, %v", events[2].Cursor, page, next, err)
	}
	if _, _, err := s.Events(ctx, "garbage", 2); holdfast.ErrorCode(err) != holdfast.CodeInvalid {
		t.Fatalf("Events with a bad cursor: %v", err)
	}
}

// feed reads the outbox from the start until it holds want events (the
// feed may trail the writers; see Store.Events), or the test's deadline.
func feed(t *testing.T, s holdfast.Store, want int) []holdfast.Event {
	t.Helper()
	ctx := ctxT(t)
	var all []holdfast.Event
	cursor := ""
	for len(all) < want && ctx.Err() == nil {
		events, next, err := s.Events(ctx, cursor, 100)
		if err != nil {
			t.Fatal(err)
		}
		all, cursor = append(all, events...), next
	}
	return all
}

func testHoldsByHolder(t *testing.T, h Harness) {
	s, _ := h.Open(t)
	ctx := ctxT(t)
	MustCreatePool(t, s, "p", 5, 0)
	a1 := MustHold(t, s, "alice", holdfast.Line{Pool: "p", Quantity: 1})
	MustHold(t, s, "bob", holdfast.Line{Pool: "p", Quantity: 1})
	a2 := MustHold(t, s, "alice", holdfast.Line{Pool: "p", Quantity: 2})
	holds, err := s.Holds(ctx, "alice", "")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, h := range holds {
		ids = append(ids, h.ID)
	}
	if diff := cmp.Diff([]string{a2.ID, a1.ID}, ids); diff != "" {
		t.Fatalf("Holds(alice) newest first (-want +got):\n%s", diff)
	}
}

func testDatabaseHasLastWord(t *testing.T, h Harness) {
	s, _ := h.Open(t)
	ctx := ctxT(t)
	MustCreatePool(t, s, "p", 5, 0)
	MustCreateGroup(t, s, "hall", false, "A-1")
	a := MustHold(t, s, "alice", holdfast.Line{Pool: "p", Quantity: 5}, holdfast.Line{Units: []string{"A-1"}})
	r := raw(t, s)
	for _, tc := range []struct{ name, sql string }{
		{"oversell the pool", `UPDATE pools SET held = held + 1 WHERE id = 'p'`},
		{"negative counter", `UPDATE pools SET confirmed = -1 WHERE id = 'p'`},
		{"capacity below taken", `UPDATE pools SET capacity = 4 WHERE id = 'p'`},
		{"second active claim on a seat", `INSERT INTO unit_claims (hold_id, line_no, unit_id, active) VALUES ('` + a.ID + `', 9, 'A-1', TRUE)`},
		{"line on a missing pool", `INSERT INTO hold_lines (hold_id, line_no, kind, pool_id, quantity) VALUES ('` + a.ID + `', 9, 'pool', 'nope', 1)`},
		{"unit held by a missing hold", `UPDATE units SET hold_id = 'h_missing' WHERE id = 'A-1'`},
		{"unknown hold state", `UPDATE holds SET status = 'booked' WHERE id = '` + a.ID + `'`},
	} {
		if err := r.Exec(ctx, tc.sql); err == nil {
			t.Errorf("%s: the database accepted %q", tc.name, tc.sql)
		}
	}
	MustAuditClean(t, s)
}

func testAuditFindsDifference(t *testing.T, h Harness) {
	s, _ := h.Open(t)
	ctx := ctxT(t)
	MustCreatePool(t, s, "p", 5, 0)
	MustHold(t, s, "alice", holdfast.Line{Pool: "p", Quantity: 2})
	MustAuditClean(t, s)
	// A counter drifts from the claims without breaking any constraint: only
	// the recount can see it.
	if err := raw(t, s).Exec(ctx, `UPDATE pools SET held = held + 1 WHERE id = 'p'`); err != nil {
		t.Fatal(err)
	}
	rep, err := s.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() {
		t.Fatalf("audit missed a held counter of 3 against claims of 2: %+v", rep)
	}
	// Holders' totals too: one that drifted from its holder's holds, and
	// one whose holder holds nothing at all.
	MustCreatePool(t, s, "lim", 10, 4)
	MustHold(t, s, "bob", holdfast.Line{Pool: "lim", Quantity: 2})
	for _, sql := range []string{
		// bob's row is the pool's only one (keyed "<owner> bob" when the
		// hold has an owner, as over the API).
		`UPDATE pool_holders SET taken = 3 WHERE pool_id = 'lim'`,
		`INSERT INTO pool_holders (pool_id, holder, taken) VALUES ('lim', 'nobody', 2)`,
	} {
		if err := raw(t, s).Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	if rep, err = s.Audit(ctx); err != nil {
		t.Fatal(err)
	}
	var bob, nobody bool
	for _, d := range rep.Differences {
		bob = bob || strings.Contains(d, `bob": total 3, recount 2`)
		nobody = nobody || strings.Contains(d, `holder "nobody": total 2, recount 0`)
	}
	if !bob || !nobody {
		t.Fatalf("audit missed a holder's total (bob %v, nobody %v): %v", bob, nobody, rep.Differences)
	}
}

func mustGetHold(t testing.TB, s holdfast.Store, id string) holdfast.Hold {
	t.Helper()
	h, err := s.GetHold(ctxT(t), id)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// testTransfer: a held or confirmed hold goes to another holder with its
// lines and units; the pool's counts do not move; the receiver's
// per-holder limit applies (limit_exceeded naming the line, nothing
// changed) and the giver's count goes with the hold; an event says who
// had it; an expired or released hold is not transferred.
func testTransfer(t *testing.T, h Harness) {
	s, _ := h.Open(t)
	ctx := context.Background()
	MustCreatePool(t, s, "p", 10, 3)
	MustCreatePool(t, s, "free", 10, 0)
	MustCreateGroup(t, s, "hall", false, "A-1", "A-2")
	held, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "alice", TTL: time.Hour, Lines: []holdfast.Line{{Pool: "free", Quantity: 1}, {Pool: "p", Quantity: 2}, {Units: []string{"A-1"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Book(ctx, holdfast.HoldRequest{Holder: "bob", Lines: []holdfast.Line{{Pool: "p", Quantity: 2}}}, ""); err != nil {
		t.Fatal(err)
	}
	before, err := s.Pool(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	// bob has 2 of p, its limit 3: 2 more would pass it, on line 1.
	_, err = s.Transfer(ctx, held.ID, "bob")
	var e *holdfast.Error
	if holdfast.ErrorCode(err) != holdfast.CodeLimitExceeded || !errors.As(err, &e) || e.Line != 1 {
		t.Fatalf("a transfer past the receiver's limit: %v, want limit_exceeded on line 1", err)
	}
	got, err := s.Transfer(ctx, held.ID, "carol")
	if err != nil {
		t.Fatal(err)
	}
	if got.Holder != "carol" || got.ID != held.ID || got.Status != holdfast.StatusHeld || len(got.Lines) != 3 {
		t.Fatalf("after the transfer: %+v", got)
	}
	after, err := s.Pool(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	if after.Held != before.Held || after.Confirmed != before.Confirmed {
		t.Fatalf("pool p moved: held %d→%d, confirmed %d→%d", before.Held, after.Held, before.Confirmed, after.Confirmed)
	}
	// alice's 2 went with it: alice may take 3 again, carol only 1 more.
	if _, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "alice", Lines: []holdfast.Line{{Pool: "p", Quantity: 3}}}); err != nil {
		t.Fatalf("alice after giving her hold away: %v", err)
	}
	if _, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "carol", Lines: []holdfast.Line{{Pool: "p", Quantity: 2}}}); holdfast.ErrorCode(err) != holdfast.CodeLimitExceeded {
		t.Fatalf("carol past her limit with the hold she was given: %v", err)
	}
	// Confirmed holds move too; the event names who had it.
	if _, err := s.Confirm(ctx, held.ID, ""); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Transfer(ctx, held.ID, "dave"); err != nil || got.Holder != "dave" || got.Status != holdfast.StatusConfirmed {
		t.Fatalf("transferring a confirmed hold: %+v, %v", got, err)
	}
	// One per transfer (on shards, one per part of the hold). The feed
	// may trail the writers (see Store.Events): read until both show.
	from := transfers(t, feedFrom(t, s, "", func(es []holdfast.Event) bool { return len(transfers(t, es, held.ID)) >= 2 }), held.ID)
	if len(from) != 2 || !from["alice→carol"] || !from["carol→dave"] {
		t.Fatalf("hold.transferred events say %v, want alice→carol and carol→dave", from)
	}
	released, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "erin", Lines: []holdfast.Line{{Pool: "free", Quantity: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Release(ctx, released.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Transfer(ctx, released.ID, "frank"); holdfast.ErrorCode(err) != holdfast.CodeInvalidState {
		t.Fatalf("transferring a released hold: %v, want invalid_state", err)
	}
	if _, err := s.Transfer(ctx, "h_nope", "frank"); holdfast.ErrorCode(err) != holdfast.CodeNotFound {
		t.Fatalf("transferring no hold: %v, want not_found", err)
	}
}

// transfers reads the hold.transferred events of hold id, as
// "giver→receiver".
func transfers(t *testing.T, evs []holdfast.Event, id string) map[string]bool {
	t.Helper()
	from := map[string]bool{}
	for _, ev := range evs {
		if ev.Type != holdfast.EventHoldTransferred || ev.HoldID != id {
			continue
		}
		var d struct {
			Holder          string `json:"holder"`
			TransferredFrom string `json:"transferred_from"`
		}
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			t.Fatal(err)
		}
		from[d.TransferredFrom+"→"+d.Holder] = true
	}
	return from
}

// testExchange: units of a hold are swapped for others of their group in
// one step, all pairs or none: a pair whose new unit is taken refuses
// the whole exchange (unavailable, naming its line) and the hold is as it
// was; what is given back is free at once; a unit held by an expired
// hold is free to take; a unit not in the hold is refused.
func testExchange(t *testing.T, h Harness) {
	s, _ := h.Open(t)
	ctx := context.Background()
	MustCreatePool(t, s, "free", 10, 0)
	MustCreateGroup(t, s, "hall", false, "A-1", "A-2", "B-1", "B-2", "B-3")
	mine, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "alice", TTL: time.Hour, Lines: []holdfast.Line{{Pool: "free", Quantity: 1}, {Units: []string{"A-1", "A-2"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "bob", TTL: time.Hour, Lines: []holdfast.Line{{Units: []string{"B-2"}}}}); err != nil {
		t.Fatal(err)
	}
	units := func(h holdfast.Hold) []string {
		var out []string
		for _, l := range h.Lines {
			out = append(out, l.Units...)
		}
		slices.Sort(out)
		return out
	}
	_, err = s.Exchange(ctx, mine.ID, map[string]string{"A-1": "B-1", "A-2": "B-2"})
	var e *holdfast.Error
	if holdfast.ErrorCode(err) != holdfast.CodeUnavailable || !errors.As(err, &e) || e.Line != 1 {
		t.Fatalf("an exchange for a taken unit: %v, want unavailable on line 1", err)
	}
	if got, _ := s.GetHold(ctx, mine.ID); !slices.Equal(units(got), []string{"A-1", "A-2"}) {
		t.Fatalf("after a refused exchange the hold has %v, want A-1, A-2", units(got))
	}
	got, err := s.Exchange(ctx, mine.ID, map[string]string{"A-1": "B-1"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(units(got), []string{"A-2", "B-1"}) || got.Status != holdfast.StatusHeld {
		t.Fatalf("after exchanging A-1 for B-1: %v (%s)", units(got), got.Status)
	}
	if _, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "carol", Lines: []holdfast.Line{{Units: []string{"A-1"}}}}); err != nil {
		t.Fatalf("A-1, given back by the exchange: %v", err)
	}
	if _, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "carol", Lines: []holdfast.Line{{Units: []string{"B-1"}}}}); holdfast.ErrorCode(err) != holdfast.CodeUnavailable {
		t.Fatalf("B-1, taken by the exchange: %v, want unavailable", err)
	}
	// A confirmed hold exchanges too; a unit of an expired hold is free.
	if _, err := s.Confirm(ctx, mine.ID, ""); err != nil {
		t.Fatal(err)
	}
	lapsed, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "dave", TTL: time.Hour, Lines: []holdfast.Line{{Units: []string{"B-3"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if !h.Remote {
		MustExpire(t, s, lapsed.ID)
		if got, err = s.Exchange(ctx, mine.ID, map[string]string{"A-2": "B-3"}); err != nil || !slices.Equal(units(got), []string{"B-1", "B-3"}) {
			t.Fatalf("exchanging for a unit of an expired hold: %v, %v", units(got), err)
		}
	}
	if _, err := s.Exchange(ctx, mine.ID, map[string]string{"A-1": "B-2"}); holdfast.ErrorCode(err) != holdfast.CodeInvalid {
		t.Fatalf("exchanging a unit not in the hold: %v, want invalid", err)
	}
	if _, err := s.Exchange(ctx, mine.ID, map[string]string{}); holdfast.ErrorCode(err) != holdfast.CodeInvalid {
		t.Fatalf("an empty exchange: %v, want invalid", err)
	}
	// Its event says what was swapped (the feed may trail: read until
	// it shows, as long as feedFrom waits for any event).
	exchanged := func(evs []holdfast.Event) bool {
		return slices.ContainsFunc(evs, func(ev holdfast.Event) bool {
			return ev.Type == holdfast.EventHoldExchanged && ev.HoldID == mine.ID && strings.Contains(string(ev.Data), `"exchanged":{"A-1":"B-1"}`)
		})
	}
	swapped := exchanged(feedFrom(t, s, "", exchanged))
	if !swapped {
		t.Fatal("no hold.exchanged event for A-1 → B-1")
	}
}

// feedWait bounds a test's wait for the feed to show what it wrote. The
// feed shows a commit once no older transaction of the database is still
// open — on PostgreSQL, of the whole cluster: other packages' tests too,
// their prepared transactions of shards among them, on a CI machine
// running them all at once. Events appear within moments, not at once,
// and on a loaded machine 10 s was seen to pass with none.
const feedWait = 90 * time.Second

// feedFrom reads the feed after cursor (its first 1,000 events) until
// done says it has what the test waits for, or feedWait has passed, and
// returns what it read.
func feedFrom(t *testing.T, s holdfast.Store, cursor string, done func([]holdfast.Event) bool) []holdfast.Event {
	t.Helper()
	for deadline := time.Now().Add(feedWait); ; {
		es, _, err := s.Events(ctxT(t), cursor, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if done(es) || time.Now().After(deadline) {
			return es
		}
		time.Sleep(20 * time.Millisecond)
	}
}
