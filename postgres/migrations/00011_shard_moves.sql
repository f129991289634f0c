-- +goose Up
-- Moving a partition to another shard (Shards.MovePartition).
--
-- version counts the moves of each partition: every server watches the
-- sum and drops what it remembers of the map when it changes.
ALTER TABLE shard_partitions ADD COLUMN version bigint NOT NULL DEFAULT 0;
-- A hold's id names the shards it was made on; a hold with lines in a
-- partition that moved lives elsewhere since, recorded here.
CREATE TABLE shard_hold_homes (
    hold_id text      PRIMARY KEY,
    shards  integer[] NOT NULL
);

-- +goose Down
DROP TABLE shard_hold_homes;
ALTER TABLE shard_partitions DROP COLUMN version;
