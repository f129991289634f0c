package shard

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/holdfast/holdfast"
)

// ---- the routed contracts ----

// target is what a shard's store offers a view: itself, or its keyed view.
type target interface {
	holdfast.Catalog
	holdfast.Allocations
	holdfast.Booking
	holdfast.RoomStore
	holdfast.WaitlistStore
}

// view routes the catalog, bookings, rooms and waitlists to the shards:
// Shards' own, and a keyed one per request (see Keyed).
type view struct {
	set *shardSet
	key *holdfast.Idempotency

	mu   sync.Mutex
	used holdfast.Keyed // the keyed shard view the change went through
	// tried is the shard the change was tried on, or -1: a refusal is
	// recorded there (see keyedShards.FinishIdempotent).
	tried int
}

// on is shard i as this view reaches it: keyed if the view is.
func (v *view) on(i int) target {
	if v.key == nil {
		return v.set.nodes[i]
	}
	k := v.set.nodes[i].Keyed(*v.key)
	v.mu.Lock()
	v.used, v.tried = k, i
	v.mu.Unlock()
	return k
}

// onShardOf runs fn on the shard of (kind, id). A shard that answers
// ErrNotFound may no longer have it (its partition moved): fn runs again
// where the catalog says it is now, if that changed.
func onShardOf[T any](ctx context.Context, v *view, kind, id string, fn func(t target, sh int) (T, error)) (T, error) {
	for try := 0; ; try++ {
		sh, err := v.set.shardOf(ctx, kind, id)
		if err != nil {
			var zero T
			return zero, err
		}
		out, err := fn(v.on(sh), sh)
		k := placeKey{kind, id}
		if try < 3 && notFound(err) && v.set.refresh(ctx, []placeKey{k}, map[placeKey]placed{k: {shard: sh}}) {
			continue
		}
		return out, err
	}
}

func partitionOf(given, id string) (string, error) {
	if given == "" {
		return id, nil
	}
	if err := holdfast.ValidateID("partition", given); err != nil {
		return "", err
	}
	return given, nil
}

func (v *view) CreatePool(ctx context.Context, p holdfast.Pool) (holdfast.Pool, error) {
	if err := holdfast.ValidateID("pool", p.ID); err != nil {
		return holdfast.Pool{}, err
	}
	part, err := partitionOf(p.Partition, p.ID)
	if err != nil {
		return holdfast.Pool{}, err
	}
	sh, err := v.set.place(ctx, "pool", p.ID, part)
	if err != nil {
		return holdfast.Pool{}, err
	}
	p.Partition = ""
	out, err := v.on(sh).CreatePool(ctx, p)
	if err == nil && part != p.ID {
		out.Partition = part
	}
	return out, err
}

func (v *view) Pool(ctx context.Context, id string) (holdfast.Pool, error) {
	p, err := onShardOf(ctx, v, "pool", id, func(t target, _ int) (holdfast.Pool, error) { return t.Pool(ctx, id) })
	p.Partition = v.set.partitionShown(ctx, "pool", id)
	return p, err
}

