-- +goose Up
-- Webhooks: endpoints that receive the outbox's events. cursor is where in
-- the feed the next events to queue for the endpoint start (cursor_seq its
-- seq: the purge keeps the events after it); the secret is kept because
-- signing needs it (no read of the API shows it).
CREATE TABLE webhooks (
    id          text    PRIMARY KEY,
    url         text    NOT NULL,
    events      text    NOT NULL DEFAULT '',
    description text    NOT NULL DEFAULT '',
    secret      text    NOT NULL,
    enabled     boolean NOT NULL DEFAULT TRUE,
    cursor      text    NOT NULL DEFAULT '',
    cursor_seq  bigint  NOT NULL DEFAULT 0,
    created_at  bigint  NOT NULL,
    updated_at  bigint  NOT NULL
);

-- One row per event and webhook: the queue the dispatchers claim from
-- (lease, leased_until), its retry schedule (tries, next_attempt_at) and
-- its history. The payload is the event's row, read when it is sent: a
-- delivery row stays small, so a sale's events are queued cheaply, and a
-- purge keeps the events that are still to be sent. ordering_key (the hold, or the pool or group) keeps one
-- subject's events in order: only the oldest pending one is sent. The
-- key is the last word on duplicates: an event is queued once per webhook
-- (and the delivery's id is the event's, evt_<seq>).
CREATE TABLE webhook_deliveries (
    webhook_id      text    NOT NULL REFERENCES webhooks (id),
    event_seq       bigint  NOT NULL,
    event_type      text    NOT NULL,
    ordering_key    text    NOT NULL,
    status          text    NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    tries           integer NOT NULL DEFAULT 0,
    next_attempt_at bigint  NOT NULL,
    lease           text,
    leased_until    bigint,
    last_status     integer NOT NULL DEFAULT 0,
    last_error      text    NOT NULL DEFAULT '',
    created_at      bigint  NOT NULL,
    updated_at      bigint  NOT NULL,
    PRIMARY KEY (webhook_id, event_seq)
);
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (webhook_id, ordering_key, event_seq) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (updated_at) WHERE status <> 'pending';

-- Payments that arrive late: per pool and per group, whether a confirm
-- after expiry may take the capacity back if it is still free, and for
-- how long after expiry (seconds). holds.late records that it did.
ALTER TABLE pools ADD COLUMN late_confirm text NOT NULL DEFAULT 'refuse' CHECK (late_confirm IN ('refuse', 'if_available'));
ALTER TABLE pools ADD COLUMN late_confirm_grace bigint NOT NULL DEFAULT 0 CHECK (late_confirm_grace >= 0);
ALTER TABLE groups ADD COLUMN late_confirm text NOT NULL DEFAULT 'refuse' CHECK (late_confirm IN ('refuse', 'if_available'));
ALTER TABLE groups ADD COLUMN late_confirm_grace bigint NOT NULL DEFAULT 0 CHECK (late_confirm_grace >= 0);
ALTER TABLE holds ADD COLUMN late boolean NOT NULL DEFAULT FALSE;

-- +goose Down
ALTER TABLE holds DROP COLUMN late;
ALTER TABLE groups DROP COLUMN late_confirm_grace;
ALTER TABLE groups DROP COLUMN late_confirm;
ALTER TABLE pools DROP COLUMN late_confirm_grace;
ALTER TABLE pools DROP COLUMN late_confirm;
DROP TABLE webhook_deliveries;
DROP TABLE webhooks;
