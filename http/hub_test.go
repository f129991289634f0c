package http

import (
	"context"
	"fmt"
	"testing"
)

// A viewer that stops reading is cut off once its buffer is full, with the
// others still served in full: a slow viewer neither slows the hub nor
// grows its memory.
func TestHubCutsOffSlowViewer(t *testing.T) {
	h := &hub{subs: map[*subscriber]struct{}{}}
	slow := &subscriber{ch: make(chan []frame, subBuffer)}
	fast := &subscriber{ch: make(chan []frame, subBuffer)}
	h.subs[slow], h.subs[fast] = struct{}{}, struct{}{}
	got := 0
	for i := 1; i <= subBuffer+5; i++ {
		f := frame{pos: cursorPos{seq: int64(i)}, id: fmt.Sprintf("0.%d", i)}
		h.deliver([]frame{f}, f.id)
		fs := <-fast.ch
		if fs[0].id != f.id {
			t.Fatalf("fast viewer got %s, want %s", fs[0].id, f.id)
		}
		got++
	}
	if got != subBuffer+5 {
		t.Fatalf("fast viewer got %d events", got)
	}
	n := 0
	for range slow.ch { // closed by the hub once full
		n++
	}
	if n != subBuffer {
		t.Fatalf("slow viewer had %d deliveries buffered, want %d then cut off", n, subBuffer)
	}
	if attached, cut := h.viewers(); attached != 1 || cut != 1 {
		t.Fatalf("attached %d, cut %d; want 1 and 1", attached, cut)
	}
	if len(h.ring) != subBuffer+5 || h.base != (cursorPos{}) {
		t.Fatalf("ring %d from %v", len(h.ring), h.base)
	}
}

// A resume inside the hub's memory starts right after its cursor; one
// older than the memory is told to page from the database.
func TestHubResumeFromRing(t *testing.T) {
	h := &hub{subs: map[*subscriber]struct{}{}, running: true, base: cursorPos{seq: 10}}
	for i := 11; i <= 20; i++ {
		f := frame{pos: cursorPos{seq: int64(i)}, id: fmt.Sprintf("0.%d", i)}
		h.deliver([]frame{f}, f.id)
	}
	sub, ok, err := h.subscribe(context.Background(), cursorPos{seq: 15}, false, streamFilter{})
	if err != nil || !ok {
		t.Fatalf("resume at 15: %v %v", ok, err)
	}
	if fs := <-sub.ch; len(fs) != 5 || fs[0].id != "0.16" {
		t.Fatalf("resumed with %d events from %s", len(fs), fs[0].id)
	}
	if _, ok, _ := h.subscribe(context.Background(), cursorPos{seq: 9}, false, streamFilter{}); ok {
		t.Fatal("a resume older than the hub's memory was attached: events 10 and before would be lost")
	}
}
