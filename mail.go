package authd

import (
	"context"
	"time"
)

// Message is one verification mail. Code is the plaintext code: a Message
// lives only in memory; at rest (the mail queue) it is sealed by a
// JobSealer (delivery.go).
type Message struct {
	// To is the normalised address (Unicode domain); senders encode the
	// domain for SMTP with ASCIIEmail.
	To          string
	ProjectID   string
	ProjectName string // display name; never the raw project_id
	Code        string
	TTL         time.Duration
	ExpiresAt   time.Time

	// AddressKey and CodeID name the code in the CodeStore, so a mail for a
	// replaced code can be dropped unsent.
	AddressKey string
	CodeID     string
	// ReplaceableAt is when the resend cooldown lets a newer code replace
	// this one: before it the code is certainly current and the check can
	// be skipped. Zero: always check.
	ReplaceableAt time.Time
}

// Sender delivers one message.
//
// Errors: a *SendError saying whether a retry may succeed.
type Sender interface {
	Send(ctx context.Context, m Message) error
}

// SendError is a failed delivery. Temporary failures (connection refused,
// timeouts, 4xx replies) may succeed later; permanent ones (5xx) will not.
type SendError struct {
	Temporary bool
	Err       error
}

func (e *SendError) Error() string { return "send mail: " + e.Err.Error() }
func (e *SendError) Unwrap() error { return e.Err }
