// Package testsignal lets a test wait for a background service to reach a
// point (a sweep done, a batch run) instead of sleeping. A service keeps a
// Signal in an unexported field and calls Signal at the point; the field
// does nothing until a test calls Init.
package testsignal

import (
	"testing"
	"time"
)

// Signal carries values of T from a service to a waiting test.
type Signal[T any] struct {
	ch chan T
}

// Init turns the signal on; call it before the service starts.
func (s *Signal[T]) Init() { s.ch = make(chan T, 1000) }

// Signal sends v if a test turned the signal on. It never blocks the
// service: past 1,000 values unread, it panics (a test that forgot to read).
func (s *Signal[T]) Signal(v T) {
	if s.ch == nil {
		return
	}
	select {
	case s.ch <- v:
	default:
		panic("testsignal: 1,000 signals unread")
	}
}

// Wait returns the next value, failing the test after timeout.
func (s *Signal[T]) Wait(tb testing.TB, timeout time.Duration) T {
	tb.Helper()
	select {
	case v := <-s.ch:
		return v
	case <-time.After(timeout):
		tb.Fatalf("testsignal: no signal within %s", timeout)
		var zero T
		return zero
	}
}
