package http

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/holdfast/holdfast"
)

// Client speaks API v1 to a holdfast server, with the same method names,
// arguments and errors as holdfast.Store: a problem answer comes back as a
// *holdfast.Error with its code and failing line.
//
// Every POST carries a fresh Idempotency-Key, and a request that fails
// without an answer (connection refused or reset, 503) is retried with the
// same key, so a retry never books twice.
type Client struct {
	BaseURL string
	Key     string
	HTTP    *http.Client
	// Retries is how many times a request without an answer is retried
	// (default 2).
	Retries int
	// NoIdempotencyKeys sends POSTs without an Idempotency-Key (and so
	// never retries them): for measuring what the keys cost.
	NoIdempotencyKeys bool
}

// The client-facing contracts the client satisfies, checked at compile
// time: a program written against them runs on a store in-process or on a
// server over HTTP unchanged. Where the API cannot serve a method (what
// only the server may do with keys and webhooks) it answers unsupported.
var (
	_ holdfast.Catalog       = (*Client)(nil)
	_ holdfast.Booking       = (*Client)(nil)
	_ holdfast.Feed          = (*Client)(nil)
	_ holdfast.RoomStore     = (*Client)(nil)
	_ holdfast.WaitlistStore = (*Client)(nil)
	_ holdfast.Allocations   = (*Client)(nil)
	_ holdfast.Payments      = (*Client)(nil)
	_ holdfast.KeyStore      = (*Client)(nil)
	_ holdfast.WebhookStore  = (*Client)(nil)
	_ holdfast.Capable       = (*Client)(nil)
	_ holdfast.GroupLayouts  = (*Client)(nil)
)

// NewClient returns a client for the server at baseURL (http://host:port).
func NewClient(baseURL, key string) *Client {
	return &Client{
		BaseURL: strings.TrimRight(baseURL, "/"),
		Key:     key,
		HTTP: &http.Client{
			Timeout:   30 * time.Second,
			Transport: &http.Transport{MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second},
		},
		Retries: 2,
	}
}

// maxInFlightWaits bounds how often a request waits for an earlier
// attempt with its key that is still running (about 10 s in all).
const maxInFlightWaits = 25

// do sends a request and decodes a 2xx answer into out.
// UnreachableError is a request no server answered: nothing listens at
// URL (or it cannot be reached), as opposed to a server that is busy.
type UnreachableError struct {
	URL string
	Err error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("could not reach holdfast at %s: %v", e.URL, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	idemKey := ""
	retries := c.Retries
	if method == http.MethodPost || method == http.MethodPatch {
		if c.NoIdempotencyKeys {
			retries = 0
		} else {
			idemKey = randomString(16)
		}
	}
	var lastErr error
	inFlight := 0
	for attempt := 0; attempt <= retries; attempt++ {
		if attempt > 0 || inFlight > 0 {
			wait := time.Duration(attempt*attempt) * 100 * time.Millisecond
			if holdfast.ErrorCode(lastErr) == holdfast.CodeIdempotencyInFlight {
				wait = time.Duration(min(inFlight, 5)) * 100 * time.Millisecond
			}
			select {
			case <-ctx.Done():
				return lastErr
			case <-time.After(wait):
			}
		}
		req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, bytes.NewReader(body))
		if err != nil {
			return err
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if c.Key != "" {
			req.Header.Set("Authorization", "Bearer "+c.Key)
		}
		if idemKey != "" {
			req.Header.Set("Idempotency-Key", idemKey)
		}
		resp, err := c.HTTP.Do(req)
		if err != nil {
			lastErr = fmt.Errorf("%w: %v", holdfast.ErrBusy, err)
			var op *net.OpError
			if errors.As(err, &op) && op.Op == "dial" {
				// Nothing answers there: not busy, absent. (Safe to try
				// again: the request never reached a server.)
				lastErr = &UnreachableError{URL: c.BaseURL, Err: op.Err}
			}
			if ctx.Err() != nil {
				return lastErr
			}
			continue
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			lastErr = fmt.Errorf("%w: reading the answer: %v", holdfast.ErrBusy, err)
			continue
		}
		if resp.StatusCode >= 400 {
			lastErr = problemError(resp.StatusCode, b)
			if holdfast.ErrorCode(lastErr) == holdfast.CodeIdempotencyInFlight && inFlight < maxInFlightWaits {
				// An earlier attempt with this key is still running (it
				// outlived our timeout): its answer will be replayed. Wait
				// for it rather than fail; this does not use up a retry.
				inFlight++
				attempt--
				continue
			}
			if resp.StatusCode == http.StatusServiceUnavailable {
				continue
			}
			return lastErr
		}
		if out == nil {
			return nil
		}
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("holdfast client: decoding %s %s: %w", method, path, err)
		}
		return nil
	}
	return lastErr
}

