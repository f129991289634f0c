// Package http serves holdfast's HTTP/JSON API v1: pools, groups, holds,
// bookings, keys and the outbox feed, with RFC 9457 problem+json errors
// carrying holdfast's stable codes, API keys, Idempotency-Key on every
// POST, Prometheus metrics and an OpenAPI document. Client (client.go)
// speaks the same API for the CLI.
package http

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/holdfast/holdfast"
)

// Config configures a Server. Zero values are the documented defaults.
type Config struct {
	Store  holdfast.Store
	Logger *slog.Logger
	// Holds bounds hold TTLs at the edge (default: the store's own bounds,
	// when the store reports them with a Config method, as the SQL stores
	// do; so they are configured in one place, the store).
	Holds holdfast.Config
	// AdminKey is the admin's bearer key. Empty means open mode: no keys,
	// every request acts as admin (serve allows it on loopback only).
	AdminKey string
	// RequestTimeout is each request's deadline (default 10 s).
	RequestTimeout time.Duration
	// MaxBody is the largest request body accepted (default 1 MiB).
	MaxBody int64
	// RateLimit is each key's sustained requests per second (0: no limit),
	// with bursts of twice that. Only this limit ever answers 429.
	RateLimit float64
	// Registry receives the API's metrics and is served at /metrics
	// (default: a new registry).
	Registry *prometheus.Registry
	// Race runs the web page's race on a throwaway database (optional).
	Race RaceFunc
	// IPRateLimit is each client address's sustained requests per second
	// (0: no limit), with bursts of twice that, counted before
	// authentication on every route: failed logins, probes and streams
	// too. Behind a proxy every client shares its address: set it there.
	IPRateLimit float64
	// MaxIdempotencyKeysPerHour bounds the Idempotency-Keys one caller
	// (one key) may send to this server in an hour (default 100,000): each
	// may leave a record for up to a day. Past it, 429 rate_limited with
	// Retry-After, never a wrong answer.
	MaxIdempotencyKeysPerHour int
	// MaxStreams bounds the streams (event streams and waiting places'
	// ticket streams) open at once (default 5,000), MaxStreamsPerKey
	// those of one client key (default 100; the admin key is bounded by
	// MaxStreams only); past either, a new stream answers 429
	// too_many_streams.
	MaxStreams, MaxStreamsPerKey int
	// WebhookAllowPrivate lets webhook URLs name loopback and private
	// addresses (the dispatcher's own setting must agree). Off, such a
	// URL is refused when it is registered.
	WebhookAllowPrivate bool
}

// Server is the API as an http.Handler.
type Server struct {
	cfg      Config
	mux      *http.ServeMux
	log      *slog.Logger
	metrics  *metrics
	keys     keyCache
	limiter  *limiter
	ipLimit  *limiter
	hub      *hub
	unitMaps unitMaps
	patterns []string
	// closing is closed by Close: event streams end.
	closing   chan struct{}
	closeOnce sync.Once
	// streams counts the open event streams, per principal and in all.
	// roomWatch shares room reads among ticket streams.
	roomWatch  roomWatch
	keyRecords hourlyCount // Idempotency-Keys per caller and hour
	streamsMu  sync.Mutex
	streams    map[string]int
	streamsN   int
}

// openStream counts a new stream for p, or refuses it past the bounds;
// the returned func closes it.
func (s *Server) openStream(p principal) (func(), error) {
	s.streamsMu.Lock()
	defer s.streamsMu.Unlock()
	if s.streamsN >= s.cfg.MaxStreams {
		return nil, holdfast.Errorf(CodeTooManyStreams, "this server has %d event streams open, its most", s.streamsN)
	}
	if p.role != holdfast.RoleAdmin && s.streams[p.id] >= s.cfg.MaxStreamsPerKey {
		return nil, holdfast.Errorf(CodeTooManyStreams, "this key has %d event streams open, its most", s.streams[p.id])
	}
	if s.streams == nil {
		s.streams = map[string]int{}
	}
	s.streams[p.id]++
	s.streamsN++
	return func() {
		s.streamsMu.Lock()
		defer s.streamsMu.Unlock()
		s.streamsN--
		if s.streams[p.id]--; s.streams[p.id] == 0 {
			delete(s.streams, p.id)
		}
	}, nil
}

