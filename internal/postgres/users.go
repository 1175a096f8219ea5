package postgres

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/authd/authd"
)

// upsertVerified is UpsertVerified's one statement. The oldest row matching
// case-insensitively wins (the original service left case variants behind);
// without one, a new row is inserted. Two first verifications racing both
// see no row and both insert: the loser's INSERT waits on the unique index
// for the winner to commit, then its ON CONFLICT updates the winner's row
// and returns the winner's id, so neither fails. ON CONFLICT (email) needs
// a unique index on exactly (email): migration 00001 makes sure there is
// one.
const upsertVerified = `
WITH oldest AS (
    SELECT id FROM auth_users
    WHERE lower(email) = $1::text
    ORDER BY created_at, id
    LIMIT 1
), updated AS (
    UPDATE auth_users u SET last_verified_at = $2::timestamp
    FROM oldest
    WHERE u.id = oldest.id
    RETURNING u.id, u.email, u.created_at, u.last_verified_at
), inserted AS (
    INSERT INTO auth_users (id, email, created_at, last_verified_at)
    SELECT $3::uuid, $1::text, $2::timestamp, $2::timestamp
    WHERE NOT EXISTS (SELECT 1 FROM oldest)
    ON CONFLICT (email) DO UPDATE SET last_verified_at = EXCLUDED.last_verified_at
    RETURNING id, email, created_at, last_verified_at
)
SELECT id, email, created_at, last_verified_at FROM updated
UNION ALL
SELECT id, email, created_at, last_verified_at FROM inserted`

// UpsertVerified records a verification of email at `at`. The returned
// User's Email is the row's, which for a row the original made may differ
// from email in letter case. email is lowercased again in case a caller
// skipped authd.NormalizeEmail: a mixed-case row would never be found by the
// lowercase lookups.
//
// Errors: EUNAVAILABLE.
//
// Concurrent calls share statements (batch.go).
func (s *Store) UpsertVerified(ctx context.Context, email string, at time.Time) (authd.User, error) {
	return s.upsertShared(ctx, strings.ToLower(email), at)
}

// upsertOne is one address's upsertVerified.
func (s *Store) upsertOne(ctx context.Context, email string, at time.Time) (authd.User, error) {
	// timestamp columns are naive UTC, and pgx writes a time.Time's wall
	// clock in its own location: convert first.
	row := s.pool.QueryRow(ctx, upsertVerified, email, at.UTC(), uuid.NewString())
	u, err := scanUser(row)
	if err != nil {
		return authd.User{}, unavailable(err)
	}
	return u, nil
}

const findByEmail = `
SELECT id, email, created_at, last_verified_at FROM auth_users
WHERE lower(email) = $1::text
ORDER BY created_at, id
LIMIT 1`

// FindByEmail returns the oldest row whose lowercased email is email.
//
// Errors: ENOTFOUND, EUNAVAILABLE.
func (s *Store) FindByEmail(ctx context.Context, email string) (authd.User, error) {
	u, err := scanUser(s.pool.QueryRow(ctx, findByEmail, strings.ToLower(email)))
	if errors.Is(err, pgx.ErrNoRows) {
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
// letter case, ordered by lowercased email, each group oldest first. It
// reads the whole table: it is for the operator's CLI, not a request path.
//
// Errors: EUNAVAILABLE.
func (s *Store) CaseDuplicates(ctx context.Context) ([][]authd.User, error) {
	rows, err := s.pool.Query(ctx, caseDuplicates)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rows.Close()
	var groups [][]authd.User
	last := ""
	for rows.Next() {
		// Group on PostgreSQL's lower(), not Go's: they may disagree
		// outside ASCII, and the query grouped with PostgreSQL's.
		key, u, err := scanKeyedUser(rows)
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

// scanUser reads id, email, created_at, last_verified_at. A row the original
// made may have a NULL last_verified_at: it reads as the zero time.
func scanUser(row pgx.Row) (authd.User, error) {
	var (
		u            authd.User
		lastVerified *time.Time
	)
	if err := row.Scan(&u.ID, &u.Email, &u.CreatedAt, &lastVerified); err != nil {
		return authd.User{}, err
	}
	return normalizeTimes(u, lastVerified), nil
}

// scanKeyedUser reads a row of a key (PostgreSQL's lower() of the
// address) and a user, as scanUser.
func scanKeyedUser(row pgx.Row) (string, authd.User, error) {
	var (
		key          string
		u            authd.User
		lastVerified *time.Time
	)
	if err := row.Scan(&key, &u.ID, &u.Email, &u.CreatedAt, &lastVerified); err != nil {
		return "", authd.User{}, err
	}
	return key, normalizeTimes(u, lastVerified), nil
}

// normalizeTimes marks the naive timestamps as UTC and sets LastVerifiedAt.
func normalizeTimes(u authd.User, lastVerified *time.Time) authd.User {
	u.CreatedAt = u.CreatedAt.UTC()
	if lastVerified != nil {
		u.LastVerifiedAt = lastVerified.UTC()
	}
	return u
}
