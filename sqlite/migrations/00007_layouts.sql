-- +goose Up
-- A group's venue map (holdfast.Layout as JSON), when it has one: read by
-- the page, and by the engine to find seats together.
ALTER TABLE groups ADD COLUMN layout text;

-- +goose Down
ALTER TABLE groups DROP COLUMN layout;