func problemError(status int, body []byte) error {
	var p Problem
	if err := json.Unmarshal(body, &p); err != nil || p.Code == "" {
		return holdfast.Errorf(holdfast.CodeInternal, "server answered %d: %s", status, strings.TrimSpace(string(body)))
	}
	line := -1
	if p.Line != nil {
		line = *p.Line
	}
	msg := p.Detail
	if msg == "" {
		msg = p.Title
	}
	return &holdfast.Error{Code: p.Code, Message: msg, Line: line, Reclaimable: p.Reclaimable, Room: p.Room}
}

func esc(s string) string { return url.PathEscape(s) }

// CreatePool is POST /v1/pools (admin): holdfast.Catalog.CreatePool over HTTP.
func (c *Client) CreatePool(ctx context.Context, p holdfast.Pool) (holdfast.Pool, error) {
	var out holdfast.Pool
	err := c.do(ctx, "POST", "/v1/pools", map[string]any{
		"id": p.ID, "name": p.Name, "capacity": p.Capacity, "per_holder_limit": p.PerHolderLimit,
		"late_confirm": p.LateConfirm, "late_confirm_grace": p.LateConfirmGrace, "offer_ttl_seconds": p.OfferTTLSeconds, "partition": p.Partition}, &out)
	return out, err
}

// Pool is GET /v1/pools/{id}: a pool with its availability.
func (c *Client) Pool(ctx context.Context, id string) (holdfast.Pool, error) {
	var out holdfast.Pool
	err := c.do(ctx, "GET", "/v1/pools/"+esc(id), nil, &out)
	return out, err
}

// Pools is GET /v1/pools: every pool, ordered by id.
// Rooms is GET /v1/rooms (admin).
func (c *Client) Rooms(ctx context.Context) ([]holdfast.Room, error) {
	var out struct {
		Rooms []holdfast.Room `json:"rooms"`
	}
	err := c.do(ctx, "GET", "/v1/rooms", nil, &out)
	return out.Rooms, err
}

func (c *Client) Pools(ctx context.Context) ([]holdfast.Pool, error) {
	var out struct {
		Pools []holdfast.Pool `json:"pools"`
	}
	err := c.do(ctx, "GET", "/v1/pools", nil, &out)
	return out.Pools, err
}

// SetCapacity is PATCH /v1/pools/{id} (admin); refused (conflict) below
// what is held and confirmed.
func (c *Client) SetCapacity(ctx context.Context, id string, capacity int64) (holdfast.Pool, error) {
	var out holdfast.Pool
	err := c.do(ctx, "PATCH", "/v1/pools/"+esc(id), map[string]any{"capacity": capacity}, &out)
	return out, err
}

// SetPoolLateConfirm is PATCH /v1/pools/{id} with a late-confirm policy (admin).
func (c *Client) SetPoolLateConfirm(ctx context.Context, id string, policy holdfast.LatePolicy, grace int64) (holdfast.Pool, error) {
	var out holdfast.Pool
	err := c.do(ctx, "PATCH", "/v1/pools/"+esc(id), map[string]any{"late_confirm": policy, "late_confirm_grace": grace}, &out)
	return out, err
}

