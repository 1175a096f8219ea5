package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/authd/authd"
)

var _ authd.KeyStore = (*Store)(nil)

const selectSigningKeys = `
SELECT kid, alg, public_key, private_key, created_at, active_from
FROM authd_signing_keys ORDER BY active_from, kid`

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// SigningKeys returns every stored key, ordered by ActiveFrom then ID.
//
// Errors: EUNAVAILABLE.
func (s *Store) SigningKeys(ctx context.Context) ([]authd.SigningKey, error) {
	return querySigningKeys(ctx, s.db)
}

func querySigningKeys(ctx context.Context, q querier) ([]authd.SigningKey, error) {
	rows, err := q.QueryContext(ctx, selectSigningKeys)
	if err != nil {
		return nil, keysUnavailable(err)
	}
	defer rows.Close()
	var keys []authd.SigningKey
	for rows.Next() {
		var k authd.SigningKey
		var created, active int64
		if err := rows.Scan(&k.ID, &k.Algorithm, &k.PublicKey, &k.SealedPrivateKey, &created, &active); err != nil {
			return nil, keysUnavailable(err)
		}
		k.CreatedAt, k.ActiveFrom = time.UnixMicro(created).UTC(), time.UnixMicro(active).UTC()
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, keysUnavailable(err)
	}
	return keys, nil
}

// EnsureSigningKey makes the first key in one IMMEDIATE transaction (the
// Store's transactions take SQLite's write lock at BEGIN): processes
// sharing the file queue on it, and the second finds the first's key.
//
// Errors: EUNAVAILABLE, or gen's error as it is.
func (s *Store) EnsureSigningKey(ctx context.Context, gen func() (authd.SigningKey, error)) ([]authd.SigningKey, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, keysUnavailable(err)
	}
	defer tx.Rollback()
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
	if err := tx.Commit(); err != nil {
		return nil, keysUnavailable(err)
	}
	return []authd.SigningKey{k}, nil
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// AddSigningKey stores k.
//
// Errors: EINVALID when a key with k.ID is stored, EUNAVAILABLE.
func (s *Store) AddSigningKey(ctx context.Context, k authd.SigningKey) error {
	return insertSigningKey(ctx, s.db, k)
}

func insertSigningKey(ctx context.Context, db execer, k authd.SigningKey) error {
	_, err := db.ExecContext(ctx, `
INSERT INTO authd_signing_keys (kid, alg, public_key, private_key, created_at, active_from)
VALUES (?, ?, ?, ?, ?, ?)`, k.ID, k.Algorithm, k.PublicKey, k.SealedPrivateKey, k.CreatedAt.UnixMicro(), k.ActiveFrom.UnixMicro())
	var se *sqlite.Error
	if errors.As(err, &se) && (se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE) {
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
	res, err := s.db.ExecContext(ctx, "DELETE FROM authd_signing_keys WHERE kid = ?", id)
	if err != nil {
		return keysUnavailable(err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return authd.Errorf(authd.ENOTFOUND, "signing key not found")
	}
	return nil
}

func keysUnavailable(err error) error { return authd.Unavailable("key store", err) }
