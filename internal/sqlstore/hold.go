package sqlstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/holdfast/holdfast"
)

// A Hold whose claim misses while a consistent look finds room (capacity
// came back: expired holds reclaimed, or released meanwhile) goes round
// again: claimAttempts times at once, then with jittered backoff until its
// deadline — a refusal is only given when true, and busy only past the
// deadline (guarantee 3). On a few seats that change hands every few
// milliseconds, four quick attempts ran out about once in 16,000 holds
// (the chaos harness's seat lanes); maxClaimAttempts bounds a caller
// without a deadline.
const (
	claimAttempts    = 4
	maxClaimAttempts = 1000
)

// lineFailure is a claim that could not be made inside the transaction.
type lineFailure struct {
	line int
	code holdfast.Code
}

func (f *lineFailure) err() error {
	return holdfast.LineErrorf(f.code, f.line, "line %d cannot be claimed: %s", f.line, f.code)
}

func (s *Store) Hold(ctx context.Context, r holdfast.HoldRequest) (holdfast.Hold, error) {
	return s.hold(ctx, r, false, "")
}

func (s *Store) Book(ctx context.Context, r holdfast.HoldRequest, paymentRef string) (holdfast.Hold, error) {
	if err := holdfast.ValidatePaymentRef(paymentRef); err != nil {
		return holdfast.Hold{}, err
	}
	return s.hold(ctx, r, true, paymentRef)
}

func (s *Store) hold(ctx context.Context, r holdfast.HoldRequest, confirm bool, paymentRef string) (holdfast.Hold, error) {
	if err := r.Validate(s.cfg); err != nil {
		return holdfast.Hold{}, err
	}
	if !hasTogether(r) {
		return s.holdOnce(ctx, r, confirm, paymentRef)
	}
	// This loop tries again after a refusal, under the same key: a batch
	// must not record the refusal of a try as the request's answer.
	try1 := s
	if s.key != nil && s.key.RenderError != nil {
		k := *s.key
		k.RenderError = nil
		try1 = &Store{shared: s.shared, key: &k}
		defer func() { s.answer = try1.answer }()
	}
	var lost error
	for try := 0; try < maxClaimAttempts; try++ {
		seats, picked, err := s.together(ctx, r)
		if err != nil {
			return holdfast.Hold{}, s.beforeInventory(ctx, r, confirm, err)
		}
		h, err := try1.holdOnce(ctx, seats, confirm, paymentRef)
		s.unpick(picked, err == nil)
		// A seat of the picked block was taken between the pick and the
		// claim (which took nothing): that refuses the block, not the
		// request, so pick again — the pick answers unavailable when no
		// block is left. Buyers who arrive together pick the same best
		// block and all but one lose it, some many times over.
		if line := holdfast.ErrorLine(err); holdfast.ErrorCode(err) == holdfast.CodeUnavailable && line >= 0 && line < len(r.Lines) && r.Lines[line].Together {
			lost = err
			if backoff(ctx, try) != nil {
				break
			}
			continue
		}
		return h, err
	}
	// Every pick found a block and lost it until the deadline: a refusal
	// would not be true (guarantee 3), so the answer is a retryable busy.
	return holdfast.Hold{}, fmt.Errorf("%w: the seats picked kept being taken under this request (%v); retry", holdfast.ErrBusy, lost)
}

