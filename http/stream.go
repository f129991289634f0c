package http

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/holdfast/holdfast"
)

// eventStream serves the outbox feed as server-sent events: each event
// with its cursor as the SSE id, so a browser that reconnects (sending
// Last-Event-ID) resumes where it left off, skipping nothing. A new
// stream starts at the present; Last-Event-ID or ?after= resumes after a
// cursor, ?after=0 replays from the beginning (paged from the database,
// then live from the hub). ?types= and ?subject= (comma-separated) keep
// only events of those types, or about those pools, groups or holds.
func (s *Server) eventStream(w http.ResponseWriter, r *http.Request, p principal) int {
	rc := http.NewResponseController(w)
	q := r.URL.Query()
	cursor := r.Header.Get("Last-Event-ID")
	if cursor == "" {
		cursor = q.Get("after")
	}
	fromNow := cursor == ""
	if cursor == "0" {
		cursor = ""
	}
	after, err := parseCursor(cursor)
	if err != nil {
		return s.writeError(w, err)
	}
	if !fromNow && cursor != "" {
		// A resume from before the purged events must be told so, not
		// skip them: ask the feed once before answering.
		if _, _, err := s.cfg.Store.Events(r.Context(), cursor, 1); holdfast.ErrorCode(err) == holdfast.CodeCursorExpired {
			return s.writeError(w, err)
		}
	}
	var filter streamFilter
	for _, t := range splitList(q.Get("types")) {
		filter.types = append(filter.types, holdfast.EventType(t))
	}
	filter.subjects = splitList(q.Get("subject"))
	ctx := r.Context()
	// A stream from the present is attached before it answers: every event
	// committed after the answer's first byte reaches it.
	var sub *subscriber
	if fromNow {
		if sub, _, err = s.hub.subscribe(ctx, cursorPos{}, true, filter); err != nil {
			return s.writeError(w, err)
		}
		defer s.hub.unsubscribe(sub)
	}

	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	// Each write has a deadline of its own (a stream outlives the server's
	// write timeout); a viewer that stops reading is cut off by it.
	_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 1000\n\n")
	if err := rc.Flush(); err != nil {
		return http.StatusOK
	}

	// Catch up from the database until the hub's memory reaches back to
	// where this viewer is, then follow the hub.
	for sub == nil {
		var ok bool
		if sub, ok, err = s.hub.subscribe(ctx, after, fromNow, filter); err != nil {
			s.streamEnded(ctx, err)
			return http.StatusOK
		} else if ok {
			defer s.hub.unsubscribe(sub)
			break
		}
		events, next, err := s.cfg.Store.Events(ctx, cursor, 500)
		if err != nil {
			s.streamEnded(ctx, err)
			return http.StatusOK
		}
		if len(events) == 0 {
			// Nothing between here and the hub's start is visible: the
			// hub starts this viewer where it is.
			if sub, _, err = s.hub.subscribe(ctx, cursorPos{}, true, filter); err != nil {
				s.streamEnded(ctx, err)
				return http.StatusOK
			}
			defer s.hub.unsubscribe(sub)
			break
		}
		_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		for _, e := range events {
			if f := newFrame(e); filter.match(f) {
				_, _ = w.Write(f.sse)
			}
		}
		if err := rc.Flush(); err != nil {
			return http.StatusOK
		}
		cursor = next
		if after, err = parseCursor(cursor); err != nil {
			return http.StatusOK
		}
	}

	keepAlive := time.NewTicker(15 * time.Second)
	defer keepAlive.Stop()
	last := cursor
	for {
		select {
		case d, ok := <-sub.ch:
			_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
			if !ok {
				// The hub cut this viewer off: it fell too far behind.
				fmt.Fprintf(w, ": too slow; reconnect with Last-Event-ID %s\n\n", last)
				_ = rc.Flush()
				return http.StatusOK
			}
			for more := true; more; {
				if last, err = d.write(w); err != nil {
					return http.StatusOK
				}
				select {
				case d, more = <-sub.ch:
				default:
					more = false
				}
			}
			if err := rc.Flush(); err != nil {
				return http.StatusOK
			}
		case <-keepAlive.C:
			_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
			fmt.Fprint(w, ": keep-alive\n\n")
			if err := rc.Flush(); err != nil {
				return http.StatusOK
			}
		case <-s.closing:
			fmt.Fprintf(w, ": server shutting down; reconnect with Last-Event-ID %s\n\n", last)
			_ = rc.Flush()
			return http.StatusOK
		case <-ctx.Done():
			return http.StatusOK
		}
	}
}

func (s *Server) streamEnded(ctx context.Context, err error) {
	if ctx.Err() == nil {
		s.log.Warn("event stream", "err", err)
	}
}

// splitList splits a comma-separated query value, dropping empty items.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// RaceFunc runs the classic race (10 tickets, 20 buyers, every strategy
// the backend offers) on a throwaway database and returns the results and
// their chart as SVG. serve provides it.
type RaceFunc func(ctx context.Context) (results any, svg []byte, err error)

func (s *Server) race(r *http.Request, c *call) (int, any, error) {
	if s.cfg.Race == nil {
		return 0, nil, holdfast.Errorf(holdfast.CodeUnsupported, "this server runs no race lab")
	}
	// The race has a deadline of its own (ServeHTTP gives this route none).
	ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
	defer cancel()
	results, svg, err := s.cfg.Race(ctx)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"results": results, "chart_svg": string(svg)}, nil
}

func (s *Server) audit(r *http.Request, c *call) (int, any, error) {
	rep, err := s.cfg.Store.Audit(r.Context())
	return http.StatusOK, rep, err
}