// Close ends every event stream, each telling its viewer to reconnect with
// its Last-Event-ID (to another server, or this one restarted), so that
// http.Server.Shutdown need not wait out its grace for them: register it
// with http.Server.RegisterOnShutdown. Other requests are Shutdown's to
// finish.
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.closing) })
}

// NewServer returns the API handler.
func NewServer(cfg Config) *Server {
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	cfg.RequestTimeout = cmp.Or(cfg.RequestTimeout, 10*time.Second)
	cfg.MaxBody = cmp.Or(cfg.MaxBody, 1<<20)
	cfg.MaxStreams = cmp.Or(cfg.MaxStreams, 5000)
	cfg.MaxStreamsPerKey = cmp.Or(cfg.MaxStreamsPerKey, 100)
	cfg.MaxIdempotencyKeysPerHour = cmp.Or(cfg.MaxIdempotencyKeysPerHour, 100_000)
	if c, ok := cfg.Store.(holdfast.Configured); ok && cfg.Holds == (holdfast.Config{}) {
		cfg.Holds = c.Config()
	}
	cfg.Holds = cfg.Holds.WithDefaults()
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux(), log: cfg.Logger, metrics: newMetrics(cfg.Registry), closing: make(chan struct{})}
	s.hub = newHub(cfg.Store, cfg.Logger)
	if cfg.RateLimit > 0 {
		s.limiter = newLimiter(cfg.RateLimit, 2*cfg.RateLimit)
	}
	if cfg.IPRateLimit > 0 {
		s.ipLimit = newLimiter(cfg.IPRateLimit, 2*cfg.IPRateLimit)
	}
	s.routes()
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.ipLimit != nil {
		ip := r.RemoteAddr
		if host, _, err := net.SplitHostPort(ip); err == nil {
			ip = host
		}
		if ok, wait := s.ipLimit.allow(ip); !ok {
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int(wait.Seconds()+0.999))))
			s.writeError(w, holdfast.Errorf(CodeRateLimited, "this address's rate limit is %g requests per second", s.cfg.IPRateLimit))
			return
		}
	}
	// Before any route: an open server answers only to a loopback Host
	// on every path (the page and /metrics too: a DNS-rebinding page
	// must not read them), and no identifier with bad bytes in the path
	// or the query reaches a handler, whichever route it is for.
	if s.cfg.AdminKey == "" && !loopbackHost(r.Host) {
		s.writeError(w, holdfast.Errorf(CodeMisdirected, "an open server (no admin key) answers only to localhost or a loopback address, not %q", r.Host))
		return
	}
	if err := cleanURL(r); err != nil {
		s.writeError(w, err)
		return
	}
	if r.URL.Path == "/v1/events/stream" || r.URL.Path == "/v1/lab/race" || isTicketStream(r.URL.Path) {
		// Long-lived or long-running: bounded by their own rules (a
		// ticket's stream lives until its place stops waiting).
		s.mux.ServeHTTP(w, r)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	defer cancel()
	s.mux.ServeHTTP(w, r.WithContext(ctx))
}

// Patterns lists the routes the server answers, for the OpenAPI test.
func (s *Server) Patterns() []string { return s.patterns }

// access says who may call a route.
type access int

const (
	public access = iota // no key needed
	client               // any valid key
	admin                // the admin key
)

// handler is an API handler: it returns the status and body to send, or an
// error to turn into a problem.
type handler func(r *http.Request, c *call) (int, any, error)

// changes is what a handler may change: the catalog, bookings, keys and
// webhooks.
type changes interface {
	holdfast.Catalog
	holdfast.Allocations
	holdfast.Payments
	holdfast.Booking
	holdfast.KeyStore
	holdfast.WebhookStore
	holdfast.RoomStore
	holdfast.WaitlistStore
}

// call is one request as a handler sees it: who makes it, and the store
// its change goes through.
type call struct {
	principal
	store holdfast.Store
	// key is the request's claimed Idempotency-Key (nil without one), and
	// keyed the store keyed with it that the change went through.
	key   *holdfast.Idempotency
	keyed holdfast.Keyed
	// secret: the answer recorded is not the one sent (a created key's
	// secret is shown once, never stored).
	secret bool
}

