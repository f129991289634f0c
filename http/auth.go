package http

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/holdfast/holdfast"
)

// principal is who makes a request: the scope of their idempotency keys
// and the owner of their holds (id), and what they may do (role).
type principal struct {
	id   string
	role holdfast.Role
	// quotaKey is the client key whose quota of held units this caller's
	// holds count against ("" when it has none).
	quotaKey string
	// channel is the sales channel a client key is bound to: its pool
	// lines take from the channel's allocations only.
	channel string
}

// channelLines applies the caller's channel to a hold's lines: a key of a
// channel holds from its allocations only (every line is the channel's: a
// pool's allocation, a group's named units); another client key may not
// name a channel; an admin may name any.
func (p principal) channelLines(r *holdfast.HoldRequest) error {
	for i, l := range r.Lines {
		switch {
		case p.channel != "" && l.Channel != "" && l.Channel != p.channel:
			return holdfast.LineErrorf(CodeForbidden, i, "a key of channel %q cannot take from channel %q", p.channel, l.Channel)
		case p.channel != "":
			r.Lines[i].Channel = p.channel
		case l.Channel != "" && p.role != holdfast.RoleAdmin:
			return holdfast.LineErrorf(CodeForbidden, i, "only a key of channel %q, or an admin, takes from its allocations", l.Channel)
		}
	}
	return nil
}

// noChannel refuses a door a channel's key does not use: it takes from
// its allocations only.
func (p principal) noChannel(door string) error {
	if p.channel != "" {
		return holdfast.Errorf(CodeForbidden, "a key of channel %q holds and books from its allocations only; it cannot %s", p.channel, door)
	}
	return nil
}

// owns is the owner a principal's hold reads are narrowed to: its own id
// for a client, "" (every owner) for an admin.
func (p principal) owns() string {
	if p.role == holdfast.RoleAdmin {
		return ""
	}
	return p.id
}

var (
	openPrincipal  = principal{id: "open", role: holdfast.RoleAdmin}
	adminPrincipal = principal{id: "admin", role: holdfast.RoleAdmin}
)

// Keys look like hf_<id>_<secret>: the id finds the stored key, the
// secret's SHA-256 is compared in constant time. 160 random bits of secret
// make a plain hash enough; a slow hash would only slow every request.
var keyEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return keyEncoding.EncodeToString(b)
}

// NewKey returns a fresh key's id, the full bearer key and the hash to store.
func NewKey() (id, key string, hash []byte) {
	id = randomString(8)
	secret := randomString(20)
	sum := sha256.Sum256([]byte(secret))
	return id, "hf_" + id + "_" + secret, sum[:]
}

func (s *Server) authenticate(r *http.Request) (principal, error) {
	if s.cfg.AdminKey == "" {
		return openPrincipal, nil
	}
	auth := r.Header.Get("Authorization")
	if token := r.URL.Query().Get("token"); auth == "" && token != "" && r.URL.Path == "/v1/events/stream" {
		// A browser's EventSource cannot send headers: the stream takes a
		// short-lived token in its URL instead of the key, which would
		// end up in logs and history.
		return s.streamPrincipal(r.Context(), token)
	}
	bearer, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || bearer == "" {
		return principal{}, holdfast.Errorf(CodeUnauthorized, "send an API key as Authorization: Bearer <key>")
	}
	if subtle.ConstantTimeCompare([]byte(bearer), []byte(s.cfg.AdminKey)) == 1 {
		return adminPrincipal, nil
	}
	rest, ok := strings.CutPrefix(bearer, "hf_")
	id, secret, ok2 := strings.Cut(rest, "_")
	if !ok || !ok2 || id == "" || secret == "" {
		return principal{}, holdfast.Errorf(CodeUnauthorized, "the API key is not valid")
	}
	k, err := s.keys.get(r, s, id)
	if err != nil {
		if holdfast.ErrorCode(err) == holdfast.CodeNotFound || holdfast.ErrorCode(err) == holdfast.CodeInvalid {
			return principal{}, holdfast.Errorf(CodeUnauthorized, "the API key is not valid")
		}
		return principal{}, err
	}
	sum := sha256.Sum256([]byte(secret))
	if subtle.ConstantTimeCompare(sum[:], k.Hash) != 1 {
		return principal{}, holdfast.Errorf(CodeUnauthorized, "the API key is not valid")
	}
	if k.RevokedAt != nil {
		return principal{}, holdfast.Errorf(CodeUnauthorized, "the API key was revoked")
	}
	if s.keys.touchDue(k.ID) {
		if err := s.cfg.Store.TouchKey(r.Context(), k.ID); err != nil {
			s.log.Warn("record a key's last use", "key", k.ID, "err", err)
		}
	}
	p := principal{id: holdfast.KeyOwner(k.ID), role: k.Role, channel: k.Channel}
	if k.MaxHeldUnits > 0 {
		p.quotaKey = k.ID
	}
	return p, nil
}

