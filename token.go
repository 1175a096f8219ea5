package authd

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"time"
)

// TokenClaims are what a v2 identity token asserts. The issuer, the token's
// id and its lifetime are the issuer's to set.
type TokenClaims struct {
	Subject  string    // auth_user_id
	Audience string    // project_id
	Email    string    // the normalised address
	Nonce    string    // the client's own value, "" for none
	IssuedAt time.Time // the verification's time

	// The hosted sign-in's (signin.go); zero for the v2 API's tokens.
	AuthTime  time.Time // auth_time: when the user proved the mailbox
	AMR       []string  // amr: ["otp"] (the code typed) or ["link"]
	Algorithm string    // the client's id_token_signed_response_alg: "RS256", or "" for the issuer's
}

// Token is a signed identity token: a compact JWS (JWT).
type Token struct {
	Raw       string
	KeyID     string
	ExpiresIn time.Duration
}

// TokenIssuer signs identity tokens. Implementation: internal/jwt.
type TokenIssuer interface {
	// IssueToken signs c with the current signing key.
	//
	// Errors: EUNAVAILABLE when no signing key is loaded, EINTERNAL when the
	// random source or the signer fails.
	IssueToken(ctx context.Context, c TokenClaims) (Token, error)
}

// SigningKey is a token signing key as stored: the public half as it is,
// the private half sealed with the key derived from AUTHD_MASTER_KEY
// (Keys.Token), bound to ID. A key signs from ActiveFrom until the next
// key's ActiveFrom, and is published before (so consumers fetch it before
// they meet it) and after (until every token it signed has expired).
type SigningKey struct {
	ID               string // kid
	Algorithm        string // "EdDSA"
	PublicKey        []byte // raw Ed25519 public key
	SealedPrivateKey []byte // XChaCha20-Poly1305 nonce || ciphertext
	CreatedAt        time.Time
	ActiveFrom       time.Time
}

// KeyStore keeps the token signing keys in the database, so that every
// instance signs with the same key and publishes the same set.
// Implementations: internal/postgres, internal/sqlite.
type KeyStore interface {
	// SigningKeys returns every stored key, ordered by ActiveFrom then ID.
	//
	// Errors: EUNAVAILABLE.
	SigningKeys(ctx context.Context) ([]SigningKey, error)

	// EnsureSigningKey makes the first key: under a database-wide lock, when
	// no key is stored it calls gen once and stores its key. It returns the
	// stored keys (as SigningKeys does). Instances starting together on an
	// empty database make one key between them.
	//
	// Errors: EUNAVAILABLE, or gen's error as it is.
	EnsureSigningKey(ctx context.Context, gen func() (SigningKey, error)) ([]SigningKey, error)

	// AddSigningKey stores k.
	//
	// Errors: EINVALID when a key with k.ID is stored, EUNAVAILABLE.
	AddSigningKey(ctx context.Context, k SigningKey) error

	// ResealSigningKey stores next as the sealed private key of id in
	// place of prev (a master-key rotation).
	//
	// Errors: ENOTFOUND when id is not stored, EINVALID when its sealed
	// key is not prev, EUNAVAILABLE.
	ResealSigningKey(ctx context.Context, id string, prev, next []byte) error

	// DeleteSigningKey removes the key id.
	//
	// Errors: ENOTFOUND, EUNAVAILABLE.
	DeleteSigningKey(ctx context.Context, id string) error
}

// FileKey is a key of a key file (TOKEN_KEY_FILE): every one is published;
// the one with a Private half signs.
type FileKey struct {
	Public  ed25519.PublicKey
	Private ed25519.PrivateKey // the first PRIVATE KEY block's only
}

// ParseKeyFile reads Ed25519 keys from PEM: PKCS #8 PRIVATE KEY and PKIX
// PUBLIC KEY blocks, nothing else. The first private key signs; the
// others, private or public, are published only (to rotate, put a new key
// first and keep the old one after it until its tokens have expired).
//
// Errors: EINVALID naming the block at fault, or saying that no block is a
// private key.
func ParseKeyFile(b []byte) ([]FileKey, error) {
	var out []FileKey
	signing := false
	for i := 1; ; i++ {
		var block *pem.Block
		if block, b = pem.Decode(b); block == nil {
			break
		}
		var key any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "PUBLIC KEY":
			key, err = x509.ParsePKIXPublicKey(block.Bytes)
		default:
			return nil, Errorf(EINVALID, "block %d is a %q, want PRIVATE KEY or PUBLIC KEY", i, block.Type)
		}
		if err != nil {
			return nil, &Error{Code: EINVALID, Message: fmt.Sprintf("block %d does not parse", i), Err: err}
		}
		switch k := key.(type) {
		case ed25519.PrivateKey:
			fk := FileKey{Public: k.Public().(ed25519.PublicKey)}
			if !signing {
				fk.Private, signing = k, true
			}
			out = append(out, fk)
		case ed25519.PublicKey:
			out = append(out, FileKey{Public: k})
		default:
			return nil, Errorf(EINVALID, "block %d is not an Ed25519 key", i)
		}
	}
	if !signing {
		return nil, Errorf(EINVALID, "no PRIVATE KEY block (PKCS #8 Ed25519)")
	}
	return out, nil
}
