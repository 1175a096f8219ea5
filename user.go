package authd

import (
	"context"
	"time"
)

// User is a row of the auth_users table, the original service's, adopted as
// it is: timestamps are naive UTC.
type User struct {
	ID             string // UUID
	Email          string
	CreatedAt      time.Time
	LastVerifiedAt time.Time
}

// UserStore keeps the users who have verified an address. Implementations:
// internal/postgres, internal/sqlite. Emails are passed normalised
// (NormalizeEmail); rows made by the original may differ in letter case and
// are matched case-insensitively, the oldest winning.
type UserStore interface {
	// UpsertVerified records a verification of email at `at` in one
	// statement and returns the user: the oldest row whose lowercased email
	// equals email (its last_verified_at updated), or a new row. Concurrent
	// first calls for one address return the same user.
	//
	// Errors: EUNAVAILABLE.
	UpsertVerified(ctx context.Context, email string, at time.Time) (User, error)

	// FindByEmail returns the oldest row matching email case-insensitively.
	//
	// Errors: ENOTFOUND, EUNAVAILABLE.
	FindByEmail(ctx context.Context, email string) (User, error)

	// CaseDuplicates lists the groups of rows whose emails differ only in
	// letter case, each group oldest first.
	//
	// Errors: EUNAVAILABLE.
	CaseDuplicates(ctx context.Context) ([][]User, error)

	// DeleteByEmail deletes every row matching email case-insensitively
	// (erasure on request: case variants too) and reports how many.
	//
	// Errors: EUNAVAILABLE.
	DeleteByEmail(ctx context.Context, email string) (int, error)

	// Ping checks that the store answers.
	//
	// Errors: EUNAVAILABLE.
	Ping(ctx context.Context) error
}
