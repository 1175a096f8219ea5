package httpapi

import (
	"errors"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/authd/authd"
)

// The messages existing clients of the original service read, verbatim.
const (
	msgCodeSent     = "Verification code sent successfully"
	msgInvalidCode  = "Invalid or expired verification code"
	msgTooMany      = "Too many requests. Please try again later."
	msgUnavailable  = "Service temporarily unavailable"
	msgInternal     = "Internal Server Error"
	msgUnsupported  = "Unsupported Media Type: send application/json"
	msgBodyTooLarge = "Request body too large"
)

// FieldError is one item of a 422 body, in FastAPI's shape. It never carries
// the submitted value.
type FieldError struct {
	Loc  []any  `json:"loc"`
	Msg  string `json:"msg"`
	Type string `json:"type"`
}

// apiError is every error body authd writes: FastAPI's {"detail": ...}, where
// detail is a message or, for 422, a list of FieldError.
type apiError struct {
	status  int
	Detail  any `json:"detail"`
	headers http.Header
}

func (e *apiError) Error() string {
	if s, ok := e.Detail.(string); ok {
		return s
	}
	return http.StatusText(e.status)
}
func (e *apiError) GetStatus() int               { return e.status }
func (e *apiError) GetHeaders() http.Header      { return e.headers }
func (e *apiError) ContentType(ct string) string { return ct }

// ErrorBody is the schema of every error answer, for the OpenAPI document.
type ErrorBody struct {
	Detail any `json:"detail" doc:"A message, or for 422 a list of {loc, msg, type}"`
}

func validationError(errs ...FieldError) *apiError {
	return &apiError{status: http.StatusUnprocessableEntity, Detail: errs}
}

// newHumaError replaces huma's RFC 9457 errors with FastAPI's shape. huma
// calls it for what it refuses before a handler runs (body too large, a
// read timeout) and for the errors the handlers return as *apiError.
func newHumaError(status int, msg string, errs ...error) huma.StatusError {
	switch status {
	case http.StatusRequestEntityTooLarge:
		return &apiError{status: status, Detail: msgBodyTooLarge}
	case http.StatusBadRequest, http.StatusUnprocessableEntity:
		if msg == "request body is required" {
			return validationError(FieldError{Loc: []any{"body"}, Msg: "Field required", Type: "missing"})
		}
		// Only huma's own checks reach here (handlers decode bodies
		// themselves); report where, never the value.
		out := make([]FieldError, 0, len(errs))
		for _, e := range errs {
			var d *huma.ErrorDetail
			if errors.As(e, &d) {
				out = append(out, FieldError{Loc: []any{d.Location}, Msg: d.Message, Type: "value_error"})
			}
		}
		if len(out) == 0 {
			out = append(out, FieldError{Loc: []any{"body"}, Msg: "Invalid request", Type: "value_error"})
		}
		return &apiError{status: http.StatusUnprocessableEntity, Detail: out}
	}
	if status >= 500 {
		return &apiError{status: status, Detail: msgInternal}
	}
	if msg == "" {
		msg = http.StatusText(status)
	}
	return &apiError{status: status, Detail: msg}
}

func init() {
	// huma builds its error bodies through this package variable; authd
	// keeps the original's FastAPI bodies everywhere.
	huma.NewError = newHumaError
}

// fromDomain maps a domain error to its answer: the one table of codes to
// statuses. Internal causes are logged here, callers see a stable message.
func fromDomain(log *slog.Logger, err error) error {
	var e *authd.Error
	if !errors.As(err, &e) {
		log.Error("unexpected error", "err", redactAddresses(err))
		return &apiError{status: http.StatusInternalServerError, Detail: msgInternal}
	}
	switch e.Code {
	case authd.EINVALID:
		field := e.Field
		if field == "" {
			field = "body"
		}
		return validationError(FieldError{Loc: []any{"body", field}, Msg: e.Message, Type: "value_error"})
	case authd.ECODE:
		return &apiError{status: http.StatusUnauthorized, Detail: msgInvalidCode}
	case authd.ERATELIMITED:
		h := http.Header{}
		h.Set("Retry-After", strconv.Itoa(retryAfterSeconds(e.RetryAfter)))
		return &apiError{status: http.StatusTooManyRequests, Detail: msgTooMany, headers: h}
	case authd.EUNAVAILABLE:
		log.Warn("dependency unavailable", "what", e.Message, "err", redactAddresses(e.Err))
		h := http.Header{}
		h.Set("Retry-After", "1")
		return &apiError{status: http.StatusServiceUnavailable, Detail: msgUnavailable, headers: h}
	case authd.ENOTFOUND:
		return &apiError{status: http.StatusNotFound, Detail: "Not Found"}
	}
	log.Error("internal error", "err", redactAddresses(err))
	return &apiError{status: http.StatusInternalServerError, Detail: msgInternal}
}

// addressRE finds what looks like an email address in a driver's message
// (PostgreSQL puts the offending value in its error detail).
var addressRE = regexp.MustCompile(`[^\s@"'<>()\[\]=,;:]+@[^\s@"'<>()\[\]=,;:]+`)

// redactAddresses is err's text with every address masked as a***@domain:
// a dependency's error may quote the address, the log must not.
func redactAddresses(err error) string {
	if err == nil {
		return ""
	}
	return addressRE.ReplaceAllStringFunc(err.Error(), authd.MaskEmail)
}

// retryAfterSeconds rounds up: a client that waits the advertised time must
// not be refused again.
func retryAfterSeconds(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return s
}

// resetSeconds rounds up, like Retry-After, but a full bucket resets in 0.
func resetSeconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return retryAfterSeconds(d)
}