// keyCacheTTL is how long a server trusts a key it read: a revoked key
// stops working on every server within it.
const keyCacheTTL = time.Second

// keyTouchEvery is how often a key's last use is written, at most.
const keyTouchEvery = time.Minute

// keyCache keeps keys read from the store for keyCacheTTL, and unknown ids
// for as long (a storm of made-up ids costs one read per id per second).
type keyCache struct {
	mu      sync.Mutex
	keys    map[string]cachedKey
	touched map[string]time.Time
}

type cachedKey struct {
	k   holdfast.APIKey
	err error // not found
	at  time.Time
}

// forget drops what the cache knows of key id.
func (c *keyCache) forget(id string) {
	c.mu.Lock()
	delete(c.keys, id)
	c.mu.Unlock()
}

// revoked reports whether the key a stream's principal p authenticated
// with has been revoked since, as far as this server knows (within
// keyCacheTTL of the revocation on any server).
func (s *Server) revoked(r *http.Request, p principal) bool {
	id, ok := strings.CutPrefix(p.id, "key:")
	if !ok {
		return false // the admin key, or open mode
	}
	k, err := s.keys.get(r, s, id)
	return err == nil && k.RevokedAt != nil || holdfast.ErrorCode(err) == holdfast.CodeNotFound
}

func (c *keyCache) get(r *http.Request, s *Server, id string) (holdfast.APIKey, error) {
	now := time.Now()
	c.mu.Lock()
	e, ok := c.keys[id]
	c.mu.Unlock()
	if ok && now.Sub(e.at) < keyCacheTTL {
		return e.k, e.err
	}
	k, err := s.cfg.Store.APIKey(r.Context(), id)
	if err != nil && holdfast.ErrorCode(err) != holdfast.CodeNotFound {
		// The database could not answer (a busy writer, a deadline): the
		// caller may retry, and must not read it as a server error or as
		// a valid key.
		return k, fmt.Errorf("%w: the API key could not be read now: %v", holdfast.ErrBusy, err)
	}
	c.mu.Lock()
	if c.keys == nil || len(c.keys) >= 100_000 {
		c.keys = map[string]cachedKey{} // bounded: start again
	}
	c.keys[id] = cachedKey{k: k, err: err, at: now}
	c.mu.Unlock()
	return k, err
}

// touchDue reports whether key id's last use should be written now.
func (c *keyCache) touchDue(id string) bool {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if last, ok := c.touched[id]; ok && now.Sub(last) < keyTouchEvery {
		return false
	}
	if c.touched == nil || len(c.touched) >= 100_000 {
		c.touched = map[string]time.Time{}
	}
	c.touched[id] = now
	return true
}

// createdKey is the answer to POST /v1/keys: the only time the key is
// shown. The secret is never stored: a replay of the request under the
// same Idempotency-Key answers the key's id and name with "key": null.
type createdKey struct {
	ID           string        `json:"id"`
	Name         string        `json:"name"`
	Role         holdfast.Role `json:"role"`
	CreatedAt    time.Time     `json:"created_at"`
	MaxHeldUnits int64         `json:"max_held_units"`
	Channel      string        `json:"channel,omitempty"`
	Key          *string       `json:"key"`
	Note         string        `json:"note,omitempty"`
}