func (v *view) Pools(ctx context.Context) ([]holdfast.Pool, error) {
	var out []holdfast.Pool
	for i := range v.set.nodes {
		ps, err := v.set.nodes[i].Pools(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, ps...)
	}
	keys := make([]placeKey, len(out))
	for i, p := range out {
		keys[i] = placeKey{"pool", p.ID}
	}
	m, err := v.set.locate(ctx, keys)
	if err != nil {
		return nil, err
	}
	for i, p := range out {
		if part := m[placeKey{"pool", p.ID}].partition; part != p.ID {
			out[i].Partition = part
		}
	}
	slices.SortFunc(out, func(a, b holdfast.Pool) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

func (v *view) SetCapacity(ctx context.Context, id string, capacity int64) (holdfast.Pool, error) {
	return onShardOf(ctx, v, "pool", id, func(t target, _ int) (holdfast.Pool, error) { return t.SetCapacity(ctx, id, capacity) })
}

// An allocation is a row of its pool's shard: it moves with the pool's
// partition, and a channel's lines go where the pool's do.
func (v *view) Allocate(ctx context.Context, req holdfast.AllocationRequest) (holdfast.Pool, error) {
	return onShardOf(ctx, v, "pool", req.Pool, func(t target, _ int) (holdfast.Pool, error) { return t.Allocate(ctx, req) })
}

func (v *view) EndAllocation(ctx context.Context, pool, channel string) (holdfast.Pool, error) {
	return onShardOf(ctx, v, "pool", pool, func(t target, _ int) (holdfast.Pool, error) { return t.EndAllocation(ctx, pool, channel) })
}

// Named units set aside are columns of their group's units: on the
// group's shard.
func (v *view) AllocateUnits(ctx context.Context, req holdfast.UnitAllocationRequest) (holdfast.GroupAvailability, error) {
	return onShardOf(ctx, v, "group", req.Group, func(t target, _ int) (holdfast.GroupAvailability, error) { return t.AllocateUnits(ctx, req) })
}

func (v *view) EndUnitAllocation(ctx context.Context, group, channel string) (holdfast.GroupAvailability, error) {
	return onShardOf(ctx, v, "group", group, func(t target, _ int) (holdfast.GroupAvailability, error) {
		return t.EndUnitAllocation(ctx, group, channel)
	})
}

// Payments are not recorded across shards yet: a hold's parts commit on
// several databases, and its payment would need the same two-phase
// commit. Confirm and book with payment_ref there.
func errPaymentsUnsupported() error {
	return holdfast.Errorf(holdfast.CodeUnsupported, "payments are not recorded on a sharded store yet: confirm or book with payment_ref")
}

func (v *view) ConfirmPaid(context.Context, string, holdfast.Payment, []holdfast.PartLine) (holdfast.Hold, error) {
	return holdfast.Hold{}, errPaymentsUnsupported()
}

func (v *view) BookPaid(context.Context, holdfast.HoldRequest, holdfast.Payment) (holdfast.Hold, error) {
	return holdfast.Hold{}, errPaymentsUnsupported()
}

func (v *view) Payment(context.Context, string) (holdfast.Payment, error) {
	return holdfast.Payment{}, errPaymentsUnsupported()
}

func (v *view) ListPayments(context.Context, holdfast.PaymentStatus) ([]holdfast.Payment, error) {
	return nil, errPaymentsUnsupported()
}

func (v *view) PaymentRefunded(context.Context, string) (holdfast.Payment, error) {
	return holdfast.Payment{}, errPaymentsUnsupported()
}

func (v *view) SetPoolLateConfirm(ctx context.Context, id string, policy holdfast.LatePolicy, grace int64) (holdfast.Pool, error) {
	return onShardOf(ctx, v, "pool", id, func(t target, _ int) (holdfast.Pool, error) {
		return t.SetPoolLateConfirm(ctx, id, policy, grace)
	})
}

func (v *view) CreateGroup(ctx context.Context, g holdfast.Group) (holdfast.Group, error) {
	if err := holdfast.ValidateID("group", g.ID); err != nil {
		return holdfast.Group{}, err
	}
	part, err := partitionOf(g.Partition, g.ID)
	if err != nil {
		return holdfast.Group{}, err
	}
	if err := g.Validate(); err != nil {
		return holdfast.Group{}, err
	}
	sh, err := v.set.place(ctx, "group", g.ID, part)
	if err != nil {
		return holdfast.Group{}, err
	}
	if g.Layout != nil {
		// Its seats are units of the group: placed with it.
		if err := v.set.placeUnits(ctx, g.ID, g.Layout.Units()); err != nil {
			return holdfast.Group{}, err
		}
	}
	g.Partition = ""
	out, err := v.on(sh).CreateGroup(ctx, g)
	if err == nil && part != g.ID {
		out.Partition = part
	}
	return out, err
}

func (v *view) AddUnits(ctx context.Context, group string, ids []string) error {
	if _, err := v.set.shardOf(ctx, "group", group); err != nil {
		return err
	}
	if err := holdfast.ValidateUnitIDs(ids); err != nil {
		return err
	}
	// Placed first: a unit id is unique across every group of every
	// shard, and only the catalog sees them all.
	if err := v.set.placeUnits(ctx, group, ids); err != nil {
		return err
	}
	_, err := onShardOf(ctx, v, "group", group, func(t target, _ int) (struct{}, error) { return struct{}{}, t.AddUnits(ctx, group, ids) })
	return err
}

func (v *view) Group(ctx context.Context, id string) (holdfast.GroupAvailability, error) {
	g, err := onShardOf(ctx, v, "group", id, func(t target, _ int) (holdfast.GroupAvailability, error) { return t.Group(ctx, id) })
	g.Partition = v.set.partitionShown(ctx, "group", id)
	return g, err
}

// GroupLayout reads a group's layout on its shard.
func (v *view) GroupLayout(ctx context.Context, id string) (*holdfast.Layout, error) {
	return onShardOf(ctx, v, "group", id, func(_ target, sh int) (*holdfast.Layout, error) {
		return v.set.nodes[sh].GroupLayout(ctx, id)
	})
}

func (v *view) SetGroupLateConfirm(ctx context.Context, id string, policy holdfast.LatePolicy, grace int64) (holdfast.Group, error) {
	return onShardOf(ctx, v, "group", id, func(t target, _ int) (holdfast.Group, error) {
		return t.SetGroupLateConfirm(ctx, id, policy, grace)
	})
}

func (v *view) Units(ctx context.Context, group string, status holdfast.UnitStatus) ([]holdfast.Unit, error) {
	return onShardOf(ctx, v, "group", group, func(t target, _ int) ([]holdfast.Unit, error) { return t.Units(ctx, group, status) })
}

// ---- holds ----

// route finds the shard of every line of r, placed as m says. A units line must name
// units of one shard; a line naming something placed nowhere answers
// ErrNotFound, first in request order.
func route(r holdfast.HoldRequest, m map[placeKey]placed) ([]int, error) {
	shards := make([]int, len(r.Lines))
	for i, l := range r.Lines {
		var names []placeKey
		switch l.Kind() {
		case holdfast.LinePool:
			names = []placeKey{{"pool", l.Pool}}
		case holdfast.LineAny:
			names = []placeKey{{"group", l.Group}}
		default:
			for _, u := range l.Units {
				names = append(names, placeKey{"unit", u})
			}
		}
		for j, k := range names {
			p, ok := m[k]
			sh := p.shard
			if !ok {
				return nil, holdfast.LineErrorf(holdfast.CodeNotFound, i, "%s %q not found", k.kind, k.id)
			}
			if j > 0 && sh != shards[i] {
				return nil, holdfast.LineErrorf(holdfast.CodeInvalid, i, "a units line names units of one partition's shard; split it into a line per event")
			}
			shards[i] = sh
		}
	}
	return shards, nil
}

func (v *view) Hold(ctx context.Context, r holdfast.HoldRequest) (holdfast.Hold, error) {
	return v.hold(ctx, r, false, "")
}

func (v *view) Book(ctx context.Context, r holdfast.HoldRequest, paymentRef string) (holdfast.Hold, error) {
	if err := holdfast.ValidatePaymentRef(paymentRef); err != nil {
		return holdfast.Hold{}, err
	}
	return v.hold(ctx, r, true, paymentRef)
}

func (v *view) hold(ctx context.Context, r holdfast.HoldRequest, confirm bool, paymentRef string) (holdfast.Hold, error) {
	if err := r.Validate(v.set.nodes[0].Config()); err != nil {
		return holdfast.Hold{}, err
	}
	keys := placeKeys(r)
	for try := 0; ; try++ {
		m, err := v.set.locate(ctx, keys)
		if err != nil {
			return holdfast.Hold{}, err
		}
		h, err := v.holdOnce(ctx, r, m, confirm, paymentRef)
		// A shard without a pool, group or unit the map put there: its
		// partition moved; tried again on the new map.
		if try < 3 && notFound(err) && v.set.refresh(ctx, keys, m) {
			continue
		}
		return h, err
	}
}

// placeKeys is what a hold request names.
func placeKeys(r holdfast.HoldRequest) []placeKey {
	var keys []placeKey
	for _, l := range r.Lines {
		switch l.Kind() {
		case holdfast.LinePool:
			keys = append(keys, placeKey{"pool", l.Pool})
		case holdfast.LineAny:
			keys = append(keys, placeKey{"group", l.Group})
		case holdfast.LineUnits:
			for _, u := range l.Units {
				keys = append(keys, placeKey{"unit", u})
			}
		}
	}
	return keys
}

func (v *view) holdOnce(ctx context.Context, r holdfast.HoldRequest, m map[placeKey]placed, confirm bool, paymentRef string) (holdfast.Hold, error) {
	lineShard, err := route(r, m)
	if err != nil {
		return holdfast.Hold{}, err
	}
	var shards []int
	for _, sh := range lineShard {
		if !slices.Contains(shards, sh) {
			shards = append(shards, sh)
		}
	}
	slices.Sort(shards)
	if len(shards) == 1 {
		// The common case: one event's checkout, on its shard alone.
		t := v.on(shards[0])
		if confirm {
			return t.Book(ctx, r, paymentRef)
		}
		return t.Hold(ctx, r)
	}
	if r.Admission != "" {
		// A room protects one partition, and one admission admits to one
		// room: a hold across partitions cannot carry a valid one.
		return holdfast.Hold{}, holdfast.Errorf(holdfast.CodeAdmissionInvalid, "an admission admits to one room, and a room protects one partition: this hold names several; take them in separate holds")
	}
	v.triedOn(shards)
	id := holdfast.NewID(crossPrefix(shards), time.Now())
	nos := map[int][]int{}
	for i, sh := range lineShard {
		nos[sh] = append(nos[sh], i)
	}
	var got parts
	fn := map[int]func(context.Context, string) error{}
	for _, sh := range shards {
		sub := r
		sub.Lines = nil
		for _, i := range nos[sh] {
			sub.Lines = append(sub.Lines, r.Lines[i])
		}
		fn[sh] = func(ctx context.Context, gid string) error {
			ctx = v.set.db.InPart(ctx, gid, id, nos[sh])
			t := v.lastKeyed(sh, shards, &got, nos, len(r.Lines))
			var h holdfast.Hold
			var err error
			if confirm {
				h, err = t.Book(ctx, sub, paymentRef)
			} else {
				h, err = t.Hold(ctx, sub)
			}
			if err != nil {
				return lineIn(err, nos[sh])
			}
			got.add(sh, h)
			return nil
		}
	}
	if err := v.set.db.RunParts(ctx, fn); err != nil {
		return holdfast.Hold{}, v.firstFailing(ctx, err, r, id, nos, confirm, paymentRef)
	}
	return got.assemble(id, nos, len(r.Lines)), nil
}

// parts collects the parts of a change across shards as they are made.
type parts struct {
	mu sync.Mutex
	m  map[int]holdfast.Hold
}

func (p *parts) add(sh int, h holdfast.Hold) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[int]holdfast.Hold{}
	}
	p.m[sh] = h
}

