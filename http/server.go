// Package http serves holdfast's HTTP/JSON API v1: pools, groups, holds,
// bookings and the outbox feed, with RFC 9457 problem+json errors carrying
// holdfast's stable codes.
package http

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/holdfast/holdfast"
)

// Config configures a Server. Zero values are the documented defaults.
type Config struct {
	Store  holdfast.Store
	Logger *slog.Logger
	// Holds bounds hold TTLs; it must match the store's.
	Holds holdfast.Config
	// RequestTimeout is each request's deadline (default 10 s).
	RequestTimeout time.Duration
	// MaxBody is the largest request body accepted (default 1 MiB).
	MaxBody int64
}

// Server is the API as an http.Handler.
type Server struct {
	cfg Config
	mux *http.ServeMux
	log *slog.Logger
}

// NewServer returns the API handler.
func NewServer(cfg Config) *Server {
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	cfg.RequestTimeout = cmp.Or(cfg.RequestTimeout, 10*time.Second)
	cfg.MaxBody = cmp.Or(cfg.MaxBody, 1<<20)
	cfg.Holds = cfg.Holds.WithDefaults()
	s := &Server{cfg: cfg, mux: http.NewServeMux(), log: cfg.Logger}
	s.routes()
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	defer cancel()
	s.mux.ServeHTTP(w, r.WithContext(ctx))
}

// handler is an API handler: it returns the status and body to send, or an
// error to turn into a problem.
type handler func(r *http.Request) (int, any, error)

func (s *Server) handle(pattern string, h handler) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		status, body, err := h(r)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) && holdfast.ErrorCode(err) == holdfast.CodeInternal {
				err = holdfast.Errorf(holdfast.CodeBusy, "deadline passed")
			}
			writeProblem(w, problemOf(err, s.log))
			return
		}
		writeJSON(w, status, body)
	})
}

func (s *Server) routes() {
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := s.cfg.Store.Ready(r.Context()); err != nil {
			s.log.Warn("not ready", "err", err)
			writeProblem(w, Problem{Type: "https://holdfast.dev/problems/service_unavailable", Title: titles[CodeUnavailableService],
				Status: http.StatusServiceUnavailable, Code: CodeUnavailableService, Detail: "database not ready"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})

	s.handle("POST /v1/pools", s.createPool)
	s.handle("GET /v1/pools", s.listPools)
	s.handle("GET /v1/pools/{id}", s.getPool)
	s.handle("PATCH /v1/pools/{id}", s.patchPool)
	s.handle("POST /v1/groups", s.createGroup)
	s.handle("GET /v1/groups/{id}", s.getGroup)
	s.handle("POST /v1/groups/{id}/units", s.addUnits)
	s.handle("GET /v1/groups/{id}/units", s.listUnits)
	s.handle("POST /v1/holds", s.createHold)
	s.handle("GET /v1/holds", s.listHolds)
	s.handle("GET /v1/holds/{id}", s.getHold)
	s.handle("POST /v1/holds/{id}/confirm", s.confirm)
	s.handle("POST /v1/holds/{id}/release", s.release)
	s.handle("POST /v1/holds/{id}/extend", s.extend)
	s.handle("POST /v1/holds/{id}/cancel", s.cancel)
	s.handle("POST /v1/holds/{id}/complete", s.complete)
	s.handle("POST /v1/bookings", s.book)
	s.handle("GET /v1/events", s.events)
	s.handle("/", func(r *http.Request) (int, any, error) {
		return 0, nil, holdfast.Errorf(holdfast.CodeNotFound, "no route %s %s", r.Method, r.URL.Path)
	})
}

// decode reads a JSON body into v: at most MaxBody bytes, one value, no
// unknown fields. A body over the limit is read to the end (up to a bound)
// before the 413, so the client gets an answer, not a reset connection.
func (s *Server) decode(r *http.Request, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, s.cfg.MaxBody+1))
	if err != nil {
		return holdfast.Errorf(holdfast.CodeInvalid, "reading the body: %v", err)
	}
	if int64(len(body)) > s.cfg.MaxBody {
		_, _ = io.CopyN(io.Discard, r.Body, 64<<20)
		return holdfast.Errorf(CodeTooLarge, "the body is larger than %d bytes", s.cfg.MaxBody)
	}
	return decodeJSON(body, v)
}

