-- authd's data key (issue 11), as PostgreSQL's: the key the code-hash and
-- address keys are derived from, wrapped under AUTHD_MASTER_KEY. One row
-- at most. updated_at is Unix microseconds.

-- +goose Up
CREATE TABLE IF NOT EXISTS authd_data_key (
    id         INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    wrapped    BLOB NOT NULL,
    updated_at INTEGER NOT NULL
);

-- +goose Down
DROP TABLE IF EXISTS authd_data_key;
