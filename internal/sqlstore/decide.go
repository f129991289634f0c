package sqlstore

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/holdfast/holdfast"
)

// The one decision. Whether a request can have what it asks — the
// waiting room's rule (an admission of the one room guarding what it
// takes, spendable, buying that much), capacity, the holder's per-holder
// limit, the key's quota, named units free, enough free units of a
// group — is decided here and only here, by grant, on rows read into a
// batchState: locked, by a batch that then writes what grant took
// (batch.go); or read without locks, by the refusal of a claim made one
// by one (explain), which names the rule and line that failed. Every
// refusal's code, line and text comes from grant.

// batchState is what a batch has locked (or a look has read) and what its
// grants have taken so far, in memory.
type batchState struct {
	newHoldID func() string
	pools     map[string]*poolRow
	holders   map[holderKey]int64 // taken per (pool, holder), limited pools
	// holdersAdded is what the batch's grants add to holders' totals.
	holdersAdded map[holderKey]int64
	units        map[string]bool     // named units: free now
	unitSale     map[string]string   // named units: their sale ("" general, else a channel)
	free         map[string][]string // per sale of a group (saleKey): free units picked for "any" lines
	// stale: named units whose hold has expired (free to the next claim,
	// once reclaimed: the ordinary path does that).
	stale map[string]bool
	// expiredPools: pools with expired holds not yet reclaimed; nil until
	// a refusal on a pool needs to know.
	expiredPools map[string]bool
	// groups: the groups that exist, read by a look (nil in a batch, whose
	// missing groups take the ordinary path).
	groups map[string]bool
	// quotas: the keys' quotas of the requests counted against one (locked
	// by a batch, last in the global order), and what the batch's grants
	// add to each.
	quotas     map[string]quota
	quotaAdded map[string]int64
	// sale: the sale each unit granted is taken in (the writer's update
	// takes it only while it is in that sale).
	sale map[string]string
	// tickets: the admissions the batch's requests spend, locked, while
	// spendable (the request's holder's, key's and room's, admitted,
	// unexpired, unused), with the units one buys in its room (0: no
	// bound); a grant spends its request's.
	tickets map[ticket]int64
}

type poolRow struct {
	capacity, held, confirmed, limit int64
	addHeld, addConfirmed            int64
}

type holderKey struct{ pool, holder string }

// batchFailure is why a batch could not grant a request: the first line,
// in request order, that could not be had, and what was short.
type batchFailure struct {
	line   int
	code   holdfast.Code
	detail string
	// definite: true at the moment the batch holds its locks, whatever
	// expired holds the ordinary path could reclaim (none are in the way).
	definite bool
	pool     string // a pool line's pool, to check for expired holds
	// err is the refusal itself, where it says more than code, line and
	// text (the room to join, on admission_required).
	err *holdfast.Error
}

// refusal is the error f names.
func (f *batchFailure) refusal() error {
	if f.err != nil {
		return f.err
	}
	return holdfast.LineErrorf(f.code, f.line, "%s", f.detail)
}

