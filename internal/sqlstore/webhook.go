package sqlstore

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/holdfast/holdfast"
)

// Webhooks. The booking path never touches them: a webhook's deliveries
// are queued from the feed after the fact (QueueDeliveries), by whichever
// server locks the webhook's row first, and claimed with a lease
// (ClaimDeliveries), so a slow or dead endpoint costs the sale nothing.

const webhookColumns = `id, url, events, description, secret, enabled, created_at, updated_at`

func scanWebhook(r Row) (holdfast.Webhook, error) {
	var w holdfast.Webhook
	var events string
	var created, updated int64
	if err := r.Scan(&w.ID, &w.URL, &events, &w.Description, &w.Secret, &w.Enabled, &created, &updated); err != nil {
		return w, err
	}
	w.Events = []holdfast.EventType{}
	for _, e := range strings.Fields(events) {
		w.Events = append(w.Events, holdfast.EventType(e))
	}
	w.CreatedAt, w.UpdatedAt = msTime(created), msTime(updated)
	return w, nil
}

// cursorSeq is the seq a feed cursor ("xid.seq") stands after.
func cursorSeq(cursor string) int64 {
	_, seq, _ := strings.Cut(cursor, ".")
	n, _ := strconv.ParseInt(seq, 10, 64)
	return n
}

func joinEvents(events []holdfast.EventType) string {
	s := make([]string, len(events))
	for i, e := range events {
		s[i] = string(e)
	}
	return strings.Join(s, " ")
}

func webhookNotFound(id string) error {
	return holdfast.Errorf(holdfast.CodeNotFound, "webhook %q not found", id)
}

func (s *Store) CreateWebhook(ctx context.Context, w holdfast.Webhook) (holdfast.Webhook, error) {
	if w.Events == nil {
		w.Events = []holdfast.EventType{}
	}
	if err := w.Validate(); err != nil {
		return holdfast.Webhook{}, err
	}
	var out holdfast.Webhook
	err := s.db.Transact(ctx, func(tx Querier) error {
		// The webhook starts after the newest event: it is sent what
		// happens from now on, not the history.
		cursor, err := s.presentCursor(ctx, tx)
		if err != nil {
			return err
		}
		out, err = scanWebhook(tx.QueryRow(ctx, `INSERT INTO webhooks (id, url, events, description, secret, enabled, cursor, cursor_seq, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, TRUE, $6, $7, holdfast_now_ms(), holdfast_now_ms()) RETURNING `+webhookColumns,
			w.ID, w.URL, joinEvents(w.Events), w.Description, w.Secret, cursor, cursorSeq(cursor)))
		if err != nil {
			if s.d.Classify(err) == KindUnique {
				return holdfast.Errorf(holdfast.CodeConflict, "webhook %q exists", w.ID)
			}
			return err
		}
		return s.record(ctx, tx, out)
	})
	return out, err
}

func (s *Store) Webhook(ctx context.Context, id string) (holdfast.Webhook, error) {
	return s.webhook(ctx, s.db, id, "")
}

// webhook reads webhook id through q (lock: a locking clause, or "").
func (s *Store) webhook(ctx context.Context, q Reader, id, lock string) (holdfast.Webhook, error) {
	w, err := scanWebhook(q.QueryRow(ctx, `SELECT `+webhookColumns+` FROM webhooks WHERE id = $1`+lock, id))
	if errors.Is(err, ErrNoRows) {
		return w, webhookNotFound(id)
	}
	return w, err
}

func (s *Store) Webhooks(ctx context.Context) ([]holdfast.Webhook, error) {
	return collect(ctx, s.db, scanWebhook, `SELECT `+webhookColumns+` FROM webhooks ORDER BY created_at, id`)
}

