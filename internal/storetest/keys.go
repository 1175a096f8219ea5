package storetest

// The authd.KeyStore contract, run by internal/postgres and internal/sqlite.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authd/authd"
)

// keyT0 is a fixed instant with nanoseconds, kept to the microsecond.
var keyT0 = time.Date(2026, 5, 6, 7, 8, 9, 123456789, time.UTC)

func testKey(id string, activeFrom time.Time) authd.SigningKey {
	return authd.SigningKey{
		ID: id, Algorithm: "EdDSA",
		PublicKey:        bytes.Repeat([]byte{1}, 32),
		SealedPrivateKey: append([]byte(id), bytes.Repeat([]byte{2}, 40)...),
		CreatedAt:        keyT0, ActiveFrom: activeFrom,
	}
}

// Keys is what a database keeps of authd's keys: the token signing keys
// and the wrapped data key.
type Keys interface {
	authd.KeyStore
	authd.DataKeyStore
}

// KeyStore runs the authd.KeyStore and authd.DataKeyStore contracts. open
// returns n stores on one new, empty, migrated database (n connections or
// pools, as n instances of authd would have), cleaned up when t ends.
func KeyStore(t *testing.T, open func(t *testing.T, n int) []Keys) {
	t.Helper()
	tests := []struct {
		name string
		run  func(t *testing.T, open func(n int) []Keys)
	}{
		{"EmptyStore", testKeysEmpty},
		{"AddListOrdered", testKeysAddListOrdered},
		{"DuplicateID", testKeysDuplicateID},
		{"Delete", testKeysDelete},
		{"EnsureMakesOne", testKeysEnsureMakesOne},
		{"EnsureKeepsExisting", testKeysEnsureKeepsExisting},
		{"EnsureGenError", testKeysEnsureGenError},
		{"ConcurrentFirstStarts", testKeysConcurrentFirstStarts},
		{"Reseal", testKeysReseal},
		{"DataKeyEnsure", testDataKeyEnsure},
		{"DataKeyConcurrentFirstStarts", testDataKeyConcurrentFirstStarts},
		{"DataKeyReplace", testDataKeyReplace},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, func(n int) []Keys { return open(t, n) })
		})
	}
}

func testKeysEmpty(t *testing.T, open func(n int) []Keys) {
	keys, err := open(1)[0].SigningKeys(t.Context())
	if err != nil || len(keys) != 0 {
		t.Fatalf("SigningKeys on an empty store = %v, %v; want none, nil", keys, err)
	}
}

