package storetest

// The authd.SignInStore contract, run by internal/redis (single, split,
// Cluster) and internal/inmem.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authd/authd"
)

func randomKey() string { return hex.EncodeToString([]byte(rand.Text())[:16]) }

// SignInStore runs the authd.SignInStore contract on stores open makes.
func SignInStore(t *testing.T, open func(t *testing.T) authd.SignInStore) {
	ctx := context.Background()
	code := func(t *testing.T, err error) string {
		t.Helper()
		return authd.ErrorCode(err)
	}

	t.Run("SignInPutGetSwap", func(t *testing.T) {
		s := open(t)
		id := randomKey()
		if _, err := s.SignIn(ctx, id); code(t, err) != authd.ENOTFOUND {
			t.Fatalf("missing sign-in: %v, want ENOTFOUND", err)
		}
		if err := s.SwapSignIn(ctx, id, []byte("a"), []byte("b"), time.Minute); code(t, err) != authd.ENOTFOUND {
			t.Fatalf("swap of a missing sign-in: %v, want ENOTFOUND", err)
		}
		if err := s.PutSignIn(ctx, id, []byte("one\x00\xff"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if b, err := s.SignIn(ctx, id); err != nil || !bytes.Equal(b, []byte("one\x00\xff")) {
			t.Fatalf("SignIn: %q %v", b, err)
		}
		if err := s.SwapSignIn(ctx, id, []byte("other"), []byte("two"), time.Minute); code(t, err) != authd.EINVALID {
			t.Fatalf("swap from a stale record: %v, want EINVALID", err)
		}
		if b, _ := s.SignIn(ctx, id); !bytes.Equal(b, []byte("one\x00\xff")) {
			t.Fatalf("a refused swap changed the record: %q", b)
		}
		if err := s.SwapSignIn(ctx, id, []byte("one\x00\xff"), []byte("two"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if b, _ := s.SignIn(ctx, id); string(b) != "two" {
			t.Fatalf("after swap: %q", b)
		}
		if _, err := s.SignIn(ctx, randomKey()); code(t, err) != authd.ENOTFOUND {
			t.Fatalf("another id: %v", err)
		}
	})

	// The compare-and-set every update of a sign-in after a verification
	// relies on: a swap from a read that another request's swap (say, a
	// new address sent to) has overtaken is refused, and changes nothing.
	t.Run("SwapFromStaleReadRefused", func(t *testing.T) {
		s := open(t)
		id := randomKey()
		if err := s.PutSignIn(ctx, id, []byte("attacker"), time.Minute); err != nil {
			t.Fatal(err)
		}
		read, err := s.SignIn(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SwapSignIn(ctx, id, read, []byte("victim"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := s.SwapSignIn(ctx, id, read, []byte("verified"), time.Minute); code(t, err) != authd.EINVALID {
			t.Fatalf("swap from a stale read: %v, want EINVALID", err)
		}
		if b, _ := s.SignIn(ctx, id); string(b) != "victim" {
			t.Fatalf("after the refused swap: %q", b)
		}
	})

	// Of concurrent swaps from one record, exactly one wins.
	t.Run("SwapIsAtomic", func(t *testing.T) {
		s := open(t)
		id := randomKey()
		if err := s.PutSignIn(ctx, id, []byte("start"), time.Minute); err != nil {
			t.Fatal(err)
		}
		var won atomic.Int32
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Go(func() {
				err := s.SwapSignIn(ctx, id, []byte("start"), []byte{byte('a' + i)}, time.Minute)
				switch code(t, err) {
				case "":
					won.Add(1)
				case authd.EINVALID:
				default:
					t.Errorf("swap: %v", err)
				}
			})
		}
		wg.Wait()
		if won.Load() != 1 {
			t.Fatalf("%d swaps won, want 1", won.Load())
		}
	})

	t.Run("TTLReclaims", func(t *testing.T) {
		s := open(t)
		id := randomKey()
		if err := s.PutSignIn(ctx, id, []byte("x"), 50*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if err := s.PutAccess(ctx, id, []byte("x"), 50*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(3 * time.Second)
		for {
			_, e1 := s.SignIn(ctx, id)
			_, e2 := s.Access(ctx, id)
			if code(t, e1) == authd.ENOTFOUND && code(t, e2) == authd.ENOTFOUND {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("records outlive their TTL: %v %v", e1, e2)
			}
			time.Sleep(20 * time.Millisecond) // the store's own clock: nothing to inject
		}
	})

	// A grant is redeemed once: of many concurrent redemptions exactly one
	// is not a replay, and every later one is.
	t.Run("GrantRedeemedOnce", func(t *testing.T) {
		s := open(t)
		key := randomKey()
		if _, _, err := s.RedeemGrant(ctx, key); code(t, err) != authd.ENOTFOUND {
			t.Fatalf("missing grant: %v", err)
		}
		if _, err := s.GrantReplayed(ctx, key); code(t, err) != authd.ENOTFOUND {
			t.Fatalf("GrantReplayed of a missing grant: %v", err)
		}
		if _, _, err := s.Grant(ctx, key); code(t, err) != authd.ENOTFOUND {
			t.Fatalf("Grant of a missing grant: %v", err)
		}
		if err := s.PutGrant(ctx, key, []byte("grant\x00"), time.Minute); err != nil {
			t.Fatal(err)
		}
		// Reading redeems nothing.
		for range 2 {
			if rec, redeemed, err := s.Grant(ctx, key); err != nil || redeemed || !bytes.Equal(rec, []byte("grant\x00")) {
				t.Fatalf("Grant: %q %v %v", rec, redeemed, err)
			}
		}
		if replayed, err := s.GrantReplayed(ctx, key); err != nil || replayed {
			t.Fatalf("GrantReplayed before any redemption: %v %v", replayed, err)
		}
		var first atomic.Int32
		var wg sync.WaitGroup
		for range 30 {
			wg.Go(func() {
				rec, replay, err := s.RedeemGrant(ctx, key)
				if err != nil || !bytes.Equal(rec, []byte("grant\x00")) {
					t.Errorf("redeem: %q %v", rec, err)
				}
				if !replay {
					first.Add(1)
				}
			})
		}
		wg.Wait()
		if first.Load() != 1 {
			t.Fatalf("%d first redemptions, want 1", first.Load())
		}
		if _, replay, err := s.RedeemGrant(ctx, key); err != nil || !replay {
			t.Fatalf("later redemption: replay %v, %v", replay, err)
		}
		if replayed, err := s.GrantReplayed(ctx, key); err != nil || !replayed {
			t.Fatalf("GrantReplayed after replays: %v %v", replayed, err)
		}
		if rec, redeemed, err := s.Grant(ctx, key); err != nil || !redeemed || !bytes.Equal(rec, []byte("grant\x00")) {
			t.Fatalf("Grant after redemptions: %q %v %v", rec, redeemed, err)
		}
		// Put again (a new code can never have the same key, but a store
		// must not keep the old mark if one did).
		if err := s.PutGrant(ctx, key, []byte("new"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if rec, replay, err := s.RedeemGrant(ctx, key); err != nil || replay || string(rec) != "new" {
			t.Fatalf("after put again: %q %v %v", rec, replay, err)
		}
		if replayed, err := s.GrantReplayed(ctx, key); err != nil || replayed {
			t.Fatalf("GrantReplayed after one redemption: %v %v", replayed, err)
		}
	})

	t.Run("AccessPutGetDelete", func(t *testing.T) {
		s := open(t)
		key := randomKey()
		if _, err := s.Access(ctx, key); code(t, err) != authd.ENOTFOUND {
			t.Fatalf("missing: %v", err)
		}
		if err := s.DeleteAccess(ctx, key); err != nil {
			t.Fatalf("delete of a missing token: %v", err)
		}
		if err := s.PutAccess(ctx, key, []byte("tok"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if b, err := s.Access(ctx, key); err != nil || string(b) != "tok" {
			t.Fatalf("Access: %q %v", b, err)
		}
		if err := s.DeleteAccess(ctx, key); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Access(ctx, key); code(t, err) != authd.ENOTFOUND {
			t.Fatalf("after delete: %v", err)
		}
	})

	// Sign-ins per client IP: a burst of N, then a refusal with the wait,
	// which counts nothing; another IP has its own bucket; 0 is off.
	t.Run("TakeSignIn", func(t *testing.T) {
		s := open(t)
		ip := "198.51.100." + randomKey()[:2]
		now := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
		r := authd.Rate{N: 3, Period: time.Minute}
		for i := range 3 {
			if err := s.TakeSignIn(ctx, ip, r, now); err != nil {
				t.Fatalf("sign-in %d: %v", i, err)
			}
		}
		for range 2 {
			err := s.TakeSignIn(ctx, ip, r, now)
			var e *authd.Error
			if !errors.As(err, &e) || e.Code != authd.ERATELIMITED || e.Limit != "signin_per_ip" || e.RetryAfter != 20*time.Second {
				t.Fatalf("over the burst: %v", err)
			}
		}
		if err := s.TakeSignIn(ctx, ip, r, now.Add(20*time.Second)); err != nil {
			t.Fatalf("after the wait: %v", err)
		}
		if err := s.TakeSignIn(ctx, ip+"1", r, now); err != nil {
			t.Fatalf("another IP: %v", err)
		}
		for range 10 {
			if err := s.TakeSignIn(ctx, ip, authd.Rate{}, now); err != nil {
				t.Fatalf("off: %v", err)
			}
		}
	})

	// The three kinds do not share keys: one key may name a sign-in, a
	// grant and an access token at once.
	t.Run("KindsApart", func(t *testing.T) {
		s := open(t)
		key := randomKey()
		if err := s.PutSignIn(ctx, key, []byte("s"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := s.PutGrant(ctx, key, []byte("g"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := s.PutAccess(ctx, key, []byte("a"), time.Minute); err != nil {
			t.Fatal(err)
		}
		b1, _ := s.SignIn(ctx, key)
		b2, _, _ := s.RedeemGrant(ctx, key)
		b3, _ := s.Access(ctx, key)
		if string(b1) != "s" || string(b2) != "g" || string(b3) != "a" {
			t.Fatalf("got %q %q %q", b1, b2, b3)
		}
	})
}