func (s *Store) UpdateWebhook(ctx context.Context, id string, p holdfast.WebhookPatch) (holdfast.Webhook, error) {
	var out holdfast.Webhook
	err := s.db.Transact(ctx, func(tx Querier) error {
		w, err := s.webhook(ctx, tx, id, s.d.ForUpdate)
		if err != nil {
			return err
		}
		wasEnabled := w.Enabled
		if p.URL != nil {
			w.URL = *p.URL
		}
		if p.Events != nil {
			w.Events = *p.Events
			if w.Events == nil {
				w.Events = []holdfast.EventType{}
			}
		}
		if p.Description != nil {
			w.Description = *p.Description
		}
		if p.Enabled != nil {
			w.Enabled = *p.Enabled
		}
		if err := w.Validate(); err != nil {
			return err
		}
		var q binds
		sql := `UPDATE webhooks SET url = ` + q.add(w.URL) + `, events = ` + q.add(joinEvents(w.Events)) +
			`, description = ` + q.add(w.Description) + `, enabled = ` + q.add(w.Enabled) + `, updated_at = holdfast_now_ms()`
		if w.Enabled && !wasEnabled {
			// Nothing was queued while it was disabled: it starts from now.
			cursor, err := s.presentCursor(ctx, tx)
			if err != nil {
				return err
			}
			sql += `, cursor = ` + q.add(cursor) + `, cursor_seq = ` + q.add(cursorSeq(cursor))
		}
		sql += ` WHERE id = ` + q.add(id) + ` RETURNING ` + webhookColumns
		if out, err = scanWebhook(tx.QueryRow(ctx, sql, q.args...)); err != nil {
			return err
		}
		return s.record(ctx, tx, out)
	})
	return out, err
}

func (s *Store) DeleteWebhook(ctx context.Context, id string) (holdfast.Webhook, error) {
	var out holdfast.Webhook
	err := s.db.Transact(ctx, func(tx Querier) error {
		w, err := s.webhook(ctx, tx, id, s.d.ForUpdate)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM webhook_deliveries WHERE webhook_id = $1`, id); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM webhooks WHERE id = $1`, id); err != nil {
			return err
		}
		out = w
		return s.record(ctx, tx, out)
	})
	return out, err
}

// ---- deliveries ----

const deliveryColumns = `webhook_id, event_seq, event_type, status, attempts, tries, next_attempt_at, last_status, last_error, created_at, updated_at`

func scanDelivery(r Row) (holdfast.Delivery, error) {
	var d holdfast.Delivery
	var status, typ string
	var next, created, updated int64
	if err := r.Scan(&d.Webhook, &d.EventSeq, &typ, &status, &d.Attempts, &d.Try, &next, &d.LastStatusCode, &d.LastError, &created, &updated); err != nil {
		return d, err
	}
	d.Status, d.EventType = holdfast.DeliveryStatus(status), holdfast.EventType(typ)
	d.ID = MessageID(d.EventSeq)
	d.MessageID = d.ID
	if d.Status == holdfast.DeliveryPending {
		t := msTime(next)
		d.NextAttemptAt = &t
	}
	d.CreatedAt, d.UpdatedAt = msTime(created), msTime(updated)
	return d, nil
}

// MessageID is the webhook-id of the event with sequence number seq: the
// same on every attempt and for every endpoint. It is also the id of the
// event's delivery to each webhook.
func MessageID(seq int64) string { return "evt_" + strconv.FormatInt(seq, 10) }

// deliverySeq parses a delivery id; false if it is not one.
func deliverySeq(id string) (int64, bool) {
	n, err := strconv.ParseInt(strings.TrimPrefix(id, "evt_"), 10, 64)
	return n, err == nil && n > 0 && strings.HasPrefix(id, "evt_")
}

// maxDeliveriesListed bounds one page of Deliveries.
const maxDeliveriesListed = 500

