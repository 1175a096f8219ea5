package redis_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/redis"
)

// countingHook counts what reaches the server: commands, and pipelines as
// one round trip each. What go-redis sends of its own accord (a new
// connection's HELLO and CLIENT SETINFO, COMMAND, CLUSTER SLOTS) is not
// the store's and is not counted.
type countingHook struct{ trips atomic.Int64 }

func (h *countingHook) DialHook(next goredis.DialHook) goredis.DialHook { return next }
func (h *countingHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		if !ownAccord(cmd) {
			h.trips.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (h *countingHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		if !slices.ContainsFunc(cmds, func(c goredis.Cmder) bool { return ownAccord(c) }) {
			h.trips.Add(1)
		}
		return next(ctx, cmds)
	}
}

// ownAccord reports whether go-redis sent cmd on its own: the store sends
// none of these.
func ownAccord(cmd goredis.Cmder) bool {
	switch cmd.Name() {
	case "hello", "client", "command", "cluster", "auth", "select", "readonly":
		return true
	}
	return false
}

// partitionTag is the hash tag of address's partition under prefix.
func partitionTag(prefix, address string) string {
	return prefix + "{a:" + strconv.Itoa(authd.Partition(address)) + "}:"
}

// TestIssueWithJobOneRoundTrip: queueing the mail job costs send-code no
// extra round trip (after the script is cached), and the job's stream and
// its delivery status share the code's hash slot, so the script stays
// legal on a cluster.
func TestIssueWithJobOneRoundTrip(t *testing.T) {
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) { testIssueWithJobOneRoundTrip(t, m) })
	}
}

