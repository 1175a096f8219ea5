package redis_test

import (
	"context"
	crand "crypto/rand"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/redis"
)

// BenchmarkQueueRedisCost is what a mail job costs Redis itself, in the
// microseconds of the commands it is sent (INFO commandstats; a
// script's time holds its own commands): claiming the jobs (on a long
// queue, as under load, XREADGROUP of the stream whose turn it is, then
// the claims' times and the code lookups of checkLive; claim.lua where
// the stream lacks jobs) and finishing them (finish.lua), in
// batches of 1, 16 and 32, beside the bare mailer's native commands for
// the same jobs (XREADGROUP, then XACK and XDEL: no claim record, no
// status, no code lookup). The load command's drain line shows that cost
// under load; this shows it alone, where each step's share can be read:
//
//	AUTHD_TEST_REDIS_URL=redis://127.0.0.1:6379/0 go test -run '^$' -bench QueueRedisCost -benchtime 200x ./internal/redis/
//
// The counters are the server's: run it on a Redis nothing else uses.
func BenchmarkQueueRedisCost(b *testing.B) {
	c := newClient(b)
	ctx := context.Background()
	for _, batch := range []int{1, 16, 32} {
		b.Run("authd/batch="+strconv.Itoa(batch), func(b *testing.B) {
			s := redis.New(c, redis.Options{Prefix: newPrefix(b, c)})
			now := time.Now()
			// Twice the jobs claimed, and a batch more a stream: each claim
			// finds the stream whose turn it is long enough to fill it, as
			// under the load command until its last mails.
			queueJobs(b, s, 2*b.N*batch+authd.Partitions*batch+1, now)
			// The first claim looks for lapsed claims too (claimState):
			// out of the count, as it is one claim in many under load.
			if _, err := s.Claim(ctx, "w", 1, 30*time.Second, now); err != nil {
				b.Fatal(err)
			}
			costPerJob(b, c, func() []authd.ClaimedJob {
				jobs, err := s.Claim(ctx, "w", batch, 30*time.Second, now)
				if err != nil || len(jobs) == 0 {
					b.Fatalf("claimed %d: %v", len(jobs), err)
				}
				return jobs
			}, []string{"evalsha", "xreadgroup", "zadd", "hmget"}, func(jobs []authd.ClaimedJob) {
				done := make([]authd.FinishedJob, len(jobs))
				for i, j := range jobs {
					done[i] = authd.FinishedJob{Job: j, Status: authd.DeliverySent, Attempts: 1}
				}
				if err := s.FinishAll(ctx, done, now); err != nil {
					b.Fatal(err)
				}
			}, []string{"evalsha"})
		})
	}
	for _, batch := range []int{1, 16, 32} {
		b.Run("bare/batch="+strconv.Itoa(batch), func(b *testing.B) {
			prefix := newPrefix(b, c)
			stream := prefix + "mail"
			if err := c.XGroupCreateMkStream(ctx, stream, "bare", "0").Err(); err != nil {
				b.Fatal(err)
			}
			p := c.Pipeline()
			for i := range b.N * batch {
				// The fields of an authd job, the sealed mail of its size.
				p.XAdd(ctx, &goredis.XAddArgs{Stream: stream, Values: []any{
					"d", "0123456789abcdef0123456789abcdef", "a", "bench" + strconv.Itoa(i), "m", "bench" + strconv.Itoa(i),
					"p", "bench", "c", strconv.Itoa(i), "e", "1764412800000000", "r", "1764412800000000", "s", string(make([]byte, 160)), "t", "1764412800000000"}})
			}
			if _, err := p.Exec(ctx); err != nil {
				b.Fatal(err)
			}
			costPerJob(b, c, func() []string {
				res, err := c.XReadGroup(ctx, &goredis.XReadGroupArgs{Group: "bare", Consumer: "w", Streams: []string{stream, ">"}, Count: int64(batch), Block: -1}).Result()
				if err != nil || len(res) != 1 || len(res[0].Messages) == 0 {
					b.Fatalf("read %v: %v", res, err)
				}
				ids := make([]string, len(res[0].Messages))
				for i, m := range res[0].Messages {
					ids[i] = m.ID
				}
				return ids
			}, []string{"xreadgroup"}, func(ids []string) {
				p := c.Pipeline()
				p.XAck(ctx, stream, "bare", ids...)
				p.XDel(ctx, stream, ids...)
				if _, err := p.Exec(ctx); err != nil {
					b.Fatal(err)
				}
			}, []string{"xack", "xdel"})
		})
	}
}

// costPerJob claims b.N times, then finishes what each claim took, and
// reports the microseconds per job Redis spent in each step's commands
// (claimCmds, finishCmds: commandMicros).
func costPerJob[J any](b *testing.B, c *goredis.Client, claim func() []J, claimCmds []string, finish func([]J), finishCmds []string) {
	b.Helper()
	claimed := make([][]J, 0, b.N)
	b.ResetTimer()
	resetStats(b, c)
	for range b.N {
		claimed = append(claimed, claim())
	}
	claims, n := commandMicros(b, c, claimCmds...), 0
	resetStats(b, c)
	for _, jobs := range claimed {
		finish(jobs)
		n += len(jobs)
	}
	finishes := commandMicros(b, c, finishCmds...)
	b.ReportMetric(claims/float64(n), "claim-µs/job")
	b.ReportMetric(finishes/float64(n), "finish-µs/job")
}

// queueJobs queues n mail jobs on s, as send-code does, each with its
// code. Their ReplaceableAt is zero, as with OTP_RESEND_SECONDS=0 in the
// load command: every claim looks their codes up (checkLive), where the
// default 60 s cooldown skips the lookup for mail sent within it.
func queueJobs(b *testing.B, s *redis.Store, n int, now time.Time) {
	b.Helper()
	ctx := context.Background()
	for i := range int64(n) {
		r := benchIssue(i, now)
		id, err := authd.NewDeliveryID(crand.Reader, r.Address.Partition())
		if err != nil {
			b.Fatal(err)
		}
		r.Job = &authd.MailJob{DeliveryID: id, Address: r.Address, Project: r.Project, CodeID: r.Record.ID,
			ExpiresAt: r.Record.ExpiresAt, Sealed: make([]byte, 160)}
		if _, err := s.IssueCode(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
}

func resetStats(b *testing.B, c *goredis.Client) {
	b.Helper()
	if err := c.ConfigResetStat(context.Background()).Err(); err != nil {
		b.Fatal(err)
	}
}

var commandStat = regexp.MustCompile(`(?m)^cmdstat_([^:]+):calls=\d+,usec=(\d+)`)

// commandMicros is the microseconds Redis spent in the named commands
// since the last resetStats: the ones the client sent. A script's time
// holds its own commands, which commandstats also counts under their
// names: those are not named here.
func commandMicros(b *testing.B, c *goredis.Client, names ...string) float64 {
	b.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total float64
	for _, m := range commandStat.FindAllStringSubmatch(info, -1) {
		if slices.Contains(names, m[1]) {
			v, _ := strconv.ParseFloat(m[2], 64)
			total += v
		}
	}
	return total
}
