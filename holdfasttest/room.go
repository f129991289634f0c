package holdfasttest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
)

func mustJoin(t *testing.T, s holdfast.Store, room, holder, owner string) holdfast.RoomTicket {
	t.Helper()
	tk, err := s.JoinRoom(context.Background(), room, holder, owner)
	if err != nil {
		t.Fatalf("JoinRoom(%s, %s): %v", room, holder, err)
	}
	return tk
}

func mustTicket(t *testing.T, s holdfast.Store, tk holdfast.RoomTicket) holdfast.RoomTicket {
	t.Helper()
	got, err := s.RoomTicket(context.Background(), tk.Room, tk.Ticket)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func mustAdmit(t *testing.T, s holdfast.Store) int {
	t.Helper()
	n, err := s.AdmitRooms(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// openRoom moves a room's opening into the past.
func openRoom(t *testing.T, s holdfast.Store, room string) {
	t.Helper()
	MustExec(t, s, `UPDATE rooms SET opens_at = holdfast_now_ms() - 1000 WHERE id = $1`, room)
}

func testRooms(t *testing.T, h Harness) {
	skipRemote(t, h) // holds name owners (keys) directly; TestRoomsAPI covers the wire
	s, _ := h.Open(t)
	ctx := context.Background()
	MustCreatePool(t, s, "p", 100, 0)
	MustCreatePool(t, s, "free", 10, 0)
	MustCreateGroup(t, s, "hall", false, "A-1", "A-2")
	later := time.Now().Add(time.Hour)
	room := holdfast.Room{ID: "r", Pools: []string{"p"}, OpensAt: later, AdmitPerSecond: 1000, AdmitTTLSeconds: 60, MaxInside: 10}
	for name, bad := range map[string]holdfast.Room{
		"nothing protected": {ID: "x", OpensAt: later, AdmitPerSecond: 1, AdmitTTLSeconds: 60, MaxInside: 1},
		"no rate":           {ID: "x", Pools: []string{"free"}, OpensAt: later, AdmitTTLSeconds: 60, MaxInside: 1},
		"no ttl":            {ID: "x", Pools: []string{"free"}, OpensAt: later, AdmitPerSecond: 1, MaxInside: 1},
		"no max inside":     {ID: "x", Pools: []string{"free"}, OpensAt: later, AdmitPerSecond: 1, AdmitTTLSeconds: 60},
		"no opening":        {ID: "x", Pools: []string{"free"}, AdmitPerSecond: 1, AdmitTTLSeconds: 60, MaxInside: 1},
	} {
		if _, err := s.CreateRoom(ctx, bad); holdfast.ErrorCode(err) != holdfast.CodeInvalid {
			t.Fatalf("%s: CreateRoom = %v, want invalid", name, err)
		}
	}
	if _, err := s.CreateRoom(ctx, holdfast.Room{ID: "x", Pools: []string{"nope"}, OpensAt: later, AdmitPerSecond: 1, AdmitTTLSeconds: 60, MaxInside: 1}); holdfast.ErrorCode(err) != holdfast.CodeNotFound {
		t.Fatalf("a room on no pool: %v", err)
	}
	if got, err := s.CreateRoom(ctx, room); err != nil || got.MaxPerKey != 0 || !slices.Equal(got.Pools, []string{"p"}) {
		t.Fatalf("CreateRoom: %+v, %v", got, err)
	}
	if _, err := s.CreateRoom(ctx, holdfast.Room{ID: "r2", Pools: []string{"p"}, OpensAt: later, AdmitPerSecond: 1, AdmitTTLSeconds: 60, MaxInside: 1}); holdfast.ErrorCode(err) != holdfast.CodeConflict {
		t.Fatalf("a pool behind two rooms: %v", err)
	}
	if _, err := s.CreateRoom(ctx, holdfast.Room{ID: "seats", Groups: []string{"hall"}, OpensAt: later, AdmitPerSecond: 1, AdmitTTLSeconds: 60, MaxInside: 1}); err != nil {
		t.Fatal(err)
	}

	// A protected pool or group needs an admission; others do not.
	_, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "alice", Lines: []holdfast.Line{{Pool: "free", Quantity: 1}, {Pool: "p", Quantity: 1}}})
	var e *holdfast.Error
	if !errors.As(err, &e) || e.Code != holdfast.CodeAdmissionRequired || e.Room != "r" {
		t.Fatalf("a hold on a protected pool: %v, want admission_required naming room r", err)
	}
	for _, l := range []holdfast.Line{{Units: []string{"A-1"}}, {Group: "hall", Any: 1}} {
		if _, err := s.Hold(ctx, holdfast.HoldRequest{Holder: "alice", Lines: []holdfast.Line{l}}); holdfast.ErrorCode(err) != holdfast.CodeAdmissionRequired {
			t.Fatalf("a hold on a protected group (%+v): %v", l, err)
		}
	}
	MustHold(t, s, "alice", holdfast.Line{Pool: "free", Quantity: 1})

	// A room may cap a key's places; the same holder again is no new place.
	MustCreatePool(t, s, "capped", 10, 0)
	if _, err := s.CreateRoom(ctx, holdfast.Room{ID: "cap", Pools: []string{"capped"}, OpensAt: later, AdmitPerSecond: 1, AdmitTTLSeconds: 60, MaxInside: 1, MaxPerKey: 2}); err != nil {
		t.Fatal(err)
	}
	mustJoin(t, s, "cap", "c1", "key-c")
	mustJoin(t, s, "cap", "c2", "key-c")
	mustJoin(t, s, "cap", "c1", "key-c")
	if _, err := s.JoinRoom(ctx, "cap", "c3", "key-c"); holdfast.ErrorCode(err) != holdfast.CodeQuotaExceeded {
		t.Fatalf("a third place for a key capped at 2: %v", err)
	}
	mustJoin(t, s, "cap", "c3", "key-d")
	// Every room, by id, with its counts.
	rooms, err := s.Rooms(ctx)
	var ids []string
	for _, r := range rooms {
		ids = append(ids, r.ID)
	}
	if err != nil || !slices.Equal(ids, []string{"cap", "r", "seats"}) || rooms[0].Waiting != 3 || !slices.Equal(rooms[0].Pools, []string{"capped"}) {
		t.Fatalf("Rooms: %+v, %v; want cap (3 waiting), r, seats", rooms, err)
	}

	// Sixty join before opening (a random order among them), three after
	// (in join order, behind them). Joining again keeps one's place.
	var early []holdfast.RoomTicket
	for i := range 60 {
		early = append(early, mustJoin(t, s, "r", fmt.Sprintf("early-%02d", i), "key-a"))
	}
	if again := mustJoin(t, s, "r", "early-00", "key-a"); again.Ticket != early[0].Ticket {
		t.Fatalf("joining again gave another place: %s, %s", again.Ticket, early[0].Ticket)
	}
	other := mustJoin(t, s, "r", "early-00", "key-b")
	if other.Ticket == early[0].Ticket {
		t.Fatal("another key's holder of the same name got the same place")
	}
	openRoom(t, s, "r")
	var late []holdfast.RoomTicket
	for i := range 3 {
		late = append(late, mustJoin(t, s, "r", fmt.Sprintf("late-%d", i), "key-a"))
	}
	positions := map[int64]bool{}
	var order []int64
	for _, tk := range early {
		p := mustTicket(t, s, tk).Position
		if p < 1 || p > 61 {
			t.Fatalf("an early joiner at %d of 61", p)
		}
		positions[p] = true
		order = append(order, p)
	}
	if len(positions) != 60 || slices.IsSorted(order) {
		t.Fatalf("early joiners' places are not a shuffle of 1…61: %v", order)
	}
	for i, tk := range late {
		if got := mustTicket(t, s, tk); got.Position != int64(62+i) || got.EstimatedWaitSeconds <= 0 {
			t.Fatalf("late joiner %d: %+v, want position %d", i, got, 62+i)
		}
	}

	// Admission: in place order, never more than MaxInside inside.
	if n := mustAdmit(t, s); n != 10 {
		t.Fatalf("admitted %d, want max_inside 10", n)
	}
	if n := mustAdmit(t, s); n != 0 {
		t.Fatalf("admitted %d more with the room full", n)
	}
	var admitted []holdfast.RoomTicket
	for _, tk := range append(slices.Clone(early), other) {
		got := mustTicket(t, s, tk)
		if got.Status == holdfast.TicketAdmitted {
			if got.Admission == "" || got.AdmissionExpiresAt == nil || got.Position != 0 {
				t.Fatalf("an admitted ticket: %+v", got)
			}
			admitted = append(admitted, got)
		}
	}
	if len(admitted) != 10 {
		t.Fatalf("%d early joiners admitted, want 10, the first places", len(admitted))
	}
	if got := mustTicket(t, s, late[0]); got.Position != 62-10 {
		t.Fatalf("after 10 admissions the first late joiner is at %d, want 52", got.Position)
	}
	if r, err := s.Room(ctx, "r"); err != nil || r.Inside != 10 || r.Waiting != 54 {
		t.Fatalf("room: %+v, %v", r, err)
	}

	// The admission is the holder's, for one hold, until it expires.
	// Two of key-a's admitted (key-b's one may be among the ten).
	slices.SortFunc(admitted, func(x, y holdfast.RoomTicket) int { return cmpBool(x.Owner == "key-b", y.Owner == "key-b") })
	a, b := admitted[0], admitted[1]
	try := func(holder, owner, admission string) error {
		_, err := s.Hold(ctx, holdfast.HoldRequest{Holder: holder, Owner: owner, Admission: admission, Lines: []holdfast.Line{{Pool: "p", Quantity: 1}}})
		return err
	}
	for name, err := range map[string]error{
		"another holder's": try(b.Holder, "key-a", a.Admission),
		"another key's":    try(a.Holder, "key-b", a.Admission),
		"made up":          try(a.Holder, "key-a", "adm_made_up"),
	} {
		if holdfast.ErrorCode(err) != holdfast.CodeAdmissionInvalid {
			t.Fatalf("%s admission: %v, want admission_invalid", name, err)
		}
	}
	if err := try(a.Holder, "key-a", a.Admission); err != nil {
		t.Fatalf("a hold with its admission: %v", err)
	}
	if err := try(a.Holder, "key-a", a.Admission); holdfast.ErrorCode(err) != holdfast.CodeAdmissionInvalid {
		t.Fatalf("an admission used twice: %v", err)
	}
	MustExec(t, s, `UPDATE room_tickets SET expires_at = holdfast_now_ms() - 1 WHERE ticket = $1`, b.Ticket)
	if err := try(b.Holder, "key-a", b.Admission); holdfast.ErrorCode(err) != holdfast.CodeAdmissionInvalid {
		t.Fatalf("an expired admission: %v", err)
	}

	// b's expired admission frees a place; a's hold, confirmed, another.
	used := mustTicket(t, s, a)
	if _, err := s.Confirm(ctx, used.HoldID, ""); err != nil {
		t.Fatal(err)
	}
	if n := mustAdmit(t, s); n != 2 {
		t.Fatalf("admitted %d after two were done, want 2", n)
	}
	if got := mustTicket(t, s, b); got.Status != holdfast.TicketDone || got.Admission != "" {
		t.Fatalf("an expired admission's ticket: %+v", got)
	}

	// Sold out: everything confirmed; everyone still waiting is told.
	if _, err := s.SetCapacity(ctx, "p", 1); err != nil {
		t.Fatal(err)
	}
	if n := mustAdmit(t, s); n != 0 {
		t.Fatalf("admitted %d into a sold-out room", n)
	}
	if r, _ := s.Room(ctx, "r"); !r.SoldOut || r.Waiting != 0 {
		t.Fatalf("room after the sell-out: %+v", r)
	}
	if got := mustTicket(t, s, late[2]); got.Status != holdfast.TicketSoldOut {
		t.Fatalf("a waiting ticket after the sell-out: %+v", got)
	}
	if got := mustJoin(t, s, "r", "latecomer", "key-a"); got.Status != holdfast.TicketSoldOut || got.Position != 0 {
		t.Fatalf("joining a sold-out room: %+v, want sold_out at once", got)
	}
	if _, err := s.JoinRoom(ctx, "nope", "x", ""); holdfast.ErrorCode(err) != holdfast.CodeNotFound {
		t.Fatalf("joining no room: %v", err)
	}
	MustAuditClean(t, s)
}

// Three servers admit from one room while people join (each twice at
// once): one place per holder, no one admitted twice, no place skipped,
// never more than MaxInside inside.
func raceRoomAdmission(t *testing.T, h Harness) {
	stores := instances(t, h, 3)
	ctx := ctxT(t)
	s := stores[0]
	MustCreatePool(t, s, "p", 1000, 0)
	if _, err := s.CreateRoom(ctx, holdfast.Room{ID: "r", Pools: []string{"p"}, OpensAt: time.Now().Add(-time.Second),
		AdmitPerSecond: 100000, AdmitTTLSeconds: 60, MaxInside: 40}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for k := range stores {
		untilStopped(&wg, stop, func() bool {
			if _, err := stores[k].AdmitRooms(ctx); err != nil {
				t.Errorf("AdmitRooms: %v", err)
				return false
			}
			return true
		})
	}
	// 160 joins of 80 holders, each holder twice at once on two servers:
	// one place each.
	storm(160, func(i int) {
		if _, err := stores[i%3].JoinRoom(ctx, "r", fmt.Sprintf("b-%d", i%80), ""); err != nil {
			t.Errorf("join: %v", err)
		}
	})
	if n := MustCount(t, s, `SELECT COUNT(*) FROM room_tickets`); n != 80 {
		t.Fatalf("%d places for 80 holders", n)
	}
	// Let the admitters see every join, then stop them.
	for n := 0; n < 40; {
		n = int(MustCount(t, s, `SELECT COUNT(*) FROM room_tickets WHERE status = 'admitted'`))
	}
	close(stop)
	wg.Wait()
	if n := MustCount(t, s, `SELECT COUNT(*) FROM room_tickets WHERE status = 'admitted'`); n != 40 {
		t.Fatalf("%d inside, want max_inside 40", n)
	}
	if n := MustCount(t, s, `SELECT COUNT(*) FROM room_tickets WHERE status = 'waiting' AND place < (SELECT MAX(place) FROM room_tickets WHERE status = 'admitted')`); n != 0 {
		t.Fatalf("%d waiting places were skipped by an admission", n)
	}
	if n := MustCount(t, s, `SELECT COUNT(DISTINCT token) FROM room_tickets WHERE token IS NOT NULL`); n != 40 {
		t.Fatalf("%d admissions for 40 admitted", n)
	}
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}

// testRoomDraw: a room commits to its draw before anyone joins (the
// seed's SHA-256), reveals the seed at opening, and orders those who
// joined before by HMAC-SHA256(seed, ticket id), ascending — exactly
// that, recomputed here; each ticket's place is fixed at opening, later
// joiners follow in join order; the published draw verifies, and a
// tampered one does not.
func testRoomDraw(t *testing.T, h Harness) {
	skipRemote(t, h) // opens the room by SQL; TestRoomDrawAPI covers the wire
	s, _ := h.Open(t)
	ctx := context.Background()
	MustCreatePool(t, s, "p", 100, 0)
	created, err := s.CreateRoom(ctx, holdfast.Room{ID: "r", Pools: []string{"p"}, OpensAt: time.Now().Add(time.Hour),
		AdmitPerSecond: 1000, AdmitTTLSeconds: 60, MaxInside: 1000})
	if err != nil {
		t.Fatal(err)
	}
	commitment := created.SeedCommitment
	if len(commitment) != 64 || created.Seed != "" {
		t.Fatalf("a new room: seed_commitment %q, seed %q; want 64 hex digits and no seed before opening", commitment, created.Seed)
	}
	if _, err := s.RoomDraw(ctx, "r"); holdfast.ErrorCode(err) != holdfast.CodeInvalidState {
		t.Fatalf("the draw before opening: %v, want invalid_state", err)
	}
	var early []string
	for i := range 30 {
		tk := mustJoin(t, s, "r", fmt.Sprintf("b%02d", i), "")
		if tk.Place != 0 {
			t.Fatalf("a place before opening: %d, want none yet", tk.Place)
		}
		early = append(early, tk.Ticket)
	}
	if r, err := s.Room(ctx, "r"); err != nil || r.SeedCommitment != commitment || r.Seed != "" {
		t.Fatalf("the room before opening: %+v, %v; want the same commitment and no seed", r, err)
	}
	openRoom(t, s, "r")
	late := mustJoin(t, s, "r", "late", "")
	r, err := s.Room(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	if r.Seed == "" || holdfast.SeedCommitment(r.Seed) != commitment {
		t.Fatalf("the room after opening: seed %q, commitment %q (was %q): want the seed that hashes to it", r.Seed, r.SeedCommitment, commitment)
	}
	// The order, computed from the definition.
	want := slices.Clone(early)
	slices.SortFunc(want, func(a, b string) int {
		return strings.Compare(holdfast.DrawOrder(r.Seed, a), holdfast.DrawOrder(r.Seed, b))
	})
	d, err := s.RoomDraw(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	if d.Total != len(early) || len(d.Entries) != len(early) {
		t.Fatalf("the draw lists %d (total %d), want the %d who joined before opening", len(d.Entries), d.Total, len(early))
	}
	for i, id := range want {
		e := d.Entries[i]
		if e.Ticket != id || e.Place != int64(i+1) || e.TicketSHA256 != holdfast.TicketSHA256(id) || e.Draw != holdfast.DrawOrder(r.Seed, id) {
			t.Fatalf("draw entry %d: %+v, want ticket %s at place %d", i, e, id, i+1)
		}
		if got := mustTicket(t, s, holdfast.RoomTicket{Room: "r", Ticket: id}); got.Place != int64(i+1) {
			t.Fatalf("ticket %s reads place %d, the draw says %d", id, got.Place, i+1)
		}
	}
	if got := mustTicket(t, s, late); got.Place != int64(len(early)+1) {
		t.Fatalf("the first to join after opening has place %d, want %d", got.Place, len(early)+1)
	}
	if err := holdfast.VerifyDraw(commitment, d, early[7]); err != nil {
		t.Fatalf("the published draw does not verify: %v", err)
	}
	// Tampered: two places swapped, a ticket's HMAC replaced, another seed.
	swapped := d
	swapped.Entries = slices.Clone(d.Entries)
	swapped.Entries[0].Ticket, swapped.Entries[1].Ticket = swapped.Entries[1].Ticket, swapped.Entries[0].Ticket
	swapped.Entries[0].TicketSHA256, swapped.Entries[1].TicketSHA256 = swapped.Entries[1].TicketSHA256, swapped.Entries[0].TicketSHA256
	if holdfast.VerifyDraw(commitment, swapped, "") == nil {
		t.Fatal("a draw with two tickets swapped verifies")
	}
	other := d
	other.Seed = holdfast.NewSeed()
	if holdfast.VerifyDraw(commitment, other, "") == nil {
		t.Fatal("a draw with another seed verifies")
	}
	if holdfast.VerifyDraw(commitment, d, "tk_not_in_the_draw") == nil {
		t.Fatal("a ticket not in the draw verifies as in it")
	}
}

// testAdmitStock: a room with admit "stock" lets in no more than its
// stock can serve — the admissions out and unused, times
// max_units_per_admission, within what its pools have free — and admits
// again when held capacity comes back. A rate room in the same state
// would admit everyone waiting.
func testAdmitStock(t *testing.T, h Harness) {
	skipRemote(t, h) // admits by hand; the race and the CLI cover the rest
	s, _ := h.Open(t)
	ctx := context.Background()
	MustCreatePool(t, s, "p", 6, 0)
	if _, err := s.CreateRoom(ctx, holdfast.Room{ID: "bad", Pools: []string{"p"}, OpensAt: time.Now(), AdmitPerSecond: 1, AdmitTTLSeconds: 60, MaxInside: 1,
		Admit: holdfast.AdmitStock}); holdfast.ErrorCode(err) != holdfast.CodeInvalid {
		t.Fatalf("admit stock without max_units_per_admission: %v, want invalid", err)
	}
	r, err := s.CreateRoom(ctx, holdfast.Room{ID: "r", Pools: []string{"p"}, OpensAt: time.Now().Add(-time.Second), AdmitPerSecond: 1000,
		AdmitTTLSeconds: 60, MaxInside: 100, MaxUnitsPerAdmission: 2, Admit: holdfast.AdmitStock})
	if err != nil || r.Admit != holdfast.AdmitStock {
		t.Fatalf("CreateRoom: %+v, %v", r, err)
	}
	var tickets []holdfast.RoomTicket
	for i := range 10 {
		tickets = append(tickets, mustJoin(t, s, "r", fmt.Sprintf("b%d", i), ""))
	}
	admitted := func() (out []holdfast.RoomTicket) {
		for _, tk := range tickets {
			if got := mustTicket(t, s, tk); got.Status == holdfast.TicketAdmitted {
				out = append(out, got)
			}
		}
		return out
	}
	if n := mustAdmit(t, s); n != 3 {
		t.Fatalf("6 free, 2 units an admission: %d admitted, want 3", n)
	}
	in := admitted()
	hold := func(tk holdfast.RoomTicket, q int64) holdfast.Hold {
		t.Helper()
		h, err := s.Hold(ctx, holdfast.HoldRequest{Holder: tk.Holder, Admission: tk.Admission, TTL: time.Hour, Lines: []holdfast.Line{{Pool: "p", Quantity: q}}})
		if err != nil {
			t.Fatalf("hold with %s's admission: %v", tk.Holder, err)
		}
		return h
	}
	h0 := hold(in[0], 2)
	hold(in[1], 1)
	// 3 free, one admission out unused (2 units): nobody else fits.
	if n := mustAdmit(t, s); n != 0 {
		t.Fatalf("3 free and an admission of 2 out: %d more admitted, want 0", n)
	}
	// The hold of 2 comes back: 5 free, one unused out: one more fits.
	if _, err := s.Release(ctx, h0.ID); err != nil {
		t.Fatal(err)
	}
	if n := mustAdmit(t, s); n != 1 {
		t.Fatalf("5 free and an admission of 2 out: %d admitted, want 1", n)
	}
	if n := MustCount(t, s, `SELECT COUNT(*) FROM room_tickets WHERE room_id = 'r' AND status = 'waiting'`); n != 6 {
		t.Fatalf("%d still waiting, want 6", n)
	}
}

// raceAdmitStock: 64 buyers join a stock room (24 units, 2 an
// admission), wait for their turn, hold one or two units, and release or
// (one in eight) let the hold expire, while three
// servers admit and sweep. In every snapshot, the admissions out and
// unused, times what each buys, fit in what is free; and everyone gets in
// in the end, as capacity comes back.
func raceAdmitStock(t *testing.T, h Harness) {
	// Over HTTP the harness joins rooms on the store directly, as another
	// owner than its HTTP client holds as: the admission would not be the
	// holder's. TestRoomsAPI covers admissions over the wire.
	skipRemote(t, h)
	stores := instances(t, h, 3)
	ctx := ctxT(t)
	s := stores[0]
	MustCreatePool(t, s, "p", 24, 0)
	if _, err := s.CreateRoom(ctx, holdfast.Room{ID: "r", Pools: []string{"p"}, OpensAt: time.Now().Add(-time.Second), AdmitPerSecond: 100000,
		AdmitTTLSeconds: 60, MaxInside: 64, MaxUnitsPerAdmission: 2, Admit: holdfast.AdmitStock}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var worst, samples atomic.Int64
	for k := range stores {
		untilStopped(&wg, stop, func() bool {
			if _, err := stores[k].AdmitRooms(ctx); err != nil {
				t.Errorf("AdmitRooms: %v", err)
				return false
			}
			if _, err := stores[k].ExpireDue(ctx, 50); err != nil {
				t.Errorf("ExpireDue: %v", err)
				return false
			}
			return true
		})
	}
	untilStopped(&wg, stop, func() bool {
		// One statement: one snapshot of both counts.
		over := MustCount(t, s, `SELECT (SELECT COUNT(*) FROM room_tickets WHERE room_id = 'r' AND status = 'admitted' AND hold_id IS NULL) * 2
			- (SELECT capacity - held - confirmed FROM pools WHERE id = 'p')`)
		samples.Add(1)
		for w := worst.Load(); over > w && !worst.CompareAndSwap(w, over); w = worst.Load() {
		}
		return true
	})
	var done atomic.Int64
	storm(64, func(i int) {
		st := stores[i%3]
		tk, err := st.JoinRoom(ctx, "r", fmt.Sprintf("b%d", i), "")
		if err != nil {
			t.Errorf("join: %v", err)
			return
		}
		for tk.Status == holdfast.TicketWaiting {
			time.Sleep(5 * time.Millisecond) // a buyer polling their ticket
			if tk, err = st.RoomTicket(ctx, "r", tk.Ticket); err != nil {
				t.Errorf("ticket: %v", err)
				return
			}
		}
		if tk.Status != holdfast.TicketAdmitted {
			t.Errorf("%s: %s, want admitted", tk.Holder, tk.Status)
			return
		}
		ttl := time.Hour
		if i%8 == 0 {
			ttl = time.Second // left to expire
		}
		hd, err := st.Hold(ctx, holdfast.HoldRequest{Holder: tk.Holder, Admission: tk.Admission, TTL: ttl, Lines: []holdfast.Line{{Pool: "p", Quantity: int64(1 + i%2)}}})
		if err != nil {
			t.Errorf("%s's hold with its admission: %v", tk.Holder, err)
			return
		}
		if i%8 != 0 {
			if _, err := st.Release(ctx, hd.ID); err != nil {
				t.Errorf("release: %v", err)
			}
		}
		done.Add(1)
	})
	close(stop)
	wg.Wait()
	if w := worst.Load(); w > 0 {
		t.Fatalf("admissions out and unused could buy %d more units than were free (%d samples)", w, samples.Load())
	}
	if n := done.Load(); n != 64 {
		t.Fatalf("%d of 64 buyers got in and held", n)
	}
}

// testRoomToWaitlist: at a room's sell-out those still waiting are told
// sold_out and may move to the pool's waitlist with their ticket (no
// admission): behind the entries made before the sell-out, in queue order
// among themselves whatever order they move in, and offered in that order
// when capacity comes back. A place moves once; one still waiting, or
// another key's, does not.
func testRoomToWaitlist(t *testing.T, h Harness) {
	skipRemote(t, h) // admits by hand; TestRoomToWaitlistAPI covers the wire
	s, _ := h.Open(t)
	ctx := context.Background()
	MustCreatePool(t, s, "p", 2, 0)
	if _, err := s.CreateRoom(ctx, holdfast.Room{ID: "r", Pools: []string{"p"}, OpensAt: time.Now().Add(-time.Second), AdmitPerSecond: 1000,
		AdmitTTLSeconds: 60, MaxInside: 3}); err != nil {
		t.Fatal(err)
	}
	var tk []holdfast.RoomTicket
	for i := range 6 {
		tk = append(tk, mustJoin(t, s, "r", fmt.Sprintf("b%d", i), "k"))
	}
	if _, err := s.JoinWaitlist(ctx, holdfast.WaitlistRequest{Pool: "p", Holder: "b5", Quantity: 1, Owner: "k", Ticket: tk[5].Ticket}); holdfast.ErrorCode(err) != holdfast.CodeInvalidState {
		t.Fatalf("a waiting place moving to the waitlist: %v, want invalid_state", err)
	}
	if n := mustAdmit(t, s); n != 3 {
		t.Fatalf("%d admitted, want 3", n)
	}
	for i := range 3 {
		tk[i] = mustTicket(t, s, tk[i])
	}
	var holds []holdfast.Hold
	for i := range 2 {
		h, err := s.Hold(ctx, holdfast.HoldRequest{Holder: tk[i].Holder, Owner: "k", Admission: tk[i].Admission, TTL: time.Hour, Lines: []holdfast.Line{{Pool: "p", Quantity: 1}}})
		if err != nil {
			t.Fatal(err)
		}
		holds = append(holds, h)
	}
	// Everything held: b2 joins the waitlist with its admission, before the sell-out.
	early, err := s.JoinWaitlist(ctx, holdfast.WaitlistRequest{Pool: "p", Holder: "b2", Quantity: 1, Owner: "k", Admission: tk[2].Admission})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range holds {
		if _, err := s.Confirm(ctx, h.ID, ""); err != nil {
			t.Fatal(err)
		}
	}
	mustAdmit(t, s) // sees the sell-out
	for i := 3; i < 6; i++ {
		if got := mustTicket(t, s, tk[i]); got.Status != holdfast.TicketSoldOut {
			t.Fatalf("%s after the sell-out: %s, want sold_out", got.Holder, got.Status)
		}
	}
	// A join after the sell-out is told at once, and is no place drawn
	// before opening (everyone here joined after it: the draw is empty).
	if late := mustJoin(t, s, "r", "late", "k"); late.Status != holdfast.TicketSoldOut {
		t.Fatalf("a join after the sell-out: %s, want sold_out", late.Status)
	}
	if d, err := s.RoomDraw(ctx, "r"); err != nil || d.Total != 0 {
		t.Fatalf("the draw of a room everyone joined after opening: %+v, %v; want no entries", d, err)
	}
	// They move in the reverse of their queue order; another key's ticket
	// and a holder not the ticket's are refused.
	if _, err := s.JoinWaitlist(ctx, holdfast.WaitlistRequest{Pool: "p", Holder: "b5", Quantity: 1, Owner: "other", Ticket: tk[5].Ticket}); holdfast.ErrorCode(err) != holdfast.CodeNotFound {
		t.Fatalf("another key's ticket: %v, want not_found", err)
	}
	if _, err := s.JoinWaitlist(ctx, holdfast.WaitlistRequest{Pool: "p", Holder: "mallory", Quantity: 1, Owner: "k", Ticket: tk[5].Ticket}); holdfast.ErrorCode(err) != holdfast.CodeInvalid {
		t.Fatalf("another holder with b5's ticket: %v, want invalid", err)
	}
	moved := map[string]holdfast.WaitlistEntry{}
	for _, i := range []int{5, 3, 4} {
		e, err := s.JoinWaitlist(ctx, holdfast.WaitlistRequest{Pool: "p", Holder: tk[i].Holder, Quantity: 1, Owner: "k", Ticket: tk[i].Ticket})
		if err != nil {
			t.Fatalf("%s moving to the waitlist: %v", tk[i].Holder, err)
		}
		moved[tk[i].Holder] = e
	}
	list, err := s.Waitlist(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, e := range list {
		order = append(order, e.Holder)
	}
	if want := []string{"b2", "b3", "b4", "b5"}; !slices.Equal(order, want) {
		t.Fatalf("the waitlist after the moves: %v, want %v (the early entry, then queue order)", order, want)
	}
	if e, err := s.JoinWaitlist(ctx, holdfast.WaitlistRequest{Pool: "p", Holder: "b3", Quantity: 1, Owner: "k", Ticket: tk[3].Ticket}); err != nil || e.ID != moved["b3"].ID {
		t.Fatalf("b3 moving again: %+v, %v; want the same entry", e, err)
	}
	// Capacity comes back: offered in that order.
	if _, err := s.Cancel(ctx, holds[0].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.OfferWaitlists(ctx); err != nil {
		t.Fatal(err)
	}
	if e, _ := s.WaitlistEntry(ctx, "p", early.ID); e.Status != holdfast.WaitlistOffered {
		t.Fatalf("the early entry after a unit came back: %s, want offered", e.Status)
	}
	if _, err := s.Cancel(ctx, holds[1].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.OfferWaitlists(ctx); err != nil {
		t.Fatal(err)
	}
	for holder, want := range map[string]holdfast.WaitlistStatus{"b3": holdfast.WaitlistOffered, "b4": holdfast.WaitlistWaiting, "b5": holdfast.WaitlistWaiting} {
		if e, _ := s.WaitlistEntry(ctx, "p", moved[holder].ID); e.Status != want {
			t.Fatalf("%s after the second unit came back: %s, want %s", holder, e.Status, want)
		}
	}
}
