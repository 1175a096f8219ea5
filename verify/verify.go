// Package verify checks authd's identity proofs in another Go service,
// without calling authd:
//
//   - the v2 token, a JWT signed with Ed25519 ("EdDSA"), against the keys
//     authd publishes at /.well-known/jwks.json (JWKS, cached, refreshed
//     when a token names a key it does not know), or signed with HS256
//     against a shared secret (SharedSecret);
//   - the v1 proof, the original service's HMAC-SHA256 over Python's
//     json.dumps bytes, with SECRET_KEY and a maximum age (ProofVerifier).
//
// Every refusal is an *Error whose Reason is one of the Reason* constants,
// the same list authd's POST /api/v2/auth/verify-proof answers with.
package verify

import (
	"errors"
	"fmt"
)

// The reasons a proof or token is refused.
const (
	ReasonMalformed       = "malformed"        // not a compact JWS / a proof with every field
	ReasonUnsupportedAlg  = "unsupported_alg"  // alg is not EdDSA or HS256 ("none" included)
	ReasonAlgMismatch     = "alg_mismatch"     // alg is not the named key's (HS256 over a public key, ...)
	ReasonUnknownKey      = "unknown_key"      // no published key has the token's kid
	ReasonBadSignature    = "bad_signature"    // the signature does not match
	ReasonExpired         = "expired"          // past exp, or a v1 proof older than the max age
	ReasonNotYetValid     = "not_yet_valid"    // iat / nbf / issued_at in the future
	ReasonWrongIssuer     = "wrong_issuer"     // iss is not the expected issuer
	ReasonWrongAudience   = "wrong_audience"   // aud / project_id is not the expected project
	ReasonNotVerified     = "not_verified"     // email_verified / verified is not true
	ReasonKeysUnavailable = "keys_unavailable" // the JWKS could not be fetched
)

// Reasons lists every reason, for documentation and tests.
var Reasons = []string{
	ReasonMalformed, ReasonUnsupportedAlg, ReasonAlgMismatch, ReasonUnknownKey,
	ReasonBadSignature, ReasonExpired, ReasonNotYetValid, ReasonWrongIssuer,
	ReasonWrongAudience, ReasonNotVerified, ReasonKeysUnavailable,
}

// Error is a refusal: Reason is one of the Reason* constants, Err the cause
// where there is one (a network error, a parse error).
type Error struct {
	Reason string
	Err    error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("verify: %s: %v", e.Reason, e.Err)
	}
	return "verify: " + e.Reason
}

func (e *Error) Unwrap() error { return e.Err }

// ReasonOf returns err's Reason, "" for nil, and ReasonMalformed for an
// error that is not an *Error.
func ReasonOf(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ReasonMalformed
}

func refuse(reason string, err error) error { return &Error{Reason: reason, Err: err} }
