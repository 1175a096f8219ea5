package redis_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/redis"
	"github.com/authd/authd/internal/testenv"
)

// waitTimeout is the tests' Options.WaitTimeout.
const waitTimeout = 150 * time.Millisecond

// addressOn returns a new address whose partition's master is (on == true)
// or is not (on == false) master.
func addressOn(t *testing.T, c *testenv.Cluster, prefix string, master *testenv.Node, on bool) string {
	t.Helper()
	for range 1000 {
		a := newAddress()
		m, err := c.MasterFor(partitionTag(prefix, a))
		if err != nil {
			t.Fatal(err)
		}
		if (m == master) == on {
			return a
		}
	}
	t.Fatalf("no address found on (%v) %s", on, master.Addr)
	return ""
}

// TestWaitReplicas, on the real cluster: with its replicas acknowledging,
// a send with WaitReplicas 1 is stored and answered; with the replica of
// the address's master stalled, it is EUNAVAILABLE within the bound — its
// code and job stored all the same, nothing undone — while an address on
// another master is answered at once: the WAIT runs on the node that took
// the write.
func TestWaitReplicas(t *testing.T) {
	ctx := context.Background()
	c := cluster.Get(t)
	f := newSplitFixture(t, onCluster, redis.Options{WaitReplicas: 1, WaitTimeout: waitTimeout})
	s, prefix := f.s, f.prefix
	now := time.Now()
	issue := func(a, id string) (time.Duration, error) {
		began := time.Now()
		_, err := s.IssueCode(ctx, splitIssue(t, a, "192.0.2.1", id, now))
		return time.Since(began), err
	}
	if _, err := issue(newAddress(), "healthy"); err != nil {
		t.Fatalf("replicas present: %v", err)
	}

	masters, err := c.Masters()
	if err != nil {
		t.Fatal(err)
	}
	var master *testenv.Node
	for m := range masters {
		master = m
		break
	}
	replicas, err := c.ReplicasOf(master)
	if err != nil || len(replicas) != 1 {
		t.Fatalf("replicas of %s: %v, %v", master.Addr, replicas, err)
	}
	stalled, elsewhere := addressOn(t, c, prefix, master, true), addressOn(t, c, prefix, master, false)
	// Paused for well under the cluster's node timeout: no failover.
	if err := replicas[0].Pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(replicas[0].Resume)
	took, err := issue(stalled, "short")
	if authd.ErrorCode(err) != authd.EUNAVAILABLE {
		t.Errorf("replica stalled: %v, want %s", err, authd.EUNAVAILABLE)
	}
	if took < waitTimeout || took > waitTimeout+time.Second {
		t.Errorf("replica stalled: answered after %v, want the wait bound %v (and a little)", took, waitTimeout)
	}
	// Stored and queued all the same: nothing to undo.
	if cur, err := s.IsCurrent(ctx, addrOf(stalled), "shop", "short", now); err != nil || !cur {
		t.Errorf("the unacknowledged code: IsCurrent = %v, %v; want stored", cur, err)
	}
	// Acknowledged by its own master's replica, which runs.
	if _, err := issue(elsewhere, "other"); err != nil {
		t.Errorf("address on another master: %v, want success", err)
	}
	replicas[0].Resume()
	if _, err := issue(addressOn(t, c, prefix, master, true), "resumed"); err != nil {
		t.Errorf("replica resumed: %v", err)
	}

	if n := counter(t, s, "authd_redis_wait_short_total"); n != 1 {
		t.Errorf("authd_redis_wait_short_total = %v, want 1", n)
	}
}

// counter is the value of the store's counter name.
func counter(t *testing.T, s *redis.Store, name string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no series %s", name)
	return 0
}

// TestWaitRoundTrips: WAIT rides in the address script's pipeline, on the
// node that runs it: no round trip of its own on any kind of Redis.
func TestWaitRoundTrips(t *testing.T) {
	ctx := context.Background()
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) {
			// The single Redis may have no replica to acknowledge: the
			// answer may be short, the round trips are the same.
			f := newSplitFixture(t, m, redis.Options{WaitReplicas: 1, WaitTimeout: 10 * time.Millisecond})
			if m.cluster {
				f = newSplitFixture(t, m, redis.Options{WaitReplicas: 1, WaitTimeout: waitTimeout})
			}
			now := time.Now()
			want := map[bool]int64{false: 1, true: 2}[m.clusterPath()]
			for i := range 3 {
				var err error
				n := f.trips(func() { _, err = f.s.IssueCode(ctx, splitIssue(t, newAddress(), "192.0.2.1", "c", now)) })
				if err != nil && (m.cluster || authd.ErrorCode(err) != authd.EUNAVAILABLE) {
					t.Fatalf("IssueCode %d: %v", i, err)
				}
				if n != want {
					t.Errorf("IssueCode %d with WAIT: %d round trips, want %d", i, n, want)
				}
			}
		})
	}
}

