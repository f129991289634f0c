-- +goose Up
-- Times are epoch milliseconds taken from the database clock
-- (holdfast_now_ms), so app servers with drifting clocks agree on expiry and
-- both backends share one schema shape.
-- +goose StatementBegin
CREATE FUNCTION holdfast_now_ms() RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT (extract(epoch FROM now()) * 1000)::bigint $$;
-- +goose StatementEnd

CREATE TABLE pools (
    id               text PRIMARY KEY,
    name             text   NOT NULL DEFAULT '',
    capacity         bigint NOT NULL CHECK (capacity >= 0),
    held             bigint NOT NULL DEFAULT 0 CHECK (held >= 0),
    confirmed        bigint NOT NULL DEFAULT 0 CHECK (confirmed >= 0),
    per_holder_limit bigint NOT NULL DEFAULT 0 CHECK (per_holder_limit >= 0),
    version          bigint NOT NULL DEFAULT 0,
    created_at       bigint NOT NULL,
    -- The last word on oversell: whatever the application does, the
    -- database refuses a pool that gives out more than it has.
    CONSTRAINT pools_not_oversold CHECK (held + confirmed <= capacity)
);

CREATE TABLE groups (
    id         text PRIMARY KEY,
    name       text    NOT NULL DEFAULT '',
    reusable   boolean NOT NULL DEFAULT false,
    created_at bigint  NOT NULL
);

CREATE TABLE holds (
    id          text PRIMARY KEY,
    holder      text   NOT NULL,
    status      text   NOT NULL CHECK (status IN ('held', 'confirmed', 'released', 'expired', 'cancelled', 'completed')),
    created_at  bigint NOT NULL,
    expires_at  bigint NOT NULL,
    updated_at  bigint NOT NULL,
    payment_ref text   NOT NULL DEFAULT ''
);
CREATE INDEX holds_holder ON holds (holder, created_at);
-- The sweeper and the claim path's reclaim look for held holds past expiry.
CREATE INDEX holds_expiring ON holds (expires_at) WHERE status = 'held';

CREATE TABLE hold_lines (
    hold_id   text    NOT NULL REFERENCES holds (id),
    line_no   integer NOT NULL,
    kind      text    NOT NULL CHECK (kind IN ('pool', 'units', 'any')),
    pool_id   text REFERENCES pools (id),
    quantity  bigint,
    group_id  text REFERENCES groups (id),
    any_count bigint,
    PRIMARY KEY (hold_id, line_no),
    CHECK ((kind = 'pool') = (pool_id IS NOT NULL AND quantity IS NOT NULL AND quantity > 0)),
    CHECK ((kind = 'any') = (group_id IS NOT NULL AND any_count IS NOT NULL AND any_count > 0))
);
CREATE INDEX hold_lines_pool ON hold_lines (pool_id, hold_id) WHERE pool_id IS NOT NULL;

-- Per-holder totals, so a per_holder_limit is enforced by one conditional
-- upsert on a row the database locks: two concurrent holds by the same holder
-- cannot both pass.
CREATE TABLE pool_holders (
    pool_id text   NOT NULL REFERENCES pools (id),
    holder  text   NOT NULL,
    taken   bigint NOT NULL CHECK (taken >= 0),
    PRIMARY KEY (pool_id, holder)
);

CREATE TABLE units (
    id       text PRIMARY KEY,
    group_id text NOT NULL REFERENCES groups (id),
    -- The hold that has the unit now, NULL when free. The claim path updates
    -- it conditionally (hold_id IS NULL), so the row itself is what buyers
    -- race on.
    hold_id  text REFERENCES holds (id)
);
CREATE INDEX units_group ON units (group_id, id);
CREATE INDEX units_free ON units (group_id, id) WHERE hold_id IS NULL;
CREATE INDEX units_hold ON units (hold_id) WHERE hold_id IS NOT NULL;

CREATE TABLE unit_claims (
    hold_id text    NOT NULL REFERENCES holds (id),
    line_no integer NOT NULL,
    unit_id text    NOT NULL REFERENCES units (id),
    active  boolean NOT NULL,
    PRIMARY KEY (hold_id, unit_id)
);
-- The last word on double-booking: a unit has at most one active claim,
-- whatever writes units.hold_id.
CREATE UNIQUE INDEX unit_claims_one_active ON unit_claims (unit_id) WHERE active;

CREATE TABLE events (
    seq     bigserial PRIMARY KEY,
    type    text   NOT NULL,
    at      bigint NOT NULL,
    hold_id text,
    subject text,
    data    text   NOT NULL DEFAULT '{}'
);

-- +goose Down
DROP TABLE events, unit_claims, units, pool_holders, hold_lines, holds, groups, pools;
DROP FUNCTION holdfast_now_ms();