func testKeysAddListOrdered(t *testing.T, open func(n int) []Keys) {
	s := open(1)[0]
	ctx := t.Context()
	later, earlier, tie := testKey("b-later", keyT0.Add(time.Hour)), testKey("c-earlier", keyT0), testKey("a-tie", keyT0)
	for _, k := range []authd.SigningKey{later, earlier, tie} {
		if err := s.AddSigningKey(ctx, k); err != nil {
			t.Fatalf("AddSigningKey(%s): %v", k.ID, err)
		}
	}
	got, err := s.SigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []authd.SigningKey{tie, earlier, later}
	if len(got) != len(want) {
		t.Fatalf("got %d keys, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		w.CreatedAt, w.ActiveFrom = w.CreatedAt.Truncate(time.Microsecond), w.ActiveFrom.Truncate(time.Microsecond)
		if g.ID != w.ID || g.Algorithm != w.Algorithm || !bytes.Equal(g.PublicKey, w.PublicKey) ||
			!bytes.Equal(g.SealedPrivateKey, w.SealedPrivateKey) || !g.CreatedAt.Equal(w.CreatedAt) || !g.ActiveFrom.Equal(w.ActiveFrom) {
			t.Errorf("key %d = %+v, want %+v", i, g, w)
		}
		if g.ActiveFrom.Location() != time.UTC || g.CreatedAt.Location() != time.UTC {
			t.Errorf("key %d: times not in UTC: %v, %v", i, g.CreatedAt, g.ActiveFrom)
		}
	}
}

func testKeysDuplicateID(t *testing.T, open func(n int) []Keys) {
	s := open(1)[0]
	k := testKey("dup", keyT0)
	if err := s.AddSigningKey(t.Context(), k); err != nil {
		t.Fatal(err)
	}
	other := testKey("dup", keyT0.Add(time.Hour))
	other.PublicKey = bytes.Repeat([]byte{9}, 32)
	if err := s.AddSigningKey(t.Context(), other); authd.ErrorCode(err) != authd.EINVALID {
		t.Fatalf("second AddSigningKey with one kid = %v, want EINVALID", err)
	}
	keys, _ := s.SigningKeys(t.Context())
	if len(keys) != 1 || !bytes.Equal(keys[0].PublicKey, k.PublicKey) {
		t.Fatalf("after a refused duplicate the store holds %+v", keys)
	}
}

func testKeysDelete(t *testing.T, open func(n int) []Keys) {
	s := open(1)[0]
	ctx := t.Context()
	if err := s.DeleteSigningKey(ctx, "nope"); authd.ErrorCode(err) != authd.ENOTFOUND {
		t.Fatalf("DeleteSigningKey(unknown) = %v, want ENOTFOUND", err)
	}
	s.AddSigningKey(ctx, testKey("k1", keyT0))
	s.AddSigningKey(ctx, testKey("k2", keyT0.Add(time.Minute)))
	if err := s.DeleteSigningKey(ctx, "k1"); err != nil {
		t.Fatal(err)
	}
	keys, err := s.SigningKeys(ctx)
	if err != nil || len(keys) != 1 || keys[0].ID != "k2" {
		t.Fatalf("after deleting k1: %v, %v; want k2 alone", keys, err)
	}
}

func testKeysEnsureMakesOne(t *testing.T, open func(n int) []Keys) {
	s := open(1)[0]
	calls := 0
	keys, err := s.EnsureSigningKey(t.Context(), func() (authd.SigningKey, error) {
		calls++
		return testKey("first", keyT0), nil
	})
	if err != nil || calls != 1 || len(keys) != 1 || keys[0].ID != "first" {
		t.Fatalf("EnsureSigningKey on an empty store = %v, %v (gen called %d times)", keys, err, calls)
	}
	stored, _ := s.SigningKeys(t.Context())
	if len(stored) != 1 || stored[0].ID != "first" {
		t.Fatalf("stored: %+v", stored)
	}
}

func testKeysEnsureKeepsExisting(t *testing.T, open func(n int) []Keys) {
	s := open(1)[0]
	s.AddSigningKey(t.Context(), testKey("existing", keyT0))
	keys, err := s.EnsureSigningKey(t.Context(), func() (authd.SigningKey, error) {
		t.Error("gen called with a key stored")
		return testKey("second", keyT0), nil
	})
	if err != nil || len(keys) != 1 || keys[0].ID != "existing" {
		t.Fatalf("EnsureSigningKey = %v, %v; want the existing key", keys, err)
	}
}

func testKeysEnsureGenError(t *testing.T, open func(n int) []Keys) {
	s := open(1)[0]
	boom := errors.New("no randomness")
	if _, err := s.EnsureSigningKey(t.Context(), func() (authd.SigningKey, error) { return authd.SigningKey{}, boom }); !errors.Is(err, boom) {
		t.Fatalf("EnsureSigningKey = %v, want gen's error", err)
	}
	if keys, _ := s.SigningKeys(t.Context()); len(keys) != 0 {
		t.Fatalf("a failed gen stored %+v", keys)
	}
}

// Instances starting together on an empty database make one key between
// them, and all of them load that key.
func testKeysConcurrentFirstStarts(t *testing.T, open func(n int) []Keys) {
	const n = 6
	stores := open(n)
	var calls atomic.Int32
	var wg sync.WaitGroup
	got := make([][]authd.SigningKey, n)
	errs := make([]error, n)
	start := make(chan struct{})
	for i, s := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			got[i], errs[i] = s.EnsureSigningKey(ctx, func() (authd.SigningKey, error) {
				calls.Add(1)
				return testKey(fmt.Sprintf("instance-%d", i), keyT0), nil
			})
		}()
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("instance %d: %v", i, errs[i])
		}
		if len(got[i]) != 1 || got[i][0].ID != got[0][0].ID {
			t.Fatalf("instance %d loaded %+v, instance 0 %+v", i, got[i], got[0])
		}
	}
	if c := calls.Load(); c != 1 {
		t.Errorf("gen called %d times, want 1", c)
	}
	keys, _ := stores[0].SigningKeys(t.Context())
	if len(keys) != 1 {
		t.Fatalf("%d keys stored, want 1", len(keys))
	}
}

