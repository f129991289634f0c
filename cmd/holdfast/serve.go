package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/holdfast/holdfast"
	hfhttp "github.com/holdfast/holdfast/http"
	"github.com/holdfast/holdfast/internal/demo"
	"github.com/holdfast/holdfast/internal/lab"
	"github.com/holdfast/holdfast/internal/labrun"
	"github.com/holdfast/holdfast/internal/opendb"
	"github.com/holdfast/holdfast/postgres"
	"github.com/holdfast/holdfast/service"
	"github.com/holdfast/holdfast/webhook"
)

type serveFlags struct {
	db               dbFlags
	addr             string
	adminKey         string
	adminKeyFile     string
	demo             bool
	allowUnsafe      bool
	rateLimit        float64
	ipRateLimit      float64
	retainEvents     time.Duration
	retainHolds      time.Duration
	maxStreams       int
	maxStreamsPerKey int
	maxIdemPerHour   int
	holdTTL          time.Duration
	maxTTL           time.Duration
	sweepInterval    time.Duration
	requestTimeout   time.Duration
	shutdownGrace    time.Duration
	clockSkew        time.Duration
	think            time.Duration
	webhooks         webhookFlags
}

// webhookFlags configure the webhook dispatcher every server runs.
type webhookFlags struct {
	allowPrivate   bool
	timeout        time.Duration
	maxInFlight    int
	maxPerEndpoint int
	// schedule replaces the retry schedule (fault injection: the chaos
	// harness cannot wait hours between retries).
	schedule []time.Duration
}