// Allocate is POST /v1/pools/{id}/allocations (admin), or PATCH
// /v1/pools/{id}/allocations/{channel} with req.Existing.
func (c *Client) Allocate(ctx context.Context, req holdfast.AllocationRequest) (holdfast.Pool, error) {
	var out holdfast.Pool
	body := map[string]any{"quantity": req.Quantity, "release_at": req.ReleaseAt}
	if req.Existing {
		err := c.do(ctx, "PATCH", "/v1/pools/"+esc(req.Pool)+"/allocations/"+esc(req.Channel), body, &out)
		return out, err
	}
	body["channel"] = req.Channel
	err := c.do(ctx, "POST", "/v1/pools/"+esc(req.Pool)+"/allocations", body, &out)
	return out, err
}

// EndAllocation is DELETE /v1/pools/{id}/allocations/{channel} (admin).
func (c *Client) EndAllocation(ctx context.Context, pool, channel string) (holdfast.Pool, error) {
	var out holdfast.Pool
	err := c.do(ctx, "DELETE", "/v1/pools/"+esc(pool)+"/allocations/"+esc(channel), nil, &out)
	return out, err
}

// AllocateUnits is POST /v1/groups/{id}/allocations (admin).
func (c *Client) AllocateUnits(ctx context.Context, req holdfast.UnitAllocationRequest) (holdfast.GroupAvailability, error) {
	var out holdfast.GroupAvailability
	err := c.do(ctx, "POST", "/v1/groups/"+esc(req.Group)+"/allocations", map[string]any{"channel": req.Channel, "units": req.Units}, &out)
	return out, err
}

// EndUnitAllocation is DELETE /v1/groups/{id}/allocations/{channel} (admin).
func (c *Client) EndUnitAllocation(ctx context.Context, group, channel string) (holdfast.GroupAvailability, error) {
	var out holdfast.GroupAvailability
	err := c.do(ctx, "DELETE", "/v1/groups/"+esc(group)+"/allocations/"+esc(channel), nil, &out)
	return out, err
}

// SetGroupLateConfirm is PATCH /v1/groups/{id} (admin).
func (c *Client) SetGroupLateConfirm(ctx context.Context, id string, policy holdfast.LatePolicy, grace int64) (holdfast.Group, error) {
	var out holdfast.Group
	err := c.do(ctx, "PATCH", "/v1/groups/"+esc(id), map[string]any{"late_confirm": policy, "late_confirm_grace": grace}, &out)
	return out, err
}

// CreateGroup is POST /v1/groups (admin).
func (c *Client) CreateGroup(ctx context.Context, g holdfast.Group) (holdfast.Group, error) {
	var out holdfast.Group
	err := c.do(ctx, "POST", "/v1/groups", g, &out)
	return out, err
}

// AddUnits is POST /v1/groups/{id}/units (admin): all the units or none.
func (c *Client) AddUnits(ctx context.Context, group string, ids []string) error {
	if ids == nil {
		ids = []string{}
	}
	return c.do(ctx, "POST", "/v1/groups/"+esc(group)+"/units", map[string]any{"ids": ids}, nil)
}

// Group is GET /v1/groups/{id}: unit counts and the first free units.
func (c *Client) Group(ctx context.Context, id string) (holdfast.GroupAvailability, error) {
	var out holdfast.GroupAvailability
	err := c.do(ctx, "GET", "/v1/groups/"+esc(id), nil, &out)
	return out, err
}

