package authd

import (
	"errors"
	"fmt"
	"time"
)

// Error codes. Every failure that crosses a package boundary carries one of
// these; the HTTP layer maps them to statuses in one table.
const (
	EINVALID     = "invalid"     // bad input: the request is refused and nothing changed
	ECODE        = "code"        // wrong, expired, used, burned or never-sent code: one answer for all
	ERATELIMITED = "ratelimited" // a limit refused the request; RetryAfter says when to retry
	EUNAVAILABLE = "unavailable" // a dependency is down: nothing was changed or lost, retry later
	ENOTFOUND    = "not_found"   // the thing asked for does not exist
	EINTERNAL    = "internal"    // a bug or an unexpected failure
)

// Error is the one error type of authd's domain. Message is safe to show to
// a caller; Err is the internal cause, for logs only.
type Error struct {
	Code    string
	Message string
	// RetryAfter is set on ERATELIMITED errors, and on EUNAVAILABLE ones
	// that know when to come back (MailBehind).
	RetryAfter time.Duration
	// Limit names the limit that refused the request, for logs and
	// metrics: "send_per_ip", "cooldown", ... (ERATELIMITED), or the bound
	// authd holds itself to, "mail_lag" (EUNAVAILABLE: nothing is down,
	// authd holds requests back; what decided it logs it, once a minute).
	Limit string
	// Field names the offending input (EINVALID only): "email", "code", ...
	Field string
	Err   error
	// reason says why an ECODE refusal happened (see CodeRefused), for
	// metrics only: the caller's answer is the same for every reason.
	reason string
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("authd: %s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("authd: %s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes every ECODE refusal match ErrInvalidCode, whatever its reason.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t == ErrInvalidCode && e.Code == ECODE
}

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Unavailable wraps a dependency failure: callers see a stable message, the
// cause stays for the log.
func Unavailable(what string, err error) *Error {
	return &Error{Code: EUNAVAILABLE, Message: what + " unavailable", Err: err}
}

// ErrorCode returns the code of err, EINTERNAL for errors that are not *Error
// and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrNoDelivery is the answer for a delivery status that is not kept:
// unknown, or its code has expired.
var ErrNoDelivery = &Error{Code: ENOTFOUND, Message: "Delivery not found"}

// ErrInvalidCode is the single answer for every failed verification.
var ErrInvalidCode = &Error{Code: ECODE, Message: "Invalid or expired verification code"}

// RateLimited is the refusal of the limit named limit; RetryAfter is wait
// rounded up to whole seconds, at least one: a client that waits the
// advertised time is not refused again.
func RateLimited(limit string, wait time.Duration) *Error {
	ra := (wait + time.Second - 1).Truncate(time.Second)
	if ra < time.Second {
		ra = time.Second
	}
	return &Error{Code: ERATELIMITED, Message: "Too many requests. Please try again later.", RetryAfter: ra, Limit: limit}
}

// MailBehind is send-code's refusal while mail delivery is behind, over
// by over (MailBacklog.Behind): EUNAVAILABLE with Limit "mail_lag", and a
// RetryAfter of how far over it is (whole seconds, 1 to 60) — the backlog
// must shrink by about that much before a new code's mail comes in time.
func MailBehind(over time.Duration) *Error {
	ra := min(max((over+time.Second-1).Truncate(time.Second), time.Second), time.Minute)
	return &Error{Code: EUNAVAILABLE, Message: "mail delivery is behind", RetryAfter: ra, Limit: "mail_lag"}
}

// CodeRefused is ErrInvalidCode carrying why (CodeWrong, CodeExpired,
// CodeBurnt), for CodeStore implementations that can tell.
// errors.Is(err, ErrInvalidCode) holds for it.
func CodeRefused(reason string) *Error {
	e := *ErrInvalidCode
	e.reason = reason
	return &e
}

// CodeFailureReason returns why an ECODE error refused a code: CodeWrong,
// CodeExpired, CodeBurnt, or "invalid" when the store did not say.
func CodeFailureReason(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Code == ECODE && e.reason != "" {
		return e.reason
	}
	return "invalid"
}
