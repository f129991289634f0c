// Package signature signs and verifies holdfast's webhook deliveries per
// the Standard Webhooks specification (https://www.standardwebhooks.com).
// It is the package a receiver written in Go imports: it depends on the
// standard library alone (a test keeps it so), not on the dispatcher and
// its metrics.
package signature

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The headers of a delivery, as the specification names them.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

const secretPrefix = "whsec_"

// NewSecret returns a new signing secret: "whsec_" and the base64 of 32
// random bytes, the form the specification's libraries read.
func NewSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return secretPrefix + base64.StdEncoding.EncodeToString(b)
}

// secretKey returns the HMAC key a secret stands for.
func secretKey(secret string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, secretPrefix))
	if err != nil || len(key) == 0 {
		return nil, errors.New("webhook: the secret is not whsec_ and base64")
	}
	return key, nil
}

// Sign returns the webhook-signature value for a message: "v1," and the
// base64 of HMAC-SHA256 over "id.timestamp.body".
func Sign(secret, id string, timestamp time.Time, body []byte) (string, error) {
	key, err := secretKey(secret)
	if err != nil {
		return "", err
	}
	return "v1," + base64.StdEncoding.EncodeToString(mac(key, id, timestamp.Unix(), body)), nil
}

func mac(key []byte, id string, ts int64, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + strconv.FormatInt(ts, 10) + "."))
	m.Write(body)
	return m.Sum(nil)
}

// Tolerance is how far a delivery's timestamp may be from the receiver's
// clock: older messages are refused, so a captured one cannot be replayed
// later.
const Tolerance = 5 * time.Minute

// Errors Verify returns.
var (
	ErrMissingHeaders = errors.New("webhook: missing webhook-id, webhook-timestamp or webhook-signature")
	ErrTimestamp      = errors.New("webhook: timestamp too old or too new")
	ErrSignature      = errors.New("webhook: no signature matches")
)

// Verify checks a delivery as a receiver gets it: the headers, the raw
// body (before any JSON decoding) and the receiver's clock. It accepts the
// message when any v1 signature in the header (several are sent while a
// secret is rotated) matches, in constant time, and the timestamp is
// within Tolerance of now.
func Verify(secret string, h http.Header, body []byte, now time.Time) error {
	id, ts, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || ts == "" || sigs == "" {
		return ErrMissingHeaders
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return ErrTimestamp
	}
	if d := now.Sub(time.Unix(sec, 0)); d > Tolerance || d < -Tolerance {
		return ErrTimestamp
	}
	key, err := secretKey(secret)
	if err != nil {
		return err
	}
	want := mac(key, id, sec, body)
	for _, s := range strings.Fields(sigs) {
		version, sig, ok := strings.Cut(s, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(sig)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return ErrSignature
}

// MaxBody bounds the body VerifyRequest reads.
const MaxBody = 1 << 20

// ErrBodyTooLarge: the delivery's body is over MaxBody.
var ErrBodyTooLarge = errors.New("webhook: body too large")

// VerifyRequest checks a delivery arriving at a receiver: it reads the
// body (up to MaxBody) and verifies its signature and timestamp against
// secret, the whsec_ secret shown when the webhook was created, on the
// receiver's clock. It returns the body to decode; on an error, answer 400
// and do not act on it. Deduplicate by the webhook-id header: a delivery
// can arrive more than once.
func VerifyRequest(r *http.Request, secret string) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	if err != nil {
		return nil, err
	}
	if len(body) > MaxBody {
		return nil, ErrBodyTooLarge
	}
	if err := Verify(secret, r.Header, body, time.Now()); err != nil {
		return nil, err
	}
	return body, nil
}
