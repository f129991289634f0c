package http

import (
	"net/http"
	"strconv"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/webhook"
	"github.com/holdfast/holdfast/webhook/signature"
)

// webhookView is a webhook as the API shows it; Secret only in the answer
// that creates it.
type webhookView struct {
	holdfast.Webhook
	Secret *string `json:"secret,omitempty"`
	Note   string  `json:"note,omitempty"`
}

type webhookBody struct {
	URL         *string               `json:"url"`
	Events      *[]holdfast.EventType `json:"events"`
	Description *string               `json:"description"`
	Enabled     *bool                 `json:"enabled"`
}

func (s *Server) createWebhook(r *http.Request, c *call) (int, any, error) {
	var b webhookBody
	if err := s.decode(r, &b, false); err != nil {
		return 0, nil, err
	}
	if b.Enabled != nil {
		return 0, nil, holdfast.Errorf(holdfast.CodeInvalid, "a webhook is created enabled; PATCH it to disable it")
	}
	w := holdfast.Webhook{ID: "wh_" + randomString(10), Secret: signature.NewSecret()}
	if b.URL != nil {
		w.URL = *b.URL
	}
	if b.Events != nil {
		w.Events = *b.Events
	}
	if b.Description != nil {
		w.Description = *b.Description
	}
	if err := webhook.CheckURL(w.URL, s.cfg.WebhookAllowPrivate); err != nil {
		return 0, nil, err
	}
	// The secret is in the first answer only: a replay of the request
	// answers without it, so it never reaches the idempotency records.
	st := c.changes(func(result any) any {
		created, _ := result.(holdfast.Webhook)
		return webhookView{Webhook: created, Note: "a webhook's secret is shown once, in the first answer"}
	})
	created, err := st.CreateWebhook(r.Context(), w)
	return http.StatusCreated, webhookView{Webhook: created, Secret: &w.Secret}, err
}

func (s *Server) listWebhooks(r *http.Request, _ *call) (int, any, error) {
	ws, err := s.cfg.Store.Webhooks(r.Context())
	return http.StatusOK, map[string][]holdfast.Webhook{"webhooks": ws}, err
}

func (s *Server) getWebhook(r *http.Request, _ *call) (int, any, error) {
	w, err := s.cfg.Store.Webhook(r.Context(), r.PathValue("id"))
	return http.StatusOK, w, err
}

func (s *Server) patchWebhook(r *http.Request, c *call) (int, any, error) {
	var b webhookBody
	if err := s.decode(r, &b, false); err != nil {
		return 0, nil, err
	}
	if b == (webhookBody{}) {
		return 0, nil, holdfast.Errorf(holdfast.CodeInvalid, "nothing to change: send url, events, description or enabled")
	}
	if b.URL != nil {
		if err := webhook.CheckURL(*b.URL, s.cfg.WebhookAllowPrivate); err != nil {
			return 0, nil, err
		}
	}
	w, err := c.changes(nil).UpdateWebhook(r.Context(), r.PathValue("id"),
		holdfast.WebhookPatch{URL: b.URL, Events: b.Events, Description: b.Description, Enabled: b.Enabled})
	return http.StatusOK, w, err
}

func (s *Server) deleteWebhook(r *http.Request, c *call) (int, any, error) {
	w, err := c.changes(nil).DeleteWebhook(r.Context(), r.PathValue("id"))
	return http.StatusOK, w, err
}

func (s *Server) listDeliveries(r *http.Request, _ *call) (int, any, error) {
	q := r.URL.Query()
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			return 0, nil, holdfast.Errorf(holdfast.CodeInvalid, "limit must be an integer from 1 to 500")
		}
		limit = n
	}
	ds, err := s.cfg.Store.Deliveries(r.Context(), r.PathValue("id"), holdfast.DeliveryStatus(q.Get("status")), q.Get("before"), limit)
	if err != nil {
		return 0, nil, err
	}
	next := ""
	if len(ds) == limit {
		next = ds[len(ds)-1].ID
	}
	return http.StatusOK, map[string]any{"deliveries": ds, "next": next}, nil
}

func (s *Server) retryDelivery(r *http.Request, c *call) (int, any, error) {
	if err := s.decode(r, &struct{}{}, true); err != nil {
		return 0, nil, err
	}
	d, err := c.changes(nil).RetryDelivery(r.Context(), r.PathValue("id"), r.PathValue("delivery"))
	return http.StatusOK, d, err
}

// MaxWebhookBody bounds the body VerifyWebhook reads.
const MaxWebhookBody = signature.MaxBody

// VerifyWebhook is signature.VerifyRequest, kept for receivers that
// already call it; a receiver that imports webhook/signature instead pulls
// in nothing beyond the standard library.
func VerifyWebhook(r *http.Request, secret string) ([]byte, error) {
	return signature.VerifyRequest(r, secret)
}