// grant decides one request on the batch's locked rows: every line or
// none. The hold it returns has its lines (and units) filled in.
func (st *batchState) grant(req *claimReq, now int64) (holdfast.Hold, *batchFailure) {
	r := req.r
	type take struct {
		pool string
		q    int64
	}
	var pools []take
	var named []string
	picked := map[string]int{}   // per sale of a group: units taken by this request
	sales := map[string]string{} // each unit's sale, for st.sale once granted
	lines := make([]holdfast.Line, len(r.Lines))
	// A key's quota counts held units (a booking is never held): the line
	// at which the request would pass it fails there, after the line's own
	// existence and its holder's limit, before its capacity — the rules
	// about who asks before what is left.
	quotaLine := -1
	q, counted := st.counted(req)
	if counted {
		if line, over := q.passes(r); over {
			quotaLine = line
		}
	}
	// The waiting room's rule comes before the inventory's: an admission
	// that cannot be spent here buys nothing.
	if f := st.roomRule(req); f != nil {
		return holdfast.Hold{}, f
	}
	overQuota := func(i int) *batchFailure {
		if i != quotaLine {
			return nil
		}
		return &batchFailure{line: i, code: holdfast.CodeQuotaExceeded, definite: true, detail: q.text()}
	}
	for i, l := range r.Lines {
		lines[i] = publicLine(holdfast.Line{Pool: l.Pool, Quantity: l.Quantity, Group: l.Group, Any: l.Any})
		switch l.Kind() {
		case holdfast.LinePool:
			p := st.pools[l.Pool]
			if p == nil {
				if pool, channel := splitPool(l.Pool); channel != "" {
					// A channel without an allocation of the pool: as if
					// there were nothing left for it.
					return holdfast.Hold{}, &batchFailure{line: i, code: holdfast.CodeSoldOut, detail: fmt.Sprintf("pool %q has no allocation for channel %q", pool, channel), definite: true}
				}
				return holdfast.Hold{}, &batchFailure{line: i, code: holdfast.CodeNotFound, detail: fmt.Sprintf("pool %q not found", l.Pool), definite: true}
			}
			want := l.Quantity
			for _, t := range pools {
				if t.pool == l.Pool {
					want += t.q
				}
			}
			if taken := st.holders[holderKey{l.Pool, holderScope(r.Owner, r.Holder)}]; p.limit > 0 && taken+want > p.limit {
				return holdfast.Hold{}, &batchFailure{line: i, code: holdfast.CodeLimitExceeded, pool: l.Pool,
					detail: fmt.Sprintf("%d more of %s would pass its per-holder limit of %d", l.Quantity, poolName(l.Pool), p.limit)}
			}
			if f := overQuota(i); f != nil {
				return holdfast.Hold{}, f
			}
			if avail := p.capacity - p.held - p.confirmed - p.addHeld - p.addConfirmed; avail < want {
				return holdfast.Hold{}, &batchFailure{line: i, code: holdfast.CodeSoldOut, pool: l.Pool,
					detail: fmt.Sprintf("%s has %d available, %d asked", poolName(l.Pool), max(0, avail-(want-l.Quantity)), l.Quantity)}
			}
			pools = append(pools, take{l.Pool, l.Quantity})
		case holdfast.LineUnits:
			for _, u := range l.Units {
				if _, found := st.units[u]; !found {
					return holdfast.Hold{}, &batchFailure{line: i, code: holdfast.CodeNotFound, detail: fmt.Sprintf("unit %q not found", u), definite: true}
				}
			}
			if f := overQuota(i); f != nil {
				return holdfast.Hold{}, f
			}
			for _, u := range l.Units {
				if l.Channel != anyChannel && st.unitSale[u] != l.Channel {
					// Set aside for another sale: to this one, as if taken.
					return holdfast.Hold{}, &batchFailure{line: i, code: holdfast.CodeUnavailable, detail: fmt.Sprintf("unit %q is taken", u), definite: true}
				}
				if !st.units[u] {
					return holdfast.Hold{}, &batchFailure{line: i, code: holdfast.CodeUnavailable, detail: fmt.Sprintf("unit %q is taken", u), definite: !st.stale[u]}
				}
			}
			named = append(named, l.Units...)
			lines[i].Units = slices.Clone(l.Units)
			for _, u := range l.Units {
				sales[u] = l.Channel
				if l.Channel == anyChannel { // a waitlist's offer: each unit in the sale it is in
					sales[u] = st.unitSale[u]
				}
			}
		case holdfast.LineAny:
			// Short of free units the batch could lock: others may be
			// locked by claims in flight, or held by expired holds; the
			// ordinary path waits for them and decides.
			if st.groups != nil && !st.groups[l.Group] {
				return holdfast.Hold{}, &batchFailure{line: i, code: holdfast.CodeNotFound, detail: fmt.Sprintf("group %q not found", l.Group), definite: true}
			}
			if f := overQuota(i); f != nil {
				return holdfast.Hold{}, f
			}
			sale := saleKey(l.Group, l.Channel)
			free := st.free[sale][picked[sale]:]
			if int64(len(free)) < l.Any {
				what := fmt.Sprintf("group %q has", l.Group)
				if l.Channel != "" {
					what = fmt.Sprintf("group %q has, for channel %q,", l.Group, l.Channel)
				}
				return holdfast.Hold{}, &batchFailure{line: i, code: holdfast.CodeUnavailable,
					detail: fmt.Sprintf("%s %d free units, %d asked", what, len(free), l.Any)}
			}
			lines[i].Units = slices.Sorted(slices.Values(free[:l.Any]))
			picked[sale] += int(l.Any)
			for _, u := range free[:l.Any] {
				sales[u] = l.Channel
			}
		}
	}
	// Every line fits: take it.
	for _, t := range pools {
		p := st.pools[t.pool]
		if req.confirm {
			p.addConfirmed += t.q
		} else {
			p.addHeld += t.q
		}
		if p.limit > 0 {
			st.holders[holderKey{t.pool, holderScope(r.Owner, r.Holder)}] += t.q
			st.holdersAdded[holderKey{t.pool, holderScope(r.Owner, r.Holder)}] += t.q
		}
	}
	for _, u := range named {
		st.units[u] = false
	}
	maps.Copy(st.sale, sales)
	for g, n := range picked {
		st.free[g] = st.free[g][n:]
	}
	if req.room != "" {
		delete(st.tickets, ticketOf(req))
	}
	if counted {
		n := heldUnits(r)
		q.held += n
		st.quotas[r.QuotaKey] = q
		st.quotaAdded[r.QuotaKey] += n
	}
	status := holdfast.StatusHeld
	if req.confirm {
		status = holdfast.StatusConfirmed
	}
	return holdfast.Hold{ID: st.newHoldID(), Holder: r.Holder, Status: status, PaymentRef: req.ref, Owner: r.Owner,
		CreatedAt: msTime(now), ExpiresAt: msTime(now + req.ttl.Milliseconds()), UpdatedAt: msTime(now), Lines: lines}, nil
}

