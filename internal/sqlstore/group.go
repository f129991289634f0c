package sqlstore

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"

	"github.com/holdfast/holdfast"
)

// ---- groups and units ----

func (s *Store) CreateGroup(ctx context.Context, g holdfast.Group) (holdfast.Group, error) {
	if err := g.Validate(); err != nil {
		return holdfast.Group{}, err
	}
	if err := g.LateConfirm.Normalize(&g.LateConfirmGrace); err != nil {
		return holdfast.Group{}, err
	}
	// The layout is kept apart and not echoed (a stadium's is large): the
	// answer, the event and a stored idempotent answer carry the group.
	layout := g.Layout
	g.Layout = nil
	var raw *string
	if layout != nil {
		b, err := json.Marshal(layout)
		if err != nil {
			return holdfast.Group{}, err
		}
		raw = new(string)
		*raw = string(b)
	}
	err := s.db.Transact(ctx, func(tx Querier) error {
		_, err := tx.Exec(ctx, `INSERT INTO groups (id, name, reusable, late_confirm, late_confirm_grace, layout, created_at) VALUES ($1, $2, $3, $4, $5, $6, holdfast_now_ms())`,
			g.ID, g.Name, g.Reusable, string(g.LateConfirm), g.LateConfirmGrace, raw)
		if err != nil {
			if s.d.Classify(err) == KindUnique {
				return holdfast.Errorf(holdfast.CodeConflict, "group %q already exists", g.ID)
			}
			return err
		}
		if layout != nil {
			// Every seat is a unit of the group, made with it.
			units := layout.Units()
			for len(units) > 0 {
				n := min(len(units), holdfast.MaxUnitsPerAdd)
				if err := s.insertUnits(ctx, tx, g.ID, units[:n]); err != nil {
					return err
				}
				units = units[n:]
			}
		}
		if err := s.event(ctx, tx, holdfast.EventGroupCreated, "", g.ID, g); err != nil {
			return err
		}
		return s.record(ctx, tx, g)
	})
	if err != nil {
		return holdfast.Group{}, err
	}
	if layout != nil {
		s.unitsAdded(ctx, len(layout.Units()))
	}
	return g, nil
}

// insertUnits makes units ids of group; ErrConflict if one exists.
func (s *Store) insertUnits(ctx context.Context, tx Querier, group string, ids []string) error {
	_, err := tx.Exec(ctx, `INSERT INTO units (id, group_id) SELECT value, $1 FROM (`+s.d.ListSelect(2)+`) AS ids`, group, s.d.ListArg(ids))
	if err != nil && s.d.Classify(err) == KindUnique {
		return holdfast.Errorf(holdfast.CodeConflict, "a unit with one of these ids already exists")
	}
	return err
}

func (s *Store) AddUnits(ctx context.Context, group string, ids []string) error {
	if err := holdfast.ValidateID("group", group); err != nil {
		return err
	}
	if err := holdfast.ValidateUnitIDs(ids); err != nil {
		return err
	}
	err := s.db.Transact(ctx, func(tx Querier) error {
		if found, err := groupExists(ctx, tx, group); err != nil {
			return err
		} else if !found {
			return holdfast.Errorf(holdfast.CodeNotFound, "group %q not found", group)
		}
		if err := s.insertUnits(ctx, tx, group, ids); err != nil {
			return err
		}
		if err := s.event(ctx, tx, holdfast.EventUnitsAdded, "", group, map[string]any{"group": group, "ids": ids}); err != nil {
			return err
		}
		return s.record(ctx, tx, nil)
	})
	if err == nil {
		s.unitsAdded(ctx, len(ids))
	}
	return err
}

// unitStatus is the SQL deciding a unit's status from its hold. A held hold
// past its expiry leaves the unit free: the next claim reclaims it.
const unitStatus = `CASE
	WHEN h.id IS NULL THEN 'free'
	WHEN h.status = 'held' AND h.expires_at <= holdfast_now_ms() THEN 'free'
	WHEN h.status = 'held' THEN 'held'
	ELSE 'confirmed' END`

