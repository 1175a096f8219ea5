package sqlite

import (
	"context"
	"strings"
)

// DeleteByEmail erases every row whose lowercased email is email (case
// variants included): erasure on request. It reports how many rows it
// deleted; none is not an error.
//
// Errors: EUNAVAILABLE.
func (s *Store) DeleteByEmail(ctx context.Context, email string) (int, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM auth_users WHERE lower(email) = ?`, strings.ToLower(email))
	if err != nil {
		return 0, unavailable(err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, unavailable(err)
	}
	return int(n), nil
}
