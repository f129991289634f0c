-- +goose Up
-- How a room admits: 'rate' (its rate and max_inside) or 'stock' (also
-- never more admissions out, unused, than the stock can serve).
ALTER TABLE rooms ADD COLUMN admit text NOT NULL DEFAULT 'rate' CHECK (admit IN ('rate', 'stock'));

-- +goose Down
ALTER TABLE rooms DROP COLUMN admit;
