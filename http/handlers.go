package http

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/holdfast/holdfast"
)

// readBody reads a request body of at most MaxBody bytes. A body over the
// limit is read on (up to a bound) before the 413, so the client gets an
// answer rather than a connection reset mid-request.
func (s *Server) readBody(r *http.Request) ([]byte, error) {
	limit := s.cfg.MaxBody
	if r.Method == http.MethodPost && r.URL.Path == "/v1/groups" {
		// A group may bring its venue's layout: a stadium's 20,000 seats
		// are about 1.5 MB (an admin route).
		limit = max(limit, maxLayoutBody)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, holdfast.Errorf(holdfast.CodeInvalid, "reading the body: %v", err)
	}
	if int64(len(body)) > limit {
		_, _ = io.CopyN(io.Discard, r.Body, 64<<20)
		return nil, holdfast.Errorf(CodeTooLarge, "the body is larger than %d bytes", limit)
	}
	return body, nil
}

// maxLayoutBody bounds a group's creation with a layout.
const maxLayoutBody = 16 << 20

// decode reads a JSON body into v: one value, no unknown fields. With
// optional, an empty body leaves v as it is.
func (s *Server) decode(r *http.Request, v any, optional bool) error {
	body, err := s.readBody(r)
	if err != nil {
		return err
	}
	if optional && len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	return decodeJSON(body, v)
}

func decodeJSON(body []byte, v any) error {
	if !utf8.Valid(body) {
		// encoding/json would turn the bad bytes into U+FFFD in silence.
		return holdfast.Errorf(holdfast.CodeInvalid, "the body is not valid UTF-8")
	}
	if err := cleanEscapes(body); err != nil {
		return err
	}
	if err := strictJSON(body, reflect.TypeOf(v)); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return holdfast.Errorf(holdfast.CodeInvalid, "the body is not valid JSON for this request: %s", jsonError(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return holdfast.Errorf(holdfast.CodeInvalid, "the body has more than one JSON value")
	}
	return nil
}

// cleanEscapes refuses the escapes encoding/json would accept and turn
// into what no field may hold: \u0000 (a NUL, which PostgreSQL refuses
// inside the database) and a lone surrogate (\ud800 alone, stored as
// U+FFFD in silence). Escapes are only found inside strings in JSON, so
// a scan of the bytes is exact.
func cleanEscapes(body []byte) error {
	for i := 0; i < len(body); i++ {
		if body[i] != '\\' || i+1 >= len(body) {
			continue
		}
		i++
		if body[i] != 'u' || i+4 >= len(body) {
			continue
		}
		c, ok := hex4(body[i+1 : i+5])
		i += 4
		switch {
		case !ok:
			continue // the decoder reports it
		case c == 0:
			return holdfast.Errorf(holdfast.CodeInvalid, "the body holds a NUL character (\\u0000)")
		case c >= 0xdc00 && c <= 0xdfff:
			return holdfast.Errorf(holdfast.CodeInvalid, "the body holds a lone surrogate (\\u%04x)", c)
		case c >= 0xd800 && c <= 0xdbff:
			// A high surrogate must be followed by a low one.
			if i+6 >= len(body) || body[i+1] != '\\' || body[i+2] != 'u' {
				return holdfast.Errorf(holdfast.CodeInvalid, "the body holds a lone surrogate (\\u%04x)", c)
			}
			lo, ok := hex4(body[i+3 : i+7])
			if !ok || lo < 0xdc00 || lo > 0xdfff {
				return holdfast.Errorf(holdfast.CodeInvalid, "the body holds a lone surrogate (\\u%04x)", c)
			}
			i += 6
		}
	}
	return nil
}

func hex4(b []byte) (rune, bool) {
	var c rune
	for _, x := range b {
		switch {
		case x >= '0' && x <= '9':
			c = c<<4 | rune(x-'0')
		case x >= 'a' && x <= 'f':
			c = c<<4 | rune(x-'a'+10)
		case x >= 'A' && x <= 'F':
			c = c<<4 | rune(x-'A'+10)
		default:
			return 0, false
		}
	}
	return c, true
}

// jsonError trims encoding/json's messages to what a client can act on.
func jsonError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field == "" {
			return "the body must be a JSON " + te.Type.String()
		}
		return "field " + strconv.Quote(te.Field) + " must be " + jsonType(te.Type.String())
	}
	return err.Error()
}

