package shard

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/holdfast/holdfast"
)

// ---- idempotency: the key lives with the change it guards ----

// Keyed returns the shards with their changes guarded by k: a change on
// one shard records its answer there, in its own transaction, as on one
// database. A change across shards records nothing itself (the server
// stores its answer after the fact).
func (s *Set) Keyed(k holdfast.Idempotency) holdfast.Keyed {
	cat := s.set.nodes[0].Keyed(k)
	return &keyedShards{view: &view{set: s.set, key: &k, tried: -1}, KeyStore: cat, WebhookStore: cat, catalog: cat, shards: s}
}

type keyedShards struct {
	*view
	holdfast.KeyStore
	holdfast.WebhookStore
	catalog holdfast.Keyed
	shards  *Set
}

// FinishIdempotent records a refusal on the shard the change was tried
// on (the last shard of a hold across shards, whose part claims the key):
// a retry with the key claims it there, in its change's transaction, and
// so finds the refusal. A request refused before it reached a shard is
// recorded as Set.FinishIdempotent does.
func (k *keyedShards) FinishIdempotent(ctx context.Context, scope, key, fingerprint, token string, r holdfast.StoredResponse) error {
	k.mu.Lock()
	tried := k.tried
	k.mu.Unlock()
	if tried < 0 {
		return k.shards.FinishIdempotent(ctx, scope, key, fingerprint, token, r)
	}
	return k.set.nodes[tried].FinishIdempotent(ctx, scope, key, fingerprint, token, r)
}

func (k *keyedShards) Answer() (holdfast.StoredResponse, bool) {
	k.mu.Lock()
	used := k.used
	k.mu.Unlock()
	if used != nil {
		if r, ok := used.Answer(); ok {
			return r, true
		}
	}
	return k.catalog.Answer()
}

// keyShard finds the shard that has (scope, key), the catalog if none.
func (s *Set) keyShard(ctx context.Context, scope, key string) (int, error) {
	return s.set.db.KeyShard(ctx, scope, key)
}

func (s *Set) BeginIdempotent(ctx context.Context, scope, key, fingerprint string, staleAfter time.Duration) (string, *holdfast.StoredResponse, error) {
	sh, err := s.keyShard(ctx, scope, key)
	if err != nil {
		return "", nil, err
	}
	return s.set.nodes[sh].BeginIdempotent(ctx, scope, key, fingerprint, staleAfter)
}

func (s *Set) FinishIdempotent(ctx context.Context, scope, key, fingerprint, token string, r holdfast.StoredResponse) error {
	sh, err := s.keyShard(ctx, scope, key)
	if err != nil {
		return err
	}
	return s.set.nodes[sh].FinishIdempotent(ctx, scope, key, fingerprint, token, r)
}

func (s *Set) AbandonIdempotent(ctx context.Context, scope, key, token string) error {
	sh, err := s.keyShard(ctx, scope, key)
	if err != nil {
		return err
	}
	return s.set.nodes[sh].AbandonIdempotent(ctx, scope, key, token)
}

func (s *Set) PurgeIdempotency(ctx context.Context) (int, error) {
	return sumShards(s, func(st Node) (int, error) { return st.PurgeIdempotency(ctx) })
}

// ---- operations: every shard ----

func sumShards(s *Set, fn func(st Node) (int, error)) (int, error) {
	total := 0
	for i, st := range s.set.nodes {
		n, err := fn(st)
		total += n
		if err != nil {
			return total, fmt.Errorf("shard %d: %w", i, err)
		}
	}
	return total, nil
}

func (s *Set) ExpireDue(ctx context.Context, limit int) (int, error) {
	return sumShards(s, func(st Node) (int, error) { return st.ExpireDue(ctx, limit) })
}

func (s *Set) AdmitRooms(ctx context.Context) (int, error) {
	return sumShards(s, func(st Node) (int, error) { return st.AdmitRooms(ctx) })
}

func (s *Set) OfferWaitlists(ctx context.Context) (int, error) {
	return sumShards(s, func(st Node) (int, error) { return st.OfferWaitlists(ctx) })
}

func (s *Set) Ready(ctx context.Context) error {
	_, err := sumShards(s, func(st Node) (int, error) { return 0, st.Ready(ctx) })
	return err
}

