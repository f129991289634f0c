package sqlstore

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"

	"github.com/holdfast/holdfast"
)

// A batch's transaction: it locks every row its requests touch, in the
// global order, asks the one decision (decide.go) of each request in
// arrival order, and writes every effect in one round (writer.go).

// batchTx decides a batch inside one transaction.
func (s *Store) batchTx(ctx context.Context, tx Querier, batch []*claimReq, results []claimResult, locked func()) error {
	if err := s.checkClaimedKeys(ctx, tx, batch, results); err != nil {
		return err
	}
	st, now, err := s.lockBatch(ctx, tx, batch, results, &s.claimStmts)
	if err != nil {
		return err
	}
	locked()

	var granted []int
	grants := make([]holdfast.Hold, len(batch))
	w := newHoldWriter(s.d)
	w.sale = st.sale
	answers := make([]*holdfast.StoredResponse, len(batch))
	for i, req := range batch {
		if results[i].err != nil || results[i].fallback {
			continue
		}
		h, fail := st.grant(req, now)
		if fail != nil {
			if err := s.refusal(ctx, tx, st, req, fail); err != nil {
				results[i].err = err
				// A refusal under a key is recorded with the batch's
				// writes: no transaction of its own after.
				if rec := req.rec; rec != nil && rec.RenderError != nil && recordedRefusal[holdfast.ErrorCode(err)] {
					r := rec.RenderError(err)
					w.answer(rec, r, now)
					answers[i] = &r
				}
			} else {
				results[i].refused = true
			}
			continue
		}
		grants[i] = h
		granted = append(granted, i)
	}
	if len(granted) == 0 && w.keyRows.len()+w.settleRows.len() == 0 {
		return nil
	}
	for _, i := range granted {
		if answers[i], err = w.grant(st, batch[i], grants[i], now); err != nil {
			return err
		}
	}
	if err := s.writeBatch(ctx, tx, w, st); err != nil {
		return err
	}
	for _, i := range granted {
		results[i].h = grants[i]
	}
	for i := range batch {
		results[i].answer = answers[i]
	}
	return nil
}

// claimAlone decides one claim by the one decision on the rows it locks
// (lockBatch) and writes it with the batch's writer, in tx: a batch of
// one, for a claim a batch could not make (capacity came back, a payment
// ref paid with twice in the batch, or the batch failed whole) and for a
// shard's part of a hold (part: its hold id and line numbers are the
// coordinator's, and its transaction is prepared, not committed).
func (s *Store) claimAlone(ctx context.Context, tx Querier, req *claimReq, part *Part) (h holdfast.Hold, fail *lineFailure, err error) {
	results := make([]claimResult, 1)
	st, now, err := s.lockBatch(ctx, tx, []*claimReq{req}, results, &s.claimStmts)
	switch {
	case err != nil:
		return h, nil, err
	case results[0].err != nil:
		return h, nil, results[0].err
	}
	if part != nil {
		st.newHoldID = func() string { return part.HoldID }
	}
	h, f := st.grant(req, now)
	if f != nil {
		return h, &lineFailure{f.line, f.code}, nil
	}
	w := newHoldWriter(s.d)
	w.sale = st.sale
	if part != nil {
		w.lineNos = part.LineNos
	}
	if _, err := w.grant(st, req, h, now); err != nil {
		return h, nil, err
	}
	if err := s.writeBatch(ctx, tx, w, st); err != nil {
		return h, nil, err
	}
	return h, nil, s.record(ctx, tx, h)
}

// recordedRefusal are the refusals a batch records under the request's
// key itself. Not "not found": a store spread over shards tries another
// shard after one, under the same key.
var recordedRefusal = map[holdfast.Code]bool{
	holdfast.CodeSoldOut: true, holdfast.CodeUnavailable: true, holdfast.CodeLimitExceeded: true,
	holdfast.CodeQuotaExceeded: true, holdfast.CodeAdmissionInvalid: true,
}

