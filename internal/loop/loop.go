// Package loop is the one lifecycle behind holdfast's background work:
// the ticker loop of the sweeper, the invariant monitor, the waiting
// rooms' admitter and the waitlists' offers, the shard resolver (Every),
// and the webhook dispatcher's own loop (Go). Each has the lifecycle every
// background service has (see package service): Start, then Stop, which
// waits for the work in progress.
package loop

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Loop runs a function in the background between Start and Stop: once
// (Go), or every interval (Every).
type Loop struct {
	run func(context.Context)

	mu      sync.Mutex
	cancel  context.CancelFunc
	done    chan struct{}
	stopped bool
}

// Every returns a stopped Loop that runs f every interval, the first time
// at once when started.
func Every(interval time.Duration, f func(context.Context)) *Loop {
	return Go(func(ctx context.Context) {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			f(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
}

// Go returns a stopped Loop that runs run once when started; run must
// return soon after its context ends (Stop waits for it).
func Go(run func(context.Context)) *Loop {
	return &Loop{run: run}
}

// ErrStarted is returned by Start on a loop that was already started.
var ErrStarted = errors.New("already started")

// Start runs the loop in the background. Its context outlives ctx's
// cancellation (a run is never cut in the middle because the caller's
// request ended) and ends when Stop is called: the loop lives until Stop.
func (l *Loop) Start(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done != nil || l.stopped {
		return ErrStarted
	}
	ctx, l.cancel = context.WithCancel(context.WithoutCancel(ctx))
	l.done = make(chan struct{})
	go func(done chan struct{}) {
		defer close(done)
		l.run(ctx)
	}(l.done)
	return nil
}

// Stop ends the loop and waits for a run in progress, or for ctx. A loop
// never started, or stopped already, stops at once.
func (l *Loop) Stop(ctx context.Context) error {
	l.mu.Lock()
	l.stopped = true
	cancel, done := l.cancel, l.done
	l.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
