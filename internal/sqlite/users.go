package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/authd/authd"
)

// timeLayout is how timestamps are stored: naive UTC to the microsecond
// (PostgreSQL's precision, so both stores return the same times), fixed
// width so that text order is time order.
const timeLayout = "2006-01-02 15:04:05.000000"

// parseLayout also reads rows written with fewer fractional digits, such as
// the column default's milliseconds.
const parseLayout = "2006-01-02 15:04:05.999999999"

// upsertVerified is UpsertVerified's one statement. The SELECT yields the
// oldest row matching case-insensitively (the original service left case
// variants behind, and a copied database may hold them), or the new row;
// inserting the oldest row's own id and email again conflicts with it, and
// the ON CONFLICT clauses turn that into an update of last_verified_at.
// "WHERE true" is what SQLite's grammar needs to tell an upsert's ON from a
// join's.
const upsertVerified = `
INSERT INTO auth_users (id, email, created_at, last_verified_at)
SELECT coalesce(o.id, ?1), coalesce(o.email, ?2), ?3, ?3
FROM (SELECT 1) AS one
LEFT JOIN (
    SELECT id, email FROM auth_users
    WHERE lower(email) = ?2
    ORDER BY created_at, id
    LIMIT 1
) AS o ON true
WHERE true
ON CONFLICT (id) DO UPDATE SET last_verified_at = excluded.last_verified_at
ON CONFLICT (email) DO UPDATE SET last_verified_at = excluded.last_verified_at
RETURNING id, email, created_at, last_verified_at`

// UpsertVerified records a verification of email at `at`. The returned
// User's Email is the row's, which for a case-variant row may differ from
// email in letter case. email is lowercased again in case a caller skipped
// authd.NormalizeEmail: a mixed-case row would never be found by the
// lowercase lookups.
//
// Errors: EUNAVAILABLE.
func (s *Store) UpsertVerified(ctx context.Context, email string, at time.Time) (authd.User, error) {
	email = strings.ToLower(email)
	row := s.db.QueryRowContext(ctx, upsertVerified, uuid.NewString(), email, formatTime(at))
	u, err := scanUser(row)
	if err != nil {
		return authd.User{}, unavailable(err)
	}
	return u, nil
}

const findByEmail = `
SELECT id, email, created_at, last_verified_at FROM auth_users
WHERE lower(email) = ?
ORDER BY created_at, id
LIMIT 1`

// FindByEmail returns the oldest row whose lowercased email is email.
//
// Errors: ENOTFOUND, EUNAVAILABLE.
func (s *Store) FindByEmail(ctx context.Context, email string) (authd.User, error) {
	u, err := scanUser(s.db.QueryRowContext(ctx, findByEmail, strings.ToLower(email)))
	if errors.Is(err, sql.ErrNoRows) {
		return authd.User{}, authd.Errorf(authd.ENOTFOUND, "user not found")
	}
	if err != nil {
		return authd.User{}, unavailable(err)
	}
	return u, nil
}

const caseDuplicates = `
SELECT lower(email), id, email, created_at, last_verified_at FROM auth_users
WHERE lower(email) IN (
    SELECT lower(email) FROM auth_users GROUP BY lower(email) HAVING count(*) > 1
)
ORDER BY lower(email), created_at, id`

// CaseDuplicates lists the groups of rows whose emails differ only in
// letter case, ordered by lowercased email, each group oldest first.
//
// Errors: EUNAVAILABLE.
func (s *Store) CaseDuplicates(ctx context.Context) ([][]authd.User, error) {
	rows, err := s.db.QueryContext(ctx, caseDuplicates)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rows.Close()
	var groups [][]authd.User
	last := ""
	for rows.Next() {
		// Group on SQLite's lower(), not Go's: they disagree outside
		// ASCII, and the query grouped with SQLite's.
		var key string
		u, err := scanUser(rows, &key)
		if err != nil {
			return nil, unavailable(err)
		}
		if len(groups) == 0 || key != last {
			groups = append(groups, nil)
			last = key
		}
		groups[len(groups)-1] = append(groups[len(groups)-1], u)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable(err)
	}
	return groups, nil
}

// scanUser reads [before...,] id, email, created_at, last_verified_at. A
// NULL last_verified_at reads as the zero time.
func scanUser(row interface{ Scan(...any) error }, before ...any) (authd.User, error) {
	var (
		u            authd.User
		created      string
		lastVerified sql.NullString
		err          error
	)
	if err := row.Scan(append(before, &u.ID, &u.Email, &created, &lastVerified)...); err != nil {
		return authd.User{}, err
	}
	if u.CreatedAt, err = parseTime(created); err != nil {
		return authd.User{}, err
	}
	if lastVerified.Valid {
		if u.LastVerifiedAt, err = parseTime(lastVerified.String); err != nil {
			return authd.User{}, err
		}
	}
	return u, nil
}

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

func parseTime(s string) (time.Time, error) {
	t, err := time.ParseInLocation(parseLayout, s, time.UTC)
	if err != nil {
		return time.Time{}, fmt.Errorf("auth_users holds a timestamp in an unknown form: %w", err)
	}
	return t, nil
}
