package chaos

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast"
	hfhttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/webhook/signature"
)

// flakyReceiver is a webhook endpoint as bad as real ones get: it drops
// connections, answers late (past the servers' timeout) and fails, at
// random; it verifies every call it does answer, and records which
// events it acknowledged.
type flakyReceiver struct {
	srv    *httptest.Server
	secret string

	mu       sync.Mutex
	rng      *rand.Rand
	acked    map[string]int // webhook-id → 2xx answers given
	calls    int
	dropped  int
	delayed  int
	failed   int
	badCalls []string
}

func newFlakyReceiver() *flakyReceiver {
	r := &flakyReceiver{acked: map[string]int{}, rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	return r
}

func (r *flakyReceiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	r.mu.Lock()
	r.calls++
	dice := r.rng.IntN(100)
	secret := r.secret
	if err == nil {
		if verr := signature.Verify(secret, req.Header, body, time.Now()); verr != nil {
			r.badCalls = append(r.badCalls, verr.Error())
		}
	}
	r.mu.Unlock()
	switch {
	case dice < 15: // the connection drops before an answer
		r.count(&r.dropped)
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	case dice < 30: // too slow: past the server's timeout (1 s)
		r.count(&r.delayed)
		select {
		case <-time.After(1500 * time.Millisecond):
		case <-req.Context().Done():
		}
		w.WriteHeader(http.StatusOK) // too late to count
		return
	case dice < 45:
		r.count(&r.failed)
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	r.mu.Lock()
	r.acked[req.Header.Get("webhook-id")]++
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (r *flakyReceiver) count(n *int) {
	r.mu.Lock()
	*n++
	r.mu.Unlock()
}

// webhookArgs are the servers' flags for the webhook scenario: a short
// timeout and a retry schedule of seconds, so the storm's deliveries
// finish within the test. The receiver fails 45 % of calls: 13 attempts
// all failing (0.45^13, about 3e-5) happened to one of ~20,000 events in
// a CI run, so the schedule allows 25 (0.45^25, about 2e-9 per event,
// within 45 s).
var webhookArgs = []string{"--webhook-allow-private", "--webhook-timeout", "1s", "--webhook-max-per-endpoint", "32", "--webhook-max-in-flight", "32",
	"--webhook-retry-schedule", "200ms,500ms,1s,1s" + strings.Repeat(",2s", 20)}

// registerWebhook registers the receiver for every event and returns the
// newest event's seq at that moment: every later event must be delivered.
func (h *harness) registerWebhook(ctx context.Context, r *flakyReceiver, conn *pgx.Conn) int64 {
	c := hfhttp.NewClient(h.instances[0].url(), adminKey)
	w, err := c.CreateWebhook(ctx, holdfast.Webhook{URL: r.srv.URL + "/hooks", Description: "chaos receiver"})
	if err != nil {
		h.t.Fatalf("registering the webhook: %v", err)
	}
	r.mu.Lock()
	r.secret = w.Secret
	r.mu.Unlock()
	var from int64
	if err := conn.QueryRow(ctx, `SELECT COALESCE(MAX(seq), 0) FROM events`).Scan(&from); err != nil {
		h.t.Fatal(err)
	}
	return from
}

// checkWebhooks waits for the deliveries to settle, then checks: every
// event after the webhook's registration has exactly one delivery row,
// each succeeded, and the receiver acknowledged each (at least once: a
// server killed mid-call sends it again); the table agrees with what the
// receiver saw.
func checkWebhooks(ctx context.Context, conn *pgx.Conn, r *flakyReceiver, from int64) (bad []string, summary string) {
	deadline := time.Now().Add(2 * time.Minute)
	var pending int64
	for {
		if err := conn.QueryRow(ctx, `SELECT
			(SELECT COUNT(*) FROM events e WHERE e.seq > $1 AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_seq = e.seq))
			+ (SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending')`, from).Scan(&pending); err != nil {
			return []string{err.Error()}, ""
		}
		if pending == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if pending > 0 {
		bad = append(bad, fmt.Sprintf("webhooks: %d events still undelivered 2 minutes after the storm", pending))
	}
	var events, rows, failed int64
	if err := conn.QueryRow(ctx, `SELECT (SELECT COUNT(*) FROM events WHERE seq > $1),
		(SELECT COUNT(*) FROM webhook_deliveries), (SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'failed')`, from).Scan(&events, &rows, &failed); err != nil {
		return append(bad, err.Error()), ""
	}
	if rows != events {
		bad = append(bad, fmt.Sprintf("webhooks: %d delivery rows for %d events", rows, events))
	}
	if failed > 0 {
		bad = append(bad, fmt.Sprintf("webhooks: %d deliveries failed for good", failed))
	}
	succeeded, err := collectStrings(ctx, conn, `SELECT 'evt_' || event_seq FROM webhook_deliveries WHERE status = 'succeeded'`)
	if err != nil {
		return append(bad, err.Error()), ""
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	dup := 0
	for _, id := range succeeded {
		switch n := r.acked[id]; {
		case n == 0:
			bad = append(bad, fmt.Sprintf("webhooks: %s recorded succeeded but the receiver never acknowledged it", id))
		case n > 1:
			dup += n - 1
		}
	}
	for id := range r.acked {
		seq, _ := strconv.ParseInt(strings.TrimPrefix(id, "evt_"), 10, 64)
		if seq <= from {
			bad = append(bad, fmt.Sprintf("webhooks: %s, from before the registration, was sent", id))
		}
	}
	if len(r.badCalls) > 0 {
		bad = append(bad, fmt.Sprintf("webhooks: %d calls failed verification, e.g. %s", len(r.badCalls), r.badCalls[0]))
	}
	if len(bad) > 10 {
		bad = append(bad[:10], fmt.Sprintf("… and %d more", len(bad)-10))
	}
	summary = fmt.Sprintf("webhooks: %d events, %d calls (%d dropped, %d too slow, %d 500s), %d recorded succeeded, %d acknowledged more than once",
		events, r.calls, r.dropped, r.delayed, r.failed, len(succeeded), dup)
	return bad, summary
}

func collectStrings(ctx context.Context, conn *pgx.Conn, sql string) ([]string, error) {
	rows, err := conn.Query(ctx, sql)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
