package shard

import (
	"context"
	"slices"
	"strconv"
	"strings"

	"github.com/holdfast/holdfast"
)

// placed is where a pool, group, unit or room is.
type placed struct {
	shard     int
	partition string
}

type placeKey struct{ kind, id string }

// ---- hold ids name their shards ----

// HoldPrefix begins the ids of the holds made on shard i alone: the
// catalog's are plain ("h_": a single database grown into shards keeps
// its holds where they are). A node opened as shard i makes its holds'
// ids with it.
func HoldPrefix(i int) string {
	if i == 0 {
		return "h_"
	}
	return "h" + strconv.Itoa(i) + "_"
}

// crossPrefix begins the id of a hold across shards, naming them.
func crossPrefix(shards []int) string {
	var b strings.Builder
	b.WriteString("hx")
	for i, k := range shards {
		if i > 0 {
			b.WriteByte('-')
		}
		b.WriteString(strconv.Itoa(k))
	}
	b.WriteByte('_')
	return b.String()
}

// holdShards is the shards a hold lives on: where a move put it, as far
// as this server knows, else the ones its id names; false for an id no
// shard made.
func (set *shardSet) holdShards(id string) ([]int, bool) {
	named, ok := set.shardsNamed(id)
	if !ok {
		return nil, false
	}
	set.mu.RLock()
	home, moved := set.homes[id]
	set.mu.RUnlock()
	if moved {
		return home, true
	}
	return named, true
}

// shardsNamed reads from a hold's id the shards it was made on.
func (set *shardSet) shardsNamed(id string) ([]int, bool) {
	if !strings.HasPrefix(id, "h") {
		return nil, false
	}
	head, _, ok := strings.Cut(id[1:], "_")
	if !ok {
		return nil, false
	}
	if head == "" {
		return []int{0}, true
	}
	cross := strings.HasPrefix(head, "x")
	var out []int
	for _, f := range strings.Split(strings.TrimPrefix(head, "x"), "-") {
		k, err := strconv.Atoi(f)
		if err != nil || k < 0 || k >= len(set.nodes) || (len(out) > 0 && k <= out[len(out)-1]) || (!cross && k == 0) {
			return nil, false
		}
		out = append(out, k)
	}
	if cross != (len(out) > 1) {
		return nil, false
	}
	return out, true
}

// ---- placement ----

// place records a new pool, group or room (kind, id) in partition (see
// Backend.Place) and remembers where it went.
func (set *shardSet) place(ctx context.Context, kind, id, partition string) (int, error) {
	shard, err := set.db.Place(ctx, kind, id, partition)
	if err != nil {
		return 0, err
	}
	set.mu.Lock()
	set.where[placeKey{kind, id}] = placed{shard, partition}
	set.mu.Unlock()
	return shard, nil
}

// placeUnits records units in their group's partition. ErrConflict if a
// unit is placed in another.
func (set *shardSet) placeUnits(ctx context.Context, group string, ids []string) error {
	return set.db.PlaceUnits(ctx, group, ids)
}

// locate finds where (kind, id) pairs are: from memory, else from the
// catalog. A pair placed nowhere is not in the answer.
func (set *shardSet) locate(ctx context.Context, keys []placeKey) (map[placeKey]placed, error) {
	out := make(map[placeKey]placed, len(keys))
	var missKinds, missIDs []string
	set.mu.RLock()
	for _, k := range keys {
		if p, ok := set.where[k]; ok {
			out[k] = p
		} else {
			missKinds, missIDs = append(missKinds, k.kind), append(missIDs, k.id)
		}
	}
	set.mu.RUnlock()
	if len(missIDs) == 0 {
		return out, nil
	}
	found, err := set.db.Locate(ctx, missKinds, missIDs)
	if err != nil {
		return nil, err
	}
	set.mu.Lock()
	defer set.mu.Unlock()
	for _, f := range found {
		k, p := placeKey{f.Kind, f.ID}, placed{f.Shard, f.Partition}
		out[k] = p
		set.where[k] = p
	}
	return out, nil
}

