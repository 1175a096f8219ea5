package jwt

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/authd/authd"
	"github.com/authd/authd/verify"
)

// StoreSource keeps the keys in the database (authd.KeyStore), private
// halves sealed under Key (authd.Keys.Token). It makes the first key when
// the store has none, under the store's lock. Keys sealed under an Old
// key (a master-key rotation) open too, until Reseal seals them under Key.
type StoreSource struct {
	Store authd.KeyStore
	Key   []byte           // authd.Keys.Token, derived from AUTHD_MASTER_KEY
	Old   [][]byte         // authd.Keys.OldToken: open, never seal
	Now   func() time.Time // nil: time.Now
	Rand  io.Reader        // nil: crypto/rand
	// RS256 keeps RSA keys beside the EdDSA ones, made at the first load
	// that finds none: a client of the registry asks for RS256 ID tokens.
	RS256 bool

	mu     sync.Mutex
	opened map[string]material // by kid: each key is opened once
}

func (s *StoreSource) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *StoreSource) keys() [][]byte { return append([][]byte{s.Key}, s.Old...) }

// notOpened is the error for a stored key kid that does not open:
// authd.ErrMasterKeyOpensNothing when no stored key opens (the master key
// was changed), or one naming kid when others do (its row was altered).
func (s *StoreSource) notOpened(kid string, stored []authd.SigningKey, err error) error {
	for _, k := range stored {
		if _, _, err := openRaw(s.keys(), k.ID, k.SealedPrivateKey); err == nil {
			return wrapf(authd.EINTERNAL, err, "signing key %s does not open under AUTHD_MASTER_KEY or AUTHD_MASTER_KEY_PREVIOUS, while others do: "+
				"keep the master key it was sealed under in AUTHD_MASTER_KEY_PREVIOUS until `authd keys reseal` has run (README, \"Rotating the master key\")", kid)
		}
	}
	return authd.ErrMasterKeyOpensNothing
}

// Check reports whether the stored keys open under the master keys
// given, without making one: what a start checks before it trusts the
// master key with anything else. It returns the index of the key (0: Key,
// i: Old[i-1]) the oldest stored one opens under, or -1 when none is
// stored.
//
// Errors: EUNAVAILABLE, authd.ErrMasterKeyOpensNothing, EINTERNAL.
func (s *StoreSource) Check(ctx context.Context) (int, error) {
	keys, err := s.Store.SigningKeys(ctx)
	if err != nil {
		return -1, err
	}
	under := -1
	for i, k := range keys {
		_, u, err := openRaw(s.keys(), k.ID, k.SealedPrivateKey)
		if err != nil {
			return -1, s.notOpened(k.ID, keys, err)
		}
		if i == 0 {
			under = u
		}
	}
	return under, nil
}

// Reseal seals every stored key that an Old key opens under Key, and
// reports how many it resealed and how many were under Key already.
//
// Errors: EUNAVAILABLE, authd.ErrMasterKeyOpensNothing, EINTERNAL;
// EINVALID when a key changed while it ran.
func (s *StoreSource) Reseal(ctx context.Context) (resealed, current int, err error) {
	keys, err := s.Store.SigningKeys(ctx)
	if err != nil {
		return 0, 0, err
	}
	for _, k := range keys {
		priv, under, err := openRaw(s.keys(), k.ID, k.SealedPrivateKey)
		if err != nil {
			return resealed, current, s.notOpened(k.ID, keys, err)
		}
		if under == 0 {
			current++
			continue
		}
		next, err := sealRaw(s.Key, k.ID, priv, s.rand())
		if err != nil {
			return resealed, current, wrapf(authd.EINTERNAL, err, "cannot seal the signing key")
		}
		if err := s.Store.ResealSigningKey(ctx, k.ID, k.SealedPrivateKey, next); err != nil {
			return resealed, current, err
		}
		resealed++
	}
	return resealed, current, nil
}

func (s *StoreSource) rand() io.Reader {
	if s.Rand != nil {
		return s.Rand
	}
	return rand.Reader
}

