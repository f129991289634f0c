package http

import (
	"encoding/json"
	"strings"

	"github.com/holdfast/holdfast"
)

// operationIDs name every operation, for the clients generated from the
// document (a test checks that each has one, and that they are unique).
var operationIDs = map[string]string{
	"GET /healthz":                                       "health",
	"GET /readyz":                                        "ready",
	"GET /metrics":                                       "metrics",
	"GET /openapi.json":                                  "openAPI",
	"POST /v1/pools":                                     "createPool",
	"GET /v1/pools":                                      "listPools",
	"GET /v1/pools/{id}":                                 "getPool",
	"PATCH /v1/pools/{id}":                               "setPoolCapacity",
	"POST /v1/pools/{id}/allocations":                    "allocate",
	"PATCH /v1/pools/{id}/allocations/{channel}":         "setAllocation",
	"DELETE /v1/pools/{id}/allocations/{channel}":        "endAllocation",
	"POST /v1/groups/{id}/allocations":                   "allocateUnits",
	"DELETE /v1/groups/{id}/allocations/{channel}":       "endUnitAllocation",
	"POST /v1/groups":                                    "createGroup",
	"GET /v1/groups/{id}":                                "getGroup",
	"PATCH /v1/groups/{id}":                              "setGroupLateConfirm",
	"POST /v1/groups/{id}/units":                         "addUnits",
	"GET /v1/groups/{id}/units":                          "listUnits",
	"GET /v1/groups/{id}/layout":                         "getGroupLayout",
	"POST /v1/holds":                                     "createHold",
	"GET /v1/holds":                                      "listHolds",
	"GET /v1/holds/{id}":                                 "getHold",
	"POST /v1/holds/{id}/confirm":                        "confirmHold",
	"POST /v1/holds/{id}/release":                        "releaseHold",
	"POST /v1/holds/{id}/extend":                         "extendHold",
	"POST /v1/holds/{id}/transfer":                       "transferHold",
	"POST /v1/holds/{id}/exchange":                       "exchangeHold",
	"POST /v1/holds/{id}/cancel":                         "cancelHold",
	"POST /v1/holds/{id}/complete":                       "completeHold",
	"POST /v1/bookings":                                  "book",
	"GET /v1/payments":                                   "listPayments",
	"GET /v1/payments/{ref}":                             "getPayment",
	"POST /v1/payments/{ref}/refunded":                   "paymentRefunded",
	"GET /v1/events":                                     "listEvents",
	"GET /v1/events/stream":                              "streamEvents",
	"GET /v1/events/stream-token":                        "streamToken",
	"GET /v1/audit":                                      "audit",
	"POST /v1/lab/race":                                  "runRace",
	"POST /v1/keys":                                      "createKey",
	"GET /v1/keys":                                       "listKeys",
	"GET /v1/keys/{id}":                                  "getKey",
	"DELETE /v1/keys/{id}":                               "revokeKey",
	"PATCH /v1/keys/{id}":                                "setKeyQuota",
	"POST /v1/webhooks":                                  "createWebhook",
	"GET /v1/webhooks":                                   "listWebhooks",
	"GET /v1/webhooks/{id}":                              "getWebhook",
	"PATCH /v1/webhooks/{id}":                            "updateWebhook",
	"DELETE /v1/webhooks/{id}":                           "deleteWebhook",
	"POST /v1/rooms":                                     "createRoom",
	"GET /v1/rooms":                                      "listRooms",
	"GET /v1/rooms/{id}":                                 "getRoom",
	"POST /v1/rooms/{id}/join":                           "joinRoom",
	"GET /v1/rooms/{id}/tickets/{ticket}":                "getRoomTicket",
	"GET /v1/rooms/{id}/draw":                            "getRoomDraw",
	"GET /v1/webhooks/{id}/deliveries":                   "listDeliveries",
	"GET /v1/rooms/{id}/tickets/{ticket}/stream":         "streamRoomTicket",
	"POST /v1/pools/{id}/waitlist":                       "joinWaitlist",
	"POST /v1/rooms/{id}/tickets/{ticket}/waitlist":      "moveTicketToWaitlist",
	"GET /v1/pools/{id}/waitlist":                        "listWaitlist",
	"GET /v1/pools/{id}/waitlist/{entry}":                "getWaitlistEntry",
	"DELETE /v1/pools/{id}/waitlist/{entry}":             "leaveWaitlist",
	"POST /v1/groups/{id}/waitlist":                      "joinGroupWaitlist",
	"GET /v1/groups/{id}/waitlist":                       "listGroupWaitlist",
	"GET /v1/groups/{id}/waitlist/{entry}":               "getGroupWaitlistEntry",
	"DELETE /v1/groups/{id}/waitlist/{entry}":            "leaveGroupWaitlist",
	"POST /v1/webhooks/{id}/deliveries/{delivery}/retry": "retryDelivery",
}

// openAPI is the OpenAPI 3.1 document served at /openapi.json. A test
// fails when a route exists that the document lacks, or the other way;
// the test run lints it and generates a Go client from it.
var openAPI = func() []byte {
	doc := openAPIDoc()
	for path, ops := range doc["paths"].(obj) {
		for method, o := range ops.(obj) {
			o.(obj)["operationId"] = operationIDs[strings.ToUpper(method)+" "+path]
		}
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		panic(err)
	}
	return append(b, '\n')
}()

type obj = map[string]any

func ref(name string) obj { return obj{"$ref": "#/components/schemas/" + name} }

func jsonBody(schema obj) obj {
	return obj{"required": true, "content": obj{"application/json": obj{"schema": schema}}}
}

func answer(desc string, schema obj) obj {
	return obj{"description": desc, "content": obj{"application/json": obj{"schema": schema}}}
}

// problems lists the error answers an operation may give.
func problems(codes ...string) obj {
	desc := map[string]string{
		"400": "invalid: the request is malformed or out of bounds",
		"401": "unauthorized: no or a bad API key",
		"403": "forbidden: the key may not do this; admission_required (a waiting room protects the sale: join it), admission_invalid",
		"410": "cursor_expired: the events after this cursor were purged (retention); read from the start",
		"404": "not_found",
		"409": "a conflict with the current state: sold_out, unavailable, limit_exceeded, quota_exceeded, hold_expired, invalid_state, conflict, idempotency_in_flight",
		"413": "too_large: the body is over 1 MiB",
		"422": "idempotency_mismatch: the Idempotency-Key was used for a different request",
		"429": "rate_limited: the key's rate limit (never lock contention); see Retry-After",
		"503": "the database is unreachable or the request deadline passed; retry after Retry-After with the same Idempotency-Key",
	}
	out := obj{}
	for _, c := range codes {
		out[c] = obj{"description": desc[c], "content": obj{"application/problem+json": obj{"schema": ref("Problem")}}}
	}
	return out
}

