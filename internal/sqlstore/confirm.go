package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/holdfast/holdfast"
)

// Confirm has a fast path, one conditional update (change), and a careful
// one for a partial confirm or a confirm that came late: it locks the
// hold's row, reads what the hold has, and in one transaction keeps what
// was paid for, gives back the rest, and — if the hold was already
// expired and swept — takes what it keeps again, if it is still free,
// with the same conditional updates a claim makes. A new buyer racing for
// the same last unit queues on the same rows: one of the two wins.

func (s *Store) Confirm(ctx context.Context, id, paymentRef string) (holdfast.Hold, error) {
	return s.confirm(ctx, id, paymentRef, nil, nil)
}

func (s *Store) ConfirmPart(ctx context.Context, id, paymentRef string, part []holdfast.PartLine) (holdfast.Hold, error) {
	return s.confirm(ctx, id, paymentRef, part, nil)
}

// confirm confirms hold id; with pay, the payment is recorded in the
// same transaction (payment.go), on the careful path.
func (s *Store) confirm(ctx context.Context, id, paymentRef string, part []holdfast.PartLine, pay *holdfast.Payment) (holdfast.Hold, error) {
	if err := holdfast.ValidatePaymentRef(paymentRef); err != nil {
		return holdfast.Hold{}, err
	}
	if err := validatePart(part); err != nil {
		return holdfast.Hold{}, err
	}
	// Where the store batches changes, a confirm joins a batch: whole or
	// in part, on time or late while its capacity is still its own (no
	// sweeper expired it), paid or not. One whose hold was expired
	// meanwhile leaves the batch for the careful path: what it keeps is
	// claimed again; so does one whose payment is recorded already (a
	// replay, or a conflict).
	h, ok, err := s.inBatch(ctx, id, change{from: holdfast.StatusHeld, to: holdfast.StatusConfirmed, kind: kindConfirm, ref: paymentRef,
		event: holdfast.EventHoldConfirmed, part: part, pay: pay})
	if ok {
		return h, err
	}
	if len(part) == 0 && pay == nil {
		h, err := s.changeAlone(ctx, id, change{
			from: holdfast.StatusHeld, to: holdfast.StatusConfirmed, kind: kindConfirm, ref: paymentRef,
			set:   func(p *binds) string { return `, payment_ref = ` + p.add(paymentRef) },
			event: holdfast.EventHoldConfirmed,
			effect: func(ctx context.Context, tx Querier, id string) error {
				// Move the hold's quantity from held to confirmed, pools in
				// id order. Units keep their hold_id: they stay taken. The
				// key's quota counts held units only: confirming frees it.
				// Read in one round trip, write in one.
				var lines []poolLine
				var quota []quotaBack
				ids := []string{id}
				if err := QueryAll(ctx, tx, []Query{s.poolLinesQuery(ids, &lines), s.quotaQuery(ids, &quota)}); err != nil {
					return err
				}
				var writes []Stmt
				for _, pl := range lines {
					writes = append(writes, Stmt{`UPDATE pools SET held = held - $2, confirmed = confirmed + $2, version = version + 1 WHERE id = $1`, []any{pl.pool, pl.quantity}})
				}
				_, err := ExecAll(ctx, tx, append(writes, s.quotaStmts(quota)...))
				return err
			},
		})
		if holdfast.ErrorCode(err) != holdfast.CodeHoldExpired {
			return h, err
		}
		// Late: the careful path decides under the policy.
	}
	for attempt, stale := 0, 0; ; attempt++ {
		h, short, err := s.confirmCarefully(ctx, id, paymentRef, part, pay)
		if errors.Is(err, ErrRetry) {
			// The strategy's reads went stale (optimistic): go round again.
			s.retries.Add(1)
			if err := backoff(ctx, stale); err != nil {
				return h, fmt.Errorf("%w: gave up retrying a contended confirm: %v", holdfast.ErrBusy, err)
			}
			stale++
			continue
		}
		if short != nil && attempt == 0 {
			// What the late confirm would take again may be held by other
			// lapsed holds: expire them, as a claim does, and look again.
			if n, rerr := s.reclaimResources(ctx, short.pools, short.units, nil); rerr != nil {
				return h, rerr
			} else if n > 0 {
				continue
			}
		}
		return h, err
	}
}