// lockBatch looks up the batch's deferred idempotency keys, then locks the
// batch's rows in the global order and reads them — all in one round trip
// where the backend pipelines (PostgreSQL): the keys, the database clock,
// pools by id, the holders' totals of those pools, named units by id, and
// each "any" group's free units not locked by others. A request whose key
// turns out to be used takes no effect (its rows may have been locked for
// nothing: harmless).
//
// A look (stmts nil) reads the same rows without locking any, and also
// whether the groups exist and the keys' quotas: what explain needs to
// name a refusal by the same decision. Otherwise the statements sent are
// counted in stmts (a claim batch's, or a round of offers').
func (s *Store) lockBatch(ctx context.Context, tx Reader, batch []*claimReq, results []claimResult, stmts *atomic.Int64) (*batchState, int64, error) {
	look := stmts == nil
	var pools, units, groups, sales, holders []string
	named := map[string]bool{}
	add := func(list *[]string, kind, id string) {
		if !named[kind+id] {
			named[kind+id] = true
			*list = append(*list, id)
		}
	}
	for i, req := range batch {
		if results[i].err != nil {
			continue
		}
		for _, l := range req.r.Lines {
			switch l.Kind() {
			case holdfast.LinePool:
				add(&pools, "p", l.Pool)
				add(&holders, "h", holderScope(req.r.Owner, req.r.Holder))
			case holdfast.LineUnits:
				for _, u := range l.Units {
					add(&units, "u", u)
				}
			case holdfast.LineAny:
				add(&groups, "g", l.Group)
				add(&sales, "s", saleKey(l.Group, l.Channel))
			}
		}
	}
	slices.Sort(pools)
	slices.Sort(units)
	slices.Sort(groups)
	slices.Sort(sales)
	// A claim looking again after a miss a consistent look said was not
	// real waits for the units claims in flight lock (skipLocked).
	forUpdate, skipLocked := s.d.ForUpdate, skipLocked(ctx, s.d)
	if look {
		forUpdate, skipLocked = "", ""
	}
	st := &batchState{newHoldID: s.newHoldID, pools: map[string]*poolRow{}, holders: map[holderKey]int64{}, holdersAdded: map[holderKey]int64{}, units: map[string]bool{}, stale: map[string]bool{}, unitSale: map[string]string{}, free: map[string][]string{},
		quotas: map[string]quota{}, quotaAdded: map[string]int64{}, tickets: map[ticket]int64{}, sale: map[string]string{}}
	var now int64
	var qs []Query
	if !look {
		qs = s.d.genericPlans()
	}

	// Deferred keys are not claimed with a write of their own: they are
	// looked up here, and a granted request's key is written once, with its
	// answer, among the batch's writes (where the insert's row count proves
	// nobody wrote it meanwhile, or the batch rolls back). A key used
	// before, or twice in this batch, takes no effect: the caller looks it
	// up (a replay, a mismatch, in flight).
	keyRows := newRows("scope, key", "text", "text")
	used, seen := map[[2]string]bool{}, map[[2]string]bool{}
	for i, req := range batch {
		if rec := req.rec; results[i].err == nil && rec != nil && rec.Deferred {
			k := [2]string{rec.Scope, rec.Key}
			if seen[k] {
				results[i] = claimResult{err: holdfast.Errorf(holdfast.CodeIdempotencyKeyUsed, "the Idempotency-Key is in use")}
				continue
			}
			seen[k] = true
			keyRows.add(rec.Scope, rec.Key)
		}
	}
	if keyRows.len() > 0 {
		qs = append(qs, keyRows.query(s.d, `SELECT v.scope, v.key FROM v JOIN idempotency_keys k ON k.scope = v.scope AND k.key = v.key`, func(r Row) error {
			var k [2]string
			err := r.Scan(&k[0], &k[1])
			used[k] = true
			return err
		}))
	}
	// A payment ref recorded already is a conflict, answered here with
	// nothing taken; a ref paid with twice in the batch sends both
	// bookings round again alone (a batch of one each), where the first
	// to commit wins and the other is the conflict.
	var refs []string
	twiceRefs, recordedRefs := map[string]bool{}, map[string]bool{}
	for i, req := range batch {
		if p := req.pay; p != nil && results[i].err == nil && !look {
			if slices.Contains(refs, p.Ref) {
				twiceRefs[p.Ref] = true
				continue
			}
			refs = append(refs, p.Ref)
		}
	}
	if len(refs) > 0 {
		qs = append(qs, Query{`SELECT ref FROM payments WHERE ref IN (` + s.d.ListSelect(1) + `)`, []any{s.d.ListArg(refs)}, func(r Row) error {
			var ref string
			err := r.Scan(&ref)
			recordedRefs[ref] = true
			return err
		}})
	}
	qs = append(qs, Query{`SELECT holdfast_now_ms()`, nil, func(r Row) error { return r.Scan(&now) }})
	if len(pools) > 0 {
		open := `capacity - waitlisted - allocated`
		if forWaitlistHead(ctx) {
			open = `capacity - allocated` // the head of the line comes before every other ask
		}
		qs = append(qs, Query{`SELECT id, ` + open + `, held, confirmed, per_holder_limit FROM pools
			WHERE id IN (` + s.d.ListSelect(1) + `) ORDER BY id` + forUpdate, []any{s.d.ListArg(pools)}, func(r Row) error {
			var id string
			p := &poolRow{}
			err := r.Scan(&id, &p.capacity, &p.held, &p.confirmed, &p.limit)
			st.pools[id] = p
			return err
		}})
		// Only limited pools have holders' totals; the pools' row locks
		// (taken just before) guard them: every claim and give-back takes
		// the pool's row first.
		qs = append(qs, Query{`SELECT pool_id, holder, taken FROM pool_holders
			WHERE pool_id IN (` + s.d.ListSelect(1) + `) AND holder IN (` + s.d.ListSelect(2) + `)`, []any{s.d.ListArg(pools), s.d.ListArg(holders)}, func(r Row) error {
			var k holderKey
			var taken int64
			err := r.Scan(&k.pool, &k.holder, &taken)
			st.holders[k] = taken
			return err
		}})
	}
	if len(units) > 0 {
		lock := forUpdate
		if lock != "" {
			lock += " OF u"
		}
		qs = append(qs, Query{`SELECT u.id, u.hold_id IS NULL, COALESCE(h.status = 'held' AND h.expires_at <= holdfast_now_ms(), FALSE), u.channel
			FROM units u LEFT JOIN holds h ON h.id = u.hold_id
			WHERE u.id IN (` + s.d.ListSelect(1) + `) ORDER BY u.id` + lock, []any{s.d.ListArg(units)}, func(r Row) error {
			var id, sale string
			var free, stale bool
			err := r.Scan(&id, &free, &stale, &sale)
			st.units[id], st.stale[id], st.unitSale[id] = free, stale, sale
			return err
		}})
	}
	for _, key := range sales {
		g, channel := splitSale(key)
		var want int64
		for i, req := range batch {
			if results[i].err != nil {
				continue
			}
			for _, l := range req.r.Lines {
				if l.Kind() == holdfast.LineAny && l.Group == g && l.Channel == channel {
					want += l.Any
				}
			}
		}
		// Free units of the sale (the general one, or a channel's) other
		// transactions have not locked, in id order; the batch's own named
		// units are left to their requests.
		// The sale is written out so that the plan, made once for every
		// call (Dialect.GenericPlans), reads the index of its sale: the
		// general one's units_free, a channel's units_channel.
		sale, args := `channel = ''`, []any{g, s.d.ListArg(units), want}
		if channel != "" {
			sale, args = `channel = $4 AND channel <> ''`, append(args, channel)
		}
		qs = append(qs, Query{`SELECT id FROM units WHERE group_id = $1 AND hold_id IS NULL AND ` + sale + `
			AND id NOT IN (` + s.d.ListSelect(2) + `) ORDER BY id LIMIT $3` + skipLocked, args, func(r Row) error {
			var id string
			err := r.Scan(&id)
			st.free[key] = append(st.free[key], id)
			return err
		}})
	}
	// The keys' quotas of the holds counted against one: locked last, as
	// every claim and give-back does (holds, pools, units, keys).
	var keys []string
	for i, req := range batch {
		if k := req.r.QuotaKey; results[i].err == nil && k != "" && !req.confirm {
			add(&keys, "k", k)
		}
	}
	if len(keys) > 0 {
		slices.Sort(keys)
		qs = append(qs, s.quotasQuery(keys, forUpdate, st.quotas))
	}
	// The admissions the batch's holds spend: locked last, as a claim made
	// alone spends its own after everything else it takes.
	q, err := s.ticketsQuery(ctx, tx, batch, results, forUpdate, st.tickets)
	if err != nil {
		return nil, 0, err
	}
	if q != nil {
		qs = append(qs, *q)
	}
	if look {
		st.groups = map[string]bool{}
		if len(groups) > 0 {
			qs = append(qs, Query{`SELECT id FROM groups WHERE id IN (` + s.d.ListSelect(1) + `)`, []any{s.d.ListArg(groups)}, func(r Row) error {
				var id string
				err := r.Scan(&id)
				st.groups[id] = true
				return err
			}})
		}
	}
	if !look {
		stmts.Add(int64(len(qs)))
	}
	if err := QueryAll(ctx, tx, qs); err != nil {
		return nil, 0, err
	}
	for i, req := range batch {
		if rec := req.rec; results[i].err == nil && rec != nil && rec.Deferred && used[[2]string{rec.Scope, rec.Key}] {
			results[i] = claimResult{err: holdfast.Errorf(holdfast.CodeIdempotencyKeyUsed, "the Idempotency-Key is in use")}
		}
		if p := req.pay; results[i].err == nil && p != nil && recordedRefs[p.Ref] {
			results[i] = claimResult{err: refRecorded(p.Ref)}
		} else if results[i].err == nil && p != nil && twiceRefs[p.Ref] {
			results[i] = claimResult{fallback: true}
		}
	}
	return st, now, nil
}

