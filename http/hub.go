package http

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/holdfast/holdfast"
)

// The event hub: one tail of the outbox per server, fanned out in memory
// to every stream. Before it, each stream polled the database on its own
// every 200 ms, so 200 viewers were 1,000 feed queries a second competing
// with the sale they watched (bookings/s fell from ~3,900 to 252). Now the
// database is read once per poll whatever the number of viewers, each
// event is encoded once, and a viewer that cannot keep up is cut off with
// its resume cursor instead of slowing the others or growing memory.

const (
	// hubPoll is how often the tail looks for new events.
	hubPoll = 100 * time.Millisecond
	// hubPage is the tail's page size; a full page is followed at once.
	hubPage = 1000
	// hubRing is how many recent events the hub keeps, so a viewer that
	// reconnects a moment later resumes from memory.
	hubRing = 8192
	// subBuffer is how many deliveries (one per poll, each a slice of
	// events) a viewer may have unsent before it is cut off: at hubPoll,
	// a few seconds of a viewer not reading.
	subBuffer = 32
	// streamWriteTimeout bounds one write to a viewer's connection.
	streamWriteTimeout = 10 * time.Second
)

// cursorPos is a feed cursor ("xid.seq") parsed for comparison; the zero
// value is the beginning of the feed.
type cursorPos struct{ xid, seq int64 }

func parseCursor(c string) (cursorPos, error) {
	if c == "" {
		return cursorPos{}, nil
	}
	x, q, ok := strings.Cut(c, ".")
	xid, err1 := strconv.ParseInt(x, 10, 64)
	seq, err2 := strconv.ParseInt(q, 10, 64)
	if !ok || err1 != nil || err2 != nil || xid < 0 || seq < 0 {
		return cursorPos{}, holdfast.Errorf(holdfast.CodeInvalid, "after must be a cursor from a previous page, or 0 for the beginning")
	}
	return cursorPos{xid, seq}, nil
}

func (c cursorPos) after(o cursorPos) bool {
	return c.xid > o.xid || (c.xid == o.xid && c.seq > o.seq)
}

// frame is one event, encoded once as a server-sent event.
type frame struct {
	pos      cursorPos
	id       string
	typ      holdfast.EventType
	subjects []string // what ?subject= matches: subject, hold, pools, groups
	sse      []byte
}

func newFrame(e holdfast.Event) frame {
	pos, _ := parseCursor(e.Cursor)
	f := frame{pos: pos, id: e.Cursor, typ: e.Type}
	b, _ := json.Marshal(e)
	f.sse = fmt.Appendf(nil, "id: %s\nevent: %s\ndata: %s\n\n", e.Cursor, e.Type, b)
	if e.Subject != "" {
		f.subjects = append(f.subjects, e.Subject)
	}
	if e.HoldID != "" {
		f.subjects = append(f.subjects, e.HoldID)
		var h struct {
			Lines []holdfast.Line `json:"lines"`
		}
		if json.Unmarshal(e.Data, &h) == nil {
			for _, l := range h.Lines {
				for _, s := range []string{l.Pool, l.Group} {
					if s != "" && !slices.Contains(f.subjects, s) {
						f.subjects = append(f.subjects, s)
					}
				}
			}
		}
	}
	return f
}

// streamFilter is a stream's optional ?types= and ?subject=.
type streamFilter struct {
	types    []holdfast.EventType
	subjects []string
}

func (sf streamFilter) match(f frame) bool {
	if len(sf.types) > 0 && !slices.Contains(sf.types, f.typ) {
		return false
	}
	if len(sf.subjects) > 0 && !slices.ContainsFunc(f.subjects, func(s string) bool { return slices.Contains(sf.subjects, s) }) {
		return false
	}
	return true
}

// delivery is what one poll brings a viewer: its frames and, when it
// wants every frame of the poll, all of them encoded back to back (one
// buffer shared by every such viewer, written with one call).
type delivery struct {
	frames []frame
	joined []byte
}

// write sends d to w; last is the id of its last frame.
func (d delivery) write(w io.Writer) (last string, err error) {
	if d.joined != nil {
		_, err = w.Write(d.joined)
	} else {
		for _, f := range d.frames {
			if _, err = w.Write(f.sse); err != nil {
				break
			}
		}
	}
	return d.frames[len(d.frames)-1].id, err
}

// subscriber is one stream attached to the hub.
type subscriber struct {
	ch     chan delivery // closed by the hub when the viewer fell behind
	filter streamFilter
	after  cursorPos // deliver only events after this
}

