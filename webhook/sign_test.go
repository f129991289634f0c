package webhook_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/holdfast/holdfast/webhook"
)

// standardVerify is the Standard Webhooks verification written from the
// specification's text alone, sharing no code with package webhook: the
// signed content is "{id}.{timestamp}.{body}", the key the base64 after
// "whsec_", the signature HMAC-SHA256 in base64 after "v1,", several
// signatures space-separated.
func standardVerify(secret string, h http.Header, body []byte) error {
	key, err := base64.StdEncoding.DecodeString(secret[len("whsec_"):])
	if err != nil {
		return err
	}
	signed := fmt.Sprintf("%s.%s.%s", h.Get("Webhook-Id"), h.Get("Webhook-Timestamp"), body)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(signed))
	expected := "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
	for _, s := range strings.Split(h.Get("Webhook-Signature"), " ") {
		if hmac.Equal([]byte(s), []byte(expected)) {
			return nil
		}
	}
	return errors.New("no signature matches")
}

func signed(t *testing.T, secret, id string, at time.Time, body []byte) http.Header {
	t.Helper()
	sig, err := webhook.Sign(secret, id, at, body)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set("webhook-id", id)
	h.Set("webhook-timestamp", strconv.FormatInt(at.Unix(), 10))
	h.Set("webhook-signature", sig)
	return h
}

func TestSignatureFollowsTheSpecification(t *testing.T) {
	secret := webhook.NewSecret()
	if !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("secret %q lacks whsec_", secret)
	}
	body := []byte(`{"type":"hold.confirmed","timestamp":"2026-11-30T10:00:00Z","data":{"seq":7}}`)
	now := time.Now()
	h := signed(t, secret, "evt_7", now, body)
	if err := standardVerify(secret, h, body); err != nil {
		t.Fatalf("an independent implementation of the spec refuses our signature: %v", err)
	}
	if err := webhook.Verify(secret, h, body, now); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	// Rotation: several signatures, one of them good.
	rot := h.Clone()
	rot.Set("webhook-signature", "v1,bm90IGl0 "+h.Get("webhook-signature"))
	if err := webhook.Verify(secret, rot, body, now); err != nil {
		t.Fatalf("Verify with a rotated signature list: %v", err)
	}

	for name, c := range map[string]struct {
		secret string
		h      http.Header
		body   []byte
		now    time.Time
		want   error
	}{
		"tampered body":   {secret, h, []byte(strings.Replace(string(body), "7", "8", 1)), now, webhook.ErrSignature},
		"other secret":    {webhook.NewSecret(), h, body, now, webhook.ErrSignature},
		"replayed later":  {secret, h, body, now.Add(webhook.Tolerance + time.Second), webhook.ErrTimestamp},
		"from the future": {secret, h, body, now.Add(-webhook.Tolerance - time.Second), webhook.ErrTimestamp},
		"no headers":      {secret, http.Header{}, body, now, webhook.ErrMissingHeaders},
		"other id": {secret, func() http.Header {
			o := h.Clone()
			o.Set("webhook-id", "evt_8")
			return o
		}(), body, now, webhook.ErrSignature},
		"v2 only": {secret, func() http.Header {
			o := h.Clone()
			o.Set("webhook-signature", "v2,"+strings.TrimPrefix(h.Get("webhook-signature"), "v1,"))
			return o
		}(), body, now, webhook.ErrSignature},
	} {
		if err := webhook.Verify(c.secret, c.h, c.body, c.now); !errors.Is(err, c.want) {
			t.Errorf("%s: Verify = %v, want %v", name, err, c.want)
		}
	}
}

func TestCheckURL(t *testing.T) {
	for _, u := range []string{"https://shop.example/hooks", "http://203.0.113.9:8080/x?y=1", "https://[2001:4860::8888]/h"} {
		if err := webhook.CheckURL(u, false); err != nil {
			t.Errorf("CheckURL(%q) = %v, want nil", u, err)
		}
	}
	private := []string{"http://127.0.0.1:9000/", "http://localhost/", "http://api.localhost/", "http://10.1.2.3/", "http://192.168.0.1/",
		"http://172.16.5.4/", "http://169.254.169.254/latest/meta-data", "http://[::1]/", "http://[fd00::1]/", "http://0.0.0.0/",
		"http://100.64.0.1/", "http://[::ffff:127.0.0.1]/"}
	for _, u := range private {
		if err := webhook.CheckURL(u, false); err == nil {
			t.Errorf("CheckURL(%q) allowed a private destination", u)
		}
		if err := webhook.CheckURL(u, true); err != nil {
			t.Errorf("CheckURL(%q, allowPrivate) = %v", u, err)
		}
	}
	for _, u := range []string{"", "ftp://shop.example/x", "file:///etc/passwd", "gopher://x", "/relative", "https://user:pw@shop.example/",
		"https://shop.example/#frag", "https:///nohost", strings.Repeat("h", 3000)} {
		if err := webhook.CheckURL(u, true); err == nil {
			t.Errorf("CheckURL(%q) allowed a malformed URL", u)
		}
	}
}