// freeUnitsListed bounds the free units Group names: the counts are the
// answer for a big map, and a page of units is what a seat picker reads.
const freeUnitsListed = 1000

// unitFree is the SQL condition for a free unit (u joined to its hold h).
const unitFree = `(u.hold_id IS NULL OR (h.status = 'held' AND h.expires_at <= holdfast_now_ms()))`

// Group counts the group's units in one aggregate (no unit reaches the
// server) and names the first free ones, at most freeUnitsListed.
func (s *Store) Group(ctx context.Context, id string) (holdfast.GroupAvailability, error) {
	if err := holdfast.ValidateID("group", id); err != nil {
		return holdfast.GroupAvailability{}, err
	}
	return s.group(ctx, s.db, id)
}

// group reads a group's availability through q (a transaction's answer
// reads what it wrote).
func (s *Store) group(ctx context.Context, q Reader, id string) (holdfast.GroupAvailability, error) {
	var ga holdfast.GroupAvailability
	var late string
	err := q.QueryRow(ctx, `SELECT g.id, g.name, g.reusable, g.late_confirm, g.late_confirm_grace,
		(SELECT COUNT(*) FROM units u WHERE u.group_id = g.id),
		(SELECT COUNT(*) FROM units u JOIN holds h ON h.id = u.hold_id
		  WHERE u.group_id = g.id AND h.status = 'held' AND h.expires_at > holdfast_now_ms()),
		(SELECT COUNT(*) FROM units u JOIN holds h ON h.id = u.hold_id
		  WHERE u.group_id = g.id AND h.status <> 'held')
		FROM groups g WHERE g.id = $1`, id).Scan(&ga.ID, &ga.Name, &ga.Reusable, &late, &ga.LateConfirmGrace, &ga.Units, &ga.Held, &ga.Confirmed)
	ga.LateConfirm = holdfast.LatePolicy(late)
	if errors.Is(err, ErrNoRows) {
		return ga, holdfast.Errorf(holdfast.CodeNotFound, "group %q not found", id)
	}
	if err != nil {
		return ga, err
	}
	// What channels have set aside, and of it what is free: out of the
	// general sale's Free.
	ga.Allocations = []holdfast.UnitAllocation{}
	var aside int64
	err = QueryAll(ctx, q, []Query{{`SELECT u.channel, COUNT(*),
		COALESCE(SUM(CASE WHEN h.status = 'held' AND h.expires_at > holdfast_now_ms() THEN 1 ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN h.status <> 'held' THEN 1 ELSE 0 END), 0)
		FROM units u LEFT JOIN holds h ON h.id = u.hold_id WHERE u.group_id = $1 AND u.channel <> ''
		GROUP BY u.channel ORDER BY u.channel`, []any{id}, func(r Row) error {
		var a holdfast.UnitAllocation
		err := r.Scan(&a.Channel, &a.Units, &a.Held, &a.Confirmed)
		a.Available = a.Units - a.Held - a.Confirmed
		aside += a.Available
		if a.Channel == waitlistSale {
			ga.Waitlisted = a.Available
			return err
		}
		ga.Allocations = append(ga.Allocations, a)
		return err
	}}})
	if err != nil {
		return ga, err
	}
	ga.Free = ga.Units - ga.Held - ga.Confirmed - aside
	ga.FreeUnits = []string{}
	if ga.Free == 0 {
		return ga, nil
	}
	ga.FreeUnits, err = queryStrings(ctx, q, `SELECT u.id FROM units u LEFT JOIN holds h ON h.id = u.hold_id
		WHERE u.group_id = $1 AND u.channel = '' AND `+unitFree+` ORDER BY u.id LIMIT $2`, id, freeUnitsListed)
	if ga.FreeUnits == nil {
		ga.FreeUnits = []string{}
	}
	return ga, err
}

