-- +goose Up
-- At a room's sell-out, those still waiting may move to a guarded pool's
-- waitlist keeping their queue order: the sell-out reserves the waitlist
-- numbers handoff_base + 1 … handoff_base + the room's last rank, and
-- later joins are numbered after waitlist_floor. A ticket moves once
-- (waitlist_id).
ALTER TABLE rooms ADD COLUMN handoff_base bigint;
ALTER TABLE pools ADD COLUMN waitlist_floor bigint NOT NULL DEFAULT 0;
ALTER TABLE room_tickets ADD COLUMN waitlist_id text;

-- +goose Down
ALTER TABLE room_tickets DROP COLUMN waitlist_id;
ALTER TABLE pools DROP COLUMN waitlist_floor;
ALTER TABLE rooms DROP COLUMN handoff_base;
