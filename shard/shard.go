// Package shard is holdfast on several databases behind one API: a Set
// routes every request to the shard of the partition (an event, a venue,
// a tenant: see holdfast.Pool.Partition) it names, places new partitions,
// follows them when they move, makes a hold across shards atomically by
// two-phase commit, and merges what every shard answers (the feed, the
// audit, listings).
//
// A Set stands on two contracts: Node, one shard's store, which is most of
// what a shard must do; and Backend, what the databases do for sharding —
// the catalog's map of partitions, preparing and committing the parts of
// a change across shards, and copying a partition's rows when it moves.
// postgres.OpenShards opens a Set on PostgreSQL primaries.
//
// A hold whose lines all live on one shard (a checkout for one event) runs
// on that shard alone, batched as on one database. A hold spanning shards
// (a festival pass) is made as a part per shard, prepared in shard order,
// decided in the catalog, then committed. Its later changes (confirm,
// release…) go through two-phase commit too, so a hold is never half
// confirmed.
package shard

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/internal/loop"
)

// Node is one shard's store: every routed request runs on one. The
// postgres store is one.
type Node interface {
	holdfast.Store
	holdfast.GroupLayouts
	holdfast.UnitPages
	holdfast.EventTail
	holdfast.Configured
	// Keyed returns the store with its changes guarded by k.
	Keyed(k holdfast.Idempotency) holdfast.Keyed
	// EndKeyClaims ends what a revoked key claims on this shard: its
	// waitlist entries and places in rooms, and its unconfirmed holds,
	// each released through release.
	EndKeyClaims(ctx context.Context, id string, release func(context.Context, string) (holdfast.Hold, error)) error
}

// Set is holdfast on several shards behind one API: a holdfast.Store.
type Set struct {
	*view
	holdfast.KeyStore
	holdfast.WebhookStore
	set      *shardSet
	resolver *loop.Loop // nil when ResolveEvery < 0
}

var _ holdfast.Store = (*Set)(nil)

// Options configure a Set (zero values: defaults).
type Options struct {
	// ResolveEvery is how often the Set ends the prepared parts of
	// changes across shards left older than ResolveAfter by a server that
	// died (default 2 s and 5 s; ResolveEvery < 0: never, for tests that
	// resolve themselves).
	ResolveEvery, ResolveAfter time.Duration
	Logger                     *slog.Logger
}

// shardSet is what every view of a Set shares.
type shardSet struct {
	nodes []Node
	db    Backend

	mu    sync.RWMutex
	where map[placeKey]placed // pools, groups, units and rooms
	// homes are the shards of holds that no longer live where their ids
	// say (a partition moved: see MovePartition), as far as known.
	homes map[string][]int
	// version is the map's version these were read at: when the
	// catalog's changes, they are forgotten (see watchMap).
	version int64
}

// Open returns the Set of nodes (the first is the catalog, which keeps
// API keys and webhooks, and may hold partitions too) over db. The Set
// owns both: Close closes them.
func Open(ctx context.Context, nodes []Node, db Backend, opts Options) (*Set, error) {
	if len(nodes) == 0 {
		return nil, errors.New("shard: no shards")
	}
	set := &shardSet{nodes: nodes, db: db, where: map[placeKey]placed{}, homes: map[string][]int{}, version: -1}
	if err := set.watchMap(ctx); err != nil {
		return nil, err
	}
	cat := nodes[0]
	s := &Set{view: &view{set: set}, KeyStore: cat, WebhookStore: cat, set: set}
	if opts.ResolveEvery >= 0 {
		s.resolver = s.resolveEvery(cmp.Or(opts.ResolveEvery, 2*time.Second), cmp.Or(opts.ResolveAfter, 5*time.Second), cmp.Or(opts.Logger, slog.Default()))
		// The resolver is the store's own: parts a dead coordinator left
		// must end whether or not the program runs the background
		// services (package service), so it lives from Open to Close.
		_ = s.resolver.Start(ctx)
	}
	return s, nil
}