// changes returns where this request's change goes: under an
// Idempotency-Key, the store keyed for this request, so the change records
// its answer in its own transaction. answer, when not nil, turns the
// store's result into the answer to record (by default the result itself).
func (c *call) changes(answer func(result any) any) changes {
	if c.key == nil {
		return c.store
	}
	k := *c.key
	if answer != nil {
		c.secret = true
		render := k.Render
		k.Render = func(result any) holdfast.StoredResponse { return render(answer(result)) }
	}
	c.keyed = c.store.Keyed(k)
	return c.keyed
}

// recorded reports whether the change recorded its answer under the key.
func (c *call) recorded() bool {
	if c.keyed == nil {
		return false
	}
	_, ok := c.keyed.Answer()
	return ok
}

// notIdempotent lists the POST routes an Idempotency-Key cannot make safe
// to retry: the race runs on throwaway databases of its own, and a second
// run is a new race. They refuse the header rather than ignore it. Every
// other route records its answer in its change's transaction.
var notIdempotent = map[string]bool{"POST /v1/lab/race": true}

func (s *Server) handle(pattern string, acc access, h handler) {
	s.patterns = append(s.patterns, pattern)
	route := pattern
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		status := s.serve(w, r, route, acc, h)
		d := time.Since(start)
		s.metrics.observe(route, status, d)
		if acc != public {
			s.log.Info("request", "method", r.Method, "path", r.URL.Path, "route", route, "status", status,
				"duration_ms", float64(d.Microseconds())/1000, "remote", r.RemoteAddr)
		}
	})
}

// serve runs one request through authentication, the rate limit and
// idempotency, and writes the answer. It returns the status sent.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, route string, acc access, h handler) int {
	if err := s.guard(r); err != nil {
		return s.writeError(w, err)
	}
	var p principal
	if acc != public {
		var err error
		if p, err = s.authenticate(r); err != nil {
			return s.writeError(w, err)
		}
		if acc == admin && p.role != holdfast.RoleAdmin {
			return s.writeError(w, holdfast.Errorf(CodeForbidden, "this needs the admin key"))
		}
		if s.limiter != nil {
			if ok, wait := s.limiter.allow(p.id); !ok {
				w.Header().Set("Retry-After", strconv.Itoa(max(1, int(wait.Seconds()+0.999))))
				return s.writeError(w, holdfast.Errorf(CodeRateLimited, "this key's rate limit is %g requests per second", s.cfg.RateLimit))
			}
		}
	}
	key := r.Header.Get("Idempotency-Key")
	if key != "" && notIdempotent[route] {
		return s.writeError(w, holdfast.Errorf(holdfast.CodeInvalid, "%s is not idempotent: send it without an Idempotency-Key", route))
	}
	if key == "" || (r.Method != http.MethodPost && r.Method != http.MethodPatch) {
		status, body, err := h(r, &call{principal: p, store: s.cfg.Store})
		if err != nil {
			return s.writeError(w, err)
		}
		if e, ok := body.(etagged); ok {
			w.Header().Set("ETag", e.etag)
			w.Header().Set("Cache-Control", "no-cache")
			if notModified(r, e.etag) {
				w.WriteHeader(http.StatusNotModified)
				return http.StatusNotModified
			}
			body = e.body
		}
		writeBody(w, status, encode(body), false)
		return status
	}
	if ok, wait := s.keyRecords.allow(p.id, s.cfg.MaxIdempotencyKeysPerHour, time.Now()); !ok {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(wait.Seconds()+0.999))))
		return s.writeError(w, holdfast.Errorf(CodeRateLimited, "this key sent %d Idempotency-Keys this hour, its most: send the request without one, or later", s.cfg.MaxIdempotencyKeysPerHour))
	}
	return s.idempotent(w, r, route, p, key, h)
}

// hourlyCount counts, per caller, what it did in the current hour.
type hourlyCount struct {
	mu sync.Mutex
	m  map[string]*hourWindow
}

type hourWindow struct {
	start time.Time
	n     int
}

// allow counts one for id, or reports how long until its hour is over
// when it has had max already.
func (c *hourlyCount) allow(id string, max int, now time.Time) (bool, time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= 100_000 {
		c.m = map[string]*hourWindow{} // bounded: start again
	}
	w := c.m[id]
	if w == nil || now.Sub(w.start) >= time.Hour {
		w = &hourWindow{start: now}
		c.m[id] = w
	}
	if w.n >= max {
		return false, w.start.Add(time.Hour).Sub(now)
	}
	w.n++
	return true, 0
}

