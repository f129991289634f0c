package http

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/holdfast/holdfast"
)

// streamPoll is how often the stream looks for new events.
const streamPoll = 200 * time.Millisecond

// eventStream serves the outbox feed as server-sent events: each event
// with its cursor as the SSE id, so a browser that reconnects (sending
// Last-Event-ID) resumes where it left off, skipping nothing.
func (s *Server) eventStream(w http.ResponseWriter, r *http.Request, p principal) int {
	rc := http.NewResponseController(w)
	// A stream outlives the per-request deadline and the server's write
	// timeout; it ends when the client goes or the server shuts down.
	_ = rc.SetWriteDeadline(time.Time{})
	cursor := r.Header.Get("Last-Event-ID")
	if cursor == "" {
		cursor = r.URL.Query().Get("after")
	}
	ctx := r.Context()
	if _, _, err := s.cfg.Store.Events(ctx, cursor, 1); err != nil {
		return s.writeError(w, err)
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 1000\n\n")
	_ = rc.Flush()
	tick := time.NewTicker(streamPoll)
	defer tick.Stop()
	idle := 0
	for {
		events, next, err := s.cfg.Store.Events(ctx, cursor, 500)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("event stream", "err", err)
			}
			return http.StatusOK
		}
		for _, e := range events {
			b, _ := json.Marshal(e)
			fmt.Fprintf(w, "id: %s\nevent: %s\ndata: %s\n\n", e.Cursor, e.Type, b)
		}
		cursor = next
		if len(events) > 0 {
			idle = 0
			if err := rc.Flush(); err != nil {
				return http.StatusOK
			}
		} else if idle++; idle*int(streamPoll/time.Millisecond) >= 15_000 {
			idle = 0
			fmt.Fprint(w, ": keep-alive\n\n")
			if err := rc.Flush(); err != nil {
				return http.StatusOK
			}
		}
		if len(events) == 500 {
			continue
		}
		select {
		case <-ctx.Done():
			return http.StatusOK
		case <-tick.C:
		}
	}
}

// RaceFunc runs the classic race (10 tickets, 20 buyers, every strategy
// the backend offers) on a throwaway database and returns the results and
// their chart as SVG. serve provides it.
type RaceFunc func(ctx context.Context) (results any, svg []byte, err error)

func (s *Server) race(r *http.Request, _ principal) (int, any, error) {
	if s.cfg.Race == nil {
		return 0, nil, holdfast.Errorf(holdfast.CodeUnsupported, "this server runs no race lab")
	}
	// A context of its own: the race's many holds on its throwaway
	// databases must not carry this request's values (its idempotency key).
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	results, svg, err := s.cfg.Race(ctx)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"results": results, "chart_svg": string(svg)}, nil
}

func (s *Server) audit(r *http.Request, _ principal) (int, any, error) {
	rep, err := s.cfg.Store.Audit(r.Context())
	return http.StatusOK, rep, err
}
