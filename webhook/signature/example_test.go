package signature_test

import (
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/holdfast/holdfast/webhook/signature"
)

// A receiver for holdfast's webhooks: verify the signature on the raw
// body, drop what was already handled (deliveries are at least once),
// act, answer 2xx within the timeout. Anything else is retried.
func ExampleVerifyRequest() {
	secret := signature.NewSecret() // in a real receiver: the secret POST /v1/webhooks showed
	var mu sync.Mutex
	handled := map[string]bool{} // in a real receiver: a table keyed by webhook-id

	receiver := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := signature.VerifyRequest(r, secret)
		if err != nil {
			http.Error(w, "bad signature", http.StatusBadRequest)
			return
		}
		id := r.Header.Get("webhook-id")
		mu.Lock()
		defer mu.Unlock()
		if handled[id] {
			w.WriteHeader(http.StatusNoContent) // a retry of what we already did
			return
		}
		var msg struct {
			Type string `json:"type"`
			Data struct {
				HoldID string          `json:"hold_id"`
				Data   json.RawMessage `json:"data"` // the hold after the change
			} `json:"data"`
		}
		if err := json.Unmarshal(body, &msg); err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		switch msg.Type {
		case "hold.expired":
			fmt.Println("cancel the payment for", msg.Data.HoldID)
		case "hold.confirmed":
			fmt.Println("email the tickets for", msg.Data.HoldID)
		}
		handled[id] = true
		w.WriteHeader(http.StatusNoContent)
	})

	// What holdfast sends, twice (a retry), and a forgery.
	srv := httptest.NewServer(receiver)
	defer srv.Close()
	body := `{"type":"hold.expired","timestamp":"2026-11-30T10:00:00Z","data":{"seq":42,"type":"hold.expired","hold_id":"h_01","data":{}}}`
	send := func(secret string) int {
		now := time.Now()
		sig, _ := signature.Sign(secret, "evt_42", now, []byte(body))
		req, _ := http.NewRequest("POST", srv.URL, strings.NewReader(body))
		req.Header.Set("webhook-id", "evt_42")
		req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
		req.Header.Set("webhook-signature", sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	fmt.Println(send(secret), send(secret), send(signature.NewSecret()))
	// Output:
	// cancel the payment for h_01
	// 204 204 400
}
