package httpapi

// The v2 identity tokens: the published keys, the discovery document, and
// verify-proof for services that cannot verify locally (issue 5).

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/verify"
)

// Tokens is what the HTTP layer needs of the token keys: all of it answered
// from memory, never from the database.
type Tokens interface {
	verify.KeySource
	JWKS() []byte // the published keys, a JWK Set document
	Algorithm() string
	Issuer() string
	CacheMaxAge() time.Duration
}

// DefaultProofMaxAge is verify-proof's max_age_seconds when the request
// names none.
const DefaultProofMaxAge = 900 * time.Second

// maxProofMaxAge bounds max_age_seconds: a year.
const maxProofMaxAge = 365 * 24 * 3600

// VerifyCodeV2Response is the v1 proof plus the signed token.
type VerifyCodeV2Response struct {
	authd.Proof
	Token     string `json:"token,omitempty" doc:"A JWT (compact JWS): iss, sub (= auth_user_id), aud (= project_id), email, email_verified, iat, exp, jti, and nonce when the request carried one"`
	TokenType string `json:"token_type,omitempty" example:"Bearer"`
	ExpiresIn int64  `json:"expires_in,omitempty" doc:"Seconds the token stays valid"`
}

// VerifyProofRequest is verify-proof's body, for the OpenAPI document.
type VerifyProofRequest struct {
	Token         string       `json:"token,omitempty" required:"false" doc:"A v2 token; give this or proof"`
	Proof         *authd.Proof `json:"proof,omitempty" required:"false" doc:"A v1 proof, its six fields; give this or token"`
	Audience      string       `json:"audience,omitempty" required:"false" pattern:"^[A-Za-z0-9._-]{1,64}$" doc:"The project_id the caller expects; omitted: any"`
	MaxAgeSeconds int64        `json:"max_age_seconds,omitempty" required:"false" minimum:"1" maximum:"31536000" doc:"Oldest v1 proof accepted, in seconds (default 900)"`
}

// VerifyProofResponse is verify-proof's answer to every well-formed request.
type VerifyProofResponse struct {
	Valid bool `json:"valid"`
	// Reason is set when Valid is false: malformed, unsupported_alg,
	// alg_mismatch, unknown_key, bad_signature, expired, not_yet_valid,
	// wrong_issuer, wrong_audience, not_verified.
	Reason string `json:"reason,omitempty" enum:"malformed,unsupported_alg,alg_mismatch,unknown_key,bad_signature,expired,not_yet_valid,wrong_issuer,wrong_audience,not_verified" doc:"Why the proof is refused; absent when valid"`
	// Claims are the token's claims or the proof's fields, only when
	// Valid: a refused proof's content is not to be trusted.
	Claims any `json:"claims,omitempty"`
}

func init() {
	responseTypes["verify-code-v2"] = reflect.TypeFor[VerifyCodeV2Response]()
	responseTypes["verify-proof-v2"] = reflect.TypeFor[VerifyProofResponse]()
}

var verifyProofRequestSchema = reflect.TypeFor[VerifyProofRequest]()

// v2Body is verify-code v2's answer.
func v2Body(res authd.VerifyResult) VerifyCodeV2Response {
	out := VerifyCodeV2Response{Proof: res.Proof}
	if res.Token.Raw != "" {
		out.Token, out.TokenType, out.ExpiresIn = res.Token.Raw, "Bearer", int64(res.Token.ExpiresIn/time.Second)
	}
	return out
}

// handleJWKS serves the published keys from memory. Cache-Control lets
// consumers keep them for the JWKS cache lifetime, which is also how long
// `authd keys rotate` waits by default before signing with a new key.
func (s *server) handleJWKS() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "public, max-age="+strconv.Itoa(int(s.Tokens.CacheMaxAge()/time.Second)))
		w.WriteHeader(http.StatusOK)
		w.Write(s.Tokens.JWKS())
	})
}

// handleDiscovery is a minimal OpenID Connect discovery document: enough
// for standard libraries to find the keys from the issuer alone. Every URL
// comes from AUTHD_ISSUER, never from the request's Host header.
func (s *server) handleDiscovery() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		iss := s.Tokens.Issuer()
		w.Header().Set("Cache-Control", "public, max-age="+strconv.Itoa(int(s.Tokens.CacheMaxAge()/time.Second)))
		writeJSON(w, http.StatusOK, map[string]any{
			"issuer":                                iss,
			"jwks_uri":                              strings.TrimSuffix(iss, "/") + "/.well-known/jwks.json",
			"id_token_signing_alg_values_supported": []string{s.Tokens.Algorithm()},
			"subject_types_supported":               []string{"public"},
			"response_types_supported":              []string{"id_token"},
			"claims_supported":                      []string{"iss", "sub", "aud", "email", "email_verified", "iat", "exp", "jti", "nonce"},
		})
	})
}

var errNotNumber = errors.New("not a number")

