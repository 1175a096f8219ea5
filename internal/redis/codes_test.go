package redis_test

import (
	"context"
	"crypto/rand"
	"errors"
	"net"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/redis"
	"github.com/authd/authd/internal/storetest"
	"github.com/authd/authd/internal/testenv"
)

// newClient connects to AUTHD_TEST_REDIS_URL, or skips.
func newClient(t testing.TB) *goredis.Client {
	t.Helper()
	opt, err := goredis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatalf("AUTHD_TEST_REDIS_URL: %v", err)
	}
	c := goredis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("AUTHD_TEST_REDIS_URL: %v", err)
	}
	return c
}

// newPrefix returns a key prefix of its own for t, and deletes its keys
// when t ends: tests share the Redis with other packages.
func newPrefix(t testing.TB, c *goredis.Client) string {
	t.Helper()
	prefix := "authdtest:" + rand.Text() + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		var cursor uint64
		for {
			keys, next, err := c.Scan(ctx, cursor, prefix+"*", 1000).Result()
			if err != nil {
				t.Errorf("cleaning up %s*: %v", prefix, err)
				return
			}
			if len(keys) > 0 {
				c.Del(ctx, keys...) // one server: keys of any slot
			}
			if cursor = next; cursor == 0 {
				return
			}
		}
	})
	return prefix
}

func TestCodeStore(t *testing.T) {
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) {
			storetest.CodeStore(t, func(t *testing.T) authd.CodeStore {
				s, _ := m.store(t, redis.Options{})
				return s
			})
		})
	}
}

func TestMailQueue(t *testing.T) {
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) {
			storetest.MailQueue(t, func(t *testing.T) storetest.QueueStore {
				s, _ := m.store(t, redis.Options{})
				return s
			})
		})
	}
}

// TestKeys checks the key layout (see the package comment) and that no key
// outlives what it holds.
func TestKeys(t *testing.T) {
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) { testKeys(t, m) })
	}
}

func testKeys(t *testing.T, m mode) {
	ctx := context.Background()
	c := m.client(t)
	prefix := prefix(t, c)
	s := redis.New(c, redis.Options{Prefix: prefix, Split: m.split})
	now := time.Now()
	const address = "0123456789abcdef0123456789abcdef"
	_, err := s.IssueCode(ctx, authd.IssueRequest{
		Address: addrOf(address), Project: "shop", ClientIP: "192.0.2.1", Now: now,
		Record:          authd.CodeRecord{ID: "id1", Hash: []byte("\x00\xffhash"), ExpiresAt: now.Add(5 * time.Minute)},
		ResendCooldown:  time.Minute,
		CodesPerAddress: authd.Rate{N: 5, Period: time.Hour},
		SendPerIP:       authd.Rate{N: 10, Period: time.Minute},
		MailsPerProject: authd.Rate{N: 100, Period: time.Hour},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.ConsumeCode(ctx, authd.ConsumeRequest{
		Address: addrOf(address), Project: "shop", ClientIP: "192.0.2.1", Now: now, Hash: []byte("wrong"),
		AttemptsPerCode: 5, FailuresPerAddress: authd.Rate{N: 10, Period: time.Hour},
		VerifyPerIP: authd.Rate{N: 60, Period: time.Minute},
	})
	if !errors.Is(err, authd.ErrInvalidCode) {
		t.Fatalf("ConsumeCode: %v, want ErrInvalidCode", err)
	}
	keys := allKeys(t, c, prefix+"*")
	slot := func(k string) int64 { return c.ClusterKeySlot(ctx, k).Val() }
	var tag string
	want := map[string]time.Duration{ // key (after the tag) → TTL
		"code:shop:" + address: 5 * time.Minute,
		"cool:shop:" + address: time.Minute,
		"sent:" + address:      12 * time.Minute,
		"fail:" + address:      6 * time.Minute,
	}
	others := map[string]time.Duration{
		prefix + "{ip:192.0.2.1}:send":   6 * time.Second,
		prefix + "{ip:192.0.2.1}:verify": time.Second,
		prefix + "{p:shop}:mails":        36 * time.Second,
	}
	if len(keys) != len(want)+len(others) {
		t.Errorf("keys = %q, want %d", keys, len(want)+len(others))
	}
	for _, k := range keys {
		ttl := c.PTTL(ctx, k).Val()
		if max, ok := others[k]; ok {
			if ttl <= 0 || ttl > max {
				t.Errorf("%s: TTL %v, want in (0, %v]", k, ttl, max)
			}
			continue
		}
		rest := k[len(prefix):]
		end := 0
		for end < len(rest) && rest[end] != '}' {
			end++
		}
		if tag == "" {
			tag = rest[:end+2]
		}
		if rest[:end+2] != tag || slot(k) != slot(prefix+tag) {
			t.Errorf("%s: not under the address's tag %s", k, tag)
		}
		max, ok := want[rest[len(tag):]]
		if !ok {
			t.Errorf("unexpected key %s", k)
			continue
		}
		if ttl <= 0 || ttl > max {
			t.Errorf("%s: TTL %v, want in (0, %v]", k, ttl, max)
		}
	}
	// The code is held as its hash, never as anything else.
	h, err := c.HGetAll(ctx, prefix+tag+"code:shop:"+address).Result()
	if err != nil {
		t.Fatal(err)
	}
	if h["h"] != "\x00\xffhash" || h["id"] != "id1" || h["att"] != "1" {
		t.Errorf("code record = %q", h)
	}
}

// TestScriptsReloaded checks that the store survives SCRIPT FLUSH (a
// restarted or failed-over Redis has an empty script cache), in both
// modes, the split mode's pipeline included.
func TestScriptsReloaded(t *testing.T) {
	ctx := context.Background()
	for _, m := range allModes {
		s, c := m.store(t, redis.Options{})
		split := m.name
		now := time.Now()
		for i := range 2 {
			if err := flushScripts(ctx, c); err != nil {
				t.Fatal(err)
			}
			_, err := s.IssueCode(ctx, authd.IssueRequest{
				Address: addrOf("a"), Project: "shop", ClientIP: "192.0.2.1", Now: now,
				Record:          authd.CodeRecord{ID: "id", Hash: []byte("h"), ExpiresAt: now.Add(time.Minute)},
				SendPerIP:       authd.Rate{N: 10, Period: time.Minute},
				MailsPerProject: authd.Rate{N: 10, Period: time.Minute},
			})
			if err != nil {
				t.Fatalf("%s, issue %d: %v", split, i, err)
			}
		}
	}
}

// flushScripts empties the script cache: on a cluster, every master's.
func flushScripts(ctx context.Context, c goredis.UniversalClient) error {
	if cc, ok := c.(*goredis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, m *goredis.Client) error { return m.ScriptFlush(ctx).Err() })
	}
	return c.ScriptFlush(ctx).Err()
}

