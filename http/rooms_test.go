package http_test

import (
	"context"
	"testing"
	"time"

	"github.com/holdfast/holdfast"
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
