package authd

import "errors"

// Why a code was refused. The answer is one 401 for all of them (DESIGN.md
// §2, no oracle for the caller); only metrics tell them apart.
const (
	CodeWrong   = "wrong"   // a live code, another value
	CodeExpired = "expired" // no live code: expired, used, replaced or never sent
	CodeBurnt   = "burnt"   // the code died of too many wrong tries
)

// CodeRefused is ErrInvalidCode carrying why, for CodeStore implementations
// that can tell. errors.Is(err, ErrInvalidCode) holds for it.
func CodeRefused(reason string) *Error {
	e := *ErrInvalidCode
	e.reason = reason
	return &e
}

// Is makes every ECODE refusal match ErrInvalidCode, whatever its reason.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t == ErrInvalidCode && e.Code == ECODE
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
