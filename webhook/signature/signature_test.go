package signature_test

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

	"os/exec"

	"github.com/holdfast/holdfast/webhook/signature"
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
	sig, err := signature.Sign(secret, id, at, body)
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
	secret := signature.NewSecret()
	if !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("secret %q lacks whsec_", secret)
	}
	body := []byte(`{"type":"hold.confirmed","timestamp":"2026-11-30T10:00:00Z","data":{"seq":7}}`)
	now := time.Now()
	h := signed(t, secret, "evt_7", now, body)
	if err := standardVerify(secret, h, body); err != nil {
		t.Fatalf("an independent implementation of the spec refuses our signature: %v", err)
	}
	if err := signature.Verify(secret, h, body, now); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	// Rotation: several signatures, one of them good.
	rot := h.Clone()
	rot.Set("webhook-signature", "v1,bm90IGl0 "+h.Get("webhook-signature"))
	if err := signature.Verify(secret, rot, body, now); err != nil {
		t.Fatalf("Verify with a rotated signature list: %v", err)
	}

	for name, c := range map[string]struct {
		secret string
		h      http.Header
		body   []byte
		now    time.Time
		want   error
	}{
		"tampered body":   {secret, h, []byte(strings.Replace(string(body), "7", "8", 1)), now, signature.ErrSignature},
		"other secret":    {signature.NewSecret(), h, body, now, signature.ErrSignature},
		"replayed later":  {secret, h, body, now.Add(signature.Tolerance + time.Second), signature.ErrTimestamp},
		"from the future": {secret, h, body, now.Add(-signature.Tolerance - time.Second), signature.ErrTimestamp},
		"no headers":      {secret, http.Header{}, body, now, signature.ErrMissingHeaders},
		"other id": {secret, func() http.Header {
			o := h.Clone()
			o.Set("webhook-id", "evt_8")
			return o
		}(), body, now, signature.ErrSignature},
		"v2 only": {secret, func() http.Header {
			o := h.Clone()
			o.Set("webhook-signature", "v2,"+strings.TrimPrefix(h.Get("webhook-signature"), "v1,"))
			return o
		}(), body, now, signature.ErrSignature},
	} {
		if err := signature.Verify(c.secret, c.h, c.body, c.now); !errors.Is(err, c.want) {
			t.Errorf("%s: Verify = %v, want %v", name, err, c.want)
		}
	}
}

// TestOnlyTheStandardLibrary keeps the receiver's package light: a shop
// that verifies deliveries must not pull in the dispatcher's Prometheus
// client, pgx or anything else.
func TestOnlyTheStandardLibrary(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep != "github.com/holdfast/holdfast/webhook/signature" {
			t.Errorf("package signature depends on %s; it must need only the standard library", dep)
		}
	}
}
