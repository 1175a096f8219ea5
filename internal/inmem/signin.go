package inmem

import (
	"bytes"
	"context"
	"sync"
	"time"

	"github.com/authd/authd"
)

// SignInStore is the in-memory authd.SignInStore: sign-ins, grants and
// access tokens in maps under one mutex, as internal/redis keeps them in
// keys with a TTL. Its TTLs run on the wall clock: they only reclaim
// memory, the records carry their own expiry.
type SignInStore struct {
	codes   *CodeStore // its GCRA limits: TakeSignIn is take.lua on them
	mu      sync.Mutex
	records map[string]entry // "s:" sign-ins, "g:" grants, "a:" access tokens
	now     func() time.Time
	swept   time.Time
}

type entry struct {
	rec      []byte
	redeemed int // grants: how many redemptions
	until    time.Time
}

var _ authd.SignInStore = (*SignInStore)(nil)

// NewSignInStore returns an empty SignInStore whose limits live in codes,
// beside the code store's own.
func NewSignInStore(codes *CodeStore) *SignInStore {
	return &SignInStore{codes: codes, records: map[string]entry{}, now: time.Now}
}

// TakeSignIn implements authd.SignInStore: take.lua.
func (s *SignInStore) TakeSignIn(_ context.Context, clientIP string, r authd.Rate, now time.Time) error {
	c := s.codes
	c.mu.Lock()
	defer c.mu.Unlock()
	k := limitKey{kind: "signin", name: clientIP}
	ok, tat, wait := c.gcraCheck(k, now, r)
	if !ok {
		return authd.RateLimited("signin_per_ip", wait)
	}
	c.gcraSet(k, r, tat)
	return nil
}

// get returns the live entry of key; the caller holds mu.
func (s *SignInStore) get(key string) (entry, bool) {
	now := s.now()
	if now.Sub(s.swept) > SweepInterval {
		s.swept = now
		for k, e := range s.records {
			if !now.Before(e.until) {
				delete(s.records, k)
			}
		}
	}
	e, ok := s.records[key]
	if !ok || !now.Before(e.until) {
		return entry{}, false
	}
	return e, true
}

func (s *SignInStore) put(key string, rec []byte, ttl time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records[key] = entry{rec: bytes.Clone(rec), until: s.now().Add(ttl)}
}

func (s *SignInStore) read(key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.get(key)
	if !ok {
		return nil, errNotFound
	}
	return bytes.Clone(e.rec), nil
}

var errNotFound = &authd.Error{Code: authd.ENOTFOUND, Message: "not found"}

// PutSignIn implements authd.SignInStore.
func (s *SignInStore) PutSignIn(_ context.Context, id string, rec []byte, ttl time.Duration) error {
	s.put("s:"+id, rec, ttl)
	return nil
}

// SignIn implements authd.SignInStore.
func (s *SignInStore) SignIn(_ context.Context, id string) ([]byte, error) { return s.read("s:" + id) }

// SwapSignIn implements authd.SignInStore.
func (s *SignInStore) SwapSignIn(_ context.Context, id string, prev, next []byte, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.get("s:" + id)
	switch {
	case !ok:
		return errNotFound
	case !bytes.Equal(e.rec, prev):
		return &authd.Error{Code: authd.EINVALID, Message: "the sign-in changed"}
	}
	s.records["s:"+id] = entry{rec: bytes.Clone(next), until: s.now().Add(ttl)}
	return nil
}

// PutGrant implements authd.SignInStore.
func (s *SignInStore) PutGrant(_ context.Context, key string, rec []byte, ttl time.Duration) error {
	s.put("g:"+key, rec, ttl)
	return nil
}

// Grant implements authd.SignInStore.
func (s *SignInStore) Grant(_ context.Context, key string) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.get("g:" + key)
	if !ok {
		return nil, false, errNotFound
	}
	return bytes.Clone(e.rec), e.redeemed > 0, nil
}

// RedeemGrant implements authd.SignInStore.
func (s *SignInStore) RedeemGrant(_ context.Context, key string) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.get("g:" + key)
	if !ok {
		return nil, false, errNotFound
	}
	e.redeemed++
	s.records["g:"+key] = e
	return bytes.Clone(e.rec), e.redeemed > 1, nil
}

// GrantReplayed implements authd.SignInStore.
func (s *SignInStore) GrantReplayed(_ context.Context, key string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.get("g:" + key)
	if !ok {
		return false, errNotFound
	}
	return e.redeemed > 1, nil
}

// PutAccess implements authd.SignInStore.
func (s *SignInStore) PutAccess(_ context.Context, key string, rec []byte, ttl time.Duration) error {
	s.put("a:"+key, rec, ttl)
	return nil
}

// Access implements authd.SignInStore.
func (s *SignInStore) Access(_ context.Context, key string) ([]byte, error) {
	return s.read("a:" + key)
}

// DeleteAccess implements authd.SignInStore.
func (s *SignInStore) DeleteAccess(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.records, "a:"+key)
	return nil
}