// verifyProofInput is a decoded verify-proof request.
type verifyProofInput struct {
	token    string
	proof    *authd.Proof
	audience string
	maxAge   time.Duration
}

func decodeVerifyProof(body []byte) (verifyProofInput, error) {
	f, err := decodeObject(body)
	if err != nil {
		return verifyProofInput{}, err
	}
	in := verifyProofInput{maxAge: DefaultProofMaxAge}
	tok, hasToken := f.str("token", true)
	_, hasProof := f.raw["proof"]
	if hasProof && string(f.raw["proof"]) == "null" {
		hasProof = false
	}
	switch {
	case hasToken && hasProof:
		f.fail("body", "value_error", "Give token or proof, not both")
	case hasToken:
		if tok == "" {
			f.fail("token", "string_too_short", "String should have at least 1 character")
		}
		in.token = tok
	case hasProof:
		in.proof = f.proofField()
	default:
		if _, ok := f.raw["token"]; !ok || string(f.raw["token"]) == "null" {
			f.errs = append(f.errs, FieldError{Loc: []any{"body", "token"}, Msg: "Give token or proof", Type: "missing"})
		}
	}
	if aud, ok := f.str("audience", true); ok {
		if !authd.ValidProjectID(aud) {
			f.fail("audience", "string_pattern_mismatch", "String should match pattern '"+projectPattern+"'")
		}
		in.audience = aud
	}
	if raw, ok := f.raw["max_age_seconds"]; ok && string(raw) != "null" {
		// A JSON number only: json.Number would also take "60" quoted.
		var v float64
		err := json.Unmarshal(raw, &v)
		if len(raw) > 0 && (raw[0] == '"' || raw[0] == 't' || raw[0] == 'f') {
			err = errNotNumber
		}
		switch {
		case err != nil || v != math.Trunc(v):
			f.fail("max_age_seconds", "int_type", "Input should be a valid integer")
		case v < 1 || v > maxProofMaxAge:
			f.fail("max_age_seconds", "value_error", "Input should be 1 to "+strconv.Itoa(maxProofMaxAge))
		default:
			in.maxAge = time.Duration(v) * time.Second
		}
	}
	return in, f.err()
}

// proofField reads the six fields of a v1 proof with their JSON types; a
// missing or mistyped field is a malformed request.
func (f *fields) proofField() *authd.Proof {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(f.raw["proof"], &obj); err != nil || obj == nil {
		f.fail("proof", "model_attributes_type", "Input should be a valid dictionary or object to extract fields from")
		return nil
	}
	p := &authd.Proof{}
	for _, fd := range []struct {
		name string
		dst  any
		typ  string
	}{
		{"auth_user_id", &p.AuthUserID, "string_type"}, {"email", &p.Email, "string_type"},
		{"project_id", &p.ProjectID, "string_type"}, {"verified", &p.Verified, "bool_type"},
		{"issued_at", &p.IssuedAt, "int_type"}, {"signature", &p.Signature, "string_type"},
	} {
		raw, ok := obj[fd.name]
		if !ok || string(raw) == "null" {
			f.errs = append(f.errs, FieldError{Loc: []any{"body", "proof", fd.name}, Msg: "Field required", Type: "missing"})
			continue
		}
		if err := json.Unmarshal(raw, fd.dst); err != nil {
			f.errs = append(f.errs, FieldError{Loc: []any{"body", "proof", fd.name}, Msg: "Input has the wrong type", Type: fd.typ})
		}
	}
	return p
}

// handleVerifyProof checks a token or a v1 proof for a service that cannot
// verify locally. Every well-formed request gets 200 with valid and, when
// refused, a reason from the documented list; a malformed one gets 422.
func (s *server) handleVerifyProof(ctx context.Context, in *rawInput) (*jsonOutput, error) {
	if err := checkContentType(in.ContentType); err != nil {
		return nil, err
	}
	req, err := decodeVerifyProof(in.RawBody)
	if err != nil {
		return nil, err
	}
	var claims any
	if req.proof != nil {
		err = s.Proofs.VerifyMaxAge(*req.proof, req.audience, req.maxAge)
		claims = map[string]any{
			"auth_user_id": req.proof.AuthUserID, "email": req.proof.Email, "project_id": req.proof.ProjectID,
			"verified": req.proof.Verified, "issued_at": req.proof.IssuedAt,
		}
	} else {
		v := verify.TokenVerifier{Keys: s.Tokens, Issuer: s.Tokens.Issuer(), Audience: req.audience, AnyAudience: req.audience == ""}
		var c verify.Claims
		c, err = v.Verify(ctx, req.token)
		claims = c
	}
	if err != nil {
		return &jsonOutput{Body: VerifyProofResponse{Valid: false, Reason: verify.ReasonOf(err)}}, nil
	}
	return &jsonOutput{Body: VerifyProofResponse{Valid: true, Claims: claims}}, nil
}
