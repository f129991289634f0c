package sqlstore

import (
	"cmp"
	"encoding/json"
	"maps"
	"slices"
	"strings"
)

// changeWrites are the writes of a batch of changes once decided
// (changesTx, changes.go): one update of holds per kind, the effects on
// pools, holders' totals, units and keys' quotas summed per row, and the
// events in one insert — a number of statements that does not grow with
// the batch. checks[k] is the row count statement k must report (-1:
// any); races are the statements whose short count means another
// request wrote the same payment ref meanwhile (errKeyRace); back are the
// pools that got capacity back. It fills in each decided request's answer
// (results[i].h).
func (s *Store) changeWrites(batch []*changeReq, results []changeResult, holds map[string]*lockedHold, byKind map[changeKind][]int, now int64) (stmts []Stmt, checks []int64, races []int, back []string, err error) {
	// The holds, one update per kind; each must change exactly its rows.
	for _, kind := range []changeKind{kindConfirm, kindRelease, kindExtend, kindCancel, kindComplete} {
		reqs := byKind[kind]
		if len(reqs) == 0 {
			continue
		}
		c := batch[reqs[0]].c
		rows := newRows("id, status, was, at, payment_ref, expires_at, late", "text", "text", "text", "bigint", "text", "bigint", "boolean")
		for _, i := range reqs {
			req := batch[i]
			rows.add(req.id, string(c.to), string(c.from), now, req.c.ref, now+req.c.ttl.Milliseconds(), holds[req.id].late)
		}
		set := `status = v.status, updated_at = v.at`
		switch kind {
		case kindConfirm:
			set += `, payment_ref = v.payment_ref, late = v.late`
		case kindExtend:
			set += `, expires_at = v.expires_at`
		}
		stmts = append(stmts, rows.stmt(s.d, `UPDATE holds SET `+set+` FROM v WHERE holds.id = v.id AND holds.status = v.was`))
		checks = append(checks, int64(len(reqs)))
	}

	// The effects on pools and holders' totals, summed per row and in id
	// order; then the units freed, locked in id order; then the keys'
	// quotas, in key order.
	type hk struct{ pool, holder string }
	type poolDelta struct{ held, confirmed int64 }
	deltas := map[string]*poolDelta{}
	delta := func(pool string) *poolDelta {
		if deltas[pool] == nil {
			deltas[pool] = &poolDelta{}
		}
		return deltas[pool]
	}
	taken := map[hk]int64{}
	quota := map[string]int64{}
	var freed, completed, parted, dropped []string
	var lineSets binds // a partial confirm's lines: what each keeps
	var quantities, anyCounts string
	for kind, reqs := range byKind {
		for _, i := range reqs {
			lh := holds[batch[i].id]
			if kind == kindConfirm || kind == kindRelease {
				if lh.quota != "" && lh.units > 0 {
					quota[lh.quota] += lh.units
				}
			}
			switch kind {
			case kindRelease, kindCancel:
				freed = append(freed, lh.h.ID)
			case kindComplete:
				completed = append(completed, lh.h.ID)
			}
			if len(batch[i].c.part) > 0 {
				parted = append(parted, lh.h.ID)
			}
			for k, l := range lh.lines {
				for _, u := range l.units {
					if !slices.Contains(l.kept, u) {
						dropped = append(dropped, lh.h.ID+" "+u)
					}
				}
				pl := &lh.h.Lines[k] // the answer: what the hold has now
				switch {
				case l.kind == "pool" && l.keep != l.quantity:
					quantities += ` WHEN hold_id = ` + lineSets.add(lh.h.ID) + ` AND line_no = ` + lineSets.add(l.no) + ` THEN ` + lineSets.add(l.keep)
					pl.Quantity = l.keep
				case l.kind == "any" && len(l.kept) != len(l.units):
					anyCounts += ` WHEN hold_id = ` + lineSets.add(lh.h.ID) + ` AND line_no = ` + lineSets.add(l.no) + ` THEN ` + lineSets.add(int64(len(l.kept)))
					pl.Any, pl.Units = int64(len(l.kept)), l.kept
				case len(l.kept) != len(l.units):
					pl.Units = l.kept
				}
				if l.pool == "" { // the pool's row: a channel's is its allocation's
					continue
				}
				scope := hk{l.pool, holderScope(lh.h.Owner, lh.h.Holder)}
				switch kind {
				case kindConfirm: // what a partial confirm does not keep goes back
					delta(l.pool).held -= l.quantity
					delta(l.pool).confirmed += l.keep
					if back := l.quantity - l.keep; back > 0 {
						taken[scope] += back
					}
				case kindRelease:
					delta(l.pool).held -= l.quantity
					taken[scope] += l.quantity
				case kindCancel:
					delta(l.pool).confirmed -= l.quantity
					taken[scope] += l.quantity
				}
			}
		}
	}
	for _, p := range slices.Sorted(maps.Keys(deltas)) {
		d := deltas[p]
		if d.held+d.confirmed < 0 {
			back = append(back, p)
		}
		stmts = append(stmts, Stmt{`UPDATE pools SET held = held + $2, confirmed = confirmed + $3, version = version + 1 WHERE id = $1`, []any{p, d.held, d.confirmed}})
		checks = append(checks, 1)
	}
	holders := make([]hk, 0, len(taken))
	for k := range taken {
		holders = append(holders, k)
	}
	slices.SortFunc(holders, func(a, b hk) int { return cmp.Or(strings.Compare(a.pool, b.pool), strings.Compare(a.holder, b.holder)) })
	for _, k := range holders {
		stmts = append(stmts, Stmt{`UPDATE pool_holders SET taken = taken - $3 WHERE pool_id = $1 AND holder = $2`, []any{k.pool, k.holder, taken[k]}})
		checks = append(checks, -1) // an unlimited pool keeps no totals
	}
	// A partial confirm's dropped units are named "hold unit" (neither
	// id has a space): the unit and the claim of that very hold.
	var droppedUnits []string
	for _, d := range dropped {
		_, u, _ := strings.Cut(d, " ")
		droppedUnits = append(droppedUnits, u)
	}
	if all := append(slices.Clone(freed), completed...); (len(all) > 0 || len(dropped) > 0) && s.d.RowLocks {
		stmts = append(stmts, Stmt{`SELECT id FROM units WHERE hold_id IN (` + s.d.ListSelect(1) + `) OR id IN (` + s.d.ListSelect(2) + `) ORDER BY id` + s.d.ForUpdate,
			[]any{s.d.ListArg(all), s.d.ListArg(droppedUnits)}})
		checks = append(checks, -1)
	}
	if len(dropped) > 0 {
		stmts = append(stmts,
			Stmt{`DELETE FROM unit_claims WHERE hold_id IN (` + s.d.ListSelect(1) + `) AND hold_id || ' ' || unit_id IN (` + s.d.ListSelect(2) + `)`,
				[]any{s.d.ListArg(parted), s.d.ListArg(dropped)}},
			Stmt{`UPDATE units SET ` + unitsBack + ` WHERE hold_id IN (` + s.d.ListSelect(1) + `) AND id IN (` + s.d.ListSelect(2) + `)`,
				[]any{s.d.ListArg(parted), s.d.ListArg(droppedUnits)}})
		checks = append(checks, int64(len(dropped)), int64(len(dropped)))
	}
	if quantities != "" || anyCounts != "" {
		set := func(col, cases string) string {
			if cases == "" {
				return col + ` = ` + col
			}
			return col + ` = CASE` + cases + ` ELSE ` + col + ` END`
		}
		stmts = append(stmts, Stmt{`UPDATE hold_lines SET ` + set("quantity", quantities) + `, ` + set("any_count", anyCounts) +
			` WHERE hold_id IN (` + s.d.ListSelect(len(lineSets.args)+1) + `)`, append(lineSets.args, s.d.ListArg(parted))})
		checks = append(checks, -1)
	}
	if len(freed) > 0 {
		list := []any{s.d.ListArg(freed)}
		stmts = append(stmts,
			Stmt{`UPDATE unit_claims SET active = FALSE WHERE hold_id IN (` + s.d.ListSelect(1) + `) AND active`, list},
			Stmt{`UPDATE units SET ` + unitsBack + ` WHERE hold_id IN (` + s.d.ListSelect(1) + `)`, list})
		checks = append(checks, -1, -1)
	}
	if len(completed) > 0 {
		// Pool quantity stays consumed (the ticket was used); only units
		// of reusable groups (riders) go back.
		list := []any{s.d.ListArg(completed)}
		stmts = append(stmts,
			Stmt{`UPDATE unit_claims SET active = FALSE WHERE hold_id IN (` + s.d.ListSelect(1) + `) AND active
				AND unit_id IN (SELECT u.id FROM units u JOIN groups g ON g.id = u.group_id WHERE u.hold_id IN (` + s.d.ListSelect(1) + `) AND g.reusable)`, list},
			Stmt{`UPDATE units SET ` + unitsBack + ` WHERE hold_id IN (` + s.d.ListSelect(1) + `)
				AND group_id IN (SELECT id FROM groups WHERE reusable)`, list})
		checks = append(checks, -1, -1)
	}
	keys := make([]string, 0, len(quota))
	for k := range quota {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		stmts = append(stmts, Stmt{`UPDATE api_keys SET held_units = held_units - $2 WHERE id = $1`, []any{k, quota[k]}})
		checks = append(checks, -1)
	}

	// The payments confirms record, captured, in one insert: a ref
	// recorded meanwhile leaves its row out, and the row count tells.
	pays := payRows()
	for _, i := range byKind[kindConfirm] {
		if p := batch[i].c.pay; p != nil {
			pays.add(p.Ref, batch[i].id, p.Amount, p.Currency)
		}
	}
	if n := pays.len(); n > 0 {
		stmts = append(stmts, captureInsert(s.d, &pays))
		checks = append(checks, int64(n))
		races = append(races, len(stmts)-1)
	}

	// The holds as they are now, their events in one insert.
	events := eventRows()
	for i, req := range batch {
		if results[i].err != nil || results[i].fallback {
			continue
		}
		lh := holds[req.id]
		h := lh.h
		h.Status, h.UpdatedAt = req.c.to, msTime(now)
		switch req.c.kind {
		case kindConfirm:
			h.PaymentRef, h.Late = req.c.ref, lh.late
		case kindExtend:
			h.ExpiresAt = msTime(now + req.c.ttl.Milliseconds())
		}
		results[i].h = h
		b, err := json.Marshal(h)
		if err != nil {
			return nil, nil, nil, nil, err
		}
		events.add(string(req.c.event), now, h.ID, string(b))
	}
	stmts = append(stmts, insertEvents(s.d, &events))
	checks = append(checks, -1)
	return stmts, checks, races, back, nil
}