func testIssueWithJobOneRoundTrip(t *testing.T, m mode) {
	ctx := context.Background()
	f := newSplitFixture(t, m, redis.Options{})
	c, prefix, s := f.c, f.prefix, f.s
	now := time.Now()
	issue := func(address string) *authd.MailJob {
		job := &authd.MailJob{
			DeliveryID: newDeliveryID(t, address), Address: addrOf(address), Project: "shop", CodeID: "c-" + address,
			ExpiresAt: now.Add(5 * time.Minute), ReplaceableAt: now.Add(time.Minute), Sealed: []byte("sealed"),
		}
		_, err := s.IssueCode(ctx, authd.IssueRequest{
			Address: addrOf(address), Project: "shop", ClientIP: "192.0.2.7", Now: now,
			Record:    authd.CodeRecord{ID: job.CodeID, Hash: []byte("h"), ExpiresAt: job.ExpiresAt},
			SendPerIP: authd.Rate{N: 100, Period: time.Minute}, Job: job,
		})
		if err != nil {
			t.Fatal(err)
		}
		return job
	}
	issue("00000000000000000000000000000001") // loads the script
	// The Redis Cluster path takes the IP's limit first.
	want := map[bool]int64{false: 1, true: 2}[m.clusterPath()]
	if n := f.trips(func() { issue("00000000000000000000000000000003") }); n != want {
		t.Fatalf("IssueCode with a job took %d round trips, want %d", n, want)
	}
	job := issue("00000000000000000000000000000002")

	jobs := 0
	for _, k := range allKeys(t, c, prefix+"*") {
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
	if jobs != 3 {
		t.Fatalf("%d jobs in the streams, want 3", jobs)
	}
	// The status lives beside the code, as long as the code, no longer.
	tag := partitionTag(prefix, job.Address.Mailbox)
	status := tag + "dlv:" + job.DeliveryID
	ttl := c.PTTL(ctx, status).Val()
	if ttl <= 4*time.Minute || ttl > 5*time.Minute {
		t.Errorf("delivery status %s TTL %v, want the code's 5 minutes", status, ttl)
	}
	if a, b := c.ClusterKeySlot(ctx, status).Val(), c.ClusterKeySlot(ctx, tag+"code:shop:"+job.Address.Key).Val(); a != b {
		t.Errorf("status in slot %d, its code in slot %d", a, b)
	}

	// Its retries and its end keep that TTL; a status gone meanwhile is
	// written with one again, never kept for good.
	other := issue("00000000000000000000000000000004")
	otherStatus := partitionTag(prefix, other.Address.Mailbox) + "dlv:" + other.DeliveryID
	c.Del(ctx, otherStatus)
	claimed, err := s.Claim(ctx, "w", 10, time.Minute, now)
	if err != nil {
		t.Fatal(err)
	}
	var done []authd.FinishedJob
	for _, j := range claimed {
		if j.DeliveryID == job.DeliveryID {
			if err := s.Retrying(ctx, j, 1, now.Add(time.Second), now.Add(time.Second)); err != nil {
				t.Fatal(err)
			}
		}
		done = append(done, authd.FinishedJob{Job: j, Status: authd.DeliverySent, Attempts: 2})
	}
	if err := s.FinishAll(ctx, done, now.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{status, otherStatus} {
		if st := c.HGet(ctx, k, "st").Val(); st != authd.DeliverySent {
			t.Errorf("%s: status %q, want sent", k, st)
		}
		if ttl := c.PTTL(ctx, k).Val(); ttl <= 4*time.Minute || ttl > 5*time.Minute {
			t.Errorf("%s: TTL %v after the job ended, want what is left of the code's 5 minutes", k, ttl)
		}
	}
}

// TestQueueRoundTrips: on a single Redis, Claim reads the 64 streams in
// one round trip (one script) while the queue is short (the last claim
// took less than it asked for: TestClaimLongQueue has the other case);
// Extend, Retrying and Finish of a job take one each. In split mode Claim
// is one pipeline (a round trip per node on a cluster).
func TestQueueRoundTrips(t *testing.T) {
	ctx := context.Background()
	for _, m := range allModes {
		f := newSplitFixture(t, m, redis.Options{})
		now := time.Now()
		// Each job in a partition of its own: on the cluster path Claim
		// takes ceil(n/64) of each partition, one here.
		used := map[int]bool{}
		issue := func(n int) {
			t.Helper()
			for range n {
				a := newAddress()
				for used[authd.Partition(a)] {
					a = newAddress()
				}
				used[authd.Partition(a)] = true
				if _, err := f.s.IssueCode(ctx, splitIssue(t, a, "192.0.2.1", "c", now)); err != nil {
					t.Fatal(err)
				}
			}
		}
		// Load the scripts.
		issue(1)
		warm, err := f.s.Claim(ctx, "warm", 2, time.Minute, now)
		if err != nil || len(warm) != 1 {
			t.Fatalf("Claim: %v, %v", warm, err)
		}
		_ = f.s.Extend(ctx, "warm", warm, now)
		_ = f.s.Retrying(ctx, warm[0], 1, now, now)
		_ = f.s.Finish(ctx, warm[0], authd.DeliverySent, 1, now)
		issue(2)

		var jobs []authd.ClaimedJob
		for _, c := range []struct {
			name string
			fn   func() error
		}{
			{"Claim", func() error { jobs, err = f.s.Claim(ctx, "a", 10, time.Minute, now); return err }},
			{"Extend", func() error { return f.s.Extend(ctx, "a", jobs[:1], now) }},
			{"Retrying", func() error { return f.s.Retrying(ctx, jobs[0], 1, now.Add(time.Second), now) }},
			{"Finish", func() error { return f.s.Finish(ctx, jobs[0], authd.DeliverySent, 1, now) }},
			{"Claim, nothing new", func() error { _, err := f.s.Claim(ctx, "b", 10, time.Minute, now); return err }},
		} {
			if n := f.trips(func() { err = c.fn() }); err != nil || n != 1 {
				t.Errorf("%s %s: %d round trips, %v; want 1", m.name, c.name, n, err)
			}
		}
		if len(jobs) != 2 {
			t.Errorf("%s: claimed %d jobs, want 2", m.name, len(jobs))
		}
	}
}

// TestQueueKeys: a claimed job's claim is a member of its partition's
// claims set, scored with the claim's time by the caller's clock; Finish
// removes entry, pending entry and claim.
func TestQueueKeys(t *testing.T) {
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) { testQueueKeys(t, m) })
	}
}