// roomRule is the waiting room's rule for req: a request taking from
// what a room guards needs an admission (admission_required, naming the
// room), of that one room (one admission admits to one room: a request
// behind two is refused), spendable now, and buys at most what the room
// lets one admission buy (limit_exceeded at the line that passes it).
func (st *batchState) roomRule(req *claimReq) *batchFailure {
	if len(req.rooms) == 0 {
		return nil
	}
	err := admissionFor(req.rooms, req.r.Admission)
	if err == nil {
		if most, ok := st.tickets[ticketOf(req)]; !ok {
			err = errAdmissionInvalid
		} else {
			err = overAdmission(req.room, most, req.r.Lines)
		}
	}
	if err == nil {
		return nil
	}
	return &batchFailure{line: err.Line, code: err.Code, detail: err.Message, definite: true, err: err}
}

// counted returns the quota req counts against, if it counts against one:
// a hold (a booking is never held) under a key that has a quota.
func (st *batchState) counted(req *claimReq) (quota, bool) {
	if req.r.QuotaKey == "" || req.confirm {
		return quota{}, false
	}
	k, ok := st.quotas[req.r.QuotaKey]
	return k, ok && k.max > 0
}

// refusal turns a request the batch could not grant into its answer when
// that answer is definite now — the first failing line, exactly as a
// one-by-one claim in arrival order would name it — or returns nil: the
// request takes the ordinary path after the batch (expired holds are in
// the way, or an "any" line found too few units it could lock).
func (s *Store) refusal(ctx context.Context, tx Querier, st *batchState, req *claimReq, f *batchFailure) error {
	if f.pool != "" {
		if st.expiredPools == nil {
			// Once per batch, on its first refusal of a pool line.
			ids := make([]string, 0, len(st.pools))
			for id := range st.pools {
				ids = append(ids, id)
			}
			expired, err := queryStrings(ctx, tx, `SELECT DISTINCT l.pool_id FROM holds h JOIN hold_lines l ON l.hold_id = h.id
				WHERE h.status = 'held' AND h.expires_at <= holdfast_now_ms() AND l.pool_id IN (`+s.d.ListSelect(1)+`)`, s.d.ListArg(ids))
			if err != nil {
				return err
			}
			st.expiredPools = map[string]bool{}
			for _, id := range expired {
				st.expiredPools[id] = true
			}
		}
		f.definite = !st.expiredPools[f.pool]
	}
	if !f.definite {
		return nil
	}
	return f.refusal()
}

// The rules' own texts, here beside grant, which asks them first; the
// doors that ask a rule outside a batch (a waitlist's join, a strategy's
// one-by-one claim) ask the same functions, so no refusal is worded twice.