// keyRaceAttempts bounds how often a claim batch looks again after
// errKeyRace before its claims go one by one.
const keyRaceAttempts = 8

// errKeyRace: a key the batch found unused was written by another request
// before the batch could write it.
var errKeyRace = errors.New("sqlstore: an idempotency key was written meanwhile")

// keyInsert writes deferred keys (rows of holdWriter.keyRows), done, with
// their answers; a key someone else wrote is left alone (and the row
// count tells).
func keyInsert(d Dialect, rows *rowSet) Stmt {
	return rows.stmt(d, `INSERT INTO idempotency_keys (scope, key, fingerprint, token, state, status, body, created_at, updated_at)
		SELECT scope, key, fingerprint, token, 'done', status, body, at, at FROM v WHERE true ON CONFLICT (scope, key) DO NOTHING`)
}

// checkClaimedKeys checks that keys claimed before the batch (by
// BeginIdempotent) are still the requests' own: a request whose key a
// retry took over takes no effect.
func (s *Store) checkClaimedKeys(ctx context.Context, tx Querier, batch []*claimReq, results []claimResult) error {
	for i, req := range batch {
		rec := req.rec
		if rec == nil || rec.Deferred {
			continue
		}
		var token string
		found, err := queryRow(ctx, tx, `SELECT token FROM idempotency_keys WHERE scope = $1 AND key = $2 AND state = 'in_flight'`+s.d.ForUpdate,
			[]any{rec.Scope, rec.Key}, &token)
		if err != nil {
			return err
		}
		if !found || token != rec.Token {
			results[i] = claimResult{err: holdfast.Errorf(holdfast.CodeIdempotencyInFlight, "this request's Idempotency-Key was taken over by a retry")}
		}
	}
	return nil
}