func jsonType(goType string) string {
	switch goType {
	case "int64", "int":
		return "an integer within range"
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "[]string":
		return "an array of strings"
	}
	return "of another type"
}

// ---- pools ----

func (s *Server) createPool(r *http.Request, c *call) (int, any, error) {
	var b struct {
		ID               string              `json:"id"`
		Name             string              `json:"name"`
		Capacity         *int64              `json:"capacity"`
		PerHolderLimit   int64               `json:"per_holder_limit"`
		LateConfirm      holdfast.LatePolicy `json:"late_confirm"`
		LateConfirmGrace int64               `json:"late_confirm_grace"`
		OfferTTLSeconds  int64               `json:"offer_ttl_seconds"`
		Partition        string              `json:"partition"`
	}
	if err := s.decode(r, &b, false); err != nil {
		return 0, nil, err
	}
	if b.Capacity == nil {
		return 0, nil, holdfast.Errorf(holdfast.CodeInvalid, "capacity is required")
	}
	if err := validPartition(b.Partition); err != nil {
		return 0, nil, err
	}
	p, err := c.changes(nil).CreatePool(r.Context(), holdfast.Pool{ID: b.ID, Name: b.Name, Capacity: *b.Capacity, PerHolderLimit: b.PerHolderLimit, OfferTTLSeconds: b.OfferTTLSeconds,
		LateConfirm: b.LateConfirm, LateConfirmGrace: b.LateConfirmGrace, Partition: b.Partition})
	return http.StatusCreated, p, err
}

// validPartition checks a partition as sent: absent, or an id. (One
// database has one place for everything and ignores it.)
func validPartition(p string) error {
	if p == "" {
		return nil
	}
	return holdfast.ValidateID("partition", p)
}

func (s *Server) listPools(r *http.Request, c *call) (int, any, error) {
	pools, err := s.cfg.Store.Pools(r.Context())
	return http.StatusOK, map[string]any{"pools": pools}, err
}

func (s *Server) getPool(r *http.Request, c *call) (int, any, error) {
	p, err := s.cfg.Store.Pool(r.Context(), r.PathValue("id"))
	return http.StatusOK, p, err
}

// lateBody is a late-confirm policy as sent.
type lateBody struct {
	LateConfirm      *holdfast.LatePolicy `json:"late_confirm"`
	LateConfirmGrace *int64               `json:"late_confirm_grace"`
}

func (b lateBody) set() bool { return b.LateConfirm != nil || b.LateConfirmGrace != nil }

// policy returns the policy sent; a grace alone keeps if_available.
func (b lateBody) policy() (holdfast.LatePolicy, int64, error) {
	if b.LateConfirm == nil {
		return "", 0, holdfast.Errorf(holdfast.CodeInvalid, "late_confirm is required with late_confirm_grace (refuse or if_available)")
	}
	var grace int64
	if b.LateConfirmGrace != nil {
		grace = *b.LateConfirmGrace
	}
	return *b.LateConfirm, grace, nil
}

