package http_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/holdfasttest"
	hfhttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/webhook"
)

// The webhook API end to end: admin only, URLs checked, the secret shown
// once and stored nowhere an answer is kept, deliveries listed and sent
// again, and a receiver written with VerifyWebhook.
func TestWebhooksAPI(t *testing.T) {
	backends(t, func(t *testing.T, s holdfast.Store) {
		var mu sync.Mutex
		var secret string
		var got []string
		receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			if _, err := hfhttp.VerifyWebhook(r, secret); err != nil {
				t.Errorf("VerifyWebhook: %v", err)
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			got = append(got, r.Header.Get("webhook-id"))
		}))
		t.Cleanup(receiver.Close)

		guarded := caller{base: serve(t, s, hfhttp.Config{AdminKey: adminKey}).URL, key: adminKey}
		guarded.want(t, "POST", "/v1/webhooks", `{"url":"`+receiver.URL+`"}`, 400, holdfast.CodeInvalid)
		guarded.want(t, "POST", "/v1/webhooks", `{"url":"http://169.254.169.254/latest"}`, 400, holdfast.CodeInvalid)

		admin := caller{base: serve(t, s, hfhttp.Config{AdminKey: adminKey, WebhookAllowPrivate: true}).URL, key: adminKey}
		client := newKey(t, admin, "shop")
		client.want(t, "POST", "/v1/webhooks", `{"url":"`+receiver.URL+`"}`, 403, hfhttp.CodeForbidden)
		client.want(t, "GET", "/v1/webhooks", "", 403, hfhttp.CodeForbidden)
		admin.want(t, "POST", "/v1/webhooks", `{"url":"ftp://shop.example/x"}`, 400, holdfast.CodeInvalid)
		admin.want(t, "POST", "/v1/webhooks", `{"url":"`+receiver.URL+`","events":["hold.paid"]}`, 400, holdfast.CodeInvalid)
		admin.want(t, "POST", "/v1/webhooks", `{"url":"`+receiver.URL+`","enabled":false}`, 400, holdfast.CodeInvalid)
		admin.want(t, "POST", "/v1/webhooks", `{}`, 400, holdfast.CodeInvalid)

		var created struct {
			holdfast.Webhook
			Secret *string
		}
		body := `{"url":"` + receiver.URL + `/hooks","events":["pool.created","hold.confirmed"],"description":"shop"}`
		admin.want(t, "POST", "/v1/webhooks", body, 201, "", "Idempotency-Key", "wh-1").decode(t, &created)
		if created.Secret == nil || !strings.HasPrefix(*created.Secret, "whsec_") || !strings.HasPrefix(created.ID, "wh_") || !created.Enabled {
			t.Fatalf("created: %+v", created)
		}
		mu.Lock()
		secret = *created.Secret
		mu.Unlock()
		var replay struct {
			holdfast.Webhook
			Secret *string
			Note   string
		}
		admin.want(t, "POST", "/v1/webhooks", body, 201, "", "Idempotency-Key", "wh-1").decode(t, &replay)
		if replay.Secret != nil || replay.ID != created.ID || replay.Note == "" {
			t.Fatalf("a replay answered %+v, want the webhook without its secret", replay)
		}
		key := strings.TrimPrefix(secret, "whsec_")
		if n := holdfasttest.MustCount(t, s, `SELECT COUNT(*) FROM idempotency_keys t WHERE `+rowText(s, "idempotency_keys")+` LIKE $1`, "%"+key+"%"); n != 0 {
			t.Errorf("the webhook's secret is in a stored answer")
		}
		for _, r := range []response{admin.want(t, "GET", "/v1/webhooks", "", 200, ""), admin.want(t, "GET", "/v1/webhooks/"+created.ID, "", 200, "")} {
			if strings.Contains(string(r.body), key) || strings.Contains(string(r.body), "secret") {
				t.Fatalf("a read shows the secret: %s", r.body)
			}
		}
		admin.want(t, "GET", "/v1/webhooks/wh_nope", "", 404, holdfast.CodeNotFound)
		admin.want(t, "PATCH", "/v1/webhooks/"+created.ID, `{}`, 400, holdfast.CodeInvalid)
		admin.want(t, "PATCH", "/v1/webhooks/"+created.ID, `{"url":"gopher://x"}`, 400, holdfast.CodeInvalid)
		admin.want(t, "PATCH", "/v1/webhooks/wh_nope", `{"enabled":false}`, 404, holdfast.CodeNotFound)
		var patched holdfast.Webhook
		admin.want(t, "PATCH", "/v1/webhooks/"+created.ID, `{"description":"box office","events":[]}`, 200, "").decode(t, &patched)
		if patched.Description != "box office" || len(patched.Events) != 0 || patched.URL != created.URL {
			t.Fatalf("patched: %+v", patched)
		}

		admin.want(t, "POST", "/v1/pools", `{"id":"p","capacity":5}`, 201, "")
		d := webhook.New(webhook.Config{Queue: s.(webhook.Queue), AllowPrivate: true})
		var list struct {
			Deliveries []holdfast.Delivery
			Next       string
		}
		for ctx := t.Context(); len(list.Deliveries) == 0 || list.Deliveries[0].Status != holdfast.DeliverySucceeded; {
			if ctx.Err() != nil {
				t.Fatalf("no delivery succeeded: %+v", list)
			}
			if err := d.Step(context.Background()); err != nil {
				t.Fatal(err)
			}
			d.Wait()
			admin.want(t, "GET", "/v1/webhooks/"+created.ID+"/deliveries", "", 200, "").decode(t, &list)
		}
		dl := list.Deliveries[0]
		if dl.EventType != holdfast.EventPoolCreated || dl.Attempts != 1 || dl.MessageID != dl.ID {
			t.Fatalf("delivery: %+v", dl)
		}
		admin.want(t, "GET", "/v1/webhooks/"+created.ID+"/deliveries?status=lost", "", 400, holdfast.CodeInvalid)
		admin.want(t, "GET", "/v1/webhooks/"+created.ID+"/deliveries?limit=0", "", 400, holdfast.CodeInvalid)
		admin.want(t, "GET", "/v1/webhooks/"+created.ID+"/deliveries?before=x", "", 400, holdfast.CodeInvalid)
		admin.want(t, "GET", "/v1/webhooks/wh_nope/deliveries", "", 404, holdfast.CodeNotFound)
		admin.want(t, "POST", "/v1/webhooks/"+created.ID+"/deliveries/evt_0/retry", "", 404, holdfast.CodeNotFound)
		admin.want(t, "POST", "/v1/webhooks/"+created.ID+"/deliveries/"+dl.ID+"/retry", "", 200, "")
		d.Step(context.Background())
		d.Wait()
		mu.Lock()
		if len(got) != 2 || got[0] != dl.ID || got[1] != dl.ID {
			t.Errorf("the receiver got %v, want %s twice (sent, then sent again)", got, dl.ID)
		}
		mu.Unlock()

		admin.want(t, "DELETE", "/v1/webhooks/"+created.ID, "", 200, "")
		admin.want(t, "GET", "/v1/webhooks/"+created.ID, "", 404, holdfast.CodeNotFound)
		admin.want(t, "DELETE", "/v1/webhooks/"+created.ID, "", 404, holdfast.CodeNotFound)
	})
}