// idempotent runs a change under an Idempotency-Key: the first request with
// a key runs, and its answer — success or refusal — is stored (successes in
// the change's own transaction); the same key and request again gets that
// answer; a different request gets 422; a request while the first runs, 409.
func (s *Server) idempotent(w http.ResponseWriter, r *http.Request, route string, p principal, key string, h handler) int {
	if len(key) > 255 || !printable(key) {
		return s.writeError(w, holdfast.Errorf(holdfast.CodeInvalid, "Idempotency-Key must be 1 to 255 printable ASCII characters"))
	}
	body, err := s.readBody(r)
	if err != nil {
		return s.writeError(w, err)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	sum := sha256.New()
	sum.Write([]byte(r.Method + " " + r.URL.Path + "\n"))
	sum.Write(body)
	fp := hex.EncodeToString(sum.Sum(nil))

	// First run with the key deferred: the store claims it inside the
	// change's own transaction, so a keyed request costs no transaction
	// more than an unkeyed one. Only if the key turns out to be in use is
	// it looked up (a replay, a mismatch, in flight).
	if status, done := s.keyed(w, r, route, p, key, fp, newToken(), true, body, h); done {
		return status
	}
	token, replay, err := s.cfg.Store.BeginIdempotent(r.Context(), p.id, key, fp, 2*s.cfg.RequestTimeout)
	if err != nil {
		return s.writeError(w, err)
	}
	if replay != nil {
		w.Header().Set("Idempotent-Replayed", "true")
		writeBody(w, replay.Status, replay.Body, replay.Status >= 400)
		return replay.Status
	}
	status, _ := s.keyed(w, r, route, p, key, fp, token, false, body, h)
	return status
}

// keyed runs the handler under an idempotency key and stores its answer.
// With deferred, done is false (and nothing is written) when the key
// turns out to be another request's.
func (s *Server) keyed(w http.ResponseWriter, r *http.Request, route string, p principal, key, fp, token string, deferred bool, body []byte, h handler) (int, bool) {
	// The store renders inside its transaction, before the handler
	// returns: routes that create answer 201, the others 200.
	okStatus := successStatus(r)
	rec := &holdfast.Idempotency{Scope: p.id, Key: key, Token: token, Deferred: deferred, Fingerprint: fp,
		Render: func(result any) holdfast.StoredResponse {
			return holdfast.StoredResponse{Status: okStatus, Body: encode(result)}
		},
		RenderError: func(err error) holdfast.StoredResponse {
			prob := problemOf(err, s.log)
			return holdfast.StoredResponse{Status: prob.Status, Body: encode(prob)}
		}}
	r.Body = io.NopCloser(bytes.NewReader(body))
	c := &call{principal: p, store: s.cfg.Store, key: rec}
	status, out, herr := h(r, c)
	if deferred && holdfast.ErrorCode(herr) == holdfast.CodeIdempotencyKeyUsed {
		return 0, false
	}
	// Never leave the key claimed past this request, even if it is cancelled.
	ctx := context.WithoutCancel(r.Context())
	if herr != nil {
		prob := problemOf(herr, s.log)
		switch {
		case prob.Status >= 500, prob.Code == CodeIdempotencyInFlight:
			// Nothing worth replaying (or the key is a retry's now): let
			// a retry run. Answer first: a 503 is often the database
			// being down or frozen, and the client must hear it within
			// the request timeout, not after a clean-up that waits on the
			// same database (seen in the chaos scenario patroni: answers
			// came after the clients had given up). A retry that comes
			// before the key is let go is told idempotency_in_flight and
			// comes again; the key lapses by itself in any case.
			writeProblem(w, prob)
			_ = http.NewResponseController(w).Flush()
			actx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
			defer cancel()
			if err := s.cfg.Store.AbandonIdempotent(actx, p.id, key, token); err != nil {
				s.log.Warn("abandon idempotency key", "err", err)
			}
			return prob.Status, true
		case c.recorded():
			// The store recorded the refusal in the transaction that
			// decided it.
		default:
			// A store spread over several databases records the refusal
			// where the change was tried (its keyed view knows), so that
			// a retry's own claim of the key finds it there.
			finish := s.cfg.Store.FinishIdempotent
			if f, ok := c.keyed.(holdfast.KeyedFinisher); ok {
				finish = f.FinishIdempotent
			}
			err := finish(ctx, p.id, key, fp, token, holdfast.StoredResponse{Status: prob.Status, Body: encode(prob)})
			if deferred && holdfast.ErrorCode(err) == holdfast.CodeIdempotencyKeyUsed {
				// Refused, but the key already has an answer (an earlier
				// request's): that answer is this request's.
				return 0, false
			}
			if err != nil {
				s.log.Warn("store refusal for idempotency key", "err", err)
				if deferred {
					// The key was never looked up: the refusal may be
					// this request's own first try's effect (a cancel
					// that succeeded, its answer lost, refused now as
					// already cancelled). Which it is is unknown until
					// the key is read, so the answer is a retryable busy
					// (seen in the chaos scenario patroni: the database
					// went away between the change and this write).
					prob = problemOf(fmt.Errorf("%w: the refusal could not be checked against the Idempotency-Key: %v", holdfast.ErrBusy, err), s.log)
				}
			}
		}
		writeProblem(w, prob)
		return prob.Status, true
	}
	// The answer recorded in the change's transaction is the one sent,
	// byte for byte as its replays will be, and is not encoded twice.
	if c.keyed != nil && !c.secret {
		if ans, ok := c.keyed.Answer(); ok && ans.Status == status {
			writeBody(w, status, ans.Body, false)
			return status, true
		}
	}
	b := encode(out)
	if !c.recorded() {
		// A change that did not go through c.changes: its answer is not
		// atomic with it. A test keeps this at 0.
		s.metrics.unrecorded.WithLabelValues(route).Inc()
		s.log.Error("a change under an Idempotency-Key did not record its answer in its transaction", "route", route)
		// Store the answer now, after the fact.
		if err := s.cfg.Store.FinishIdempotent(ctx, p.id, key, fp, token, holdfast.StoredResponse{Status: status, Body: b}); err != nil &&
			holdfast.ErrorCode(err) != holdfast.CodeIdempotencyKeyUsed {
			s.log.Warn("store answer for idempotency key", "err", err)
		}
	}
	writeBody(w, status, b, false)
	return status, true
}

func newToken() string { return randomString(16) }

// stream routes a long-lived answer (server-sent events): guarded and
// authenticated as any route, but written by fn itself, not as one JSON
// answer.
func (s *Server) stream(pattern string, adminOnly bool, fn func(http.ResponseWriter, *http.Request, principal)) {
	s.patterns = append(s.patterns, pattern)
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if err := s.guard(r); err != nil {
			s.writeError(w, err)
			return
		}
		p, err := s.authenticate(r)
		if err == nil && adminOnly && p.role != holdfast.RoleAdmin {
			err = holdfast.Errorf(CodeForbidden, "this needs the admin key")
		}
		if err != nil {
			s.writeError(w, err)
			return
		}
		fn(w, r, p)
	})
}