func testKeysReseal(t *testing.T, open func(n int) []Keys) {
	s := open(1)[0]
	ctx := t.Context()
	k := testKey("k1", keyT0)
	if err := s.ResealSigningKey(ctx, "nope", k.SealedPrivateKey, []byte("x")); authd.ErrorCode(err) != authd.ENOTFOUND {
		t.Fatalf("ResealSigningKey(unknown) = %v, want ENOTFOUND", err)
	}
	s.AddSigningKey(ctx, k)
	next := bytes.Repeat([]byte{9}, 64)
	if err := s.ResealSigningKey(ctx, "k1", []byte("not what is stored"), next); authd.ErrorCode(err) != authd.EINVALID {
		t.Fatalf("ResealSigningKey(stale prev) = %v, want EINVALID", err)
	}
	if keys, _ := s.SigningKeys(ctx); !bytes.Equal(keys[0].SealedPrivateKey, k.SealedPrivateKey) {
		t.Fatal("a refused reseal changed the stored key")
	}
	if err := s.ResealSigningKey(ctx, "k1", k.SealedPrivateKey, next); err != nil {
		t.Fatal(err)
	}
	keys, err := s.SigningKeys(ctx)
	if err != nil || len(keys) != 1 || !bytes.Equal(keys[0].SealedPrivateKey, next) ||
		!bytes.Equal(keys[0].PublicKey, k.PublicKey) || !keys[0].ActiveFrom.Equal(k.ActiveFrom.Truncate(time.Microsecond)) {
		t.Fatalf("after reseal: %+v, %v; want the same key with the new seal", keys, err)
	}
}

func testDataKeyEnsure(t *testing.T, open func(n int) []Keys) {
	s := open(1)[0]
	ctx := t.Context()
	if _, err := s.EnsureDataKey(ctx, func() ([]byte, error) { return nil, errors.New("gen failed") }); err == nil || err.Error() != "gen failed" {
		t.Fatalf("EnsureDataKey with a failing gen = %v, want its error as it is", err)
	}
	calls := 0
	gen := func() ([]byte, error) { calls++; return []byte(fmt.Sprint("wrapped-", calls)), nil }
	first, err := s.EnsureDataKey(ctx, gen)
	if err != nil || string(first) != "wrapped-1" {
		t.Fatalf("EnsureDataKey on an empty store = %q, %v", first, err)
	}
	again, err := s.EnsureDataKey(ctx, gen)
	if err != nil || string(again) != "wrapped-1" || calls != 1 {
		t.Fatalf("EnsureDataKey again = %q, %v (gen called %d times); want the stored one, gen not called", again, err, calls)
	}
}

func testDataKeyConcurrentFirstStarts(t *testing.T, open func(n int) []Keys) {
	const n = 4
	stores := open(n)
	got := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Go(func() {
			got[i], errs[i] = s.EnsureDataKey(t.Context(), func() ([]byte, error) { return []byte(fmt.Sprint("instance-", i)), nil })
		})
	}
	wg.Wait()
	for i := range stores {
		if errs[i] != nil || !bytes.Equal(got[i], got[0]) {
			t.Fatalf("instance %d got %q, %v; instance 0 got %q: every instance must get the one stored", i, got[i], errs[i], got[0])
		}
	}
}

func testDataKeyReplace(t *testing.T, open func(n int) []Keys) {
	s := open(1)[0]
	ctx := t.Context()
	first, _ := s.EnsureDataKey(ctx, func() ([]byte, error) { return []byte("one"), nil })
	if err := s.ReplaceDataKey(ctx, []byte("stale"), []byte("two")); authd.ErrorCode(err) != authd.EINVALID {
		t.Fatalf("ReplaceDataKey(stale prev) = %v, want EINVALID", err)
	}
	if err := s.ReplaceDataKey(ctx, first, []byte("two")); err != nil {
		t.Fatal(err)
	}
	now, err := s.EnsureDataKey(ctx, func() ([]byte, error) { return nil, errors.New("gen called") })
	if err != nil || string(now) != "two" {
		t.Fatalf("after replace: %q, %v; want two", now, err)
	}
}
