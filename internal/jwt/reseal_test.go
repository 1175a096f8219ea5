package jwt

import (
	"bytes"
	"crypto/rand"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/sqlite"
	"github.com/authd/authd/verify"
)

// TestResealAfterRotation walks a master-key rotation on a real (SQLite)
// key store: with the new key and the old one kept as previous, the keys
// sealed under the old one open and sign; Reseal seals them under the new
// one, after which the new key alone opens them and the old one opens
// nothing.
func TestResealAfterRotation(t *testing.T) {
	store, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "authd.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	if err := store.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	oldKeys, _ := authd.DeriveKeys(bytes.Repeat([]byte("o"), 32))
	newKeys, _ := authd.DeriveKeys(bytes.Repeat([]byte("n"), 32))
	c := &clock{t: t0}
	opts := Options{Issuer: testIssuer, Alg: verify.EdDSA, TTL: 15 * time.Minute, Now: c.Now}
	before, err := New(t.Context(), &StoreSource{Store: store, Key: oldKeys.Token, Now: c.Now}, opts)
	if err != nil {
		t.Fatal(err)
	}
	kid := before.SigningKeyID()

	for name, src := range map[string]*StoreSource{
		"new key alone":      {Store: store, Key: newKeys.Token},
		"an unrelated older": {Store: store, Key: newKeys.Token, Old: [][]byte{bytes.Repeat([]byte{3}, 32)}},
	} {
		if _, err := src.Check(t.Context()); !errors.Is(err, authd.ErrMasterKeyOpensNothing) {
			t.Fatalf("Check with %s before reseal = %v, want ErrMasterKeyOpensNothing", name, err)
		}
	}
	rotating := &StoreSource{Store: store, Key: newKeys.Token, Old: [][]byte{oldKeys.Token}, Now: c.Now}
	if under, err := rotating.Check(t.Context()); err != nil || under != 1 {
		t.Fatalf("Check with the old key as previous: %d, %v; want the stored key under the previous one (1)", under, err)
	}
	during, err := New(t.Context(), rotating, opts)
	if err != nil || during.SigningKeyID() != kid {
		t.Fatalf("New during the rotation: %v, %v; want the stored key %s to sign", during, err, kid)
	}
	if _, err := during.IssueToken(t.Context(), claimsFor(c)); err != nil {
		t.Fatalf("signing during the rotation: %v", err)
	}

	resealed, current, err := rotating.Reseal(t.Context())
	if err != nil || resealed != 1 || current != 0 {
		t.Fatalf("Reseal = %d resealed, %d current, %v; want 1, 0", resealed, current, err)
	}
	if resealed, current, err := rotating.Reseal(t.Context()); err != nil || resealed != 0 || current != 1 {
		t.Fatalf("Reseal again = %d, %d, %v; want nothing left to do", resealed, current, err)
	}
	after, err := New(t.Context(), &StoreSource{Store: store, Key: newKeys.Token, Now: c.Now}, opts)
	if err != nil || after.SigningKeyID() != kid {
		t.Fatalf("New with the new key alone after reseal: %v; want the same key %s", err, kid)
	}
	if under, err := rotating.Check(t.Context()); err != nil || under != 0 {
		t.Fatalf("Check after reseal: %d, %v; want under the current key (0)", under, err)
	}
	if _, err := (&StoreSource{Store: store, Key: oldKeys.Token}).Check(t.Context()); !errors.Is(err, authd.ErrMasterKeyOpensNothing) {
		t.Fatalf("the old key after reseal: %v, want ErrMasterKeyOpensNothing", err)
	}
}

// Keys under two master keys, one of them no longer given: the start is
// refused with what to do, not with ErrMasterKeyOpensNothing (some open).
func TestCheckPartlyOpen(t *testing.T) {
	store := &memKeys{}
	k1, _ := authd.DeriveKeys(bytes.Repeat([]byte("1"), 32))
	k2, _ := authd.DeriveKeys(bytes.Repeat([]byte("2"), 32))
	for i, key := range [][]byte{k1.Token, k2.Token} {
		k, err := NewSigningKey(key, t0, t0.Add(time.Duration(i)*time.Minute), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		store.AddSigningKey(t.Context(), k)
	}
	_, err := (&StoreSource{Store: store, Key: k2.Token}).Check(t.Context())
	if err == nil || errors.Is(err, authd.ErrMasterKeyOpensNothing) || !strings.Contains(err.Error(), "AUTHD_MASTER_KEY_PREVIOUS") ||
		!strings.Contains(err.Error(), "authd keys reseal") {
		t.Fatalf("Check with one of two sealing keys = %v; want a refusal saying to keep the old key as previous until the reseal", err)
	}
	if under, err := (&StoreSource{Store: store, Key: k2.Token, Old: [][]byte{k1.Token}}).Check(t.Context()); err != nil || under != 1 {
		t.Fatalf("Check with both = %d, %v", under, err)
	}
}
