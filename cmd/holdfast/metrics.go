package main

import (
	"context"
	"log/slog"
	"strconv"
	"time"

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
	auditRuns  *prometheus.CounterVec
	purged     prometheus.Counter
	retained   *prometheus.CounterVec
}

func newRegistry(s holdfast.Store) *registry {
	r := &registry{
		Registry: prometheus.NewRegistry(),
		auditDiffs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "holdfast_audit_differences", Help: "Counters that differed from their recount at the last audit; must be 0."}),
		auditRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "holdfast_audit_runs_total", Help: "Invariant monitor runs by result."}, []string{"result"}),
		purged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "holdfast_idempotency_keys_purged_total", Help: "Idempotency keys forgotten after 24 h."}),
		retained: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "holdfast_purged_total", Help: "Events, finished holds and finished webhook deliveries deleted past their retention."}, []string{"what"}),
	}
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		r.auditDiffs, r.auditRuns, r.purged, r.retained)
	r.MustRegister(rooms{s})
	if sh, ok := s.(*postgres.Shards); ok {
		// One set per shard, labelled: a hot shard shows as itself.
		for i := range sh.Len() {
			reg := prometheus.WrapRegistererWith(prometheus.Labels{"shard": strconv.Itoa(i)}, r.Registry)
			registerStats(reg, sh.Shard(i))
			reg.MustRegister(dbHealth{sh.Shard(i)})
		}
	} else if st, ok := s.(holdfast.StatsReporter); ok {
		registerStats(r.Registry, st)
	}
	if pg, ok := s.(*postgres.Store); ok {
		r.MustRegister(dbHealth{pg})
	}
	return r
}

// scrapeTimeout bounds the database reads a scrape makes.
const scrapeTimeout = 2 * time.Second

var (
	roomWaiting   = prometheus.NewDesc("holdfast_room_waiting", "Places waiting in a waiting room.", []string{"room"}, nil)
	roomInside    = prometheus.NewDesc("holdfast_room_inside", "Admitted to a room and not done.", []string{"room"}, nil)
	roomMaxInside = prometheus.NewDesc("holdfast_room_max_inside", "A room's bound on the admitted and not done.", []string{"room"}, nil)
	roomOpen      = prometheus.NewDesc("holdfast_room_open", "1 while a room admits (opened and not sold out), else 0.", []string{"room"}, nil)
	roomAdmitted  = prometheus.NewDesc("holdfast_room_admitted_total", "Places a room has admitted.", []string{"room"}, nil)
	dbStandbys    = prometheus.NewDesc("holdfast_db_standbys", "Standbys streaming from the PostgreSQL server.", nil, nil)
	dbLag         = prometheus.NewDesc("holdfast_db_replication_lag_seconds", "The largest replay lag of the server's standbys (0 with none; needs pg_monitor).", nil, nil)
	dbPrepared    = prometheus.NewDesc("holdfast_db_prepared_oldest_seconds", "Age of the oldest prepared part of a change across shards (0 with none).", nil, nil)
)

// rooms exports every waiting room's queue, read at scrape time (rooms
// are few; a scrape is a handful of indexed counts).
type rooms struct{ s holdfast.Store }

func (rooms) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{roomWaiting, roomInside, roomMaxInside, roomOpen, roomAdmitted} {
		ch <- d
	}
}

func (c rooms) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	list, err := c.s.Rooms(ctx)
	if err != nil {
		return // the scrape shows the room series missing; the store's own errors are logged elsewhere
	}
	for _, r := range list {
		open := 0.0
		if !r.OpensAt.After(time.Now()) && !r.SoldOut {
			open = 1
		}
		ch <- prometheus.MustNewConstMetric(roomWaiting, prometheus.GaugeValue, float64(r.Waiting), r.ID)
		ch <- prometheus.MustNewConstMetric(roomInside, prometheus.GaugeValue, float64(r.Inside), r.ID)
		ch <- prometheus.MustNewConstMetric(roomMaxInside, prometheus.GaugeValue, float64(r.MaxInside), r.ID)
		ch <- prometheus.MustNewConstMetric(roomOpen, prometheus.GaugeValue, open, r.ID)
		ch <- prometheus.MustNewConstMetric(roomAdmitted, prometheus.CounterValue, float64(r.AdmittedThrough), r.ID)
	}
}

// dbHealth exports a PostgreSQL server's replication and prepared parts.
type dbHealth struct{ s *postgres.Store }

func (dbHealth) Describe(ch chan<- *prometheus.Desc) {
	ch <- dbStandbys
	ch <- dbLag
	ch <- dbPrepared
}

func (c dbHealth) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	h, err := c.s.Health(ctx)
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(dbStandbys, prometheus.GaugeValue, float64(h.Standbys))
	ch <- prometheus.MustNewConstMetric(dbLag, prometheus.GaugeValue, h.ReplicationLag.Seconds())
	ch <- prometheus.MustNewConstMetric(dbPrepared, prometheus.GaugeValue, h.OldestPrepared.Seconds())
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
		m.r.auditRuns.WithLabelValues("clean").Inc()
		m.r.auditDiffs.Set(0)
	default:
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

// registerStats exports a store's engine and connection pool counts.
func registerStats(reg prometheus.Registerer, st holdfast.StatsReporter) {
	stat := func(name, help string, f func(holdfast.Stats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(st.Stats()) })
	}
	counter := func(name, help string, f func(holdfast.Stats) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f(st.Stats())) })
	}
	reg.MustRegister(
		counter("holdfast_strategy_retries_total", "Transactions retried (serialization failure, deadlock, busy).", func(s holdfast.Stats) int64 { return s.Retries }),
		counter("holdfast_batches_total", "Coalesced claim transactions run.", func(s holdfast.Stats) int64 { return s.Batches }),
		counter("holdfast_batched_claims_total", "Claims decided in coalesced transactions.", func(s holdfast.Stats) int64 { return s.BatchedClaims }),
		counter("holdfast_change_batches_total", "Batched transactions of lifecycle changes (confirm, release, extend, cancel, complete) run.", func(s holdfast.Stats) int64 { return s.ChangeBatches }),
		counter("holdfast_batched_changes_total", "Lifecycle changes decided in batched transactions.", func(s holdfast.Stats) int64 { return s.BatchedChanges }),
		counter("holdfast_batch_statements_total", "Statements sent by claim batches (divide by holdfast_batches_total: per batch).", func(s holdfast.Stats) int64 { return s.ClaimStatements }),
		counter("holdfast_change_batch_statements_total", "Statements sent by batches of changes (divide by holdfast_change_batches_total: per batch).", func(s holdfast.Stats) int64 { return s.ChangeStatements }),
		counter("holdfast_batch_failures_total", "Coalesced transactions that failed whole (their claims went one by one); must stay 0.", func(s holdfast.Stats) int64 { return s.BatchFailures }),
		stat("holdfast_db_connections_open", "Open database connections.", func(s holdfast.Stats) float64 { return float64(s.Open) }),
		stat("holdfast_db_connections_in_use", "Database connections in use.", func(s holdfast.Stats) float64 { return float64(s.InUse) }),
		stat("holdfast_db_connections_idle", "Idle database connections.", func(s holdfast.Stats) float64 { return float64(s.Idle) }),
		stat("holdfast_db_connections_max", "The connection pool's size.", func(s holdfast.Stats) float64 { return float64(s.Max) }),
	)
}