// partitionShown is a pool's or group's partition as read back: empty
// when it is its own id (the default).
func (set *shardSet) partitionShown(ctx context.Context, kind, id string) string {
	m, err := set.locate(ctx, []placeKey{{kind, id}})
	if p := m[placeKey{kind, id}]; err == nil && p.partition != id {
		return p.partition
	}
	return ""
}

// shardOf is locate for one pair; ErrNotFound when it is placed nowhere.
func (set *shardSet) shardOf(ctx context.Context, kind, id string) (int, error) {
	if err := holdfast.ValidateID(kind, id); err != nil {
		return 0, holdfast.Errorf(holdfast.CodeNotFound, "%s %q not found", kind, id)
	}
	k := placeKey{kind, id}
	m, err := set.locate(ctx, []placeKey{k})
	if err != nil {
		return 0, err
	}
	p, ok := m[k]
	if !ok {
		return 0, holdfast.Errorf(holdfast.CodeNotFound, "%s %q not found", kind, id)
	}
	return p.shard, nil
}

// ---- following the map as it changes ----

// forgetAll drops what this server remembers of the map.
func (set *shardSet) forgetAll() {
	set.mu.Lock()
	clear(set.where)
	clear(set.homes)
	set.mu.Unlock()
}

// watchMap forgets the map when the catalog's version of it changed (a
// partition moved): every server runs it every few seconds, so what it
// reads of a moved partition is stale for seconds at most. What it
// writes is never stale: the old shard no longer has the rows, and a
// change refused there is tried again on the new map (see refresh).
func (set *shardSet) watchMap(ctx context.Context) error {
	v, err := set.db.MapVersion(ctx)
	if err != nil {
		return err
	}
	set.mu.Lock()
	changed := v != set.version
	set.version = v
	set.mu.Unlock()
	if changed {
		set.forgetAll()
		return set.loadHomes(ctx)
	}
	return nil
}

// loadHomes reads where every moved hold lives. A hold a move split (an
// ended hold with lines in two partitions of one shard) is still found
// where its id says, with some of its lines: only this tells a server to
// read its other part too. (A hold moved whole is also found by the
// shard that no longer has it: see rehome.)
func (set *shardSet) loadHomes(ctx context.Context) error {
	homes, err := set.db.Homes(ctx)
	if err != nil {
		return err
	}
	set.mu.Lock()
	set.homes = homes
	set.mu.Unlock()
	return nil
}

// refresh reads where keys are from the catalog again, after a shard
// answered that one is not there, and reports whether any is elsewhere
// than used (where the refused change went: see locate) says.
func (set *shardSet) refresh(ctx context.Context, keys []placeKey, used map[placeKey]placed) bool {
	set.mu.Lock()
	for _, k := range keys {
		delete(set.where, k)
	}
	set.mu.Unlock()
	now, err := set.locate(ctx, keys)
	if err != nil {
		return false
	}
	for _, k := range keys {
		b, was := used[k]
		n, is := now[k]
		if was != is || b.shard != n.shard {
			return true
		}
	}
	return false
}

// rehome reads where a hold lives from the catalog again, after a shard
// answered that it is not there, and reports whether that is elsewhere
// than used, the shards the refused change went to.
func (set *shardSet) rehome(ctx context.Context, id string, used []int) bool {
	if _, ok := set.shardsNamed(id); !ok {
		return false
	}
	home, moved, err := set.db.Home(ctx, id)
	if err != nil {
		return false
	}
	set.mu.Lock()
	if moved {
		set.homes[id] = home
	} else {
		delete(set.homes, id)
	}
	set.mu.Unlock()
	after, _ := set.holdShards(id)
	return !slices.Equal(used, after)
}

// notFound reports a refusal for a row a shard does not have.
func notFound(err error) bool { return holdfast.ErrorCode(err) == holdfast.CodeNotFound }
