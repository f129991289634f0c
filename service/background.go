package service

import (
	"cmp"
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/expiry"
	"github.com/holdfast/holdfast/webhook"
)

// Config configures Background. The zero value is the documented default.
type Config struct {
	Logger *slog.Logger // default slog.Default()
	// Clock is the webhook dispatcher's clock (default the wall clock).
	Clock holdfast.Clock
	// SweepInterval is how often expired holds are swept (default 1 s).
	SweepInterval time.Duration
	// AuditInterval is how often the invariant monitor audits the store
	// and the retention purge runs (default 1 min).
	AuditInterval time.Duration
	// QueueInterval is how often waiting rooms admit and waitlists offer
	// (default 100 ms).
	QueueInterval time.Duration
	// Retention is how long events and ended holds are kept; zero keeps
	// them for ever. Idempotency keys are forgotten after 24 h regardless.
	Retention holdfast.Retention
	// Webhooks configures the webhook dispatcher, run when the store is a
	// webhook.Queue; its Queue is the store, and its Logger, Clock and
	// Registerer default to this Config's.
	Webhooks webhook.Config
	// Registerer, if set, receives the services' metrics: the sweeper's,
	// the monitor's (holdfast_audit_*, holdfast_purged_total, …) and the
	// dispatcher's.
	Registerer prometheus.Registerer
}

// Background returns, stopped, the services a holdfast server runs beside
// its API over store, in the order they start: the hold sweeper, the
// invariant monitor and retention purge, the webhook dispatcher (if the
// store queues webhooks), the waiting rooms' admitter with the waitlists'
// offers. Every server sharing a database may run them: each is safe run
// by many at once.
func Background(store holdfast.Store, cfg Config) *Runner {
	log := cmp.Or(cfg.Logger, slog.Default())
	m := newMetrics(cfg.Registerer)
	sw := expiry.New(store, expiry.Config{Interval: cfg.SweepInterval, Logger: log})
	m.watchSweeper(sw)
	r := NewRunner(sw, Every(cmp.Or(cfg.AuditInterval, time.Minute), (&monitor{s: store, m: m, log: log, retain: cfg.Retention}).round))
	if q, ok := store.(webhook.Queue); ok {
		wc := cfg.Webhooks
		wc.Queue = q
		wc.Logger = cmp.Or(wc.Logger, log)
		if wc.Clock == nil {
			wc.Clock = cfg.Clock
		}
		if wc.Registerer == nil {
			wc.Registerer = cfg.Registerer
		}
		r.Add(webhook.New(wc))
	}
	r.Add(Every(cmp.Or(cfg.QueueInterval, 100*time.Millisecond), func(ctx context.Context) {
		if _, err := store.AdmitRooms(ctx); err != nil && ctx.Err() == nil {
			log.Warn("admitting from waiting rooms", "err", err)
		}
		if _, err := store.OfferWaitlists(ctx); err != nil && ctx.Err() == nil {
			log.Warn("offering to waitlists", "err", err)
		}
	}))
	return r
}

// monitor is the invariant monitor (a full audit) and the purge of old
// idempotency keys, events and ended holds: one round per AuditInterval.
type monitor struct {
	s      holdfast.Store
	m      *metrics
	log    *slog.Logger
	retain holdfast.Retention
}

func (m *monitor) round(ctx context.Context) {
	rep, err := m.s.Audit(ctx)
	switch {
	case err != nil:
		if ctx.Err() != nil {
			return // stopped mid-audit: not a failed audit
		}
		m.m.auditRuns.WithLabelValues("error").Inc()
		m.log.Warn("audit failed", "err", err)
	case rep.OK():
		m.m.refundsOld.Set(float64(len(rep.RefundsDueOld)))
		m.m.auditRuns.WithLabelValues("clean").Inc()
		m.m.auditDiffs.Set(0)
	default:
		m.m.refundsOld.Set(float64(len(rep.RefundsDueOld)))
		m.m.auditRuns.WithLabelValues("differences").Inc()
		m.m.auditDiffs.Set(float64(len(rep.Differences)))
		m.log.Error("audit found differences", "differences", rep.Differences)
	}
	if n, err := m.s.PurgeIdempotency(ctx); err == nil {
		m.m.purged.Add(float64(n))
	}
	purged, err := m.s.Purge(ctx, m.retain)
	m.m.retained.WithLabelValues("events").Add(float64(purged.Events))
	m.m.retained.WithLabelValues("holds").Add(float64(purged.Holds))
	m.m.retained.WithLabelValues("deliveries").Add(float64(purged.Deliveries))
	if err != nil && ctx.Err() == nil {
		m.log.Warn("retention purge", "err", err)
	}
}

// metrics are the background services' own; registered only when the
// Config has a Registerer.
type metrics struct {
	reg        prometheus.Registerer
	auditDiffs prometheus.Gauge
	refundsOld prometheus.Gauge
	auditRuns  *prometheus.CounterVec
	purged     prometheus.Counter
	retained   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		reg: reg,
		auditDiffs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "holdfast_audit_differences", Help: "Counters that differed from their recount at the last audit; must be 0."}),
		refundsOld: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "holdfast_payments_refund_due_old", Help: "Payments due back for more than a day at the last audit: refunds the shop has not made."}),
		auditRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "holdfast_audit_runs_total", Help: "Invariant monitor runs by result."}, []string{"result"}),
		purged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "holdfast_idempotency_keys_purged_total", Help: "Idempotency keys forgotten after 24 h."}),
		retained: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "holdfast_purged_total", Help: "Events, finished holds and finished webhook deliveries deleted past their retention."}, []string{"what"}),
	}
	if reg != nil {
		reg.MustRegister(m.auditDiffs, m.refundsOld, m.auditRuns, m.purged, m.retained)
	}
	return m
}

// watchSweeper exports the sweeper's counts.
func (m *metrics) watchSweeper(sw *expiry.Sweeper) {
	if m.reg == nil {
		return
	}
	m.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "holdfast_sweeper_expired_total", Help: "Holds the sweeper expired (capacity returned)."},
			func() float64 { return float64(sw.Stats().Expired) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "holdfast_sweeper_errors_total", Help: "Sweeps that failed."},
			func() float64 { return float64(sw.Stats().Failures) }),
	)
}