// The reads lockBatch sends beside the inventory's, in the same round
// trip: the admissions of the rooms guarding what each request takes
// (the waiting room's rule, which grant asks first) and the keys' quotas
// (last in the global lock order). Their rules are decide.go's.

// unitGroups reads the group of every named unit of rs, in one query,
// when a room guards some group (nil otherwise: no unit is guarded).
func (s *Store) unitGroups(ctx context.Context, q Reader, snap *roomSnapshot, rs []holdfast.HoldRequest) (map[string]string, error) {
	if len(snap.groups) == 0 {
		return nil, nil
	}
	var units []string
	for _, r := range rs {
		for _, l := range r.Lines {
			units = append(units, l.Units...)
		}
	}
	if len(units) == 0 {
		return nil, nil
	}
	groupOf := map[string]string{}
	rows, err := q.Query(ctx, `SELECT id, group_id FROM units WHERE id IN (`+s.d.ListSelect(1)+`)`, s.d.ListArg(units))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id, group string
		if err := rows.Scan(&id, &group); err != nil {
			return nil, err
		}
		groupOf[id] = group
	}
	return groupOf, rows.Err()
}

// rooms returns the rooms guarding what r names (its named units' groups
// in groupOf), in order, each once.
func (snap *roomSnapshot) rooms(r holdfast.HoldRequest, groupOf map[string]string) []string {
	if len(snap.pools)+len(snap.groups) == 0 {
		return nil
	}
	var rooms []string
	add := func(room string) {
		if room != "" && !slices.Contains(rooms, room) {
			rooms = append(rooms, room)
		}
	}
	for _, l := range r.Lines {
		switch l.Kind() {
		case holdfast.LinePool:
			pool, _ := splitPool(l.Pool) // a channel's allocation: its pool's room
			add(snap.pools[pool])
		case holdfast.LineAny:
			add(snap.groups[l.Group])
		case holdfast.LineUnits:
			for _, u := range l.Units {
				add(snap.groups[groupOf[u]])
			}
		}
	}
	slices.Sort(rooms)
	return rooms
}

