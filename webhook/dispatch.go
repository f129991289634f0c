// Package webhook delivers holdfast's outbox events to the endpoints an
// admin registered, signed per the Standard Webhooks specification
// (https://www.standardwebhooks.com; package webhook/signature signs and,
// for receivers written in Go, verifies): at least once, in order per
// hold, with bounded, time-limited, retried calls that never touch the
// booking path.
package webhook

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/internal/loop"
	"github.com/holdfast/holdfast/webhook/signature"
)

// Queue is what the dispatcher needs from the store: the deliveries,
// queued from the feed, claimed under a lease, finished.
type Queue interface {
	QueueDeliveries(ctx context.Context, now time.Time, limit int) (int, error)
	ClaimDeliveries(ctx context.Context, c holdfast.DeliveryClaim) ([]holdfast.Delivery, error)
	FinishDelivery(ctx context.Context, r holdfast.DeliveryResult) error
	DeliveryBacklog(ctx context.Context, now time.Time) (holdfast.DeliveryBacklog, error)
}

// DefaultSchedule is the wait before each retry after a failed attempt:
// six attempts in the first quarter hour, then hours apart; after the
// last retry fails (about 22 h after the first attempt) the delivery is
// failed.
var DefaultSchedule = []time.Duration{
	5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute,
	time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour,
}

// Config configures a Dispatcher. Zero values are the documented defaults.
type Config struct {
	Queue  Queue
	Logger *slog.Logger
	// Clock stamps attempts and schedules retries (default time.Now).
	// Timing is all it decides: which server sends is decided by the
	// lease, which the database's clock times.
	Clock holdfast.Clock
	// Schedule is the wait before each retry (default DefaultSchedule);
	// Jitter spreads each wait (default: up to ±20% at random).
	Schedule []time.Duration
	Jitter   func(time.Duration) time.Duration
	// Timeout bounds a whole call, connection to the last byte read
	// (default 10 s); ConnectTimeout the connection and TLS handshake
	// each (default 3 s).
	Timeout, ConnectTimeout time.Duration
	// MaxInFlight bounds the calls this server makes at once (default
	// 32), except that an endpoint with none in flight anywhere always
	// gets one; MaxPerWebhook bounds those to one endpoint, over every
	// server (default 8). A slow endpoint holds at most its own share,
	// and slow endpoints together never starve a healthy one.
	MaxInFlight, MaxPerWebhook int
	// Lease is how long a claimed delivery stays this server's before
	// another may send it (default Timeout*2 + 10 s): a server that dies
	// mid-call leaves its deliveries to the others after it.
	Lease time.Duration
	// Poll is how often the feed and the queue are read when idle
	// (default 500 ms).
	Poll time.Duration
	// AllowPrivate lets deliveries reach loopback, private and link-local
	// addresses. Off, a webhook URL (which an admin can aim anywhere)
	// cannot make the server call into its own network.
	AllowPrivate bool
	// MaxResponseBody is how much of an answer is read (default 64 KiB);
	// the rest is dropped with the connection.
	MaxResponseBody int64
	// MaxQueued bounds the deliveries queued (as rows) per webhook
	// (default 1,000); later events wait in the feed until there is room,
	// so a dead endpoint's backlog costs no write per event.
	MaxQueued int
	// Registerer receives the dispatcher's metrics (optional).
	Registerer prometheus.Registerer
}

// Dispatcher sends deliveries. Run it on every server: they share the
// queue through the database.
type Dispatcher struct {
	cfg      Config
	log      *slog.Logger
	client   *http.Client
	lease    string
	inFlight atomic.Int64
	wake     chan struct{}
	wg       sync.WaitGroup

	life *loop.Loop // Run, between Start and Stop

	results    *prometheus.CounterVec
	attempts   *prometheus.CounterVec
	depth      prometheus.Gauge
	oldest     prometheus.Gauge
	inFlightG  prometheus.GaugeFunc
	lastGauges time.Time
}