// GroupLayout reads a group's venue map.
func (c *Client) GroupLayout(ctx context.Context, id string) (*holdfast.Layout, error) {
	var out holdfast.Layout
	if err := c.do(ctx, "GET", "/v1/groups/"+esc(id)+"/layout", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Units lists every unit of the group, following the pages.
func (c *Client) Units(ctx context.Context, group string, status holdfast.UnitStatus) ([]holdfast.Unit, error) {
	units := []holdfast.Unit{}
	for after := ""; ; {
		var out struct {
			Units []holdfast.Unit `json:"units"`
			Next  string          `json:"next"`
		}
		q := url.Values{}
		if status != "" {
			q.Set("status", string(status))
		}
		if after != "" {
			q.Set("after", after)
		}
		path := "/v1/groups/" + esc(group) + "/units"
		if len(q) > 0 {
			path += "?" + q.Encode()
		}
		if err := c.do(ctx, "GET", path, nil, &out); err != nil {
			return nil, err
		}
		units = append(units, out.Units...)
		if after = out.Next; after == "" {
			return units, nil
		}
	}
}

func holdJSON(r holdfast.HoldRequest, paymentRef string) map[string]any {
	m := map[string]any{"holder": r.Holder, "lines": r.Lines}
	if r.Lines == nil {
		m["lines"] = []holdfast.Line{}
	}
	if r.TTL != 0 {
		m["ttl_seconds"] = int64(r.TTL / time.Second)
	}
	if paymentRef != "" {
		m["payment_ref"] = paymentRef
	}
	if r.Admission != "" {
		m["admission"] = r.Admission
	}
	return m
}

// Hold is POST /v1/holds: every line or nothing. Each call sends an
// Idempotency-Key (unless NoIdempotencyKeys), so a retry after a lost
// answer cannot hold twice.
func (c *Client) Hold(ctx context.Context, r holdfast.HoldRequest) (holdfast.Hold, error) {
	var out holdfast.Hold
	err := c.do(ctx, "POST", "/v1/holds", holdJSON(r, ""), &out)
	return out, err
}

// Book is POST /v1/bookings: hold and confirm in one step.
func (c *Client) Book(ctx context.Context, r holdfast.HoldRequest, paymentRef string) (holdfast.Hold, error) {
	var out holdfast.Hold
	err := c.do(ctx, "POST", "/v1/bookings", holdJSON(r, paymentRef), &out)
	return out, err
}

// BookPaid is POST /v1/bookings with a payment, recorded with the booking
// (or, refused, as due back).
func (c *Client) BookPaid(ctx context.Context, r holdfast.HoldRequest, p holdfast.Payment) (holdfast.Hold, error) {
	var out holdfast.Hold
	body := holdJSON(r, "")
	body["payment"] = paymentJSON(p)
	err := c.do(ctx, "POST", "/v1/bookings", body, &out)
	return out, err
}

// ConfirmPaid is POST /v1/holds/{id}/confirm with a payment.
func (c *Client) ConfirmPaid(ctx context.Context, id string, p holdfast.Payment, part []holdfast.PartLine) (holdfast.Hold, error) {
	body := map[string]any{"payment": paymentJSON(p)}
	if len(part) > 0 {
		body["lines"] = part
	}
	return c.action(ctx, id, "confirm", body)
}

func paymentJSON(p holdfast.Payment) map[string]any {
	return map[string]any{"ref": p.Ref, "amount": p.Amount, "currency": p.Currency}
}

// Payment is GET /v1/payments/{ref}.
func (c *Client) Payment(ctx context.Context, ref string) (holdfast.Payment, error) {
	var out holdfast.Payment
	err := c.do(ctx, "GET", "/v1/payments/"+esc(ref), nil, &out)
	return out, err
}

// ListPayments is GET /v1/payments?status= (admin).
func (c *Client) ListPayments(ctx context.Context, status holdfast.PaymentStatus) ([]holdfast.Payment, error) {
	var out struct {
		Payments []holdfast.Payment `json:"payments"`
	}
	err := c.do(ctx, "GET", "/v1/payments?status="+url.QueryEscape(string(status)), nil, &out)
	return out.Payments, err
}

// PaymentRefunded is POST /v1/payments/{ref}/refunded (admin).
func (c *Client) PaymentRefunded(ctx context.Context, ref string) (holdfast.Payment, error) {
	var out holdfast.Payment
	err := c.do(ctx, "POST", "/v1/payments/"+esc(ref)+"/refunded", struct{}{}, &out)
	return out, err
}

func (c *Client) action(ctx context.Context, id, action string, body any) (holdfast.Hold, error) {
	var out holdfast.Hold
	if body == nil {
		body = struct{}{}
	}
	err := c.do(ctx, "POST", "/v1/holds/"+esc(id)+"/"+action, body, &out)
	return out, err
}

// Confirm is POST /v1/holds/{id}/confirm; hold_expired after its expiry.
func (c *Client) Confirm(ctx context.Context, id, paymentRef string) (holdfast.Hold, error) {
	return c.action(ctx, id, "confirm", map[string]string{"payment_ref": paymentRef})
}

// ConfirmPart is POST /v1/holds/{id}/confirm with lines: what to keep
// of each line named, the rest released, in one step.
func (c *Client) ConfirmPart(ctx context.Context, id, paymentRef string, part []holdfast.PartLine) (holdfast.Hold, error) {
	if len(part) == 0 {
		return c.Confirm(ctx, id, paymentRef)
	}
	return c.action(ctx, id, "confirm", map[string]any{"payment_ref": paymentRef, "lines": part})
}

// Release is POST /v1/holds/{id}/release: a held hold's capacity back.
func (c *Client) Release(ctx context.Context, id string) (holdfast.Hold, error) {
	return c.action(ctx, id, "release", nil)
}

// Extend is POST /v1/holds/{id}/extend: the expiry moves to now + ttl
// (whole seconds).
// Exchange is POST /v1/holds/{id}/exchange.
func (c *Client) Exchange(ctx context.Context, id string, swaps map[string]string) (holdfast.Hold, error) {
	var out holdfast.Hold
	err := c.do(ctx, "POST", "/v1/holds/"+esc(id)+"/exchange", map[string]any{"units": swaps}, &out)
	return out, err
}

// Transfer is POST /v1/holds/{id}/transfer.
func (c *Client) Transfer(ctx context.Context, id, holder string) (holdfast.Hold, error) {
	var out holdfast.Hold
	err := c.do(ctx, "POST", "/v1/holds/"+esc(id)+"/transfer", map[string]string{"holder": holder}, &out)
	return out, err
}

func (c *Client) Extend(ctx context.Context, id string, ttl time.Duration) (holdfast.Hold, error) {
	return c.action(ctx, id, "extend", map[string]int64{"ttl_seconds": int64(ttl / time.Second)})
}

// Cancel is POST /v1/holds/{id}/cancel: a confirmed hold refunded.
func (c *Client) Cancel(ctx context.Context, id string) (holdfast.Hold, error) {
	return c.action(ctx, id, "cancel", nil)
}

// Complete is POST /v1/holds/{id}/complete: a confirmed hold used;
// reusable units return.
func (c *Client) Complete(ctx context.Context, id string) (holdfast.Hold, error) {
	return c.action(ctx, id, "complete", nil)
}

// GetHold is GET /v1/holds/{id} (another client's hold is not_found).
func (c *Client) GetHold(ctx context.Context, id string) (holdfast.Hold, error) {
	var out holdfast.Hold
	err := c.do(ctx, "GET", "/v1/holds/"+esc(id), nil, &out)
	return out, err
}

// Holds lists a holder's holds. The server narrows them to the key's own;
// owner is ignored.
func (c *Client) Holds(ctx context.Context, holder, _ string) ([]holdfast.Hold, error) {
	var out struct {
		Holds []holdfast.Hold `json:"holds"`
	}
	err := c.do(ctx, "GET", "/v1/holds?holder="+url.QueryEscape(holder), nil, &out)
	return out.Holds, err
}

// Events is GET /v1/events (admin): up to limit (at most 1,000) outbox
// events after the cursor, and the cursor to continue from.
func (c *Client) Events(ctx context.Context, after string, limit int) ([]holdfast.Event, string, error) {
	var out struct {
		Events []holdfast.Event `json:"events"`
		Next   string           `json:"next"`
	}
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	err := c.do(ctx, "GET", "/v1/events?after="+url.QueryEscape(after)+"&limit="+strconv.Itoa(limit), nil, &out)
	return out.Events, out.Next, err
}

// CreateKey asks the server for a new client key (admin only) named
// k.Name, with k.MaxHeldUnits and k.Channel, and returns it with its
// bearer key in Secret, shown only this once. The server makes the id and
// the secret: a k with an ID or a Hash is unsupported. If the server
// answers a replay of an earlier request (the first answer was lost), the
// secret is gone: the error is ErrConflict, naming the key id to revoke.
func (c *Client) CreateKey(ctx context.Context, k holdfast.APIKey) (holdfast.APIKey, error) {
	if k.ID != "" || k.Hash != nil {
		return holdfast.APIKey{}, holdfast.Errorf(holdfast.CodeUnsupported, "the server makes a key's id and secret: give only its name, quota and channel")
	}
	var out createdKey
	body := map[string]any{"name": k.Name, "max_held_units": k.MaxHeldUnits}
	if k.Channel != "" {
		body["channel"] = k.Channel
	}
	if err := c.do(ctx, "POST", "/v1/keys", body, &out); err != nil {
		return holdfast.APIKey{}, err
	}
	created := holdfast.APIKey{ID: out.ID, Name: out.Name, Role: out.Role, CreatedAt: out.CreatedAt, MaxHeldUnits: out.MaxHeldUnits, Channel: out.Channel}
	if out.Key == nil {
		return created, holdfast.Errorf(holdfast.CodeConflict, "key %s was created, but its secret was shown once and not kept: revoke it and create another", out.ID)
	}
	created.Secret = *out.Key
	return created, nil
}

// APIKey reads a key, revoked or not (admin only); never its secret.
func (c *Client) APIKey(ctx context.Context, id string) (holdfast.APIKey, error) {
	var out holdfast.APIKey
	err := c.do(ctx, "GET", "/v1/keys/"+esc(id), nil, &out)
	return out, err
}

// TouchKey is the server's own bookkeeping (when a key last
// authenticated): the API does not offer it.
func (c *Client) TouchKey(context.Context, string) error {
	return holdfast.Errorf(holdfast.CodeUnsupported, "a key's last use is recorded by the server that authenticates it")
}

// Keys lists the keys (admin only); never a secret.
func (c *Client) Keys(ctx context.Context) ([]holdfast.APIKey, error) {
	var out struct {
		Keys []holdfast.APIKey `json:"keys"`
	}
	err := c.do(ctx, "GET", "/v1/keys", nil, &out)
	return out.Keys, err
}

// SetKeyQuota sets a key's quota of held units, 0 for none (admin only).
func (c *Client) SetKeyQuota(ctx context.Context, id string, maxHeldUnits int64) (holdfast.APIKey, error) {
	var out holdfast.APIKey
	err := c.do(ctx, "PATCH", "/v1/keys/"+esc(id), map[string]int64{"max_held_units": maxHeldUnits}, &out)
	return out, err
}

// RevokeKey revokes a key for good (admin only).
func (c *Client) RevokeKey(ctx context.Context, id string) (holdfast.APIKey, error) {
	var out holdfast.APIKey
	err := c.do(ctx, "DELETE", "/v1/keys/"+esc(id), nil, &out)
	return out, err
}

// Ready reports whether the server answers /readyz.
func (c *Client) Ready(ctx context.Context) error {
	return c.do(ctx, "GET", "/readyz", nil, nil)
}

// createdWebhook is a webhook as its creation answers: with its signing
// secret, shown this once.
type createdWebhook struct {
	holdfast.Webhook
	Secret string `json:"secret"`
}

// CreateWebhook registers w's URL, events and description (admin only),
// and returns the webhook with its signing secret in Secret, shown only
// this once. The server makes the id and the secret: a w with either is
// unsupported.
func (c *Client) CreateWebhook(ctx context.Context, w holdfast.Webhook) (holdfast.Webhook, error) {
	if w.ID != "" || w.Secret != "" {
		return holdfast.Webhook{}, holdfast.Errorf(holdfast.CodeUnsupported, "the server makes a webhook's id and signing secret: give only its url, events and description")
	}
	var out createdWebhook
	events := w.Events
	if events == nil {
		events = []holdfast.EventType{}
	}
	err := c.do(ctx, "POST", "/v1/webhooks", map[string]any{"url": w.URL, "events": events, "description": w.Description}, &out)
	created := out.Webhook
	created.Secret = out.Secret
	if err == nil && out.Secret == "" {
		err = holdfast.Errorf(holdfast.CodeConflict, "webhook %s was created, but its secret was shown once and not kept: delete it and create another", out.ID)
	}
	return created, err
}

// Webhooks lists the webhooks (admin only); never a secret.
func (c *Client) Webhooks(ctx context.Context) ([]holdfast.Webhook, error) {
	var out struct {
		Webhooks []holdfast.Webhook `json:"webhooks"`
	}
	err := c.do(ctx, "GET", "/v1/webhooks", nil, &out)
	return out.Webhooks, err
}

// Webhook returns a webhook (admin only).
func (c *Client) Webhook(ctx context.Context, id string) (holdfast.Webhook, error) {
	var out holdfast.Webhook
	err := c.do(ctx, "GET", "/v1/webhooks/"+esc(id), nil, &out)
	return out, err
}

// UpdateWebhook changes a webhook (admin only): nil fields stay.
func (c *Client) UpdateWebhook(ctx context.Context, id string, p holdfast.WebhookPatch) (holdfast.Webhook, error) {
	body := map[string]any{}
	if p.URL != nil {
		body["url"] = *p.URL
	}
	if p.Events != nil {
		body["events"] = *p.Events
	}
	if p.Description != nil {
		body["description"] = *p.Description
	}
	if p.Enabled != nil {
		body["enabled"] = *p.Enabled
	}
	var out holdfast.Webhook
	err := c.do(ctx, "PATCH", "/v1/webhooks/"+esc(id), body, &out)
	return out, err
}

// DeleteWebhook deletes a webhook and its deliveries (admin only).
func (c *Client) DeleteWebhook(ctx context.Context, id string) (holdfast.Webhook, error) {
	var out holdfast.Webhook
	err := c.do(ctx, "DELETE", "/v1/webhooks/"+esc(id), nil, &out)
	return out, err
}

// Deliveries lists a webhook's deliveries, newest first (admin only).
func (c *Client) Deliveries(ctx context.Context, webhook string, status holdfast.DeliveryStatus, before string, limit int) ([]holdfast.Delivery, error) {
	q := url.Values{}
	if status != "" {
		q.Set("status", string(status))
	}
	if before != "" {
		q.Set("before", before)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out struct {
		Deliveries []holdfast.Delivery `json:"deliveries"`
	}
	err := c.do(ctx, "GET", "/v1/webhooks/"+esc(webhook)+"/deliveries?"+q.Encode(), nil, &out)
	return out.Deliveries, err
}

// RetryDelivery sends a delivery again, with a fresh schedule (admin only).
func (c *Client) RetryDelivery(ctx context.Context, webhook, delivery string) (holdfast.Delivery, error) {
	var out holdfast.Delivery
	err := c.do(ctx, "POST", "/v1/webhooks/"+esc(webhook)+"/deliveries/"+esc(delivery)+"/retry", map[string]any{}, &out)
	return out, err
}

// CreateRoom is POST /v1/rooms (admin).
func (c *Client) CreateRoom(ctx context.Context, r holdfast.Room) (holdfast.Room, error) {
	var out holdfast.Room
	err := c.do(ctx, "POST", "/v1/rooms", map[string]any{"id": r.ID, "pools": r.Pools, "groups": r.Groups, "opens_at": r.OpensAt,
		"admit_per_second": r.AdmitPerSecond, "admit_ttl_seconds": r.AdmitTTLSeconds, "max_inside": r.MaxInside, "max_per_key": r.MaxPerKey,
		"max_units_per_admission": r.MaxUnitsPerAdmission, "admit": r.Admit}, &out)
	return out, err
}

// Room is GET /v1/rooms/{id}.
func (c *Client) Room(ctx context.Context, id string) (holdfast.Room, error) {
	var out holdfast.Room
	err := c.do(ctx, "GET", "/v1/rooms/"+esc(id), nil, &out)
	return out, err
}

// JoinRoom is POST /v1/rooms/{id}/join: a place for holder (this key's).
func (c *Client) JoinRoom(ctx context.Context, room, holder, _ string) (holdfast.RoomTicket, error) {
	var out holdfast.RoomTicket
	err := c.do(ctx, "POST", "/v1/rooms/"+esc(room)+"/join", map[string]string{"holder": holder}, &out)
	return out, err
}

// RoomTicket is GET /v1/rooms/{id}/tickets/{ticket}.
func (c *Client) RoomTicket(ctx context.Context, room, ticket string) (holdfast.RoomTicket, error) {
	var out holdfast.RoomTicket
	err := c.do(ctx, "GET", "/v1/rooms/"+esc(room)+"/tickets/"+esc(ticket), nil, &out)
	return out, err
}

// RoomDraw is GET /v1/rooms/{id}/draw: the published draw of a room that
// has opened (with every ticket's id for the admin key).
func (c *Client) RoomDraw(ctx context.Context, room string) (holdfast.RoomDraw, error) {
	var out holdfast.RoomDraw
	err := c.do(ctx, "GET", "/v1/rooms/"+esc(room)+"/draw", nil, &out)
	return out, err
}

// JoinWaitlist is POST /v1/pools/{id}/waitlist: a place for r.Holder
// (this key's; r.Owner and r.QuotaKey come from the key).
func (c *Client) JoinWaitlist(ctx context.Context, r holdfast.WaitlistRequest) (holdfast.WaitlistEntry, error) {
	var out holdfast.WaitlistEntry
	body := map[string]any{"holder": r.Holder, "quantity": r.Quantity}
	path := "/v1/pools/" + esc(r.Pool) + "/waitlist"
	if r.Group != "" {
		body = map[string]any{"holder": r.Holder, "any": r.Any, "together": r.Together}
		path = "/v1/groups/" + esc(r.Group) + "/waitlist"
	}
	if r.Admission != "" {
		body["admission"] = r.Admission
	}
	if r.Ticket != "" {
		body["ticket"] = r.Ticket
	}
	err := c.do(ctx, "POST", path, body, &out)
	return out, err
}

// WaitlistEntry is GET /v1/pools/{id}/waitlist/{entry}.
func (c *Client) WaitlistEntry(ctx context.Context, pool, id string) (holdfast.WaitlistEntry, error) {
	var out holdfast.WaitlistEntry
	err := c.do(ctx, "GET", "/v1/pools/"+esc(pool)+"/waitlist/"+esc(id), nil, &out)
	return out, err
}

// Waitlist is GET /v1/pools/{id}/waitlist (admin).
func (c *Client) Waitlist(ctx context.Context, pool string) ([]holdfast.WaitlistEntry, error) {
	var out struct {
		Entries []holdfast.WaitlistEntry `json:"entries"`
	}
	err := c.do(ctx, "GET", "/v1/pools/"+esc(pool)+"/waitlist", nil, &out)
	return out.Entries, err
}

// LeaveWaitlist is DELETE /v1/pools/{id}/waitlist/{entry}.
func (c *Client) LeaveWaitlist(ctx context.Context, pool, id, _ string) (holdfast.WaitlistEntry, error) {
	var out holdfast.WaitlistEntry
	err := c.do(ctx, "DELETE", "/v1/pools/"+esc(pool)+"/waitlist/"+esc(id), nil, &out)
	return out, err
}

// GroupWaitlist is GET /v1/groups/{id}/waitlist (admin).
func (c *Client) GroupWaitlist(ctx context.Context, group string) ([]holdfast.WaitlistEntry, error) {
	var out struct {
		Entries []holdfast.WaitlistEntry `json:"entries"`
	}
	err := c.do(ctx, "GET", "/v1/groups/"+esc(group)+"/waitlist", nil, &out)
	return out.Entries, err
}

// GroupWaitlistEntry is GET /v1/groups/{id}/waitlist/{entry}.
func (c *Client) GroupWaitlistEntry(ctx context.Context, group, id string) (holdfast.WaitlistEntry, error) {
	var out holdfast.WaitlistEntry
	err := c.do(ctx, "GET", "/v1/groups/"+esc(group)+"/waitlist/"+esc(id), nil, &out)
	return out, err
}

// LeaveGroupWaitlist is DELETE /v1/groups/{id}/waitlist/{entry}.
func (c *Client) LeaveGroupWaitlist(ctx context.Context, group, id, _ string) (holdfast.WaitlistEntry, error) {
	var out holdfast.WaitlistEntry
	err := c.do(ctx, "DELETE", "/v1/groups/"+esc(group)+"/waitlist/"+esc(id), nil, &out)
	return out, err
}

// Capabilities: of the optional contracts, the API serves layouts.
func (c *Client) Capabilities() []holdfast.Capability {
	return []holdfast.Capability{holdfast.CapLayouts}
}
