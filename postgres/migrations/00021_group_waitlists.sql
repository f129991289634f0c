-- +goose Up
-- Waitlists of unit groups: an entry waits for `any_count` free units of
-- the group (next to each other in one row when together). A unit that
-- comes back while entries wait is the waitlist's first (its channel is
-- '~waitlist', out of every new buyer's reach, in the statement that
-- frees it); the offerer turns it, with free seats beside it, into holds
-- for the entries in join order, and gives back what none can use.
CREATE TABLE group_waitlist_entries (
    id         text    PRIMARY KEY,
    group_id   text    NOT NULL REFERENCES groups (id),
    seq        bigint  NOT NULL,
    holder     text    NOT NULL,
    owner      text    NOT NULL DEFAULT '',
    quota_key  text    NOT NULL DEFAULT '',
    any_count  bigint  NOT NULL CHECK (any_count > 0),
    together   boolean NOT NULL DEFAULT FALSE,
    status     text    NOT NULL CHECK (status IN ('waiting', 'offered', 'confirmed', 'expired', 'released', 'left', 'cancelled')),
    hold_id    text, -- the offer's hold (no foreign key, as for a pool's entries: holds are purged)
    reason     text    NOT NULL DEFAULT '',
    created_at bigint  NOT NULL,
    updated_at bigint  NOT NULL
);
CREATE UNIQUE INDEX group_waitlist_seq ON group_waitlist_entries (group_id, seq);
CREATE UNIQUE INDEX group_waitlist_one ON group_waitlist_entries (group_id, owner, holder) WHERE status IN ('waiting', 'offered');
-- Every statement that frees units asks whether their group has waiting
-- entries: one index probe, whatever the table's history.
CREATE INDEX group_waitlist_status ON group_waitlist_entries (group_id, status);

-- +goose Down
DROP TABLE group_waitlist_entries;