func serveCmd(e env) *cobra.Command {
	var f serveFlags
	c := &cobra.Command{
		Use:   "serve",
		Short: "Run the HTTP API and the hold sweeper",
		Long: `serve runs holdfast's HTTP API v1, applying migrations at start and running
the hold sweeper. Several instances may share one PostgreSQL database.`,
		Example: `  holdfast serve                                   # 127.0.0.1:8080, ./holdfast.db
  holdfast serve --db postgres://localhost/holdfast --addr 127.0.0.1:9000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return serve(cmd.Context(), e, f) },
	}
	fs := c.Flags()
	f.db.register(fs, e)
	fs.StringVar(&f.addr, "addr", envOr(e, "HOLDFAST_ADDR", "127.0.0.1:8080"), "listen address (env HOLDFAST_ADDR)")
	secretVar(fs, &f.adminKey, "admin-key", e, "HOLDFAST_ADMIN_KEY", "the admin's bearer key; without it the server runs open, on loopback only (prefer the env or --admin-key-file: argv is visible to every user of the machine)")
	fs.StringVar(&f.adminKeyFile, "admin-key-file", envOr(e, "HOLDFAST_ADMIN_KEY_FILE", ""), "read the admin key from this file (one line) (env HOLDFAST_ADMIN_KEY_FILE)")
	fs.BoolVar(&f.allowUnsafe, "allow-unsafe", false, "allow --strategy unsafe, which oversells on purpose (for demonstrations only)")
	fs.BoolVar(&f.demo, "demo", envBool(e, "HOLDFAST_DEMO", false), "create a sample concert pool, seat map and rider fleet if absent (env HOLDFAST_DEMO=true)")
	fs.Float64Var(&f.rateLimit, "rate-limit", envFloat(e, "HOLDFAST_RATE_LIMIT", 0), "requests per second per API key, 0 for none; with --ip-rate-limit and --max-streams the only sources of 429s (env HOLDFAST_RATE_LIMIT)")
	fs.Float64Var(&f.ipRateLimit, "ip-rate-limit", envFloat(e, "HOLDFAST_IP_RATE_LIMIT", 0), "requests per second per client address, before authentication, 0 for none (env HOLDFAST_IP_RATE_LIMIT)")
	f.retainEvents = envDays(e, "HOLDFAST_RETAIN_EVENTS", 30*24*time.Hour)
	f.retainHolds = envDays(e, "HOLDFAST_RETAIN_HOLDS", 90*24*time.Hour)
	fs.Var(days{&f.retainEvents}, "retain-events", "how long outbox events are kept, e.g. 30d or 720h; 0 keeps them for ever (env HOLDFAST_RETAIN_EVENTS)")
	fs.Var(days{&f.retainHolds}, "retain-holds", "how long holds that ended without a booking (released, expired, cancelled) are kept; 0 for ever (env HOLDFAST_RETAIN_HOLDS)")
	fs.IntVar(&f.maxStreams, "max-streams", envInt(e, "HOLDFAST_MAX_STREAMS", 5000), "event and ticket streams open at once, in all; at most half the process's open-file limit (env HOLDFAST_MAX_STREAMS)")
	fs.IntVar(&f.maxIdemPerHour, "max-idempotency-keys-per-hour", envInt(e, "HOLDFAST_MAX_IDEMPOTENCY_KEYS_PER_HOUR", 100000), "Idempotency-Keys one API key may send to a server in an hour; past it 429 rate_limited (env HOLDFAST_MAX_IDEMPOTENCY_KEYS_PER_HOUR)")
	fs.IntVar(&f.maxStreamsPerKey, "max-streams-per-key", envInt(e, "HOLDFAST_MAX_STREAMS_PER_KEY", 100), "event and ticket streams one client key may have open (env HOLDFAST_MAX_STREAMS_PER_KEY)")
	fs.DurationVar(&f.holdTTL, "hold-ttl", envDuration(e, "HOLDFAST_HOLD_TTL", 10*time.Minute), "default hold TTL (env HOLDFAST_HOLD_TTL)")
	fs.DurationVar(&f.maxTTL, "max-hold-ttl", envDuration(e, "HOLDFAST_MAX_HOLD_TTL", time.Hour), "longest TTL a hold may ask for (env HOLDFAST_MAX_HOLD_TTL)")
	fs.DurationVar(&f.sweepInterval, "sweep-interval", envDuration(e, "HOLDFAST_SWEEP_INTERVAL", time.Second), "how often expired holds are swept (env HOLDFAST_SWEEP_INTERVAL)")
	fs.DurationVar(&f.requestTimeout, "request-timeout", envDuration(e, "HOLDFAST_REQUEST_TIMEOUT", 10*time.Second), "deadline for each request (env HOLDFAST_REQUEST_TIMEOUT)")
	fs.DurationVar(&f.shutdownGrace, "shutdown-grace", envDuration(e, "HOLDFAST_SHUTDOWN_GRACE", 30*time.Second), "how long in-flight requests may finish on shutdown (env HOLDFAST_SHUTDOWN_GRACE)")
	fs.BoolVar(&f.webhooks.allowPrivate, "webhook-allow-private", envBool(e, "HOLDFAST_WEBHOOK_ALLOW_PRIVATE", false), "let webhook URLs reach loopback, private and link-local addresses; off, a webhook cannot make this server call into its own network (env HOLDFAST_WEBHOOK_ALLOW_PRIVATE)")
	fs.DurationVar(&f.webhooks.timeout, "webhook-timeout", envDuration(e, "HOLDFAST_WEBHOOK_TIMEOUT", 10*time.Second), "a webhook call's deadline, connection to answer; a 2xx within it is success (env HOLDFAST_WEBHOOK_TIMEOUT)")
	fs.IntVar(&f.webhooks.maxInFlight, "webhook-max-in-flight", envInt(e, "HOLDFAST_WEBHOOK_MAX_IN_FLIGHT", 32), "webhook calls this server makes at once (env HOLDFAST_WEBHOOK_MAX_IN_FLIGHT)")
	fs.IntVar(&f.webhooks.maxPerEndpoint, "webhook-max-per-endpoint", envInt(e, "HOLDFAST_WEBHOOK_MAX_PER_ENDPOINT", 8), "webhook calls in flight to one endpoint, over every server (env HOLDFAST_WEBHOOK_MAX_PER_ENDPOINT)")
	fs.DurationSliceVar(&f.webhooks.schedule, "webhook-retry-schedule", nil, "the waits between webhook retries (testing)")
	_ = fs.MarkHidden("webhook-retry-schedule")
	// Fault injection for the chaos harness: this server's wall clock, off
	// by the given amount, must change no outcome (see holdfast.Clock).
	fs.DurationVar(&f.clockSkew, "clock-skew", 0, "shift this server's wall clock (fault injection)")
	_ = fs.MarkHidden("clock-skew")
	// And a pause between a strategy's read and its write, so that the
	// deliberately unsafe build loses its race on SQLite too.
	fs.DurationVar(&f.think, "think", 0, "pause between a strategy's read and its write (fault injection)")
	_ = fs.MarkHidden("think")
	return c
}

func serve(ctx context.Context, e env, f serveFlags) error {
	log := slog.New(slog.NewJSONHandler(e.stderr, nil))
	cfg := holdfast.Config{DefaultTTL: f.holdTTL, MaxTTL: f.maxTTL}
	if f.holdTTL <= 0 || f.maxTTL <= 0 || f.holdTTL > f.maxTTL {
		return &exitError{code: 2, err: fmt.Errorf("--hold-ttl must be positive and at most --max-hold-ttl")}
	}
	var clock holdfast.Clock
	if skew := f.clockSkew; skew != 0 {
		clock = func() time.Time { return time.Now().Add(skew) }
		log.Warn("this server's wall clock is shifted (fault injection)", "skew", skew.String())
	}
	if st, _ := holdfast.ParseStrategy(f.db.strategy); st == holdfast.Unsafe && !f.allowUnsafe {
		return &exitError{code: 2, err: fmt.Errorf("--strategy unsafe oversells on purpose; serve refuses it without --allow-unsafe")}
	}
	if f.adminKeyFile != "" {
		if f.adminKey != "" {
			return &exitError{code: 2, err: fmt.Errorf("give the admin key once: --admin-key or --admin-key-file")}
		}
		b, err := os.ReadFile(f.adminKeyFile)
		if err != nil {
			return &exitError{code: 2, err: fmt.Errorf("--admin-key-file: %w", err)}
		}
		f.adminKey = strings.TrimRight(string(b), "\r\n")
		if f.adminKey == "" {
			// An empty file would start the server open, with admin rights
			// for anyone: a mistake, never what a key file means.
			return &exitError{code: 2, err: fmt.Errorf("--admin-key-file %s is empty: put the admin key in it (make one with: openssl rand -hex 24)", f.adminKeyFile)}
		}
	}
	if f.adminKey != "" && len(f.adminKey) < 16 {
		return &exitError{code: 2, err: fmt.Errorf("the admin key must be at least 16 characters (make one with: openssl rand -hex 24)")}
	}
	if f.adminKey != "" && distinct(f.adminKey) < 4 {
		return &exitError{code: 2, err: fmt.Errorf("the admin key has fewer than 4 distinct characters: anyone could guess it (make one with: openssl rand -hex 24)")}
	}
	if strings.IndexFunc(f.adminKey, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		return &exitError{code: 2, err: fmt.Errorf("the admin key must not contain spaces or control characters")}
	}
	if f.webhooks.timeout <= 0 || f.webhooks.maxInFlight < 1 || f.webhooks.maxPerEndpoint < 1 {
		return &exitError{code: 2, err: fmt.Errorf("--webhook-timeout, --webhook-max-in-flight and --webhook-max-per-endpoint must be positive")}
	}
	if f.adminKey == "" && !loopback(f.addr) {
		return &exitError{code: 2, err: fmt.Errorf("refusing to serve on %s without --admin-key: only a loopback address may run open", f.addr)}
	}
	o, err := f.db.options(cfg)
	if err != nil {
		return err
	}
	o.Logger, o.Clock, o.Think = log, clock, f.think
	store, err := opendb.Open(ctx, o)
	if err != nil {
		return err
	}
	defer store.Close()
	if f.demo {
		if err := demo.Seed(ctx, store); err != nil {
			return fmt.Errorf("demo data: %w", err)
		}
	}
	reg := newRegistry(store)

	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		return err
	}
	api := hfhttp.NewServer(hfhttp.Config{
		Store: store, Logger: log, RequestTimeout: f.requestTimeout,
		AdminKey: f.adminKey, RateLimit: f.rateLimit, IPRateLimit: f.ipRateLimit, MaxStreams: streamCap(f.maxStreams, log), MaxStreamsPerKey: f.maxStreamsPerKey, MaxIdempotencyKeysPerHour: f.maxIdemPerHour, Registry: reg,
		Race: raceFunc(f.db), WebhookAllowPrivate: f.webhooks.allowPrivate,
	})
	srv := &http.Server{
		Handler:           api,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      f.requestTimeout + 5*time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	// Event streams never go idle: they end when shutdown starts, telling
	// their viewers where to resume.
	srv.RegisterOnShutdown(api.Close)

	// The background services (sweeper, monitor, webhooks, rooms and
	// waitlists) live as long as the server: they stop after the last
	// request has finished, and before the store closes (deferred calls
	// run last in, first out).
	bg := service.Background(store, service.Config{Logger: log, Clock: clock, SweepInterval: f.sweepInterval,
		Retention: holdfast.Retention{Events: f.retainEvents, Holds: f.retainHolds}, Registerer: reg,
		Webhooks: webhook.Config{Timeout: f.webhooks.timeout, Schedule: f.webhooks.schedule, MaxInFlight: f.webhooks.maxInFlight,
			MaxPerWebhook: f.webhooks.maxPerEndpoint, AllowPrivate: f.webhooks.allowPrivate}})
	if err := bg.Start(ctx); err != nil {
		return err
	}
	defer bg.Stop(context.Background())

	if f.adminKey == "" {
		fmt.Fprintf(e.stderr, "WARNING: no --admin-key: the API is open to anyone who can reach %s, with admin rights. Fine on loopback for trying holdfast; never expose it.\n", ln.Addr())
	}
	fmt.Fprintf(e.stdout, "holdfast listening on http://%s (%s, strategy %s)\n", ln.Addr(), opendb.Describe(f.db.db), f.db.strategy)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// Graceful: stop accepting, let in-flight requests finish (each runs in
	// one transaction, so none is left half-done), then close the store.
	// Said once the listener is closed (Shutdown closes it, then runs
	// the shutdown hooks): from this line on, no connection is accepted.
	srv.RegisterOnShutdown(func() { log.Info("shutting down", "grace", f.shutdownGrace) })
	shutCtx, cancel := context.WithTimeout(context.Background(), f.shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	fmt.Fprintln(e.stdout, "holdfast stopped")
	return nil
}

// loopback reports whether addr only listens on a loopback interface.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// raceFunc runs the page's race: the classic lab demo on throwaway
// databases (temporary SQLite files, or fresh schemas dropped after on the
// server's PostgreSQL), never the server's own tables.
func raceFunc(db dbFlags) hfhttp.RaceFunc {
	return func(ctx context.Context) (any, []byte, error) {
		o := labrun.Options{Redis: db.redis, Strategies: "all", Think: 5 * time.Millisecond, Instances: 1, Coalesce: true}
		if postgres.IsURL(db.db) {
			o.DB = db.db
		}
		results, err := labrun.Race(ctx, o)
		if err != nil {
			return nil, nil, err
		}
		return results, lab.SVG(results), nil
	}
}

// distinct counts the different characters of s.
func distinct(s string) int {
	seen := map[rune]bool{}
	for _, r := range s {
		seen[r] = true
	}
	return len(seen)
}
