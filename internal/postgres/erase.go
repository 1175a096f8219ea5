package postgres

import (
	"context"
	"strings"
)

// DeleteByEmail erases every row whose lowercased email is email (the
// case variants an adopted database holds included): erasure on request.
// It reports how many rows it deleted; none is not an error.
//
// Errors: EUNAVAILABLE.
func (s *Store) DeleteByEmail(ctx context.Context, email string) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM auth_users WHERE lower(email) = $1::text`, strings.ToLower(email))
	if err != nil {
		return 0, unavailable(err)
	}
	return int(tag.RowsAffected()), nil
}
