-- +goose Up
-- The feed is read in (xid, seq) order, and only up to the oldest
-- transaction still running: a sequence number is taken at insert but
-- becomes visible at commit, so a reader going by seq alone could pass an
-- event whose transaction commits late and never see it. Every transaction
-- older than the snapshot's xmin has finished, so the events below it are
-- final and a cursor over them never skips one.
ALTER TABLE events ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX events_feed ON events (xid, seq);

-- +goose Down
DROP INDEX events_feed;
ALTER TABLE events DROP COLUMN xid;
