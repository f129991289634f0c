package main

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/holdfast/holdfast/internal/metrics"
	"github.com/holdfast/holdfast/postgres"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/expiry"
)

// registry is the server's Prometheus registry with the metrics that live
// outside the HTTP layer: the sweeper, the store, the invariant monitor.
type registry struct {
	*prometheus.Registry
	auditDiffs prometheus.Gauge
	refundsOld prometheus.Gauge
	auditRuns  *prometheus.CounterVec
	purged     prometheus.Counter
	retained   *prometheus.CounterVec
}

func newRegistry(s holdfast.Store) *registry {
	r := &registry{
		Registry: prometheus.NewRegistry(),
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
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		r.auditDiffs, r.refundsOld, r.auditRuns, r.purged, r.retained)
	r.MustRegister(metrics.Rooms(s))
	if sh, ok := s.(*postgres.Shards); ok {
		// One set per shard, labelled: a hot shard shows as itself.
		for i := range sh.Len() {
			reg := prometheus.WrapRegistererWith(prometheus.Labels{"shard": strconv.Itoa(i)}, r.Registry)
			metrics.RegisterStats(reg, sh.Shard(i))
			reg.MustRegister(metrics.DBHealth(sh.Shard(i)))
		}
	} else if st, ok := s.(holdfast.StatsReporter); ok {
		metrics.RegisterStats(r.Registry, st)
	}
	if pg, ok := s.(*postgres.Store); ok {
		r.MustRegister(metrics.DBHealth(pg))
	}
	return r
}

// watchSweeper exports the sweeper's counts.
func (r *registry) watchSweeper(sw *expiry.Sweeper) {
	r.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "holdfast_sweeper_expired_total", Help: "Holds the sweeper expired (capacity returned)."},
			func() float64 { return float64(sw.Stats().Expired) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "holdfast_sweeper_errors_total", Help: "Sweeps that failed."},
			func() float64 { return float64(sw.Stats().Failures) }),
	)
}

// monitor is the invariant monitor (a full audit) and the purge of old
// idempotency keys, run once a minute: a service with Start and Stop, so
// the server stops it, and waits for an audit in progress, before it
// closes the store.
type monitor struct {
	s        holdfast.Store
	r        *registry
	log      *slog.Logger
	retain   holdfast.Retention
	interval time.Duration
	cancel   context.CancelFunc
	done     chan struct{}
}

func newMonitor(s holdfast.Store, r *registry, log *slog.Logger, retain holdfast.Retention) *monitor {
	return &monitor{s: s, r: r, log: log, retain: retain, interval: time.Minute}
}

// Start runs the monitor until Stop; the first round runs at once.
func (m *monitor) Start(ctx context.Context) {
	ctx, m.cancel = context.WithCancel(ctx)
	m.done = make(chan struct{})
	go m.loop(ctx)
}

// Stop stops the monitor and waits for a round in progress.
func (m *monitor) Stop() {
	if m.cancel != nil {
		m.cancel()
		<-m.done
	}
}

func (m *monitor) loop(ctx context.Context) {
	defer close(m.done)
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		m.round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (m *monitor) round(ctx context.Context) {
	rep, err := m.s.Audit(ctx)
	switch {
	case err != nil:
		if ctx.Err() != nil {
			return // stopped mid-audit: not a failed audit
		}
		m.r.auditRuns.WithLabelValues("error").Inc()
		m.log.Warn("audit failed", "err", err)
	case rep.OK():
		m.r.refundsOld.Set(float64(len(rep.RefundsDueOld)))
		m.r.auditRuns.WithLabelValues("clean").Inc()
		m.r.auditDiffs.Set(0)
	default:
		m.r.refundsOld.Set(float64(len(rep.RefundsDueOld)))
		m.r.auditRuns.WithLabelValues("differences").Inc()
		m.r.auditDiffs.Set(float64(len(rep.Differences)))
		m.log.Error("audit found differences", "differences", rep.Differences)
	}
	if n, err := m.s.PurgeIdempotency(ctx); err == nil {
		m.r.purged.Add(float64(n))
	}
	purged, err := m.s.Purge(ctx, m.retain)
	m.r.retained.WithLabelValues("events").Add(float64(purged.Events))
	m.r.retained.WithLabelValues("holds").Add(float64(purged.Holds))
	m.r.retained.WithLabelValues("deliveries").Add(float64(purged.Deliveries))
	if err != nil && ctx.Err() == nil {
		m.log.Warn("retention purge", "err", err)
	}
}