// TestWaitShortOnSingleRedis: on a single Redis asked for more replicas
// than it has, every send is EUNAVAILABLE after the bound, its code and
// mail job stored (nothing undone: the mail is on its way), so that a
// retry within the cooldown is refused by it; a send refused by a limit
// answers its refusal, not EUNAVAILABLE.
func TestWaitShortOnSingleRedis(t *testing.T) {
	ctx := context.Background()
	for _, m := range []mode{single, split} {
		t.Run(m.name, func(t *testing.T) {
			c := newClient(t)
			info := c.Info(ctx, "replication").Val()
			var replicas int
			fmt.Sscanf(infoValue(info, "connected_slaves"), "%d", &replicas)
			f := newSplitFixture(t, m, redis.Options{WaitReplicas: replicas + 1, WaitTimeout: 50 * time.Millisecond})
			now := time.Now()
			a := newAddress()
			req := splitIssue(t, a, "192.0.2.1", "first", now)
			began := time.Now()
			_, err := f.s.IssueCode(ctx, req)
			if took := time.Since(began); authd.ErrorCode(err) != authd.EUNAVAILABLE || took < 50*time.Millisecond {
				t.Fatalf("IssueCode = %v after %v, want %s after the 50ms bound", err, took, authd.EUNAVAILABLE)
			}
			if cur, err := f.s.IsCurrent(ctx, addrOf(a), "shop", "first", now); err != nil || !cur {
				t.Errorf("IsCurrent = %v, %v; want the code stored", cur, err)
			}
			if d, err := f.s.Delivery(ctx, req.Job.DeliveryID, now); err != nil || d.Status != authd.DeliveryQueued {
				t.Errorf("Delivery = %+v, %v; want its mail queued", d, err)
			}
			_, err = f.s.IssueCode(ctx, splitIssue(t, a, "192.0.2.1", "retry", now.Add(time.Second)))
			if !isLimitErr(err, "cooldown") {
				t.Errorf("retry: %v, want refused by the cooldown", err)
			}
		})
	}
}

func infoValue(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// TestWaitScriptsReloaded: a node with an empty script cache (restarted,
// or a promoted replica: scripts are not replicated) runs the script by
// EVAL in the same pipeline as WAIT.
func TestWaitScriptsReloaded(t *testing.T) {
	ctx := context.Background()
	f := newSplitFixture(t, onCluster, redis.Options{WaitReplicas: 1, WaitTimeout: waitTimeout})
	now := time.Now()
	for i := range 2 {
		if err := flushScripts(ctx, f.c); err != nil {
			t.Fatal(err)
		}
		a := newAddress()
		if _, err := f.s.IssueCode(ctx, splitIssue(t, a, "192.0.2.1", "c", now)); err != nil {
			t.Fatalf("issue %d: %v", i, err)
		}
		if cur, err := f.s.IsCurrent(ctx, addrOf(a), "shop", "c", now); err != nil || !cur {
			t.Fatalf("issue %d: IsCurrent = %v, %v", i, cur, err)
		}
	}
}

// TestWaitSlotMoved: with WAIT the address's script goes to the node the
// client believes holds the slot; when the slot has moved (a resharding)
// that node answers MOVED without running it: 503, nothing stored, and
// the client learns the new owner, so that sends succeed again at once.
func TestWaitSlotMoved(t *testing.T) {
	ctx := context.Background()
	c := cluster.Get(t)
	f := newSplitFixture(t, onCluster, redis.Options{WaitReplicas: 1, WaitTimeout: waitTimeout})
	now := time.Now()
	a := newAddress()
	tag := partitionTag(f.prefix, a)
	if _, err := f.s.IssueCode(ctx, splitIssue(t, a, "192.0.2.1", "before", now)); err != nil {
		t.Fatal(err) // the client now knows the slot's owner
	}
	masters, err := c.Masters()
	if err != nil {
		t.Fatal(err)
	}
	owner, err := c.MasterFor(tag)
	if err != nil {
		t.Fatal(err)
	}
	var to *testenv.Node
	for m := range masters {
		if m != owner {
			to = m
			break
		}
	}
	if _, err := c.MoveSlot(tag, to); err != nil {
		t.Fatal(err)
	}
	b := newAddress()
	for partitionTag(f.prefix, b) != tag {
		b = newAddress()
	}
	_, err = f.s.IssueCode(ctx, splitIssue(t, b, "192.0.2.2", "moved", now))
	if authd.ErrorCode(err) != authd.EUNAVAILABLE || !strings.Contains(err.Error(), "MOVED") {
		t.Fatalf("send to the slot's old owner: %v, want %s (MOVED)", err, authd.EUNAVAILABLE)
	}
	if cur, err := f.s.IsCurrent(ctx, addrOf(b), "shop", "moved", now); err != nil || cur {
		t.Fatalf("IsCurrent after the MOVED = %v, %v; want nothing stored", cur, err)
	}
	var last error
	tries := 0
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		tries++
		ip := fmt.Sprintf("198.51.100.%d", tries) // a 503 keeps its IP's token
		if _, last = f.s.IssueCode(ctx, splitIssue(t, b, ip, "after", now)); last == nil {
			break
		}
	}
	if last != nil {
		t.Fatalf("sends after the MOVED, %d tries: %v", tries, last)
	}
	t.Logf("a send succeeded again at try %d after the MOVED", tries)
	if cur, err := f.s.IsCurrent(ctx, addrOf(a), "shop", "before", now); err != nil || !cur {
		t.Errorf("the code stored before the move: IsCurrent = %v, %v; want moved with its slot", cur, err)
	}
}
