package http

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/holdfast/holdfast"
)

// A ticket's stream tells one joiner their position, ETA and the moment
// they are admitted. Twenty thousand joiners watching must not mean twenty
// thousand readers of the database: one reader per room per server reads
// the room's row every roomPollInterval and wakes every stream on it; a
// ranked waiting place works its position out from that alone, and only a
// place whose turn came (or a room that sold out, or a place not yet
// ranked, every unrankedReread) reads its ticket again.
const (
	roomPollInterval = 250 * time.Millisecond
	unrankedReread   = 5 * time.Second
	// maxTicketStreams bounds the ticket streams one server keeps open.
	maxTicketStreams = 20000
	// revokedCheck is how often a stream asks whether its key was revoked
	// (a read of the key cache; the store at most once per keyCacheTTL).
	revokedCheck = 200 * time.Millisecond
)

// roomWatch shares room reads among ticket streams.
type roomWatch struct {
	mu      sync.Mutex
	rooms   map[string]*watchedRoom
	streams int
}

// watchedRoom is one room's latest read; changed is closed and replaced
// at every read.
type watchedRoom struct {
	viewers int
	snap    holdfast.Room
	changed chan struct{}
}

// watch attaches a stream to room, starting its reader if it is the
// first; release detaches it (the reader stops with the last).
func (rw *roomWatch) watch(store holdfast.RoomStore, room string) (wr *watchedRoom, release func(), err error) {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	if rw.streams >= maxTicketStreams {
		return nil, nil, holdfast.Errorf(CodeTooManyStreams, "this server has %d ticket streams open, its most", rw.streams)
	}
	if rw.rooms == nil {
		rw.rooms = map[string]*watchedRoom{}
	}
	wr = rw.rooms[room]
	if wr == nil {
		wr = &watchedRoom{changed: make(chan struct{})}
		rw.rooms[room] = wr
		go rw.read(store, room, wr)
	}
	wr.viewers++
	rw.streams++
	return wr, func() {
		rw.mu.Lock()
		defer rw.mu.Unlock()
		wr.viewers--
		rw.streams--
	}, nil
}

// read reads the room until no stream watches it.
func (rw *roomWatch) read(store holdfast.RoomStore, room string, wr *watchedRoom) {
	t := time.NewTicker(roomPollInterval)
	defer t.Stop()
	for range t.C {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		snap, err := store.Room(ctx, room)
		cancel()
		rw.mu.Lock()
		if wr.viewers == 0 {
			delete(rw.rooms, room)
			rw.mu.Unlock()
			return
		}
		if err == nil {
			wr.snap = snap
			close(wr.changed)
			wr.changed = make(chan struct{})
		}
		rw.mu.Unlock()
	}
}

// latest returns the room's last read and the channel its next closes.
func (rw *roomWatch) latest(wr *watchedRoom) (holdfast.Room, <-chan struct{}) {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	return wr.snap, wr.changed
}

// ticketStream serves GET /v1/rooms/{id}/tickets/{ticket}/stream: an SSE
// "ticket" event with the ticket (as GET answers it) now and at every
// change of position or status, until the place is no longer waiting —
// the last event carries the admission, or sold_out.
func (s *Server) ticketStream(w http.ResponseWriter, r *http.Request, p principal) {
	ctx := r.Context()
	room, id := r.PathValue("id"), r.PathValue("ticket")
	t, err := s.cfg.Store.RoomTicket(ctx, room, id)
	if err == nil && p.owns() != "" && t.Owner != p.owns() {
		err = holdfast.Errorf(holdfast.CodeNotFound, "ticket %q not found in room %q", id, room)
	}
	if err != nil {
		s.writeError(w, err)
		return
	}
	closeStream, err := s.openStream(p)
	if err != nil {
		w.Header().Set("Retry-After", "5")
		s.writeError(w, err)
		return
	}
	defer closeStream()
	wr, release, err := s.roomWatch.watch(s.cfg.Store, room)
	if err != nil {
		w.Header().Set("Retry-After", "5")
		s.writeError(w, err)
		return
	}
	defer release()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func(t holdfast.RoomTicket) bool {
		b, _ := json.Marshal(t)
		_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		if _, err := fmt.Fprintf(w, "event: ticket\ndata: %s\n\n", b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !send(t) {
		return
	}
	keepAlive := time.NewTicker(15 * time.Second)
	defer keepAlive.Stop()
	// Revoking the key ends its streams, on every server within a
	// keyCacheTTL and this tick.
	keyCheck := time.NewTicker(revokedCheck)
	defer keyCheck.Stop()
	read := time.Now()
	_, changed := s.roomWatch.latest(wr)
	for t.Status == holdfast.TicketWaiting {
		select {
		case <-ctx.Done():
			return
		case <-s.closing:
			return
		case <-keyCheck.C:
			if s.revoked(r, p) {
				_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
				fmt.Fprint(w, "event: revoked\ndata: {\"code\":\"unauthorized\",\"detail\":\"the API key was revoked\"}\n\n")
				_ = rc.Flush()
				return
			}
			continue
		case <-keepAlive.C:
			_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil || rc.Flush() != nil {
				return
			}
			continue
		case <-changed:
		}
		var snap holdfast.Room
		snap, changed = s.roomWatch.latest(wr)
		next := t
		switch {
		case t.Rank > 0 && !snap.SoldOut && t.Rank > snap.AdmittedThrough:
			// Still waiting: the position follows from the room's row.
			next.Position = t.Rank - snap.AdmittedThrough
			next.EstimatedWaitSeconds = math.Round(float64(next.Position-1)/snap.AdmitPerSecond*10) / 10
		case t.Rank > 0 || snap.SoldOut || time.Since(read) >= unrankedReread:
			// Admitted, told sold out, or not ranked yet: read the ticket.
			if next, err = s.cfg.Store.RoomTicket(ctx, room, id); err != nil {
				return
			}
			read = time.Now()
		}
		if next.Position != t.Position || next.Status != t.Status || next.EstimatedWaitSeconds != t.EstimatedWaitSeconds {
			if !send(next) {
				return
			}
		}
		t = next
	}
}
