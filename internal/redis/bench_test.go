package redis_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/redis"
	"github.com/authd/authd/internal/testenv"
)

// The benchmarks run against AUTHD_TEST_REDIS_URL:
//
//	AUTHD_TEST_REDIS_URL=redis://127.0.0.1:6379/0 go test -run '^$' -bench . -benchmem ./internal/redis/

var benchModes = []struct {
	name  string
	split bool
}{{"OneScript", false}, {"Split", true}}

// benchIssue is a request for a distinct address with every limit off.
func benchIssue(i int64, now time.Time) authd.IssueRequest {
	a := "bench" + strconv.FormatInt(i, 10)
	return authd.IssueRequest{
		Address:  addrOf(a),
		Project:  "bench",
		ClientIP: "192.0.2.1",
		Record:   authd.CodeRecord{ID: a, Hash: authd.CodeHash([]byte("k"), "bench", a, "123456"), ExpiresAt: now.Add(5 * time.Minute)},
		Now:      now,
	}
}

func BenchmarkIssueCode(b *testing.B) {
	c := newClient(b)
	ctx := context.Background()
	for _, mode := range benchModes {
		for _, parallel := range []bool{false, true} {
			name := mode.name + "/serial"
			if parallel {
				name = mode.name + "/parallel"
			}
			b.Run(name, func(b *testing.B) {
				s := redis.New(c, redis.Options{Prefix: newPrefix(b, c), Split: mode.split})
				now := time.Now()
				var n atomic.Int64
				issue := func() {
					if _, err := s.IssueCode(ctx, benchIssue(n.Add(1), now)); err != nil {
						b.Error(err)
					}
				}
				b.ReportAllocs()
				b.ResetTimer()
				if parallel {
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							issue()
						}
					})
					return
				}
				for b.Loop() {
					issue()
				}
			})
		}
	}
}

// BenchmarkIssueCodeWait is send-code's store call on the real cluster
// (3 masters, a replica each, all on loopback) without WAIT and with WAIT
// 1: what REDIS_WAIT_REPLICAS=1 costs a send when the replicas keep up.
//
//	go test -run '^$' -bench IssueCodeWait -benchtime 5000x ./internal/redis/
func BenchmarkIssueCodeWait(b *testing.B) {
	ctx := context.Background()
	for _, replicas := range []int{0, 1} {
		for _, parallel := range []bool{false, true} {
			name := fmt.Sprintf("wait=%d/serial", replicas)
			if parallel {
				name = fmt.Sprintf("wait=%d/parallel", replicas)
			}
			b.Run(name, func(b *testing.B) {
				s, _ := onCluster.store(b, redis.Options{WaitReplicas: replicas, WaitTimeout: time.Second})
				now := time.Now()
				var n atomic.Int64
				issue := func() {
					if _, err := s.IssueCode(ctx, benchIssue(n.Add(1), now)); err != nil {
						b.Error(err)
					}
				}
				issue() // the scripts, on the nodes
				b.ReportAllocs()
				b.ResetTimer()
				if parallel {
					b.SetParallelism(8) // goroutines per CPU: requests in flight, as under load
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							issue()
						}
					})
					return
				}
				// Serially, each call's latency: WAIT's cost is in the tail.
				var lat []time.Duration
				for b.Loop() {
					began := time.Now()
					issue()
					lat = append(lat, time.Since(began))
				}
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			})
		}
	}
}

func BenchmarkConsumeCode(b *testing.B) {
	c := newClient(b)
	ctx := context.Background()
	for _, mode := range benchModes {
		for _, parallel := range []bool{false, true} {
			name := mode.name + "/serial"
			if parallel {
				name = mode.name + "/parallel"
			}
			b.Run(name, func(b *testing.B) {
				s := redis.New(c, redis.Options{Prefix: newPrefix(b, c), Split: mode.split})
				now := time.Now()
				// One live code per consume, issued beforehand (16 at a
				// time, to keep the set-up short).
				var wg sync.WaitGroup
				var next atomic.Int64
				for range 16 {
					wg.Go(func() {
						for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
							if _, err := s.IssueCode(ctx, benchIssue(i, now)); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				var n atomic.Int64
				consume := func() {
					i := n.Add(1)
					a := "bench" + strconv.FormatInt(i, 10)
					_, err := s.ConsumeCode(ctx, authd.ConsumeRequest{
						Address: addrOf(a), Project: "bench", ClientIP: "192.0.2.1", Now: now,
						Hash:            authd.CodeHash([]byte("k"), "bench", a, "123456"),
						AttemptsPerCode: 5,
					})
					if err != nil {
						b.Error(err)
					}
				}
				b.ReportAllocs()
				b.ResetTimer()
				if parallel {
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							consume()
						}
					})
					return
				}
				for range b.N {
					consume()
				}
			})
		}
	}
}

// BenchmarkClaimIdle is a worker's poll of an empty queue: what every
// instance costs Redis while there is no mail, every PollInterval.
func BenchmarkClaimIdle(b *testing.B) {
	c := newClient(b)
	ctx := context.Background()
	for _, mode := range benchModes {
		b.Run(mode.name, func(b *testing.B) {
			s := redis.New(c, redis.Options{Prefix: newPrefix(b, c), Split: mode.split})
			now := time.Now()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Claim(ctx, "bench", 16, 30*time.Second, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// The two clients compared on what the store does most: EVALSHA of a
// small script, from many goroutines. rueidis pipelines concurrent
// commands on one connection by itself; go-redis takes a pooled connection
// per command.
const benchScript = "return redis.call('EXISTS', KEYS[1])"

var benchParallelism = []int{1, 16}

func BenchmarkEvalShaGoRedis(b *testing.B) {
	c := newClient(b)
	ctx := context.Background()
	script := goredis.NewScript(benchScript)
	if err := script.Load(ctx, c).Err(); err != nil {
		b.Fatal(err)
	}
	keys := []string{"authdtest:bench:evalsha"}
	for _, p := range benchParallelism {
		b.Run("p"+strconv.Itoa(p), func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(p)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := script.EvalSha(ctx, c, keys).Err(); err != nil {
						b.Error(err)
					}
				}
			})
		})
	}
}

func BenchmarkEvalShaRueidis(b *testing.B) {
	opt, err := rueidis.ParseURL(testenv.RedisURL(b))
	if err != nil {
		b.Fatalf("AUTHD_TEST_REDIS_URL: %v", err)
	}
	opt.DisableCache = true // no client-side caching: compare the same work
	c, err := rueidis.NewClient(opt)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	script := rueidis.NewLuaScript(benchScript)
	keys := []string{"authdtest:bench:evalsha"}
	if err := script.Exec(ctx, c, keys, nil).Error(); err != nil { // loads it
		b.Fatal(err)
	}
	for _, p := range benchParallelism {
		b.Run("p"+strconv.Itoa(p), func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(p)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := script.Exec(ctx, c, keys, nil).Error(); err != nil {
						b.Error(err)
					}
				}
			})
		})
	}
}