func (s *Store) Deliveries(ctx context.Context, webhook string, status holdfast.DeliveryStatus, before string, limit int) ([]holdfast.Delivery, error) {
	switch status {
	case "", holdfast.DeliveryPending, holdfast.DeliverySucceeded, holdfast.DeliveryFailed:
	default:
		return nil, holdfast.Errorf(holdfast.CodeInvalid, "status must be pending, succeeded or failed")
	}
	if limit <= 0 || limit > maxDeliveriesListed {
		limit = maxDeliveriesListed
	}
	if found, err := queryRow(ctx, s.db, `SELECT 1 FROM webhooks WHERE id = $1`, []any{webhook}, new(int)); err != nil || !found {
		if err == nil {
			err = webhookNotFound(webhook)
		}
		return nil, err
	}
	var q binds
	sql := `SELECT ` + deliveryColumns + ` FROM webhook_deliveries WHERE webhook_id = ` + q.add(webhook)
	if status != "" {
		sql += ` AND status = ` + q.add(string(status))
	}
	if before != "" {
		seq, ok := deliverySeq(before)
		if !ok {
			return nil, holdfast.Errorf(holdfast.CodeInvalid, "before must be a delivery id (evt_…)")
		}
		sql += ` AND event_seq < ` + q.add(seq)
	}
	sql += ` ORDER BY event_seq DESC LIMIT ` + q.add(limit)
	return collect(ctx, s.db, scanDelivery, sql, q.args...)
}

func (s *Store) RetryDelivery(ctx context.Context, webhook, delivery string) (holdfast.Delivery, error) {
	var out holdfast.Delivery
	seq, ok := deliverySeq(delivery)
	if !ok {
		return out, holdfast.Errorf(holdfast.CodeNotFound, "delivery %q of webhook %q not found", delivery, webhook)
	}
	err := s.db.Transact(ctx, func(tx Querier) error {
		// A fresh schedule from its first try, due at once: at its last
		// outcome's time (updated_at before this change, stamped by the
		// dispatcher's clock, which schedules; RHS values are the old
		// row's). Unless it is in flight (leased): that finishes first.
		var err error
		out, err = scanDelivery(tx.QueryRow(ctx, `UPDATE webhook_deliveries SET status = 'pending', tries = 0,
			next_attempt_at = updated_at, updated_at = holdfast_now_ms()
			WHERE event_seq = $1 AND webhook_id = $2 AND lease IS NULL
			RETURNING `+deliveryColumns, seq, webhook))
		if errors.Is(err, ErrNoRows) {
			out, err = scanDelivery(tx.QueryRow(ctx, `SELECT `+deliveryColumns+` FROM webhook_deliveries WHERE event_seq = $1 AND webhook_id = $2`, seq, webhook))
			if errors.Is(err, ErrNoRows) {
				return holdfast.Errorf(holdfast.CodeNotFound, "delivery %q of webhook %q not found", delivery, webhook)
			}
		}
		if err != nil {
			return err
		}
		return s.record(ctx, tx, out)
	})
	return out, err
}

