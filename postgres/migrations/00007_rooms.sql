-- +goose Up
-- Waiting rooms. A room protects pools and groups (each behind one room at
-- most); a place is a ticket, ordered by place: random among those who
-- joined before opens_at, then in join order (2^62 + next_place). At
-- opening every place is numbered (rank) in place order, and later ones
-- as they join, so a position is rank - admitted_through, read in one
-- row, however long the queue. credit and credited_at meter the admission
-- rate; the room's row is locked while it admits or ranks, so no place is
-- admitted twice or skipped.
CREATE TABLE rooms (
    id               text             PRIMARY KEY,
    opens_at         bigint           NOT NULL,
    admit_per_second double precision NOT NULL CHECK (admit_per_second > 0),
    admit_ttl_ms     bigint           NOT NULL CHECK (admit_ttl_ms > 0),
    max_inside       bigint           NOT NULL CHECK (max_inside > 0),
    max_per_key      bigint           NOT NULL CHECK (max_per_key >= 0),
    credit           double precision NOT NULL DEFAULT 0,
    credited_at      bigint           NOT NULL DEFAULT 0,
    admitted_through bigint           NOT NULL DEFAULT 0,
    sold_out         boolean          NOT NULL DEFAULT FALSE,
    created_at       bigint           NOT NULL
);
-- The numbering of places, in a row of its own: joins after opening
-- take the next number here, and never wait on the admitter's lock of the
-- room's row (nor it on them). ranked: the places taken before opening
-- are numbered (1 … rank_base).
CREATE TABLE room_places (
    room_id    text    PRIMARY KEY REFERENCES rooms (id),
    ranked     boolean NOT NULL DEFAULT FALSE,
    rank_base  bigint  NOT NULL DEFAULT 0,
    next_place bigint  NOT NULL DEFAULT 0
);
-- A key's places in a room, when the room caps them: one conditional
-- upsert per join, exact however many join at once.
CREATE TABLE room_keys (
    room_id text   NOT NULL REFERENCES rooms (id),
    owner   text   NOT NULL,
    places  bigint NOT NULL,
    PRIMARY KEY (room_id, owner)
);
CREATE TABLE room_resources (
    room_id  text NOT NULL REFERENCES rooms (id),
    kind     text NOT NULL CHECK (kind IN ('pool', 'group')),
    resource text NOT NULL,
    PRIMARY KEY (kind, resource)
);
-- A ticket's token admits one hold (hold_id, unique): it is done when that
-- hold ends or the token expires unused.
CREATE TABLE room_tickets (
    ticket      text   PRIMARY KEY,
    room_id     text   NOT NULL REFERENCES rooms (id),
    holder      text   NOT NULL,
    owner       text   NOT NULL,
    place       bigint NOT NULL,
    rank        bigint,
    status      text   NOT NULL CHECK (status IN ('waiting', 'admitted', 'done', 'sold_out')),
    token       text,
    admitted_at bigint,
    expires_at  bigint,
    hold_id     text,
    created_at  bigint NOT NULL
);
CREATE UNIQUE INDEX room_tickets_holder ON room_tickets (room_id, owner, holder);
CREATE UNIQUE INDEX room_tickets_token ON room_tickets (token);
CREATE UNIQUE INDEX room_tickets_hold ON room_tickets (hold_id);
CREATE INDEX room_tickets_queue ON room_tickets (room_id, place) WHERE status = 'waiting';
CREATE INDEX room_tickets_inside ON room_tickets (room_id) WHERE status = 'admitted';
CREATE INDEX room_tickets_owner ON room_tickets (room_id, owner);

-- +goose Down
DROP TABLE room_tickets;
DROP TABLE room_resources;
DROP TABLE room_keys;
DROP TABLE room_places;
DROP TABLE rooms;
