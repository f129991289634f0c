package main

import (
	"strconv"

	"github.com/holdfast/holdfast/internal/metrics"
	"github.com/holdfast/holdfast/postgres"

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
	if sh, ok := s.(*postgres.Shards); ok {
		// One set per shard, labelled: a hot shard shows as itself.
		for i := range sh.Len() {
			reg := prometheus.WrapRegistererWith(prometheus.Labels{"shard": strconv.Itoa(i)}, r)
			metrics.RegisterStats(reg, sh.Shard(i))
			reg.MustRegister(metrics.DBHealth(sh.Shard(i)))
		}
	} else if st, ok := s.(holdfast.StatsReporter); ok {
		metrics.RegisterStats(r, st)
	}
	if pg, ok := s.(*postgres.Store); ok {
		r.MustRegister(metrics.DBHealth(pg))
	}
	return r
}
