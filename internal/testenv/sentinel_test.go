package testenv_test

import (
	"testing"
	"time"

	"github.com/authd/authd/internal/testenv"
)

// TestSentinel starts a real Sentinel setup, kills the master and sees a
// replica promoted: what the Sentinel failover test relies on.
func TestSentinel(t *testing.T) {
	s := testenv.StartSentinel(t)
	old, err := s.Master()
	if err != nil {
		t.Fatal(err)
	}
	s.Kill(old)
	if old.Alive() {
		t.Fatal("killed master still runs")
	}
	start := time.Now()
	promoted, err := s.WaitFailover(old, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if promoted == old || !promoted.Alive() {
		t.Fatalf("master %s after the kill of %s", promoted.Addr, old.Addr)
	}
	t.Logf("the sentinels named a new master %v after the kill", time.Since(start).Round(10*time.Millisecond))
}
