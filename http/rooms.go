package http

import (
	"net/http"
	"time"

	"github.com/holdfast/holdfast"
)

type roomBody struct {
	ID              string    `json:"id"`
	Pools           []string  `json:"pools"`
	Groups          []string  `json:"groups"`
	OpensAt         time.Time `json:"opens_at"`
	AdmitPerSecond  float64   `json:"admit_per_second"`
	AdmitTTLSeconds int64     `json:"admit_ttl_seconds"`
	MaxInside       int64     `json:"max_inside"`
	MaxPerKey       int64     `json:"max_per_key"`
	MaxUnits        int64     `json:"max_units_per_admission"`
	Admit           string    `json:"admit"`
}

func (s *Server) createRoom(r *http.Request, c *call) (int, any, error) {
	var b roomBody
	if err := s.decode(r, &b, false); err != nil {
		return 0, nil, err
	}
	room, err := c.changes(nil).CreateRoom(r.Context(), holdfast.Room{ID: b.ID, Pools: b.Pools, Groups: b.Groups, OpensAt: b.OpensAt,
		AdmitPerSecond: b.AdmitPerSecond, AdmitTTLSeconds: b.AdmitTTLSeconds, MaxInside: b.MaxInside, MaxPerKey: b.MaxPerKey, MaxUnitsPerAdmission: b.MaxUnits,
		Admit: holdfast.AdmitMode(b.Admit)})
	return http.StatusCreated, room, err
}

func (s *Server) listRooms(r *http.Request, _ *call) (int, any, error) {
	rooms, err := s.cfg.Store.Rooms(r.Context())
	return http.StatusOK, map[string]any{"rooms": rooms}, err
}

func (s *Server) getRoom(r *http.Request, _ *call) (int, any, error) {
	room, err := s.cfg.Store.Room(r.Context(), r.PathValue("id"))
	return http.StatusOK, room, err
}

// joinRoom gives the holder a place: the same one on every call.
func (s *Server) joinRoom(r *http.Request, c *call) (int, any, error) {
	var b struct {
		Holder string `json:"holder"`
	}
	if err := s.decode(r, &b, false); err != nil {
		return 0, nil, err
	}
	t, err := c.changes(nil).JoinRoom(r.Context(), r.PathValue("id"), b.Holder, c.id)
	return http.StatusAccepted, t, err
}

// getTicket reads a place; another key's is not found.
func (s *Server) getTicket(r *http.Request, c *call) (int, any, error) {
	t, err := s.cfg.Store.RoomTicket(r.Context(), r.PathValue("id"), r.PathValue("ticket"))
	if err == nil && c.owns() != "" && t.Owner != c.owns() {
		return 0, nil, holdfast.Errorf(holdfast.CodeNotFound, "ticket %q not found in room %q", r.PathValue("ticket"), r.PathValue("id"))
	}
	return http.StatusOK, t, err
}