func decodeJSON(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return holdfast.Errorf(holdfast.CodeInvalid, "the body is not valid JSON for this request: %v", jsonError(err))
	}
	if dec.More() {
		return holdfast.Errorf(holdfast.CodeInvalid, "the body has more than one JSON value")
	}
	return nil
}

// jsonError trims encoding/json's messages to what a client can act on.
func jsonError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return "field " + strconv.Quote(te.Field) + " must be " + te.Type.String()
	}
	return err.Error()
}

// ---- pools ----

type poolBody struct {
	ID             string `json:"id"`
	Name           string `json:"name"`
	Capacity       *int64 `json:"capacity"`
	PerHolderLimit int64  `json:"per_holder_limit"`
}

func (s *Server) createPool(r *http.Request) (int, any, error) {
	var b poolBody
	if err := s.decode(r, &b); err != nil {
		return 0, nil, err
	}
	if b.Capacity == nil {
		return 0, nil, holdfast.Errorf(holdfast.CodeInvalid, "capacity is required")
	}
	p, err := s.cfg.Store.CreatePool(r.Context(), holdfast.Pool{ID: b.ID, Name: b.Name, Capacity: *b.Capacity, PerHolderLimit: b.PerHolderLimit})
	return http.StatusCreated, p, err
}

func (s *Server) listPools(r *http.Request) (int, any, error) {
	pools, err := s.cfg.Store.Pools(r.Context())
	return http.StatusOK, map[string]any{"pools": pools}, err
}

func (s *Server) getPool(r *http.Request) (int, any, error) {
	p, err := s.cfg.Store.Pool(r.Context(), r.PathValue("id"))
	return http.StatusOK, p, err
}

func (s *Server) patchPool(r *http.Request) (int, any, error) {
	var b struct {
		Capacity *int64 `json:"capacity"`
	}
	if err := s.decode(r, &b); err != nil {
		return 0, nil, err
	}
	if b.Capacity == nil {
		return 0, nil, holdfast.Errorf(holdfast.CodeInvalid, "capacity is required")
	}
	p, err := s.cfg.Store.SetCapacity(r.Context(), r.PathValue("id"), *b.Capacity)
	return http.StatusOK, p, err
}

// ---- groups ----

func (s *Server) createGroup(r *http.Request) (int, any, error) {
	var g holdfast.Group
	if err := s.decode(r, &g); err != nil {
		return 0, nil, err
	}
	g, err := s.cfg.Store.CreateGroup(r.Context(), g)
	return http.StatusCreated, g, err
}

func (s *Server) getGroup(r *http.Request) (int, any, error) {
	g, err := s.cfg.Store.Group(r.Context(), r.PathValue("id"))
	return http.StatusOK, g, err
}

func (s *Server) addUnits(r *http.Request) (int, any, error) {
	var b struct {
		IDs []string `json:"ids"`
	}
	if err := s.decode(r, &b); err != nil {
		return 0, nil, err
	}
	id := r.PathValue("id")
	if err := s.cfg.Store.AddUnits(r.Context(), id, b.IDs); err != nil {
		return 0, nil, err
	}
	g, err := s.cfg.Store.Group(r.Context(), id)
	return http.StatusCreated, g, err
}

func (s *Server) listUnits(r *http.Request) (int, any, error) {
	units, err := s.cfg.Store.Units(r.Context(), r.PathValue("id"), holdfast.UnitStatus(r.URL.Query().Get("status")))
	return http.StatusOK, map[string]any{"units": units}, err
}

// ---- holds ----

// lineBody is a hold line as sent. Pointers tell a field sent as 0 from a
// field not sent, so a line mixing forms is caught.
type lineBody struct {
	Pool     string   `json:"pool"`
	Quantity *int64   `json:"quantity"`
	Units    []string `json:"units"`
	Group    string   `json:"group"`
	Any      *int64   `json:"any"`
}

