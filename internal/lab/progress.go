package lab

import (
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"
)

// progress draws a progress line on w (a terminal) until the returned
// function is called; with w nil it does nothing.
func progress(w io.Writer, name string, cfg Config, granted *atomic.Int64) func() {
	if w == nil {
		return func() {}
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	start := time.Now()
	draw := func() {
		g := granted.Load()
		var frac float64
		switch {
		case cfg.Duration > 0:
			frac = float64(time.Since(start)) / float64(cfg.Duration)
		case cfg.Capacity > 0:
			frac = float64(g*cfg.Quantity) / float64(cfg.Capacity)
		}
		frac = min(max(frac, 0), 1)
		n := int(frac * 30)
		fmt.Fprintf(w, "\r%-14s [%s%s] %d granted, %s", name, strings.Repeat("#", n), strings.Repeat(".", 30-n), g, time.Since(start).Round(10*time.Millisecond))
	}
	go func() {
		defer close(done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				draw()
				fmt.Fprint(w, "\r\033[K")
				return
			case <-t.C:
				draw()
			}
		}
	}()
	return func() { close(stop); <-done }
}