func (s *Store) holdOnce(ctx context.Context, r holdfast.HoldRequest, confirm bool, paymentRef string) (holdfast.Hold, error) {
	if !s.coalesce {
		// A strategy's one-by-one claim asks the waiting room's rule
		// first; on a store that batches, grant decides it with the rest.
		var err error
		if r, err = s.guardRoom(ctx, r); err != nil {
			return holdfast.Hold{}, err
		}
	}
	r = channelLines(r)
	ttl := r.TTL
	if ttl == 0 {
		ttl = s.cfg.DefaultTTL
	}
	// Every claim joins a batch, but a part of a hold across shards: its
	// hold id and line numbers are the coordinator's.
	if s.coalesce && partOf(ctx) == nil {
		if len(r.Lines) == 1 && r.Lines[0].Kind() == holdfast.LinePool {
			pool, q := r.Lines[0].Pool, r.Lines[0].Quantity
			if avail, refused := s.refusesSoldOut(ctx, pool, q); refused {
				return holdfast.Hold{}, holdfast.LineErrorf(holdfast.CodeSoldOut, 0, "%s has %d available, %d asked", poolName(pool), avail, q)
			}
		}
		res := s.submit([]*claimReq{s.newClaimReq(ctx, r, ttl, confirm, paymentRef)})[0]
		if h, err, done := s.afterBatch(ctx, r, confirm, res); done {
			return h, err
		}
		// Capacity came back, or the batch failed whole: the ordinary path.
	}
	var fail *lineFailure
	for attempt, stale := 0, 0; attempt < maxClaimAttempts; {
		var h holdfast.Hold
		prep, err := s.strategy.Prepare(ctx, s.db, r)
		if err == nil {
			transact := s.db.Transact
			if s.strategy.Serializable() {
				transact = s.db.TransactSerializable
			}
			claimCtx := ctx
			if attempt > 0 {
				claimCtx = withWaitLocked(ctx) // see skipLocked
			}
			err = transact(preparing(ctx), func(tx Querier) error {
				var err error
				if s.coalesce {
					// A store that batches decides a claim made one by
					// one as a batch of one, by the same decision and
					// writer (a shard's part in its prepared
					// transaction). Its answer under a key is recorded
					// by claimAlone, in this transaction.
					req := s.newClaimReq(claimCtx, r, ttl, confirm, paymentRef)
					req.rec = nil
					h, fail, err = s.claimAlone(claimCtx, tx, req, partOf(ctx))
				} else {
					h, fail, err = s.claim(claimCtx, tx, prep, r, ttl, confirm, paymentRef)
				}
				if err == nil && fail != nil {
					return errRollback
				}
				return err
			})
		}
		s.strategy.Finish(prep)
		if errors.Is(err, errKeyRace) {
			// The payment ref was recorded by another request between
			// claimAlone's look and its write: look again, which sees it
			// recorded and answers the conflict.
			continue
		}
		if errors.Is(err, ErrRetry) {
			// The strategy's reads went stale (optimistic): back off with
			// full jitter and go round again, within the deadline.
			s.retries.Add(1)
			if err := backoff(ctx, stale); err != nil {
				return holdfast.Hold{}, fmt.Errorf("%w: gave up retrying a contended claim: %v", holdfast.ErrBusy, err)
			}
			stale++
			continue
		}
		if fail == nil || !errors.Is(err, errRollback) {
			if err != nil {
				return holdfast.Hold{}, err
			}
			return h, nil
		}
		attempt++
		// A line failed. Expired holds may be sitting on the capacity: free
		// them (guarantee 6), then look again, line by line in request order,
		// so the answer names the first line that really cannot be had.
		if _, err := s.reclaim(ctx, r); err != nil {
			return holdfast.Hold{}, err
		}
		if err := s.explain(ctx, r, confirm); err != nil {
			return holdfast.Hold{}, err
		}
		// Every line looks claimable now: capacity came back. Try again.
		if attempt >= claimAttempts {
			if err := backoff(ctx, attempt-claimAttempts); err != nil {
				break
			}
		}
	}
	// Every look said the claim could be had, every attempt missed, until
	// the deadline: the capacity is churning under this claim. A refusal
	// now would not be true at any one moment (the last consistent look
	// found room), so the answer is a retryable busy.
	return holdfast.Hold{}, fmt.Errorf("%w: capacity kept changing under this claim (%v); retry", holdfast.ErrBusy, fail.err())
}