// patchPool changes a pool's capacity or its late-confirm policy: one at
// a time, so that a refusal of one never leaves the other applied.
func (s *Server) patchPool(r *http.Request, c *call) (int, any, error) {
	var fields struct {
		Capacity         *int64               `json:"capacity"`
		LateConfirm      *holdfast.LatePolicy `json:"late_confirm"`
		LateConfirmGrace *int64               `json:"late_confirm_grace"`
	}
	if err := s.decode(r, &fields, false); err != nil {
		return 0, nil, err
	}
	b := struct {
		Capacity *int64
		lateBody
	}{fields.Capacity, lateBody{fields.LateConfirm, fields.LateConfirmGrace}}
	switch {
	case b.Capacity != nil && b.set():
		return 0, nil, holdfast.Errorf(holdfast.CodeInvalid, "change capacity and late_confirm in two requests")
	case b.Capacity != nil:
		p, err := c.changes(nil).SetCapacity(r.Context(), r.PathValue("id"), *b.Capacity)
		return http.StatusOK, p, err
	case b.set():
		policy, grace, err := b.policy()
		if err != nil {
			return 0, nil, err
		}
		p, err := c.changes(nil).SetPoolLateConfirm(r.Context(), r.PathValue("id"), policy, grace)
		return http.StatusOK, p, err
	}
	return 0, nil, holdfast.Errorf(holdfast.CodeInvalid, "capacity or late_confirm is required")
}

// allocationBody is an allocation as sent; release_at may be null (none).
type allocationBody struct {
	Channel   string     `json:"channel"`
	Quantity  *int64     `json:"quantity"`
	ReleaseAt *time.Time `json:"release_at"`
}

// allocate sets part of a pool aside for a channel (POST), or changes a
// channel's allocation (PATCH .../allocations/{channel}).
func (s *Server) allocate(r *http.Request, c *call) (int, any, error) {
	var b allocationBody
	if err := s.decode(r, &b, false); err != nil {
		return 0, nil, err
	}
	existing := r.PathValue("channel") != ""
	if existing {
		if b.Channel != "" && b.Channel != r.PathValue("channel") {
			return 0, nil, holdfast.Errorf(holdfast.CodeInvalid, "the channel is the path's; leave it out of the body")
		}
		b.Channel = r.PathValue("channel")
	} else if b.Channel == "" {
		return 0, nil, holdfast.Errorf(holdfast.CodeInvalid, "channel is required")
	}
	if b.Quantity == nil {
		return 0, nil, holdfast.Errorf(holdfast.CodeInvalid, "quantity is required")
	}
	p, err := c.changes(nil).Allocate(r.Context(), holdfast.AllocationRequest{Pool: r.PathValue("id"), Channel: b.Channel,
		Quantity: *b.Quantity, ReleaseAt: b.ReleaseAt, Existing: existing})
	return http.StatusOK, p, err
}

func (s *Server) endAllocation(r *http.Request, c *call) (int, any, error) {
	p, err := c.changes(nil).EndAllocation(r.Context(), r.PathValue("id"), r.PathValue("channel"))
	return http.StatusOK, p, err
}

// allocateUnits sets named units of a group aside for a channel.
func (s *Server) allocateUnits(r *http.Request, c *call) (int, any, error) {
	var b struct {
		Channel string   `json:"channel"`
		Units   []string `json:"units"`
	}
	if err := s.decode(r, &b, false); err != nil {
		return 0, nil, err
	}
	g, err := c.changes(nil).AllocateUnits(r.Context(), holdfast.UnitAllocationRequest{Group: r.PathValue("id"), Channel: b.Channel, Units: b.Units})
	return http.StatusOK, g, err
}

func (s *Server) endUnitAllocation(r *http.Request, c *call) (int, any, error) {
	g, err := c.changes(nil).EndUnitAllocation(r.Context(), r.PathValue("id"), r.PathValue("channel"))
	return http.StatusOK, g, err
}

func (s *Server) patchGroup(r *http.Request, c *call) (int, any, error) {
	var b lateBody
	if err := s.decode(r, &b, false); err != nil {
		return 0, nil, err
	}
	policy, grace, err := b.policy()
	if err != nil {
		return 0, nil, err
	}
	g, err := c.changes(nil).SetGroupLateConfirm(r.Context(), r.PathValue("id"), policy, grace)
	return http.StatusOK, g, err
}

// ---- groups ----

func (s *Server) createGroup(r *http.Request, c *call) (int, any, error) {
	var g holdfast.Group
	if err := s.decode(r, &g, false); err != nil {
		return 0, nil, err
	}
	if err := validPartition(g.Partition); err != nil {
		return 0, nil, err
	}
	g, err := c.changes(nil).CreateGroup(r.Context(), g)
	return http.StatusCreated, g, err
}

