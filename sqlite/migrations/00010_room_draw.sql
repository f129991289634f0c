-- +goose Up
-- A room commits to its draw before anyone joins: a random seed, kept
-- secret until opening (its SHA-256 is shown from creation). A place
-- taken before opening is ordered by HMAC-SHA256(seed, ticket id), kept
-- as draw. Rooms made before this have no seed ('') and random places.
ALTER TABLE rooms ADD COLUMN seed text NOT NULL DEFAULT '';
ALTER TABLE room_tickets ADD COLUMN draw text;

-- +goose Down
ALTER TABLE room_tickets DROP COLUMN draw;
ALTER TABLE rooms DROP COLUMN seed;
