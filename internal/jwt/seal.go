package jwt

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/chacha20poly1305"
)

// seal encrypts an Ed25519 private key (its 32-byte seed) under key, the
// one derived from AUTHD_MASTER_KEY for this purpose (authd.Keys.Token),
// with XChaCha20-Poly1305: a random 24-byte nonce is safe however many keys
// are ever sealed. The kid is the associated data, so a sealed key copied
// onto another row does not open.
func seal(key []byte, kid string, priv ed25519.PrivateKey, rand io.Reader) ([]byte, error) {
	return sealRaw(key, kid, priv.Seed(), rand)
}

// sealRaw is seal for any key's bytes: an Ed25519 seed, or an RSA key's
// PKCS #8 DER.
func sealRaw(key []byte, kid string, plain []byte, rand io.Reader) ([]byte, error) {
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
	if _, err := io.ReadFull(rand, nonce); err != nil {
		return nil, err
	}
	return aead.Seal(nonce, nonce, plain, []byte(kid)), nil
}

// errOpen is a sealed key that does not open under any master key given:
// another AUTHD_MASTER_KEY sealed it, or the row was altered.
var errOpen = errors.New("the private key does not open under AUTHD_MASTER_KEY or any AUTHD_MASTER_KEY_PREVIOUS: sealed under another master key, or the row altered")

// open decrypts what seal made with the first of keys that opens it, and
// says which.
func open(keys [][]byte, kid string, sealed []byte) (ed25519.PrivateKey, int, error) {
	seed, i, err := openRaw(keys, kid, sealed)
	if err != nil {
		return nil, 0, err
	}
	if len(seed) != ed25519.SeedSize {
		return nil, 0, fmt.Errorf("sealed key %s: want a %d-byte seed, got %d", kid, ed25519.SeedSize, len(seed))
	}
	return ed25519.NewKeyFromSeed(seed), i, nil
}

// openRaw opens what sealRaw sealed with the first of keys that opens it,
// and says which.
func openRaw(keys [][]byte, kid string, sealed []byte) ([]byte, int, error) {
	for i, key := range keys {
		aead, err := chacha20poly1305.NewX(key)
		if err != nil {
			return nil, 0, err
		}
		if len(sealed) < aead.NonceSize()+aead.Overhead() {
			return nil, 0, errOpen
		}
		plain, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], []byte(kid))
		if err != nil {
			continue
		}
		return plain, i, nil
	}
	return nil, 0, errOpen
}
