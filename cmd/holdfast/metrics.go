package main

import (
	"strconv"

	"github.com/holdfast/holdfast/internal/metrics"
	"github.com/holdfast/holdfast/postgres"
	"github.com/holdfast/holdfast/shard"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/holdfast/holdfast"
)

// newRegistry is the server's Prometheus registry with the metrics that live
// outside the HTTP layer: the store's, the process's; the background
// services register theirs (package service).
func newRegistry(s holdfast.Store) *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	r.MustRegister(metrics.Rooms(s))
	if sh, ok := s.(*shard.Set); ok {
		// One set per shard, labelled: a hot shard shows as itself.
		for i := range sh.Len() {
			registerDB(prometheus.WrapRegistererWith(prometheus.Labels{"shard": strconv.Itoa(i)}, r), sh.Shard(i))
		}
	} else {
		registerDB(r, s)
	}
	return r
}

// registerDB registers one database's metrics: its store's stats, and a
// PostgreSQL server's health.
func registerDB(reg prometheus.Registerer, s any) {
	if st, ok := s.(holdfast.StatsReporter); ok {
		metrics.RegisterStats(reg, st)
	}
	if pg, ok := s.(*postgres.Store); ok {
		reg.MustRegister(metrics.DBHealth(pg))
	}
}