func successStatus(r *http.Request) int {
	switch {
	case r.Method == http.MethodPost && createRoutes[r.Pattern]:
		return http.StatusCreated
	case r.Pattern == "POST /v1/rooms/{id}/join":
		return http.StatusAccepted // a place in a queue, not yet what was asked for
	}
	return http.StatusOK
}

// createRoutes answer 201 Created.
var createRoutes = map[string]bool{
	"POST /v1/pools":                true,
	"POST /v1/groups":               true,
	"POST /v1/groups/{id}/units":    true,
	"POST /v1/holds":                true,
	"POST /v1/bookings":             true,
	"POST /v1/keys":                 true,
	"POST /v1/webhooks":             true,
	"POST /v1/rooms":                true,
	"POST /v1/pools/{id}/waitlist":  true,
	"POST /v1/groups/{id}/waitlist": true,
	// A place moved from a sold-out room: a waitlist entry made.
	"POST /v1/rooms/{id}/tickets/{ticket}/waitlist": true,
}

// isTicketStream is GET /v1/rooms/{id}/tickets/{ticket}/stream.
func isTicketStream(path string) bool {
	parts := strings.Split(path, "/")
	return len(parts) == 7 && parts[1] == "v1" && parts[2] == "rooms" && parts[4] == "tickets" && parts[6] == "stream"
}