type holdBody struct {
	Holder     string     `json:"holder"`
	TTLSeconds *int64     `json:"ttl_seconds"`
	Lines      []lineBody `json:"lines"`
	PaymentRef string     `json:"payment_ref"`
}

// holdRequest validates the body's shape and turns it into a request; the
// store validates the rest (bounds, ids, duplicates) before any write.
func (b holdBody) holdRequest(cfg holdfast.Config) (holdfast.HoldRequest, error) {
	r := holdfast.HoldRequest{Holder: b.Holder}
	if b.TTLSeconds != nil {
		if *b.TTLSeconds < 1 || *b.TTLSeconds > int64(cfg.MaxTTL/time.Second) {
			return r, holdfast.Errorf(holdfast.CodeInvalid, "ttl_seconds must be between 1 and %d", int64(cfg.MaxTTL/time.Second))
		}
		r.TTL = time.Duration(*b.TTLSeconds) * time.Second
	}
	if len(b.Lines) > holdfast.MaxLines {
		return r, holdfast.Errorf(holdfast.CodeInvalid, "a hold has at most %d lines", holdfast.MaxLines)
	}
	for i, l := range b.Lines {
		forms := 0
		if l.Pool != "" || l.Quantity != nil {
			forms++
		}
		if l.Units != nil {
			forms++
		}
		if l.Group != "" || l.Any != nil {
			forms++
		}
		if forms != 1 {
			return r, holdfast.LineErrorf(holdfast.CodeInvalid, i, "a line has exactly one form: {pool, quantity}, {units} or {group, any}")
		}
		line := holdfast.Line{Pool: l.Pool, Units: l.Units, Group: l.Group}
		switch {
		case l.Units != nil && len(l.Units) == 0:
			return r, holdfast.LineErrorf(holdfast.CodeInvalid, i, "units must name at least one unit")
		case l.Pool != "" && l.Quantity == nil, l.Quantity != nil && l.Pool == "":
			return r, holdfast.LineErrorf(holdfast.CodeInvalid, i, "a pool line needs both pool and quantity")
		case l.Group != "" && l.Any == nil, l.Any != nil && l.Group == "":
			return r, holdfast.LineErrorf(holdfast.CodeInvalid, i, "a group line needs both group and any")
		}
		if l.Quantity != nil {
			if *l.Quantity < 1 || *l.Quantity > holdfast.MaxQuantity {
				return r, holdfast.LineErrorf(holdfast.CodeInvalid, i, "quantity must be between 1 and %d", holdfast.MaxQuantity)
			}
			line.Quantity = *l.Quantity
		}
		if l.Any != nil {
			if *l.Any < 1 || *l.Any > holdfast.MaxUnitsOnLine {
				return r, holdfast.LineErrorf(holdfast.CodeInvalid, i, "any must be between 1 and %d", holdfast.MaxUnitsOnLine)
			}
			line.Any = *l.Any
		}
		r.Lines = append(r.Lines, line)
	}
	return r, r.Validate(cfg)
}

func (s *Server) createHold(r *http.Request) (int, any, error) {
	var b holdBody
	if err := s.decode(r, &b); err != nil {
		return 0, nil, err
	}
	if b.PaymentRef != "" {
		return 0, nil, holdfast.Errorf(holdfast.CodeInvalid, "payment_ref belongs on confirm or on /v1/bookings")
	}
	req, err := b.holdRequest(s.cfg.Holds)
	if err != nil {
		return 0, nil, err
	}
	h, err := s.cfg.Store.Hold(r.Context(), req)
	return http.StatusCreated, h, err
}

func (s *Server) book(r *http.Request) (int, any, error) {
	var b holdBody
	if err := s.decode(r, &b); err != nil {
		return 0, nil, err
	}
	req, err := b.holdRequest(s.cfg.Holds)
	if err != nil {
		return 0, nil, err
	}
	h, err := s.cfg.Store.Book(r.Context(), req, b.PaymentRef)
	return http.StatusCreated, h, err
}