// New returns a dispatcher; Start (or Run) starts it.
func New(cfg Config) *Dispatcher {
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	if cfg.Schedule == nil {
		cfg.Schedule = DefaultSchedule
	}
	if cfg.Jitter == nil {
		cfg.Jitter = func(d time.Duration) time.Duration {
			return d + time.Duration((rand.Float64()*0.4-0.2)*float64(d))
		}
	}
	cfg.Timeout = cmp.Or(cfg.Timeout, 10*time.Second)
	cfg.ConnectTimeout = cmp.Or(cfg.ConnectTimeout, 3*time.Second)
	cfg.MaxInFlight = cmp.Or(cfg.MaxInFlight, 32)
	cfg.MaxPerWebhook = cmp.Or(cfg.MaxPerWebhook, 8)
	cfg.Lease = cmp.Or(cfg.Lease, 2*cfg.Timeout+10*time.Second)
	cfg.Poll = cmp.Or(cfg.Poll, 500*time.Millisecond)
	cfg.MaxResponseBody = cmp.Or(cfg.MaxResponseBody, 64<<10)
	cfg.MaxQueued = cmp.Or(cfg.MaxQueued, 1000)
	d := &Dispatcher{cfg: cfg, log: cfg.Logger, lease: holdfast.NewID("lease_", time.Now()), wake: make(chan struct{}, 1)}
	d.life = loop.Go(func(ctx context.Context) { _ = d.Run(ctx) })
	d.client = newClient(cfg)
	d.results = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "holdfast_webhook_deliveries_total",
		Help: "Webhook delivery attempts by result: succeeded, pending (failed, will be retried: the delivery stays pending, as GET …/deliveries?status=pending shows) or failed (the schedule ran out)."}, []string{"result"})
	d.attempts = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "holdfast_webhook_attempts_total",
		Help: "Webhook calls by webhook and outcome: 2xx, 3xx, 4xx, 5xx, timeout, refused (a private address) or error."}, []string{"webhook", "outcome"})
	d.depth = prometheus.NewGauge(prometheus.GaugeOpts{Name: "holdfast_webhook_queue_depth", Help: "Webhook deliveries still to be sent (queued or waiting in the feed), over every server."})
	d.oldest = prometheus.NewGauge(prometheus.GaugeOpts{Name: "holdfast_webhook_oldest_pending_seconds", Help: "Age of the oldest event still to be sent to a webhook."})
	d.inFlightG = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "holdfast_webhook_in_flight", Help: "Webhook calls this server has in flight."},
		func() float64 { return float64(d.inFlight.Load()) })
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(d.results, d.attempts, d.depth, d.oldest, d.inFlightG)
	}
	return d
}

// errPrivate refuses a connection to an address AllowPrivate guards.
var errPrivate = errors.New("the address is loopback, private or link-local (serve --webhook-allow-private allows it)")

