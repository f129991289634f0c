package http

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/holdfast/holdfast"
)

// A viewer that stops reading is cut off once its buffer is full, with the
// others still served in full: a slow viewer neither slows the hub nor
// grows its memory.
func TestHubCutsOffSlowViewer(t *testing.T) {
	h := &hub{subs: map[*subscriber]struct{}{}}
	slow := &subscriber{ch: make(chan delivery, subBuffer)}
	fast := &subscriber{ch: make(chan delivery, subBuffer)}
	h.subs[slow], h.subs[fast] = struct{}{}, struct{}{}
	got := 0
	for i := 1; i <= subBuffer+5; i++ {
		f := frame{pos: cursorPos{seq: int64(i)}, id: fmt.Sprintf("0.%d", i)}
		h.deliver([]frame{f}, f.id)
		d := <-fast.ch
		if d.frames[0].id != f.id {
			t.Fatalf("fast viewer got %s, want %s", d.frames[0].id, f.id)
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
	if d := <-sub.ch; len(d.frames) != 5 || d.frames[0].id != "0.16" {
		t.Fatalf("resumed with %d events from %s", len(d.frames), d.frames[0].id)
	}
	if _, ok, _ := h.subscribe(context.Background(), cursorPos{seq: 9}, false, streamFilter{}); ok {
		t.Fatal("a resume older than the hub's memory was attached: events 10 and before would be lost")
	}
}

// A poll is encoded once for every viewer that wants all of it, and what
// such a viewer is sent is exactly its frames one after the other; a
// viewer with a filter is sent only the frames it asked for.
func TestHubSharesOnePollEncoding(t *testing.T) {
	h := &hub{subs: map[*subscriber]struct{}{}}
	all1 := &subscriber{ch: make(chan delivery, subBuffer)}
	all2 := &subscriber{ch: make(chan delivery, subBuffer)}
	confirmed := &subscriber{ch: make(chan delivery, subBuffer), filter: streamFilter{types: []holdfast.EventType{holdfast.EventHoldConfirmed}}}
	for _, s := range []*subscriber{all1, all2, confirmed} {
		h.subs[s] = struct{}{}
	}
	var fs []frame
	var want bytes.Buffer
	for i, typ := range []holdfast.EventType{holdfast.EventHoldCreated, holdfast.EventHoldConfirmed, holdfast.EventHoldReleased} {
		e := holdfast.Event{Cursor: fmt.Sprintf("0.%d", i+1), Type: typ, HoldID: fmt.Sprintf("h_%d", i)}
		fs = append(fs, newFrame(e))
		want.Write(fs[i].sse)
	}
	h.deliver(fs, fs[2].id)
	d1, d2 := <-all1.ch, <-all2.ch
	if len(d1.joined) == 0 || &d1.joined[0] != &d2.joined[0] {
		t.Fatal("viewers that want the whole poll do not share one encoding of it")
	}
	for _, d := range []delivery{d1, d2} {
		var got bytes.Buffer
		if last, err := d.write(&got); err != nil || last != "0.3" || got.String() != want.String() {
			t.Fatalf("sent %q (last %s, %v), want %q", got.String(), last, err, want.String())
		}
	}
	d := <-confirmed.ch
	var got bytes.Buffer
	if last, err := d.write(&got); err != nil || last != "0.2" || got.String() != string(fs[1].sse) {
		t.Fatalf("filtered viewer was sent %q (last %s, %v), want only the confirmation", got.String(), last, err)
	}
}