// getDraw publishes a room's draw once it has opened. Ticket ids are the
// admin's to see (a ticket id reads its admission): a client key sees
// each ticket as its SHA-256, and finds its own by hashing it.
func (s *Server) getDraw(r *http.Request, c *call) (int, any, error) {
	d, err := s.cfg.Store.RoomDraw(r.Context(), r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	if c.owns() != "" {
		for i := range d.Entries {
			d.Entries[i].Ticket = ""
		}
	}
	return http.StatusOK, d, nil
}

// joinWaitlist puts the holder on a pool's waitlist: the same entry on
// every call while it waits or is offered.
func (s *Server) joinWaitlist(r *http.Request, c *call) (int, any, error) {
	var b struct {
		Holder    string `json:"holder"`
		Quantity  int64  `json:"quantity"`
		Admission string `json:"admission"`
		Ticket    string `json:"ticket"`
	}
	if err := s.decode(r, &b, false); err != nil {
		return 0, nil, err
	}
	if err := c.noChannel("join a waitlist"); err != nil {
		return 0, nil, err
	}
	adm, err := admission(r, holdBody{Admission: b.Admission})
	if err != nil {
		return 0, nil, err
	}
	e, err := c.changes(nil).JoinWaitlist(r.Context(), holdfast.WaitlistRequest{Pool: r.PathValue("id"), Holder: b.Holder,
		Quantity: b.Quantity, Owner: c.id, QuotaKey: c.quotaKey, Admission: adm, Ticket: b.Ticket})
	return http.StatusCreated, e, err
}

// ticketToWaitlist moves a place the room's sell-out ended to the
// waitlist of a pool the room protects (the only one, or "pool"),
// keeping its order: the ticket's holder, this key's.
func (s *Server) ticketToWaitlist(r *http.Request, c *call) (int, any, error) {
	var b struct {
		Quantity int64  `json:"quantity"`
		Pool     string `json:"pool"`
	}
	if err := s.decode(r, &b, false); err != nil {
		return 0, nil, err
	}
	if err := c.noChannel("join a waitlist"); err != nil {
		return 0, nil, err
	}
	room, ticket := r.PathValue("id"), r.PathValue("ticket")
	t, err := s.cfg.Store.RoomTicket(r.Context(), room, ticket)
	if err == nil && t.Owner != c.id {
		err = holdfast.Errorf(holdfast.CodeNotFound, "ticket %q not found in room %q", ticket, room)
	}
	if err != nil {
		return 0, nil, err
	}
	if b.Pool == "" {
		rm, err := s.cfg.Store.Room(r.Context(), room)
		if err != nil {
			return 0, nil, err
		}
		if len(rm.Pools) != 1 {
			return 0, nil, holdfast.Errorf(holdfast.CodeInvalid, "room %q protects %d pools: name the pool", room, len(rm.Pools))
		}
		b.Pool = rm.Pools[0]
	}
	e, err := c.changes(nil).JoinWaitlist(r.Context(), holdfast.WaitlistRequest{Pool: b.Pool, Holder: t.Holder,
		Quantity: b.Quantity, Owner: c.id, QuotaKey: c.quotaKey, Ticket: ticket})
	return http.StatusCreated, e, err
}

// listWaitlist is a pool's line, waiting and offered, in order (admin).
func (s *Server) listWaitlist(r *http.Request, _ *call) (int, any, error) {
	es, err := s.cfg.Store.Waitlist(r.Context(), r.PathValue("id"))
	return http.StatusOK, map[string]any{"entries": es}, err
}

// getWaitlistEntry reads an entry; another key's is not found.
func (s *Server) getWaitlistEntry(r *http.Request, c *call) (int, any, error) {
	e, err := s.cfg.Store.WaitlistEntry(r.Context(), r.PathValue("id"), r.PathValue("entry"))
	if err == nil && c.owns() != "" && e.Owner != c.owns() {
		return 0, nil, holdfast.Errorf(holdfast.CodeNotFound, "waitlist entry %q not found on pool %q", r.PathValue("entry"), r.PathValue("id"))
	}
	return http.StatusOK, e, err
}

// leaveWaitlist takes one's own entry off the line.
func (s *Server) leaveWaitlist(r *http.Request, c *call) (int, any, error) {
	e, err := c.changes(nil).LeaveWaitlist(r.Context(), r.PathValue("id"), r.PathValue("entry"), c.owns())
	return http.StatusOK, e, err
}

// joinGroupWaitlist puts the holder on a group's waitlist: any k of its
// units, or k together in one row.
func (s *Server) joinGroupWaitlist(r *http.Request, c *call) (int, any, error) {
	var b struct {
		Holder    string `json:"holder"`
		Any       int64  `json:"any"`
		Together  bool   `json:"together"`
		Admission string `json:"admission"`
	}
	if err := s.decode(r, &b, false); err != nil {
		return 0, nil, err
	}
	if err := c.noChannel("join a waitlist"); err != nil {
		return 0, nil, err
	}
	adm, err := admission(r, holdBody{Admission: b.Admission})
	if err != nil {
		return 0, nil, err
	}
	e, err := c.changes(nil).JoinWaitlist(r.Context(), holdfast.WaitlistRequest{Group: r.PathValue("id"), Holder: b.Holder,
		Any: b.Any, Together: b.Together, Owner: c.id, QuotaKey: c.quotaKey, Admission: adm})
	return http.StatusCreated, e, err
}

func (s *Server) listGroupWaitlist(r *http.Request, _ *call) (int, any, error) {
	es, err := s.cfg.Store.GroupWaitlist(r.Context(), r.PathValue("id"))
	return http.StatusOK, map[string]any{"entries": es}, err
}

// getGroupWaitlistEntry reads an entry; another key's is not found.
func (s *Server) getGroupWaitlistEntry(r *http.Request, c *call) (int, any, error) {
	e, err := s.cfg.Store.GroupWaitlistEntry(r.Context(), r.PathValue("id"), r.PathValue("entry"))
	if err == nil && c.owns() != "" && e.Owner != c.owns() {
		return 0, nil, holdfast.Errorf(holdfast.CodeNotFound, "waitlist entry %q not found on group %q", r.PathValue("entry"), r.PathValue("id"))
	}
	return http.StatusOK, e, err
}

func (s *Server) leaveGroupWaitlist(r *http.Request, c *call) (int, any, error) {
	e, err := c.changes(nil).LeaveGroupWaitlist(r.Context(), r.PathValue("id"), r.PathValue("entry"), c.owns())
	return http.StatusOK, e, err
}