func newClient(cfg Config) *http.Client {
	dialer := &net.Dialer{Timeout: cfg.ConnectTimeout}
	if !cfg.AllowPrivate {
		// Checked on the address actually dialled, after DNS: a name that
		// resolves to 127.0.0.1 (or changes to it) is refused too.
		dialer.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil || Private(ap.Addr()) {
				return errPrivate
			}
			return nil
		}
	}
	return &http.Client{
		Timeout: cfg.Timeout,
		Transport: &http.Transport{
			Proxy:                 nil, // no proxy from the environment: a delivery goes where its URL says
			DialContext:           dialer.DialContext,
			TLSHandshakeTimeout:   cfg.ConnectTimeout,
			ResponseHeaderTimeout: cfg.Timeout,
			MaxIdleConnsPerHost:   cfg.MaxPerWebhook,
			MaxConnsPerHost:       cfg.MaxInFlight,
			IdleConnTimeout:       90 * time.Second,
			DisableCompression:    true,
		},
		// A redirect is an answer, not a 2xx: it is not followed (it
		// could lead anywhere), and the attempt fails.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Private reports whether a is an address a webhook may not reach unless
// private destinations are allowed: loopback, private, link-local,
// unspecified, multicast, carrier-grade NAT and the other special ranges.
func Private(a netip.Addr) bool {
	a = a.Unmap()
	if a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() || !a.IsValid() {
		return true
	}
	for _, p := range specialRanges {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

var specialRanges = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),      // this network
	netip.MustParsePrefix("100.64.0.0/10"),  // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),   // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"),  // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),    // reserved
	netip.MustParsePrefix("64:ff9b::/96"),   // NAT64, which can reach any IPv4 address
	netip.MustParsePrefix("2001:db8::/32"),  // documentation
	netip.MustParsePrefix("fec0::/10"),      // site-local
	netip.MustParsePrefix("::ffff:0:0/96"),  // IPv4-mapped (unmapped above; kept for safety)
	netip.MustParsePrefix("169.254.0.0/16"), // link-local, cloud metadata
	netip.MustParsePrefix("255.255.255.255/32"),
}

// CheckURL checks a webhook URL before it is stored: its form, and unless
// allowPrivate, that it does not name a private address or localhost
// outright. (A name resolving to one is refused when it is dialled.)
func CheckURL(raw string, allowPrivate bool) error {
	if err := holdfast.ValidateWebhookURL(raw); err != nil {
		return err
	}
	if allowPrivate {
		return nil
	}
	u, _ := url.Parse(raw)
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return holdfast.Errorf(holdfast.CodeInvalid, "url names localhost: %v", errPrivate)
	}
	if a, err := netip.ParseAddr(host); err == nil && Private(a) {
		return holdfast.Errorf(holdfast.CodeInvalid, "url names %s: %v", a, errPrivate)
	}
	return nil
}

func (d *Dispatcher) now() time.Time { return d.cfg.Clock.Now() }

// Start runs the dispatcher in the background until Stop, beyond ctx's
// cancellation (package service starts it with the other background
// services).
func (d *Dispatcher) Start(ctx context.Context) error { return d.life.Start(ctx) }

// Stop ends what Start began and waits for the calls in flight, or for
// ctx. A dispatcher never started stops at once.
func (d *Dispatcher) Stop(ctx context.Context) error { return d.life.Stop(ctx) }

// Run queues, claims and sends deliveries until ctx ends, then waits for
// the calls in flight (which ctx cancels: their leases run out and
// another server sends them).
func (d *Dispatcher) Run(ctx context.Context) error {
	t := time.NewTicker(d.cfg.Poll)
	defer t.Stop()
	defer d.wg.Wait()
	for {
		if err := d.Step(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("webhook dispatcher", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-d.wake:
		}
	}
}

// Step runs one round: queue the new events, claim what is due and fits
// in the bounds, and start sending it.
func (d *Dispatcher) Step(ctx context.Context) error {
	now := d.now()
	if _, err := d.cfg.Queue.QueueDeliveries(ctx, now, d.cfg.MaxQueued); err != nil {
		return fmt.Errorf("queueing deliveries: %w", err)
	}
	if now.Sub(d.lastGauges) >= 5*time.Second {
		d.lastGauges = now
		if b, err := d.cfg.Queue.DeliveryBacklog(ctx, now); err == nil {
			d.depth.Set(float64(b.Pending))
			d.oldest.Set(b.Oldest.Seconds())
		}
	}
	// Claimed even with no slot free: an endpoint with nothing in flight
	// gets one (the claim's rule), so slow endpoints never starve others.
	free := max(0, d.cfg.MaxInFlight-int(d.inFlight.Load()))
	claimed, err := d.cfg.Queue.ClaimDeliveries(ctx, holdfast.DeliveryClaim{
		Lease: d.lease, Now: now, For: d.cfg.Lease, Limit: free, PerWebhook: d.cfg.MaxPerWebhook})
	for _, del := range claimed {
		d.inFlight.Add(1)
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			d.send(ctx, del)
			d.inFlight.Add(-1)
			select { // the next delivery of its hold may now go
			case d.wake <- struct{}{}:
			default:
			}
		}()
	}
	if err != nil {
		return fmt.Errorf("claiming deliveries: %w", err)
	}
	return nil
}

