// Package lab is holdfast's race lab: it storms a strategy (or a running
// deployment) with concurrent buyers, then counts in the database whether
// anything was oversold or double-booked, and reports the race per
// strategy as a table, JSON and a chart.
package lab

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/holdfast/holdfast"
)

// Engine is what the lab drives: a holdfast.Store, or an http.Client
// talking to running servers.
type Engine interface {
	CreatePool(ctx context.Context, p holdfast.Pool) (holdfast.Pool, error)
	CreateGroup(ctx context.Context, g holdfast.Group) (holdfast.Group, error)
	AddUnits(ctx context.Context, group string, ids []string) error
	Hold(ctx context.Context, r holdfast.HoldRequest) (holdfast.Hold, error)
	// Book holds and confirms in one request (POST /v1/bookings): how a
	// rider is dispatched.
	Book(ctx context.Context, r holdfast.HoldRequest, paymentRef string) (holdfast.Hold, error)
	Confirm(ctx context.Context, id, paymentRef string) (holdfast.Hold, error)
	Complete(ctx context.Context, id string) (holdfast.Hold, error)
	Group(ctx context.Context, id string) (holdfast.GroupAvailability, error)
}

// Target is one thing to storm: a strategy on a fresh database, or a
// deployment.
type Target struct {
	Name string
	// Engines are the instances the clients spread over.
	Engines []Engine
	// Audit counts oversold and double-booked units after the run,
	// directly in the database where it can.
	Audit func(ctx context.Context) (holdfast.AuditReport, error)
	Close func()
	// DB is the database the engines use (a postgres:// URL or a SQLite
	// file), when the lab made it: a server process can be pointed at it.
	DB string
}

// Scenario names a workload.
type Scenario string

const (
	// ScenarioPool: N tickets in one pool, every buyer asks for Quantity.
	ScenarioPool Scenario = "pool"
	// ScenarioSeats: a seat map of N seats in rows of 20; buyers pick 1–4
	// adjacent seats, overlapping on purpose.
	ScenarioSeats Scenario = "seats"
	// ScenarioRiders: a fleet of N riders; each order books any free rider
	// in one request, who completes the order and returns.
	ScenarioRiders Scenario = "riders"
)

// Config is one lab run. The zero value is the classic demo: 10 tickets,
// 20 buyers, until sold out.
type Config struct {
	Scenario Scenario
	Clients  int   // concurrent buyers (default 20)
	Capacity int64 // tickets, seats or riders (default 10)
	Quantity int64 // per request, pool scenario (default 1)
	// Duration bounds the run; 0 runs until sold out (pool, seats) or for
	// 3 s (riders).
	Duration time.Duration
	// Seed makes the buyers' choices repeatable.
	Seed uint64
	// Progress, when set, gets a progress line while a target runs.
	Progress io.Writer
}

func (c Config) withDefaults() Config {
	c.Scenario = cmp.Or(c.Scenario, ScenarioPool)
	c.Clients = cmp.Or(c.Clients, 20)
	c.Capacity = cmp.Or(c.Capacity, 10)
	c.Quantity = cmp.Or(c.Quantity, 1)
	if c.Scenario == ScenarioRiders && c.Duration == 0 {
		c.Duration = 3 * time.Second
	}
	c.Seed = cmp.Or(c.Seed, 1)
	return c
}

// Result is one target's row of the report.
type Result struct {
	Target      string           `json:"target"`
	Scenario    Scenario         `json:"scenario"`
	Clients     int              `json:"clients"`
	Capacity    int64            `json:"capacity"`
	Requests    int64            `json:"requests"`
	RequestsPS  float64          `json:"requests_per_second"`
	Granted     int64            `json:"granted"`
	SoldOut     int64            `json:"sold_out"`
	Errors      map[string]int64 `json:"errors"`
	FalseBusy   int64            `json:"false_busy"`
	P50         time.Duration    `json:"p50_ns"`
	P99         time.Duration    `json:"p99_ns"`
	Max         time.Duration    `json:"max_ns"`
	SellOut     time.Duration    `json:"time_to_sell_out_ns"`
	Elapsed     time.Duration    `json:"elapsed_ns"`
	Oversold    int64            `json:"oversold"`
	DoubleBook  int64            `json:"double_booked"`
	AuditErrors []string         `json:"audit_differences"`
	AuditFailed string           `json:"audit_error,omitempty"`
}

// Clean reports whether the audit found nothing oversold or double-booked.
func (r Result) Clean() bool {
	return r.Oversold == 0 && r.DoubleBook == 0 && r.AuditFailed == ""
}

