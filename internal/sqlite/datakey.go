package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/authd/authd"
)

var _ authd.DataKeyStore = (*Store)(nil)

// EnsureDataKey returns the stored wrapped data key, storing gen's first
// when none is, in one IMMEDIATE transaction: processes sharing the file
// queue on it, and the second reads the first's.
//
// Errors: EUNAVAILABLE, or gen's error as it is.
func (s *Store) EnsureDataKey(ctx context.Context, gen func() ([]byte, error)) ([]byte, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, keysUnavailable(err)
	}
	defer tx.Rollback()
	var wrapped []byte
	switch err := tx.QueryRowContext(ctx, "SELECT wrapped FROM authd_data_key WHERE id = 1").Scan(&wrapped); {
	case err == nil:
		return wrapped, nil
	case !errors.Is(err, sql.ErrNoRows):
		return nil, keysUnavailable(err)
	}
	if wrapped, err = gen(); err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO authd_data_key (id, wrapped, updated_at) VALUES (1, ?, ?)", wrapped, time.Now().UnixMicro()); err != nil {
		return nil, keysUnavailable(err)
	}
	if err := tx.Commit(); err != nil {
		return nil, keysUnavailable(err)
	}
	return wrapped, nil
}

// ReplaceDataKey stores next in place of prev.
//
// Errors: EINVALID when what is stored is not prev, EUNAVAILABLE.
func (s *Store) ReplaceDataKey(ctx context.Context, prev, next []byte) error {
	res, err := s.db.ExecContext(ctx, "UPDATE authd_data_key SET wrapped = ?, updated_at = ? WHERE id = 1 AND wrapped = ?", next, time.Now().UnixMicro(), prev)
	if err != nil {
		return keysUnavailable(err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return authd.Errorf(authd.EINVALID, "the stored data key changed meanwhile: run again")
	}
	return nil
}

// ResealSigningKey stores next as id's sealed private key in place of
// prev.
//
// Errors: ENOTFOUND, EINVALID when its sealed key is not prev, EUNAVAILABLE.
func (s *Store) ResealSigningKey(ctx context.Context, id string, prev, next []byte) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return keysUnavailable(err)
	}
	defer tx.Rollback()
	var stored []byte
	switch err := tx.QueryRowContext(ctx, "SELECT private_key FROM authd_signing_keys WHERE kid = ?", id).Scan(&stored); {
	case errors.Is(err, sql.ErrNoRows):
		return authd.Errorf(authd.ENOTFOUND, "signing key not found")
	case err != nil:
		return keysUnavailable(err)
	}
	if string(stored) != string(prev) {
		return authd.Errorf(authd.EINVALID, "signing key %s changed meanwhile: run again", id)
	}
	if _, err := tx.ExecContext(ctx, "UPDATE authd_signing_keys SET private_key = ? WHERE kid = ?", next, id); err != nil {
		return keysUnavailable(err)
	}
	if err := tx.Commit(); err != nil {
		return keysUnavailable(err)
	}
	return nil
}