// ticketsQuery finds the rooms guarding what each gated request of a
// batch takes (req.rooms; the decision, grant, applies the room's rule)
// and the one whose admission it spends (req.room), and returns the query
// that reads those admissions into out — locked unless lock is "" —, each
// spendable one with what its room lets an admission buy (0: no bound).
// nil: none to read.
func (s *Store) ticketsQuery(ctx context.Context, tx Reader, batch []*claimReq, results []claimResult, lock string, out map[ticket]int64) (*Query, error) {
	// The rooms of the whole batch from the cached map, and its named
	// units' groups in one query: not a round trip per request.
	snap, err := s.protected(ctx, tx)
	if err != nil {
		return nil, err
	}
	var gated []holdfast.HoldRequest
	for i, req := range batch {
		req.rooms, req.room = nil, ""
		if results[i].err == nil && req.gated {
			gated = append(gated, req.r)
		}
	}
	groupOf, err := s.unitGroups(ctx, tx, snap, gated)
	if err != nil {
		return nil, err
	}
	rows := newRows("token, room_id, holder, owner", "text", "text", "text", "text")
	for i, req := range batch {
		if results[i].err != nil || !req.gated {
			continue
		}
		rooms := snap.rooms(req.r, groupOf)
		req.rooms = rooms
		if len(rooms) != 1 || req.r.Admission == "" {
			continue // no room, or refused by grant
		}
		req.room = rooms[0]
		rows.add(req.r.Admission, rooms[0], req.r.Holder, req.r.Owner)
	}
	if rows.len() == 0 {
		return nil, nil
	}
	if lock != "" {
		lock += " OF t"
	}
	q := rows.query(s.d, `SELECT t.token, t.room_id, t.holder, t.owner, r.max_units_per_admission FROM room_tickets t JOIN v ON t.token = v.token AND t.room_id = v.room_id AND t.holder = v.holder AND t.owner = v.owner
		JOIN rooms r ON r.id = t.room_id
		WHERE t.status = 'admitted' AND t.hold_id IS NULL AND t.expires_at > holdfast_now_ms() ORDER BY t.token`+lock, func(r Row) error {
		var t ticket
		var most int64
		err := r.Scan(&t.token, &t.room, &t.holder, &t.owner, &most)
		out[t] = most
		return err
	})
	return &q, nil
}

// quotasQuery reads the quotas of keys ids into out, in id order (lock: a
// locking clause, or ""): a batch's keys, last in the global lock order.
// A key that does not exist has none (and no entry in out).
func (s *Store) quotasQuery(ids []string, lock string, out map[string]quota) Query {
	return Query{`SELECT ` + quotaColumns + ` FROM api_keys WHERE id IN (` + s.d.ListSelect(1) + `) ORDER BY id` + lock,
		[]any{s.d.ListArg(ids)}, func(r Row) error {
			var id string
			var k quota
			err := r.Scan(&id, &k.max, &k.held)
			out[id] = k
			return err
		}}
}

// The lock clause of "any" picks, for lockBatch and the strategies'
// claims alike.

// skipLocked is the lock clause for picking "any k" units: SKIP LOCKED on
// a first attempt; after a miss that a consistent look says was not
// real, a plain FOR UPDATE that waits, in id order, for the claims in
// flight — some of which roll back (a crashed server's, a hold whose other
// line failed), and skipping those would refuse while units are free.
func skipLocked(ctx context.Context, d Dialect) string {
	if waitLocked(ctx) {
		return d.ForUpdate
	}
	return d.SkipLocked
}

type waitLockedKey struct{}

func withWaitLocked(ctx context.Context) context.Context {
	return context.WithValue(ctx, waitLockedKey{}, true)
}

func waitLocked(ctx context.Context) bool { return ctx.Value(waitLockedKey{}) != nil }
