package postgres

import "github.com/jackc/pgx/v5/pgxpool"

// PoolStats reports the connection pool, for metrics.
func (s *Store) PoolStats() *pgxpool.Stat { return s.pool.Stat() }