// cleanURL refuses a path or query that holds what no identifier, cursor
// or token may: invalid UTF-8, NUL or another control character. On
// PostgreSQL such text fails inside the database (SQLSTATE 22021): it
// must be a 400 at the edge, for every route alike.
func cleanURL(r *http.Request) error {
	if !cleanText(r.URL.Path) {
		return holdfast.Errorf(holdfast.CodeInvalid, "the path holds bytes no identifier may (NUL, control characters or invalid UTF-8)")
	}
	if r.URL.RawQuery == "" {
		return nil // most requests: nothing more to parse
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return holdfast.Errorf(holdfast.CodeInvalid, "the query string is malformed")
	}
	for k, vs := range q {
		for _, v := range append(vs, k) {
			if !cleanText(v) {
				return holdfast.Errorf(holdfast.CodeInvalid, "query parameter %q holds bytes no value may (NUL, control characters or invalid UTF-8)", k)
			}
		}
	}
	return nil
}

// cleanText reports whether s is valid UTF-8 without control characters.
func cleanText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) {
			return false
		}
	}
	return true
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return s != ""
}

func (s *Server) writeError(w http.ResponseWriter, err error) int {
	p := problemOf(err, s.log)
	writeProblem(w, p)
	return p.Status
}

// encode is the one JSON encoding of every body, so a stored answer and
// the first answer are byte for byte the same.
func encode(v any) []byte {
	if b, ok := v.(encoded); ok {
		return b
	}
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(Problem{Status: 500, Code: holdfast.CodeInternal, Title: titles[holdfast.CodeInternal]})
	}
	return append(b, '\n')
}

// encoded is an answer's JSON made once for many requests (a seat map
// that many viewers read), sent as it is.
type encoded []byte

