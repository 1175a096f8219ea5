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

// Concurrent send-codes share round trips on one Redis, each stored as
// alone: the metrics count the scripts that went through the shared
// pipelines and the pipelines they took. On the Redis Cluster path
// (forced on one Redis, or a real cluster) each goes alone.
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
			switch {
			case (m.split || m.cluster) && (scripts != 0 || trips != 0):
				t.Errorf("on the Cluster path: %v scripts shared in %v pipelines, want none", scripts, trips)
			case !m.split && !m.cluster && (scripts < callers*rounds || trips >= scripts):
				t.Errorf("%v scripts in %v pipelines; want at least %d scripts, in fewer pipelines", scripts, trips, callers*rounds)
			}
			t.Logf("%v scripts in %v round trips", scripts, trips)
		})
	}
}
