package http_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/holdfasttest"
	hfhttp "github.com/holdfast/holdfast/http"
)

// A sale behind a waiting room, over the API: a hold without an admission
// is refused naming the room; a joiner polls its ticket, is admitted, and
// holds with the admission in the Holdfast-Admission header, once.
func TestRoomsAPI(t *testing.T) {
	backends(t, func(t *testing.T, s holdfast.Store) {
		admin := caller{base: serve(t, s, hfhttp.Config{AdminKey: adminKey}).URL, key: adminKey}
		alice, mallory := newKey(t, admin, "shop"), newKey(t, admin, "other")
		admin.want(t, "POST", "/v1/pools", `{"id":"gala","capacity":5}`, 201, "")
		alice.want(t, "POST", "/v1/rooms", `{"id":"r"}`, 403, hfhttp.CodeForbidden)
		admin.want(t, "POST", "/v1/rooms", `{"id":"r","pools":["gala"],"opens_at":"bad","admit_per_second":5,"admit_ttl_seconds":60,"max_inside":2}`, 400, holdfast.CodeInvalid)
		opens := time.Now().Add(-time.Second).UTC().Format(time.RFC3339)
		admin.want(t, "POST", "/v1/rooms", `{"id":"r","pools":["gala"],"opens_at":"`+opens+`","admit_per_second":5,"admit_ttl_seconds":60,"max_inside":2}`, 201, "")

		p := alice.want(t, "POST", "/v1/holds", `{"holder":"a","lines":[{"pool":"gala","quantity":1}]}`, 403, holdfast.CodeAdmissionRequired).problem(t)
		if p.Room != "r" {
			t.Fatalf("admission_required names room %q", p.Room)
		}
		var tk holdfast.RoomTicket
		alice.want(t, "POST", "/v1/rooms/r/join", `{"holder":"a"}`, 202, "").decode(t, &tk)
		if tk.Status != holdfast.TicketWaiting || tk.Position != 1 || tk.Ticket == "" {
			t.Fatalf("joined: %+v", tk)
		}
		mallory.want(t, "GET", "/v1/rooms/r/tickets/"+tk.Ticket, "", 404, holdfast.CodeNotFound)
		if _, err := s.AdmitRooms(context.Background()); err != nil {
			t.Fatal(err)
		}
		alice.want(t, "GET", "/v1/rooms/r/tickets/"+tk.Ticket, "", 200, "").decode(t, &tk)
		if tk.Status != holdfast.TicketAdmitted || tk.Admission == "" {
			t.Fatalf("after admission: %+v", tk)
		}
		mallory.want(t, "POST", "/v1/holds", `{"holder":"a","lines":[{"pool":"gala","quantity":1}]}`, 403, holdfast.CodeAdmissionInvalid, "Holdfast-Admission", tk.Admission)
		alice.want(t, "POST", "/v1/holds", `{"holder":"a","lines":[{"pool":"gala","quantity":1}],"admission":"x"}`, 400, holdfast.CodeInvalid, "Holdfast-Admission", tk.Admission)
		alice.want(t, "POST", "/v1/holds", `{"holder":"a","lines":[{"pool":"gala","quantity":1}]}`, 201, "", "Holdfast-Admission", tk.Admission)
		alice.want(t, "POST", "/v1/holds", `{"holder":"a","lines":[{"pool":"gala","quantity":1}],"admission":"`+tk.Admission+`"}`, 403, holdfast.CodeAdmissionInvalid)
		var room holdfast.Room
		alice.want(t, "GET", "/v1/rooms/r", "", 200, "").decode(t, &room)
		if room.Inside != 1 || room.Waiting != 0 {
			t.Fatalf("room: %+v", room)
		}
		admin.want(t, "GET", "/v1/rooms/nope", "", 404, holdfast.CodeNotFound)
	})
}

