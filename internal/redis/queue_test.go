package redis_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/redis"
)

// countingHook counts what reaches the server: commands, and pipelines as
// one round trip each.
type countingHook struct{ trips atomic.Int64 }

func (h *countingHook) DialHook(next goredis.DialHook) goredis.DialHook { return next }
func (h *countingHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		h.trips.Add(1)
		return next(ctx, cmd)
	}
}
func (h *countingHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		h.trips.Add(1)
		return next(ctx, cmds)
	}
}

// TestIssueWithJobOneRoundTrip: queueing the mail job costs send-code no
// extra round trip (after the script is cached), and the job's stream
// shares the code's hash slot, so the script stays legal on a cluster.
func TestIssueWithJobOneRoundTrip(t *testing.T) {
	ctx := context.Background()
	c := newClient(t)
	prefix := newPrefix(t, c)
	hooked := goredis.NewClient(c.Options())
	t.Cleanup(func() { hooked.Close() })
	hook := &countingHook{}
	hooked.AddHook(hook)
	s := redis.New(hooked, redis.Options{Prefix: prefix})
	now := time.Now()
	issue := func(address string) *authd.MailJob {
		job := &authd.MailJob{
			DeliveryID: strings.Repeat("ab", 16), Address: address, Project: "shop", CodeID: "c-" + address,
			ExpiresAt: now.Add(5 * time.Minute), ReplaceableAt: now.Add(time.Minute), Sealed: []byte("sealed"),
		}
		_, err := s.IssueCode(ctx, authd.IssueRequest{
			Address: address, Project: "shop", ClientIP: "192.0.2.7", Now: now,
			Record:    authd.CodeRecord{ID: job.CodeID, Hash: []byte("h"), ExpiresAt: job.ExpiresAt},
			SendPerIP: authd.Rate{N: 100, Period: time.Minute}, Job: job,
		})
		if err != nil {
			t.Fatal(err)
		}
		return job
	}
	issue("00000000000000000000000000000001") // loads the script
	before := hook.trips.Load()
	issue("00000000000000000000000000000002")
	if n := hook.trips.Load() - before; n != 1 {
		t.Fatalf("IssueCode with a job took %d round trips, want 1", n)
	}

	keys, err := c.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	jobs := 0
	for _, k := range keys {
		if !strings.HasSuffix(k, ":mail") {
			continue
		}
		entries := c.XRange(ctx, k, "-", "+").Val()
		if len(entries) == 0 {
			continue
		}
		jobs += len(entries)
		addr, _ := entries[0].Values["a"].(string)
		codeKey := strings.TrimSuffix(k, "mail") + "code:shop:" + addr
		if c.Exists(ctx, codeKey).Val() != 1 {
			t.Fatalf("stream %s holds a job for %s, but no code key %s beside it", k, addr, codeKey)
		}
		if a, b := c.ClusterKeySlot(ctx, k).Val(), c.ClusterKeySlot(ctx, codeKey).Val(); a != b {
			t.Errorf("stream %s in slot %d, its code in slot %d", k, a, b)
		}
	}
	if jobs != 2 {
		t.Fatalf("%d jobs in the streams, want 2", jobs)
	}
	// The status lives as long as the code, no longer.
	ttl := c.PTTL(ctx, prefix+"{d:"+strings.Repeat("ab", 16)+"}:dlv").Val()
	if ttl <= 4*time.Minute || ttl > 5*time.Minute {
		t.Errorf("delivery status TTL %v, want the code's 5 minutes", ttl)
	}
}