func op(summary string, ok string, okSchema obj, body obj, errs ...string) obj {
	o := obj{"summary": summary}
	responses := problems(append(errs, "401", "429", "503")...)
	responses[ok] = answer(summary, okSchema)
	o["responses"] = responses
	if body != nil {
		o["requestBody"] = jsonBody(body)
		o["parameters"] = []obj{{"name": "Idempotency-Key", "in": "header", "required": false,
			"description": "Makes the request safe to retry: the same key and request get the first answer again (success or refusal); a different request with the key gets 422; a request while the first runs gets 409. Scoped to the API key, kept 24 h.",
			"schema":      obj{"type": "string", "minLength": 1, "maxLength": 255}}}
	}
	return o
}

func withParams(o obj, params ...obj) obj {
	existing, _ := o["parameters"].([]obj)
	o["parameters"] = append(params, existing...)
	return o
}

var (
	lateGrace      = integer(0, 604800, "seconds after expiry a confirm may come under if_available (0 or absent: 600)")
	idParam        = obj{"name": "id", "in": "path", "required": true, "schema": obj{"type": "string"}}
	emptyObject    = obj{"type": "object", "additionalProperties": false}
	refParam       = obj{"name": "ref", "in": "path", "required": true, "schema": obj{"type": "string"}}
	channelParam   = obj{"name": "channel", "in": "path", "required": true, "schema": obj{"type": "string"}}
	allocReleaseAt = obj{"type": []string{"string", "null"}, "format": "date-time", "description": "when what the channel has not sold goes back to the general sale (by the database clock); null or absent: when the allocation is deleted"}
)

func str(desc string) obj { return obj{"type": "string", "description": desc} }
func integer(min, max int64, desc string) obj {
	return obj{"type": "integer", "minimum": min, "maximum": max, "description": desc}
}