func (s *Set) Purge(ctx context.Context, r holdfast.Retention) (holdfast.PurgeReport, error) {
	var out holdfast.PurgeReport
	_, err := sumShards(s, func(st Node) (int, error) {
		p, err := st.Purge(ctx, r)
		out.Events += p.Events
		out.Holds += p.Holds
		out.Deliveries += p.Deliveries
		return 0, err
	})
	if err != nil {
		return out, err
	}
	return out, s.set.db.PurgeHomes(ctx)
}

// Audit audits every shard (each recounts its own pools and units: a
// part of a hold across shards claims on its shard alone) and that no
// prepared part has been left undecided past a resolver's period.
func (s *Set) Audit(ctx context.Context) (holdfast.AuditReport, error) {
	var out holdfast.AuditReport
	for i, st := range s.set.nodes {
		r, err := st.Audit(ctx)
		if err != nil {
			return out, fmt.Errorf("shard %d: %w", i, err)
		}
		out.Pools += r.Pools
		out.Units += r.Units
		out.Oversold += r.Oversold
		out.DoubleBooked += r.DoubleBooked
		for _, d := range r.Differences {
			out.Differences = append(out.Differences, fmt.Sprintf("shard %d: %s", i, d))
		}
		out.At = r.At
		gids, err := s.set.db.PreparedParts(ctx, i, time.Minute)
		if err != nil {
			return out, fmt.Errorf("shard %d: %w", i, err)
		}
		for _, gid := range gids {
			out.Differences = append(out.Differences, fmt.Sprintf("shard %d: part %s of a change across shards is still prepared after a minute", i, gid))
		}
	}
	whole, err := s.auditCross(ctx)
	if err != nil {
		return out, err
	}
	out.Differences = slices.Clip(append(out.Differences, whole...))
	return out, nil
}

// auditCross checks that every hold across shards is whole: a row on
// each shard its id names, all in one state — except that a part may be
// expired while another is still held (each shard's sweeper expires its
// own part). Rows changed in the last minute are left alone: a change
// may be committed on one shard and not yet on another (the resolver
// ends it within seconds).
func (s *Set) auditCross(ctx context.Context) ([]string, error) {
	type part struct {
		status string
		recent bool
	}
	// Holds a move put elsewhere than their ids say (see MovePartition).
	homes, err := s.set.db.Homes(ctx)
	if err != nil {
		return nil, err
	}
	var moved []string
	for id := range homes {
		moved = append(moved, id)
	}
	parts := map[string]map[int]part{}
	for i := range s.set.nodes {
		states, err := s.set.db.HoldStates(ctx, i, moved)
		if err != nil {
			return nil, fmt.Errorf("shard %d: %w", i, err)
		}
		for _, st := range states {
			if parts[st.ID] == nil {
				parts[st.ID] = map[int]part{}
			}
			parts[st.ID][i] = part{st.Status, st.Recent}
		}
	}
	var bad []string
	for id, by := range parts {
		shards, ok := s.set.shardsNamed(id)
		if home, moved := homes[id]; moved {
			shards = home
		}
		if !ok {
			bad = append(bad, fmt.Sprintf("hold %s: an id no shard makes", id))
			continue
		}
		recent := false
		for sh, p := range by {
			recent = recent || p.recent
			if !slices.Contains(shards, sh) {
				bad = append(bad, fmt.Sprintf("hold %s has a row on shard %d, where it does not live", id, sh))
			}
		}
		if recent {
			continue
		}
		var first string
		for _, sh := range shards {
			p, ok := by[sh]
			switch {
			case !ok:
				bad = append(bad, fmt.Sprintf("hold %s across shards has no part on shard %d", id, sh))
			case first == "":
				first = p.status
			case p.status != first && !heldOrExpired(p.status, first):
				bad = append(bad, fmt.Sprintf("hold %s across shards is %s on one shard and %s on shard %d", id, first, p.status, sh))
			}
		}
	}
	slices.Sort(bad)
	return bad, nil
}

func heldOrExpired(a, b string) bool {
	ok := func(s string) bool { return s == string(holdfast.StatusHeld) || s == string(holdfast.StatusExpired) }
	return ok(a) && ok(b)
}

// ---- the feed: every shard's, interleaved ----

