package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/authd/authd"
)

// readBody reads a POST's JSON body, checking in the order the answers have
// always come: over MaxBodyBytes is 413, an empty body 422 "Field
// required" (whatever its type), a type that is not JSON 415.
//
// The rest of an oversized body is left unread: net/http discards a little
// of it and closes the connection.
func readBody(r *http.Request) ([]byte, error) {
	var body []byte
	var err error
	whole := false
	if p, ok := r.Body.(*prereadBody); ok {
		body, whole, err = p.whole()
	}
	if !whole {
		body, err = io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	}
	switch {
	case len(body) > MaxBodyBytes:
		return nil, &apiError{status: http.StatusRequestEntityTooLarge, Detail: msgBodyTooLarge}
	case err != nil:
		// The client stalled past the server's read deadline, or sent a
		// body that does not parse as HTTP (bad chunking, cut short).
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, &apiError{status: http.StatusRequestTimeout, Detail: msgReadTimeout}
		}
		return nil, &apiError{status: http.StatusInternalServerError, Detail: msgInternal}
	case len(body) == 0:
		return nil, missingBody()
	}
	if err := checkContentType(r.Header.Get("Content-Type")); err != nil {
		return nil, err
	}
	return body, nil
}

// projectOf is the string field (project_id, audience) a body names, ""
// when it names none or is not a JSON object: which project's origins a
// browser request is checked against, before the body is validated.
func projectOf(body []byte, field string) string {
	var raw map[string]json.RawMessage
	var p string
	if json.Unmarshal(body, &raw) != nil || json.Unmarshal(raw[field], &p) != nil {
		return ""
	}
	return p
}

func missingBody() *apiError {
	return validationError(FieldError{Loc: []any{"body"}, Msg: "Field required", Type: "missing"})
}

// checkContentType accepts JSON (application/json, +json types) and a
// missing Content-Type, read as JSON as FastAPI did, for the original's
// server-side clients. Anything else is 415 — forms and text/plain above
// all: those are what a web page can make a browser send cross-site
// without asking (CORS "simple" requests; FastAPI stopped reading them as
// JSON for this, CVE-2021-32677).
func checkContentType(ct string) error {
	if ct == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json")) {
		return nil
	}
	return &apiError{status: http.StatusUnsupportedMediaType, Detail: msgUnsupported}
}

// fields reads a JSON object of string fields the way the original's
// pydantic models did: unknown fields ignored, every problem reported at
// once in FastAPI's list shape, the submitted values never echoed.
type fields struct {
	raw  map[string]json.RawMessage
	errs []FieldError
}

func decodeObject(body []byte) (*fields, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, missingBody()
	}
	// One pass: Unmarshal checks the whole body's syntax before it looks at
	// types, so a syntax error and "not an object" stay apart.
	f := &fields{}
	err := json.Unmarshal(body, &f.raw)
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &te) || (err == nil && f.raw == nil):
		return nil, validationError(FieldError{Loc: []any{"body"}, Msg: "Input should be a valid dictionary or object to extract fields from", Type: "model_attributes_type"})
	case err != nil:
		pos := 0
		var se *json.SyntaxError
		if errors.As(err, &se) {
			pos = int(se.Offset)
		}
		return nil, validationError(FieldError{Loc: []any{"body", pos}, Msg: "JSON decode error", Type: "json_invalid"})
	}
	return f, nil
}

// str returns the string field name; a missing or non-string field is
// recorded as an error (optional fields may be absent or null).
func (f *fields) str(name string, optional bool) (string, bool) {
	raw, ok := f.raw[name]
	if !ok || (optional && string(raw) == "null") {
		if !optional {
			f.errs = append(f.errs, FieldError{Loc: []any{"body", name}, Msg: "Field required", Type: "missing"})
		}
		return "", false
	}
	// decodeObject checked the body's syntax: a string with no escape
	// and valid UTF-8 is its bytes between the quotes, as Unmarshal would
	// give them (it makes each invalid byte U+FFFD), without its pass.
	if n := len(raw); n >= 2 && raw[0] == '"' && bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw[1:n-1]) {
		return string(raw[1 : n-1]), true
	}
	var s string
	// json.Unmarshal leaves a string alone on null; pydantic calls null
	// "not a valid string".
	if err := json.Unmarshal(raw, &s); err != nil || string(bytes.TrimSpace(raw)) == "null" {
		f.errs = append(f.errs, FieldError{Loc: []any{"body", name}, Msg: "Input should be a valid string", Type: "string_type"})
		return "", false
	}
	return s, true
}

func (f *fields) fail(name, typ, msg string) {
	f.errs = append(f.errs, FieldError{Loc: []any{"body", name}, Msg: msg, Type: typ})
}

func (f *fields) err() error {
	if len(f.errs) == 0 {
		return nil
	}
	return validationError(f.errs...)
}

const (
	projectPattern = "^[A-Za-z0-9._-]{1,64}$"
	codePattern    = "^[0-9]{6}$"
)

// email validates and returns the email field as given; the flow
// normalises it.
func (f *fields) email() string {
	s, ok := f.str("email", false)
	if !ok {
		return ""
	}
	if _, err := authd.NormalizeEmail(s); err != nil {
		f.fail("email", "value_error", err.(*authd.Error).Message)
	}
	return s
}

func (f *fields) projectID() string {
	s, ok := f.str("project_id", false)
	if ok && !authd.ValidProjectID(s) {
		f.fail("project_id", "string_pattern_mismatch", "String should match pattern '"+projectPattern+"'")
	}
	return s
}

func (f *fields) code() string {
	s, ok := f.str("code", false)
	if ok && !authd.ValidCode(s, authd.CodeLength) {
		f.fail("code", "string_pattern_mismatch", "String should match pattern '"+codePattern+"'")
	}
	return s
}

// nonce is v2's optional client-chosen value, bound into the token later.
func (f *fields) nonce() string {
	s, ok := f.str("nonce", true)
	if ok && (s == "" || len(s) > 256) {
		f.fail("nonce", "string_too_long", "String should have 1 to 256 characters")
	}
	return s
}

type sendInput struct {
	email, projectID string
}

func decodeSend(body []byte) (sendInput, error) {
	f, err := decodeObject(body)
	if err != nil {
		return sendInput{}, err
	}
	in := sendInput{email: f.email(), projectID: f.projectID()}
	return in, f.err()
}

type verifyInput struct {
	email, projectID, code, nonce string
}

func decodeVerify(body []byte, withNonce bool) (verifyInput, error) {
	f, err := decodeObject(body)
	if err != nil {
		return verifyInput{}, err
	}
	in := verifyInput{email: f.email(), projectID: f.projectID(), code: f.code()}
	if withNonce {
		in.nonce = f.nonce()
	}
	return in, f.err()
}
