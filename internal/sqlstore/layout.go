package sqlstore

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/holdfast/holdfast"
)

// layouts keeps the layouts read (a layout never changes once its group
// is made), at most maxLayouts of them. A layout is read once however
// many ask for it at the same moment (a sale's first buyers all do; a
// 100,000-seat layout is megabytes of JSON): the others wait for that
// read.
type layouts struct {
	mu      sync.Mutex
	m       map[string]*layoutRead
	reading map[string]*layoutRead
}

// layoutRead is a layout being read (done is closed when l or err is
// set), or read: with its rows ordered for seats-together searches.
type layoutRead struct {
	done   chan struct{}
	l      *holdfast.Layout
	search *holdfast.SeatSearch
	err    error
}

const maxLayouts = 64

// GroupLayout reads a group's layout: ErrNotFound for a group that is not
// there or has none.
func (s *Store) GroupLayout(ctx context.Context, group string) (*holdfast.Layout, error) {
	r, err := s.layout(ctx, s.db, group)
	if err != nil {
		return nil, err
	}
	return r.l, nil
}

// layout is GroupLayout read on q: inside a transaction, the caller's own
// connection (a second one taken from a full pool would wait on claims
// that wait on this transaction's locks; and such a caller reads for
// itself rather than wait for another's read).
func (s *Store) layout(ctx context.Context, q Reader, group string) (*layoutRead, error) {
	if err := holdfast.ValidateID("group", group); err != nil {
		return nil, holdfast.Errorf(holdfast.CodeNotFound, "group %q not found", group)
	}
	c := &s.layouts
	c.mu.Lock()
	if r, ok := c.m[group]; ok {
		c.mu.Unlock()
		return r, nil
	}
	if q != s.db {
		c.mu.Unlock()
		return s.readLayout(ctx, q, group)
	}
	if r, ok := c.reading[group]; ok {
		c.mu.Unlock()
		select {
		case <-r.done:
			if r.err != nil {
				return nil, r.err
			}
			return r, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	r := &layoutRead{done: make(chan struct{})}
	if c.reading == nil {
		c.reading = map[string]*layoutRead{}
	}
	c.reading[group] = r
	c.mu.Unlock()
	// The read is not the asker's: it goes on if the asker gives up,
	// for those who wait on it.
	read, err := s.readLayout(context.WithoutCancel(ctx), q, group)
	if err == nil {
		r.l, r.search = read.l, read.search
	}
	r.err = err
	c.mu.Lock()
	delete(c.reading, group)
	c.mu.Unlock()
	close(r.done)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// readLayout reads group's layout from q and keeps it.
func (s *Store) readLayout(ctx context.Context, q Reader, group string) (*layoutRead, error) {
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
	l := new(holdfast.Layout)
	if err := json.Unmarshal([]byte(*raw), l); err != nil {
		return nil, err
	}
	r := &layoutRead{l: l, search: l.Search()}
	c := &s.layouts
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxLayouts {
		c.m = map[string]*layoutRead{}
	}
	c.m[group] = r
	c.mu.Unlock()
	return r, nil
}

// together turns every {group, any, together} line of r into the units
// of a block of free seats next to each other in one row, nearest the
// stage; the claim then takes exactly those, atomically, or refuses (and
// the caller picks again: a seat of the block taken in between). A line
// with no such block: ErrUnavailable. picked are the units it picked,
// which other picks of this process pass by until the caller gives them
// back (unpick), after its claim.
func (s *Store) together(ctx context.Context, r holdfast.HoldRequest) (out holdfast.HoldRequest, picked []string, err error) {
	named := map[string]bool{}
	for _, l := range r.Lines {
		for _, u := range l.Units {
			named[u] = true
		}
	}
	out = r
	out.Lines = slices.Clone(r.Lines)
	defer func() {
		if err != nil {
			s.unpick(picked, false)
			picked = nil
		}
	}()
	for i, l := range r.Lines {
		if !l.Together {
			continue
		}
		layout, err := s.layout(ctx, s.db, l.Group)
		if holdfast.ErrorCode(err) == holdfast.CodeNotFound {
			if found, ferr := groupExists(ctx, s.db, l.Group); ferr == nil && found {
				return r, picked, holdfast.LineErrorf(holdfast.CodeInvalid, i, "group %q has no layout: seats together need its rows", l.Group)
			}
			return r, picked, holdfast.LineErrorf(holdfast.CodeNotFound, i, "group %q not found", l.Group)
		}
		if err != nil {
			return r, picked, err
		}
		block, err := s.pickTogether(ctx, layout.search, l, named)
		if err != nil {
			return r, picked, err
		}
		if block == nil {
			return r, picked, holdfast.LineErrorf(holdfast.CodeUnavailable, i, "group %q has no %d free seats together in one row", l.Group, l.Any)
		}
		for _, u := range block {
			named[u] = true
		}
		picked = append(picked, block...)
		out.Lines[i] = holdfast.Line{Units: block, Channel: l.Channel}
	}
	return out, picked, nil
}

// togetherReadUnits is how many seats a pick reads first: ten rows of
// fifty. Each further read is twice the one before.
const togetherReadUnits = 500

// pickTogether picks line l's block by search, nearest the stage, reading
// which seats are free a few rows at a time; named are units the request
// takes already. The block is marked picked (unpick gives it back).
//
// Buyers who arrive together would all pick the same best block, and all
// but one would lose it and read again. So a pick passes by the blocks
// other requests of this process have picked and not yet claimed, and
// those claimed since it read their rows (its read may not show them),
// and decides and marks its block at one moment, under picks' lock, on
// the seats it has read (reading more rows, outside the lock, when the
// search needs them). Only when no block is left but those does it look
// at what it read alone: a claim may yet fail, a claimed seat be given
// back.
func (s *Store) pickTogether(ctx context.Context, search *holdfast.SeatSearch, l holdfast.Line, named map[string]bool) ([]string, error) {
	readAt := map[string]time.Time{} // the seats read, and when the read began
	isFree := map[string]bool{}      // those of them free, not the request's own
	for {
		var more []string
		search1 := func(passOthers bool) []string {
			block, _ := search.Together(int(l.Any), togetherReadUnits, func(units []string) (func(string) bool, error) {
				for _, u := range units {
					if _, ok := readAt[u]; !ok {
						more = units
						return nil, errReadMore
					}
				}
				return func(u string) bool { return isFree[u] && (!passOthers || !s.picks.passLocked(u, readAt[u])) }, nil
			})
			return block
		}
		s.picks.mu.Lock()
		block := search1(true)
		if block == nil && more == nil {
			block = search1(false)
		}
		if more == nil {
			s.picks.addLocked(block)
			s.picks.mu.Unlock()
			return block, nil
		}
		s.picks.mu.Unlock()
		at := time.Now()
		free, err := queryStrings(ctx, s.db, `SELECT u.id FROM units u LEFT JOIN holds h ON h.id = u.hold_id
			WHERE u.id IN (`+s.d.ListSelect(3)+`) AND u.group_id = $1 AND u.channel = $2 AND `+unitFree, l.Group, l.Channel, s.d.ListArg(more))
		if err != nil {
			return nil, err
		}
		for _, u := range more {
			readAt[u] = at
		}
		for _, u := range free {
			isFree[u] = !named[u]
		}
	}
}

// errReadMore stops a search that needs seats not read yet.
var errReadMore = errors.New("sqlstore: read more seats")

// picks are the seats of blocks that this process's requests for seats
// together have picked and not yet claimed (units, how many requests),
// and those claimed lately (claimed, when).
type picks struct {
	mu      sync.Mutex
	units   map[string]int
	claimed map[string]time.Time
	pruned  time.Time
}

// claimedFor is how long a claimed seat is remembered: longer than a
// pick's read of a few rows takes.
const claimedFor = 10 * time.Second

// addLocked marks units picked; the caller holds mu.
func (p *picks) addLocked(units []string) {
	if p.units == nil {
		p.units = map[string]int{}
	}
	for _, u := range units {
		p.units[u]++
	}
}

// passLocked reports whether a pick that read seat u at readAt passes it
// by: picked by another request, or claimed since. The caller holds mu.
func (p *picks) passLocked(u string, readAt time.Time) bool {
	return p.units[u] > 0 || p.claimed[u].After(readAt)
}

// unpick gives back units that together picked, once their claim has
// been made (claimed) or refused.
func (s *Store) unpick(units []string, claimed bool) {
	p := &s.picks
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	for _, u := range units {
		if p.units[u]--; p.units[u] <= 0 {
			delete(p.units, u)
		}
		if claimed {
			if p.claimed == nil {
				p.claimed = map[string]time.Time{}
			}
			p.claimed[u] = now
		}
	}
	if now.Sub(p.pruned) > claimedFor {
		p.pruned = now
		for u, at := range p.claimed {
			if now.Sub(at) > claimedFor {
				delete(p.claimed, u)
			}
		}
	}
}
