package shard

import (
	"context"
	"time"
)

// Backend is what the databases do for a Set: the catalog's map of
// partitions to shards, the rows only they can read (which lines of a
// hold live where, which shard has an idempotency key), two-phase commit
// of a change across shards, and moving a partition's rows. Shards are
// numbered as the Set's nodes.
type Backend interface {
	// Place records a new pool, group or room (kind, id) in partition,
	// putting the partition on a shard if it is new (the one with the
	// fewest partitions), and returns the shard. ErrConflict if the id
	// is placed in another partition. A move of the partition in
	// progress is waited for.
	Place(ctx context.Context, kind, id, partition string) (int, error)
	// PlaceUnits records units in their group's partition. ErrConflict
	// if a unit is placed in another.
	PlaceUnits(ctx context.Context, group string, ids []string) error
	// Locate reads from the catalog where each (kinds[i], ids[i]) is; a
	// pair placed nowhere is left out.
	Locate(ctx context.Context, kinds, ids []string) ([]Placement, error)
	// MapVersion changes whenever a partition moves.
	MapVersion(ctx context.Context) (int64, error)
	// Homes reads where every moved hold lives, by id; Home one hold's
	// (false if it never moved).
	Homes(ctx context.Context) (map[string][]int, error)
	Home(ctx context.Context, holdID string) ([]int, bool, error)
	// PurgeHomes forgets where moved holds live once no shard has them.
	PurgeHomes(ctx context.Context) error
	// Partitions lists the map.
	Partitions(ctx context.Context) ([]Partition, error)

	// KeyShard is the shard that has the idempotency key (scope, key),
	// the catalog (0) if none.
	KeyShard(ctx context.Context, scope, key string) (int, error)
	// LineNos reads which of a hold's lines (numbers in the whole hold)
	// live on a shard.
	LineNos(ctx context.Context, shard int, holdID string) ([]int, error)
	// HoldStates reads, on a shard, the state of every hold across
	// shards and of the holds named (for the audit).
	HoldStates(ctx context.Context, shard int, also []string) ([]HoldState, error)
	// PreparedParts lists a shard's parts of changes across shards
	// prepared more than olderThan ago.
	PreparedParts(ctx context.Context, shard int, olderThan time.Duration) ([]string, error)

	// RunParts makes a change across shards: fn[shard] makes that
	// shard's part under ctx (see InPart), all are prepared, the
	// decision is recorded in the catalog, then every part commits — or
	// none does. A part's refusal comes back as itself; a change a
	// resolver rolled back before it was decided as holdfast.ErrBusy.
	RunParts(ctx context.Context, fn map[int]func(ctx context.Context, gid string) error) error
	// InPart marks ctx so that a node's next change is prepared as part
	// gid of a change across shards instead of committed; a hold's part
	// carries the whole hold's id and the numbers its lines have in it.
	InPart(ctx context.Context, gid, holdID string, lineNos []int) context.Context
	// Probe runs fn on a shard as a part that is never committed (rolled
	// back if fn succeeds): what the shard would answer.
	Probe(ctx context.Context, shard int, holdID string, lineNos []int, fn func(ctx context.Context) error) error
	// Resolve ends parts prepared more than olderThan ago as the catalog
	// decided them (rolled back when undecided).
	Resolve(ctx context.Context, olderThan time.Duration) (committed, rolledBack int, err error)

	// Move moves a partition's rows to shard to, online, and flips the
	// map; named reads from a hold's id the shards it was made on.
	Move(ctx context.Context, partition string, to int, named func(holdID string) ([]int, bool)) (MoveReport, error)

	// Close releases what the backend holds beyond the nodes.
	Close()
}

// Placement is where a pool, group, unit or room is.
type Placement struct {
	Kind, ID  string
	Shard     int
	Partition string
}

// HoldState is a hold's state on one shard; Recent when it changed in
// the last minute.
type HoldState struct {
	ID, Status string
	Recent     bool
}

// MoveReport is what a partition's move did.
type MoveReport struct {
	Partition string `json:"partition"`
	From      int    `json:"from"`
	To        int    `json:"to"`
	Pools     int    `json:"pools"`
	Groups    int    `json:"groups"`
	Units     int    `json:"units"`
	Holds     int    `json:"holds"`
	Keys      int    `json:"idempotency_keys"`
	// Fenced is how long the partition's writes waited: from the moment
	// its rows were locked on the old shard to the commit of the move.
	Fenced time.Duration `json:"fenced_ns"`
	// Attempts counts the fences tried (a fence that meets a deadlock
	// with a change in flight, or waits too long for a lock, is tried
	// again).
	Attempts int `json:"attempts"`
}

// Partition is a partition in the shard map.
type Partition struct {
	Partition string `json:"partition"`
	Shard     int    `json:"shard"`
	// Version counts its moves.
	Version int64 `json:"version"`
	Pools   int   `json:"pools"`
	Groups  int   `json:"groups"`
	Units   int   `json:"units"`
}
