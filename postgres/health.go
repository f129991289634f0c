package postgres

import (
	"context"
	"time"
)

// Health is what an operator's alerts watch on one PostgreSQL server,
// beyond what the engine counts itself.
type Health struct {
	// Standbys is how many standbys stream from this server, and
	// ReplicationLag the largest replay lag among them (0 with none, or
	// when the role may not read it: grant it pg_monitor).
	Standbys       int
	ReplicationLag time.Duration
	// OldestPrepared is the age of holdfast's oldest prepared transaction
	// here, a shard's part of a change waiting for its decision (0 with
	// none). Parts are resolved within seconds; an old one holds its rows'
	// locks and is what an alert should wake someone for.
	OldestPrepared time.Duration
}

// Health reads the replication and prepared-transaction state.
func (s *Store) Health(ctx context.Context) (Health, error) {
	var h Health
	var lag, prepared float64
	err := s.pool.QueryRow(ctx, `SELECT
		(SELECT COUNT(*) FROM pg_stat_replication),
		COALESCE((SELECT EXTRACT(EPOCH FROM MAX(replay_lag)) FROM pg_stat_replication), 0)::float8,
		COALESCE((SELECT EXTRACT(EPOCH FROM now() - MIN(prepared)) FROM pg_prepared_xacts
			WHERE database = current_database() AND starts_with(gid, $1)), 0)::float8`, gidPrefix).Scan(&h.Standbys, &lag, &prepared)
	h.ReplicationLag = time.Duration(lag * float64(time.Second))
	h.OldestPrepared = time.Duration(prepared * float64(time.Second))
	return h, err
}