func (s *Server) getGroup(r *http.Request, c *call) (int, any, error) {
	g, err := s.cfg.Store.Group(r.Context(), r.PathValue("id"))
	return http.StatusOK, g, err
}

func (s *Server) getGroupLayout(r *http.Request, c *call) (int, any, error) {
	lr, ok := s.cfg.Store.(holdfast.GroupLayouts)
	if !ok {
		return 0, nil, holdfast.Errorf(holdfast.CodeUnsupported, "this store keeps no layouts")
	}
	l, err := lr.GroupLayout(r.Context(), r.PathValue("id"))
	return http.StatusOK, l, err
}

type unitsAdded struct {
	Group string `json:"group"`
	Added int    `json:"added"`
}

func (s *Server) addUnits(r *http.Request, c *call) (int, any, error) {
	var b struct {
		IDs []string `json:"ids"`
	}
	if err := s.decode(r, &b, false); err != nil {
		return 0, nil, err
	}
	out := unitsAdded{Group: r.PathValue("id"), Added: len(b.IDs)}
	st := c.changes(func(any) any { return out })
	return http.StatusCreated, out, st.AddUnits(r.Context(), out.Group, b.IDs)
}

// ---- holds ----

// lineBody is a hold line as sent. Pointers tell a field sent as 0 from a
// field not sent, so a line mixing forms is caught.
type lineBody struct {
	Pool     string   `json:"pool"`
	Quantity *int64   `json:"quantity"`
	Units    []string `json:"units"`
	Group    string   `json:"group"`
	Any      *int64   `json:"any"`
	Together bool     `json:"together"`
	Channel  string   `json:"channel"`
}

type holdBody struct {
	Holder     string     `json:"holder"`
	TTLSeconds *int64     `json:"ttl_seconds"`
	Lines      []lineBody `json:"lines"`
	PaymentRef string     `json:"payment_ref"`
	// Payment, on a booking, is recorded with it (see holdfast.Payment).
	Payment *paymentBody `json:"payment"`
	// Admission is a waiting room's token (or the Holdfast-Admission
	// header).
	Admission string `json:"admission"`
}

// holdRequest validates the body's shape and turns it into a request; the
// store validates the rest (bounds, ids, duplicates) before any write.
func (b holdBody) holdRequest(cfg holdfast.Config, owner string) (holdfast.HoldRequest, error) {
	r := holdfast.HoldRequest{Holder: b.Holder, Owner: owner}
	if b.TTLSeconds != nil {
		if err := validTTL(*b.TTLSeconds, cfg); err != nil {
			return r, err
		}
		r.TTL = time.Duration(*b.TTLSeconds) * time.Second
	}
	if len(b.Lines) > holdfast.MaxLines {
		return r, holdfast.Errorf(holdfast.CodeInvalid, "a hold has at most %d lines", holdfast.MaxLines)
	}
	for i, l := range b.Lines {
		forms := 0
		if l.Pool != "" || l.Quantity != nil {
			forms++
		}
		if l.Units != nil {
			forms++
		}
		if l.Group != "" || l.Any != nil {
			forms++
		}
		if forms != 1 {
			return r, holdfast.LineErrorf(holdfast.CodeInvalid, i, "a line has exactly one form: {pool, quantity}, {units} or {group, any}")
		}
		line := holdfast.Line{Pool: l.Pool, Units: l.Units, Group: l.Group, Together: l.Together, Channel: l.Channel}
		if l.Together && l.Any == nil {
			return r, holdfast.LineErrorf(holdfast.CodeInvalid, i, "together goes with a {group, any} line")
		}
		switch {
		case l.Units != nil && len(l.Units) == 0:
			return r, holdfast.LineErrorf(holdfast.CodeInvalid, i, "units must name at least one unit")
		case l.Pool != "" && l.Quantity == nil, l.Quantity != nil && l.Pool == "":
			return r, holdfast.LineErrorf(holdfast.CodeInvalid, i, "a pool line needs both pool and quantity")
		case l.Group != "" && l.Any == nil, l.Any != nil && l.Group == "":
			return r, holdfast.LineErrorf(holdfast.CodeInvalid, i, "a group line needs both group and any")
		}
		if l.Quantity != nil {
			if *l.Quantity < 1 || *l.Quantity > holdfast.MaxQuantity {
				return r, holdfast.LineErrorf(holdfast.CodeInvalid, i, "quantity must be an integer from 1 to %d", holdfast.MaxQuantity)
			}
			line.Quantity = *l.Quantity
		}
		if l.Any != nil {
			if *l.Any < 1 || *l.Any > holdfast.MaxUnitsOnLine {
				return r, holdfast.LineErrorf(holdfast.CodeInvalid, i, "any must be an integer from 1 to %d", holdfast.MaxUnitsOnLine)
			}
			line.Any = *l.Any
		}
		r.Lines = append(r.Lines, line)
	}
	return r, r.Validate(cfg)
}

