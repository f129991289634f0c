package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/holdfast/holdfast"
	"github.com/holdfast/holdfast/postgres"
)

// Health sees a prepared part that waits for its decision (what the
// alert on a stuck shard change watches) and reads the replication state.
func TestHealthSeesAPreparedPart(t *testing.T) {
	ctx := context.Background()
	url := pg.Migrated(t)
	s := open(t, url, postgres.Options{Strategy: holdfast.Atomic}).(*postgres.Store)
	h, err := s.Health(ctx)
	if err != nil || h.Standbys != 0 || h.ReplicationLag != 0 {
		t.Fatalf("Health on a server with no standby: %+v, %v", h, err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	gid := holdfast.NewID("hf2pc_healthtest.", time.Now()) // holdfast's prefix: a part of ours
	for _, q := range []string{"BEGIN", "PREPARE TRANSACTION '" + gid + "'"} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() { _, _ = s.ConnPool().Exec(ctx, "ROLLBACK PREPARED '"+gid+"'") })
	if h, err = s.Health(ctx); err != nil || h.OldestPrepared <= 0 {
		t.Fatalf("Health with a prepared part: %+v, %v; want its age", h, err)
	}
}
