// Package service gives holdfast's background work one lifecycle: every
// service starts with Start and stops with Stop, and a Runner starts a
// list of them in order and stops them in reverse.
//
// Background is the list a holdfast server runs beside its API — the
// hold sweeper, the invariant monitor with the retention purge, the
// webhook dispatcher, the waiting rooms' admitter and the waitlists'
// offers — so that a program embedding holdfast as a library does the
// same background work as holdfast serve:
//
//	bg := service.Background(store, service.Config{})
//	if err := bg.Start(ctx); err != nil { … }
//	defer bg.Stop(context.Background())
//
// None of it is needed for correctness (a claim frees expired holds
// itself, a confirm refuses an expired hold): it writes the events, ends
// what is due, admits and offers in time.
package service

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/holdfast/holdfast/internal/loop"
)

// Service is background work with a lifecycle. Start returns once the
// work runs (in its own goroutines, beyond ctx's cancellation); Stop ends
// it and waits for work in progress, or for ctx.
type Service interface {
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
}

// Every returns a service that runs f every interval, the first time as
// it starts. A run is never cut short by the caller's context: only Stop
// ends the runs, and waits for the one in progress.
func Every(interval time.Duration, f func(context.Context)) Service {
	return loop.Every(interval, f)
}

// Runner starts services in the order given and stops them in reverse,
// so that a service may rely on those started before it.
type Runner struct {
	mu       sync.Mutex
	services []Service
	started  int
}

// NewRunner returns a stopped runner of services.
func NewRunner(services ...Service) *Runner {
	return &Runner{services: services}
}

// Add appends services to a runner not yet started.
func (r *Runner) Add(services ...Service) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.services = append(r.services, services...)
}

// Start starts every service in order. If one fails, those already
// started are stopped, in reverse, and its error is returned.
func (r *Runner) Start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started > 0 {
		return errors.New("service: runner already started")
	}
	for i, s := range r.services {
		if err := s.Start(ctx); err != nil {
			r.started = i
			return errors.Join(fmt.Errorf("service: starting %T: %w", s, err), r.stopLocked(context.WithoutCancel(ctx)))
		}
	}
	r.started = len(r.services)
	return nil
}

// Stop stops the started services in reverse order, each waiting for its
// work in progress (or for ctx), and returns their errors joined. Stopping
// a stopped runner does nothing.
func (r *Runner) Stop(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stopLocked(ctx)
}

func (r *Runner) stopLocked(ctx context.Context) error {
	var errs []error
	for i := r.started - 1; i >= 0; i-- {
		if err := r.services[i].Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("service: stopping %T: %w", r.services[i], err))
		}
	}
	r.started = 0
	return errors.Join(errs...)
}