func openAPIDoc() obj {
	holdAction := func(summary string, body obj, errs ...string) obj {
		return obj{"post": withParams(op(summary, "200", ref("Hold"), body, errs...), idParam)}
	}
	plain := func(summary string) obj {
		return obj{"get": obj{"summary": summary, "security": []obj{}, "responses": obj{"200": obj{"description": summary}}}}
	}
	return obj{
		"openapi": "3.1.0",
		"info": obj{"title": "holdfast API", "version": "1",
			"description": "Reservations that never oversell: pools of counted capacity, groups of identified units, all-or-nothing holds that expire, bookings. Errors are RFC 9457 problem+json with a stable code."},
		"servers":  []obj{{"url": "http://127.0.0.1:8080", "description": "holdfast serve's default address"}},
		"security": []obj{{"bearer": []string{}}},
		"paths": obj{
			"/healthz":      plain("The process is up"),
			"/readyz":       obj{"get": obj{"summary": "The database answers and is migrated", "security": []obj{}, "responses": merge(obj{"200": obj{"description": "ready"}}, problems("503"))}},
			"/metrics":      plain("Prometheus metrics"),
			"/openapi.json": plain("This document"),
			"/v1/pools": obj{
				"post": op("Create a pool (admin)", "201", ref("Pool"), ref("PoolCreate"), "400", "403", "409", "413", "422"),
				"get":  op("List pools", "200", obj{"type": "object", "properties": obj{"pools": obj{"type": "array", "items": ref("Pool")}}}, nil),
			},
			"/v1/pools/{id}": obj{
				"get": withParams(op("A pool with its availability", "200", ref("Pool"), nil, "404"), idParam),
				"patch": withParams(op("Change a pool's capacity (admin; refused below what is taken) or its late-confirm policy: one or the other per request", "200", ref("Pool"),
					obj{"type": "object", "minProperties": 1, "properties": obj{"capacity": integer(0, 1<<40, ""),
						"late_confirm": ref("LatePolicy"), "late_confirm_grace": lateGrace}, "additionalProperties": false},
					"400", "403", "404", "409", "413", "422"), idParam),
			},
			"/v1/pools/{id}/allocations": obj{
				"post": withParams(op("Set part of a pool aside for a sales channel (admin), taken from what the general sale has unsold (409 conflict if it has less); a channel that has an allocation gets this quantity instead. Only the channel's keys (and an admin naming the channel on a line) take from it; event allocation.changed", "200", ref("Pool"),
					obj{"type": "object", "required": []string{"channel", "quantity"}, "additionalProperties": false, "properties": obj{
						"channel": str("the channel: letters, digits and . _ : -"), "quantity": integer(0, 1<<40, ""), "release_at": allocReleaseAt}},
					"400", "403", "404", "409", "413", "422"), idParam),
			},
			"/v1/pools/{id}/allocations/{channel}": obj{
				"patch": withParams(op("Change a channel's allocation (admin): never below what the channel holds and sold (409 conflict), more only from what the general sale has unsold; event allocation.changed", "200", ref("Pool"),
					obj{"type": "object", "required": []string{"quantity"}, "additionalProperties": false, "properties": obj{
						"quantity": integer(0, 1<<40, ""), "release_at": allocReleaseAt}},
					"400", "403", "404", "409", "413", "422"), idParam, channelParam),
				"delete": withParams(op("End a channel's allocation (admin): what it has not sold goes back to the general sale now, what it holds when released or expired; event allocation.released", "200", ref("Pool"), nil, "403", "404"), idParam, channelParam),
			},
			"/v1/groups": obj{
				"post": op("Create a unit group (admin); with a layout, every seat in it becomes a unit of the group (the answer leaves the layout out: GET …/layout)", "201", ref("Group"), ref("Group"), "400", "403", "409", "413", "422"),
			},
			"/v1/groups/{id}": obj{
				"get": withParams(op("A group's unit counts and its first free units (at most 1,000; page the units for more)", "200", ref("GroupAvailability"), nil, "404"), idParam),
				"patch": withParams(op("Set a group's late-confirm policy (admin)", "200", ref("Group"),
					obj{"type": "object", "required": []string{"late_confirm"}, "properties": obj{"late_confirm": ref("LatePolicy"), "late_confirm_grace": lateGrace}, "additionalProperties": false},
					"400", "403", "404", "413", "422"), idParam),
			},
			"/v1/groups/{id}/allocations": obj{
				"post": withParams(op("Set named units of a group aside for a sales channel (admin): each must be free and in the general sale (or the channel's already); else 409 unavailable naming it, and nothing changes. Only the channel's keys (and an admin naming the channel on a line) take them; event allocation.changed", "200", ref("GroupAvailability"),
					obj{"type": "object", "required": []string{"channel", "units"}, "additionalProperties": false, "properties": obj{
						"channel": str("the channel: letters, digits and . _ : -"), "units": obj{"type": "array", "items": str(""), "minItems": 1, "maxItems": 10000}}},
					"400", "403", "404", "409", "413", "422"), idParam),
			},
			"/v1/groups/{id}/allocations/{channel}": obj{
				"delete": withParams(op("Give a channel's named units of a group back to the general sale (admin): the free ones now, the held and sold ones when their hold ends; event allocation.released", "200", ref("GroupAvailability"), nil, "403", "404"), idParam, channelParam),
			},
			"/v1/groups/{id}/layout": obj{
				"get": withParams(op("A group's venue map: sections, rows, seats with positions and categories, the stage", "200", ref("Layout"), nil, "404"), idParam),
			},
			"/v1/groups/{id}/units": obj{
				"post": withParams(op("Add units to a group, all or none (admin)", "201",
					obj{"type": "object", "properties": obj{"group": str(""), "added": obj{"type": "integer"}}},
					obj{"type": "object", "required": []string{"ids"}, "properties": obj{"ids": obj{"type": "array", "items": str("unit id, unique across groups"), "minItems": 1, "maxItems": 10000}}, "additionalProperties": false},
					"400", "403", "404", "409", "413", "422"), idParam),
				"get": withParams(op("A group's units, ordered by id, a page at a time (next: the after of the next page); ?format=compact is the whole map as one status character per unit (f free, a free but set aside for a sales channel, h held, c confirmed) with an ETag (If-None-Match answers 304), at most 250 ms old", "200",
					obj{"type": "object", "properties": obj{"units": obj{"description": "the page's units (JSON form) or their count (compact form)",
						"oneOf": []obj{{"type": "array", "items": ref("Unit")}, {"type": "integer"}}}, "next": str("present when there may be more"),
						"group": str("compact form"), "status": str("compact form: one character per unit"), "ids": obj{"type": "array", "items": str(""), "description": "compact form with ids=true"}}}, nil, "400", "404"),
					idParam, obj{"name": "status", "in": "query", "schema": obj{"enum": []string{"free", "held", "confirmed"}}},
					obj{"name": "after", "in": "query", "schema": str("a unit id: list the units after it")},
					obj{"name": "limit", "in": "query", "schema": integer(1, 5000, "default 5000")},
					obj{"name": "format", "in": "query", "schema": obj{"enum": []string{"json", "compact"}}},
					obj{"name": "ids", "in": "query", "schema": obj{"type": "boolean"}, "description": "compact form: include the ids"}),
			},
			"/v1/holds": obj{
				"post": op("Hold every line or nothing (behind a waiting room: with its admission, else 403 admission_required)", "201", ref("Hold"), ref("HoldRequest"), "400", "403", "404", "409", "413", "422"),
				"get": withParams(op("A holder's holds (a client key sees its own)", "200", obj{"type": "object", "properties": obj{"holds": obj{"type": "array", "items": ref("Hold")}}}, nil, "400"),
					obj{"name": "holder", "in": "query", "required": true, "schema": obj{"type": "string"}}),
			},
			"/v1/holds/{id}": obj{
				"get": withParams(op("A hold (another client's hold is 404)", "200", ref("Hold"), nil, "404"), idParam),
			},
			"/v1/holds/{id}/confirm": holdAction("Confirm a held hold, or part of it (lines: what to keep of each line named; the rest is released). After its expiry: hold_expired, unless every pool and group of the hold has late_confirm if_available, the grace has not passed and what it held is still free: then it is taken again and confirmed in one step, and the hold says late: true (refused: hold_expired with reclaimable: false)",
				obj{"type": "object", "properties": obj{"payment_ref": str("your payment reference"),
					"payment": ref("PaymentIn"),
					"lines": obj{"type": "array", "minItems": 1, "items": obj{"type": "object", "required": []string{"line"}, "additionalProperties": false,
						"properties": obj{"line": integer(0, 99, "the line's index in the hold"), "quantity": integer(1, 1000000, "a pool line: how many to keep"),
							"units": obj{"type": "array", "items": str(""), "minItems": 1, "description": "a unit line: which units to keep"}}}}},
					"additionalProperties": false}, "400", "404", "409", "413", "422"),
			"/v1/holds/{id}/release": holdAction("Release a held hold", emptyObject, "400", "404", "409", "413", "422"),
			"/v1/holds/{id}/extend": holdAction("Move a held hold's expiry to now + ttl_seconds",
				obj{"type": "object", "required": []string{"ttl_seconds"}, "properties": obj{"ttl_seconds": integer(1, 3600, "at most the server's maximum TTL")}, "additionalProperties": false},
				"400", "404", "409", "413", "422"),
			"/v1/holds/{id}/exchange": holdAction("Swap units of a held or confirmed hold atomically: each new unit (of the old one's group) taken and its old one freed in one step, all pairs or none; a new unit not free is 409 unavailable with its line, the hold exactly as before; event hold.exchanged",
				obj{"type": "object", "required": []string{"units"}, "properties": obj{"units": obj{"type": "object", "additionalProperties": str(""), "description": "old unit → new unit, e.g. {\"A-3\": \"B-7\"}"}}, "additionalProperties": false},
				"400", "404", "409", "413", "422"),
			"/v1/holds/{id}/transfer": holdAction("Give a held or confirmed hold to another holder of this key: the same lines and units, no capacity moves, not for an instant; the receiver's per_holder_limit applies (409 limit_exceeded naming the line); event hold.transferred, with transferred_from",
				obj{"type": "object", "required": []string{"holder"}, "properties": obj{"holder": str("the receiver: your buyer's reference")}, "additionalProperties": false},
				"400", "404", "409", "413", "422"),
			"/v1/holds/{id}/cancel":   holdAction("Cancel (refund) a confirmed hold: capacity back", emptyObject, "400", "404", "409", "413", "422"),
			"/v1/holds/{id}/complete": holdAction("Complete a confirmed hold: reusable units back", emptyObject, "400", "404", "409", "413", "422"),
			"/v1/bookings": obj{
				"post": op("Hold and confirm in one step; with payment, the payment is recorded with the booking (or, refused, as refund_due)", "201", ref("Hold"), ref("HoldRequest"), "400", "403", "404", "409", "413", "422"),
			},
			"/v1/payments": obj{
				"get": withParams(op("Payments, newest first, at most 1,000 (admin); ?status=refund_due is what the shop owes back", "200",
					obj{"type": "object", "properties": obj{"payments": obj{"type": "array", "items": ref("Payment")}}}, nil, "400", "403"),
					obj{"name": "status", "in": "query", "schema": obj{"enum": []string{"captured", "refund_due", "refunded"}}}),
			},
			"/v1/payments/{ref}": obj{
				"get": withParams(op("A payment: captured (with the hold it bought), refund_due (its confirm or booking was refused: reason) or refunded; a client key sees those on its own holds", "200", ref("Payment"), nil, "404"), refParam),
			},
			"/v1/payments/{ref}/refunded": obj{
				"post": withParams(op("Mark a payment due back as refunded (admin: the shop paid it back); event payment.refunded; again: the same answer", "200", ref("Payment"), emptyObject, "400", "403", "404", "409", "413", "422"), refParam),
			},
			"/v1/events": obj{
				"get": withParams(op("The outbox feed, in order (admin)", "200",
					obj{"type": "object", "properties": obj{"events": obj{"type": "array", "items": ref("Event")}, "next": str("cursor for after=")}}, nil, "400", "403", "410"),
					obj{"name": "after", "in": "query", "schema": obj{"type": "string"}, "description": "cursor: the next of the previous page"},
					obj{"name": "limit", "in": "query", "schema": integer(1, 1000, "default 100")}),
			},
			"/v1/events/stream": obj{
				"get": obj{"summary": "The outbox feed as server-sent events (admin): each event's cursor is its SSE id. A new stream starts at the present; reconnect with Last-Event-ID (or ?after=) to resume without a gap; ?after=0 replays from the beginning. One tail of the database per server feeds every stream; a viewer that falls more than a few seconds behind is cut off and resumes with Last-Event-ID. A browser's EventSource, which sends no headers, passes ?token= from /v1/events/stream-token instead of a key.",
					"parameters": []obj{
						{"name": "Last-Event-ID", "in": "header", "schema": obj{"type": "string"}},
						{"name": "after", "in": "query", "schema": obj{"type": "string"}, "description": "resume after this cursor; 0 replays from the beginning"},
						{"name": "types", "in": "query", "schema": obj{"type": "string"}, "description": "comma-separated event types to keep, e.g. hold.created,hold.confirmed"},
						{"name": "subject", "in": "query", "schema": obj{"type": "string"}, "description": "comma-separated pools, groups or holds: keep only events about them"},
						{"name": "token", "in": "query", "schema": obj{"type": "string"}, "description": "a stream token from /v1/events/stream-token"},
					},
					"responses": merge(obj{"200": obj{"description": "text/event-stream: id, event (the event type) and data (the Event as JSON) per event",
						"content": obj{"text/event-stream": obj{"schema": obj{"type": "string"}}}}}, problems("400", "401", "403", "410", "429"))},
			},
			"/v1/events/stream-token": obj{
				"get": op("A token that opens /v1/events/stream?token= for a minute (admin): for browsers, so that no key goes in a URL", "200",
					obj{"type": "object", "properties": obj{"token": str(""), "expires_at": obj{"type": "string", "format": "date-time"}}}, nil, "403"),
			},
			"/v1/audit": obj{
				"get": op("Recount every pool and unit from the claim rows (admin)", "200", ref("Audit"), nil, "403"),
			},
			"/v1/lab/race": obj{
				"post": merge(op("Run the classic race (10 tickets, 20 buyers, every strategy) on a throwaway database (admin); not idempotent: an Idempotency-Key is refused", "200",
					obj{"type": "object", "properties": obj{"results": obj{"type": "array", "items": obj{"type": "object"}}, "chart_svg": str("")}}, nil, "400", "403"), obj{}),
			},
			"/v1/keys": obj{
				"post": op("Create a client key (admin); the key is shown only in this answer, never stored (a replay answers key: null)", "201", ref("Key"),
					obj{"type": "object", "required": []string{"name"}, "properties": obj{"name": str(""), "max_held_units": integer(0, 1<<40, "the key's quota of held units; 0 or absent: none"),
						"channel": str("binds the key to a sales channel: its holds and bookings take from the channel's allocations only — a pool's allocation, a group's named units (403 forbidden on waitlists)")}, "additionalProperties": false},
					"400", "403", "413", "422"),
				"get": op("List the keys (admin): never a secret", "200", obj{"type": "object", "properties": obj{"keys": obj{"type": "array", "items": ref("Key")}}}, nil, "403"),
			},
			"/v1/keys/{id}": obj{
				"get":    withParams(op("Read a key (admin), revoked or not: never its secret", "200", ref("Key"), nil, "403", "404"), idParam),
				"delete": withParams(op("Revoke a key for good (admin): every server refuses it within a second", "200", ref("Key"), nil, "403", "404"), idParam),
				"patch": withParams(op("Set a key's quota of held units (admin; 0: none)", "200", ref("Key"),
					obj{"type": "object", "required": []string{"max_held_units"}, "properties": obj{"max_held_units": integer(0, 1<<40, "tickets and units the key's holds may have held at once; 0: no quota")}, "additionalProperties": false},
					"400", "403", "404", "413", "422"), idParam),
			},
			"/v1/rooms": obj{
				"post": op("Put a sale behind a waiting room (admin): holds on its pools and groups then need an admission; joiners before opens_at are ordered by the room's draw (seed_commitment in the answer; see GET /v1/rooms/{id}/draw), later ones queue in order; admission at admit_per_second, at most max_inside admitted and not done (admit stock: also never more admissions out and unused, times max_units_per_admission, than the stock has free)", "201", ref("Room"),
					obj{"type": "object", "required": []string{"id", "opens_at", "admit_per_second", "admit_ttl_seconds", "max_inside"}, "additionalProperties": false, "properties": obj{
						"id": str(""), "pools": obj{"type": "array", "items": str("")}, "groups": obj{"type": "array", "items": str("")},
						"opens_at":                obj{"type": "string", "format": "date-time"},
						"admit_per_second":        obj{"type": "number", "exclusiveMinimum": 0, "maximum": 100000},
						"admit_ttl_seconds":       integer(1, 86400, "how long an admission is valid"),
						"max_inside":              integer(1, 1<<40, "admitted and not yet done, at most"),
						"max_per_key":             integer(0, 1<<40, "places one client key may take (0 or absent: no bound)"),
						"max_units_per_admission": integer(0, 1<<40, "units one admission buys: a hold or booking made with it takes at most this many, a waitlist join asks for at most this many (0 or absent: no bound; over it, 409 limit_exceeded naming the line)"),
						"admit":                   obj{"enum": []string{"rate", "stock"}, "description": "rate (default): by admit_per_second and max_inside; stock: also keep the admissions out and unused, times max_units_per_admission (required then), within what the room's pools and groups have free, resuming as held capacity comes back"}}},
					"400", "403", "404", "409", "413", "422"),
				"get": op("Every room with its counts, by id (admin)", "200", obj{"type": "object", "properties": obj{"rooms": obj{"type": "array", "items": ref("Room")}}}, nil, "403"),
			},
			"/v1/rooms/{id}": obj{
				"get": withParams(op("A room with its counts", "200", ref("Room"), nil, "404"), idParam),
			},
			"/v1/rooms/{id}/join": obj{
				"post": withParams(op("Take a place in the room's queue (the same place on every call for the same holder); poll the ticket for position, ETA and, when admitted, the admission", "202", ref("RoomTicket"),
					obj{"type": "object", "required": []string{"holder"}, "additionalProperties": false, "properties": obj{"holder": str("your buyer's reference")}},
					"400", "404", "409", "413", "422"), idParam),
			},
			"/v1/rooms/{id}/tickets/{ticket}": obj{
				"get": withParams(op("A place: status, position and estimated wait; when admitted, the admission to hold with (another key's ticket is 404)", "200", ref("RoomTicket"), nil, "404"),
					idParam, obj{"name": "ticket", "in": "path", "required": true, "schema": str("")}),
			},
			"/v1/rooms/{id}/tickets/{ticket}/waitlist": obj{
				"post": withParams(op("Move a place the room's sell-out ended (status sold_out) to the waitlist of a pool the room protects, keeping its order: behind the entries made before the sell-out, ahead of anyone who joins later, in queue order among those who move; once per ticket (409 invalid_state while the place still waits, or once moved); the ticket's holder, this key's ticket (another key's is 404)", "201", ref("WaitlistEntry"),
					obj{"type": "object", "required": []string{"quantity"}, "additionalProperties": false, "properties": obj{
						"quantity": integer(1, 1000000, "at most the pool's capacity, per-holder limit and the room's max_units_per_admission"),
						"pool":     str("which pool, when the room protects several")}},
					"400", "404", "409", "413", "422"), idParam, obj{"name": "ticket", "in": "path", "required": true, "schema": str("")}),
			},
			"/v1/rooms/{id}/draw": obj{
				"get": withParams(op("The room's draw, published at opening: every ticket taken before opens_at as the hex SHA-256 of its id, its draw (hex HMAC-SHA256, key the seed's bytes, message the ticket id) and its place, in place order (ascending draw). Check it with the seed against the room's seed_commitment (holdfast room verify); the admin key also sees each ticket id. 409 invalid_state before opening", "200", ref("RoomDraw"), nil, "404", "409"), idParam),
			},
			"/v1/rooms/{id}/tickets/{ticket}/stream": obj{
				"get": obj{"summary": "A place, live, as server-sent events: a ticket event (the RoomTicket as JSON) now and at every change of position or status, until the place is no longer waiting (the last carries the admission, or sold_out). One read of the room per server feeds every stream on it.",
					"parameters": []obj{idParam, {"name": "ticket", "in": "path", "required": true, "schema": str("")}},
					"responses": merge(obj{"200": obj{"description": "text/event-stream: event ticket, data a RoomTicket",
						"content": obj{"text/event-stream": obj{"schema": obj{"type": "string"}}}}}, problems("401", "404", "429"))},
			},
			"/v1/pools/{id}/waitlist": obj{
				"post": withParams(op("Join a sold-out pool's waitlist (409 not_sold_out while the quantity can be held now; behind a waiting room, with its admission; waiting units count in the key's quota): capacity that comes back is offered to the list in order, as a hold for the holder (offer_ttl_seconds), before any new buyer; the same entry on every call while it waits or is offered", "201", ref("WaitlistEntry"),
					obj{"type": "object", "required": []string{"holder", "quantity"}, "additionalProperties": false, "properties": obj{
						"holder": str("your buyer's reference"), "quantity": integer(1, 1000000, "at most the pool's capacity and per-holder limit"),
						"admission": str("a waiting room's admission, when a room protects the pool (or the Holdfast-Admission header)"),
						"ticket":    str("instead of an admission: your place in the room that protects the pool, told sold_out at its sell-out; the entry keeps the place's order (see POST /v1/rooms/{id}/tickets/{ticket}/waitlist)")}},
					"400", "403", "404", "409", "413", "422"), idParam),
				"get": withParams(op("A pool's waitlist, waiting and offered entries in order (admin)", "200",
					obj{"type": "object", "properties": obj{"entries": obj{"type": "array", "items": ref("WaitlistEntry")}}}, nil, "403", "404"), idParam),
			},
			"/v1/pools/{id}/waitlist/{entry}": obj{
				"get": withParams(op("A waitlist entry with its position (another key's is 404)", "200", ref("WaitlistEntry"), nil, "404"),
					idParam, obj{"name": "entry", "in": "path", "required": true, "schema": str("")}),
				"delete": withParams(op("Leave the waitlist; an entry with an offer out releases the offer's hold (its capacity goes to the next)", "200", ref("WaitlistEntry"), nil, "404", "409"),
					idParam, obj{"name": "entry", "in": "path", "required": true, "schema": str("")}),
			},
			"/v1/groups/{id}/waitlist": obj{
				"post": withParams(op("Join a group's waitlist for any k of its units, or k next to each other in one row (together; the group needs a layout): seats that come back while entries wait are theirs before any new buyer's, offered in join order to each entry they can serve (with free seats beside them), as a hold for the holder; an entry they cannot serve does not stop a later one; what none can use goes back to the general sale. 409 not_sold_out while the ask can be held now; behind a waiting room, with its admission; waiting units count in the key's quota; the same entry on every call while it waits or is offered", "201", ref("WaitlistEntry"),
					obj{"type": "object", "required": []string{"holder", "any"}, "additionalProperties": false, "properties": obj{
						"holder": str("your buyer's reference"), "any": integer(1, 100, "how many units"),
						"together":  obj{"type": "boolean", "description": "next to each other in one row of the group's layout"},
						"admission": str("a waiting room's admission, when a room protects the group (or the Holdfast-Admission header)")}},
					"400", "403", "404", "409", "413", "422"), idParam),
				"get": withParams(op("A group's waitlist, waiting and offered entries in order (admin)", "200",
					obj{"type": "object", "properties": obj{"entries": obj{"type": "array", "items": ref("WaitlistEntry")}}}, nil, "403", "404"), idParam),
			},
			"/v1/groups/{id}/waitlist/{entry}": obj{
				"get": withParams(op("A group's waitlist entry with its position (another key's is 404)", "200", ref("WaitlistEntry"), nil, "404"),
					idParam, obj{"name": "entry", "in": "path", "required": true, "schema": str("")}),
				"delete": withParams(op("Leave the group's waitlist; an entry with an offer out releases the offer's hold (its seats go to the next)", "200", ref("WaitlistEntry"), nil, "404", "409"),
					idParam, obj{"name": "entry", "in": "path", "required": true, "schema": str("")}),
			},
			"/v1/webhooks": obj{
				"post": op("Register a webhook endpoint (admin): it is sent every event (or those named) from now on, signed per Standard Webhooks; the secret is shown only in this answer (a replay answers without it)", "201", ref("Webhook"),
					obj{"type": "object", "required": []string{"url"}, "additionalProperties": false, "properties": obj{
						"url":         str("http or https; loopback and private addresses are refused unless the server runs with --webhook-allow-private"),
						"events":      obj{"type": "array", "items": ref("EventType"), "description": "the event types to send; empty or absent: all"},
						"description": str("")}},
					"400", "403", "413", "422"),
				"get": op("List the webhooks (admin): never a secret", "200", obj{"type": "object", "properties": obj{"webhooks": obj{"type": "array", "items": ref("Webhook")}}}, nil, "403"),
			},
			"/v1/webhooks/{id}": obj{
				"get": withParams(op("A webhook (admin)", "200", ref("Webhook"), nil, "403", "404"), idParam),
				"patch": withParams(op("Change a webhook (admin): disable or enable it (enabled again, it is sent what happens from then on), or change its URL, events or description", "200", ref("Webhook"),
					obj{"type": "object", "minProperties": 1, "additionalProperties": false, "properties": obj{
						"url": str(""), "events": obj{"type": "array", "items": ref("EventType")}, "description": str(""), "enabled": obj{"type": "boolean"}}},
					"400", "403", "404", "413", "422"), idParam),
				"delete": withParams(op("Delete a webhook and its deliveries (admin)", "200", ref("Webhook"), nil, "403", "404"), idParam),
			},
			"/v1/webhooks/{id}/deliveries": obj{
				"get": withParams(op("A webhook's deliveries, newest first (admin)", "200",
					obj{"type": "object", "properties": obj{"deliveries": obj{"type": "array", "items": ref("Delivery")}, "next": str("before= for the next page; empty on the last")}}, nil, "400", "403", "404"),
					idParam,
					obj{"name": "status", "in": "query", "schema": obj{"enum": []string{"pending", "succeeded", "failed"}}},
					obj{"name": "before", "in": "query", "schema": str("a delivery id: list those before it")},
					obj{"name": "limit", "in": "query", "schema": integer(1, 500, "default 100")}),
			},
			"/v1/webhooks/{id}/deliveries/{delivery}/retry": obj{
				"post": withParams(op("Send a delivery again as soon as possible, with a fresh retry schedule (admin); one in flight finishes first", "200", ref("Delivery"), emptyObject, "400", "403", "404", "413", "422"),
					idParam, obj{"name": "delivery", "in": "path", "required": true, "schema": str("evt_ and the event's seq")}),
			},
		},
		"components": obj{
			"securitySchemes": obj{"bearer": obj{"type": "http", "scheme": "bearer",
				"description": "The admin key (--admin-key) or a client key from POST /v1/keys. A server without --admin-key on loopback needs none."}},
			"schemas": obj{
				"PoolCreate": obj{"type": "object", "required": []string{"id", "capacity"}, "additionalProperties": false, "properties": obj{
					"id": str("letters, digits and . _ : -, up to 128"), "name": str(""), "capacity": integer(0, 1<<40, ""),
					"per_holder_limit": integer(0, 1<<40, "at most this many per holder across active holds; 0 or absent: no limit"),
					"late_confirm":     ref("LatePolicy"), "late_confirm_grace": lateGrace,
					"offer_ttl_seconds": integer(0, 86400, "how long a waitlist offer (a hold for the entry's holder) lasts; 0 or absent: 600, and a pool shows the TTL in force"),
					"partition":         str("where events are spread over several databases: the event, venue or tenant this belongs to, which lives on one shard (letters, digits and . _ : -; absent: its own id); one database ignores it")}},
				"LatePolicy": obj{"enum": []string{"refuse", "if_available"},
					"description": "what a confirm after the hold's expiry does: refuse (the default) answers hold_expired; if_available takes the same capacity or units again if still free and confirms"},
				"Pool": obj{"type": "object", "properties": obj{
					"id": str(""), "name": str(""), "capacity": obj{"type": "integer"}, "per_holder_limit": obj{"type": "integer"},
					"late_confirm": ref("LatePolicy"), "late_confirm_grace": obj{"type": "integer"},
					"available": obj{"type": "integer", "description": "what a new buyer of the general sale may have: capacity − held − confirmed − waitlisted − what the channels' allocations can still take (not below 0); expired holds count as available"},
					"held":      obj{"type": "integer"}, "confirmed": obj{"type": "integer"},
					"waitlisted":        obj{"type": "integer", "description": "what the waitlist's waiting entries ask for: capacity that comes back is theirs first"},
					"offer_ttl_seconds": obj{"type": "integer"}, "partition": str(""),
					"allocations": obj{"type": "array", "items": ref("Allocation"), "description": "parts set aside for sales channels; available is the general sale's, held and confirmed count every channel's too"}}},
				"PaymentIn": obj{"type": "object", "required": []string{"ref", "amount", "currency"}, "additionalProperties": false,
					"description": "the payment for this confirm or booking (only there), recorded once per ref in the same transaction: captured with what it bought, or refund_due (event payment.refund_due) if it was refused; the same payment again on the same hold is a replay",
					"properties": obj{"ref": obj{"type": "string", "minLength": 1, "maxLength": 200, "description": "the payment provider's id"},
						"amount": integer(0, 1<<50, "minor units (cents)"), "currency": obj{"type": "string", "pattern": "^[A-Z]{3}$", "description": "ISO 4217"}}},
				"Payment": obj{"type": "object", "required": []string{"ref", "amount", "currency", "status", "hold_id"}, "properties": obj{
					"ref": str(""), "amount": obj{"type": "integer"}, "currency": str(""),
					"status":     obj{"enum": []string{"captured", "refund_due", "refunded"}},
					"hold_id":    str("the hold it paid for (empty for a booking refused before a hold existed)"),
					"reason":     str("why it is due back: the refusal's code and text"),
					"created_at": obj{"type": "string", "format": "date-time"}, "updated_at": obj{"type": "string", "format": "date-time"}}},
				"Allocation": obj{"type": "object", "required": []string{"channel", "quantity", "held", "confirmed", "available"}, "properties": obj{
					"channel": str(""), "quantity": obj{"type": "integer"}, "held": obj{"type": "integer"}, "confirmed": obj{"type": "integer"},
					"available":  obj{"type": "integer", "description": "what the channel can still take"},
					"release_at": obj{"type": []string{"string", "null"}, "format": "date-time", "description": "when what the channel has not sold goes back to the general sale"}}},
				"Group": obj{"type": "object", "required": []string{"id"}, "additionalProperties": false, "properties": obj{
					"id": str(""), "name": str(""), "reusable": obj{"type": "boolean", "description": "units return when a hold completes (riders)"},
					"late_confirm": ref("LatePolicy"), "late_confirm_grace": lateGrace,
					"partition": str("where events are spread over several databases: the event, venue or tenant this belongs to, which lives on one shard (letters, digits and . _ : -; absent: its own id); one database ignores it"),
					"layout":    ref("Layout")}},
				"Layout": obj{"type": "object", "required": []string{"sections"}, "additionalProperties": false, "description": "a venue map: a row's seats are listed in the order they sit (next to each other: adjacent); at most 100,000 seats, each a unit id used once", "properties": obj{
					"stage": obj{"type": "object", "additionalProperties": false, "description": "where the stage is: seats together are picked nearest its centre",
						"properties": obj{"x": obj{"type": "number"}, "y": obj{"type": "number"}, "w": obj{"type": "number"}, "h": obj{"type": "number"}}},
					"categories": obj{"type": "array", "items": obj{"type": "object", "required": []string{"id", "color"}, "additionalProperties": false,
						"properties": obj{"id": str(""), "name": str(""), "color": str("#rgb or #rrggbb")}}},
					"sections": obj{"type": "array", "minItems": 1, "items": obj{"type": "object", "required": []string{"id", "rows"}, "additionalProperties": false,
						"properties": obj{"id": str(""), "name": str(""), "rows": obj{"type": "array", "items": obj{"type": "object", "required": []string{"seats"}, "additionalProperties": false,
							"properties": obj{"name": str(""), "seats": obj{"type": "array", "items": obj{"type": "object", "required": []string{"unit", "x", "y"}, "additionalProperties": false,
								"properties": obj{"unit": str("the unit id"), "number": str("the seat's number as printed"), "x": obj{"type": "number"}, "y": obj{"type": "number"}, "category": str("a category id")}}}}}}}}},
				}},
				"GroupAvailability": obj{"type": "object", "properties": obj{
					"id": str(""), "name": str(""), "reusable": obj{"type": "boolean"}, "units": obj{"type": "integer"}, "partition": str(""),
					"late_confirm": ref("LatePolicy"), "late_confirm_grace": obj{"type": "integer"},
					"free": obj{"type": "integer", "description": "the general sale's free units: units = free + held + confirmed + the allocations' available"},
					"held": obj{"type": "integer"}, "confirmed": obj{"type": "integer"},
					"free_units": obj{"type": "array", "items": str(""), "description": "the general sale's first free units"},
					"waitlisted": obj{"type": "integer", "description": "free units kept for the group's waitlist (they came back while entries waited)"},
					"allocations": obj{"type": "array", "items": obj{"type": "object", "properties": obj{
						"channel": str(""), "units": obj{"type": "integer", "description": "units set aside for the channel"},
						"held": obj{"type": "integer"}, "confirmed": obj{"type": "integer"}, "available": obj{"type": "integer", "description": "of them, free for the channel"}}}}}},
				"Unit": obj{"type": "object", "properties": obj{"id": str(""), "group": str(""),
					"status": obj{"enum": []string{"free", "held", "confirmed"}}, "hold_id": str("the hold that has the unit: shown to the admin key and to the key that made the hold only"),
					"channel": str("the sales channel the unit is set aside for (absent: the general sale)")}},
				"Line": obj{"description": "exactly one form", "oneOf": []obj{
					{"type": "object", "required": []string{"pool", "quantity"}, "additionalProperties": false,
						"properties": obj{"pool": str(""), "quantity": integer(1, 1000000, ""),
							"channel": str("take from the pool's allocation for this sales channel (an admin; a channel's key needs not name it)")}},
					{"type": "object", "required": []string{"units"}, "additionalProperties": false,
						"properties": obj{"units": obj{"type": "array", "items": str(""), "minItems": 1, "maxItems": 100},
							"channel": str("take units set aside for this sales channel (an admin; a channel's key needs not name it)")}},
					{"type": "object", "required": []string{"group", "any"}, "additionalProperties": false,
						"properties": obj{"group": str(""), "any": integer(1, 100, ""),
							"channel":  str("take from the units set aside for this sales channel (an admin; a channel's key needs not name it)"),
							"together": obj{"type": "boolean", "description": "take `any` free seats next to each other in one row of the group's layout, the block nearest the stage, or refuse (unavailable)"}}},
				}},
				"HoldLine": obj{"type": "object", "description": "a line as requested, in request order; a group line carries the units it took as units",
					"properties": obj{"pool": str(""), "quantity": obj{"type": "integer"}, "channel": str("the sales channel whose allocation the line took from"), "units": obj{"type": "array", "items": str("")},
						"group": str(""), "any": obj{"type": "integer"}, "together": obj{"type": "boolean"}}},
				"HoldRequest": obj{"type": "object", "required": []string{"holder", "lines"}, "additionalProperties": false, "properties": obj{
					"holder":      obj{"type": "string", "minLength": 1, "maxLength": 200, "description": "your buyer's reference"},
					"ttl_seconds": integer(1, 3600, "default 600, at most the server's maximum"),
					"lines":       obj{"type": "array", "items": ref("Line"), "minItems": 1, "maxItems": 100},
					"payment_ref": str("only on /v1/bookings"),
					"payment":     ref("PaymentIn"),
					"admission":   str("a waiting room's admission, when a room protects a pool or group of the hold (or the Holdfast-Admission header)")}},
				"Hold": obj{"type": "object", "properties": obj{
					"id": str(""), "holder": str(""),
					"status":     obj{"enum": []string{"held", "confirmed", "released", "expired", "cancelled", "completed"}},
					"lines":      obj{"type": "array", "items": ref("HoldLine")},
					"created_at": obj{"type": "string", "format": "date-time"}, "expires_at": obj{"type": "string", "format": "date-time"},
					"updated_at": obj{"type": "string", "format": "date-time"}, "payment_ref": str(""),
					"late": obj{"type": "boolean", "description": "confirmed after its expiry under if_available"}}},
				"Event": obj{"type": "object", "required": []string{"seq", "cursor", "type", "at"}, "properties": obj{
					"seq":    obj{"type": "integer"},
					"cursor": str("continues the feed after this event: ?after= on GET /v1/events, Last-Event-ID (the stream's id) on the stream"),
					"type":   ref("EventType"),
					"at":     obj{"type": "string", "format": "date-time"}, "hold_id": str(""), "subject": str("pool or group id"),
					"data": obj{"type": "object", "additionalProperties": true, "description": "the hold, pool or group after the change"}}},
				"Key": obj{"type": "object", "properties": obj{"id": str(""), "name": str(""), "role": obj{"enum": []string{"admin", "client"}},
					"created_at":     obj{"type": "string", "format": "date-time"},
					"last_used_at":   obj{"type": []string{"string", "null"}, "format": "date-time", "description": "recorded at most once a minute per server"},
					"revoked_at":     obj{"type": []string{"string", "null"}, "format": "date-time"},
					"key":            obj{"type": []string{"string", "null"}, "description": "the bearer key: only in the first answer to POST /v1/keys"},
					"max_held_units": obj{"type": "integer", "description": "tickets and units the key's holds may have held at once; 0: no quota"},
					"held_units":     obj{"type": "integer", "description": "what the key's holds have held now"},
					"channel":        str("the sales channel the key is bound to"),
					"note":           str("")}},
				"EventType": obj{"enum": eventTypeNames()},
				"Room": obj{"type": "object", "properties": obj{
					"id": str(""), "pools": obj{"type": "array", "items": str("")}, "groups": obj{"type": "array", "items": str("")},
					"opens_at": obj{"type": "string", "format": "date-time"}, "admit_per_second": obj{"type": "number"},
					"admit_ttl_seconds": obj{"type": "integer"}, "max_inside": obj{"type": "integer"}, "max_per_key": obj{"type": "integer"}, "max_units_per_admission": obj{"type": "integer"}, "admit": obj{"enum": []string{"rate", "stock"}},
					"created_at": obj{"type": "string", "format": "date-time"}, "waiting": obj{"type": "integer"}, "inside": obj{"type": "integer"},
					"sold_out":        obj{"type": "boolean", "description": "everything confirmed: no one else is admitted, everyone waiting is told sold_out"},
					"seed_commitment": str("hex SHA-256 of the room's 32-byte random seed, fixed at creation, before anyone joins"),
					"seed":            str("hex, shown from opens_at on: those who joined before are ordered by HMAC-SHA256(seed bytes, ticket id), ascending")}},
				"RoomDraw": obj{"type": "object", "properties": obj{
					"room": str(""), "seed_commitment": str(""), "seed": str(""), "total": obj{"type": "integer"},
					"entries": obj{"type": "array", "items": obj{"type": "object", "properties": obj{
						"ticket_sha256": str("hex SHA-256 of the ticket id"), "draw": str("hex HMAC-SHA256(seed bytes, ticket id)"),
						"place": obj{"type": "integer"}, "ticket": str("the ticket id (admin key only)")}}}}},
				"RoomTicket": obj{"type": "object", "properties": obj{
					"ticket": str(""), "room": str(""), "holder": str(""),
					"status":                 obj{"enum": []string{"waiting", "admitted", "done", "sold_out"}},
					"position":               obj{"type": "integer", "description": "1: next to be admitted; 0 once not waiting"},
					"estimated_wait_seconds": obj{"type": "number"},
					"admission":              str("when admitted: the token a hold carries (Holdfast-Admission header or admission in the body), for this holder, for one hold"),
					"admission_expires_at":   obj{"type": "string", "format": "date-time"},
					"hold_id":                str("the hold the admission was used for"),
					"place":                  obj{"type": "integer", "description": "the ticket's number in the queue from 1, fixed at opening (absent before): the draw's order for those who joined before opening, join order after"}}},
				"WaitlistEntry": obj{"type": "object", "properties": obj{
					"id": str(""), "pool": str("a pool's entry"), "group": str("a group's entry"), "holder": str(""), "quantity": obj{"type": "integer", "description": "a pool's entry"},
					"any": obj{"type": "integer", "description": "a group's entry: how many units"}, "together": obj{"type": "boolean", "description": "a group's entry: next to each other in one row"},
					"status":           obj{"enum": []string{"waiting", "offered", "confirmed", "expired", "released", "left", "cancelled"}},
					"position":         obj{"type": "integer", "description": "1: next to be offered; 0 once not waiting"},
					"hold_id":          str("when offered: the hold made for the holder; confirm it to buy"),
					"offer_expires_at": obj{"type": "string", "format": "date-time"},
					"reason":           str("why an entry expired without an offer"),
					"created_at":       obj{"type": "string", "format": "date-time"}}},
				"Webhook": obj{"type": "object", "properties": obj{
					"id": str(""), "url": str(""), "events": obj{"type": "array", "items": ref("EventType"), "description": "empty: all"},
					"description": str(""), "enabled": obj{"type": "boolean"},
					"created_at": obj{"type": "string", "format": "date-time"}, "updated_at": obj{"type": "string", "format": "date-time"},
					"secret": str("whsec_ and base64: only in the first answer to POST /v1/webhooks"), "note": str("")}},
				"Delivery": obj{"type": "object", "properties": obj{
					"id": str("evt_ and the event's seq"), "webhook": str(""), "message_id": str("the webhook-id header, the same on every attempt"),
					"event_seq": obj{"type": "integer"}, "event_type": ref("EventType"),
					"status":   obj{"enum": []string{"pending", "succeeded", "failed"}},
					"attempts": obj{"type": "integer"}, "last_status_code": obj{"type": "integer", "description": "0: no answer"}, "last_error": str(""),
					"next_attempt_at": obj{"type": []string{"string", "null"}, "format": "date-time", "description": "null once succeeded or failed"},
					"created_at":      obj{"type": "string", "format": "date-time"}, "updated_at": obj{"type": "string", "format": "date-time"}}},
				"Audit": obj{"type": "object", "properties": obj{"pools": obj{"type": "integer"}, "units": obj{"type": "integer"},
					"oversold": obj{"type": "integer"}, "double_booked": obj{"type": "integer"},
					"payments":        obj{"type": "integer"},
					"refunds_due_old": obj{"type": "array", "items": str(""), "description": "payments due back for more than a day: refunds the shop has not made"},
					"differences":     obj{"type": "array", "items": str("")}, "at": obj{"type": "string", "format": "date-time"}}},
				"Problem": obj{"type": "object", "required": []string{"type", "title", "status", "code"}, "properties": obj{
					"type": str("URI of the problem type"), "title": str(""), "status": obj{"type": "integer"}, "detail": str(""),
					"code": obj{"enum": []string{"invalid", "unauthorized", "forbidden", "not_found", "sold_out", "unavailable", "hold_expired",
						"invalid_state", "limit_exceeded", "quota_exceeded", "conflict", "idempotency_in_flight", "idempotency_mismatch", "too_large",
						"rate_limited", "busy", "service_unavailable", "internal", "unsupported", "method_not_allowed", "admission_required", "admission_invalid",
						"not_sold_out", "unsupported_media_type", "misdirected_request", "cross_site_request", "too_many_streams", "cursor_expired"}},
					"line":        obj{"type": "integer", "description": "the failing hold line, in request order"},
					"reclaimable": obj{"type": "boolean", "description": "false on a late confirm refused under if_available: the capacity is gone or the grace passed"},
					"room":        str("on admission_required: the waiting room to join")}},
			},
		},
	}
}

func eventTypeNames() []string {
	out := make([]string, len(holdfast.EventTypes))
	for i, t := range holdfast.EventTypes {
		out[i] = string(t)
	}
	return out
}

func merge(a, b obj) obj {
	for k, v := range b {
		a[k] = v
	}
	return a
}