func testQueueKeys(t *testing.T, m mode) {
	ctx := context.Background()
	f := newSplitFixture(t, m, redis.Options{})
	now := time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)
	a := newAddress()
	if _, err := f.s.IssueCode(ctx, splitIssue(t, a, "192.0.2.1", "c", now)); err != nil {
		t.Fatal(err)
	}
	jobs, err := f.s.Claim(ctx, "a", 1, time.Minute, now)
	if err != nil || len(jobs) != 1 {
		t.Fatalf("Claim: %v, %v", jobs, err)
	}
	tag := partitionTag(f.prefix, a)
	ids := f.c.XRange(ctx, tag+"mail", "-", "+").Val()
	if len(ids) != 1 || jobs[0].Ref != tag+"mail "+ids[0].ID {
		t.Fatalf("Ref %q, stream entries %v", jobs[0].Ref, ids)
	}
	if got := ids[0].Values["t"]; got != strconv.FormatInt(now.UnixMicro(), 10) {
		t.Errorf("entry's queue time t = %v, want the caller's %d", got, now.UnixMicro())
	}
	score, err := f.c.ZScore(ctx, tag+"claims", ids[0].ID).Result()
	if err != nil || int64(score) != now.UnixMicro() {
		t.Errorf("claim score %v, %v; want the caller's %d", score, err, now.UnixMicro())
	}
	if err := f.s.Finish(ctx, jobs[0], authd.DeliverySent, 1, now); err != nil {
		t.Fatal(err)
	}
	if n := f.c.XLen(ctx, tag+"mail").Val(); n != 0 {
		t.Errorf("%d entries left in the stream", n)
	}
	if n := f.c.ZCard(ctx, tag+"claims").Val(); n != 0 {
		t.Errorf("%d claims left", n)
	}
	if p := f.c.XPending(ctx, tag+"mail", "authd").Val(); p.Count != 0 {
		t.Errorf("%d entries left pending", p.Count)
	}
}

