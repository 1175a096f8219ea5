package httpapi

// The v2 identity tokens: the published keys, the discovery document, and
// verify-proof for services that cannot verify locally (issue 5).

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"
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
	// SignsRS256 reports whether RS256 keys are kept beside the EdDSA
	// ones (a client in the registry, the token keys in the database).
	SignsRS256() bool
	Issuer() string
	CacheMaxAge() time.Duration
}

// DefaultProofMaxAge is verify-proof's max_age_seconds when the request
// names none.
const DefaultProofMaxAge = 900 * time.Second

// maxProofMaxAge bounds max_age_seconds: a year.
const maxProofMaxAge = 365 * 24 * 3600

// verifyCodeV2Response is the v1 proof plus the signed token.
type verifyCodeV2Response struct {
	authd.Proof
	Token     string `json:"token,omitempty"`
	TokenType string `json:"token_type,omitempty"`
	ExpiresIn int64  `json:"expires_in,omitempty"`
}

// verifyProofResponse is verify-proof's answer to every well-formed request.
type verifyProofResponse struct {
	Valid bool `json:"valid"`
	// Reason is set when Valid is false: malformed, unsupported_alg,
	// alg_mismatch, unknown_key, bad_signature, expired, not_yet_valid,
	// wrong_issuer, wrong_audience, not_verified.
	Reason string `json:"reason,omitempty"`
	// Claims are the token's claims or the proof's fields, only when
	// Valid: a refused proof's content is not to be trusted.
	Claims any `json:"claims,omitempty"`
}

// v2Body is verify-code v2's answer.
func v2Body(res authd.VerifyResult) verifyCodeV2Response {
	out := verifyCodeV2Response{Proof: res.Proof}
	if res.Token.Raw != "" {
		out.Token, out.TokenType, out.ExpiresIn = res.Token.Raw, "Bearer", int64(res.Token.ExpiresIn/time.Second)
	}
	return out
}

// handleJWKS serves the published keys from memory. Cache-Control lets
// consumers keep them for the JWKS cache lifetime, which is also how long
// `authd keys rotate` waits by default before signing with a new key.
func handleJWKS(tokens Tokens) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "public, max-age="+strconv.Itoa(int(tokens.CacheMaxAge()/time.Second)))
		w.WriteHeader(http.StatusOK)
		w.Write(tokens.JWKS())
	})
}

// handleDiscovery is a minimal OpenID Connect discovery document: enough
// for standard libraries to find the keys from the issuer alone. Every URL
// comes from AUTHD_ISSUER, never from the request's Host header.
func handleDiscovery(tokens Tokens, signIn bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		iss := tokens.Issuer()
		w.Header().Set("Cache-Control", "public, max-age="+strconv.Itoa(int(tokens.CacheMaxAge()/time.Second)))
		d := map[string]any{
			"issuer":                                iss,
			"jwks_uri":                              strings.TrimSuffix(iss, "/") + "/.well-known/jwks.json",
			"id_token_signing_alg_values_supported": []string{tokens.Algorithm()},
			"subject_types_supported":               []string{"public"},
			"response_types_supported":              []string{"id_token"},
			"claims_supported":                      []string{"iss", "sub", "aud", "email", "email_verified", "iat", "exp", "jti", "nonce"},
		}
		// The hosted sign-in signs EdDSA whatever TOKEN_ALG says (an HS256
		// secret is no one's to verify with but authd), and RS256 for the
		// clients that ask. OIDC Discovery 1.0 §3 wants RS256 listed: the
		// sign-in is offered where RS256 keys are kept (a client in the
		// registry, the keys in the database), and lists both.
		if signIn && tokens.Algorithm() != verify.HS256 && tokens.SignsRS256() {
			discoveryOIDC(d, iss)
		}
		writeJSON(w, http.StatusOK, d)
	})
}

var errNotNumber = errors.New("not a number")

// verifyProofInput is a decoded verify-proof request.
type verifyProofInput struct {
	token    string
	proof    *authd.Proof
	audience string // "" when the request said "*": any project
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
	// The audience is required: a token of any project accepted where one
	// project's was meant is the confusion this check exists to stop.
	// "*" says "any project" on purpose.
	switch aud, ok := f.str("audience", true); {
	case !ok && (f.raw["audience"] == nil || string(f.raw["audience"]) == "null"):
		f.errs = append(f.errs, FieldError{Loc: []any{"body", "audience"}, Msg: `Field required: the project_id the token or proof must be for, or "*" for any project`, Type: "missing"})
	case ok && aud != "*" && !authd.ValidProjectID(aud):
		f.fail("audience", "string_pattern_mismatch", "String should match pattern '"+projectPattern+`' or be "*"`)
	case ok && aud != "*":
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
func handleVerifyProof(tokens Tokens, proofs *verify.ProofVerifier, org *origins) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := readBody(r)
		if err == nil {
			if aud := projectOf(body, "audience"); aud != "" && aud != "*" {
				err = org.forProject(r, aud)
			} else {
				err = org.forAny(r)
			}
		}
		if err != nil {
			writeError(w, err)
			return
		}
		req, err := decodeVerifyProof(body)
		if err != nil {
			writeError(w, err)
			return
		}
		var claims any
		if req.proof != nil {
			err = proofs.VerifyMaxAge(*req.proof, req.audience, req.maxAge)
			claims = map[string]any{
				"auth_user_id": req.proof.AuthUserID, "email": req.proof.Email, "project_id": req.proof.ProjectID,
				"verified": req.proof.Verified, "issued_at": req.proof.IssuedAt,
			}
		} else {
			v := verify.TokenVerifier{Keys: tokens, Issuer: tokens.Issuer(), Audience: req.audience, AnyAudience: req.audience == ""}
			var c verify.Claims
			c, err = v.Verify(r.Context(), req.token)
			claims = c
		}
		if err != nil {
			writeJSON(w, http.StatusOK, verifyProofResponse{Valid: false, Reason: verify.ReasonOf(err)})
			return
		}
		writeJSON(w, http.StatusOK, verifyProofResponse{Valid: true, Claims: claims})
	})
}