// QueueDeliveries turns the events written since each enabled webhook's
// cursor into its deliveries, while the webhook has fewer than limit
// pending, and reports how many it queued. The rest wait in the feed,
// behind the cursor (the purge keeps them): a dead endpoint's backlog
// costs the database no row per event, so a sale does not pay for it.
// The webhook's row is locked while its events are queued and its cursor
// moves, in one transaction, so two servers never queue the same events;
// a server finding the row locked skips it.
func (s *Store) QueueDeliveries(ctx context.Context, now time.Time, limit int) (int, error) {
	ids, err := queryStrings(ctx, s.db, `SELECT id FROM webhooks WHERE enabled ORDER BY id`)
	if err != nil {
		return 0, err
	}
	queued := 0
	for _, id := range ids {
		err := s.db.Transact(ctx, func(tx Querier) error {
			var cursor, events string
			found, err := queryRow(ctx, tx, `SELECT cursor, events FROM webhooks WHERE id = $1 AND enabled`+s.d.SkipLocked, []any{id}, &cursor, &events)
			if err != nil || !found {
				return err
			}
			w := holdfast.Webhook{}
			for _, e := range strings.Fields(events) {
				w.Events = append(w.Events, holdfast.EventType(e))
			}
			var pending int
			if _, err := queryRow(ctx, tx, `SELECT COUNT(*) FROM webhook_deliveries WHERE webhook_id = $1 AND status = 'pending'`, []any{id}, &pending); err != nil {
				return err
			}
			room := min(limit-pending, 1000)
			if room <= 0 {
				return nil
			}
			evs, next, err := s.events(ctx, tx, cursor, room, false)
			if holdfast.ErrorCode(err) == holdfast.CodeCursorExpired {
				// Retention purged what it had not queued yet (it fell
				// behind by the retention period): go on from the
				// oldest event kept, and say so.
				s.log("webhook fell behind the event retention; events were purged before they were queued", "webhook", id)
				evs, next, err = s.events(ctx, tx, "", room, false)
			}
			if err != nil {
				return err
			}
			if len(evs) == 0 {
				return nil
			}
			// Many rows to a statement, many statements to a round trip.
			var stmts []Stmt
			var q binds
			var values []string
			flush := func() {
				if len(values) > 0 {
					stmts = append(stmts, Stmt{SQL: `INSERT INTO webhook_deliveries (webhook_id, event_seq, event_type, ordering_key, status, next_attempt_at, created_at, updated_at)
						VALUES ` + strings.Join(values, ", ") + ` ON CONFLICT DO NOTHING`, Args: q.args})
				}
				q, values = binds{}, nil
			}
			for _, e := range evs {
				if !w.Wants(e.Type) {
					continue
				}
				at := q.add(now.UnixMilli())
				values = append(values, `(`+q.add(id)+`, `+q.add(e.Seq)+`, `+q.add(string(e.Type))+`, `+q.add(orderingKey(e))+`, 'pending', `+at+`, `+at+`, `+at+`)`)
				if len(values) == 200 {
					flush()
				}
			}
			flush()
			stmts = append(stmts, Stmt{SQL: `UPDATE webhooks SET cursor = $2, cursor_seq = $3 WHERE id = $1`, Args: []any{id, next, cursorSeq(next)}})
			n, err := ExecAll(ctx, tx, stmts)
			if err != nil {
				return err
			}
			for _, k := range n[:len(n)-1] {
				queued += int(k)
			}
			return nil
		})
		if err != nil {
			return queued, err
		}
	}
	return queued, nil
}

// deliveryBodies reads the claimed deliveries' events and makes their
// payloads. A delivery whose event was purged (retention shorter than a
// retry by hand came late) fails for good, saying so.
func (s *Store) deliveryBodies(ctx context.Context, tx Querier, claimed []holdfast.Delivery, now int64) ([]holdfast.Delivery, error) {
	seqs := make([]string, len(claimed))
	for i, d := range claimed {
		seqs[i] = strconv.FormatInt(d.EventSeq, 10)
	}
	events, err := collect(ctx, tx, func(r Row) (holdfast.Event, error) {
		var e holdfast.Event
		var at, xid int64
		var data string
		err := r.Scan(&xid, &e.Seq, &e.Type, &at, &e.HoldID, &e.Subject, &data)
		e.At, e.Data = msTime(at), json.RawMessage(data)
		e.Cursor = strconv.FormatInt(xid, 10) + "." + strconv.FormatInt(e.Seq, 10)
		return e, err
	}, `SELECT `+s.d.EventXid+`, seq, type, at, COALESCE(hold_id, ''), COALESCE(subject, ''), data FROM events
		WHERE seq IN (SELECT CAST(value AS BIGINT) FROM (`+s.d.ListSelect(1)+`) AS l)`, s.d.ListArg(seqs))
	if err != nil {
		return nil, err
	}
	bySeq := map[int64]holdfast.Event{}
	for _, e := range events {
		bySeq[e.Seq] = e
	}
	var ready []holdfast.Delivery
	for _, d := range claimed {
		e, ok := bySeq[d.EventSeq]
		if !ok {
			if _, err := tx.Exec(ctx, `UPDATE webhook_deliveries SET status = 'failed', lease = NULL, leased_until = NULL, updated_at = $3,
				last_error = 'the event was purged (retention) before it could be sent' WHERE webhook_id = $1 AND event_seq = $2`, d.Webhook, d.EventSeq, now); err != nil {
				return nil, err
			}
			continue
		}
		body, err := deliveryBody(e)
		if err != nil {
			return nil, err
		}
		d.Body = body
		ready = append(ready, d)
	}
	return ready, nil
}

