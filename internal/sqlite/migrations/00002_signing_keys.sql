-- authd's token signing keys (issue 5), as PostgreSQL's. Times are Unix
-- microseconds. The private half is sealed with a key derived from
-- AUTHD_MASTER_KEY: a copy of this table signs nothing.

-- +goose Up
CREATE TABLE IF NOT EXISTS authd_signing_keys (
    kid         TEXT PRIMARY KEY NOT NULL,
    alg         TEXT NOT NULL,
    public_key  BLOB NOT NULL,
    private_key BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    active_from INTEGER NOT NULL
);

-- +goose Down
DROP TABLE IF EXISTS authd_signing_keys;