// Wait waits for the calls in flight.
func (d *Dispatcher) Wait() { d.wg.Wait() }

// send makes one attempt and records it.
func (d *Dispatcher) send(ctx context.Context, del holdfast.Delivery) {
	code, errText, outcome := d.call(ctx, del)
	if ctx.Err() != nil {
		return // shutting down: the lease runs out and another server sends it
	}
	d.attempts.WithLabelValues(del.Webhook, outcome).Inc()
	now := d.now()
	r := holdfast.DeliveryResult{Webhook: del.Webhook, ID: del.ID, Lease: del.Lease, Now: now,
		OK: outcome == "2xx", StatusCode: code, Error: errText}
	result := "succeeded"
	if !r.OK {
		if del.Try <= len(d.cfg.Schedule) {
			r.Next, result = now.Add(d.cfg.Jitter(d.cfg.Schedule[del.Try-1])), "pending"
		} else {
			result = "failed"
		}
	}
	// Recorded even as the server stops: the attempt was made.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := d.cfg.Queue.FinishDelivery(fctx, r); err != nil {
		d.log.Warn("webhook delivery not recorded; it will be sent again after its lease", "webhook", del.Webhook, "delivery", del.ID, "err", err)
		return
	}
	d.results.WithLabelValues(result).Inc()
	if result == "failed" {
		d.log.Warn("webhook delivery failed for good", "webhook", del.Webhook, "delivery", del.ID, "attempts", del.Attempts, "last_error", errText)
	}
}

// call posts the delivery, signed, and reports the answer's status, an
// error text for a failure, and the outcome for metrics.
func (d *Dispatcher) call(ctx context.Context, del holdfast.Delivery) (code int, errText, outcome string) {
	now := d.now()
	sig, err := signature.Sign(del.Secret, del.MessageID, now, del.Body)
	if err != nil {
		return 0, err.Error(), "error"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, del.URL, bytes.NewReader(del.Body))
	if err != nil {
		return 0, err.Error(), "error"
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "holdfast-webhooks/1")
	req.Header.Set(signature.HeaderID, del.MessageID)
	req.Header.Set(signature.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(signature.HeaderSignature, sig)
	resp, err := d.client.Do(req)
	if err != nil {
		var ne net.Error
		switch {
		case errors.Is(err, errPrivate):
			return 0, errPrivate.Error(), "refused"
		case errors.As(err, &ne) && ne.Timeout():
			return 0, fmt.Sprintf("no answer within %s", d.cfg.Timeout), "timeout"
		}
		return 0, err.Error(), "error"
	}
	// Read a bounded part of the answer, within the same timeout, so the
	// connection can be reused; a longer one is dropped with it.
	_, rerr := io.Copy(io.Discard, io.LimitReader(resp.Body, d.cfg.MaxResponseBody))
	resp.Body.Close()
	code = resp.StatusCode
	switch {
	case code >= 200 && code <= 299 && rerr == nil:
		return code, "", "2xx"
	case code >= 200 && code <= 299:
		return code, "reading the answer: " + rerr.Error(), "timeout"
	case code >= 300 && code <= 399:
		return code, fmt.Sprintf("answered %d (redirects are not followed)", code), "3xx"
	case code >= 400 && code <= 499:
		return code, fmt.Sprintf("answered %d", code), "4xx"
	}
	return code, fmt.Sprintf("answered %d", code), "5xx"
}
