-- +goose Up
-- Payments: one row per payment ref, written in the transaction of what it
-- paid for (captured) or of its refusal (refund_due), so every payment
-- ends as a ticket or a refund. hold_id is not a foreign key: a booking
-- refused before a hold existed has none, and a purged hold's payment
-- stays.
CREATE TABLE payments (
    ref        text   PRIMARY KEY,
    hold_id    text   NOT NULL DEFAULT '',
    amount     bigint NOT NULL CHECK (amount >= 0),
    currency   text   NOT NULL,
    status     text   NOT NULL CHECK (status IN ('captured', 'refund_due', 'refunded')),
    reason     text   NOT NULL DEFAULT '',
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL
);
CREATE INDEX payments_status ON payments (status, created_at);
CREATE INDEX payments_hold ON payments (hold_id);

-- +goose Down
DROP TABLE payments;