// validatePart checks a partial confirm's shape; the hold decides the rest.
func validatePart(part []holdfast.PartLine) error {
	seen := map[int]bool{}
	for i, p := range part {
		switch {
		case p.Line < 0 || p.Line >= holdfast.MaxLines:
			return holdfast.LineErrorf(holdfast.CodeInvalid, i, "line must be a line number of the hold, from 0")
		case seen[p.Line]:
			return holdfast.LineErrorf(holdfast.CodeInvalid, i, "line %d is named twice", p.Line)
		case (p.Quantity != 0) == (p.Units != nil):
			return holdfast.LineErrorf(holdfast.CodeInvalid, i, "give quantity (a pool line) or units (a unit line) to keep")
		case p.Quantity < 0 || p.Quantity > holdfast.MaxQuantity:
			return holdfast.LineErrorf(holdfast.CodeInvalid, i, "quantity must be from 1 to the line's quantity")
		case p.Units != nil && len(p.Units) == 0:
			return holdfast.LineErrorf(holdfast.CodeInvalid, i, "units must keep at least one unit (release the hold to keep none)")
		}
		seen[p.Line] = true
		for _, u := range p.Units {
			if err := holdfast.ValidateID("unit", u); err != nil {
				return holdfast.LineErrorf(holdfast.CodeInvalid, i, "%s", err.(*holdfast.Error).Message)
			}
		}
	}
	return nil
}

// heldLine is one line of a hold as the careful confirm reads it.
type heldLine struct {
	no       int
	kind     string
	pool     string
	quantity int64 // pool lines: what it has; keep: what it keeps
	keep     int64
	units    []string // unit and any lines: what it has
	kept     []string // and keeps
}

// shortfall names what a late confirm found taken: reclaiming expired
// holds on it may free it.
type shortfall struct{ pools, units []string }

// notReclaimable refuses a late confirm whose capacity is gone or whose
// grace has passed.
func notReclaimable(format string, args ...any) error {
	e := holdfast.Errorf(holdfast.CodeHoldExpired, format, args...)
	no := false
	e.Reclaimable = &no
	return e
}

