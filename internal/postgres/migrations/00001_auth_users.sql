-- The original service's table, as its SQLAlchemy model made it. A database
-- that already has it is adopted: nothing here rewrites a row or an id, and
-- rows whose emails differ only in letter case stay where they are.

-- +goose Up
CREATE TABLE IF NOT EXISTS auth_users (
    id               UUID PRIMARY KEY,
    email            VARCHAR NOT NULL,
    created_at       TIMESTAMP WITHOUT TIME ZONE NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    last_verified_at TIMESTAMP WITHOUT TIME ZONE
);

-- UpsertVerified's ON CONFLICT (email) needs a unique index on exactly
-- (email) as its arbiter. The original made ix_auth_users_email; create one
-- only when no such index exists, under another name if that one is taken.
-- +goose StatementBegin
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1
        FROM pg_index i
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
        WHERE i.indrelid = 'auth_users'::regclass
          AND i.indisunique AND i.indisvalid
          AND i.indnatts = 1
          AND i.indexprs IS NULL AND i.indpred IS NULL
          AND a.attname = 'email'
    ) THEN
        IF to_regclass('ix_auth_users_email') IS NULL THEN
            CREATE UNIQUE INDEX ix_auth_users_email ON auth_users (email);
        ELSE
            CREATE UNIQUE INDEX auth_users_email_key ON auth_users (email);
        END IF;
    END IF;
END
$$;
-- +goose StatementEnd

-- Lookups match case-insensitively and take the oldest row: this index
-- answers "lower(email) = $1 ORDER BY created_at, id LIMIT 1" without a sort.
CREATE INDEX IF NOT EXISTS ix_auth_users_lower_email ON auth_users (lower(email), created_at, id);

-- +goose Down
-- The table may be the original's, with its users: going down never drops it.
DROP INDEX IF EXISTS ix_auth_users_lower_email;
