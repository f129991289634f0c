-- +goose Up
-- A waitlist entry may end cancelled: a rule every hold keeps refused its
-- offer (the holder's limit or the key's quota is full, the key was
-- revoked). SQLite cannot change a CHECK in place: the table is rebuilt.
ALTER TABLE waitlist_entries RENAME TO waitlist_entries_old;
CREATE TABLE waitlist_entries (
    id         text   PRIMARY KEY,
    pool_id    text   NOT NULL REFERENCES pools (id),
    seq        bigint NOT NULL,
    holder     text   NOT NULL,
    owner      text   NOT NULL,
    quota_key  text   NOT NULL DEFAULT '',
    quantity   bigint NOT NULL CHECK (quantity > 0),
    status     text   NOT NULL CHECK (status IN ('waiting', 'offered', 'confirmed', 'expired', 'released', 'left', 'cancelled')),
    hold_id    text,
    reason     text   NOT NULL DEFAULT '',
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL
);
INSERT INTO waitlist_entries SELECT id, pool_id, seq, holder, owner, quota_key, quantity, status, hold_id, reason, created_at, updated_at
    FROM waitlist_entries_old;
DROP TABLE waitlist_entries_old;
CREATE UNIQUE INDEX waitlist_entries_seq ON waitlist_entries (pool_id, seq);
CREATE UNIQUE INDEX waitlist_entries_holder ON waitlist_entries (pool_id, owner, holder) WHERE status IN ('waiting', 'offered');
CREATE INDEX waitlist_entries_queue ON waitlist_entries (pool_id, seq) WHERE status = 'waiting';
CREATE INDEX waitlist_entries_offered ON waitlist_entries (pool_id) WHERE status = 'offered';
-- A key's waiting units count in its quota of held units, and revoking a
-- key ends its entries: both find them by key.
CREATE INDEX waitlist_entries_quota ON waitlist_entries (quota_key) WHERE status = 'waiting';
CREATE INDEX waitlist_entries_owner ON waitlist_entries (owner) WHERE status = 'waiting';
-- Revoking a key releases its unconfirmed holds.
CREATE INDEX holds_owner_held ON holds (owner) WHERE status = 'held';

-- +goose Down
DROP INDEX holds_owner_held;
DROP INDEX waitlist_entries_owner;
DROP INDEX waitlist_entries_quota;