func (s *Store) confirmCarefully(ctx context.Context, id, paymentRef string, part []holdfast.PartLine, pay *holdfast.Payment) (holdfast.Hold, *shortfall, error) {
	if holdfast.ValidateID("hold", id) != nil {
		return holdfast.Hold{}, nil, holdfast.Errorf(holdfast.CodeNotFound, "hold %q not found", id)
	}
	// What a late confirm may take again goes through the strategy, as
	// a claim does (its locks: advisory, Redis), so a buyer claiming the
	// same capacity at the same moment is ordered with it. Prepared from
	// the hold's lines as they are: they change only with its state.
	before, err := s.heldLines(ctx, s.db, id)
	if err != nil {
		return holdfast.Hold{}, nil, err
	}
	req := holdfast.HoldRequest{Holder: "late"}
	var units []string
	for _, l := range before {
		if l.kind == "pool" {
			req.Lines = append(req.Lines, holdfast.Line{Pool: l.pool, Quantity: l.quantity})
		}
		units = append(units, l.units...)
	}
	if len(units) > 0 {
		slices.Sort(units)
		req.Lines = append(req.Lines, holdfast.Line{Units: units})
	}
	prep, err := s.strategy.Prepare(ctx, s.db, req)
	if err != nil {
		return holdfast.Hold{}, nil, err
	}
	defer s.strategy.Finish(prep)
	transact := s.db.Transact
	if s.strategy.Serializable() {
		transact = s.db.TransactSerializable
	}
	var h holdfast.Hold
	var short *shortfall
	err = transact(preparing(ctx), func(tx Querier) error {
		var status, owner, holder string
		var lateMs int64
		found, err := queryRow(ctx, tx, `SELECT status, owner, holder, holdfast_now_ms() - expires_at FROM holds WHERE id = $1`+s.d.ForUpdate,
			[]any{id}, &status, &owner, &holder, &lateMs)
		if err != nil {
			return err
		}
		if !found {
			return holdfast.Errorf(holdfast.CodeNotFound, "hold %q not found", id)
		}
		if pay != nil {
			// The same payment again on the hold it bought: a replay.
			if replay, err := s.paidBefore(ctx, tx, id, *pay); err != nil || replay {
				if err == nil {
					h, err = s.getHold(ctx, tx, id)
				}
				if err == nil {
					err = s.record(ctx, tx, h)
				}
				return err
			}
		}
		st := holdfast.Status(status)
		late := st == holdfast.StatusExpired || (st == holdfast.StatusHeld && lateMs >= 0)
		if st != holdfast.StatusHeld && st != holdfast.StatusExpired {
			return holdfast.Errorf(holdfast.CodeInvalidState, "hold %q is %s, not held", id, st)
		}
		if late {
			if err := s.latePolicy(ctx, tx, id, lateMs); err != nil {
				return err
			}
		}
		lines, err := s.heldLines(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := keepPart(lines, part); err != nil {
			return err
		}
		scoped := holderScope(owner, holder)
		if st == holdfast.StatusHeld {
			err = s.keepHeld(ctx, tx, id, scoped, lines)
		} else {
			short, err = s.takeAgain(ctx, tx, prep, id, scoped, lines)
		}
		if err != nil {
			return err
		}
		var stmts []Stmt
		for _, l := range lines {
			switch {
			case l.kind == "pool" && l.keep != l.quantity:
				stmts = append(stmts, Stmt{`UPDATE hold_lines SET quantity = $3 WHERE hold_id = $1 AND line_no = $2`, []any{id, l.no, l.keep}})
			case l.kind == "any" && len(l.kept) != len(l.units):
				stmts = append(stmts, Stmt{`UPDATE hold_lines SET any_count = $3 WHERE hold_id = $1 AND line_no = $2`, []any{id, l.no, int64(len(l.kept))}})
			}
		}
		stmts = append(stmts, Stmt{`UPDATE holds SET status = 'confirmed', late = $2, payment_ref = $3, updated_at = holdfast_now_ms() WHERE id = $1`,
			[]any{id, late, paymentRef}})
		if pay != nil {
			stmts = append(stmts, capture(id, *pay))
		}
		if _, err := ExecAll(ctx, tx, stmts); err != nil {
			return err
		}
		if h, err = s.getHold(ctx, tx, id); err != nil {
			return err
		}
		if err := s.event(ctx, tx, holdfast.EventHoldConfirmed, id, "", h); err != nil {
			return err
		}
		return s.record(ctx, tx, h)
	})
	return h, short, err
}

// latePolicy allows a confirm lateMs after the hold's expiry if every
// pool and group the hold has units or capacity in says if_available and
// the smallest of their graces has not passed.
func (s *Store) latePolicy(ctx context.Context, tx Querier, id string, lateMs int64) error {
	policies, err := s.latePolicies(ctx, tx, []string{id})
	if err != nil {
		return err
	}
	return lateRefusal(id, policies[id], lateMs)
}

// latePolicy is one late-confirm policy of a pool or group a hold has
// capacity or units in.
type latePolicy struct {
	late  holdfast.LatePolicy
	grace int64
}

// latePolicies reads the policies of the pools and groups each of the
// holds ids has capacity or units in, in one statement.
func (s *Store) latePolicies(ctx context.Context, tx Querier, ids []string) (map[string][]latePolicy, error) {
	out := map[string][]latePolicy{}
	list := s.d.ListSelect(1)
	err := QueryAll(ctx, tx, []Query{{`SELECT l.hold_id, p.late_confirm, p.late_confirm_grace FROM hold_lines l JOIN pools p ON p.id = l.pool_id
			WHERE l.hold_id IN (` + list + `)
		UNION ALL
		SELECT l.hold_id, g.late_confirm, g.late_confirm_grace FROM hold_lines l JOIN groups g ON g.id = l.group_id
			WHERE l.hold_id IN (` + list + `)
		UNION ALL
		SELECT c.hold_id, g.late_confirm, g.late_confirm_grace FROM unit_claims c JOIN units u ON u.id = c.unit_id JOIN groups g ON g.id = u.group_id
			WHERE c.hold_id IN (` + list + `)`, []any{s.d.ListArg(ids)}, func(r Row) error {
		var id, late string
		var grace int64
		if err := r.Scan(&id, &late, &grace); err != nil {
			return err
		}
		out[id] = append(out[id], latePolicy{holdfast.LatePolicy(late), grace})
		return nil
	}}})
	return out, err
}

// lateRefusal is the rule of a late confirm, on every path: nil if every
// policy of hold id says if_available and lateMs is within the smallest
// of their graces, else the refusal.
func lateRefusal(id string, policies []latePolicy, lateMs int64) error {
	grace := int64(holdfast.MaxLateConfirmGrace)
	for _, p := range policies {
		if p.late != holdfast.LateIfAvailable {
			return holdfast.Errorf(holdfast.CodeHoldExpired, "hold %q expired", id)
		}
		grace = min(grace, p.grace)
	}
	if len(policies) == 0 {
		return holdfast.Errorf(holdfast.CodeHoldExpired, "hold %q expired", id)
	}
	if lateMs > grace*1000 {
		return notReclaimable("hold %q expired %d s ago, past the late-confirm grace of %d s", id, lateMs/1000, grace)
	}
	return nil
}

// heldLines reads a hold's lines and the units each took.
func (s *Store) heldLines(ctx context.Context, tx Reader, id string) ([]heldLine, error) {
	lines, err := collect(ctx, tx, func(r Row) (heldLine, error) {
		var l heldLine
		err := r.Scan(&l.no, &l.kind, &l.pool, &l.quantity)
		l.keep = l.quantity
		return l, err
	}, `SELECT line_no, kind, COALESCE(pool_id, ''), COALESCE(quantity, 0) FROM hold_lines WHERE hold_id = $1 ORDER BY line_no`, id)
	if err != nil {
		return nil, err
	}
	rows, err := tx.Query(ctx, `SELECT line_no, unit_id FROM unit_claims WHERE hold_id = $1 ORDER BY line_no, unit_id`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var no int
		var unit string
		if err := rows.Scan(&no, &unit); err != nil {
			return nil, err
		}
		if i := lineAt(lines, no); i >= 0 {
			lines[i].units = append(lines[i].units, unit)
		}
	}
	for i := range lines {
		lines[i].kept = lines[i].units
	}
	return lines, rows.Err()
}

// lineAt finds line number no among lines: its index, or -1. A hold's
// lines are numbered from 0, but a part of a hold across shards has only
// some of the numbers (see Part).
func lineAt(lines []heldLine, no int) int {
	for i, l := range lines {
		if l.no == no {
			return i
		}
	}
	return -1
}

// keepPart applies a partial confirm to the lines: what each keeps.
func keepPart(lines []heldLine, part []holdfast.PartLine) error {
	for i, p := range part {
		at := lineAt(lines, p.Line)
		if at < 0 {
			return holdfast.LineErrorf(holdfast.CodeInvalid, i, "the hold has no line %d (it has %d)", p.Line, len(lines))
		}
		l := &lines[at]
		if l.kind == "pool" {
			if p.Units != nil {
				return holdfast.LineErrorf(holdfast.CodeInvalid, i, "line %d is a pool line: give the quantity to keep", p.Line)
			}
			if p.Quantity > l.quantity {
				return holdfast.LineErrorf(holdfast.CodeInvalid, i, "line %d holds %d; quantity must be from 1 to %d", p.Line, l.quantity, l.quantity)
			}
			l.keep = p.Quantity
			continue
		}
		if p.Units == nil {
			return holdfast.LineErrorf(holdfast.CodeInvalid, i, "line %d is a unit line: give the units to keep", p.Line)
		}
		var kept []string
		for _, u := range p.Units {
			if !slices.Contains(l.units, u) {
				return holdfast.LineErrorf(holdfast.CodeInvalid, i, "unit %q is not on line %d", u, p.Line)
			}
			if slices.Contains(kept, u) {
				return holdfast.LineErrorf(holdfast.CodeInvalid, i, "unit %q is named twice", u)
			}
			kept = append(kept, u)
		}
		slices.Sort(kept)
		l.kept = kept
	}
	return nil
}

// dropped lists the units the lines give back, in id order.
func dropped(lines []heldLine) (out []string) {
	for _, l := range lines {
		for _, u := range l.units {
			if !slices.Contains(l.kept, u) {
				out = append(out, u)
			}
		}
	}
	slices.Sort(out)
	return out
}

// perPool sums a quantity of the pool lines per pool, in pool id order.
func perPool(lines []heldLine, f func(heldLine) int64) (pools []string, sums map[string]int64) {
	sums = map[string]int64{}
	for _, l := range lines {
		if l.kind != "pool" {
			continue
		}
		if _, ok := sums[l.pool]; !ok {
			pools = append(pools, l.pool)
		}
		sums[l.pool] += f(l)
	}
	slices.Sort(pools)
	return pools, sums
}

// keepHeld confirms a hold that still has its capacity (held, on time or
// late but not swept): what is kept moves from held to confirmed, the
// rest goes back.
func (s *Store) keepHeld(ctx context.Context, tx Querier, id, holder string, lines []heldLine) error {
	pools, held := perPool(lines, func(l heldLine) int64 { return l.quantity })
	_, kept := perPool(lines, func(l heldLine) int64 { return l.keep })
	for _, p := range pools {
		if _, err := tx.Exec(ctx, `UPDATE pools SET held = held - $2, confirmed = confirmed + $3, version = version + 1 WHERE id = $1`, p, held[p], kept[p]); err != nil {
			return err
		}
		if back := held[p] - kept[p]; back > 0 {
			s.soldOut.forget(p)
			if _, err := tx.Exec(ctx, `UPDATE pool_holders SET taken = taken - $3 WHERE pool_id = $1 AND holder = $2`, p, holder, back); err != nil {
				return err
			}
		}
	}
	if err := s.dropUnits(ctx, tx, id, dropped(lines)); err != nil {
		return err
	}
	return s.giveQuota(ctx, tx, []string{id})
}

// dropUnits gives back units a partial confirm does not keep.
func (s *Store) dropUnits(ctx context.Context, tx Querier, id string, units []string) error {
	if len(units) == 0 {
		return nil
	}
	list := s.d.ListArg(units)
	if err := lockUnitsInOrder(ctx, tx, s.d, `id IN (`+s.d.ListSelect(1)+`)`, list); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM unit_claims WHERE hold_id = $1 AND unit_id IN (`+s.d.ListSelect(2)+`)`, id, list); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `UPDATE units SET `+unitsBack+` WHERE hold_id = $1 AND id IN (`+s.d.ListSelect(2)+`)`, id, list)
	return err
}

// takeAgain confirms a hold that expired and gave its capacity back: what
// it keeps is claimed again, or the confirm is refused and nothing
// changes. The one decision decides, on the rows locked in the global
// order (pools, holders' totals, units) — pool capacity into confirmed,
// the holder's limit, the very same units, in whichever sale each is now
// (a channel's seats stay the channel's: the hold took them from it) —
// and its refusal is the confirm's; then the strategy claims it, as any
// claim is, with the database's conditional updates the last word.
func (s *Store) takeAgain(ctx context.Context, tx Querier, prep Prepared, id, holder string, lines []heldLine) (*shortfall, error) {
	pools, kept := perPool(lines, func(l heldLine) int64 { return l.keep })
	var units []string
	for _, l := range lines {
		units = append(units, l.kept...)
	}
	slices.Sort(units)
	r := holdfast.HoldRequest{Holder: holder} // holder is scoped already
	for _, p := range pools {
		r.Lines = append(r.Lines, holdfast.Line{Pool: p, Quantity: kept[p]})
	}
	if len(units) > 0 {
		r.Lines = append(r.Lines, holdfast.Line{Units: units, Channel: anyChannel})
	}
	if len(r.Lines) > 0 {
		req := &claimReq{ctx: ctx, r: r, confirm: true}
		st, now, err := s.lockBatch(ctx, tx, []*claimReq{req}, make([]claimResult, 1), &s.changeStmts)
		if err != nil {
			return nil, err
		}
		if _, f := st.grant(req, now); f != nil {
			// Taken since, maybe by holds that lapsed too: the caller
			// reclaims those and asks again, once.
			var short *shortfall
			switch {
			case f.code == holdfast.CodeSoldOut:
				short = &shortfall{pools: []string{f.pool}}
			case f.code == holdfast.CodeUnavailable:
				short = &shortfall{units: units}
			}
			return short, notReclaimable("hold %q expired, and %s", id, f.detail)
		}
	}
	for _, p := range pools {
		limit, ok, err := s.strategy.ClaimPool(ctx, tx, prep, p, kept[p], true)
		if err != nil {
			return nil, err
		}
		if !ok {
			return &shortfall{pools: []string{p}}, notReclaimable("hold %q expired, and pool %q no longer has %d free", id, p, kept[p])
		}
		if limit > 0 {
			ok, err := s.takeHolderLimit(ctx, tx, p, holder, kept[p], limit)
			if err != nil {
				return nil, err
			}
			if !ok {
				return nil, notReclaimable("hold %q expired, and its holder now has pool %q's per-holder limit", id, p)
			}
		}
	}
	if err := s.dropUnits(ctx, tx, id, dropped(lines)); err != nil {
		return nil, err
	}
	if len(units) > 0 {
		taken, err := s.strategy.ClaimUnits(ctx, tx, prep, id, anyChannel, units)
		if err != nil {
			return nil, err
		}
		if len(taken) != len(units) {
			return &shortfall{units: units}, notReclaimable("hold %q expired, and %d of its %d units were taken since", id, len(units)-len(taken), len(units))
		}
		if _, err := tx.Exec(ctx, `UPDATE unit_claims SET active = TRUE WHERE hold_id = $1`, id); err != nil {
			if s.d.Classify(err) == KindUnique {
				return nil, fmt.Errorf("a unit of hold %s has another active claim: %w", id, err)
			}
			return nil, err
		}
	}
	return nil, nil
}
