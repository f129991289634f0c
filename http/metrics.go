package http

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/holdfast/holdfast"
)

type metrics struct {
	requests   *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	holds      *prometheus.CounterVec
	unrecorded *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "holdfast_http_requests_total", Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "holdfast_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
		holds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "holdfast_holds_total", Help: "Hold and booking requests by outcome (granted or the error code).",
		}, []string{"outcome"}),
		unrecorded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "holdfast_idempotency_unrecorded_total",
			Help: "Changes under an Idempotency-Key whose answer the store did not record in the change's transaction (stored after commit instead). Must stay 0.",
		}, []string{"route"}),
	}
	reg.MustRegister(m.requests, m.latency, m.holds, m.unrecorded)
	return m
}

func (m *metrics) observe(route string, status int, d time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	if d > 0 {
		m.latency.WithLabelValues(route).Observe(d.Seconds())
	}
}

func (m *metrics) hold(err error) {
	outcome := "granted"
	if err != nil {
		outcome = string(holdfast.ErrorCode(err))
	}
	m.holds.WithLabelValues(outcome).Inc()
}
