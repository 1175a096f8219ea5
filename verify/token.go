package verify

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// The signature algorithms authd signs with.
const (
	EdDSA = "EdDSA" // Ed25519, the default: consumers hold only the public key
	HS256 = "HS256" // HMAC-SHA256 with TOKEN_HS256_SECRET, a shared secret
)

// Key is a verification key: an ed25519.PublicKey for EdDSA, the secret's
// bytes ([]byte) for HS256.
type Key struct {
	ID        string
	Algorithm string
	Key       any
}

// KeySource finds the key a token names by its kid.
type KeySource interface {
	// Key returns the key kid.
	//
	// Errors (*Error): ReasonUnknownKey, ReasonKeysUnavailable.
	Key(ctx context.Context, kid string) (Key, error)
}

// SharedSecret is the KeySource of HS256 tokens (authd's TOKEN_ALG=HS256):
// every kid names the one secret.
type SharedSecret []byte

// Key returns the secret as an HS256 key.
func (s SharedSecret) Key(_ context.Context, kid string) (Key, error) {
	return Key{ID: kid, Algorithm: HS256, Key: []byte(s)}, nil
}

// Claims are the claims of an authd identity token.
type Claims struct {
	Issuer        string   `json:"iss"`
	Subject       string   `json:"sub"` // auth_user_id
	Audience      []string `json:"aud"` // project_id
	Email         string   `json:"email"`
	EmailVerified bool     `json:"email_verified"`
	IssuedAt      int64    `json:"iat"`
	Expiry        int64    `json:"exp"`
	NotBefore     int64    `json:"nbf,omitempty"`
	ID            string   `json:"jti"`
	Nonce         string   `json:"nonce,omitempty"`
}

// TokenVerifier checks authd identity tokens. It is safe for concurrent
// use once set up.
type TokenVerifier struct {
	// Keys finds the signing keys: a *JWKS (the published keys) or a
	// SharedSecret (HS256).
	Keys KeySource
	// Issuer is authd's AUTHD_ISSUER; tokens of any other issuer are
	// refused. Required.
	Issuer string
	// Audience is the project_id the caller expects. Required unless
	// AnyAudience is set: a token issued for another project would
	// otherwise pass.
	Audience    string
	AnyAudience bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Leeway tolerates clocks that disagree. Zero means 30 s.
	Leeway time.Duration
}

// header is the part of the JOSE header read before the signature is
// checked: only to pick the key and refuse what may never be tried.
type header struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
}

// Verify checks raw's signature with the key its kid names, requiring the
// key's own algorithm (never the one the token asks for), then its issuer,
// audience, lifetime and email_verified, and returns its claims.
//
// Errors (*Error): ReasonMalformed, ReasonUnsupportedAlg, ReasonAlgMismatch,
// ReasonUnknownKey, ReasonKeysUnavailable, ReasonBadSignature,
// ReasonWrongIssuer, ReasonWrongAudience, ReasonExpired,
// ReasonNotYetValid, ReasonNotVerified.
func (v *TokenVerifier) Verify(ctx context.Context, raw string) (Claims, error) {
	if v.Keys == nil || v.Issuer == "" || (v.Audience == "" && !v.AnyAudience) {
		return Claims{}, errors.New("verify: TokenVerifier needs Keys, Issuer and Audience (or AnyAudience)")
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 || len(raw) > 16<<10 {
		return Claims{}, refuse(ReasonMalformed, errors.New("not a compact JWS"))
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return Claims{}, refuse(ReasonMalformed, err)
	}
	var h header
	if err := json.Unmarshal(hb, &h); err != nil {
		return Claims{}, refuse(ReasonMalformed, err)
	}
	if h.Alg != EdDSA && h.Alg != HS256 {
		return Claims{}, refuse(ReasonUnsupportedAlg, nil)
	}
	key, err := v.Keys.Key(ctx, h.Kid)
	if err != nil {
		return Claims{}, err
	}
	// The key decides the algorithm: an HS256 token "signed" with a
	// published public key as its secret must not pass.
	if key.Algorithm != h.Alg {
		return Claims{}, refuse(ReasonAlgMismatch, nil)
	}
	switch k := key.Key.(type) {
	case ed25519.PublicKey:
		if key.Algorithm != EdDSA || len(k) != ed25519.PublicKeySize {
			return Claims{}, refuse(ReasonAlgMismatch, nil)
		}
	case []byte:
		if key.Algorithm != HS256 || len(k) == 0 {
			return Claims{}, refuse(ReasonAlgMismatch, nil)
		}
	default:
		return Claims{}, refuse(ReasonAlgMismatch, nil)
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(key.Algorithm)})
	if err != nil {
		return Claims{}, refuse(ReasonMalformed, err)
	}
	var std jwt.Claims
	var c Claims
	if err := tok.Claims(key.Key, &std); err != nil {
		if errors.Is(err, jose.ErrCryptoFailure) {
			return Claims{}, refuse(ReasonBadSignature, nil)
		}
		return Claims{}, refuse(ReasonMalformed, err)
	}
	// The signature holds: the payload is the signer's. Read it once more,
	// strictly, for what jwt.Claims does not hold.
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err == nil {
		err = readClaims(payload, &c)
	}
	if err != nil {
		return Claims{}, refuse(ReasonMalformed, err)
	}
	c.Issuer, c.Subject, c.Audience, c.ID = std.Issuer, std.Subject, []string(std.Audience), std.ID
	if std.IssuedAt != nil {
		c.IssuedAt = int64(*std.IssuedAt)
	}
	if std.NotBefore != nil {
		c.NotBefore = int64(*std.NotBefore)
	}
	if std.Expiry == nil || c.Subject == "" {
		return Claims{}, refuse(ReasonMalformed, errors.New("no exp or sub"))
	}
	c.Expiry = int64(*std.Expiry)
	if c.Issuer != v.Issuer {
		return c, refuse(ReasonWrongIssuer, nil)
	}
	if !v.AnyAudience && !slices.Contains(c.Audience, v.Audience) {
		return c, refuse(ReasonWrongAudience, nil)
	}
	now := time.Now()
	if v.Now != nil {
		now = v.Now()
	}
	leeway := v.Leeway
	if leeway == 0 {
		leeway = 30 * time.Second
	}
	if !now.Before(std.Expiry.Time().Add(leeway)) {
		return c, refuse(ReasonExpired, nil)
	}
	for _, t := range []*jwt.NumericDate{std.IssuedAt, std.NotBefore} {
		if t != nil && t.Time().After(now.Add(leeway)) {
			return c, refuse(ReasonNotYetValid, nil)
		}
	}
	if !c.EmailVerified {
		return c, refuse(ReasonNotVerified, nil)
	}
	return c, nil
}

// readClaims reads email, email_verified and nonce from a token's payload
// with their names' exact case ("EMAIL" is not "email", as it would be to
// encoding/json), and refuses a payload that gives any claim twice: of two
// values, no reader may pick one the other reader did not.
func readClaims(payload []byte, c *Claims) error {
	dec := json.NewDecoder(bytes.NewReader(payload))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return errors.New("the payload is not a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		name, _ := t.(string)
		if seen[name] {
			return fmt.Errorf("claim %q given twice", name)
		}
		seen[name] = true
		var dst any = new(json.RawMessage)
		switch name {
		case "email":
			dst = &c.Email
		case "email_verified":
			dst = &c.EmailVerified
		case "nonce":
			dst = &c.Nonce
		}
		if err := dec.Decode(dst); err != nil {
			return fmt.Errorf("claim %q: %v", name, err)
		}
	}
	if _, err := dec.Token(); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the payload")
	}
	return nil
}
