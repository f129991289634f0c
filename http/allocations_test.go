package http_test

import (
	"testing"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/holdfasttest"
	hfhttp "github.com/holdfast/holdfast/http"
)

// A reseller's key bound to a channel sells from its allocation only, and
// nobody else takes from it: every way a key could reach the allocated
// part is refused with a stable code, and nothing changes.
func TestChannelKeysOverHTTP(t *testing.T) {
	backends(t, func(t *testing.T, s holdfast.Store) {
		admin := caller{base: serve(t, s, hfhttp.Config{AdminKey: adminKey}).URL, key: adminKey}
		admin.want(t, "POST", "/v1/pools", `{"id":"gala","capacity":10}`, 201, "")
		admin.want(t, "POST", "/v1/groups", `{"id":"hall"}`, 201, "")
		admin.want(t, "POST", "/v1/groups/hall/units", `{"ids":["A-1","A-2","A-3"]}`, 201, "")
		var p holdfast.Pool
		admin.want(t, "POST", "/v1/pools/gala/allocations", `{"channel":"presale","quantity":4}`, 200, "").decode(t, &p)
		if p.Available != 6 || len(p.Allocations) != 1 || p.Allocations[0].Available != 4 {
			t.Fatalf("after allocating 4: %+v", p)
		}
		admin.want(t, "POST", "/v1/pools/gala/allocations", `{"channel":"x","quantity":7}`, 409, holdfast.CodeConflict)
		admin.want(t, "POST", "/v1/pools/gala/allocations", `{"quantity":1}`, 400, holdfast.CodeInvalid)
		admin.want(t, "PATCH", "/v1/pools/gala/allocations/nope", `{"quantity":1}`, 404, holdfast.CodeNotFound)

		var k struct{ ID, Key, Channel string }
		admin.want(t, "POST", "/v1/keys", `{"name":"reseller","channel":"presale"}`, 201, "").decode(t, &k)
		if k.Channel != "presale" {
			t.Fatalf("a channel's key reads %+v", k)
		}
		reseller := caller{base: admin.base, key: k.Key}
		shop := newKey(t, admin, "shop")

		// The reseller's lines are its channel's, named or not.
		var h holdfast.Hold
		reseller.want(t, "POST", "/v1/holds", `{"holder":"r1","lines":[{"pool":"gala","quantity":3}]}`, 201, "").decode(t, &h)
		if h.Lines[0].Channel != "presale" || h.Lines[0].Pool != "gala" {
			t.Fatalf("the reseller's hold: %+v", h.Lines)
		}
		reseller.want(t, "POST", "/v1/bookings", `{"holder":"r2","lines":[{"pool":"gala","quantity":1,"channel":"presale"}]}`, 201, "")
		// Its allocation is spent: sold out for it, though the general sale has 6.
		reseller.want(t, "POST", "/v1/holds", `{"holder":"r3","lines":[{"pool":"gala","quantity":1}]}`, 409, holdfast.CodeSoldOut)
		reseller.want(t, "POST", "/v1/holds", `{"holder":"r3","lines":[{"pool":"gala","quantity":1,"channel":"other"}]}`, 403, hfhttp.CodeForbidden)
		reseller.want(t, "POST", "/v1/pools/gala/waitlist", `{"holder":"r3","quantity":1}`, 403, hfhttp.CodeForbidden)
		// Another key never names a channel, and never takes what is set aside.
		shop.want(t, "POST", "/v1/holds", `{"holder":"s1","lines":[{"pool":"gala","quantity":1,"channel":"presale"}]}`, 403, hfhttp.CodeForbidden)
		shop.want(t, "POST", "/v1/holds", `{"holder":"s1","lines":[{"pool":"gala","quantity":7}]}`, 409, holdfast.CodeSoldOut)
		shop.want(t, "POST", "/v1/holds", `{"holder":"s1","lines":[{"pool":"gala","quantity":6}]}`, 201, "")
		// An admin may sell from a channel by naming it.
		admin.want(t, "PATCH", "/v1/pools/gala/allocations/presale", `{"quantity":5}`, 409, holdfast.CodeConflict) // nothing unsold left
		admin.want(t, "GET", "/v1/pools/gala", "", 200, "").decode(t, &p)
		if p.Available != 0 || p.Held != 9 || p.Confirmed != 1 || p.Allocations[0].Held != 3 || p.Allocations[0].Confirmed != 1 {
			t.Fatalf("the pool after the sale: %+v", p)
		}
		// Ending the allocation gives nothing unsold back (all 4 taken);
		// the reseller then has nothing to sell from.
		admin.want(t, "DELETE", "/v1/pools/gala/allocations/presale", "", 200, "").decode(t, &p)
		if len(p.Allocations) != 0 || p.Available != 0 {
			t.Fatalf("after ending the allocation: %+v", p)
		}
		reseller.want(t, "POST", "/v1/holds/"+h.ID+"/release", `{}`, 200, "")
		if _, err := s.ExpireDue(t.Context(), 10); err != nil { // the sweep gives the 3 back
			t.Fatal(err)
		}
		shop.want(t, "POST", "/v1/holds", `{"holder":"s2","lines":[{"pool":"gala","quantity":3}]}`, 201, "")

		// Named seats: set aside for the reseller's channel.
		var g holdfast.GroupAvailability
		admin.want(t, "POST", "/v1/groups/hall/allocations", `{"channel":"presale","units":["A-2","A-3"]}`, 200, "").decode(t, &g)
		if g.Free != 1 || len(g.Allocations) != 1 || g.Allocations[0].Units != 2 {
			t.Fatalf("after setting A-2, A-3 aside: %+v", g)
		}
		admin.want(t, "POST", "/v1/groups/hall/allocations", `{"channel":"other","units":["A-3"]}`, 409, holdfast.CodeUnavailable)
		admin.want(t, "POST", "/v1/groups/hall/allocations", `{"channel":"other","units":[]}`, 400, holdfast.CodeInvalid)
		shop.want(t, "POST", "/v1/groups/hall/allocations", `{"channel":"shop","units":["A-1"]}`, 403, hfhttp.CodeForbidden)
		reseller.want(t, "POST", "/v1/holds", `{"holder":"r4","lines":[{"units":["A-1"]}]}`, 409, holdfast.CodeUnavailable)
		shop.want(t, "POST", "/v1/holds", `{"holder":"s3","lines":[{"units":["A-2"]}]}`, 409, holdfast.CodeUnavailable)
		shop.want(t, "POST", "/v1/holds", `{"holder":"s3","lines":[{"group":"hall","any":2}]}`, 409, holdfast.CodeUnavailable)
		shop.want(t, "POST", "/v1/holds", `{"holder":"s3","lines":[{"group":"hall","any":1,"channel":"presale"}]}`, 403, hfhttp.CodeForbidden)
		shop.want(t, "POST", "/v1/holds", `{"holder":"s3","lines":[{"group":"hall","any":1}]}`, 201, "").decode(t, &h)
		if got := h.Lines[0].Units; len(got) != 1 || got[0] != "A-1" {
			t.Fatalf("the general sale's any 1 took %v", got)
		}
		reseller.want(t, "POST", "/v1/holds", `{"holder":"r4","lines":[{"group":"hall","any":1}]}`, 201, "").decode(t, &h)
		if got := h.Lines[0].Units; len(got) != 1 || got[0] != "A-2" {
			t.Fatalf("the channel's any 1 took %v", got)
		}
		var m struct{ Status string }
		admin.want(t, "GET", "/v1/groups/hall/units?format=compact", "", 200, "").decode(t, &m)
		if m.Status != "hha" {
			t.Fatalf("the compact map reads %q, want hha (A-3 set aside)", m.Status)
		}
		admin.want(t, "DELETE", "/v1/groups/hall/allocations/presale", "", 200, "").decode(t, &g)
		if g.Free != 1 || len(g.Allocations) != 0 {
			t.Fatalf("after giving the seats back: %+v", g)
		}
		admin.want(t, "DELETE", "/v1/groups/hall/allocations/presale", "", 404, holdfast.CodeNotFound)
		shop.want(t, "POST", "/v1/holds", `{"holder":"s4","lines":[{"units":["A-3"]}]}`, 201, "")
		holdfasttest.MustAuditClean(t, s)
	})
}
