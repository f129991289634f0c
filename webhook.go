package holdfast

import (
	"context"
	"encoding/json"
	"net/url"
	"slices"
	"time"
)

// Webhook is an endpoint that receives the outbox's events, signed, at
// least once and in order per hold (package webhook delivers them).
type Webhook struct {
	ID  string `json:"id"`
	URL string `json:"url"`
	// Events are the event types sent; empty sends every type.
	Events      []EventType `json:"events"`
	Description string      `json:"description"`
	// Enabled is false while the endpoint is disabled: nothing is sent to
	// it and no event is queued for it (events from while it was disabled
	// stay in the feed, GET /v1/events).
	Enabled   bool      `json:"enabled"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// Secret signs every delivery ("whsec_" and base64). It is stored,
	// because signing needs it, but no read ever shows it: only the answer
	// that creates the webhook.
	Secret string `json:"-"`
}

// Wants reports whether the webhook is sent events of type t.
func (w Webhook) Wants(t EventType) bool {
	if len(w.Events) == 0 {
		return true
	}
	for _, e := range w.Events {
		if e == t {
			return true
		}
	}
	return false
}

// WebhookPatch changes a webhook: nil fields stay as they are.
type WebhookPatch struct {
	URL         *string
	Events      *[]EventType
	Description *string
	Enabled     *bool
}

// DeliveryStatus is where one event's delivery to one webhook stands.
type DeliveryStatus string

const (
	// DeliveryPending is waiting for its next attempt, or in flight.
	DeliveryPending DeliveryStatus = "pending"
	// DeliverySucceeded got a 2xx answer in time.
	DeliverySucceeded DeliveryStatus = "succeeded"
	// DeliveryFailed failed every attempt of its retry schedule.
	DeliveryFailed DeliveryStatus = "failed"
)

// Delivery is one event on its way to one webhook.
type Delivery struct {
	// ID is the event's id ("evt_" and its seq), unique within the webhook.
	ID      string `json:"id"`
	Webhook string `json:"webhook"`
	// MessageID is the webhook-id header: the event's id, the same on
	// every attempt (and equal to ID), for a receiver to drop duplicates by.
	MessageID string         `json:"message_id"`
	EventSeq  int64          `json:"event_seq"`
	EventType EventType      `json:"event_type"`
	Status    DeliveryStatus `json:"status"`
	// Attempts counts every attempt made; LastStatusCode and LastError
	// say how the last one went (0 and "" before the first).
	Attempts       int    `json:"attempts"`
	LastStatusCode int    `json:"last_status_code"`
	LastError      string `json:"last_error"`
	// NextAttemptAt is when a pending delivery is tried next (nil once it
	// succeeded or failed).
	NextAttemptAt *time.Time `json:"next_attempt_at"`
	CreatedAt     time.Time  `json:"created_at"`
	UpdatedAt     time.Time  `json:"updated_at"`

	// What the dispatcher needs to send it, set by ClaimDeliveries only:
	// the signed body, where to send it and with what secret, and the
	// attempt in the current retry schedule (1 for the first).
	Body   json.RawMessage `json:"-"`
	URL    string          `json:"-"`
	Secret string          `json:"-"`
	Try    int             `json:"-"`
	Lease  string          `json:"-"`
}

// DeliveryClaim asks for deliveries that are due to be sent: those whose
// next attempt is at or before Now (the dispatcher's clock).
type DeliveryClaim struct {
	// Lease identifies the claiming dispatcher; the deliveries are its
	// for For, by the database's clock, after which another may claim them.
	Lease string
	Now   time.Time
	For   time.Duration
	// Limit bounds the deliveries claimed; PerWebhook bounds those in
	// flight to one webhook, counted over every server. A webhook with
	// none in flight anywhere may have one even past Limit: slow
	// endpoints filling a server's slots never starve the others.
	Limit, PerWebhook int
}

// DeliveryResult is how one attempt went.
type DeliveryResult struct {
	Webhook, ID, Lease string
	Now                time.Time
	OK                 bool
	StatusCode         int
	Error              string
	// Next is when to try again after a failure; zero marks the
	// delivery failed for good.
	Next time.Time
}

// DeliveryBacklog measures the queue.
type DeliveryBacklog struct {
	Pending int64
	// Oldest is the age of the oldest pending delivery (0 when none).
	Oldest time.Duration
}

// WebhookStore keeps webhooks and their deliveries.
type WebhookStore interface {
	// CreateWebhook stores a webhook (ID and Secret set by the caller),
	// starting from the events written after it. ErrInvalid; ErrConflict.
	CreateWebhook(ctx context.Context, w Webhook) (Webhook, error)
	// Webhook returns a webhook. ErrNotFound.
	Webhook(ctx context.Context, id string) (Webhook, error)
	// Webhooks lists every webhook, oldest first.
	Webhooks(ctx context.Context) ([]Webhook, error)
	// UpdateWebhook applies p. Enabling a disabled webhook starts it
	// from the events written after. ErrNotFound; ErrInvalid.
	UpdateWebhook(ctx context.Context, id string, p WebhookPatch) (Webhook, error)
	// DeleteWebhook deletes a webhook and its deliveries. ErrNotFound.
	DeleteWebhook(ctx context.Context, id string) (Webhook, error)
	// Deliveries lists a webhook's deliveries, newest first, up to limit,
	// those with status only when status is not "", and before the
	// delivery id before when it is not "" (the cursor of the next page).
	// ErrNotFound for the webhook; ErrInvalid.
	Deliveries(ctx context.Context, webhook string, status DeliveryStatus, before string, limit int) ([]Delivery, error)
	// RetryDelivery sends a delivery again as soon as possible, with a
	// fresh retry schedule: a failed one, or a succeeded one (a receiver
	// that lost it). A delivery in flight is left to finish. ErrNotFound.
	RetryDelivery(ctx context.Context, webhook, delivery string) (Delivery, error)
}

// EventTypes lists every event type the outbox writes.
var EventTypes = []EventType{
	EventPoolCreated, EventPoolChanged, EventGroupCreated, EventGroupChanged, EventUnitsAdded,
	EventHoldCreated, EventHoldConfirmed, EventHoldReleased, EventHoldExtended,
	EventHoldExpired, EventHoldCancelled, EventHoldCompleted, EventHoldTransferred, EventHoldExchanged,
	EventAllocationChanged, EventAllocationReleased, EventPaymentRefundDue, EventPaymentRefunded,
	EventWaitlistOffered, EventWaitlistExpired, EventWaitlistCancelled,
}

// MaxURLLen bounds a webhook's URL.
const MaxURLLen = 2048

// Validate checks a webhook to be stored: its id, an absolute http(s) URL
// with a host and no credentials (they would show in every list), known
// event types without repeats, a short description. Whether the URL may
// name a private address is the dispatcher's rule (webhook.CheckURL).
func (w Webhook) Validate() error {
	if err := ValidateID("webhook", w.ID); err != nil {
		return err
	}
	if err := ValidateWebhookURL(w.URL); err != nil {
		return err
	}
	seen := map[EventType]bool{}
	for _, e := range w.Events {
		if !slices.Contains(EventTypes, e) {
			return Errorf(CodeInvalid, "events: %q is not an event type (one of %v)", e, EventTypes)
		}
		if seen[e] {
			return Errorf(CodeInvalid, "events: %q is named twice", e)
		}
		seen[e] = true
	}
	if w.Secret == "" {
		return Errorf(CodeInvalid, "a webhook needs a signing secret")
	}
	return validateText("description", w.Description, MaxNameLen, false)
}

// ValidateWebhookURL checks a webhook URL's form.
func ValidateWebhookURL(s string) error {
	if s == "" {
		return Errorf(CodeInvalid, "url is required")
	}
	if len(s) > MaxURLLen {
		return Errorf(CodeInvalid, "url is longer than %d characters", MaxURLLen)
	}
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() {
		return Errorf(CodeInvalid, "url must be an absolute http or https URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return Errorf(CodeInvalid, "url must be http or https, not %q", u.Scheme)
	}
	if u.Hostname() == "" {
		return Errorf(CodeInvalid, "url must name a host")
	}
	if u.User != nil {
		return Errorf(CodeInvalid, "url must not carry credentials: the payload is signed instead")
	}
	if u.Fragment != "" {
		return Errorf(CodeInvalid, "url must not have a fragment")
	}
	return nil
}