// admission is the waiting room's token a hold carries: the
// Holdfast-Admission header or "admission" in the body, not both.
func admission(r *http.Request, b holdBody) (string, error) {
	h := r.Header.Get("Holdfast-Admission")
	if h != "" && b.Admission != "" && h != b.Admission {
		return "", holdfast.Errorf(holdfast.CodeInvalid, "the Holdfast-Admission header and admission in the body differ")
	}
	if h == "" {
		h = b.Admission
	}
	if h != "" && (len(h) > 200 || !printable(h)) {
		return "", holdfast.Errorf(holdfast.CodeAdmissionInvalid, "the admission is malformed")
	}
	return h, nil
}

func validTTL(sec int64, cfg holdfast.Config) error {
	if maxSec := int64(cfg.MaxTTL / time.Second); sec < 1 || sec > maxSec {
		return holdfast.Errorf(holdfast.CodeInvalid, "ttl_seconds must be an integer from 1 to %d", maxSec)
	}
	return nil
}

func (s *Server) createHold(r *http.Request, c *call) (int, any, error) {
	var b holdBody
	if err := s.decode(r, &b, false); err != nil {
		return 0, nil, err
	}
	if b.PaymentRef != "" || b.Payment != nil {
		return 0, nil, holdfast.Errorf(holdfast.CodeInvalid, "payment_ref and payment belong on confirm or on /v1/bookings")
	}
	req, err := b.holdRequest(s.cfg.Holds, c.id)
	if err != nil {
		return 0, nil, err
	}
	if err := c.channelLines(&req); err != nil {
		return 0, nil, err
	}
	req.QuotaKey = c.quotaKey
	if req.Admission, err = admission(r, b); err != nil {
		return 0, nil, err
	}
	h, err := c.changes(nil).Hold(r.Context(), req)
	s.metrics.hold(err)
	return http.StatusCreated, h, err
}

func (s *Server) book(r *http.Request, c *call) (int, any, error) {
	var b holdBody
	if err := s.decode(r, &b, false); err != nil {
		return 0, nil, err
	}
	req, err := b.holdRequest(s.cfg.Holds, c.id)
	if err != nil {
		return 0, nil, err
	}
	if err := c.channelLines(&req); err != nil {
		return 0, nil, err
	}
	if req.Admission, err = admission(r, b); err != nil {
		return 0, nil, err
	}
	pay, err := b.Payment.payment(b.PaymentRef)
	if err != nil {
		return 0, nil, err
	}
	if pay != nil {
		h, err := c.changes(nil).BookPaid(r.Context(), req, *pay)
		s.metrics.hold(err)
		return http.StatusCreated, h, err
	}
	h, err := c.changes(nil).Book(r.Context(), req, b.PaymentRef)
	s.metrics.hold(err)
	return http.StatusCreated, h, err
}

