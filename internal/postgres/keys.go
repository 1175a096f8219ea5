package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/authd/authd"
)

var _ authd.KeyStore = (*Store)(nil)

// signingKeyLockID is the advisory lock under which the first signing key
// is made: instances starting together on an empty table make one key.
const signingKeyLockID int64 = 0x61757468_64000002 // "authd", 2

const selectSigningKeys = `
SELECT kid, alg, public_key, private_key, created_at, active_from
FROM authd_signing_keys ORDER BY active_from, kid`

// SigningKeys returns every stored key, ordered by ActiveFrom then ID.
//
// Errors: EUNAVAILABLE.
func (s *Store) SigningKeys(ctx context.Context) ([]authd.SigningKey, error) {
	return querySigningKeys(ctx, s.pool)
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func querySigningKeys(ctx context.Context, q querier) ([]authd.SigningKey, error) {
	rows, err := q.Query(ctx, selectSigningKeys)
	if err != nil {
		return nil, keysUnavailable(err)
	}
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (authd.SigningKey, error) {
		var k authd.SigningKey
		err := r.Scan(&k.ID, &k.Algorithm, &k.PublicKey, &k.SealedPrivateKey, &k.CreatedAt, &k.ActiveFrom)
		k.CreatedAt, k.ActiveFrom = k.CreatedAt.UTC(), k.ActiveFrom.UTC()
		return k, err
	})
	if err != nil {
		return nil, keysUnavailable(err)
	}
	return keys, nil
}

// EnsureSigningKey makes the first key under a transaction-scoped advisory
// lock: the second of two instances starting together waits, then finds
// the first one's key.
//
// Errors: EUNAVAILABLE, or gen's error as it is.
func (s *Store) EnsureSigningKey(ctx context.Context, gen func() (authd.SigningKey, error)) ([]authd.SigningKey, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, keysUnavailable(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", signingKeyLockID); err != nil {
		return nil, keysUnavailable(err)
	}
	keys, err := querySigningKeys(ctx, tx)
	if err != nil || len(keys) > 0 {
		return keys, err
	}
	k, err := gen()
	if err != nil {
		return nil, err
	}
	if err := insertSigningKey(ctx, tx, k); err != nil {
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, keysUnavailable(err)
	}
	return []authd.SigningKey{k}, nil
}

// AddSigningKey stores k.
//
// Errors: EINVALID when a key with k.ID is stored, EUNAVAILABLE.
func (s *Store) AddSigningKey(ctx context.Context, k authd.SigningKey) error {
	return insertSigningKey(ctx, s.pool, k)
}

type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func insertSigningKey(ctx context.Context, db execer, k authd.SigningKey) error {
	_, err := db.Exec(ctx, `
INSERT INTO authd_signing_keys (kid, alg, public_key, private_key, created_at, active_from)
VALUES ($1, $2, $3, $4, $5, $6)`, k.ID, k.Algorithm, k.PublicKey, k.SealedPrivateKey, k.CreatedAt.UTC(), k.ActiveFrom.UTC())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return &authd.Error{Code: authd.EINVALID, Field: "kid", Message: "a signing key with this kid is stored"}
	}
	if err != nil {
		return keysUnavailable(err)
	}
	return nil
}

// DeleteSigningKey removes the key id.
//
// Errors: ENOTFOUND, EUNAVAILABLE.
func (s *Store) DeleteSigningKey(ctx context.Context, id string) error {
	tag, err := s.pool.Exec(ctx, "DELETE FROM authd_signing_keys WHERE kid = $1", id)
	if err != nil {
		return keysUnavailable(err)
	}
	if tag.RowsAffected() == 0 {
		return authd.Errorf(authd.ENOTFOUND, "signing key not found")
	}
	return nil
}

func keysUnavailable(err error) error { return authd.Unavailable("key store", err) }
