package http

import (
	"context"
	"fmt"
	"hash/fnv"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/holdfast/holdfast"
)

// Seat maps many people watch. A map of 100,000 seats is read a page at a
// time (?after=, ?limit=) or whole in a compact form (?format=compact: one
// character per unit), with an ETag so a viewer that refreshes an
// unchanged map gets 304 Not Modified. The compact status of a group is
// read from the database at most once per mapFresh per server, however
// many viewers ask: 500 viewers refreshing a map cost a few reads a
// second, not 500, and the sale they watch does not slow down.

const (
	// mapFresh is how old a compact map served to a viewer may be. A map
	// is a picture for people; claims are decided by the database.
	mapFresh = 250 * time.Millisecond
	// unitsPage is the default (and largest) page of the JSON unit list.
	unitsPage = 5000
)

// etagged is a handler's answer with an entity tag: the server answers
// 304 when the request's If-None-Match has it.
type etagged struct {
	etag string
	body any
}

func newETag(parts ...string) string {
	h := fnv.New64a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return fmt.Sprintf(`"%x"`, h.Sum64())
}

// notModified reports whether If-None-Match names etag.
func notModified(r *http.Request, etag string) bool {
	for _, t := range strings.Split(r.Header.Get("If-None-Match"), ",") {
		if t = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(t), "W/")); t == etag || t == "*" {
			return true
		}
	}
	return false
}

type unitMapEntry struct {
	done   chan struct{}
	at     time.Time
	status string
	err    error
	// etag and body are the map without ids as every viewer is sent it,
	// made once per read: hashing and encoding a 20,000-seat map for
	// each of thousands of requests a second is work the sale pays for.
	etag string
	body encoded
}

// unitMaps shares compact-map reads among viewers: one read in flight per
// group, its result served for mapFresh.
type unitMaps struct {
	mu sync.Mutex
	m  map[string]*unitMapEntry
}

func (c *unitMaps) get(ctx context.Context, store holdfast.UnitPages, group string) (*unitMapEntry, error) {
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]*unitMapEntry{}
	}
	e, ok := c.m[group]
	if ok {
		select {
		case <-e.done:
			ok = time.Since(e.at) < mapFresh
		default: // a read in flight: share it
		}
	}
	if !ok {
		if len(c.m) >= 10_000 {
			for g, old := range c.m {
				select {
				case <-old.done:
					delete(c.m, g)
				default:
				}
			}
		}
		e = &unitMapEntry{done: make(chan struct{})}
		c.m[group] = e
		go func() {
			// A context of its own: the read serves every viewer waiting.
			rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			e.status, e.err = store.UnitStatuses(rctx, group)
			if e.err == nil {
				e.etag = mapETag(group, e.status, false, 0)
				e.body = encode(unitMap{Group: group, Units: len(e.status), Status: e.status})
			}
			e.at = time.Now()
			close(e.done)
		}()
	}
	c.mu.Unlock()
	select {
	case <-e.done:
		return e, e.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %v", holdfast.ErrBusy, ctx.Err())
	}
}

func mapETag(group, status string, withIDs bool, ids int) string {
	return newETag(group, status, strconv.FormatBool(withIDs), strconv.Itoa(ids))
}

// unitMap is the compact form of a group's units.
type unitMap struct {
	Group string `json:"group"`
	Units int    `json:"units"`
	// Status has one character per unit, in unit id order: f free,
	// h held, c confirmed.
	Status string `json:"status"`
	// IDs are the units' ids in the same order, with ?ids=true.
	IDs []string `json:"ids,omitempty"`
}

func (s *Server) listUnits(r *http.Request, c *call) (int, any, error) {
	q := r.URL.Query()
	group := r.PathValue("id")
	status := holdfast.UnitStatus(q.Get("status"))
	pager, ok := s.cfg.Store.(holdfast.UnitPages)
	if !ok {
		units, err := s.cfg.Store.Units(r.Context(), group, status)
		return http.StatusOK, map[string]any{"units": c.ownHoldIDs(units)}, err
	}
	limit := unitsPage
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > unitsPage {
			return 0, nil, holdfast.Errorf(holdfast.CodeInvalid, "limit must be 1 to %d", unitsPage)
		}
		limit = n
	}
	switch f := q.Get("format"); f {
	case "compact":
		if status != "" || q.Get("after") != "" {
			return 0, nil, holdfast.Errorf(holdfast.CodeInvalid, "the compact form is the whole map: no status or after")
		}
		e, err := s.unitMaps.get(r.Context(), pager, group)
		if err != nil {
			return 0, nil, err
		}
		withIDs := q.Get("ids") == "true"
		if !withIDs {
			return http.StatusOK, etagged{etag: e.etag, body: e.body}, nil
		}
		m := unitMap{Group: group, Units: len(e.status), Status: e.status}
		// Ids change only when units are added: no cache needed.
		for after := ""; ; {
			units, next, err := pager.UnitsPage(r.Context(), group, "", after, unitsPage)
			if err != nil {
				return 0, nil, err
			}
			for _, u := range units {
				m.IDs = append(m.IDs, u.ID)
			}
			if after = next; next == "" {
				break
			}
		}
		return http.StatusOK, etagged{etag: mapETag(group, e.status, true, len(m.IDs)), body: m}, nil
	case "", "json":
	default:
		return 0, nil, holdfast.Errorf(holdfast.CodeInvalid, "format must be json or compact")
	}
	units, next, err := pager.UnitsPage(r.Context(), group, status, q.Get("after"), limit)
	if err != nil {
		return 0, nil, err
	}
	out := map[string]any{"units": c.ownHoldIDs(units)}
	if next != "" {
		out["next"] = next
	}
	return http.StatusOK, out, nil
}

// ownHoldIDs shows a client key the hold ids of its own holds only: a
// unit another key holds shows its status, not whose hold it is in (hold
// ids are what every change of a hold is addressed by).
func (p principal) ownHoldIDs(units []holdfast.Unit) []holdfast.Unit {
	o := p.owns()
	if o == "" {
		return units
	}
	for i := range units {
		if units[i].Owner != o {
			units[i].HoldID = ""
		}
	}
	return units
}
