package testenv_test

import (
	"testing"
	"time"

	"github.com/authd/authd/internal/testenv"
)

// TestCluster starts a real cluster, kills a master and sees its replica
// promoted: what the failover tests rely on.
func TestCluster(t *testing.T) {
	c := testenv.StartCluster(t)
	if got := len(c.Addrs()); got != 6 {
		t.Fatalf("%d nodes, want 6", got)
	}
	masters, err := c.Masters()
	if err != nil || len(masters) != 3 {
		t.Fatalf("masters %v, %v; want 3", masters, err)
	}
	victim, err := c.MasterFor("authd:x")
	if err != nil {
		t.Fatal(err)
	}
	replicas, err := c.ReplicasOf(victim)
	if err != nil || len(replicas) != 1 {
		t.Fatalf("replicas of the master: %v, %v; want one", replicas, err)
	}
	c.Kill(victim)
	if victim.Alive() {
		t.Fatal("killed master still runs")
	}
	start := time.Now()
	if err := c.WaitOK(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	promoted, err := c.MasterFor("authd:x")
	if err != nil || promoted != replicas[0] {
		t.Fatalf("slot of authd:x served by %v (%v) after the kill, want its replica %v", promoted, err, replicas[0])
	}
	t.Logf("replica promoted %v after the kill", time.Since(start).Round(10*time.Millisecond))
}