func (s *Server) createKey(r *http.Request, c *call) (int, any, error) {
	var b struct {
		Name         string `json:"name"`
		MaxHeldUnits int64  `json:"max_held_units"`
		Channel      string `json:"channel"`
	}
	if err := s.decode(r, &b, false); err != nil {
		return 0, nil, err
	}
	id, key, hash := NewKey()
	st := c.changes(func(result any) any {
		k, _ := result.(holdfast.APIKey)
		return createdKey{ID: k.ID, Name: k.Name, Role: k.Role, CreatedAt: k.CreatedAt, MaxHeldUnits: k.MaxHeldUnits, Channel: k.Channel,
			Note: "a key's secret is shown once, in the first answer; it is not stored"}
	})
	k, err := st.CreateKey(r.Context(), holdfast.APIKey{ID: id, Name: b.Name, Role: holdfast.RoleClient, Hash: hash, MaxHeldUnits: b.MaxHeldUnits, Channel: b.Channel})
	return http.StatusCreated, createdKey{ID: k.ID, Name: k.Name, Role: k.Role, CreatedAt: k.CreatedAt, MaxHeldUnits: k.MaxHeldUnits, Channel: k.Channel, Key: &key}, err
}

// keyView is a key as the API lists it: never its secret or hash.
type keyView = holdfast.APIKey

func (s *Server) listKeys(r *http.Request, _ *call) (int, any, error) {
	keys, err := s.cfg.Store.Keys(r.Context())
	return http.StatusOK, map[string][]keyView{"keys": keys}, err
}

// getKey reads one key, revoked or not.
func (s *Server) getKey(r *http.Request, _ *call) (int, any, error) {
	k, err := s.cfg.Store.APIKey(r.Context(), r.PathValue("id"))
	return http.StatusOK, keyView(k), err
}

// patchKey sets a key's quota of held units; every server applies it
// within keyCacheTTL.
func (s *Server) patchKey(r *http.Request, c *call) (int, any, error) {
	var b struct {
		MaxHeldUnits *int64 `json:"max_held_units"`
	}
	if err := s.decode(r, &b, false); err != nil {
		return 0, nil, err
	}
	if b.MaxHeldUnits == nil {
		return 0, nil, holdfast.Errorf(holdfast.CodeInvalid, "max_held_units is required (0: no quota)")
	}
	k, err := c.changes(nil).SetKeyQuota(r.Context(), r.PathValue("id"), *b.MaxHeldUnits)
	return http.StatusOK, k, err
}

// revokeKey revokes a key for good: every server refuses it within
// keyCacheTTL.
func (s *Server) revokeKey(r *http.Request, c *call) (int, any, error) {
	k, err := c.changes(nil).RevokeKey(r.Context(), r.PathValue("id"))
	s.keys.forget(r.PathValue("id")) // this server refuses it at once
	return http.StatusOK, k, err
}

// streamTokenTTL is how long a stream token opens streams: a page asks for
// a new one whenever its stream reconnects.
const streamTokenTTL = time.Minute

// streamToken is GET /v1/events/stream-token: a token for the caller to
// open /v1/events/stream?token= for the next minute. It is signed with a
// key derived from the admin key, so any server sharing the admin key
// accepts it, and it names the caller, so it grants no more than its key.
type streamToken struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

func (s *Server) streamToken(_ *http.Request, c *call) (int, any, error) {
	exp := time.Now().Add(streamTokenTTL).Truncate(time.Second)
	payload := base64.RawURLEncoding.EncodeToString([]byte(c.id + "\n" + string(c.role) + "\n" + strconv.FormatInt(exp.Unix(), 10)))
	return http.StatusOK, streamToken{Token: payload + "." + s.signStream(payload), ExpiresAt: exp}, nil
}

func (s *Server) signStream(payload string) string {
	m := hmac.New(sha256.New, []byte("holdfast stream token\n"+s.cfg.AdminKey))
	m.Write([]byte(payload))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// streamPrincipal checks a stream token and returns whom it was made for.
func (s *Server) streamPrincipal(ctx context.Context, token string) (principal, error) {
	bad := holdfast.Errorf(CodeUnauthorized, "the stream token is not valid or has expired: get another from /v1/events/stream-token")
	payload, sig, ok := strings.Cut(token, ".")
	if !ok || !hmac.Equal([]byte(sig), []byte(s.signStream(payload))) {
		return principal{}, bad
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return principal{}, bad
	}
	parts := strings.Split(string(raw), "\n")
	if len(parts) != 3 {
		return principal{}, bad
	}
	exp, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || time.Now().Unix() > exp {
		return principal{}, bad
	}
	p := principal{id: parts[0], role: holdfast.Role(parts[1])}
	if id, ok := strings.CutPrefix(p.id, "key:"); ok {
		// A client key revoked since: its tokens die with it.
		if k, err := s.cfg.Store.APIKey(ctx, id); err != nil || k.RevokedAt != nil {
			return principal{}, bad
		}
	}
	return p, nil
}