// beforeInventory answers a request for seats together that could not
// be placed (err): a rule that comes before what is left — the waiting
// room's, the key's quota — refuses it first, as the one decision names
// it for the request with each block asked as "any" of its group; else
// err.
func (s *Store) beforeInventory(ctx context.Context, r holdfast.HoldRequest, confirm bool, err error) error {
	if holdfast.ErrorCode(err) != holdfast.CodeUnavailable {
		return err
	}
	asAny := r
	asAny.Lines = slices.Clone(r.Lines)
	for i, l := range asAny.Lines {
		if l.Together {
			asAny.Lines[i] = holdfast.Line{Group: l.Group, Any: l.Any, Channel: l.Channel}
		}
	}
	switch rerr := s.explain(ctx, channelLines(asAny), confirm); holdfast.ErrorCode(rerr) {
	case "", holdfast.CodeUnavailable, holdfast.CodeSoldOut:
		return err
	default:
		return rerr
	}
}

// afterBatch finishes a coalesced claim: done is false when the request
// must take the ordinary path.
func (s *Store) afterBatch(ctx context.Context, r holdfast.HoldRequest, confirm bool, res claimResult) (holdfast.Hold, error, bool) {
	switch {
	case res.err != nil:
		if holdfast.ErrorCode(res.err) == holdfast.CodeSoldOut && len(r.Lines) == 1 {
			s.soldOut.remember(r.Lines[0].Pool)
		}
		if res.answer != nil {
			s.answer = res.answer // the refusal, recorded under the key
		}
		return holdfast.Hold{}, res.err, true
	case res.refused:
		// The batch could not grant it: reclaim expired holds and look
		// again, as for any failed claim.
		if _, err := s.reclaim(ctx, r); err != nil {
			return holdfast.Hold{}, err, true
		}
		if err := s.explain(ctx, r, confirm); err != nil {
			if holdfast.ErrorCode(err) == holdfast.CodeSoldOut && len(r.Lines) == 1 {
				s.soldOut.remember(r.Lines[0].Pool)
			}
			return holdfast.Hold{}, err, true
		}
		return holdfast.Hold{}, nil, false
	case res.fallback:
		return holdfast.Hold{}, nil, false
	}
	if res.answer != nil {
		s.answer = res.answer
	}
	return res.h, nil, true
}

// HoldBatch claims holds of any shape in batches, in the order given (more
// than maxBatch make several batches, queued at once): each answer is what
// Hold would say to requests arriving in that order. keys[i], when not
// nil, is request i's claimed idempotency key. Without coalescing it holds
// one by one.
func (s *Store) HoldBatch(ctx context.Context, rs []holdfast.HoldRequest, keys []*holdfast.Idempotency) ([]holdfast.Hold, []error) {
	holds, errs := make([]holdfast.Hold, len(rs)), make([]error, len(rs))
	views := make([]*Store, len(rs))
	for i := range rs {
		views[i] = s
		if i < len(keys) && keys[i] != nil {
			views[i] = s.Keyed(*keys[i]).(keyed).Store
		}
	}
	valid := s.coalesce && len(rs) > 0 && len(rs) <= maxQueue
	for _, r := range rs {
		valid = valid && r.Validate(s.cfg) == nil && !hasTogether(r)
	}
	if !valid {
		for i, r := range rs {
			holds[i], errs[i] = views[i].Hold(ctx, r)
		}
		return holds, errs
	}
	reqs := make([]*claimReq, len(rs))
	for i, r := range rs {
		r = channelLines(r)
		reqs[i] = views[i].newClaimReq(ctx, r, cmp.Or(r.TTL, s.cfg.DefaultTTL), false, "")
	}
	for i, res := range s.submit(reqs) {
		var done bool
		if holds[i], errs[i], done = views[i].afterBatch(ctx, reqs[i].r, false, res); !done {
			holds[i], errs[i] = views[i].Hold(ctx, rs[i])
		}
	}
	return holds, errs
}

// backoff sleeps a full-jitter exponential backoff for the n-th retry
// (1 ms doubling, capped at 64 ms), or returns ctx's error.
func backoff(ctx context.Context, n int) error {
	return sleep(ctx, rand.N(time.Millisecond<<min(n, 6))+1)
}

