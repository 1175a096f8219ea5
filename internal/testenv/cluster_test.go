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
	c.Kill(victim)
	if victim.Alive() {
		t.Fatal("killed master still runs")
	}
	start := time.Now()
	if err := c.WaitOK(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	promoted, err := c.MasterFor("authd:x")
	if err != nil || promoted == victim {
		t.Fatalf("slot of authd:x served by %v (%v) after the kill", promoted, err)
	}
	t.Logf("replica promoted %v after the kill", time.Since(start).Round(10*time.Millisecond))
}