// ErrorCount is the number of answers that were neither a grant nor a
// definite refusal.
func (r Result) ErrorCount() int64 {
	var n int64
	for _, v := range r.Errors {
		n += v
	}
	return n
}

type sample struct {
	start, end time.Time
	code       holdfast.Code // "" granted
}

// Run storms t with cfg's workload and audits the database after.
func Run(ctx context.Context, cfg Config, t Target) (Result, error) {
	cfg = cfg.withDefaults()
	res := Result{Target: t.Name, Scenario: cfg.Scenario, Clients: cfg.Clients, Capacity: cfg.Capacity, Errors: map[string]int64{}}
	if len(t.Engines) == 0 {
		return res, fmt.Errorf("lab: target %s has no engines", t.Name)
	}
	setup := t.Engines[0]
	w, err := newWorkload(ctx, cfg, setup)
	if err != nil {
		return res, fmt.Errorf("lab: setting up %s: %w", t.Name, err)
	}
	runCtx := ctx
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	} else {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, 2*time.Minute) // until sold out, but never for ever
		defer cancel()
	}

	var mu sync.Mutex
	var samples []sample
	var granted atomic.Int64
	record := func(s sample) {
		if s.code == "" {
			granted.Add(1)
		}
		mu.Lock()
		samples = append(samples, s)
		mu.Unlock()
	}
	stopProgress := progress(cfg.Progress, t.Name, cfg, &granted)
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	ready.Add(cfg.Clients)
	done.Add(cfg.Clients)
	for i := 0; i < cfg.Clients; i++ {
		e := t.Engines[i%len(t.Engines)]
		rng := rand.New(rand.NewPCG(cfg.Seed, uint64(i)))
		go func() {
			defer done.Done()
			ready.Done()
			<-start
			w.client(runCtx, e, i, rng, record)
		}()
	}
	ready.Wait()
	t0 := time.Now()
	close(start)
	done.Wait()
	res.Elapsed = time.Since(t0)
	stopProgress()

	summarize(&res, samples, t0, cfg)
	// What the buyers were told is evidence too: more units granted than
	// the pool holds is an oversell, whatever a database says.
	if cfg.Scenario == ScenarioPool {
		res.Oversold = max(0, res.Granted*cfg.Quantity-cfg.Capacity)
	}
	if t.Audit != nil {
		actx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		rep, err := t.Audit(actx)
		if err != nil {
			res.AuditFailed = err.Error()
		} else {
			res.Oversold, res.DoubleBook, res.AuditErrors = max(res.Oversold, rep.Oversold), rep.DoubleBooked, rep.Differences
		}
	}
	return res, nil
}

func summarize(res *Result, samples []sample, t0 time.Time, cfg Config) {
	slices.SortFunc(samples, func(a, b sample) int { return a.end.Compare(b.end) })
	var lat []time.Duration
	var grantTimes []sample
	for _, s := range samples {
		res.Requests++
		lat = append(lat, s.end.Sub(s.start))
		switch s.code {
		case "":
			res.Granted++
			grantTimes = append(grantTimes, s)
		case holdfast.CodeSoldOut, holdfast.CodeUnavailable:
			res.SoldOut++
		default:
			res.Errors[string(s.code)]++
		}
	}
	if res.Elapsed > 0 {
		res.RequestsPS = float64(res.Requests) / res.Elapsed.Seconds()
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))]
	}
	res.P50, res.P99 = pct(0.50), pct(0.99)
	if len(lat) > 0 {
		res.Max = lat[len(lat)-1]
	}
	// Sold out when the capacity-th unit was granted (pool and seats).
	perGrant := cfg.Quantity
	if cfg.Scenario == ScenarioSeats {
		perGrant = 0 // seats count by the audit, not by grants
	}
	if cfg.Scenario == ScenarioPool && perGrant > 0 {
		need := (cfg.Capacity + perGrant - 1) / perGrant
		if int64(len(grantTimes)) >= need {
			last := grantTimes[need-1]
			res.SellOut = last.end.Sub(t0)
			// False busy: a refusal or error that finished before the last
			// unit's request even started — capacity certainly remained.
			for _, s := range samples {
				if s.code != "" && s.end.Before(last.start) {
					res.FalseBusy++
				}
			}
		} else {
			// Never sold out: every refusal was false.
			for _, s := range samples {
				if s.code == holdfast.CodeSoldOut || s.code == holdfast.CodeBusy || s.code == "rate_limited" {
					res.FalseBusy++
				}
			}
		}
	}
}
