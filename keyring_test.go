package authd_test

import (
	"bytes"
	"errors"
	"path/filepath"
	"sync"
	"testing"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/sqlite"
)

func keyDB(t *testing.T) *sqlite.Store {
	t.Helper()
	db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "authd.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if err := db.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return db
}

func loaded(t *testing.T, db authd.DataKeyStore, masters ...[]byte) (authd.Keys, error) {
	t.Helper()
	r := &authd.Keyring{Masters: masters}
	if err := r.Load(t.Context(), db, -1); err != nil {
		return authd.Keys{}, err
	}
	return r.Current()
}

// A master-key rotation keeps the keys that name live state (codes,
// cooldowns, budgets) and changes the sealing keys; after the reseal the
// new key alone opens the data key, and the old one opens nothing.
func TestKeyringRotation(t *testing.T) {
	db := keyDB(t)
	oldKey, newKey := bytes.Repeat([]byte("o"), 32), bytes.Repeat([]byte("n"), 40)

	if _, err := (&authd.Keyring{Masters: [][]byte{oldKey}}).Current(); authd.ErrorCode(err) != authd.EUNAVAILABLE {
		t.Fatalf("Current before Load = %v, want EUNAVAILABLE", err)
	}
	first, err := loaded(t, db, oldKey)
	if err != nil {
		t.Fatal(err)
	}
	// The first data key is the master key itself: the keys are those
	// authd derived before rotation existed, so an upgrade orphans nothing.
	if legacy, _ := authd.DeriveKeys(oldKey); !bytes.Equal(first.Code, legacy.Code) || !bytes.Equal(first.Address, legacy.Address) ||
		!bytes.Equal(first.Mail, legacy.Mail) || !bytes.Equal(first.Token, legacy.Token) {
		t.Fatal("the first Load changed the keys authd derived from the master key")
	}

	if _, err := loaded(t, db, newKey); !errors.Is(err, authd.ErrMasterKeyOpensNothing) {
		t.Fatalf("a new key without the old one as previous: %v, want ErrMasterKeyOpensNothing", err)
	}
	during, err := loaded(t, db, newKey, oldKey)
	if err != nil {
		t.Fatal(err)
	}
	rotated, _ := authd.DeriveKeys(newKey)
	switch {
	case !bytes.Equal(during.Code, first.Code) || !bytes.Equal(during.Address, first.Address):
		t.Fatal("the rotation changed the code-hash or address key: live codes and budgets would be orphaned")
	case !bytes.Equal(during.Mail, rotated.Mail) || !bytes.Equal(during.Token, rotated.Token):
		t.Fatal("new seals do not use the new master key")
	case len(during.OldMail) != 1 || !bytes.Equal(during.OldMail[0], first.Mail) || !bytes.Equal(during.OldToken[0], first.Token):
		t.Fatal("what the old master key sealed no longer opens")
	}

	r := &authd.Keyring{Masters: [][]byte{newKey, oldKey}}
	if did, err := r.Reseal(t.Context(), db); err != nil || !did {
		t.Fatalf("Reseal = %v, %v; want rewrapped", did, err)
	}
	if did, err := r.Reseal(t.Context(), db); err != nil || did {
		t.Fatalf("Reseal again = %v, %v; want nothing to do", did, err)
	}
	after, err := loaded(t, db, newKey)
	if err != nil || !bytes.Equal(after.Code, first.Code) || !bytes.Equal(after.Address, first.Address) || len(after.OldMail) != 0 {
		t.Fatalf("the new key alone after the reseal: %v; want the same data key, no old keys", err)
	}
	if _, err := loaded(t, db, oldKey); !errors.Is(err, authd.ErrMasterKeyOpensNothing) {
		t.Fatalf("the old key after the reseal: %v, want ErrMasterKeyOpensNothing", err)
	}
	if !bytes.Contains([]byte(authd.ErrMasterKeyOpensNothing.Message), []byte("AUTHD_MASTER_KEY_PREVIOUS")) ||
		!bytes.Contains([]byte(authd.ErrMasterKeyOpensNothing.Message), []byte("Rotating the master key")) {
		t.Fatal("the error does not name both variables and the README section")
	}
}

// Upgrading and rotating in one step: with no data key stored yet, the
// first one is the master key the signing keys were sealed under (first),
// not the new one, so live codes and budgets keep their keys; with that
// unknown and two master keys, Load refuses and stores nothing.
func TestKeyringFirstDataKeyOnUpgrade(t *testing.T) {
	db := keyDB(t)
	oldKey, newKey := bytes.Repeat([]byte("o"), 32), bytes.Repeat([]byte("n"), 32)
	r := &authd.Keyring{Masters: [][]byte{newKey, oldKey}}
	if err := r.Load(t.Context(), db, -1); !errors.Is(err, authd.ErrDataKeyUnknown) {
		t.Fatalf("two master keys, which one was in use unknown: %v, want ErrDataKeyUnknown", err)
	}
	if _, err := db.EnsureDataKey(t.Context(), func() ([]byte, error) { return nil, errors.New("empty") }); err == nil {
		t.Fatal("a refused first Load stored a data key")
	}
	if err := r.Load(t.Context(), db, 1); err != nil {
		t.Fatal(err)
	}
	got, _ := r.Current()
	legacy, _ := authd.DeriveKeys(oldKey)
	rotated, _ := authd.DeriveKeys(newKey)
	if !bytes.Equal(got.Code, legacy.Code) || !bytes.Equal(got.Address, legacy.Address) || !bytes.Equal(got.Mail, rotated.Mail) {
		t.Fatal("the first data key is not the master key in use before the upgrade, or seals do not use the new one")
	}
	if r.WrappedUnder() != 0 {
		t.Fatal("the first data key is not wrapped under the current master key")
	}
}

// Instances starting together on an empty database agree on one data key.
func TestKeyringFirstStartsAgree(t *testing.T) {
	db := keyDB(t)
	master := bytes.Repeat([]byte("m"), 32)
	const n = 4
	keys := make([]authd.Keys, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r := &authd.Keyring{Masters: [][]byte{master}}
			if err := r.Load(t.Context(), db, -1); err != nil {
				t.Error(err)
			}
			keys[i], _ = r.Current()
		})
	}
	wg.Wait()
	for i := range keys {
		if !bytes.Equal(keys[i].Address, keys[0].Address) {
			t.Fatalf("instance %d derived another address key", i)
		}
	}
}

// The wrapped data key holds neither the master key nor the data key.
func TestWrapDataKey(t *testing.T) {
	master := bytes.Repeat([]byte("m"), 32)
	if _, err := authd.WrapDataKey(master, master, bytes.NewReader(nil)); authd.ErrorCode(err) != authd.EINTERNAL {
		t.Fatalf("WrapDataKey with a failing random source = %v, want EINTERNAL", err)
	}
	w, err := authd.WrapDataKey(master, master, nil)
	if err != nil || bytes.Contains(w, master) {
		t.Fatalf("WrapDataKey = %x, %v", w, err)
	}
	tampered := bytes.Clone(w)
	tampered[len(tampered)-1] ^= 1
	if _, _, err := authd.UnwrapDataKey([][]byte{master}, tampered); !errors.Is(err, authd.ErrMasterKeyOpensNothing) {
		t.Fatalf("a tampered data key: %v", err)
	}
	if _, _, err := authd.UnwrapDataKey([][]byte{master}, w[:5]); authd.ErrorCode(err) != authd.EINTERNAL {
		t.Fatalf("a truncated data key: %v", err)
	}
}
