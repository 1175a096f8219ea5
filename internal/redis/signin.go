package redis

import (
	"context"
	"errors"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/authd/authd"
)

// The hosted sign-in's records (authd.SignInStore), each one key in a
// slot of its own, so every call is one key on one node, single Redis or
// Cluster alike:
//
//	P{si:<id>}:flow     string: a sealed sign-in
//	P{gr:<key>}:grant   hash: d (the sealed grant), u (how many redemptions)
//	P{at:<key>}:access  string: a sealed access token record
//	P{ip:<ip>}:signin   GCRA: sign-ins started per client IP (take.lua)
//
// Ids and keys are authd's hex (random ids, SHA-256 hashes): no ':' or
// braces. TTLs only reclaim memory; the records carry their own expiry.

var _ authd.SignInStore = (*Store)(nil)

func (s *Store) flowKey(id string) string       { return s.prefix + "{si:" + id + "}:flow" }
func (s *Store) grantKey(key string) string     { return s.prefix + "{gr:" + key + "}:grant" }
func (s *Store) accessKey(key string) string    { return s.prefix + "{at:" + key + "}:access" }
func ttlMillis(ttl time.Duration) time.Duration { return max(ttl, time.Millisecond) }

// swapScript replaces KEYS[1] by ARGV[2] when it holds ARGV[1]: 0 when
// missing, 1 when it holds something else, 2 when swapped.
var swapScript = goredis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
if v ~= ARGV[1] then return 1 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 2`)

// redeemScript returns the grant and how many times it has been redeemed,
// this time included: false when there is none.
var redeemScript = goredis.NewScript(`
local d = redis.call('HGET', KEYS[1], 'd')
if not d then return false end
local n = redis.call('HINCRBY', KEYS[1], 'u', 1)
return {d, n}`)

// PutSignIn implements authd.SignInStore.
func (s *Store) PutSignIn(ctx context.Context, id string, rec []byte, ttl time.Duration) error {
	if err := s.client.Set(ctx, s.flowKey(id), rec, ttlMillis(ttl)).Err(); err != nil {
		return unavailable(err)
	}
	return nil
}

// SignIn implements authd.SignInStore.
func (s *Store) SignIn(ctx context.Context, id string) ([]byte, error) {
	return s.getKey(ctx, s.flowKey(id))
}

func (s *Store) getKey(ctx context.Context, key string) ([]byte, error) {
	b, err := s.client.Get(ctx, key).Bytes()
	if errors.Is(err, goredis.Nil) {
		return nil, &authd.Error{Code: authd.ENOTFOUND, Message: "not found"}
	}
	if err != nil {
		return nil, unavailable(err)
	}
	return b, nil
}

// SwapSignIn implements authd.SignInStore: swapScript.
func (s *Store) SwapSignIn(ctx context.Context, id string, prev, next []byte, ttl time.Duration) error {
	n, err := swapScript.Run(ctx, s.client, []string{s.flowKey(id)}, prev, next, ttlMillis(ttl).Milliseconds()).Int64()
	if err != nil {
		return unavailable(err)
	}
	switch n {
	case 0:
		return &authd.Error{Code: authd.ENOTFOUND, Message: "not found"}
	case 1:
		return &authd.Error{Code: authd.EINVALID, Message: "the sign-in changed"}
	}
	return nil
}

// PutGrant implements authd.SignInStore.
func (s *Store) PutGrant(ctx context.Context, key string, rec []byte, ttl time.Duration) error {
	k := s.grantKey(key)
	_, err := s.client.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		p.Del(ctx, k)
		p.HSet(ctx, k, "d", rec)
		p.PExpire(ctx, k, ttlMillis(ttl))
		return nil
	})
	if err != nil {
		return unavailable(err)
	}
	return nil
}

// Grant implements authd.SignInStore.
func (s *Store) Grant(ctx context.Context, key string) ([]byte, bool, error) {
	vs, err := s.client.HMGet(ctx, s.grantKey(key), "d", "u").Result()
	if err != nil {
		return nil, false, unavailable(err)
	}
	d, ok := vs[0].(string)
	if !ok {
		return nil, false, &authd.Error{Code: authd.ENOTFOUND, Message: "not found"}
	}
	n, _ := vs[1].(string)
	return []byte(d), n != "" && n != "0", nil
}

// RedeemGrant implements authd.SignInStore: redeemScript.
func (s *Store) RedeemGrant(ctx context.Context, key string) ([]byte, bool, error) {
	v, err := redeemScript.Run(ctx, s.client, []string{s.grantKey(key)}).Result()
	if errors.Is(err, goredis.Nil) {
		return nil, false, &authd.Error{Code: authd.ENOTFOUND, Message: "not found"}
	}
	if err != nil {
		return nil, false, unavailable(err)
	}
	r, ok := v.([]any)
	if !ok || len(r) != 2 {
		return nil, false, badReply(v)
	}
	d, ok1 := r[0].(string)
	n, ok2 := r[1].(int64)
	if !ok1 || !ok2 {
		return nil, false, badReply(v)
	}
	return []byte(d), n > 1, nil
}

// GrantReplayed implements authd.SignInStore.
func (s *Store) GrantReplayed(ctx context.Context, key string) (bool, error) {
	vs, err := s.client.HMGet(ctx, s.grantKey(key), "d", "u").Result()
	if err != nil {
		return false, unavailable(err)
	}
	if vs[0] == nil {
		return false, &authd.Error{Code: authd.ENOTFOUND, Message: "not found"}
	}
	n, _ := vs[1].(string)
	return n != "" && n != "0" && n != "1", nil
}

// PutAccess implements authd.SignInStore.
func (s *Store) PutAccess(ctx context.Context, key string, rec []byte, ttl time.Duration) error {
	if err := s.client.Set(ctx, s.accessKey(key), rec, ttlMillis(ttl)).Err(); err != nil {
		return unavailable(err)
	}
	return nil
}

// Access implements authd.SignInStore.
func (s *Store) Access(ctx context.Context, key string) ([]byte, error) {
	return s.getKey(ctx, s.accessKey(key))
}

// DeleteAccess implements authd.SignInStore.
func (s *Store) DeleteAccess(ctx context.Context, key string) error {
	if err := s.client.Del(ctx, s.accessKey(key)).Err(); err != nil {
		return unavailable(err)
	}
	return nil
}

// TakeSignIn implements authd.SignInStore: take.lua on the client IP's
// own bucket.
func (s *Store) TakeSignIn(ctx context.Context, clientIP string, r authd.Rate, now time.Time) error {
	_, err := s.takeLimits(ctx, now.UnixMicro(), []limit{{key: s.ipKey(clientIP, "signin"), name: "signin_per_ip", rate: r}})
	return err
}
