package redis_test

import (
	"context"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/redis"
)

// EraseAddress deletes the address's codes, cooldowns and budgets in every
// project, and nothing of another address, even with pattern characters
// in the prefix.
func TestEraseAddress(t *testing.T) {
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) { testEraseAddress(t, m) })
	}
}

func testEraseAddress(t *testing.T, m mode) {
	ctx := context.Background()
	c := m.client(t)
	s, _ := m.store(t, redis.Options{Prefix: prefix(t, c) + "*[x]?:"})
	now := time.Now()
	issue := func(addr, project string) {
		t.Helper()
		_, err := s.IssueCode(ctx, authd.IssueRequest{
			Address: addrOf(addr), Project: project, ClientIP: "192.0.2.1", Now: now,
			Record:          authd.CodeRecord{ID: addr + project, Hash: []byte("h"), ExpiresAt: now.Add(time.Minute)},
			ResendCooldown:  time.Minute,
			CodesPerAddress: authd.Rate{N: 5, Period: time.Hour},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	issue("addrA", "shop")
	issue("addrA", "blog")
	issue("addrB", "shop")
	// A wrong try: the failure budget of addrA has a key too.
	s.ConsumeCode(ctx, authd.ConsumeRequest{Address: addrOf("addrA"), Project: "shop", ClientIP: "192.0.2.1", Hash: []byte("x"), Now: now,
		AttemptsPerCode: 5, FailuresPerAddress: authd.Rate{N: 10, Period: time.Hour}})

	n, err := s.EraseAddress(ctx, addrOf("addrA"))
	if err != nil {
		t.Fatal(err)
	}
	// code and cooldown of two projects, the sent and fail budgets.
	if n != 6 {
		t.Fatalf("deleted %d keys, want 6", n)
	}
	for _, p := range []string{"shop", "blog"} {
		if ok, err := s.IsCurrent(ctx, addrOf("addrA"), p, "addrA"+p, now); err != nil || ok {
			t.Fatalf("addrA's %s code still current: %v %v", p, ok, err)
		}
	}
	if ok, err := s.IsCurrent(ctx, addrOf("addrB"), "shop", "addrBshop", now); err != nil || !ok {
		t.Fatalf("addrB's code was touched: %v %v", ok, err)
	}
	// No cooldown left: a new code for addrA is accepted at once.
	issue("addrA", "shop")
	if n, err := s.EraseAddress(ctx, addrOf("nobody")); err != nil || n != 0 {
		t.Fatalf("erasing an unknown address: %d %v", n, err)
	}
}
