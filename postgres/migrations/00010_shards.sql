-- +goose Up
-- Shards (PostgreSQL only). Every database of a sharded deployment has
-- these tables; the first one's (the catalog's) are read.
--
-- shard_members lists the shards in order, each by the identity written
-- into its own database when it first joined (shard_self): a server
-- started with its --shard URLs in another order, or one missing, is
-- refused before it routes anything.
CREATE TABLE shard_self (
    only_row boolean PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    identity text    NOT NULL
);
CREATE TABLE shard_members (
    shard    integer PRIMARY KEY,
    identity text    NOT NULL UNIQUE
);
-- Which shard each partition lives on, chosen when it is first used.
CREATE TABLE shard_partitions (
    partition  text    PRIMARY KEY,
    shard      integer NOT NULL REFERENCES shard_members (shard),
    created_at bigint  NOT NULL
);
CREATE INDEX shard_partitions_shard ON shard_partitions (shard);
-- Which partition each pool, group, unit and room belongs to: a hold
-- names pools, groups and units, and is routed by them.
CREATE TABLE shard_placements (
    kind      text NOT NULL CHECK (kind IN ('pool', 'group', 'unit', 'room')),
    id        text NOT NULL,
    partition text NOT NULL REFERENCES shard_partitions (partition),
    PRIMARY KEY (kind, id)
);

-- +goose Down
DROP TABLE shard_placements;
DROP TABLE shard_partitions;
DROP TABLE shard_members;
DROP TABLE shard_self;
