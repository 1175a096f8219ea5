-- The same table as PostgreSQL's auth_users (the original service's): ids
-- are UUID text, timestamps naive UTC text 'YYYY-MM-DD HH:MM:SS.ffffff',
-- a fixed width, so that ordering by them as text orders them in time.

-- +goose Up
CREATE TABLE IF NOT EXISTS auth_users (
    id               TEXT PRIMARY KEY NOT NULL,
    email            TEXT NOT NULL,
    created_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f000', 'now')),
    last_verified_at TEXT
);

CREATE UNIQUE INDEX IF NOT EXISTS ix_auth_users_email ON auth_users (email);

-- Lookups match case-insensitively and take the oldest row: this index
-- answers "lower(email) = ? ORDER BY created_at, id LIMIT 1" without a sort.
CREATE INDEX IF NOT EXISTS ix_auth_users_lower_email ON auth_users (lower(email), created_at, id);

-- +goose Down
DROP INDEX IF EXISTS ix_auth_users_lower_email;
DROP INDEX IF EXISTS ix_auth_users_email;
DROP TABLE IF EXISTS auth_users;
