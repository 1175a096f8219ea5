package jwt

import (
	"bytes"
	"errors"
	"path/filepath"
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
		if err := src.Check(t.Context()); !errors.Is(err, authd.ErrMasterKeyOpensNothing) {
			t.Fatalf("Check with %s before reseal = %v, want ErrMasterKeyOpensNothing", name, err)
		}
	}
	rotating := &StoreSource{Store: store, Key: newKeys.Token, Old: [][]byte{oldKeys.Token}, Now: c.Now}
	if err := rotating.Check(t.Context()); err != nil {
		t.Fatalf("Check with the old key as previous: %v", err)
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
	if err := (&StoreSource{Store: store, Key: oldKeys.Token}).Check(t.Context()); !errors.Is(err, authd.ErrMasterKeyOpensNothing) {
		t.Fatalf("the old key after reseal: %v, want ErrMasterKeyOpensNothing", err)
	}
}