func (s *Store) Units(ctx context.Context, group string, status holdfast.UnitStatus) ([]holdfast.Unit, error) {
	units, _, err := s.UnitsPage(ctx, group, status, "", math.MaxInt32)
	return units, err
}

// unitStatusWhere is the SQL condition for units of a status.
func unitStatusWhere(status holdfast.UnitStatus) string {
	switch status {
	case holdfast.UnitFree:
		return " AND " + unitFree
	case holdfast.UnitHeld:
		return " AND h.status = 'held' AND h.expires_at > holdfast_now_ms()"
	case holdfast.UnitConfirmed:
		return " AND h.status <> 'held'"
	}
	return ""
}

// UnitsPage lists up to limit of a group's units after the unit id after
// (ordered by id, filtered by status when set); next is the last id
// listed when there may be more, else "". A seat map of any size is read
// a page at a time.
func (s *Store) UnitsPage(ctx context.Context, group string, status holdfast.UnitStatus, after string, limit int) ([]holdfast.Unit, string, error) {
	if err := s.checkGroup(ctx, group, status); err != nil {
		return nil, "", err
	}
	if after != "" {
		if err := holdfast.ValidateID("unit", after); err != nil {
			return nil, "", holdfast.Errorf(holdfast.CodeInvalid, "after must be a unit id: %v", err)
		}
	}
	rows, err := s.db.Query(ctx, `SELECT u.id, `+unitStatus+`, COALESCE(h.id, ''), COALESCE(h.owner, ''), u.channel
		FROM units u LEFT JOIN holds h ON h.id = u.hold_id WHERE u.group_id = $1 AND u.id > $2`+unitStatusWhere(status)+`
		ORDER BY u.id LIMIT $3`, group, after, limit)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	units := []holdfast.Unit{}
	for rows.Next() {
		u := holdfast.Unit{Group: group}
		if err := rows.Scan(&u.ID, &u.Status, &u.HoldID, &u.Owner, &u.Channel); err != nil {
			return nil, "", err
		}
		if u.Status == holdfast.UnitFree {
			u.HoldID, u.Owner = "", ""
		}
		units = append(units, u)
	}
	next := ""
	if len(units) == limit {
		next = units[len(units)-1].ID
	}
	return units, next, rows.Err()
}

// UnitStatuses returns the group's unit count and their statuses as one
// character each, in unit id order: f free, a free but set aside for a
// sales channel, h held, c confirmed — a 100,000-seat map in 100 KB, for
// viewers that redraw a whole map.
func (s *Store) UnitStatuses(ctx context.Context, group string) (string, error) {
	if err := s.checkGroup(ctx, group, ""); err != nil {
		return "", err
	}
	rows, err := s.db.Query(ctx, `SELECT CASE
		WHEN `+unitFree+` AND u.channel <> '' THEN 'a' WHEN `+unitFree+` THEN 'f' WHEN h.status = 'held' THEN 'h' ELSE 'c' END
		FROM units u LEFT JOIN holds h ON h.id = u.hold_id WHERE u.group_id = $1 ORDER BY u.id`, group)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	var b strings.Builder
	var c string
	for rows.Next() {
		if err := rows.Scan(&c); err != nil {
			return "", err
		}
		b.WriteString(c)
	}
	return b.String(), rows.Err()
}

func (s *Store) checkGroup(ctx context.Context, group string, status holdfast.UnitStatus) error {
	if err := holdfast.ValidateID("group", group); err != nil {
		return err
	}
	switch status {
	case "", holdfast.UnitFree, holdfast.UnitHeld, holdfast.UnitConfirmed:
	default:
		return holdfast.Errorf(holdfast.CodeInvalid, "status must be free, held or confirmed")
	}
	found, err := groupExists(ctx, s.db, group)
	if err == nil && !found {
		return holdfast.Errorf(holdfast.CodeNotFound, "group %q not found", group)
	}
	return err
}
