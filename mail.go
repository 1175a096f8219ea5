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
	// Link, when set, signs in with the code: the hosted sign-in's mail
	// carries both (it holds the code, and is sealed with it).
	Link string
	// Lang is the mail's language tag ("" the default, English).
	Lang string

	// Address and CodeID name the code in the CodeStore, so a mail for a
	// replaced code can be dropped unsent.
	Address Address
	CodeID  string
	// ReplaceableAt is when the resend cooldown lets a newer code replace
	// this one: before it the code is certainly current and the check can
	// be skipped. Zero: always check.
	ReplaceableAt time.Time
}

// Sender delivers one message.
//
// Errors: a *SendError saying whether a retry may succeed and what failed;
// its text never holds the code or the address in clear.
type Sender interface {
	Send(ctx context.Context, m Message) error
}

// SendError is a failed delivery.
type SendError struct {
	// Temporary failures may succeed later (connection refused, timeouts,
	// 4xx replies); permanent ones will not (5xx, a configuration that a
	// retry cannot fix).
	Temporary bool
	// Reply reports that the server answered the failing command (an SMTP
	// reply), as opposed to not being reached at all (refused, timed out,
	// cut): an outage of the server is waited out, a server that keeps
	// refusing a mail is not.
	Reply bool
	// Session reports a failure of the session, not of this recipient:
	// connecting, TLS, authentication, MAIL FROM or DATA refused. Such a
	// failure meets every mail alike (the server is down or authd's
	// settings are wrong for it); a recipient's own refusal (RCPT TO: no
	// such mailbox) says nothing of the others.
	Session bool
	// Setting names the configuration a session failure points at
	// ("SMTP_TLS", "SMTP_USER", "SMTP_HOST"), for the log; "" when none.
	// Variables that go together are listed comma-separated
	// ("SMTP_HOST, SMTP_PORT"), ready for "check " + Setting.
	Setting string
	Err     error
}

func (e *SendError) Error() string { return "send mail: " + e.Err.Error() }
func (e *SendError) Unwrap() error { return e.Err }

// MailBacklog says whether mail delivery keeps up (internal/delivery's
// Worker): while it is behind, send-code refuses new codes (EUNAVAILABLE)
// rather than accept codes whose mail would come too late for its user.
type MailBacklog interface {
	// Behind returns how far the mail lag (how long the oldest mail held
	// up by authd's own delivery, not by its recipient's server, has
	// waited) is over the bound a new code's mail must not wait past
	// (MAIL_MAX_LAG): 0 while it is under, or when there is no bound. It
	// reads what was last measured and never waits on a store: send-code
	// asks it every time.
	Behind() time.Duration
}

// JobSealer encrypts a Message for the queue, bound to its delivery id: a
// job's payload cannot be opened under another id. Implementation:
// internal/delivery (XChaCha20-Poly1305 with Keys.Mail).
type JobSealer interface {
	// Seal returns m encrypted. Errors: EINTERNAL.
	Seal(deliveryID string, m Message) ([]byte, error)
	// Open returns the message sealed under deliveryID. Errors: EINTERNAL
	// when sealed was not made by Seal with this key and id.
	Open(deliveryID string, sealed []byte) (Message, error)
}
