// Package metrics is what holdfast serve exports on /metrics beyond the
// HTTP layer's own: the engine's counts and, read at each scrape, the
// waiting rooms and the PostgreSQL server's health.
package metrics

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/postgres"
	"github.com/prometheus/client_golang/prometheus"
)

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

// Rooms exports every waiting room's queue, read from the store at each
// scrape.
func Rooms(s holdfast.Store) prometheus.Collector { return rooms{s} }

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

// DBHealth exports a PostgreSQL server's standbys, replication lag and
// oldest prepared part, read at each scrape.
func DBHealth(s *postgres.Store) prometheus.Collector { return dbHealth{s} }

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

// Counters are the store's counts exported as counters: one table, read
// by RegisterStats and by ParseStats (the lab reads a server's batches
// back from its /metrics), so a name changes in one place.
var Counters = []struct {
	Name, Help string
	Field      func(*holdfast.Stats) *int64
}{
	{"holdfast_strategy_retries_total", "Transactions retried (serialization failure, deadlock, busy).", func(s *holdfast.Stats) *int64 { return &s.Retries }},
	{"holdfast_batches_total", "Coalesced claim transactions run.", func(s *holdfast.Stats) *int64 { return &s.Batches }},
	{"holdfast_batched_claims_total", "Claims decided in coalesced transactions.", func(s *holdfast.Stats) *int64 { return &s.BatchedClaims }},
	{"holdfast_change_batches_total", "Batched transactions of lifecycle changes (confirm, release, extend, cancel, complete) run.", func(s *holdfast.Stats) *int64 { return &s.ChangeBatches }},
	{"holdfast_batched_changes_total", "Lifecycle changes decided in batched transactions.", func(s *holdfast.Stats) *int64 { return &s.BatchedChanges }},
	{"holdfast_batch_statements_total", "Statements sent by claim batches (divide by holdfast_batches_total: per batch).", func(s *holdfast.Stats) *int64 { return &s.ClaimStatements }},
	{"holdfast_change_batch_statements_total", "Statements sent by batches of changes (divide by holdfast_change_batches_total: per batch).", func(s *holdfast.Stats) *int64 { return &s.ChangeStatements }},
	{"holdfast_offer_rounds_total", "Rounds of waitlist offers written, each one transaction.", func(s *holdfast.Stats) *int64 { return &s.OfferRounds }},
	{"holdfast_waitlist_offers_total", "Waitlist offers made (holds for the entries at the head of a line).", func(s *holdfast.Stats) *int64 { return &s.Offers }},
	{"holdfast_offer_round_statements_total", "Statements sent by rounds of offers (divide by holdfast_offer_rounds_total: per round).", func(s *holdfast.Stats) *int64 { return &s.OfferStatements }},
	{"holdfast_batch_failures_total", "Coalesced transactions that failed whole (their claims went one by one); must stay 0.", func(s *holdfast.Stats) *int64 { return &s.BatchFailures }},
}

// RegisterStats exports a store's engine and connection pool counts.
func RegisterStats(reg prometheus.Registerer, st holdfast.StatsReporter) {
	stat := func(name, help string, f func(holdfast.Stats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(st.Stats()) })
	}
	for _, c := range Counters {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: c.Name, Help: c.Help}, func() float64 {
			s := st.Stats()
			return float64(*c.Field(&s))
		}))
	}
	reg.MustRegister(
		stat("holdfast_db_connections_open", "Open database connections.", func(s holdfast.Stats) float64 { return float64(s.Open) }),
		stat("holdfast_db_connections_in_use", "Database connections in use.", func(s holdfast.Stats) float64 { return float64(s.InUse) }),
		stat("holdfast_db_connections_idle", "Idle database connections.", func(s holdfast.Stats) float64 { return float64(s.Idle) }),
		stat("holdfast_db_connections_max", "The connection pool's size.", func(s holdfast.Stats) float64 { return float64(s.Max) }),
	)
}

// ParseStats reads the Counters from a /metrics answer in Prometheus's
// text format; the other fields stay 0.
func ParseStats(r io.Reader) (holdfast.Stats, error) {
	var st holdfast.Stats
	fields := map[string]*int64{}
	for _, c := range Counters {
		fields[c.Name] = c.Field(&st)
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if f := fields[name]; ok && f != nil {
			v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
			if err != nil {
				return st, fmt.Errorf("/metrics: %s: %w", name, err)
			}
			*f = int64(v)
		}
	}
	return st, sc.Err()
}
