package redis_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/redis"
)

// Concurrent send-codes share round trips on every kind of Redis, each
// stored as alone: the metrics count the scripts that went through the
// shared pipelines and the round trips they took.
func TestStoreSharesRoundTrips(t *testing.T) {
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) {
			s, _ := m.store(t, redis.Options{})
			ctx := context.Background()
			now := time.Now()
			const callers, rounds = 64, 3
			for r := range rounds {
				var wg sync.WaitGroup
				start := make(chan struct{})
				for i := range callers {
					wg.Go(func() {
						<-start
						a := addrOf("share-" + strconv.Itoa(r) + "-" + strconv.Itoa(i))
						_, err := s.IssueCode(ctx, authd.IssueRequest{
							Address: a, Project: "shop", ClientIP: "192.0.2.1", Now: now,
							Record: authd.CodeRecord{ID: "id" + strconv.Itoa(i), Hash: []byte("h"), ExpiresAt: now.Add(time.Minute)},
						})
						if err != nil {
							t.Errorf("IssueCode %d: %v", i, err)
						}
					})
				}
				close(start)
				wg.Wait()
			}
			scripts, trips := counter(t, s, "authd_redis_shared_scripts_total"), counter(t, s, "authd_redis_shared_round_trips_total")
			if scripts < callers*rounds || trips >= scripts {
				t.Errorf("%v scripts in %v round trips; want at least %d scripts, in fewer round trips", scripts, trips, callers*rounds)
			}
			t.Logf("%v scripts in %v round trips", scripts, trips)
		})
	}
}
