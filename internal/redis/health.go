package redis

import (
	"context"

	goredis "github.com/redis/go-redis/v9"
)

// Ping checks that Redis answers, for the readiness probe. It is not part
// of authd.CodeStore: the in-memory store has nothing to check.
//
// Errors: EUNAVAILABLE.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.client.Ping(ctx).Err(); err != nil {
		return unavailable(err)
	}
	return nil
}

// PoolStats reports the client's connection pool, for metrics.
func (s *Store) PoolStats() *goredis.PoolStats { return s.client.PoolStats() }