func (s *Server) listHolds(r *http.Request, c *call) (int, any, error) {
	holder := r.URL.Query().Get("holder")
	if holder == "" {
		return 0, nil, holdfast.Errorf(holdfast.CodeInvalid, "the holder query parameter is required")
	}
	holds, err := s.cfg.Store.Holds(r.Context(), holder, c.owns())
	return http.StatusOK, map[string]any{"holds": holds}, err
}

// ownHold returns the hold if p may see it. Another client's hold is
// not_found, not forbidden: hold ids leak nothing. The owner never changes,
// so checking it before the change cannot race.
func (s *Server) ownHold(r *http.Request, p principal) (holdfast.Hold, error) {
	id := r.PathValue("id")
	h, err := s.cfg.Store.GetHold(r.Context(), id)
	if err != nil {
		return h, err
	}
	if o := p.owns(); o != "" && h.Owner != o {
		return holdfast.Hold{}, holdfast.Errorf(holdfast.CodeNotFound, "hold %q not found", id)
	}
	return h, nil
}

// mayChange checks, before a state change, that p may change the hold. An
// admin may change any, so only a client's change costs the read.
func (s *Server) mayChange(r *http.Request, p principal) error {
	if p.owns() == "" {
		return nil
	}
	_, err := s.ownHold(r, p)
	return err
}

func (s *Server) getHold(r *http.Request, c *call) (int, any, error) {
	h, err := s.ownHold(r, c.principal)
	return http.StatusOK, h, err
}

func (s *Server) confirm(r *http.Request, c *call) (int, any, error) {
	var b struct {
		PaymentRef string              `json:"payment_ref"`
		Payment    *paymentBody        `json:"payment"`
		Lines      []holdfast.PartLine `json:"lines"`
	}
	if err := s.decode(r, &b, true); err != nil {
		return 0, nil, err
	}
	if b.Lines != nil && len(b.Lines) == 0 {
		return 0, nil, holdfast.Errorf(holdfast.CodeInvalid, "lines names what to keep of each line; leave it out to confirm the whole hold")
	}
	pay, err := b.Payment.payment(b.PaymentRef)
	if err != nil {
		return 0, nil, err
	}
	if err := s.mayChange(r, c.principal); err != nil {
		return 0, nil, err
	}
	if pay != nil {
		h, err := c.changes(nil).ConfirmPaid(r.Context(), r.PathValue("id"), *pay, b.Lines)
		return http.StatusOK, h, err
	}
	h, err := c.changes(nil).ConfirmPart(r.Context(), r.PathValue("id"), b.PaymentRef, b.Lines)
	return http.StatusOK, h, err
}

// paymentBody is a payment as sent on a confirm or a booking.
type paymentBody struct {
	Ref      string `json:"ref"`
	Amount   *int64 `json:"amount"`
	Currency string `json:"currency"`
}

// payment returns the payment sent, if any; payment_ref beside it must
// name the same ref.
func (b *paymentBody) payment(ref string) (*holdfast.Payment, error) {
	if b == nil {
		return nil, nil
	}
	if ref != "" && ref != b.Ref {
		return nil, holdfast.Errorf(holdfast.CodeInvalid, "payment_ref and payment.ref differ: send payment alone")
	}
	if b.Amount == nil {
		return nil, holdfast.Errorf(holdfast.CodeInvalid, "payment.amount is required (minor units: cents)")
	}
	p := holdfast.Payment{Ref: b.Ref, Amount: *b.Amount, Currency: b.Currency}
	return &p, p.Validate()
}

func (s *Server) release(r *http.Request, c *call) (int, any, error) {
	return s.change(r, c, c.changes(nil).Release)
}

func (s *Server) cancel(r *http.Request, c *call) (int, any, error) {
	return s.change(r, c, c.changes(nil).Cancel)
}

func (s *Server) complete(r *http.Request, c *call) (int, any, error) {
	return s.change(r, c, c.changes(nil).Complete)
}