// A sold-out pool's waitlist over the API: a client joins, reads only its
// own entry, gets an offer as a hold of its own when capacity comes back,
// and no new buyer gets that capacity; the list is the admin's.
func TestWaitlistAPI(t *testing.T) {
	backends(t, func(t *testing.T, s holdfast.Store) {
		admin := caller{base: serve(t, s, hfhttp.Config{AdminKey: adminKey}).URL, key: adminKey}
		alice, mallory := newKey(t, admin, "shop"), newKey(t, admin, "other")
		admin.want(t, "POST", "/v1/pools", `{"id":"gala","capacity":1,"offer_ttl_seconds":-1}`, 400, holdfast.CodeInvalid)
		admin.want(t, "POST", "/v1/pools", `{"id":"gala","capacity":1,"offer_ttl_seconds":120}`, 201, "")
		var sold holdfast.Hold
		mallory.want(t, "POST", "/v1/holds", `{"holder":"m","lines":[{"pool":"gala","quantity":1}]}`, 201, "").decode(t, &sold)

		alice.want(t, "POST", "/v1/pools/gala/waitlist", `{"holder":"a"}`, 400, holdfast.CodeInvalid)
		alice.want(t, "POST", "/v1/pools/gala/waitlist", `{"holder":"a","quantity":2}`, 400, holdfast.CodeInvalid)
		alice.want(t, "POST", "/v1/pools/nope/waitlist", `{"holder":"a","quantity":1}`, 404, holdfast.CodeNotFound)
		var e holdfast.WaitlistEntry
		alice.want(t, "POST", "/v1/pools/gala/waitlist", `{"holder":"a","quantity":1}`, 201, "").decode(t, &e)
		if e.Status != holdfast.WaitlistWaiting || e.Position != 1 || e.ID == "" {
			t.Fatalf("joined: %+v", e)
		}
		mallory.want(t, "GET", "/v1/pools/gala/waitlist/"+e.ID, "", 404, holdfast.CodeNotFound)
		mallory.want(t, "DELETE", "/v1/pools/gala/waitlist/"+e.ID, "", 404, holdfast.CodeNotFound)
		alice.want(t, "GET", "/v1/pools/gala/waitlist", "", 403, hfhttp.CodeForbidden)
		var list struct{ Entries []holdfast.WaitlistEntry }
		admin.want(t, "GET", "/v1/pools/gala/waitlist", "", 200, "").decode(t, &list)
		if len(list.Entries) != 1 || list.Entries[0].ID != e.ID {
			t.Fatalf("list: %+v", list)
		}

		mallory.want(t, "POST", "/v1/holds/"+sold.ID+"/release", `{}`, 200, "")
		mallory.want(t, "POST", "/v1/holds", `{"holder":"m2","lines":[{"pool":"gala","quantity":1}]}`, 409, holdfast.CodeSoldOut)
		if n, err := s.OfferWaitlists(context.Background()); err != nil || n != 1 {
			t.Fatalf("OfferWaitlists = %d, %v", n, err)
		}
		alice.want(t, "GET", "/v1/pools/gala/waitlist/"+e.ID, "", 200, "").decode(t, &e)
		if e.Status != holdfast.WaitlistOffered || e.HoldID == "" || e.OfferExpiresAt == nil {
			t.Fatalf("offered: %+v", e)
		}
		// The offer is alice's hold: she confirms it like any other.
		mallory.want(t, "POST", "/v1/holds/"+e.HoldID+"/confirm", `{}`, 404, holdfast.CodeNotFound)
		alice.want(t, "POST", "/v1/holds/"+e.HoldID+"/confirm", `{}`, 200, "")
		if _, err := s.OfferWaitlists(context.Background()); err != nil {
			t.Fatal(err)
		}
		alice.want(t, "GET", "/v1/pools/gala/waitlist/"+e.ID, "", 200, "").decode(t, &e)
		if e.Status != holdfast.WaitlistConfirmed {
			t.Fatalf("after the confirm: %+v", e)
		}
		alice.want(t, "DELETE", "/v1/pools/gala/waitlist/"+e.ID, "", 409, holdfast.CodeConflict)
	})
}

