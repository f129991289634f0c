package sqlstore

import (
	"context"
	"slices"

	"github.com/holdfast/holdfast"
)

// Named units set aside for a sales channel. A unit's channel column is
// the sale it is in ('' the general sale); every claim of a unit is
// conditional on it, as on hold_id, so setting it aside is one
// conditional update of free rows, and the seats never move between
// sales while a hold has them: a held or sold unit cannot be set aside,
// and one given back while held is the general sale's when its hold ends.

// AllocateUnits sets named units of a group aside for a channel.
func (s *Store) AllocateUnits(ctx context.Context, req holdfast.UnitAllocationRequest) (holdfast.GroupAvailability, error) {
	if err := req.Validate(); err != nil {
		return holdfast.GroupAvailability{}, err
	}
	// Expired holds on the units are ended first, as a claim ends them.
	if _, err := s.reclaimResources(ctx, nil, req.Units, nil); err != nil {
		return holdfast.GroupAvailability{}, err
	}
	units := slices.Sorted(slices.Values(req.Units))
	var out holdfast.GroupAvailability
	err := s.db.Transact(ctx, func(tx Querier) error {
		found, err := groupExists(ctx, tx, req.Group)
		if err != nil {
			return err
		}
		if !found {
			return holdfast.Errorf(holdfast.CodeNotFound, "group %q not found", req.Group)
		}
		list := s.d.ListArg(units)
		// The units' rows, locked in id order as every claim locks them.
		if err := lockUnitsInOrder(ctx, tx, s.d, `id IN (`+s.d.ListSelect(1)+`)`, list); err != nil {
			return err
		}
		type unit struct {
			group, channel string
			held           bool
		}
		got := map[string]unit{}
		err = QueryAll(ctx, tx, []Query{{`SELECT id, group_id, channel, hold_id IS NOT NULL FROM units WHERE id IN (` + s.d.ListSelect(1) + `)`,
			[]any{list}, func(r Row) error {
				var id string
				var u unit
				err := r.Scan(&id, &u.group, &u.channel, &u.held)
				got[id] = u
				return err
			}}})
		if err != nil {
			return err
		}
		var add []string
		for _, id := range req.Units { // the first refusal in the caller's order
			u, ok := got[id]
			switch {
			case !ok || u.group != req.Group:
				return holdfast.Errorf(holdfast.CodeNotFound, "unit %q is not in group %q", id, req.Group)
			case u.channel == req.Channel:
				continue // set aside for it already
			case u.channel != "":
				return holdfast.Errorf(holdfast.CodeUnavailable, "unit %q is set aside for channel %q", id, u.channel)
			case u.held:
				return holdfast.Errorf(holdfast.CodeUnavailable, "unit %q is held or sold: only a free unit is set aside", id)
			}
			add = append(add, id)
		}
		if len(add) > 0 {
			slices.Sort(add)
			n, err := tx.Exec(ctx, `UPDATE units SET channel = $1 WHERE id IN (`+s.d.ListSelect(2)+`) AND channel = '' AND hold_id IS NULL`,
				req.Channel, s.d.ListArg(add))
			if err != nil {
				return err
			}
			if n != int64(len(add)) {
				// Checked under the rows' locks above: cannot happen.
				return holdfast.Errorf(holdfast.CodeConflict, "units of group %q changed while being set aside: try again", req.Group)
			}
		}
		if out, err = s.group(ctx, tx, req.Group); err != nil {
			return err
		}
		if len(add) > 0 {
			if err := s.event(ctx, tx, holdfast.EventAllocationChanged, "", req.Group, unitAllocationEvent{out, req.Channel, add}); err != nil {
				return err
			}
		}
		return s.record(ctx, tx, out)
	})
	return out, err
}

// unitAllocationEvent is an allocation event of a group: the group as it
// is after, the channel, and the units set aside or given back.
type unitAllocationEvent struct {
	holdfast.GroupAvailability
	Channel string   `json:"channel"`
	Changed []string `json:"changed_units"`
}

// EndUnitAllocation gives a channel's named units of a group back to the
// general sale.
func (s *Store) EndUnitAllocation(ctx context.Context, group, channel string) (holdfast.GroupAvailability, error) {
	if err := holdfast.ValidateID("group", group); err != nil {
		return holdfast.GroupAvailability{}, err
	}
	if err := holdfast.ValidateID("channel", channel); err != nil {
		return holdfast.GroupAvailability{}, err
	}
	var out holdfast.GroupAvailability
	err := s.db.Transact(ctx, func(tx Querier) error {
		if err := lockUnitsInOrder(ctx, tx, s.d, `group_id = $1 AND channel = $2`, group, channel); err != nil {
			return err
		}
		given, err := queryStrings(ctx, tx, `UPDATE units SET channel = '' WHERE group_id = $1 AND channel = $2 RETURNING id`, group, channel)
		if err != nil {
			return err
		}
		if len(given) == 0 {
			return holdfast.Errorf(holdfast.CodeNotFound, "group %q has no units set aside for channel %q", group, channel)
		}
		if out, err = s.group(ctx, tx, group); err != nil {
			return err
		}
		slices.Sort(given)
		if err := s.event(ctx, tx, holdfast.EventAllocationReleased, "", group, unitAllocationEvent{out, channel, given}); err != nil {
			return err
		}
		return s.record(ctx, tx, out)
	})
	return out, err
}
