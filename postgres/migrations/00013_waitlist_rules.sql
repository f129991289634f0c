-- +goose Up
-- A waitlist entry may end cancelled: a rule every hold keeps refused its
-- offer (the holder's limit or the key's quota is full, the key was
-- revoked).
ALTER TABLE waitlist_entries DROP CONSTRAINT waitlist_entries_status_check;
ALTER TABLE waitlist_entries ADD CONSTRAINT waitlist_entries_status_check
    CHECK (status IN ('waiting', 'offered', 'confirmed', 'expired', 'released', 'left', 'cancelled'));
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
ALTER TABLE waitlist_entries DROP CONSTRAINT waitlist_entries_status_check;
ALTER TABLE waitlist_entries ADD CONSTRAINT waitlist_entries_status_check
    CHECK (status IN ('waiting', 'offered', 'confirmed', 'expired', 'released', 'left'));
