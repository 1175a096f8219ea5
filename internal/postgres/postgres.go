// Package postgres keeps authd's users in PostgreSQL through pgx: the
// original service's auth_users table, adopted as it is, and the embedded
// migrations that create or adopt it.
package postgres

import (
	"context"
	"log/slog"
	"math"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authd/authd"
)

// Store is a PostgreSQL connection pool holding authd's tables. It is safe
// for concurrent use.
type Store struct {
	pool   *pgxpool.Pool
	logger *slog.Logger
	batch  batcher // UpsertVerified's queue (batch.go)
}

var _ authd.UserStore = (*Store)(nil)

// Open parses url (a postgres:// URL or a key=value DSN, as pgx reads them)
// and returns a Store on a pool that connects lazily: a database that is down
// at start-up surfaces at the first Ping, Migrate or query, so the caller
// decides whether to wait. logger receives migration progress; nil discards
// it. The error, an EINVALID *authd.Error, never repeats the URL, which may
// hold a password.
func Open(ctx context.Context, url string, logger *slog.Logger) (*Store, error) {
	return OpenPool(ctx, url, 0, logger)
}

// OpenPool is Open with a pool of at most maxConns connections (0: pgx's
// default), unless url sets pool_max_conns itself, which wins.
func OpenPool(ctx context.Context, url string, maxConns int, logger *slog.Logger) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's message may quote the URL, password included: keep it out of
		// Message and let only the log see it through Err.
		return nil, &authd.Error{Code: authd.EINVALID, Field: "DATABASE_URL", Message: "cannot parse the PostgreSQL URL", Err: err}
	}
	if maxConns > 0 && !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = int32(min(maxConns, math.MaxInt32))
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, authd.Unavailable("PostgreSQL", err)
	}
	return New(pool, logger), nil
}

// New returns a Store on a pool the caller made. Close closes the pool.
func New(pool *pgxpool.Pool, logger *slog.Logger) *Store {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Store{pool: pool, logger: logger}
}

// Close closes the pool, waiting for the connections in use to be released.
func (s *Store) Close() { s.pool.Close() }

// Ping checks that PostgreSQL answers.
//
// Errors: EUNAVAILABLE.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return unavailable(err)
	}
	return nil
}

// unavailable wraps a driver error: callers and HTTP clients see a stable
// message, the cause stays in Err for the log.
func unavailable(err error) error { return authd.Unavailable("user store", err) }
