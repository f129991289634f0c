package sqlstore

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"

	"github.com/holdfast/holdfast"
)

// layouts keeps the layouts read (a layout never changes once its group
// is made), at most maxLayouts of them.
type layouts struct {
	mu sync.Mutex
	m  map[string]*holdfast.Layout
}

const maxLayouts = 64

// GroupLayout reads a group's layout: ErrNotFound for a group that is not
// there or has none.
func (s *Store) GroupLayout(ctx context.Context, group string) (*holdfast.Layout, error) {
	return s.layout(ctx, s.db, group)
}

// layout is GroupLayout read on q: inside a transaction, the caller's own
// connection (a second one taken from a full pool would wait on claims
// that wait on this transaction's locks).
func (s *Store) layout(ctx context.Context, q Reader, group string) (*holdfast.Layout, error) {
	if err := holdfast.ValidateID("group", group); err != nil {
		return nil, holdfast.Errorf(holdfast.CodeNotFound, "group %q not found", group)
	}
	s.layouts.mu.Lock()
	l, ok := s.layouts.m[group]
	s.layouts.mu.Unlock()
	if ok {
		return l, nil
	}
	var raw *string
	err := q.QueryRow(ctx, `SELECT layout FROM groups WHERE id = $1`, group).Scan(&raw)
	if errors.Is(err, ErrNoRows) {
		return nil, holdfast.Errorf(holdfast.CodeNotFound, "group %q not found", group)
	}
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, holdfast.Errorf(holdfast.CodeNotFound, "group %q has no layout", group)
	}
	l = new(holdfast.Layout)
	if err := json.Unmarshal([]byte(*raw), l); err != nil {
		return nil, err
	}
	s.layouts.mu.Lock()
	if s.layouts.m == nil || len(s.layouts.m) >= maxLayouts {
		s.layouts.m = map[string]*holdfast.Layout{}
	}
	s.layouts.m[group] = l
	s.layouts.mu.Unlock()
	return l, nil
}

// together turns every {group, any, together} line of r into the units
// of a block of free seats next to each other in one row, nearest the
// stage; the claim then takes exactly those, atomically, or refuses (and
// the caller picks again: a seat of the block taken in between). A line
// with no such block: ErrUnavailable.
func (s *Store) together(ctx context.Context, r holdfast.HoldRequest) (holdfast.HoldRequest, error) {
	named := map[string]bool{}
	for _, l := range r.Lines {
		for _, u := range l.Units {
			named[u] = true
		}
	}
	out := r
	out.Lines = slices.Clone(r.Lines)
	for i, l := range r.Lines {
		if !l.Together {
			continue
		}
		layout, err := s.GroupLayout(ctx, l.Group)
		if holdfast.ErrorCode(err) == holdfast.CodeNotFound {
			if found, ferr := groupExists(ctx, s.db, l.Group); ferr == nil && found {
				return r, holdfast.LineErrorf(holdfast.CodeInvalid, i, "group %q has no layout: seats together need its rows", l.Group)
			}
			return r, holdfast.LineErrorf(holdfast.CodeNotFound, i, "group %q not found", l.Group)
		}
		if err != nil {
			return r, err
		}
		free, err := queryStrings(ctx, s.db, `SELECT u.id FROM units u LEFT JOIN holds h ON h.id = u.hold_id
			WHERE u.group_id = $1 AND u.channel = $2 AND `+unitFree, l.Group, l.Channel)
		if err != nil {
			return r, err
		}
		isFree := make(map[string]bool, len(free))
		for _, u := range free {
			isFree[u] = !named[u]
		}
		block := layout.Together(int(l.Any), func(u string) bool { return isFree[u] })
		if block == nil {
			return r, holdfast.LineErrorf(holdfast.CodeUnavailable, i, "group %q has no %d free seats together in one row", l.Group, l.Any)
		}
		for _, u := range block {
			named[u] = true
		}
		out.Lines[i] = holdfast.Line{Units: block, Channel: l.Channel}
	}
	return out, nil
}