// TestRedisDown checks that a Redis that cannot be reached is reported as
// EUNAVAILABLE, fast.
func TestRedisDown(t *testing.T) {
	// A port nothing listens on: bind one, then close it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	redis.SetLogger(discardLogger()) // each failed dial would be logged

	ctx := context.Background()
	now := time.Now()
	// The options cmd/authd should use: one retry, one dial.
	c := goredis.NewClient(&goredis.Options{Addr: addr, DialTimeout: time.Second, MaxRetries: 1, DialerRetries: 1})
	defer c.Close()
	for _, split := range []bool{false, true} {
		s := redis.New(c, redis.Options{Split: split})
		calls := []struct {
			name string
			call func() error
		}{
			{"IssueCode", func() error {
				_, err := s.IssueCode(ctx, authd.IssueRequest{Address: addrOf("a"), Project: "p", Now: now,
					SendPerIP: authd.Rate{N: 1, Period: time.Minute}})
				return err
			}},
			{"ConsumeCode", func() error {
				_, err := s.ConsumeCode(ctx, authd.ConsumeRequest{Address: addrOf("a"), Project: "p", Now: now,
					VerifyPerIP: authd.Rate{N: 1, Period: time.Minute}})
				return err
			}},
			{"RestoreCode", func() error {
				return s.RestoreCode(ctx, addrOf("a"), "p", authd.CodeRecord{ExpiresAt: now.Add(time.Minute)}, now)
			}},
			{"IsCurrent", func() error { _, err := s.IsCurrent(ctx, addrOf("a"), "p", "id", now); return err }},
			{"Unlock", func() error { return s.Unlock(ctx, "a") }},
			{"CheckEviction", func() error { _, _, err := s.CheckEviction(ctx); return err }},
		}
		for _, tc := range calls {
			start := time.Now()
			err := tc.call()
			if took := time.Since(start); took > time.Second {
				t.Errorf("split=%v %s took %v", split, tc.name, took)
			}
			if code := authd.ErrorCode(err); code != authd.EUNAVAILABLE {
				t.Errorf("split=%v %s: %v, want %s", split, tc.name, err, authd.EUNAVAILABLE)
			}
		}
	}

	// go-redis's defaults (5 dials, 3 retries) take longer, still bounded.
	d := goredis.NewClient(&goredis.Options{Addr: addr})
	defer d.Close()
	start := time.Now()
	_, err = redis.New(d, redis.Options{}).IsCurrent(ctx, addrOf("a"), "p", "id", now)
	if code := authd.ErrorCode(err); code != authd.EUNAVAILABLE {
		t.Errorf("default options: %v, want %s", err, authd.EUNAVAILABLE)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("default options: took %v", took)
	}
}

// addrOf is the store's name of an address whose mailbox is its own.
func addrOf(key string) authd.Address { return authd.Address{Key: key, Mailbox: key} }

func TestSignInStore(t *testing.T) {
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) {
			storetest.SignInStore(t, func(t *testing.T) authd.SignInStore {
				s, _ := m.store(t, redis.Options{})
				return s
			})
		})
	}
}