// Events reads every shard's outbox after its own cursor, and answers
// them in time order across shards, each shard's in its commit order. The
// cursor is every shard's, joined by "~". Seq is a shard's own.
func (s *Set) Events(ctx context.Context, after string, limit int) ([]holdfast.Event, string, error) {
	n := len(s.set.nodes)
	cursors := make([]string, n)
	switch {
	case after == "":
	case !strings.Contains(after, "~"):
		// A cursor from before the shards (one database, now the
		// catalog): it goes on there, and the others start.
		cursors[0] = after
	default:
		cursors = strings.Split(after, "~")
		if len(cursors) != n {
			return nil, "", holdfast.Errorf(holdfast.CodeInvalid, "after must be a cursor from a previous page")
		}
	}
	pages := make([][]holdfast.Event, n)
	for i, st := range s.set.nodes {
		es, _, err := st.Events(ctx, cursors[i], limit)
		if err != nil {
			return nil, "", err
		}
		pages[i] = es
	}
	// A merge of the shards' pages by time: each shard's events stay in
	// its commit order, and a shard's cursor moves past what was answered
	// of it, never more.
	var out []holdfast.Event
	for len(out) < limit {
		next := -1
		for i, p := range pages {
			if len(p) > 0 && (next < 0 || p[0].At.Before(pages[next][0].At)) {
				next = i
			}
		}
		if next < 0 {
			break
		}
		e := pages[next][0]
		pages[next] = pages[next][1:]
		cursors[next] = e.Cursor
		e.Cursor = strings.Join(cursors, "~")
		out = append(out, e)
	}
	return out, strings.Join(cursors, "~"), nil
}

// ---- what the HTTP server uses when a store offers it ----

// LastEventCursor is a cursor after every shard's newest event.
func (s *Set) LastEventCursor(ctx context.Context) (string, error) {
	cursors := make([]string, len(s.set.nodes))
	for i, st := range s.set.nodes {
		c, err := st.LastEventCursor(ctx)
		if err != nil {
			return "", err
		}
		cursors[i] = c
	}
	return strings.Join(cursors, "~"), nil
}

// UnitsPage is a page of a group's units, from the group's shard.
func (s *Set) UnitsPage(ctx context.Context, group string, status holdfast.UnitStatus, after string, limit int) ([]holdfast.Unit, string, error) {
	sh, err := s.set.shardOf(ctx, "group", group)
	if err != nil {
		return nil, "", err
	}
	return s.set.nodes[sh].UnitsPage(ctx, group, status, after, limit)
}

// UnitStatuses is every unit's status in a group, from its shard.
func (s *Set) UnitStatuses(ctx context.Context, group string) (string, error) {
	sh, err := s.set.shardOf(ctx, "group", group)
	if err != nil {
		return "", err
	}
	return s.set.nodes[sh].UnitStatuses(ctx, group)
}

// CreateWebhook is refused: a webhook sees one database's outbox, and a
// sharded deployment has one per shard (not built yet). Better refused
// than a webhook that never fires for most events.
func (s *Set) CreateWebhook(ctx context.Context, w holdfast.Webhook) (holdfast.Webhook, error) {
	return holdfast.Webhook{}, holdfast.Errorf(holdfast.CodeUnsupported, "webhooks are not delivered on a sharded deployment yet: read GET /v1/events, which follows every shard")
}

// CreateWebhook is refused as on Set.
func (k *keyedShards) CreateWebhook(ctx context.Context, w holdfast.Webhook) (holdfast.Webhook, error) {
	return (*Set)(nil).CreateWebhook(ctx, w)
}

// RevokeKey revokes the key in the catalog, then ends what it claims on
// every shard: its waitlist entries and places in rooms, and its
// unconfirmed holds, each released through the router (a hold across
// shards by two-phase commit, as any release).
func (s *Set) RevokeKey(ctx context.Context, id string) (holdfast.APIKey, error) {
	k, err := s.KeyStore.RevokeKey(ctx, id)
	if err != nil {
		return k, err
	}
	return k, s.endKeyClaims(ctx, id)
}

func (k *keyedShards) RevokeKey(ctx context.Context, id string) (holdfast.APIKey, error) {
	key, err := k.KeyStore.RevokeKey(ctx, id)
	if err != nil {
		return key, err
	}
	return key, k.shards.endKeyClaims(ctx, id)
}

func (s *Set) endKeyClaims(ctx context.Context, id string) error {
	_, err := sumShards(s, func(st Node) (int, error) { return 0, st.EndKeyClaims(ctx, id, s.view.Release) })
	return err
}
