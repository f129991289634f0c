package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/holdfast/holdfast"
)

// registry is the server's Prometheus registry with the metrics that live
// outside the HTTP layer: the sweeper, the store, the invariant monitor.
type registry struct {
	*prometheus.Registry
	swept      prometheus.Counter
	sweepFails prometheus.Counter
	auditDiffs prometheus.Gauge
	auditRuns  *prometheus.CounterVec
	purged     prometheus.Counter
}

func newRegistry(s holdfast.Store) *registry {
	r := &registry{
		Registry: prometheus.NewRegistry(),
		swept: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "holdfast_sweeper_expired_total", Help: "Holds the sweeper expired (capacity returned)."}),
		sweepFails: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "holdfast_sweeper_errors_total", Help: "Sweeps that failed."}),
		auditDiffs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "holdfast_audit_differences", Help: "Counters that differed from their recount at the last audit; must be 0."}),
		auditRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "holdfast_audit_runs_total", Help: "Invariant monitor runs by result."}, []string{"result"}),
		purged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "holdfast_idempotency_keys_purged_total", Help: "Idempotency keys forgotten after 24 h."}),
	}
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		r.swept, r.sweepFails, r.auditDiffs, r.auditRuns, r.purged)
	if st, ok := s.(holdfast.StatsReporter); ok {
		stat := func(name, help string, f func(holdfast.Stats) float64) prometheus.Collector {
			return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(st.Stats()) })
		}
		counter := func(name, help string, f func(holdfast.Stats) int64) prometheus.Collector {
			return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f(st.Stats())) })
		}
		r.MustRegister(
			counter("holdfast_strategy_retries_total", "Transactions retried (serialization failure, deadlock, busy).", func(s holdfast.Stats) int64 { return s.Retries }),
			counter("holdfast_batches_total", "Coalesced claim transactions run.", func(s holdfast.Stats) int64 { return s.Batches }),
			counter("holdfast_batched_claims_total", "Claims decided in coalesced transactions.", func(s holdfast.Stats) int64 { return s.BatchedClaims }),
			counter("holdfast_batch_failures_total", "Coalesced transactions that failed whole (their claims went one by one); must stay 0.", func(s holdfast.Stats) int64 { return s.BatchFailures }),
			stat("holdfast_db_connections_open", "Open database connections.", func(s holdfast.Stats) float64 { return float64(s.Open) }),
			stat("holdfast_db_connections_in_use", "Database connections in use.", func(s holdfast.Stats) float64 { return float64(s.InUse) }),
			stat("holdfast_db_connections_idle", "Idle database connections.", func(s holdfast.Stats) float64 { return float64(s.Idle) }),
			stat("holdfast_db_connections_max", "The connection pool's size.", func(s holdfast.Stats) float64 { return float64(s.Max) }),
		)
	}
	return r
}

func (r *registry) sweep(n int, err error) {
	r.swept.Add(float64(n))
	if err != nil {
		r.sweepFails.Inc()
	}
}

// housekeeping runs the invariant monitor (a full audit) and forgets old
// idempotency keys, once a minute, until ctx ends.
func housekeeping(ctx context.Context, s holdfast.Store, r *registry, log *slog.Logger) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		rep, err := s.Audit(ctx)
		switch {
		case err != nil:
			r.auditRuns.WithLabelValues("error").Inc()
			if ctx.Err() == nil {
				log.Warn("audit failed", "err", err)
			}
		case rep.OK():
			r.auditRuns.WithLabelValues("clean").Inc()
			r.auditDiffs.Set(0)
		default:
			r.auditRuns.WithLabelValues("differences").Inc()
			r.auditDiffs.Set(float64(len(rep.Differences)))
			log.Error("audit found differences", "differences", rep.Differences)
		}
		if n, err := s.PurgeIdempotency(ctx); err == nil {
			r.purged.Add(float64(n))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