func (s *Server) listHolds(r *http.Request) (int, any, error) {
	holder := r.URL.Query().Get("holder")
	if holder == "" {
		return 0, nil, holdfast.Errorf(holdfast.CodeInvalid, "the holder query parameter is required")
	}
	holds, err := s.cfg.Store.Holds(r.Context(), holder, "")
	return http.StatusOK, map[string]any{"holds": holds}, err
}

func (s *Server) getHold(r *http.Request) (int, any, error) {
	h, err := s.cfg.Store.GetHold(r.Context(), r.PathValue("id"))
	return http.StatusOK, h, err
}

// optionalBody decodes a body that may be empty.
func (s *Server) optionalBody(r *http.Request, v any) error {
	if r.ContentLength == 0 {
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, s.cfg.MaxBody+1))
	if err != nil {
		return holdfast.Errorf(holdfast.CodeInvalid, "reading the body: %v", err)
	}
	if int64(len(body)) > s.cfg.MaxBody {
		_, _ = io.CopyN(io.Discard, r.Body, 64<<20)
		return holdfast.Errorf(CodeTooLarge, "the body is larger than %d bytes", s.cfg.MaxBody)
	}
	if len(body) == 0 {
		return nil
	}
	return decodeJSON(body, v)
}

func (s *Server) confirm(r *http.Request) (int, any, error) {
	var b struct {
		PaymentRef string `json:"payment_ref"`
	}
	if err := s.optionalBody(r, &b); err != nil {
		return 0, nil, err
	}
	h, err := s.cfg.Store.Confirm(r.Context(), r.PathValue("id"), b.PaymentRef)
	return http.StatusOK, h, err
}

func (s *Server) release(r *http.Request) (int, any, error) {
	if err := s.optionalBody(r, &struct{}{}); err != nil {
		return 0, nil, err
	}
	h, err := s.cfg.Store.Release(r.Context(), r.PathValue("id"))
	return http.StatusOK, h, err
}

func (s *Server) extend(r *http.Request) (int, any, error) {
	var b struct {
		TTLSeconds *int64 `json:"ttl_seconds"`
	}
	if err := s.decode(r, &b); err != nil {
		return 0, nil, err
	}
	if b.TTLSeconds == nil || *b.TTLSeconds < 1 || *b.TTLSeconds > int64(s.cfg.Holds.MaxTTL/time.Second) {
		return 0, nil, holdfast.Errorf(holdfast.CodeInvalid, "ttl_seconds must be between 1 and %d", int64(s.cfg.Holds.MaxTTL/time.Second))
	}
	h, err := s.cfg.Store.Extend(r.Context(), r.PathValue("id"), time.Duration(*b.TTLSeconds)*time.Second)
	return http.StatusOK, h, err
}

func (s *Server) cancel(r *http.Request) (int, any, error) {
	if err := s.optionalBody(r, &struct{}{}); err != nil {
		return 0, nil, err
	}
	h, err := s.cfg.Store.Cancel(r.Context(), r.PathValue("id"))
	return http.StatusOK, h, err
}

func (s *Server) complete(r *http.Request) (int, any, error) {
	if err := s.optionalBody(r, &struct{}{}); err != nil {
		return 0, nil, err
	}
	h, err := s.cfg.Store.Complete(r.Context(), r.PathValue("id"))
	return http.StatusOK, h, err
}

// ---- events ----

func (s *Server) events(r *http.Request) (int, any, error) {
	q := r.URL.Query()
	var after int64
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return 0, nil, holdfast.Errorf(holdfast.CodeInvalid, "after must be a cursor from a previous page")
		}
		after = n
	}
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return 0, nil, holdfast.Errorf(holdfast.CodeInvalid, "limit must be between 1 and 1000")
		}
		limit = n
	}
	events, err := s.cfg.Store.Events(r.Context(), after, limit)
	if err != nil {
		return 0, nil, err
	}
	next := strconv.FormatInt(after, 10)
	if len(events) > 0 {
		next = strconv.FormatInt(events[len(events)-1].Seq, 10)
	}
	return http.StatusOK, map[string]any{"events": events, "next": next}, nil
}