// assemble merges the parts into the hold across shards.
func (p *parts) assemble(id string, nos map[int][]int, lines int) holdfast.Hold {
	p.mu.Lock()
	defer p.mu.Unlock()
	h := holdfast.Hold{ID: id, Lines: make([]holdfast.Line, lines)}
	shards := make([]int, 0, len(p.m))
	for sh := range p.m {
		shards = append(shards, sh)
	}
	slices.Sort(shards)
	for _, sh := range shards {
		merge(&h, p.m[sh], nos[sh])
	}
	return h
}

// triedOn notes that a change across shards is tried: its key, and a
// refusal's record, live on its last shard (see lastKeyed).
func (v *view) triedOn(shards []int) {
	v.mu.Lock()
	v.tried = shards[len(shards)-1]
	v.mu.Unlock()
}

// lastKeyed is the store a part of a change across shards is made
// through: the last shard's part (prepared last, when the others are
// made) records the whole change's answer under the view's idempotency
// key, in its own transaction; the others record nothing.
func (v *view) lastKeyed(sh int, shards []int, got *parts, nos map[int][]int, lines int) target {
	if v.key == nil || sh != shards[len(shards)-1] {
		return v.set.nodes[sh]
	}
	k := *v.key
	render := k.Render
	k.Render = func(result any) holdfast.StoredResponse {
		part, ok := result.(holdfast.Hold)
		if !ok {
			return render(result)
		}
		got.add(sh, part)
		return render(got.assemble(part.ID, nos, lines))
	}
	kv := v.set.nodes[sh].Keyed(k)
	v.mu.Lock()
	v.used, v.tried = kv, sh
	v.mu.Unlock()
	return kv
}