// TestQueueOlderVersion: jobs queued and claimed by an older version of
// authd (no queue time in the entry, no claim time, a delivery id that
// does not name its partition, the group made by XREADGROUP) are still
// read: new ones at once, claimed ones once their claim, aged from Redis's
// idle time, lapses; their status goes to their stream's partition.
func TestQueueOlderVersion(t *testing.T) {
	ctx := context.Background()
	for _, m := range allModes {
		split := m.name
		f := newSplitFixture(t, m, redis.Options{})
		now := time.Now()
		tag := f.prefix + "{a:7}:"
		stream := tag + "mail"
		old := func(dlv string) string {
			t.Helper()
			id, err := f.c.XAdd(ctx, &goredis.XAddArgs{Stream: stream, Values: []any{
				"d", dlv, "a", "addr", "p", "shop", "c", "code-" + dlv,
				"e", now.Add(5 * time.Minute).UnixMicro(), "r", now.UnixMicro(), "s", "sealed",
			}}).Result()
			if err != nil {
				t.Fatal(err)
			}
			return id
		}
		claimedID := old("ffffffffffffffffffffffffffffff00") // partition 0 by its id
		if err := f.c.XGroupCreate(ctx, stream, "authd", "0").Err(); err != nil {
			t.Fatal(err)
		}
		if err := f.c.XReadGroup(ctx, &goredis.XReadGroupArgs{Group: "authd", Consumer: "old", Streams: []string{stream, ">"}, Count: 1, Block: -1}).Err(); err != nil {
			t.Fatal(err)
		}
		old("ffffffffffffffffffffffffffffff01")
		jobs, err := f.s.Claim(ctx, "new", 10, time.Minute, now)
		if err != nil || len(jobs) != 1 || jobs[0].CodeID != "code-ffffffffffffffffffffffffffffff01" {
			t.Fatalf("%s: Claim = %+v, %v; want the unclaimed old job only", split, jobs, err)
		}
		if d := time.Since(jobs[0].QueuedAt); d < 0 || d > 5*time.Second {
			t.Errorf("%s: QueuedAt %v, want the entry id's time", split, jobs[0].QueuedAt)
		}
		// Our own claim renewed, the old one's left to lapse.
		if err := f.s.Extend(ctx, "new", jobs, now.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		lapsed, err := f.s.Claim(ctx, "new", 10, time.Minute, now.Add(time.Minute))
		if err != nil || len(lapsed) != 1 || !strings.HasSuffix(lapsed[0].Ref, claimedID) {
			t.Fatalf("%s: Claim a minute later = %+v, %v; want the old claim", split, lapsed, err)
		}
		if err := f.s.Finish(ctx, lapsed[0], authd.DeliverySent, 1, now); err != nil {
			t.Fatal(err)
		}
		if err := f.s.Retrying(ctx, jobs[0], 1, now.Add(time.Second), now); err != nil {
			t.Fatal(err)
		}
		for id, want := range map[string]string{
			"ffffffffffffffffffffffffffffff00": "sent",
			"ffffffffffffffffffffffffffffff01": "retrying",
		} {
			if got := f.c.HGet(ctx, tag+"dlv:"+id, "st").Val(); got != want {
				t.Errorf("%s: status of %s in its stream's partition = %q, want %q", split, id, got, want)
			}
		}
		if keys := allKeys(t, f.c, f.prefix+"*:dlv:*"); len(keys) != 2 {
			t.Errorf("%s: status keys %q, want two, in partition 7", split, keys)
		}
	}
}

// Claim takes no more than it is asked for: n in all on a single Redis
// (the streams read in turn), at most one more per partition on a Cluster,
// so that one instance does not take the whole queue while others idle.
func TestClaimTakesAtMostN(t *testing.T) {
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) {
			ctx := context.Background()
			s, _ := m.store(t, redis.Options{})
			now := time.Now()
			for i := range 200 {
				a := fmt.Sprintf("%032x", i)
				job := &authd.MailJob{DeliveryID: newDeliveryID(t, a), Address: addrOf(a), Project: "shop", CodeID: "c" + a,
					ExpiresAt: now.Add(5 * time.Minute), ReplaceableAt: now, Sealed: []byte("s")}
				if _, err := s.IssueCode(ctx, authd.IssueRequest{Address: addrOf(a), Project: "shop", Now: now,
					Record: authd.CodeRecord{ID: job.CodeID, Hash: []byte("h"), ExpiresAt: job.ExpiresAt}, Job: job}); err != nil {
					t.Fatal(err)
				}
			}
			limit := 3
			if m.clusterPath() {
				limit = authd.Partitions // ceil(3/64) per partition
			}
			got := map[string]bool{}
			for range 3 {
				jobs, err := s.Claim(ctx, "c1", 3, time.Minute, now)
				if err != nil {
					t.Fatal(err)
				}
				if len(jobs) == 0 || len(jobs) > limit {
					t.Fatalf("Claim(3) took %d jobs, want 1 to %d", len(jobs), limit)
				}
				for _, j := range jobs {
					got[j.DeliveryID] = true
				}
			}
			if !m.clusterPath() && len(got) != 9 {
				t.Fatalf("three Claim(3) took %d distinct jobs, want 9", len(got))
			}
		})
	}
}