func (s *StoreSource) load(ctx context.Context) ([]material, error) {
	keys, err := s.Store.SigningKeys(ctx)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		now := s.now()
		keys, err = s.Store.EnsureSigningKey(ctx, func() (authd.SigningKey, error) {
			return NewSigningKey(s.Key, now, now, s.rand())
		})
		if err != nil {
			return nil, err
		}
	}
	if s.RS256 && !slices.ContainsFunc(keys, func(k authd.SigningKey) bool { return k.Algorithm == RS256 }) {
		// The first RS256 key, once a client asks for RS256. Instances
		// starting together may each add one: all are published, the
		// last made signs.
		now := s.now()
		k, err := NewRSASigningKey(s.Key, now, now, s.rand())
		if err != nil {
			return nil, err
		}
		if err := s.Store.AddSigningKey(ctx, k); err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opened == nil {
		s.opened = map[string]material{}
	}
	out := make([]material, 0, len(keys))
	for _, k := range keys {
		if m, ok := s.opened[k.ID]; ok && m.activeFrom.Equal(k.ActiveFrom) {
			out = append(out, m)
			continue
		}
		if k.Algorithm == RS256 {
			der, _, err := openRaw(s.keys(), k.ID, k.SealedPrivateKey)
			if err != nil {
				return nil, s.notOpened(k.ID, keys, err)
			}
			pk, err := x509.ParsePKCS8PrivateKey(der)
			rk, ok := pk.(*rsa.PrivateKey)
			if err != nil || !ok {
				return nil, wrapf(authd.EINTERNAL, err, "signing key %s: not an RSA private key", k.ID)
			}
			m := material{id: k.ID, alg: RS256, signs: true, rsa: rk, createdAt: k.CreatedAt, activeFrom: k.ActiveFrom}
			s.opened[k.ID] = m
			out = append(out, m)
			continue
		}
		if k.Algorithm != verify.EdDSA {
			return nil, wrapf(authd.EINTERNAL, nil, "signing key %s: unknown algorithm %q", k.ID, k.Algorithm)
		}
		priv, _, err := open(s.keys(), k.ID, k.SealedPrivateKey)
		if err != nil {
			return nil, s.notOpened(k.ID, keys, err)
		}
		m := material{id: k.ID, alg: verify.EdDSA, signs: true, priv: priv, pub: priv.Public().(ed25519.PublicKey), createdAt: k.CreatedAt, activeFrom: k.ActiveFrom}
		s.opened[k.ID] = m
		out = append(out, m)
	}
	return out, nil
}

// NewSigningKey generates an Ed25519 key that signs from activeFrom, sealed
// under key. Its kid is the RFC 7638 thumbprint of its public key.
func NewSigningKey(key []byte, now, activeFrom time.Time, r io.Reader) (authd.SigningKey, error) {
	pub, priv, err := ed25519.GenerateKey(r)
	if err != nil {
		return authd.SigningKey{}, wrapf(authd.EINTERNAL, err, "cannot generate a signing key")
	}
	kid, err := thumbprint(pub)
	if err != nil {
		return authd.SigningKey{}, err
	}
	sealed, err := seal(key, kid, priv, r)
	if err != nil {
		return authd.SigningKey{}, wrapf(authd.EINTERNAL, err, "cannot seal the signing key")
	}
	return authd.SigningKey{
		ID: kid, Algorithm: verify.EdDSA, PublicKey: pub, SealedPrivateKey: sealed,
		CreatedAt: now.UTC(), ActiveFrom: activeFrom.UTC(),
	}, nil
}

// RS256 is the algorithm of the RSA keys kept for the clients that ask
// for RS256 ID tokens (OIDC Discovery requires an OP to offer it).
const RS256 = "RS256"

// RSABits is the size of the RSA keys authd makes.
const RSABits = 2048

// NewRSASigningKey generates an RSA key that signs RS256 from activeFrom,
// sealed under key (its PKCS #8 DER). Its kid is the RFC 7638 thumbprint
// of its public key.
func NewRSASigningKey(key []byte, now, activeFrom time.Time, r io.Reader) (authd.SigningKey, error) {
	priv, err := rsa.GenerateKey(r, RSABits)
	if err != nil {
		return authd.SigningKey{}, wrapf(authd.EINTERNAL, err, "cannot generate an RSA signing key")
	}
	kid, err := thumbprint(&priv.PublicKey)
	if err != nil {
		return authd.SigningKey{}, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return authd.SigningKey{}, wrapf(authd.EINTERNAL, err, "cannot encode the RSA signing key")
	}
	pub, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		return authd.SigningKey{}, wrapf(authd.EINTERNAL, err, "cannot encode the RSA public key")
	}
	sealed, err := sealRaw(key, kid, der, r)
	if err != nil {
		return authd.SigningKey{}, wrapf(authd.EINTERNAL, err, "cannot seal the signing key")
	}
	return authd.SigningKey{
		ID: kid, Algorithm: RS256, PublicKey: pub, SealedPrivateKey: sealed,
		CreatedAt: now.UTC(), ActiveFrom: activeFrom.UTC(),
	}, nil
}

