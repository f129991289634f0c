-- +goose Up
-- A room may bound what one admission buys: a hold or booking made with
-- it takes at most this many units (0: no bound).
ALTER TABLE rooms ADD COLUMN max_units_per_admission bigint NOT NULL DEFAULT 0 CHECK (max_units_per_admission >= 0);

-- +goose Down
ALTER TABLE rooms DROP COLUMN max_units_per_admission;
