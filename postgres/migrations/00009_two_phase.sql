-- +goose Up
-- Two-phase commit across databases (PostgreSQL only: SQLite is one file,
-- one writer). A change prepared on several databases is decided here, on
-- the catalog, by the first row written for its global id: the
-- coordinator writes committed = TRUE after every prepare succeeded; a
-- resolver that finds the change still prepared writes FALSE first if the
-- coordinator has not (it died, or is too slow). Each prepared part is then
-- committed or rolled back as its row says, by whoever gets there.
CREATE TABLE twophase_decisions (
    gid        text    PRIMARY KEY,
    committed  boolean NOT NULL,
    decided_at bigint  NOT NULL
);

-- +goose Down
DROP TABLE twophase_decisions;