// firstFailing answers a hold across shards that a part refused at line
// L. Parts are made in shard order, not request order: a shard not yet
// tried may refuse an earlier line, and the answer must name the first
// failing line in request order. Each such shard is asked for its lines
// before L alone, as a part prepared and at once rolled back.
func (v *view) firstFailing(ctx context.Context, err error, r holdfast.HoldRequest, id string, nos map[int][]int, confirm bool, paymentRef string) error {
	var he *holdfast.Error
	if !errors.As(err, &he) || he.Line <= 0 {
		return err
	}
	best := err
	for sh, lines := range nos {
		var sub holdfast.HoldRequest
		var subNos []int
		for _, i := range lines {
			if i < he.Line {
				subNos = append(subNos, i)
			}
		}
		if len(subNos) == 0 {
			continue
		}
		sub = r
		sub.Lines = nil
		for _, i := range subNos {
			sub.Lines = append(sub.Lines, r.Lines[i])
		}
		perr := v.set.db.Probe(ctx, sh, id, subNos, func(pctx context.Context) error {
			var err error
			if confirm {
				_, err = v.set.nodes[sh].Book(pctx, sub, paymentRef)
			} else {
				_, err = v.set.nodes[sh].Hold(pctx, sub)
			}
			return err
		})
		if perr == nil {
			continue
		}
		perr = lineIn(perr, subNos)
		var pe *holdfast.Error
		if errors.As(perr, &pe) && pe.Line >= 0 && pe.Line < holdfast.ErrorLine(best) {
			best = perr
		}
	}
	return best
}

