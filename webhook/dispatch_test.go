package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/internal/rawsql"
	"github.com/holdfast/holdfast/internal/testrig/pgtest"
	"github.com/holdfast/holdfast/postgres"
	"github.com/holdfast/holdfast/sqlite"
	"github.com/holdfast/holdfast/webhook"
	"github.com/holdfast/holdfast/webhook/signature"
)

var pg *pgtest.DB

func TestMain(m *testing.M) { pgtest.Main(m, &pg) }

// store is a backend with its delivery queue.
type store interface {
	holdfast.Store
	webhook.Queue
}

var (
	_ webhook.Queue = (*sqlite.Store)(nil)
	_ webhook.Queue = (*postgres.Store)(nil)
)

// backends runs f on SQLite and on PostgreSQL; open opens the test's
// database (again, for a second server).
func backends(t *testing.T, f func(t *testing.T, open func(t *testing.T) store)) {
	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "holdfast.db")
		f(t, func(t *testing.T) store {
			s, err := sqlite.Open(context.Background(), path, sqlite.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		})
	})
	t.Run("postgres", func(t *testing.T) {
		url := pg.Migrated(t)
		f(t, func(t *testing.T) store {
			s, err := postgres.Open(context.Background(), url, postgres.Options{MaxConns: 8})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		})
	})
}

// clock is a test clock: time moves when the test says.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// received is one call a receiver got.
type received struct {
	id, typ, hold string
	seq           int64
	body          []byte
}

// receiver is a real HTTP endpoint that verifies every call and answers
// what answer says for the n-th call with that webhook-id (1 for the first).
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	secret string
	answer func(r received, n int) int
	// now is the receiver's clock, which the signatures' timestamps
	// must be near (the test's clock: the dispatcher signs with it).
	now func() time.Time

	mu     sync.Mutex
	got    []received
	counts map[string]int
	notify chan struct{}
}

func newReceiver(t *testing.T, answer func(r received, n int) int) *receiver {
	rc := &receiver{t: t, answer: answer, counts: map[string]int{}, notify: make(chan struct{}, 1000), now: time.Now}
	if rc.answer == nil {
		rc.answer = func(received, int) int { return http.StatusNoContent }
	}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if err := signature.Verify(rc.secret, r.Header, body, rc.now()); err != nil {
		rc.t.Errorf("receiver: %v", err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	var msg struct {
		Type      string         `json:"type"`
		Timestamp time.Time      `json:"timestamp"`
		Data      holdfast.Event `json:"data"`
	}
	if err := json.Unmarshal(body, &msg); err != nil || msg.Type == "" || msg.Timestamp.IsZero() || msg.Data.Seq == 0 {
		rc.t.Errorf("receiver: body %s is not {type, timestamp, data}: %v", body, err)
	}
	got := received{id: r.Header.Get("webhook-id"), typ: msg.Type, hold: msg.Data.HoldID, seq: msg.Data.Seq, body: body}
	if want := fmt.Sprintf("evt_%d", got.seq); got.id != want {
		rc.t.Errorf("receiver: webhook-id %q for event %d, want %q", got.id, got.seq, want)
	}
	rc.mu.Lock()
	rc.got = append(rc.got, got)
	rc.counts[got.id]++
	n := rc.counts[got.id]
	rc.mu.Unlock()
	status := rc.answer(got, n)
	select {
	case rc.notify <- struct{}{}:
	default:
	}
	w.WriteHeader(status)
}

func (rc *receiver) calls() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.got)
}