// orderingKey is what an event must stay in order with: its hold, else
// its pool or group, else the catalog as a whole.
func orderingKey(e holdfast.Event) string {
	if e.HoldID != "" {
		return "hold " + e.HoldID
	}
	return "subject " + e.Subject
}

// deliveryBody is the payload of a delivery, per Standard Webhooks: the
// event's type, its time and the event as the feed has it.
func deliveryBody(e holdfast.Event) ([]byte, error) {
	return json.Marshal(struct {
		Type      holdfast.EventType `json:"type"`
		Timestamp time.Time          `json:"timestamp"`
		Data      holdfast.Event     `json:"data"`
	}{e.Type, e.At, e})
}

// ClaimDeliveries leases deliveries that are due: per webhook (its row
// locked, so the count of those in flight is exact over every server),
// leases timed by the database's clock, as expiry is (a server whose
// clock is off never takes a call still in flight elsewhere; the retry
// schedule, mere timing, goes by the dispatcher's clock),
// up to c.PerWebhook in flight, only the oldest pending delivery of each
// hold (order per subject), oldest first.
func (s *Store) ClaimDeliveries(ctx context.Context, c holdfast.DeliveryClaim) ([]holdfast.Delivery, error) {
	now := c.Now.UnixMilli()
	ids, err := queryStrings(ctx, s.db, `SELECT id FROM webhooks WHERE enabled ORDER BY id`)
	if err != nil {
		return nil, err
	}
	// From a random webhook on, so that no endpoint is always served last.
	if len(ids) > 1 {
		k := rand.IntN(len(ids))
		ids = append(ids[k:], ids[:k]...)
	}
	var out []holdfast.Delivery
	for _, id := range ids {
		err := s.db.Transact(ctx, func(tx Querier) error {
			var url, secret string
			found, err := queryRow(ctx, tx, `SELECT url, secret FROM webhooks WHERE id = $1 AND enabled`+s.d.SkipLocked, []any{id}, &url, &secret)
			if err != nil || !found {
				return err
			}
			var inFlight int
			if _, err := queryRow(ctx, tx, `SELECT COUNT(*) FROM webhook_deliveries WHERE webhook_id = $1 AND status = 'pending' AND leased_until > holdfast_now_ms()`,
				[]any{id}, &inFlight); err != nil {
				return err
			}
			room := min(c.PerWebhook-inFlight, c.Limit-len(out))
			if inFlight == 0 && c.PerWebhook > 0 {
				room = max(room, 1) // its one slot, past the server's limit
			}
			if room <= 0 {
				return nil
			}
			rows, err := tx.Query(ctx, `UPDATE webhook_deliveries SET lease = $3, leased_until = holdfast_now_ms() + $4, attempts = attempts + 1, tries = tries + 1, updated_at = $2
				WHERE webhook_id = $1 AND event_seq IN (SELECT d.event_seq FROM webhook_deliveries d
					WHERE d.webhook_id = $1 AND d.status = 'pending' AND d.next_attempt_at <= $2 AND (d.leased_until IS NULL OR d.leased_until <= holdfast_now_ms())
					AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e WHERE e.webhook_id = d.webhook_id AND e.ordering_key = d.ordering_key
						AND e.status = 'pending' AND e.event_seq < d.event_seq)
					ORDER BY d.event_seq LIMIT $5)
				RETURNING `+deliveryColumns, id, now, c.Lease, c.For.Milliseconds(), room)
			if err != nil {
				return err
			}
			var claimed []holdfast.Delivery
			for rows.Next() {
				d, err := scanDelivery(rows)
				if err != nil {
					rows.Close()
					return err
				}
				d.URL, d.Secret, d.Lease = url, secret, c.Lease
				claimed = append(claimed, d)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			if len(claimed) == 0 {
				return nil
			}
			ready, err := s.deliveryBodies(ctx, tx, claimed, now)
			out = append(out, ready...)
			return err
		})
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// FinishDelivery records an attempt's outcome, if the delivery is still
// leased to the attempt's dispatcher: one whose lease ran out and was
// taken over records nothing, so each delivery records one success.
func (s *Store) FinishDelivery(ctx context.Context, r holdfast.DeliveryResult) error {
	status, next := holdfast.DeliveryPending, r.Next.UnixMilli()
	switch {
	case r.OK:
		status, next = holdfast.DeliverySucceeded, r.Now.UnixMilli()
	case r.Next.IsZero():
		status, next = holdfast.DeliveryFailed, r.Now.UnixMilli()
	}
	seq, ok := deliverySeq(r.ID)
	if !ok {
		return holdfast.Errorf(holdfast.CodeInvalid, "%q is not a delivery id", r.ID)
	}
	return s.db.Transact(ctx, func(tx Querier) error {
		_, err := tx.Exec(ctx, `UPDATE webhook_deliveries SET status = $3, next_attempt_at = $4, last_status = $5, last_error = $6,
			lease = NULL, leased_until = NULL, updated_at = $7
			WHERE webhook_id = $8 AND event_seq = $1 AND lease = $2 AND status = 'pending'`,
			seq, r.Lease, string(status), next, r.StatusCode, truncate(r.Error, 500), r.Now.UnixMilli(), r.Webhook)
		return err
	})
}

// DeliveryBacklog measures what is still to be sent: the pending
// deliveries and, per enabled webhook, the events after its cursor (not
// yet queued; counted as the seqs after it, which is near enough for a
// gauge and reads two index entries, not the backlog).
func (s *Store) DeliveryBacklog(ctx context.Context, now time.Time) (holdfast.DeliveryBacklog, error) {
	var b holdfast.DeliveryBacklog
	var oldest *int64
	if _, err := queryRow(ctx, s.db, `SELECT COUNT(*), MIN(created_at) FROM webhook_deliveries WHERE status = 'pending'`, nil, &b.Pending, &oldest); err != nil {
		return b, err
	}
	if oldest != nil {
		b.Oldest = max(0, now.Sub(msTime(*oldest)))
	}
	type behind struct {
		after, newest int64
		at            *int64
	}
	rows, err := collect(ctx, s.db, func(r Row) (behind, error) {
		var w behind
		return w, r.Scan(&w.after, &w.newest, &w.at)
	}, `SELECT w.cursor_seq, COALESCE((SELECT MAX(seq) FROM events), 0),
		(SELECT e.at FROM events e WHERE e.seq > w.cursor_seq ORDER BY e.seq LIMIT 1)
		FROM webhooks w WHERE w.enabled`)
	if err != nil {
		return b, err
	}
	for _, w := range rows {
		b.Pending += max(0, w.newest-w.after)
		if w.at != nil {
			b.Oldest = max(b.Oldest, now.Sub(msTime(*w.at)))
		}
	}
	return b, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xc0 == 0x80 { // not inside a UTF-8 sequence
		n--
	}
	return s[:n]
}

// presentCursor is where a webhook starts: after the newest event the
// feed shows, or — when it shows none yet because an older transaction
// is still open somewhere in the database, as under load — after the
// newest committed one. The feed's own cursor would be "" then, the
// start of history, and the new webhook would be sent every past event.
func (s *Store) presentCursor(ctx context.Context, tx Querier) (string, error) {
	cursor, err := s.lastEventCursor(ctx, tx)
	if err != nil || cursor != "" || s.d.EventsVisible == "" {
		return cursor, err
	}
	var xid, seq int64
	found, err := queryRow(ctx, tx, `SELECT `+s.d.EventXid+`, seq FROM events ORDER BY `+descending(s.d.EventOrder)+` LIMIT 1`, nil, &xid, &seq)
	if err != nil || !found {
		return "", err
	}
	return strconv.FormatInt(xid, 10) + "." + strconv.FormatInt(seq, 10), nil
}
