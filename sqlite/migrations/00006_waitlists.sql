-- +goose Up
-- Waitlists. pools.waitlisted is what the waiting entries ask for: a new
-- claim needs capacity - held - confirmed - waitlisted >= its quantity,
-- so capacity that comes back is the list's before it is anyone else's.
-- An offer moves an entry's quantity from waitlisted into held in one
-- statement on the pool's row (the hold made for its holder), so the
-- reservation never lapses in between.
ALTER TABLE pools ADD COLUMN waitlisted bigint NOT NULL DEFAULT 0 CHECK (waitlisted >= 0);
ALTER TABLE pools ADD COLUMN offer_ttl_ms bigint NOT NULL DEFAULT 0 CHECK (offer_ttl_ms >= 0);
-- Every server looks for pools with a line every 100 ms.
CREATE INDEX pools_waitlisted ON pools (id) WHERE waitlisted > 0;
-- seq orders a pool's entries: taken with the pool's row locked (the
-- join's update of waitlisted), so two joins never share one.
CREATE TABLE waitlist_entries (
    id         text   PRIMARY KEY,
    pool_id    text   NOT NULL REFERENCES pools (id),
    seq        bigint NOT NULL,
    holder     text   NOT NULL,
    owner      text   NOT NULL,
    quota_key  text   NOT NULL DEFAULT '',
    quantity   bigint NOT NULL CHECK (quantity > 0),
    status     text   NOT NULL CHECK (status IN ('waiting', 'offered', 'confirmed', 'expired', 'released', 'left')),
    -- The offer's hold; no foreign key: a purge of ended holds takes
    -- the ended entries with them.
    hold_id    text,
    reason     text   NOT NULL DEFAULT '',
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL
);
CREATE UNIQUE INDEX waitlist_entries_seq ON waitlist_entries (pool_id, seq);
-- One active entry per holder and key on a pool.
CREATE UNIQUE INDEX waitlist_entries_holder ON waitlist_entries (pool_id, owner, holder) WHERE status IN ('waiting', 'offered');
CREATE INDEX waitlist_entries_queue ON waitlist_entries (pool_id, seq) WHERE status = 'waiting';
CREATE INDEX waitlist_entries_offered ON waitlist_entries (pool_id) WHERE status = 'offered';

-- +goose Down
DROP TABLE waitlist_entries;
DROP INDEX pools_waitlisted;
ALTER TABLE pools DROP COLUMN offer_ttl_ms;
ALTER TABLE pools DROP COLUMN waitlisted;