// claim makes every line of r in one transaction, in the global lock order.
// A line that cannot be had comes back as a lineFailure, and the caller
// rolls the transaction back, so nothing is taken.
func (s *Store) claim(ctx context.Context, tx Querier, prep Prepared, r holdfast.HoldRequest, ttl time.Duration, confirm bool, paymentRef string) (holdfast.Hold, *lineFailure, error) {
	h := holdfast.Hold{ID: s.newHoldID(), Holder: r.Holder, Status: holdfast.StatusHeld, PaymentRef: paymentRef, Owner: r.Owner}
	part := partOf(ctx)
	if part != nil {
		h.ID = part.HoldID
	}
	if confirm {
		h.Status = holdfast.StatusConfirmed
	}
	var created, expires int64
	err := tx.QueryRow(ctx, `INSERT INTO holds (id, holder, status, created_at, expires_at, updated_at, payment_ref, owner)
		VALUES ($1, $2, $3, holdfast_now_ms(), holdfast_now_ms() + $4, holdfast_now_ms(), $5, $6) RETURNING created_at, expires_at`,
		h.ID, h.Holder, string(h.Status), ttl.Milliseconds(), paymentRef, r.Owner).Scan(&created, &expires)
	if err != nil {
		return h, nil, err
	}
	s.holdsMade(1)
	h.CreatedAt, h.ExpiresAt, h.UpdatedAt = msTime(created), msTime(expires), msTime(created)
	h.Lines = make([]holdfast.Line, len(r.Lines))

	var poolLines, anyLines []int
	unitIDs := map[string][]string{} // by sale: "" the general, else a channel's
	for i, l := range r.Lines {
		h.Lines[i] = publicLine(holdfast.Line{Pool: l.Pool, Quantity: l.Quantity, Group: l.Group, Any: l.Any})
		switch l.Kind() {
		case holdfast.LinePool:
			poolLines = append(poolLines, i)
		case holdfast.LineAny:
			anyLines = append(anyLines, i)
		case holdfast.LineUnits:
			unitIDs[l.Channel] = append(unitIDs[l.Channel], l.Units...)
		}
	}
	// One global lock order (guarantee 7): pools by id, units by sale and
	// id (a unit is in one sale at a time), groups by id. Two holds never
	// wait on each other in opposite orders.
	slices.SortFunc(poolLines, func(a, b int) int { return cmp.Compare(r.Lines[a].Pool, r.Lines[b].Pool) })
	slices.SortStableFunc(anyLines, func(a, b int) int { return cmp.Compare(r.Lines[a].Group, r.Lines[b].Group) })

	for _, i := range poolLines {
		l := r.Lines[i]
		limit, ok, err := s.strategy.ClaimPool(ctx, tx, prep, l.Pool, l.Quantity, confirm)
		if err != nil {
			return h, nil, err
		}
		if !ok {
			return h, &lineFailure{i, holdfast.CodeSoldOut}, nil
		}
		if limit > 0 {
			ok, err := s.takeHolderLimit(ctx, tx, l.Pool, holderScope(r.Owner, r.Holder), l.Quantity, limit)
			if err != nil {
				return h, nil, err
			}
			if !ok {
				return h, &lineFailure{i, holdfast.CodeLimitExceeded}, nil
			}
		}
	}
	if len(unitIDs) > 0 {
		got := map[string]bool{}
		for _, channel := range slices.Sorted(maps.Keys(unitIDs)) {
			ids := slices.Sorted(slices.Values(unitIDs[channel]))
			taken, err := s.strategy.ClaimUnits(ctx, tx, prep, h.ID, channel, ids)
			if err != nil {
				return h, nil, err
			}
			for _, u := range taken {
				got[u] = true
			}
		}
		for i, l := range r.Lines {
			if l.Kind() != holdfast.LineUnits {
				continue
			}
			for _, u := range l.Units {
				if !got[u] {
					return h, &lineFailure{i, holdfast.CodeUnavailable}, nil
				}
			}
			h.Lines[i].Units = slices.Clone(l.Units)
		}
	}
	for _, i := range anyLines {
		l := r.Lines[i]
		taken, err := s.strategy.ClaimAny(ctx, tx, prep, h.ID, l.Group, l.Channel, l.Any)
		if err != nil {
			return h, nil, err
		}
		if int64(len(taken)) < l.Any {
			return h, &lineFailure{i, holdfast.CodeUnavailable}, nil
		}
		if int64(len(taken)) > l.Any {
			// Never give more than asked; roll back loudly instead.
			return h, nil, fmt.Errorf("sqlstore: an \"any %d\" line took %d units", l.Any, len(taken))
		}
		slices.Sort(taken)
		h.Lines[i].Units = taken
	}
	if r.QuotaKey != "" && !confirm {
		line, ok, err := s.takeQuota(ctx, tx, h.ID, r)
		if err != nil {
			return h, nil, err
		}
		if !ok {
			return h, &lineFailure{line, holdfast.CodeQuotaExceeded}, nil
		}
	}
	if r.Admission != "" {
		if err := s.useAdmission(ctx, tx, h.ID, r); err != nil {
			return h, nil, err
		}
	}
	// The hold's row is written and its rows taken: its lines, unit claims
	// and events go through the one writer batches use.
	w := newHoldWriter(s.d)
	if part != nil {
		w.lineNos = part.LineNos
	}
	if _, err := w.add(h, confirm, quotaTake{}, nil, created); err != nil {
		return h, nil, err
	}
	stmts := w.recordStmts()
	if pay := paying(ctx); pay != nil && confirm {
		stmts = append(stmts, capture(h.ID, *pay))
	}
	if _, err := ExecAll(ctx, tx, stmts); err != nil {
		return h, nil, err
	}
	return h, nil, s.record(ctx, tx, h)
}