// lineIn renumbers a part's line error as the whole request's line.
func lineIn(err error, nos []int) error {
	var he *holdfast.Error
	if !errors.As(err, &he) || he.Line < 0 || he.Line >= len(nos) {
		return err
	}
	c := *he
	c.Line = nos[he.Line]
	return &c
}

// merge adds a part of a hold across shards (its lines numbered nos in
// the whole) to h. The parts agree on all but their lines and times: the
// hold reads as its least advanced part (an expired part makes it
// expired), and expires with its first part.
func merge(h *holdfast.Hold, part holdfast.Hold, nos []int) {
	first := h.Holder == "" && h.Status == ""
	for j, l := range part.Lines {
		if j < len(nos) && nos[j] < len(h.Lines) {
			h.Lines[nos[j]] = l
		}
	}
	if first {
		lines, id := h.Lines, h.ID
		*h = part
		h.Lines, h.ID = lines, id
		return
	}
	if rank(part.Status) < rank(h.Status) {
		h.Status = part.Status
	}
	if part.ExpiresAt.Before(h.ExpiresAt) {
		h.ExpiresAt = part.ExpiresAt
	}
	if part.CreatedAt.Before(h.CreatedAt) {
		h.CreatedAt = part.CreatedAt
	}
	if part.UpdatedAt.After(h.UpdatedAt) {
		h.UpdatedAt = part.UpdatedAt
	}
	h.Late = h.Late || part.Late
}

// rank orders a hold's states so that a hold across shards reads as the
// part that has moved least, or that ended without a sale.
func rank(s holdfast.Status) int {
	switch s {
	case holdfast.StatusExpired, holdfast.StatusReleased, holdfast.StatusCancelled:
		return 0
	case holdfast.StatusHeld:
		return 1
	case holdfast.StatusConfirmed:
		return 2
	}
	return 3
}

// crossHold reads a hold across shards, every part.
func (set *shardSet) crossHold(ctx context.Context, id string, shards []int) (holdfast.Hold, map[int][]int, error) {
	parts := map[int]holdfast.Hold{}
	nos := map[int][]int{}
	n := 0
	for _, sh := range shards {
		p, err := set.nodes[sh].GetHold(ctx, id)
		if err != nil {
			return holdfast.Hold{}, nil, err
		}
		if nos[sh], err = set.db.LineNos(ctx, sh, id); err != nil {
			return holdfast.Hold{}, nil, err
		}
		parts[sh] = p
		n += len(p.Lines)
	}
	h := holdfast.Hold{ID: id, Lines: make([]holdfast.Line, n)}
	for _, sh := range shards {
		merge(&h, parts[sh], nos[sh])
	}
	return h, nos, nil
}

func (v *view) GetHold(ctx context.Context, id string) (holdfast.Hold, error) {
	for try := 0; ; try++ {
		used, _ := v.set.holdShards(id)
		h, err := v.getHold(ctx, id, used)
		// Not where this server thought: a partition it had lines in
		// moved; read again where the catalog says it is.
		if try < 3 && notFound(err) && v.set.rehome(ctx, id, used) {
			continue
		}
		return h, err
	}
}

