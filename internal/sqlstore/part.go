package sqlstore

import "context"

// Part is one database's share of a change made on several databases at
// once (a hold whose lines live on different shards): the change runs in
// one transaction of its own, which the backend prepares as GID (two-phase
// commit) instead of committing; the coordinator commits or rolls back
// every part together.
type Part struct {
	// GID is the prepared transaction's id.
	GID string
	// HoldID is the id every part of a new hold shares.
	HoldID string
	// LineNos numbers a new hold's lines as in the whole hold (the part's
	// lines are some of them, in order), so that the parts read back
	// together in the order the hold was asked.
	LineNos []int
}

type partKey struct{}

// AsPart marks ctx's change as part p of a change across databases: it
// bypasses the batches and its one transaction is prepared, not committed.
func AsPart(ctx context.Context, p Part) context.Context {
	return context.WithValue(ctx, partKey{}, &p)
}

func partOf(ctx context.Context) *Part {
	p, _ := ctx.Value(partKey{}).(*Part)
	return p
}

type prepareKey struct{}

// preparing marks the context of the one transaction that makes a part's
// change. The change's other transactions (reclaiming expired holds
// before a claim looks again) commit as usual: they only tidy.
func preparing(ctx context.Context) context.Context {
	if p := partOf(ctx); p != nil {
		return context.WithValue(ctx, prepareKey{}, p.GID)
	}
	return ctx
}

// PreparingAs is the id a backend's Transact prepares its transaction as,
// instead of committing it; "" to commit.
func PreparingAs(ctx context.Context) string {
	gid, _ := ctx.Value(prepareKey{}).(string)
	return gid
}
