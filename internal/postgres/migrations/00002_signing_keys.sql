-- authd's token signing keys (issue 5). The private half is sealed with a
-- key derived from AUTHD_MASTER_KEY: a dump of this table signs nothing.

-- +goose Up
CREATE TABLE IF NOT EXISTS authd_signing_keys (
    kid         TEXT PRIMARY KEY,
    alg         TEXT NOT NULL,
    public_key  BYTEA NOT NULL,
    private_key BYTEA NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    active_from TIMESTAMPTZ NOT NULL
);

-- +goose Down
DROP TABLE IF EXISTS authd_signing_keys;
