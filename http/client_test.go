package http_test

import (
	"context"
	"testing"

	"github.com/holdfast/holdfast"
	hfhttp "github.com/holdfast/holdfast/http"
)

// The client is a KeyStore and a WebhookStore like the stores it talks to:
// what it creates the server made (id and secret, shown once), it reads and
// changes what the store has, and what only a server can do answers
// unsupported — never a silent no-op.
func TestClientKeysAndWebhooks(t *testing.T) {
	backends(t, func(t *testing.T, s holdfast.Store) {
		ctx := context.Background()
		c := hfhttp.NewClient(serve(t, s, hfhttp.Config{AdminKey: adminKey}).URL, adminKey)
		var keys holdfast.KeyStore = c
		k, err := keys.CreateKey(ctx, holdfast.APIKey{Name: "reseller", MaxHeldUnits: 7, Channel: "presale"})
		if err != nil || k.ID == "" || k.Secret == "" || k.MaxHeldUnits != 7 || k.Channel != "presale" {
			t.Fatalf("CreateKey: %+v, %v", k, err)
		}
		stored, err := s.APIKey(ctx, k.ID)
		if err != nil || stored.Name != "reseller" || stored.Channel != "presale" || stored.MaxHeldUnits != 7 {
			t.Fatalf("the store has %+v, %v", stored, err)
		}
		// The secret the client was given is the one the server checks.
		other := hfhttp.NewClient(serve(t, s, hfhttp.Config{AdminKey: adminKey}).URL, k.Secret)
		if _, err := other.Holds(ctx, "anyone", ""); err != nil {
			t.Fatalf("the created key does not authenticate: %v", err)
		}
		got, err := keys.APIKey(ctx, k.ID)
		if err != nil || got.ID != k.ID || got.Secret != "" || got.RevokedAt != nil {
			t.Fatalf("APIKey: %+v, %v", got, err)
		}
		if _, err := keys.APIKey(ctx, "nope"); holdfast.ErrorCode(err) != holdfast.CodeNotFound {
			t.Fatalf("APIKey of an unknown id: %v, want not_found", err)
		}
		if q, err := keys.SetKeyQuota(ctx, k.ID, 3); err != nil || q.MaxHeldUnits != 3 {
			t.Fatalf("SetKeyQuota: %+v, %v", q, err)
		}
		if r, err := keys.RevokeKey(ctx, k.ID); err != nil || r.RevokedAt == nil {
			t.Fatalf("RevokeKey: %+v, %v", r, err)
		}
		if got, err := keys.APIKey(ctx, k.ID); err != nil || got.RevokedAt == nil {
			t.Fatalf("APIKey after revoking: %+v, %v", got, err)
		}
		before, _ := s.Keys(ctx)
		for name, err := range map[string]error{
			"CreateKey with an id": func() error { _, err := keys.CreateKey(ctx, holdfast.APIKey{ID: "mine", Name: "x"}); return err }(),
			"TouchKey":             keys.TouchKey(ctx, k.ID),
		} {
			if holdfast.ErrorCode(err) != holdfast.CodeUnsupported {
				t.Errorf("%s: %v, want unsupported", name, err)
			}
		}
		if after, _ := s.Keys(ctx); len(after) != len(before) {
			t.Fatalf("an unsupported call changed the keys: %d, then %d", len(before), len(after))
		}

		var hooks holdfast.WebhookStore = c
		w, err := hooks.CreateWebhook(ctx, holdfast.Webhook{URL: "https://shop.example/hooks", Events: []holdfast.EventType{holdfast.EventHoldConfirmed}, Description: "orders"})
		if err != nil || w.ID == "" || w.Secret == "" || w.Description != "orders" {
			t.Fatalf("CreateWebhook: %+v, %v", w, err)
		}
		if sw, err := s.Webhook(ctx, w.ID); err != nil || sw.Secret != w.Secret {
			t.Fatalf("the store's webhook has another secret than the one shown: %v", err)
		}
		if _, err := hooks.CreateWebhook(ctx, holdfast.Webhook{ID: "wh_mine", URL: "https://shop.example/x"}); holdfast.ErrorCode(err) != holdfast.CodeUnsupported {
			t.Fatalf("CreateWebhook with an id: %v, want unsupported", err)
		}
		if list, err := hooks.Webhooks(ctx); err != nil || len(list) != 1 {
			t.Fatalf("Webhooks: %d, %v (the refused one must not exist)", len(list), err)
		}
		off := false
		if u, err := hooks.UpdateWebhook(ctx, w.ID, holdfast.WebhookPatch{Enabled: &off}); err != nil || u.Enabled {
			t.Fatalf("UpdateWebhook: %+v, %v", u, err)
		}
		if d, err := hooks.Deliveries(ctx, w.ID, "", "", 10); err != nil || len(d) != 0 {
			t.Fatalf("Deliveries: %v, %v", d, err)
		}
		if _, err := hooks.DeleteWebhook(ctx, w.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := hooks.Webhook(ctx, w.ID); holdfast.ErrorCode(err) != holdfast.CodeNotFound {
			t.Fatalf("Webhook after delete: %v, want not_found", err)
		}
	})
}