// change runs a state change that takes no body beyond an empty object.
func (s *Server) change(r *http.Request, c *call, op func(ctx context.Context, id string) (holdfast.Hold, error)) (int, any, error) {
	if err := s.decode(r, &struct{}{}, true); err != nil {
		return 0, nil, err
	}
	if err := s.mayChange(r, c.principal); err != nil {
		return 0, nil, err
	}
	h, err := op(r.Context(), r.PathValue("id"))
	return http.StatusOK, h, err
}

// exchange swaps units of a hold of this key.
func (s *Server) exchange(r *http.Request, c *call) (int, any, error) {
	var b struct {
		Units map[string]string `json:"units"`
	}
	if err := s.decode(r, &b, false); err != nil {
		return 0, nil, err
	}
	if err := s.mayChange(r, c.principal); err != nil {
		return 0, nil, err
	}
	h, err := c.changes(nil).Exchange(r.Context(), r.PathValue("id"), b.Units)
	return http.StatusOK, h, err
}

// transfer gives a hold to another holder of this key.
func (s *Server) transfer(r *http.Request, c *call) (int, any, error) {
	var b struct {
		Holder string `json:"holder"`
	}
	if err := s.decode(r, &b, false); err != nil {
		return 0, nil, err
	}
	if err := s.mayChange(r, c.principal); err != nil {
		return 0, nil, err
	}
	h, err := c.changes(nil).Transfer(r.Context(), r.PathValue("id"), b.Holder)
	return http.StatusOK, h, err
}

func (s *Server) extend(r *http.Request, c *call) (int, any, error) {
	var b struct {
		TTLSeconds *int64 `json:"ttl_seconds"`
	}
	if err := s.decode(r, &b, false); err != nil {
		return 0, nil, err
	}
	if b.TTLSeconds == nil {
		return 0, nil, holdfast.Errorf(holdfast.CodeInvalid, "ttl_seconds is required")
	}
	if err := validTTL(*b.TTLSeconds, s.cfg.Holds); err != nil {
		return 0, nil, err
	}
	if err := s.mayChange(r, c.principal); err != nil {
		return 0, nil, err
	}
	h, err := c.changes(nil).Extend(r.Context(), r.PathValue("id"), time.Duration(*b.TTLSeconds)*time.Second)
	return http.StatusOK, h, err
}

// ---- events ----

func (s *Server) events(r *http.Request, c *call) (int, any, error) {
	q := r.URL.Query()
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return 0, nil, holdfast.Errorf(holdfast.CodeInvalid, "limit must be an integer from 1 to 1000")
		}
		limit = n
	}
	events, next, err := s.cfg.Store.Events(r.Context(), q.Get("after"), limit)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"events": events, "next": next}, nil
}

// getPayment reads a payment: an admin any, a client key those on its
// own holds.
func (s *Server) getPayment(r *http.Request, c *call) (int, any, error) {
	p, err := s.cfg.Store.Payment(r.Context(), r.PathValue("ref"))
	if err != nil {
		return 0, nil, err
	}
	if owner := c.owns(); owner != "" {
		h, err := s.cfg.Store.GetHold(r.Context(), p.HoldID)
		if p.HoldID == "" || err != nil || h.Owner != owner {
			return 0, nil, holdfast.Errorf(holdfast.CodeNotFound, "payment %q not found", r.PathValue("ref"))
		}
	}
	return http.StatusOK, p, nil
}

func (s *Server) listPayments(r *http.Request, _ *call) (int, any, error) {
	ps, err := s.cfg.Store.ListPayments(r.Context(), holdfast.PaymentStatus(r.URL.Query().Get("status")))
	return http.StatusOK, map[string][]holdfast.Payment{"payments": ps}, err
}

func (s *Server) paymentRefunded(r *http.Request, c *call) (int, any, error) {
	if err := s.decode(r, &struct{}{}, true); err != nil {
		return 0, nil, err
	}
	p, err := c.changes(nil).PaymentRefunded(r.Context(), r.PathValue("ref"))
	return http.StatusOK, p, err
}