func (v *view) getHold(ctx context.Context, id string, shards []int) (holdfast.Hold, error) {
	if shards == nil {
		return holdfast.Hold{}, holdfast.Errorf(holdfast.CodeNotFound, "hold %q not found", id)
	}
	if len(shards) == 1 {
		return v.on(shards[0]).GetHold(ctx, id)
	}
	h, _, err := v.set.crossHold(ctx, id, shards)
	return h, err
}

func (v *view) Holds(ctx context.Context, holder, owner string) ([]holdfast.Hold, error) {
	var out []holdfast.Hold
	seen := map[string]bool{}
	for i := range v.set.nodes {
		hs, err := v.set.nodes[i].Holds(ctx, holder, owner)
		if err != nil {
			return nil, err
		}
		for _, h := range hs {
			if seen[h.ID] {
				continue
			}
			seen[h.ID] = true
			shards, _ := v.set.holdShards(h.ID)
			if !slices.Contains(shards, i) && v.set.rehome(ctx, h.ID, shards) {
				shards, _ = v.set.holdShards(h.ID) // found where this server did not know it was
			}
			if len(shards) > 1 {
				if h, _, err = v.set.crossHold(ctx, h.ID, shards); err != nil {
					return nil, err
				}
			}
			out = append(out, h)
		}
	}
	slices.SortFunc(out, func(a, b holdfast.Hold) int {
		return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), cmp.Compare(b.ID, a.ID))
	})
	return out, nil
}

// change makes one change to a hold: on its shard, or on every shard of
// a hold across shards at once (two-phase commit). do makes the change on
// one shard's part, given the part's line numbers and the hold's count.
func (v *view) change(ctx context.Context, id string, do func(ctx context.Context, t target, nos []int, lines int) (holdfast.Hold, error)) (holdfast.Hold, error) {
	for try := 0; ; try++ {
		used, _ := v.set.holdShards(id)
		h, err := v.changeOnce(ctx, id, used, do)
		if try < 3 && notFound(err) && v.set.rehome(ctx, id, used) {
			continue // its partition moved: see GetHold
		}
		return h, err
	}
}

func (v *view) changeOnce(ctx context.Context, id string, shards []int, do func(ctx context.Context, t target, nos []int, lines int) (holdfast.Hold, error)) (holdfast.Hold, error) {
	if shards == nil {
		return holdfast.Hold{}, holdfast.Errorf(holdfast.CodeNotFound, "hold %q not found", id)
	}
	if len(shards) == 1 {
		return do(ctx, v.on(shards[0]), nil, 0)
	}
	before, nos, err := v.set.crossHold(ctx, id, shards)
	if err != nil {
		return holdfast.Hold{}, err
	}
	lines := len(before.Lines)
	v.triedOn(shards)
	var got parts
	fn := map[int]func(context.Context, string) error{}
	for _, sh := range shards {
		fn[sh] = func(ctx context.Context, gid string) error {
			t := v.lastKeyed(sh, shards, &got, nos, lines)
			h, err := do(v.set.db.InPart(ctx, gid, "", nil), t, nos[sh], lines)
			if err == nil {
				got.add(sh, h)
			}
			return err
		}
	}
	if err := v.set.db.RunParts(ctx, fn); err != nil {
		return holdfast.Hold{}, err
	}
	return got.assemble(id, nos, lines), nil
}

func (v *view) Confirm(ctx context.Context, id, paymentRef string) (holdfast.Hold, error) {
	return v.change(ctx, id, func(ctx context.Context, t target, _ []int, _ int) (holdfast.Hold, error) {
		return t.Confirm(ctx, id, paymentRef)
	})
}

func (v *view) ConfirmPart(ctx context.Context, id, paymentRef string, part []holdfast.PartLine) (holdfast.Hold, error) {
	return v.change(ctx, id, func(ctx context.Context, t target, nos []int, lines int) (holdfast.Hold, error) {
		if nos == nil {
			return t.ConfirmPart(ctx, id, paymentRef, part)
		}
		for i, p := range part {
			if p.Line < 0 || p.Line >= lines {
				return holdfast.Hold{}, holdfast.LineErrorf(holdfast.CodeInvalid, i, "line %d is not a line of the hold", p.Line)
			}
		}
		// This shard's share of the part: the lines it has, by their
		// numbers in the whole hold (as the part's lines are stored).
		var mine []holdfast.PartLine
		var idx []int
		for i, p := range part {
			if slices.Contains(nos, p.Line) {
				mine, idx = append(mine, p), append(idx, i)
			}
		}
		if len(mine) == 0 {
			return t.Confirm(ctx, id, paymentRef)
		}
		h, err := t.ConfirmPart(ctx, id, paymentRef, mine)
		return h, lineIn(err, idx)
	})
}