// takeHolderLimit adds q to the holder's total in the pool if that stays
// within limit. One conditional upsert: the row lock makes two concurrent
// holds by the same holder queue, and the second sees the first's total.
func (s *Store) takeHolderLimit(ctx context.Context, tx Querier, pool, holder string, q, limit int64) (bool, error) {
	if q > limit {
		return false, nil
	}
	rows, err := tx.Query(ctx, `INSERT INTO pool_holders (pool_id, holder, taken) VALUES ($1, $2, $3)
		ON CONFLICT (pool_id, holder) DO UPDATE SET taken = pool_holders.taken + excluded.taken
		WHERE pool_holders.taken + excluded.taken <= $4
		RETURNING taken`, pool, holder, q, limit)
	if err != nil {
		return false, err
	}
	defer rows.Close()
	ok := rows.Next()
	return ok, rows.Err()
}

// explain names the refusal a claim made one by one would give now: the
// one decision (grant) asked of r (a booking when confirm: it counts
// against no key's quota) on its rows as they are, outside any write
// transaction. nil: every line could be had now.
func (s *Store) explain(ctx context.Context, r holdfast.HoldRequest, confirm bool) error {
	req := &claimReq{ctx: ctx, r: r, confirm: confirm, gated: true}
	st, now, err := s.lockBatch(ctx, s.db, []*claimReq{req}, make([]claimResult, 1), nil)
	if err != nil {
		return err
	}
	if _, f := st.grant(req, now); f != nil {
		return f.refusal()
	}
	return nil
}

// channelLines returns r with each channel's line naming its allocation's
// row: the only place a channel is looked at on the way in.
func channelLines(r holdfast.HoldRequest) holdfast.HoldRequest {
	if !hasChannel(r) {
		return r
	}
	lines := slices.Clone(r.Lines)
	for i, l := range lines {
		if l.Channel != "" && l.Kind() == holdfast.LinePool {
			lines[i].Pool, lines[i].Channel = allocID(l.Pool, l.Channel), ""
		}
	}
	r.Lines = lines
	return r
}

func hasChannel(r holdfast.HoldRequest) bool {
	return slices.ContainsFunc(r.Lines, func(l holdfast.Line) bool { return l.Channel != "" })
}

// hasTogether reports whether r asks for seats together.
func hasTogether(r holdfast.HoldRequest) bool {
	return slices.ContainsFunc(r.Lines, func(l holdfast.Line) bool { return l.Together })
}