func thumbprint(pub any) (string, error) {
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", wrapf(authd.EINTERNAL, err, "cannot compute the kid")
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// Rotate stores a new key that is published at once and signs from
// now+delay, and deletes the keys no longer published (their tokens have
// all expired). It returns the new key.
//
// Errors: EUNAVAILABLE, EINTERNAL.
func (src *StoreSource) Rotate(ctx context.Context, delay, ttl time.Duration) (authd.SigningKey, error) {
	now := src.now()
	k, err := NewSigningKey(src.Key, now, now.Add(delay), src.rand())
	if err != nil {
		return authd.SigningKey{}, err
	}
	// The first key, when there is none yet, so the new one has something
	// to take over from (and the history reads as it happened).
	if _, err := src.load(ctx); err != nil {
		return authd.SigningKey{}, err
	}
	if err := src.Store.AddSigningKey(ctx, k); err != nil {
		return authd.SigningKey{}, err
	}
	// The RS256 keys, when kept, rotate with the EdDSA ones.
	stored, err := src.Store.SigningKeys(ctx)
	if err != nil {
		return k, err
	}
	if slices.ContainsFunc(stored, func(k authd.SigningKey) bool { return k.Algorithm == RS256 }) {
		rk, err := NewRSASigningKey(src.Key, now, now.Add(delay), src.rand())
		if err != nil {
			return k, err
		}
		if err := src.Store.AddSigningKey(ctx, rk); err != nil {
			return k, err
		}
	}
	if err := src.Prune(ctx, now, ttl); err != nil {
		return k, err
	}
	return k, nil
}

// Prune deletes the keys that are retired at now: superseded long enough
// ago that every token they signed has expired.
//
// Errors: EUNAVAILABLE, EINTERNAL.
func (src *StoreSource) Prune(ctx context.Context, now time.Time, ttl time.Duration) error {
	infos, err := List(ctx, src, now, ttl)
	if err != nil {
		return err
	}
	for _, ki := range infos {
		if ki.State != "retired" {
			continue
		}
		if err := src.Store.DeleteSigningKey(ctx, ki.ID); err != nil && authd.ErrorCode(err) != authd.ENOTFOUND {
			return err
		}
	}
	return nil
}

// FileSource reads Ed25519 keys from a PEM file (TOKEN_KEY_FILE): the first
// PRIVATE KEY block (PKCS #8) signs, every other block, private or PUBLIC
// KEY, is published only. To rotate, put the new key first and keep the old
// one after it until its tokens have expired; the file is read again at
// every poll.
type FileSource struct {
	Path string
}

func (f FileSource) load(context.Context) ([]material, error) {
	b, err := os.ReadFile(f.Path)
	if err != nil {
		return nil, wrapf(authd.EINTERNAL, err, "TOKEN_KEY_FILE: %v", err)
	}
	return parsePEM(b)
}

// CheckPEM reports whether b is a usable TOKEN_KEY_FILE (see FileSource).
//
// Errors: EINTERNAL naming the block at fault.
func CheckPEM(b []byte) error {
	_, err := parsePEM(b)
	return err
}

// parsePEM is authd.ParseKeyFile with each key's kid.
func parsePEM(b []byte) ([]material, error) {
	keys, err := authd.ParseKeyFile(b)
	if err != nil {
		return nil, wrapf(authd.EINTERNAL, err, "TOKEN_KEY_FILE: %s", err.(*authd.Error).Message)
	}
	out := make([]material, len(keys))
	for i, k := range keys {
		m := material{alg: verify.EdDSA, pinned: true, pub: k.Public, priv: k.Private, signs: k.Private != nil}
		if m.id, err = thumbprint(m.pub); err != nil {
			return nil, err
		}
		out[i] = m
	}
	return out, nil
}

// Secret is the HS256 source: one shared secret (TOKEN_HS256_SECRET), never
// published.
type Secret []byte

func (s Secret) load(context.Context) ([]material, error) {
	if len(s) == 0 {
		return nil, errors.New("token: empty HS256 secret")
	}
	// The kid names the secret without revealing anything about it.
	m := hmac.New(sha256.New, s)
	m.Write([]byte("authd token kid"))
	kid := "hs256-" + base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:12])
	return []material{{id: kid, alg: verify.HS256, signs: true, secret: []byte(s)}}, nil
}

// GenerateKeyPEM returns a new Ed25519 private key as a PKCS #8 PEM block,
// for TOKEN_KEY_FILE.
func GenerateKeyPEM(r io.Reader) ([]byte, error) {
	_, priv, err := ed25519.GenerateKey(r)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