// TestClaimLongQueue: while the queue is long (the last claim took all it
// asked for, from one stream), Claim on a single Redis reads the stream
// whose turn it is by XREADGROUP, then writes the claims' times: two
// round trips, up to n jobs of one stream, each claimed once. Once a
// stream holds fewer than n, the script claims the rest: never more than
// n, every job once, every claim timed. And those claims lapse as the
// script's do, by the callers' clock: another consumer takes them over
// once the claim timeout has passed, not before. (A read whose claim
// times were never written, its consumer dead in between, lapses as an
// older version's claims do: TestQueueOlderVersion.)
func TestClaimLongQueue(t *testing.T) {
	ctx := context.Background()
	for _, m := range allModes {
		if m.clusterPath() {
			continue // one script per stream: TestQueueRoundTrips
		}
		t.Run(m.name, func(t *testing.T) {
			f := newSplitFixture(t, m, redis.Options{})
			now := time.Now()
			const per, queued = 3, 4 // jobs a claim, jobs in each partition
			for p := range authd.Partitions {
				for i := 0; i < queued; {
					a := newAddress()
					if authd.Partition(a) != p {
						continue
					}
					r := splitIssue(t, a, "192.0.2.1", "c"+a, now)
					r.MailsPerProject, r.SendPerIP = authd.Rate{}, authd.Rate{}
					if _, err := f.s.IssueCode(ctx, r); err != nil {
						t.Fatal(err)
					}
					i++
				}
			}
			// The first claim looks for lapsed claims (the script) and is full.
			first, err := f.s.Claim(ctx, "a", per, time.Minute, now)
			if err != nil || len(first) != per {
				t.Fatalf("Claim: %d jobs, %v", len(first), err)
			}
			// The first read by XREADGROUP meets a stream without the group
			// (the script made those of the streams it read): it makes all
			// 64, then reads.
			second, err := f.s.Claim(ctx, "a", per, time.Minute, now)
			if err != nil || len(second) != per {
				t.Fatalf("Claim: %d jobs, %v", len(second), err)
			}
			held := map[string]bool{}
			for _, j := range append(first, second...) {
				held[j.Ref] = true
			}
			// hold notes jobs a claimed: each once, its claim timed now.
			hold := func(step string, jobs []authd.ClaimedJob) {
				t.Helper()
				for _, j := range jobs {
					if held[j.Ref] {
						t.Fatalf("%s: %s claimed twice", step, j.Ref)
					}
					held[j.Ref] = true
					st, id, _ := strings.Cut(j.Ref, " ")
					claims := strings.TrimSuffix(st, "mail") + "claims"
					if at, err := f.c.ZScore(ctx, claims, id).Result(); err != nil || int64(at) != now.UnixMicro() {
						t.Fatalf("%s: %s's claim time %v, %v; want %d", step, j.Ref, int64(at), err, now.UnixMicro())
					}
				}
			}
			for round := range 10 {
				var jobs []authd.ClaimedJob
				if n := f.trips(func() { jobs, err = f.s.Claim(ctx, "a", per, time.Minute, now) }); err != nil || n != 2 {
					t.Fatalf("round %d: %d round trips, %v; want 2", round, n, err)
				}
				if len(jobs) != per {
					t.Fatalf("round %d: claimed %d jobs, want %d", round, len(jobs), per)
				}
				stream, _, _ := strings.Cut(jobs[0].Ref, " ")
				for _, j := range jobs {
					if st, _, _ := strings.Cut(j.Ref, " "); st != stream {
						t.Fatalf("round %d: jobs of %s and %s, want one stream", round, stream, st)
					}
				}
				hold(fmt.Sprint("round ", round), jobs)
			}
			// The rest, the streams coming round again with one job each.
			for round := 0; ; round++ {
				jobs, err := f.s.Claim(ctx, "a", per, time.Minute, now)
				if err != nil {
					t.Fatal(err)
				}
				if len(jobs) == 0 {
					break
				}
				if len(jobs) > per || round > queued*authd.Partitions {
					t.Fatalf("drain round %d: claimed %d jobs, want 1 to %d", round, len(jobs), per)
				}
				hold(fmt.Sprint("drain round ", round), jobs)
			}
			if len(held) != queued*authd.Partitions {
				t.Fatalf("a claimed %d jobs, want all %d", len(held), queued*authd.Partitions)
			}
			// Not lapsed yet: another consumer takes none of them.
			other := f.plain(m)
			rest, err := other.Claim(ctx, "b", 1000, time.Minute, now.Add(time.Minute-time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			if len(rest) != 0 {
				t.Fatalf("b claimed %d jobs, want none", len(rest))
			}
			// Lapsed: b takes a's over.
			lapsed, err := other.Claim(ctx, "b", 1000, time.Minute, now.Add(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			took := 0
			for _, j := range lapsed {
				if held[j.Ref] {
					took++
				}
			}
			if took != len(held) {
				t.Fatalf("b took over %d of a's %d lapsed claims", took, len(held))
			}
		})
	}
}
