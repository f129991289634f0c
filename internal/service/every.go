// Package service runs the background loops a server keeps beside its
// API (the waiting rooms' admitter, the waitlists' offers), with one way
// to start and stop them.
package service

import (
	"context"
	"time"
)

// Every runs f every interval, the first time at once, until the returned
// stop is called; stop waits for a run in progress. f's context outlives
// ctx's cancellation (a run is never cut in the middle by the caller's
// request ending) and ends when stop is called.
func Every(ctx context.Context, interval time.Duration, f func(context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
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
	}()
	return func() {
		cancel()
		<-done
	}
}
