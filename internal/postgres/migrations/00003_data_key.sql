-- authd's data key (issue 11): the key the code-hash and address keys are
-- derived from, wrapped under AUTHD_MASTER_KEY. A master-key rotation
-- rewraps it and never changes it, so live codes and budgets survive. One
-- row at most.

-- +goose Up
CREATE TABLE IF NOT EXISTS authd_data_key (
    id         SMALLINT PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    wrapped    BYTEA NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE IF EXISTS authd_data_key;