// register stores a webhook for the receiver.
func (rc *receiver) register(t *testing.T, s store, events ...holdfast.EventType) holdfast.Webhook {
	t.Helper()
	rc.secret = signature.NewSecret()
	w, err := s.CreateWebhook(context.Background(), holdfast.Webhook{ID: "wh_" + strings.ReplaceAll(strings.ToLower(t.Name()), "/", "_"),
		URL: rc.srv.URL + "/hooks", Events: events, Secret: rc.secret})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func newDispatcher(s store, c *clock, mod func(*webhook.Config)) *webhook.Dispatcher {
	cfg := webhook.Config{Queue: s, Clock: c.Now, AllowPrivate: true, Jitter: func(d time.Duration) time.Duration { return d }}
	if mod != nil {
		mod(&cfg)
	}
	return webhook.New(cfg)
}

// queued waits until the webhook has n deliveries queued. On PostgreSQL
// the feed shows an event only once every transaction older than it has
// ended, in the whole cluster (other test packages' too): the queue
// catches up by itself, and a test waits for it rather than assume.
func queued(t *testing.T, s store, c *clock, w string, n int) {
	t.Helper()
	for ctx := t.Context(); ; {
		if _, err := s.QueueDeliveries(ctx, c.Now(), 1000); err != nil {
			t.Fatal(err)
		}
		if got := len(deliveries(t, s, w)); got >= n {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d deliveries never queued", n)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// step runs one round of d and waits for its calls.
func step(t *testing.T, d *webhook.Dispatcher) {
	t.Helper()
	if err := d.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	d.Wait()
}

func deliveries(t *testing.T, s store, w string) []holdfast.Delivery {
	t.Helper()
	ds, err := s.Deliveries(context.Background(), w, "", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// sale makes n holds in pool "p", confirming the even ones and releasing
// the odd ones, and returns their ids.
func sale(t *testing.T, s store, n int) []string {
	t.Helper()
	ctx := context.Background()
	if _, err := s.Pool(ctx, "p"); err != nil {
		if _, err := s.CreatePool(ctx, holdfast.Pool{ID: "p", Capacity: 1000}); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	for i := range n {
		h, err := s.Hold(ctx, holdfast.HoldRequest{Holder: fmt.Sprintf("buyer-%d", i), Lines: []holdfast.Line{{Pool: "p", Quantity: 1}}})
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			_, err = s.Confirm(ctx, h.ID, "pay")
		} else {
			_, err = s.Release(ctx, h.ID)
		}
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, h.ID)
	}
	return ids
}

// Every event after registration arrives, signed, each hold's in the
// order they happened, and the deliveries table agrees.
func TestDeliversSignedInOrder(t *testing.T) {
	backends(t, func(t *testing.T, open func(*testing.T) store) {
		s := open(t)
		if _, err := s.CreatePool(context.Background(), holdfast.Pool{ID: "before", Capacity: 1}); err != nil {
			t.Fatal(err)
		}
		rc := newReceiver(t, nil)
		w := rc.register(t, s)
		holds := sale(t, s, 10)
		c := newClock()
		queued(t, s, c, w.ID, 21)
		d := newDispatcher(s, c, nil)
		for range 20 {
			step(t, d)
		}
		calls := rc.calls()
		if len(calls) != 21 { // pool.created and 10 × (hold.created, then confirmed or released)
			t.Fatalf("received %d calls, want 21: %v", len(calls), calls)
		}
		perHold := map[string][]string{}
		lastSeq := map[string]int64{}
		for _, c := range calls {
			if c.typ == "pool.created" && strings.Contains(string(c.body), `"before"`) {
				t.Errorf("an event from before the webhook was sent: %s", c.body)
			}
			if c.hold == "" {
				continue
			}
			if c.seq <= lastSeq[c.hold] {
				t.Errorf("hold %s: event %d arrived after %d", c.hold, c.seq, lastSeq[c.hold])
			}
			lastSeq[c.hold] = c.seq
			perHold[c.hold] = append(perHold[c.hold], c.typ)
		}
		for i, h := range holds {
			want := []string{"hold.created", "hold.confirmed"}
			if i%2 == 1 {
				want[1] = "hold.released"
			}
			if !slices.Equal(perHold[h], want) {
				t.Errorf("hold %s: received %v, want %v", h, perHold[h], want)
			}
		}
		ds := deliveries(t, s, w.ID)
		if len(ds) != 21 {
			t.Fatalf("%d deliveries recorded, want 21", len(ds))
		}
		for _, dl := range ds {
			if dl.Status != holdfast.DeliverySucceeded || dl.Attempts != 1 || dl.LastStatusCode != 204 || dl.NextAttemptAt != nil {
				t.Errorf("delivery %+v, want succeeded at the first attempt", dl)
			}
		}
	})
}

// A dead endpoint is retried on the schedule, never early, and failed
// when the schedule runs out; the metrics say so.
func TestDeadEndpointFailsAfterTheSchedule(t *testing.T) {
	backends(t, func(t *testing.T, open func(*testing.T) store) {
		s := open(t)
		rc := newReceiver(t, func(received, int) int { return http.StatusInternalServerError })
		w := rc.register(t, s, holdfast.EventPoolCreated)
		if _, err := s.CreatePool(context.Background(), holdfast.Pool{ID: "p", Capacity: 1}); err != nil {
			t.Fatal(err)
		}
		c := newClock()
		rc.now = c.Now
		reg := prometheus.NewRegistry()
		d := newDispatcher(s, c, func(cfg *webhook.Config) { cfg.Registerer = reg })
		queued(t, s, c, w.ID, 1)
		step(t, d)
		for i, wait := range webhook.DefaultSchedule {
			ds := deliveries(t, s, w.ID)
			if len(ds) != 1 || ds[0].Attempts != i+1 || ds[0].Status != holdfast.DeliveryPending || ds[0].LastStatusCode != 500 ||
				ds[0].LastError != "answered 500" || ds[0].NextAttemptAt == nil {
				t.Fatalf("after attempt %d: %+v", i+1, ds)
			}
			if want := c.Now().Add(wait).UnixMilli(); ds[0].NextAttemptAt.UnixMilli() != want {
				t.Fatalf("after attempt %d: next attempt at %v, want %v later", i+1, ds[0].NextAttemptAt, wait)
			}
			c.Add(wait - time.Millisecond)
			step(t, d)
			if n := len(rc.calls()); n != i+1 {
				t.Fatalf("attempt %d was made before its time (%d calls)", i+2, n)
			}
			c.Add(time.Millisecond)
			step(t, d)
			if n := len(rc.calls()); n != i+2 {
				t.Fatalf("attempt %d was not made when due (%d calls)", i+2, n)
			}
		}
		ds := deliveries(t, s, w.ID)
		if ds[0].Status != holdfast.DeliveryFailed || ds[0].Attempts != len(webhook.DefaultSchedule)+1 || ds[0].NextAttemptAt != nil {
			t.Fatalf("after the schedule: %+v, want failed", ds[0])
		}
		c.Add(48 * time.Hour)
		step(t, d)
		if n := len(rc.calls()); n != len(webhook.DefaultSchedule)+1 {
			t.Fatalf("a failed delivery was tried again (%d calls)", n)
		}
		if total := webhook.DefaultSchedule; sum(total) < 20*time.Hour || sum(total) > 24*time.Hour {
			t.Errorf("the schedule spans %v, want about a day", sum(total))
		}
		for result, want := range map[string]float64{"pending": float64(len(webhook.DefaultSchedule)), "failed": 1, "succeeded": 0} {
			if got := metric(t, reg, "holdfast_webhook_deliveries_total", result); got != want {
				t.Errorf("holdfast_webhook_deliveries_total{result=%q} = %v, want %v", result, got, want)
			}
		}

		// A failed delivery can be sent again by hand, with a fresh
		// schedule; the receiver sees the same webhook-id.
		if _, err := s.RetryDelivery(context.Background(), w.ID, ds[0].ID); err != nil {
			t.Fatal(err)
		}
		rc.answer = func(received, int) int { return http.StatusOK }
		step(t, d)
		calls := rc.calls()
		if last := calls[len(calls)-1]; last.id != ds[0].ID {
			t.Fatalf("the retry sent %q, want %q", last.id, ds[0].ID)
		}
		if got := deliveries(t, s, w.ID)[0]; got.Status != holdfast.DeliverySucceeded || got.Attempts != len(webhook.DefaultSchedule)+2 {
			t.Fatalf("after a retry by hand: %+v", got)
		}
	})
}

func sum(ds []time.Duration) (t time.Duration) {
	for _, d := range ds {
		t += d
	}
	return t
}

// metric reads a counter with the given label value (0 if absent).
func metric(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if mf.GetName() == name && l.GetValue() == label {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// A failing event holds back the later events of its own hold, not those
// of other holds; once it succeeds the rest follow in order. A receiver
// that drops duplicates by webhook-id sees each event once.
func TestOrderPerHoldWithoutHeadOfLineBlocking(t *testing.T) {
	backends(t, func(t *testing.T, open func(*testing.T) store) {
		s := open(t)
		var first string
		var mu sync.Mutex
		rc := newReceiver(t, func(r received, n int) int {
			mu.Lock()
			defer mu.Unlock()
			if r.typ == "hold.created" && (first == "" || first == r.hold) && n == 1 {
				first = r.hold
				return http.StatusServiceUnavailable
			}
			return http.StatusOK
		})
		w := rc.register(t, s, holdfast.EventHoldCreated, holdfast.EventHoldConfirmed, holdfast.EventHoldReleased)
		holds := sale(t, s, 4)
		c := newClock()
		queued(t, s, c, w.ID, 8)
		d := newDispatcher(s, c, nil)
		for range 10 {
			step(t, d)
		}
		byHold := func() map[string][]string {
			out := map[string][]string{}
			for _, r := range rc.calls() {
				out[r.hold] = append(out[r.hold], r.typ)
			}
			return out
		}
		got := byHold()
		mu.Lock()
		failing := first
		mu.Unlock()
		if got[failing][0] != "hold.created" || len(got[failing]) != 1 {
			t.Fatalf("the failing hold got %v, want only its failed hold.created", got[failing])
		}
		for _, h := range holds {
			if h != failing && len(got[h]) != 2 {
				t.Fatalf("hold %s got %v while another hold's event failed: blocked", h, got[h])
			}
		}
		c.Add(webhook.DefaultSchedule[0])
		for range 5 {
			step(t, d)
		}
		want := []string{"hold.created", "hold.created", "hold.confirmed"}
		if slices.Index(holds, failing)%2 == 1 {
			want[2] = "hold.released"
		}
		if got := byHold()[failing]; !slices.Equal(got, want) {
			t.Fatalf("the failing hold got %v, want %v (its created, the retry, then the rest)", got, want)
		}
		unique := map[string]bool{}
		for _, r := range rc.calls() {
			unique[r.id] = true
		}
		if len(unique) != 8 {
			t.Fatalf("%d distinct webhook-ids, want 8 events", len(unique))
		}
		for _, dl := range deliveries(t, s, w.ID) {
			if dl.Status != holdfast.DeliverySucceeded {
				t.Errorf("delivery %+v not succeeded", dl)
			}
		}
	})
}

// A slow endpoint holds at most its share of calls, and the other
// endpoint gets every event meanwhile, even when the slow one holds all
// of the server's slots.
func TestSlowEndpointIsBounded(t *testing.T) {
	backends(t, func(t *testing.T, open func(*testing.T) store) {
		s := open(t)
		release := make(chan struct{})
		var mu sync.Mutex
		inFlight, most := 0, 0
		slow := newReceiver(t, func(received, int) int {
			mu.Lock()
			inFlight++
			most = max(most, inFlight)
			mu.Unlock()
			<-release
			mu.Lock()
			inFlight--
			mu.Unlock()
			return http.StatusOK
		})
		fast := newReceiver(t, nil)
		slow.register(t, s)
		fast.secret = signature.NewSecret()
		if _, err := s.CreateWebhook(context.Background(), holdfast.Webhook{ID: "wh_fast", URL: fast.srv.URL, Secret: fast.secret}); err != nil {
			t.Fatal(err)
		}
		sale(t, s, 10)
		// The slow endpoint takes every slot this server has: the other
		// still gets its one.
		d := newDispatcher(s, newClock(), func(cfg *webhook.Config) { cfg.MaxPerWebhook, cfg.MaxInFlight = 2, 2 })
		deadline := time.After(20 * time.Second)
		for len(fast.calls()) < 21 {
			if err := d.Step(context.Background()); err != nil {
				t.Fatal(err)
			}
			select {
			case <-fast.notify:
			case <-time.After(50 * time.Millisecond):
			case <-deadline:
				t.Fatalf("the fast endpoint got %d of 21 events while the other was slow", len(fast.calls()))
			}
		}
		mu.Lock()
		if most != 2 {
			t.Errorf("%d calls in flight to the slow endpoint at most, want its bound, 2", most)
		}
		mu.Unlock()
		close(release)
		d.Wait()
	})
}

// A call that gets no answer within the timeout is a failed attempt.
func TestTimeout(t *testing.T) {
	backends(t, func(t *testing.T, open func(*testing.T) store) {
		s := open(t)
		release := make(chan struct{})
		rc := newReceiver(t, func(received, int) int { <-release; return http.StatusOK })
		t.Cleanup(func() { close(release) })
		w := rc.register(t, s, holdfast.EventPoolCreated)
		if _, err := s.CreatePool(context.Background(), holdfast.Pool{ID: "p", Capacity: 1}); err != nil {
			t.Fatal(err)
		}
		reg := prometheus.NewRegistry()
		c := newClock()
		queued(t, s, c, w.ID, 1)
		step(t, newDispatcher(s, c, func(cfg *webhook.Config) { cfg.Timeout, cfg.Registerer = 200*time.Millisecond, reg }))
		dl := deliveries(t, s, w.ID)[0]
		if dl.Status != holdfast.DeliveryPending || dl.LastError != "no answer within 200ms" || dl.LastStatusCode != 0 {
			t.Fatalf("delivery %+v, want a timed-out attempt", dl)
		}
		if n := metric(t, reg, "holdfast_webhook_attempts_total", "timeout"); n != 1 {
			t.Fatalf("holdfast_webhook_attempts_total{outcome=timeout} = %v, want 1", n)
		}
	})
}

// A disabled webhook is sent nothing and queues nothing; enabled again it
// gets what happens from then on. A delivery can be sent again by hand.
func TestDisableEnableRedeliver(t *testing.T) {
	backends(t, func(t *testing.T, open func(*testing.T) store) {
		ctx := context.Background()
		s := open(t)
		rc := newReceiver(t, nil)
		w := rc.register(t, s, holdfast.EventPoolCreated)
		c := newClock()
		d := newDispatcher(s, c, nil)
		off, on := false, true
		if _, err := s.UpdateWebhook(ctx, w.ID, holdfast.WebhookPatch{Enabled: &off}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.CreatePool(ctx, holdfast.Pool{ID: "while-off", Capacity: 1}); err != nil {
			t.Fatal(err)
		}
		step(t, d)
		// Enabling starts after the newest event the feed shows: wait
		// for it to show the one written while disabled.
		for seen := false; !seen; {
			events, _, err := s.Events(t.Context(), "", 1000)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range events {
				seen = seen || e.Subject == "while-off"
			}
		}
		if _, err := s.UpdateWebhook(ctx, w.ID, holdfast.WebhookPatch{Enabled: &on}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.CreatePool(ctx, holdfast.Pool{ID: "after", Capacity: 1}); err != nil {
			t.Fatal(err)
		}
		queued(t, s, c, w.ID, 1)
		step(t, d)
		calls := rc.calls()
		if len(calls) != 1 || !strings.Contains(string(calls[0].body), `"after"`) {
			t.Fatalf("received %d calls (%v), want only the pool made after enabling", len(calls), calls)
		}
		dl, err := s.RetryDelivery(ctx, w.ID, calls[0].id)
		if err != nil || dl.Status != holdfast.DeliveryPending {
			t.Fatalf("RetryDelivery = %+v, %v", dl, err)
		}
		step(t, d)
		if calls := rc.calls(); len(calls) != 2 || calls[1].id != calls[0].id {
			t.Fatalf("redelivery: %v, want the same webhook-id twice", calls)
		}
		if _, err := s.RetryDelivery(ctx, w.ID, "evt_999999"); holdfast.ErrorCode(err) != holdfast.CodeNotFound {
			t.Fatalf("RetryDelivery of no delivery = %v, want not_found", err)
		}
		if _, err := s.DeleteWebhook(ctx, w.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Deliveries(ctx, w.ID, "", "", 0); holdfast.ErrorCode(err) != holdfast.CodeNotFound {
			t.Fatalf("deliveries of a deleted webhook: %v", err)
		}
	})
}

// Private destinations are refused at dial time unless allowed, and a
// redirect is an answer, never followed.
func TestDestinationsAreGuarded(t *testing.T) {
	backends(t, func(t *testing.T, open func(*testing.T) store) {
		s := open(t)
		rc := newReceiver(t, nil)
		w := rc.register(t, s, holdfast.EventPoolCreated)
		if _, err := s.CreatePool(context.Background(), holdfast.Pool{ID: "p", Capacity: 1}); err != nil {
			t.Fatal(err)
		}
		c := newClock()
		queued(t, s, c, w.ID, 1)
		step(t, newDispatcher(s, c, func(cfg *webhook.Config) { cfg.AllowPrivate = false }))
		if n := len(rc.calls()); n != 0 {
			t.Fatalf("a loopback endpoint got %d calls with private destinations refused", n)
		}
		if dl := deliveries(t, s, w.ID)[0]; !strings.Contains(dl.LastError, "private") || dl.Attempts != 1 {
			t.Fatalf("delivery %+v, want refused as private", dl)
		}

		target := newReceiver(t, nil)
		redirect := httptest.NewServer(http.RedirectHandler(target.srv.URL, http.StatusTemporaryRedirect))
		t.Cleanup(redirect.Close)
		url := redirect.URL
		if _, err := s.UpdateWebhook(context.Background(), w.ID, holdfast.WebhookPatch{URL: &url}); err != nil {
			t.Fatal(err)
		}
		c.Add(webhook.DefaultSchedule[0])
		step(t, newDispatcher(s, c, nil))
		if n := len(target.calls()); n != 0 {
			t.Fatalf("a redirect was followed (%d calls)", n)
		}
		if dl := deliveries(t, s, w.ID)[0]; dl.LastStatusCode != http.StatusTemporaryRedirect || dl.Status != holdfast.DeliveryPending {
			t.Fatalf("delivery %+v, want a failed attempt with 307", dl)
		}
	})
}

// A server that dies mid-delivery leaves it to another after its lease;
// its late result records nothing, so one success is recorded.
func TestLeaseTakeover(t *testing.T) {
	backends(t, func(t *testing.T, open func(*testing.T) store) {
		ctx := context.Background()
		s := open(t)
		rc := newReceiver(t, nil)
		w := rc.register(t, s, holdfast.EventPoolCreated)
		if _, err := s.CreatePool(ctx, holdfast.Pool{ID: "p", Capacity: 1}); err != nil {
			t.Fatal(err)
		}
		c := newClock()
		queued(t, s, c, w.ID, 1)
		// Server A claims it, and dies before recording an outcome. The
		// lease is timed by the database's clock: no test clock moves it.
		lease := 300 * time.Millisecond
		dead, err := s.ClaimDeliveries(ctx, holdfast.DeliveryClaim{Lease: "A", Now: c.Now(), For: lease, Limit: 10, PerWebhook: 4})
		if err != nil || len(dead) != 1 {
			t.Fatalf("claim: %v, %v", dead, err)
		}
		b := newDispatcher(s, c, func(cfg *webhook.Config) { cfg.Lease = lease })
		start := time.Now()
		step(t, b)
		if n := len(rc.calls()); n != 0 && time.Since(start) < lease {
			t.Fatalf("another server sent a leased delivery (%d calls)", n)
		}
		for deadline := time.Now().Add(10 * time.Second); len(rc.calls()) == 0; {
			if time.Now().After(deadline) {
				t.Fatal("no server took the delivery over after its lease")
			}
			step(t, b)
		}
		if n := len(rc.calls()); n != 1 {
			t.Fatalf("after the lease: %d calls, want 1", n)
		}
		// A comes back from the dead with a result: it records nothing.
		if err := s.FinishDelivery(ctx, holdfast.DeliveryResult{Webhook: w.ID, ID: dead[0].ID, Lease: "A", Now: c.Now(), StatusCode: 500, Error: "late"}); err != nil {
			t.Fatal(err)
		}
		ds := deliveries(t, s, w.ID)
		if len(ds) != 1 || ds[0].Status != holdfast.DeliverySucceeded || ds[0].Attempts != 2 || ds[0].LastError != "" {
			t.Fatalf("after the takeover: %+v, want one success over two attempts", ds)
		}
	})
}

// Two servers on one database deliver one queue: every event once, none
// twice.
func TestTwoServersShareTheQueue(t *testing.T) {
	url := pg.Migrated(t)
	open := func() store {
		s, err := postgres.Open(context.Background(), url, postgres.Options{MaxConns: 8})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := open(), open()
	rc := newReceiver(t, nil)
	rc.register(t, a)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, s := range []store{a, b} {
		d := webhook.New(webhook.Config{Queue: s, AllowPrivate: true, Poll: 20 * time.Millisecond, MaxPerWebhook: 8})
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = d.Run(ctx)
		}()
	}
	if _, err := a.CreatePool(context.Background(), holdfast.Pool{ID: "p", Capacity: 1000}); err != nil {
		t.Fatal(err)
	}
	var sales sync.WaitGroup
	for _, s := range []store{a, b} {
		sales.Add(1)
		go func() {
			defer sales.Done()
			ctx := context.Background()
			for i := range 60 {
				h, err := s.Hold(ctx, holdfast.HoldRequest{Holder: fmt.Sprintf("b%d", i), Lines: []holdfast.Line{{Pool: "p", Quantity: 1}}})
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := s.Confirm(ctx, h.ID, ""); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	sales.Wait()
	const want = 1 + 2*60*2
	deadline := time.After(60 * time.Second)
	for len(rc.calls()) < want {
		select {
		case <-rc.notify:
		case <-deadline:
			t.Fatalf("%d of %d events delivered", len(rc.calls()), want)
		}
	}
	cancel()
	wg.Wait()
	seen := map[string]bool{}
	for _, r := range rc.calls() {
		if seen[r.id] {
			t.Errorf("event %s delivered twice with no server down", r.id)
		}
		seen[r.id] = true
	}
	if len(seen) != want {
		t.Fatalf("%d distinct events delivered, want %d", len(seen), want)
	}
}

// Retention keeps the events still to be sent (queued or waiting behind a
// webhook's cursor), and deletes finished deliveries as old as events.
func TestPurgeKeepsWhatIsStillToBeSent(t *testing.T) {
	backends(t, func(t *testing.T, open func(*testing.T) store) {
		ctx := context.Background()
		s := open(t)
		raw, _ := rawsql.Of(s)
		age := func() {
			t.Helper()
			for _, sql := range []string{`UPDATE events SET at = at - 864000000`, `UPDATE webhook_deliveries SET updated_at = updated_at - 864000000`} {
				if err := raw.Exec(ctx, sql); err != nil {
					t.Fatal(err)
				}
			}
		}
		rc := newReceiver(t, func(received, int) int { return http.StatusInternalServerError })
		w := rc.register(t, s, holdfast.EventPoolCreated)
		for i := range 3 {
			if _, err := s.CreatePool(ctx, holdfast.Pool{ID: fmt.Sprintf("p%d", i), Capacity: 1}); err != nil {
				t.Fatal(err)
			}
		}
		c := newClock()
		// Room for one: the first is queued, the rest wait in the feed.
		for len(deliveries(t, s, w.ID)) == 0 && t.Context().Err() == nil {
			if _, err := s.QueueDeliveries(ctx, c.Now(), 1); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.QueueDeliveries(ctx, c.Now(), 1); err != nil {
			t.Fatal(err)
		}
		if n := len(deliveries(t, s, w.ID)); n != 1 {
			t.Fatalf("%d deliveries queued with room for 1", n)
		}
		age()
		rep, err := s.Purge(ctx, holdfast.Retention{Events: 24 * time.Hour})
		if err != nil || rep.Events != 0 {
			t.Fatalf("purge with deliveries still to send: %+v, %v; want nothing purged", rep, err)
		}
		rc.answer = func(received, int) int { return http.StatusOK }
		d := newDispatcher(s, c, func(cfg *webhook.Config) { cfg.MaxQueued = 1 })
		for ctx := t.Context(); len(rc.calls()) < 3 || deliveries(t, s, w.ID)[0].Status != holdfast.DeliverySucceeded; {
			if ctx.Err() != nil {
				t.Fatal("the deliveries never finished")
			}
			step(t, d)
		}
		age()
		rep, err = s.Purge(ctx, holdfast.Retention{Events: 24 * time.Hour})
		if err != nil || rep.Events < 3 || rep.Deliveries != 3 {
			t.Fatalf("purge after every event was sent: %+v, %v; want the events and the 3 finished deliveries", rep, err)
		}
	})
}

// A webhook made while a transaction older than every event is open
// somewhere in the database (the feed then shows no event yet) still
// starts after the newest event: it is never sent the history.
func TestWebhookStartsAtThePresentUnderAnOpenTransaction(t *testing.T) {
	ctx := context.Background()
	url := pg.Migrated(t)
	s, err := postgres.Open(ctx, url, postgres.Options{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	old, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close(ctx)
	tx, err := old.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT txid_current()`); err != nil { // an xid older than the events below
		t.Fatal(err)
	}
	if _, err := s.CreatePool(ctx, holdfast.Pool{ID: "before", Capacity: 1}); err != nil {
		t.Fatal(err)
	}
	rc := newReceiver(t, nil)
	w := rc.register(t, s)
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreatePool(ctx, holdfast.Pool{ID: "after", Capacity: 1}); err != nil {
		t.Fatal(err)
	}
	queued(t, s, newClock(), w.ID, 1)
	ds := deliveries(t, s, w.ID)
	if len(ds) != 1 || ds[0].EventSeq != 2 {
		t.Fatalf("deliveries %+v, want only the event after the webhook was made", ds)
	}
}
