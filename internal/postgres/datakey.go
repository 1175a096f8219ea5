package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/authd/authd"
)

var _ authd.DataKeyStore = (*Store)(nil)

// EnsureDataKey returns the stored wrapped data key, storing gen's first
// when none is: of instances starting together, the first insert wins
// and the others read it.
//
// Errors: EUNAVAILABLE, or gen's error as it is.
func (s *Store) EnsureDataKey(ctx context.Context, gen func() ([]byte, error)) ([]byte, error) {
	const get = "SELECT wrapped FROM authd_data_key WHERE id = 1"
	var wrapped []byte
	err := s.pool.QueryRow(ctx, get).Scan(&wrapped)
	if err == nil {
		return wrapped, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return nil, keysUnavailable(err)
	}
	first, err := gen()
	if err != nil {
		return nil, err
	}
	// Whoever inserted first, the row is committed when the next statement
	// starts: read it there.
	if _, err := s.pool.Exec(ctx, "INSERT INTO authd_data_key (id, wrapped) VALUES (1, $1) ON CONFLICT (id) DO NOTHING", first); err != nil {
		return nil, keysUnavailable(err)
	}
	if err := s.pool.QueryRow(ctx, get).Scan(&wrapped); err != nil {
		return nil, keysUnavailable(err)
	}
	return wrapped, nil
}

// ReplaceDataKey stores next in place of prev.
//
// Errors: EINVALID when what is stored is not prev, EUNAVAILABLE.
func (s *Store) ReplaceDataKey(ctx context.Context, prev, next []byte) error {
	tag, err := s.pool.Exec(ctx, "UPDATE authd_data_key SET wrapped = $2, updated_at = now() WHERE id = 1 AND wrapped = $1", prev, next)
	if err != nil {
		return keysUnavailable(err)
	}
	if tag.RowsAffected() == 0 {
		return authd.Errorf(authd.EINVALID, "the stored data key changed meanwhile: run again")
	}
	return nil
}

// ResealSigningKey stores next as id's sealed private key in place of
// prev.
//
// Errors: ENOTFOUND, EINVALID when its sealed key is not prev, EUNAVAILABLE.
func (s *Store) ResealSigningKey(ctx context.Context, id string, prev, next []byte) error {
	var matched bool
	err := s.pool.QueryRow(ctx, `
WITH upd AS (UPDATE authd_signing_keys SET private_key = $3 WHERE kid = $1 AND private_key = $2 RETURNING 1)
SELECT EXISTS (SELECT 1 FROM upd) FROM authd_signing_keys WHERE kid = $1`, id, prev, next).Scan(&matched)
	if errors.Is(err, pgx.ErrNoRows) {
		return authd.Errorf(authd.ENOTFOUND, "signing key not found")
	}
	if err != nil {
		return keysUnavailable(err)
	}
	if !matched {
		return authd.Errorf(authd.EINVALID, "signing key %s changed meanwhile: run again", id)
	}
	return nil
}