// admissionFor is the rule of waiting rooms, whichever door is used: a
// request behind rooms needs an admission, and one admission admits to one
// room, so a request behind two cannot carry a valid one.
func admissionFor(rooms []string, admission string) *holdfast.Error {
	if admission == "" {
		e := holdfast.Errorf(holdfast.CodeAdmissionRequired, "a waiting room protects this sale: join room %q and hold with its admission", rooms[0])
		e.Room = rooms[0]
		return e
	}
	if len(rooms) > 1 {
		return holdfast.Errorf(holdfast.CodeAdmissionInvalid, "this request is behind rooms %q and %q; an admission admits to one room: take them in separate holds", rooms[0], rooms[1])
	}
	return nil
}

// overAdmission is the rule itself, for an admission of room that buys
// at most most units (0: no bound).
func overAdmission(room string, most int64, lines []holdfast.Line) *holdfast.Error {
	if most == 0 {
		return nil
	}
	var units int64
	for i, l := range lines {
		units += l.Quantity + int64(len(l.Units)) + l.Any
		if units > most {
			return holdfast.LineErrorf(holdfast.CodeLimitExceeded, i, "an admission of room %q buys at most %d units; this request asks for %d", room, most, units)
		}
	}
	return nil
}

// ticket is an admission as one request would spend it: the token, of
// that room, that holder and that key's owner.
type ticket struct{ token, room, holder, owner string }

// ticketOf is the admission req would spend.
func ticketOf(req *claimReq) ticket {
	return ticket{req.r.Admission, req.room, req.r.Holder, req.r.Owner}
}

// quota is a key's quota as read (quota.go counts it): at most max
// units held at once, held now (0 max: no quota).
type quota struct{ max, held int64 }

// quotaRefusal is the refusal of a request past key quota k, at line.
func quotaRefusal(line int, k quota) error {
	return holdfast.LineErrorf(holdfast.CodeQuotaExceeded, line, "%s", k.text())
}

func (k quota) text() string {
	return fmt.Sprintf("this key may have %d tickets and units held (or waiting) at once", k.max)
}

// lineUnits is what a line holds: its quantity, its units, or its any.
func lineUnits(l holdfast.Line) int64 {
	switch l.Kind() {
	case holdfast.LinePool:
		return l.Quantity
	case holdfast.LineUnits:
		return int64(len(l.Units))
	case holdfast.LineAny:
		return l.Any
	}
	return 0
}

// heldUnits is what r's lines hold in all.
func heldUnits(r holdfast.HoldRequest) int64 {
	var n int64
	for _, l := range r.Lines {
		n += lineUnits(l)
	}
	return n
}

// passes reports whether r would pass the quota, and the first line, in
// request order, at which it would.
func (k quota) passes(r holdfast.HoldRequest) (int, bool) {
	if k.max == 0 {
		return 0, false
	}
	total := k.held
	for i, l := range r.Lines {
		if total += lineUnits(l); total > k.max {
			return i, true
		}
	}
	return 0, false
}

// The rows a line takes from. A channel's allocation of a pool is a pool
// row of its own (allocation.go), and a group's units are sold per sale:
// the decision, the batch's reads and the writer all name rows this way.

// allocID is the pool row of a channel's allocation of pool.
func allocID(pool, channel string) string { return pool + "~" + channel }

// splitPool returns the pool and the channel of a pool row's id.
func splitPool(id string) (pool, channel string) {
	if i := strings.IndexByte(id, '~'); i >= 0 {
		return id[:i], id[i+1:]
	}
	return id, ""
}

// publicLine names a line's pool as the API does: pool and channel.
func publicLine(l holdfast.Line) holdfast.Line {
	if l.Pool != "" {
		l.Pool, l.Channel = splitPool(l.Pool)
	}
	return l
}

// poolName names a pool row in a refusal.
func poolName(id string) string {
	if pool, channel := splitPool(id); channel != "" {
		return fmt.Sprintf("pool %q (channel %q)", pool, channel)
	}
	return fmt.Sprintf("pool %q", id)
}

// saleKey names a group's units in one sale: the general sale's
// (channel "") or a channel's.
func saleKey(group, channel string) string { return group + "\x00" + channel }

func splitSale(key string) (group, channel string) {
	group, channel, _ = strings.Cut(key, "\x00")
	return group, channel
}