// resolveEvery is a loop running ResolvePrepared every interval: every
// server runs one, so parts left by a coordinator that died end within
// seconds.
func (s *Set) resolveEvery(interval, after time.Duration, log *slog.Logger) *loop.Loop {
	return loop.Every(interval, func(ctx context.Context) {
		if err := s.set.watchMap(ctx); err != nil && ctx.Err() == nil {
			log.Warn("reading the shard map's version", "err", err)
		}
		c, r, err := s.ResolvePrepared(ctx, after)
		if err != nil && ctx.Err() == nil {
			log.Warn("resolving prepared parts of holds across shards", "err", err)
		}
		if c+r > 0 {
			log.Info("resolved prepared parts of holds across shards", "committed", c, "rolled_back", r)
		}
	})
}

// Capabilities: the optional contracts a Set offers. Stats are each
// shard's (Shard(i)), not the set's; the webhook queue is the catalog's
// alone and is not routed.
func (s *Set) Capabilities() []holdfast.Capability {
	return []holdfast.Capability{holdfast.CapLayouts, holdfast.CapUnitPages, holdfast.CapEventTail, holdfast.CapConfig}
}

var (
	_ holdfast.Capable      = (*Set)(nil)
	_ holdfast.GroupLayouts = (*Set)(nil)
	_ holdfast.UnitPages    = (*Set)(nil)
	_ holdfast.EventTail    = (*Set)(nil)
	_ holdfast.Configured   = (*Set)(nil)
)

// Close stops the resolver and closes every shard and the backend.
func (s *Set) Close() error {
	var errs []error
	if s.resolver != nil {
		errs = append(errs, s.resolver.Stop(context.Background()))
	}
	for _, n := range s.set.nodes {
		errs = append(errs, n.Close())
	}
	s.set.db.Close()
	return errors.Join(errs...)
}

// Shard returns shard i's own store, for what concerns one database: its
// metrics, its audit.
func (s *Set) Shard(i int) Node { return s.set.nodes[i] }

// Len is how many shards there are.
func (s *Set) Len() int { return len(s.set.nodes) }

// Config is every shard's hold lifetime bounds.
func (s *Set) Config() holdfast.Config { return s.set.nodes[0].Config() }

// ResolvePrepared ends the parts of changes across shards prepared more
// than olderThan ago, as the catalog decided them.
func (s *Set) ResolvePrepared(ctx context.Context, olderThan time.Duration) (committed, rolledBack int, err error) {
	return s.set.db.Resolve(ctx, olderThan)
}

// MovePartition moves a partition — its pools, groups, units, holds,
// holders' counts and waitlists — to shard to, online (see Backend.Move):
// a change that waited on the move finds its rows gone from the old
// shard, and is tried again where the map says the partition is now.
// Holds keep their ids (which name the shards they were made on); where
// they live since is recorded in the catalog.
func (s *Set) MovePartition(ctx context.Context, partition string, to int) (MoveReport, error) {
	rep := MoveReport{Partition: partition, To: to}
	if err := holdfast.ValidateID("partition", partition); err != nil {
		return rep, err
	}
	if to < 0 || to >= len(s.set.nodes) {
		return rep, holdfast.Errorf(holdfast.CodeInvalid, "no shard %d: the shards are 0 to %d", to, len(s.set.nodes)-1)
	}
	rep, err := s.set.db.Move(ctx, partition, to, s.set.shardsNamed)
	if err != nil || rep.From == to {
		return rep, err
	}
	s.set.forgetAll()
	return rep, s.set.loadHomes(ctx)
}

// Partitions lists the shard map: every partition, its shard and what is
// placed in it.
func (s *Set) Partitions(ctx context.Context) ([]Partition, error) {
	return s.set.db.Partitions(ctx)
}