func writeBody(w http.ResponseWriter, status int, body []byte, problem bool) {
	ct := "application/json"
	if problem {
		ct = "application/problem+json"
	}
	if status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests {
		if w.Header().Get("Retry-After") == "" {
			w.Header().Set("Retry-After", "1")
		}
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	// A length, so that an answer flushed before the handler returns is
	// complete for the client (see keyed: a 503 goes out before the
	// clean-up after it), not a chunked body that ends only then.
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func (s *Server) routes() {
	s.handle("GET /healthz", public, func(*http.Request, *call) (int, any, error) {
		return http.StatusOK, map[string]string{"status": "ok"}, nil
	})
	s.handle("GET /readyz", public, func(r *http.Request, _ *call) (int, any, error) {
		if err := s.cfg.Store.Ready(r.Context()); err != nil {
			s.log.Warn("not ready", "err", err)
			return 0, nil, holdfast.Errorf(CodeUnavailableService, "the database is not ready")
		}
		return http.StatusOK, map[string]string{"status": "ready"}, nil
	})
	s.patterns = append(s.patterns, "GET /metrics", "GET /openapi.json")
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{}))
	s.mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) {
		writeBody(w, http.StatusOK, openAPI, false)
	})

	s.handle("POST /v1/pools", admin, s.createPool)
	s.handle("GET /v1/pools", client, s.listPools)
	s.handle("GET /v1/pools/{id}", client, s.getPool)
	s.handle("PATCH /v1/pools/{id}", admin, s.patchPool)
	s.handle("POST /v1/pools/{id}/allocations", admin, s.allocate)
	s.handle("PATCH /v1/pools/{id}/allocations/{channel}", admin, s.allocate)
	s.handle("DELETE /v1/pools/{id}/allocations/{channel}", admin, s.endAllocation)
	s.handle("POST /v1/groups/{id}/allocations", admin, s.allocateUnits)
	s.handle("DELETE /v1/groups/{id}/allocations/{channel}", admin, s.endUnitAllocation)
	s.handle("POST /v1/groups", admin, s.createGroup)
	s.handle("GET /v1/groups/{id}", client, s.getGroup)
	s.handle("PATCH /v1/groups/{id}", admin, s.patchGroup)
	s.handle("POST /v1/groups/{id}/units", admin, s.addUnits)
	s.handle("GET /v1/groups/{id}/units", client, s.listUnits)
	s.handle("GET /v1/groups/{id}/layout", client, s.getGroupLayout)
	s.handle("POST /v1/holds", client, s.createHold)
	s.handle("GET /v1/holds", client, s.listHolds)
	s.handle("GET /v1/holds/{id}", client, s.getHold)
	s.handle("POST /v1/holds/{id}/confirm", client, s.confirm)
	s.handle("POST /v1/holds/{id}/release", client, s.release)
	s.handle("POST /v1/holds/{id}/extend", client, s.extend)
	s.handle("POST /v1/holds/{id}/transfer", client, s.transfer)
	s.handle("POST /v1/holds/{id}/exchange", client, s.exchange)
	s.handle("POST /v1/holds/{id}/cancel", client, s.cancel)
	s.handle("POST /v1/holds/{id}/complete", client, s.complete)
	s.handle("POST /v1/bookings", client, s.book)
	s.handle("GET /v1/payments", admin, s.listPayments)
	s.handle("GET /v1/payments/{ref}", client, s.getPayment)
	s.handle("POST /v1/payments/{ref}/refunded", admin, s.paymentRefunded)
	s.handle("GET /v1/events", admin, s.events)
	s.handle("GET /v1/events/stream-token", admin, s.streamToken)
	s.handle("POST /v1/keys", admin, s.createKey)
	s.handle("GET /v1/keys", admin, s.listKeys)
	s.handle("GET /v1/keys/{id}", admin, s.getKey)
	s.handle("DELETE /v1/keys/{id}", admin, s.revokeKey)
	s.handle("PATCH /v1/keys/{id}", admin, s.patchKey)
	s.handle("POST /v1/webhooks", admin, s.createWebhook)
	s.handle("GET /v1/webhooks", admin, s.listWebhooks)
	s.handle("GET /v1/webhooks/{id}", admin, s.getWebhook)
	s.handle("PATCH /v1/webhooks/{id}", admin, s.patchWebhook)
	s.handle("DELETE /v1/webhooks/{id}", admin, s.deleteWebhook)
	s.handle("GET /v1/webhooks/{id}/deliveries", admin, s.listDeliveries)
	s.handle("POST /v1/webhooks/{id}/deliveries/{delivery}/retry", admin, s.retryDelivery)
	s.handle("POST /v1/rooms", admin, s.createRoom)
	s.handle("GET /v1/rooms", admin, s.listRooms)
	s.handle("GET /v1/rooms/{id}", client, s.getRoom)
	s.handle("POST /v1/rooms/{id}/join", client, s.joinRoom)
	s.handle("GET /v1/rooms/{id}/tickets/{ticket}", client, s.getTicket)
	s.handle("GET /v1/rooms/{id}/draw", client, s.getDraw)
	s.handle("POST /v1/rooms/{id}/tickets/{ticket}/waitlist", client, s.ticketToWaitlist)
	s.handle("POST /v1/pools/{id}/waitlist", client, s.joinWaitlist)
	s.handle("GET /v1/pools/{id}/waitlist", admin, s.listWaitlist)
	s.handle("GET /v1/pools/{id}/waitlist/{entry}", client, s.getWaitlistEntry)
	s.handle("DELETE /v1/pools/{id}/waitlist/{entry}", client, s.leaveWaitlist)
	s.handle("POST /v1/groups/{id}/waitlist", client, s.joinGroupWaitlist)
	s.handle("GET /v1/groups/{id}/waitlist", admin, s.listGroupWaitlist)
	s.handle("GET /v1/groups/{id}/waitlist/{entry}", client, s.getGroupWaitlistEntry)
	s.handle("DELETE /v1/groups/{id}/waitlist/{entry}", client, s.leaveGroupWaitlist)
	s.handle("GET /v1/audit", admin, s.audit)
	s.handle("POST /v1/lab/race", admin, s.race)
	s.stream("GET /v1/events/stream", true, func(w http.ResponseWriter, r *http.Request, p principal) {
		done, err := s.openStream(p)
		if err != nil {
			w.Header().Set("Retry-After", "5")
			s.writeError(w, err)
			return
		}
		defer done()
		s.eventStream(w, r, p)
	})
	s.stream("GET /v1/rooms/{id}/tickets/{ticket}/stream", false, s.ticketStream)
	s.webRoutes()

	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// The path may exist under another method: that is a 405, with
		// the methods it does answer.
		var allow []string
		for _, m := range []string{"GET", "POST", "PATCH", "PUT", "DELETE"} {
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, pattern := s.mux.Handler(probe); pattern != "/" && m != r.Method {
				allow = append(allow, m)
			}
		}
		var err error
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			err = holdfast.Errorf(CodeMethodNotAllowed, "%s answers %s, not %s", r.URL.Path, strings.Join(allow, ", "), r.Method)
		} else {
			err = holdfast.Errorf(holdfast.CodeNotFound, "no route %s %s", r.Method, r.URL.Path)
		}
		s.metrics.observe("unmatched", s.writeError(w, err), 0)
	})
}