func (v *view) Release(ctx context.Context, id string) (holdfast.Hold, error) {
	return v.change(ctx, id, func(ctx context.Context, t target, _ []int, _ int) (holdfast.Hold, error) { return t.Release(ctx, id) })
}

func (v *view) Extend(ctx context.Context, id string, ttl time.Duration) (holdfast.Hold, error) {
	return v.change(ctx, id, func(ctx context.Context, t target, _ []int, _ int) (holdfast.Hold, error) {
		return t.Extend(ctx, id, ttl)
	})
}

func (v *view) Cancel(ctx context.Context, id string) (holdfast.Hold, error) {
	return v.change(ctx, id, func(ctx context.Context, t target, _ []int, _ int) (holdfast.Hold, error) { return t.Cancel(ctx, id) })
}

func (v *view) Transfer(ctx context.Context, id, holder string) (holdfast.Hold, error) {
	return v.change(ctx, id, func(ctx context.Context, t target, _ []int, _ int) (holdfast.Hold, error) {
		return t.Transfer(ctx, id, holder)
	})
}

// Exchange gives each part of a hold across shards the pairs whose old
// unit is on its lines (a new unit is of the old one's group: the same
// shard), and the others none.
func (v *view) Exchange(ctx context.Context, id string, swaps map[string]string) (holdfast.Hold, error) {
	if err := holdfast.ValidateSwaps(swaps); err != nil {
		return holdfast.Hold{}, err
	}
	return v.change(ctx, id, func(ctx context.Context, t target, nos []int, _ int) (holdfast.Hold, error) {
		if nos == nil {
			return t.Exchange(ctx, id, swaps)
		}
		// A unit on no part's lines is not in the hold: every part
		// refuses, as one store would.
		whole, err := v.GetHold(ctx, id)
		if err != nil {
			return whole, err
		}
		for old := range swaps {
			in := false
			for _, l := range whole.Lines {
				in = in || slices.Contains(l.Units, old)
			}
			if !in {
				return holdfast.Hold{}, holdfast.Errorf(holdfast.CodeInvalid, "unit %q is not in hold %q", old, id)
			}
		}
		h, err := t.GetHold(ctx, id)
		if err != nil {
			return h, err
		}
		mine := map[string]string{}
		for _, l := range h.Lines {
			for _, u := range l.Units {
				if nu, ok := swaps[u]; ok {
					mine[u] = nu
				}
			}
		}
		return t.Exchange(ctx, id, mine)
	})
}

func (v *view) Complete(ctx context.Context, id string) (holdfast.Hold, error) {
	return v.change(ctx, id, func(ctx context.Context, t target, _ []int, _ int) (holdfast.Hold, error) { return t.Complete(ctx, id) })
}

// ---- rooms and waitlists: on the shard of what they protect ----

func (v *view) CreateRoom(ctx context.Context, r holdfast.Room) (holdfast.Room, error) {
	if err := holdfast.ValidateID("room", r.ID); err != nil {
		return holdfast.Room{}, err
	}
	var keys []placeKey
	for _, p := range r.Pools {
		keys = append(keys, placeKey{"pool", p})
	}
	for _, g := range r.Groups {
		keys = append(keys, placeKey{"group", g})
	}
	m, err := v.set.locate(ctx, keys)
	if err != nil {
		return holdfast.Room{}, err
	}
	var part string
	for _, k := range keys {
		pl, ok := m[k]
		if !ok {
			return holdfast.Room{}, holdfast.Errorf(holdfast.CodeNotFound, "%s %q not found", k.kind, k.id)
		}
		p := pl.partition
		if part != "" && p != part {
			return holdfast.Room{}, holdfast.Errorf(holdfast.CodeInvalid, "a room protects pools and groups of one partition")
		}
		part = p
	}
	if part == "" {
		return v.on(0).CreateRoom(ctx, r) // nothing to protect: its own refusal
	}
	sh, err := v.set.place(ctx, "room", r.ID, part)
	if err != nil {
		return holdfast.Room{}, err
	}
	return v.on(sh).CreateRoom(ctx, r)
}

