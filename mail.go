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

// JobSealer encrypts a Message for the queue, bound to its delivery id: a
// job's payload cannot be opened under another id. Implementation:
// internal/mailer (XChaCha20-Poly1305 with Keys.Mail).
type JobSealer interface {
	// Seal returns m encrypted. Errors: EINTERNAL.
	Seal(deliveryID string, m Message) ([]byte, error)
	// Open returns the message sealed under deliveryID. Errors: EINTERNAL
	// when sealed was not made by Seal with this key and id.
	Open(deliveryID string, sealed []byte) (Message, error)
}
