package httpapi

import (
	"errors"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"time"

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
	msgCrossOrigin  = "Cross-origin request refused: this origin is not registered for the project"
	msgBodyTooLarge = "Request body too large"
	msgNotFound     = "Not Found"
	// What huma answered when a body's read hit the server's read
	// deadline; kept so that the access log and metrics read the same.
	msgReadTimeout = "request body read timeout"
)

// FieldError is one item of a 422 body, in FastAPI's shape. It never carries
// the submitted value.
type FieldError struct {
	Loc  []any  `json:"loc"`
	Msg  string `json:"msg"`
	Type string `json:"type"`
}

// apiError is the HTTP layer's one error type, and every error body authd
// writes: FastAPI's {"detail": ...}, where detail is a message or, for 422,
// a list of FieldError. Domain errors become one in fromDomain.
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

func validationError(errs ...FieldError) *apiError {
	return &apiError{status: http.StatusUnprocessableEntity, Detail: errs}
}

// writeError answers err, an *apiError: its headers, its status, its
// FastAPI body. Anything else is a bug, answered as a bare 500.
func writeError(w http.ResponseWriter, err error) {
	var e *apiError
	if !errors.As(err, &e) {
		e = &apiError{status: http.StatusInternalServerError, Detail: msgInternal}
	}
	h := w.Header()
	for k, vs := range e.headers {
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	writeJSON(w, e.status, e)
}

// fromDomain maps a domain error to its answer: the one table of codes to
// statuses. Internal causes are logged here, callers see a stable message.
func fromDomain(log *slog.Logger, err error) *apiError {
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
		// With a Limit nothing is down: authd held the request back itself,
		// and what decided it logs that once a minute, not once a request.
		if e.Limit == "" {
			log.Warn("dependency unavailable", "what", e.Message, "err", redactAddresses(e.Err))
		}
		h := http.Header{}
		h.Set("Retry-After", strconv.Itoa(retryAfterSeconds(e.RetryAfter)))
		return &apiError{status: http.StatusServiceUnavailable, Detail: msgUnavailable, headers: h}
	case authd.ENOTFOUND:
		return &apiError{status: http.StatusNotFound, Detail: msgNotFound}
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
