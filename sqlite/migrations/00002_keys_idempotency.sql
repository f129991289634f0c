-- +goose Up
-- Which API key created a hold: a client key sees and changes only its own.
ALTER TABLE holds ADD COLUMN owner text NOT NULL DEFAULT '';

CREATE TABLE api_keys (
    id         text PRIMARY KEY,
    name       text   NOT NULL,
    role       text   NOT NULL CHECK (role IN ('admin', 'client')),
    hash       blob  NOT NULL,
    created_at bigint NOT NULL
);

-- One row per (scope, key): the claim of the request that runs it (token),
-- then the response to replay. The row is written in the same transaction
-- as the change it guards, so a key has exactly one effect.
CREATE TABLE idempotency_keys (
    scope       text   NOT NULL,
    key         text   NOT NULL,
    fingerprint text   NOT NULL,
    token       text   NOT NULL,
    state       text   NOT NULL CHECK (state IN ('in_flight', 'done')),
    status      integer,
    body        blob,
    created_at  bigint NOT NULL,
    updated_at  bigint NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- +goose Down
DROP TABLE idempotency_keys;
DROP TABLE api_keys;
ALTER TABLE holds DROP COLUMN owner;
