package inmem_test

import (
	"context"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/inmem"
	"github.com/authd/authd/internal/storetest"
)

func TestCodeStore(t *testing.T) {
	storetest.CodeStore(t, func(t *testing.T) authd.CodeStore { return inmem.NewCodeStore() })
}

// TestSweep checks that expired codes, cooldowns and limit buckets do not
// pile up: memory is bounded by what is live.
func TestSweep(t *testing.T) {
	ctx := context.Background()
	s := inmem.NewCodeStore()
	t0 := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 100 {
		req := authd.IssueRequest{
			Address:         addrOf(string(rune('a'+i%26)) + string(rune('a'+i/26))),
			Project:         "shop",
			ClientIP:        "192.0.2.1",
			Record:          authd.CodeRecord{ID: "id", Hash: []byte{1}, ExpiresAt: t0.Add(5 * time.Minute)},
			Now:             t0,
			ResendCooldown:  time.Minute,
			CodesPerAddress: authd.Rate{N: 5, Period: time.Hour},
			SendPerIP:       authd.Rate{N: 1000, Period: time.Minute},
		}
		if _, err := s.IssueCode(ctx, req); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ConsumeCode(ctx, authd.ConsumeRequest{
			Address: req.Address, Project: "shop", ClientIP: "192.0.2.1", Hash: []byte{2}, Now: t0,
			AttemptsPerCode: 5, FailuresPerAddress: authd.Rate{N: 10, Period: time.Hour},
		}); err == nil {
			t.Fatal("a wrong code succeeded")
		}
	}
	// 100 codes, 100 cooldowns, 100 sent and 100 fail buckets, 1 IP.
	if got := s.Len(); got != 401 {
		t.Fatalf("Len = %d, want 401", got)
	}

	tests := []struct {
		at   time.Duration
		want int
	}{
		{time.Second, 401},
		{6 * time.Second, 400}, // the IP: 1000/m, 100 taken
		{time.Minute, 300},     // cooldowns
		{5 * time.Minute, 200}, // codes
		{6 * time.Minute, 100}, // failures: 10/h, one taken
		{12 * time.Minute, 0},  // codes per address: 5/h, one taken
	}
	for _, tt := range tests {
		s.Sweep(t0.Add(tt.at))
		if got := s.Len(); got != tt.want {
			t.Errorf("after Sweep(t0+%v): Len = %d, want %d", tt.at, got, tt.want)
		}
	}
}

// TestSweepLazily checks that the store sweeps by itself as time passes.
func TestSweepLazily(t *testing.T) {
	ctx := context.Background()
	s := inmem.NewCodeStore()
	t0 := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	issue := func(address string, now time.Time) {
		t.Helper()
		_, err := s.IssueCode(ctx, authd.IssueRequest{
			Address: addrOf(address), Project: "shop", Now: now,
			Record: authd.CodeRecord{ID: "id", Hash: []byte{1}, ExpiresAt: now.Add(5 * time.Minute)},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range 50 {
		issue(string(rune('A'+i)), t0)
	}
	issue("last", t0.Add(10*time.Minute))
	if got := s.Len(); got != 1 {
		t.Fatalf("Len = %d after the codes expired, want 1", got)
	}
}

func TestMailQueue(t *testing.T) {
	storetest.MailQueue(t, func(t *testing.T) storetest.QueueStore { return inmem.NewCodeStore() })
}

// addrOf is the store's name of an address whose mailbox is its own.
func addrOf(key string) authd.Address { return authd.Address{Key: key, Mailbox: key} }

func TestSignInStore(t *testing.T) {
	storetest.SignInStore(t, func(t *testing.T) authd.SignInStore { return inmem.NewSignInStore(inmem.NewCodeStore()) })
}
