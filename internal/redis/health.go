package redis

import "context"

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