func (v *view) Room(ctx context.Context, id string) (holdfast.Room, error) {
	sh, err := v.set.shardOf(ctx, "room", id)
	if err != nil {
		return holdfast.Room{}, err
	}
	return v.on(sh).Room(ctx, id)
}

func (v *view) Rooms(ctx context.Context) ([]holdfast.Room, error) {
	var rooms []holdfast.Room
	for i := range v.set.nodes {
		rs, err := v.on(i).Rooms(ctx)
		if err != nil {
			return nil, err
		}
		rooms = append(rooms, rs...)
	}
	slices.SortFunc(rooms, func(a, b holdfast.Room) int { return strings.Compare(a.ID, b.ID) })
	return rooms, nil
}

func (v *view) JoinRoom(ctx context.Context, room, holder, owner string) (holdfast.RoomTicket, error) {
	sh, err := v.set.shardOf(ctx, "room", room)
	if err != nil {
		return holdfast.RoomTicket{}, err
	}
	return v.on(sh).JoinRoom(ctx, room, holder, owner)
}

func (v *view) RoomTicket(ctx context.Context, room, ticket string) (holdfast.RoomTicket, error) {
	sh, err := v.set.shardOf(ctx, "room", room)
	if err != nil {
		return holdfast.RoomTicket{}, err
	}
	return v.on(sh).RoomTicket(ctx, room, ticket)
}

func (v *view) RoomDraw(ctx context.Context, room string) (holdfast.RoomDraw, error) {
	sh, err := v.set.shardOf(ctx, "room", room)
	if err != nil {
		return holdfast.RoomDraw{}, err
	}
	return v.on(sh).RoomDraw(ctx, room)
}

func (v *view) JoinWaitlist(ctx context.Context, r holdfast.WaitlistRequest) (holdfast.WaitlistEntry, error) {
	kind, id := "pool", r.Pool
	if r.Group != "" {
		kind, id = "group", r.Group
	}
	sh, err := v.set.shardOf(ctx, kind, id)
	if err != nil {
		return holdfast.WaitlistEntry{}, err
	}
	return v.on(sh).JoinWaitlist(ctx, r)
}

func (v *view) WaitlistEntry(ctx context.Context, pool, id string) (holdfast.WaitlistEntry, error) {
	sh, err := v.set.shardOf(ctx, "pool", pool)
	if err != nil {
		return holdfast.WaitlistEntry{}, err
	}
	return v.on(sh).WaitlistEntry(ctx, pool, id)
}

func (v *view) Waitlist(ctx context.Context, pool string) ([]holdfast.WaitlistEntry, error) {
	sh, err := v.set.shardOf(ctx, "pool", pool)
	if err != nil {
		return nil, err
	}
	return v.on(sh).Waitlist(ctx, pool)
}

// A group's waitlist is on the group's shard.
func (v *view) GroupWaitlist(ctx context.Context, group string) ([]holdfast.WaitlistEntry, error) {
	sh, err := v.set.shardOf(ctx, "group", group)
	if err != nil {
		return nil, err
	}
	return v.on(sh).GroupWaitlist(ctx, group)
}

func (v *view) GroupWaitlistEntry(ctx context.Context, group, id string) (holdfast.WaitlistEntry, error) {
	sh, err := v.set.shardOf(ctx, "group", group)
	if err != nil {
		return holdfast.WaitlistEntry{}, err
	}
	return v.on(sh).GroupWaitlistEntry(ctx, group, id)
}

func (v *view) LeaveGroupWaitlist(ctx context.Context, group, id, owner string) (holdfast.WaitlistEntry, error) {
	sh, err := v.set.shardOf(ctx, "group", group)
	if err != nil {
		return holdfast.WaitlistEntry{}, err
	}
	return v.on(sh).LeaveGroupWaitlist(ctx, group, id, owner)
}

func (v *view) LeaveWaitlist(ctx context.Context, pool, id, owner string) (holdfast.WaitlistEntry, error) {
	sh, err := v.set.shardOf(ctx, "pool", pool)
	if err != nil {
		return holdfast.WaitlistEntry{}, err
	}
	return v.on(sh).LeaveWaitlist(ctx, pool, id, owner)
}