// pick returns the frames of fs the subscriber wants, sharing fs when it
// wants them all (the common case: no filter, nothing already sent).
func (sub *subscriber) pick(fs []frame) []frame {
	if len(fs) == 0 || !fs[len(fs)-1].pos.after(sub.after) {
		return nil
	}
	start := 0
	for start < len(fs) && !fs[start].pos.after(sub.after) {
		start++
	}
	fs = fs[start:]
	if len(sub.filter.types) == 0 && len(sub.filter.subjects) == 0 {
		return fs
	}
	var out []frame
	for _, f := range fs {
		if sub.filter.match(f) {
			out = append(out, f)
		}
	}
	return out
}

type hub struct {
	store holdfast.Store
	log   *slog.Logger
	poll  time.Duration

	mu      sync.Mutex
	running bool
	cursor  string    // the last event the tail has seen ("" before any)
	pos     cursorPos // cursor, parsed
	base    cursorPos // where the tail started: the ring covers (base, pos]
	ring    []frame
	subs    map[*subscriber]struct{}
	cut     int64 // viewers cut off for falling behind, for metrics
}

func newHub(store holdfast.Store, log *slog.Logger) *hub {
	return &hub{store: store, log: log, poll: hubPoll, subs: map[*subscriber]struct{}{}}
}

// subscribe attaches a stream that has seen everything up to after (the
// present when fromNow). ok is false when the hub's memory does not reach
// back to after: the caller pages from the database and tries again.
func (h *hub) subscribe(ctx context.Context, after cursorPos, fromNow bool, f streamFilter) (*subscriber, bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.running {
		if err := h.startLocked(ctx); err != nil {
			return nil, false, err
		}
	}
	if fromNow {
		after = h.pos
	}
	if h.base.after(after) {
		return nil, false, nil
	}
	sub := &subscriber{ch: make(chan delivery, subBuffer), filter: f, after: after}
	if first := sub.pick(h.ring); len(first) > 0 {
		sub.ch <- delivery{frames: slices.Clip(first)}
		sub.after = first[len(first)-1].pos
	}
	h.subs[sub] = struct{}{}
	return sub, true, nil
}

func (h *hub) unsubscribe(sub *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs, sub)
}

// startLocked starts the tail at the present.
func (h *hub) startLocked(ctx context.Context) error {
	var cursor string
	if t, ok := h.store.(holdfast.EventTail); ok {
		c, err := t.LastEventCursor(ctx)
		if err != nil {
			return err
		}
		cursor = c
	} else {
		// A store that cannot say where the present is: walk the feed.
		for {
			events, next, err := h.store.Events(ctx, cursor, hubPage)
			if err != nil {
				return err
			}
			cursor = next
			if len(events) < hubPage {
				break
			}
		}
	}
	pos, err := parseCursor(cursor)
	if err != nil {
		return err
	}
	h.cursor, h.pos, h.base, h.ring = cursor, pos, pos, nil
	h.running = true
	go h.tail()
	return nil
}

// tail reads the outbox while anyone listens and hands each page to every
// subscriber without waiting for any of them.
func (h *hub) tail() {
	t := time.NewTicker(h.poll)
	defer t.Stop()
	failures := 0
	for {
		h.mu.Lock()
		if len(h.subs) == 0 {
			h.running = false
			h.mu.Unlock()
			return
		}
		cursor := h.cursor
		h.mu.Unlock()

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		events, next, err := h.store.Events(ctx, cursor, hubPage)
		cancel()
		if err != nil {
			if failures++; failures == 1 || failures%50 == 0 {
				h.log.Warn("event stream tail", "err", err, "failures", failures)
			}
			<-t.C
			continue
		}
		failures = 0
		if len(events) > 0 {
			fs := make([]frame, len(events))
			for i, e := range events {
				fs[i] = newFrame(e)
			}
			h.deliver(fs, next)
		}
		if len(events) < hubPage {
			<-t.C
		}
	}
}

func (h *hub) deliver(fs []frame, next string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cursor, h.pos = next, fs[len(fs)-1].pos
	h.ring = append(h.ring, fs...)
	if over := len(h.ring) - hubRing; over > 0 {
		h.base = h.ring[over-1].pos
		h.ring = slices.Clone(h.ring[over:])
	}
	var joined []byte // fs encoded back to back, made once if wanted
	for sub := range h.subs {
		out := sub.pick(fs)
		if len(out) == 0 {
			continue
		}
		d := delivery{frames: out}
		if len(out) == len(fs) {
			if joined == nil {
				for _, f := range fs {
					joined = append(joined, f.sse...)
				}
			}
			d.joined = joined
		}
		select {
		case sub.ch <- d:
			sub.after = out[len(out)-1].pos
		default:
			// Too slow: cut off rather than wait or buffer without end;
			// the viewer resumes with its last event's id.
			close(sub.ch)
			delete(h.subs, sub)
			h.cut++
		}
	}
}

// viewers reports the streams attached and those cut off so far.
func (h *hub) viewers() (attached int, cut int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs), h.cut
}