// A joiner follows a place live: the stream tells the position as it
// moves, then the admission, then ends.
func TestTicketStream(t *testing.T) {
	backends(t, func(t *testing.T, s holdfast.Store) {
		admin := caller{base: serve(t, s, hfhttp.Config{AdminKey: adminKey}).URL, key: adminKey}
		alice, mallory := newKey(t, admin, "shop"), newKey(t, admin, "other")
		admin.want(t, "POST", "/v1/pools", `{"id":"gala","capacity":5}`, 201, "")
		opens := time.Now().Add(-time.Second).UTC().Format(time.RFC3339)
		admin.want(t, "POST", "/v1/rooms", `{"id":"r","pools":["gala"],"opens_at":"`+opens+`","admit_per_second":100,"admit_ttl_seconds":60,"max_inside":1}`, 201, "")
		var tk holdfast.RoomTicket
		for _, h := range []string{"a", "b", "c"} {
			alice.want(t, "POST", "/v1/rooms/r/join", `{"holder":"`+h+`"}`, 202, "").decode(t, &tk)
		}
		mallory.want(t, "GET", "/v1/rooms/r/tickets/"+tk.Ticket+"/stream", "", 404, holdfast.CodeNotFound)
		req, _ := http.NewRequest("GET", alice.base+"/v1/rooms/r/tickets/"+tk.Ticket+"/stream", nil)
		req.Header.Set("Authorization", "Bearer "+alice.key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		sc := bufio.NewScanner(resp.Body)
		next := func() (holdfast.RoomTicket, bool) {
			t.Helper()
			for sc.Scan() {
				if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
					var got holdfast.RoomTicket
					if err := json.Unmarshal([]byte(data), &got); err != nil {
						t.Fatal(err)
					}
					return got, true
				}
			}
			return holdfast.RoomTicket{}, false
		}
		admit := func() {
			t.Helper()
			if _, err := s.AdmitRooms(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		if got, _ := next(); got.Position != 3 || got.Status != holdfast.TicketWaiting {
			t.Fatalf("first event: %+v", got)
		}
		admit() // a goes in; max_inside 1 keeps b and c out
		if got, _ := next(); got.Position != 2 || got.Status != holdfast.TicketWaiting {
			t.Fatalf("after one admission: %+v", got)
		}
		holdfasttest.MustExec(t, s, `UPDATE rooms SET max_inside = 10 WHERE id = 'r'`)
		admit()
		if got, _ := next(); got.Status != holdfast.TicketAdmitted || got.Admission == "" {
			t.Fatalf("after the turn came: %+v", got)
		}
		if got, more := next(); more {
			t.Fatalf("the stream went on after the admission: %+v", got)
		}
	})
}

// The side doors, over the wire: a waitlist behind a room that has not
// opened, an admission of one room behind another, a key's waitlist
// flood, and a revoked key's entries — each refused or ended, with the
// rule's code, changing nothing else.
func TestSideDoorsOverHTTP(t *testing.T) {
	backends(t, func(t *testing.T, s holdfast.Store) {
		ctx := context.Background()
		admin := caller{base: serve(t, s, hfhttp.Config{AdminKey: adminKey}).URL, key: adminKey}
		erin := newKey(t, admin, "erin")
		admin.want(t, "POST", "/v1/pools", `{"id":"open","capacity":10}`, 201, "")
		admin.want(t, "POST", "/v1/pools", `{"id":"vip","capacity":3}`, 201, "")
		admin.want(t, "POST", "/v1/holds", `{"holder":"early","lines":[{"pool":"vip","quantity":3}]}`, 201, "")
		past, later := time.Now().Add(-time.Second).UTC().Format(time.RFC3339), time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
		admin.want(t, "POST", "/v1/rooms", `{"id":"r1","pools":["open"],"opens_at":"`+past+`","admit_per_second":100,"admit_ttl_seconds":60,"max_inside":10}`, 201, "")
		admin.want(t, "POST", "/v1/rooms", `{"id":"r3","pools":["vip"],"opens_at":"`+later+`","admit_per_second":100,"admit_ttl_seconds":60,"max_inside":10}`, 201, "")

		erin.want(t, "POST", "/v1/pools/vip/waitlist", `{"holder":"erin","quantity":3}`, 403, holdfast.CodeAdmissionRequired)
		var tk holdfast.RoomTicket
		erin.want(t, "POST", "/v1/rooms/r1/join", `{"holder":"erin"}`, 202, "").decode(t, &tk)
		if _, err := s.AdmitRooms(ctx); err != nil {
			t.Fatal(err)
		}
		erin.want(t, "GET", "/v1/rooms/r1/tickets/"+tk.Ticket, "", 200, "").decode(t, &tk)
		if tk.Admission == "" {
			t.Fatalf("not admitted: %+v", tk)
		}
		erin.want(t, "POST", "/v1/holds", `{"holder":"erin","lines":[{"pool":"vip","quantity":1}]}`, 403, holdfast.CodeAdmissionInvalid, "Holdfast-Admission", tk.Admission)
		erin.want(t, "POST", "/v1/pools/vip/waitlist", `{"holder":"erin","quantity":3,"admission":"`+tk.Admission+`"}`, 403, holdfast.CodeAdmissionInvalid)
		erin.want(t, "POST", "/v1/pools/vip/waitlist", `{"holder":"erin","quantity":3}`, 403, holdfast.CodeAdmissionInvalid, "Holdfast-Admission", tk.Admission)

		// A flood of joins from a key whose quota is full.
		var k struct{ ID, Key string }
		admin.want(t, "POST", "/v1/keys", `{"name":"flood","max_held_units":5}`, 201, "").decode(t, &k)
		flood := caller{base: admin.base, key: k.Key}
		admin.want(t, "POST", "/v1/pools", `{"id":"p","capacity":100}`, 201, "")
		flood.want(t, "POST", "/v1/holds", `{"holder":"f","lines":[{"pool":"p","quantity":5}]}`, 201, "")
		flood.want(t, "POST", "/v1/pools/p/waitlist", `{"holder":"f0","quantity":95}`, 409, holdfast.CodeNotSoldOut)
		admin.want(t, "POST", "/v1/holds", `{"holder":"box","lines":[{"pool":"p","quantity":95}]}`, 201, "")
		for i := range 10 {
			flood.want(t, "POST", "/v1/pools/p/waitlist", `{"holder":"f`+strconv.Itoa(i)+`","quantity":100}`, 409, holdfast.CodeQuotaExceeded)
		}
		var p holdfast.Pool
		admin.want(t, "GET", "/v1/pools/p", "", 200, "").decode(t, &p)
		if p.Waitlisted != 0 {
			t.Fatalf("refused joins wait for %d", p.Waitlisted)
		}

		// A revoked key's entry is cancelled; the waiter behind it is
		// offered the capacity that comes back.
		var mk struct{ ID, Key string }
		admin.want(t, "POST", "/v1/keys", `{"name":"mallory"}`, 201, "").decode(t, &mk)
		mallory, alice := caller{base: admin.base, key: mk.Key}, newKey(t, admin, "alice")
		admin.want(t, "POST", "/v1/pools", `{"id":"gig","capacity":1}`, 201, "")
		var sold holdfast.Hold
		admin.want(t, "POST", "/v1/holds", `{"holder":"fan","lines":[{"pool":"gig","quantity":1}]}`, 201, "").decode(t, &sold)
		var me, ae holdfast.WaitlistEntry
		mallory.want(t, "POST", "/v1/pools/gig/waitlist", `{"holder":"m","quantity":1}`, 201, "").decode(t, &me)
		alice.want(t, "POST", "/v1/pools/gig/waitlist", `{"holder":"a","quantity":1}`, 201, "").decode(t, &ae)
		var mh holdfast.Hold
		mallory.want(t, "POST", "/v1/holds", `{"holder":"m","lines":[{"pool":"p","quantity":0}]}`, 400, holdfast.CodeInvalid)
		admin.want(t, "POST", "/v1/pools", `{"id":"merch","capacity":5}`, 201, "")
		mallory.want(t, "POST", "/v1/holds", `{"holder":"m","lines":[{"pool":"merch","quantity":2}]}`, 201, "").decode(t, &mh)
		admin.want(t, "DELETE", "/v1/keys/"+mk.ID, "", 200, "")
		admin.want(t, "GET", "/v1/pools/gig/waitlist/"+me.ID, "", 200, "").decode(t, &me)
		if me.Status != holdfast.WaitlistCancelled {
			t.Fatalf("a revoked key's entry: %+v", me)
		}
		admin.want(t, "GET", "/v1/holds/"+mh.ID, "", 200, "").decode(t, &mh)
		if mh.Status != holdfast.StatusReleased {
			t.Fatalf("a revoked key's hold: %+v", mh)
		}
		admin.want(t, "POST", "/v1/holds/"+sold.ID+"/release", `{}`, 200, "")
		if _, err := s.OfferWaitlists(ctx); err != nil {
			t.Fatal(err)
		}
		alice.want(t, "GET", "/v1/pools/gig/waitlist/"+ae.ID, "", 200, "").decode(t, &ae)
		if ae.Status != holdfast.WaitlistOffered {
			t.Fatalf("the waiter behind a revoked key's entry: %+v", ae)
		}
		holdfasttest.MustAuditClean(t, s)
	})
}

// The move from a sold-out room to the waitlist over the API: a place
// the sell-out ended moves with POST /v1/rooms/{id}/tickets/{t}/waitlist,
// as its holder, keeping queue order whatever order the moves come in;
// the same move again is the same entry; another key's ticket is 404, a
// place still waiting 409.
func TestRoomToWaitlistAPI(t *testing.T) {
	backends(t, func(t *testing.T, s holdfast.Store) {
		ctx := context.Background()
		admin := caller{base: serve(t, s, hfhttp.Config{AdminKey: adminKey}).URL, key: adminKey}
		alice, mallory := newKey(t, admin, "shop"), newKey(t, admin, "other")
		admin.want(t, "POST", "/v1/pools", `{"id":"gala","capacity":1}`, 201, "")
		opens := time.Now().Add(-time.Second).UTC().Format(time.RFC3339)
		admin.want(t, "POST", "/v1/rooms", `{"id":"r","pools":["gala"],"opens_at":"`+opens+`","admit_per_second":5,"admit_ttl_seconds":60,"max_inside":1}`, 201, "")
		tk := make([]holdfast.RoomTicket, 3)
		for i := range tk {
			alice.want(t, "POST", "/v1/rooms/r/join", fmt.Sprintf(`{"holder":"b%d"}`, i), 202, "").decode(t, &tk[i])
		}
		alice.want(t, "POST", "/v1/rooms/r/tickets/"+tk[2].Ticket+"/waitlist", `{"quantity":1}`, 409, holdfast.CodeInvalidState)
		if _, err := s.AdmitRooms(ctx); err != nil {
			t.Fatal(err)
		}
		alice.want(t, "GET", "/v1/rooms/r/tickets/"+tk[0].Ticket, "", 200, "").decode(t, &tk[0])
		alice.want(t, "POST", "/v1/bookings", `{"holder":"b0","lines":[{"pool":"gala","quantity":1}]}`, 201, "", "Holdfast-Admission", tk[0].Admission)
		if _, err := s.AdmitRooms(ctx); err != nil { // sees the sell-out
			t.Fatal(err)
		}
		mallory.want(t, "POST", "/v1/rooms/r/tickets/"+tk[2].Ticket+"/waitlist", `{"quantity":1}`, 404, holdfast.CodeNotFound)
		var late, early, again holdfast.WaitlistEntry
		alice.want(t, "POST", "/v1/rooms/r/tickets/"+tk[2].Ticket+"/waitlist", `{"quantity":1}`, 201, "").decode(t, &late)
		alice.want(t, "POST", "/v1/rooms/r/tickets/"+tk[1].Ticket+"/waitlist", `{"quantity":1}`, 201, "").decode(t, &early)
		alice.want(t, "POST", "/v1/rooms/r/tickets/"+tk[1].Ticket+"/waitlist", `{"quantity":1}`, 201, "").decode(t, &again)
		if late.Holder != "b2" || early.Holder != "b1" || again.ID != early.ID || early.Position != 1 {
			t.Fatalf("moves: b2 %+v, b1 %+v, b1 again %+v; want b1 first, once", late, early, again)
		}
		var list struct{ Entries []holdfast.WaitlistEntry }
		admin.want(t, "GET", "/v1/pools/gala/waitlist", "", 200, "").decode(t, &list)
		if len(list.Entries) != 2 || list.Entries[0].Holder != "b1" || list.Entries[1].Holder != "b2" {
			t.Fatalf("the waitlist: %+v, want b1 then b2", list.Entries)
		}
	})
}

// A transfer over the API: a key gives only its own holds (another key's
// is 404, as if it were not there), the body names the receiver, and a
// bad one changes nothing.
func TestTransferAPI(t *testing.T) {
	backends(t, func(t *testing.T, s holdfast.Store) {
		admin := caller{base: serve(t, s, hfhttp.Config{AdminKey: adminKey}).URL, key: adminKey}
		alice, mallory := newKey(t, admin, "shop"), newKey(t, admin, "other")
		admin.want(t, "POST", "/v1/pools", `{"id":"gala","capacity":5}`, 201, "")
		var h holdfast.Hold
		alice.want(t, "POST", "/v1/holds", `{"holder":"a","lines":[{"pool":"gala","quantity":2}]}`, 201, "").decode(t, &h)
		mallory.want(t, "POST", "/v1/holds/"+h.ID+"/transfer", `{"holder":"m"}`, 404, holdfast.CodeNotFound)
		alice.want(t, "POST", "/v1/holds/"+h.ID+"/transfer", `{"holder":""}`, 400, holdfast.CodeInvalid)
		alice.want(t, "POST", "/v1/holds/"+h.ID+"/transfer", `{"holder":"b"}`, 200, "").decode(t, &h)
		if h.Holder != "b" || h.Status != holdfast.StatusHeld {
			t.Fatalf("after the transfer: %+v", h)
		}
		var got holdfast.Hold
		alice.want(t, "GET", "/v1/holds/"+h.ID, "", 200, "").decode(t, &got)
		if got.Holder != "b" {
			t.Fatalf("read back: holder %q", got.Holder)
		}
	})
}
