package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// SentinelMaster is the name the Sentinels of StartSentinel know their
// master by: REDIS_URL's master_name.
const SentinelMaster = "authd"

// SentinelDownAfter is the down-after-milliseconds of the Sentinels
// started here: they begin a failover about this long after the master
// stops answering. Not less: at 1 s, on a loaded machine, a Sentinel
// found the replica it had just promoted slow to answer its first PING
// and failed over a second time, losing what the first new master had
// acknowledged (about 1 run in 25).
const SentinelDownAfter = 2000 * time.Millisecond

// A Sentinel is a Redis master with two replicas and three Sentinels
// watching them, real processes on loopback, started by StartSentinel for
// one test and stopped at its end.
type Sentinel struct {
	t         testing.TB
	dir       string
	mu        sync.Mutex
	servers   []*Node // the master first, as started
	sentinels []*Node
}

// StartSentinel starts one master, two replicas of it and three
// Sentinels (quorum 2, down-after-milliseconds SentinelDownAfter, a short
// failover-timeout) on free loopback ports, and waits until the replicas
// replicate and every Sentinel knows both replicas and the two other
// Sentinels: a kill of the master is then answered by a failover. It
// skips (or fails, under AUTHD_TEST_REQUIRE_ALL=1) when redis-server is
// not on PATH.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	server := LookPath(t, "redis-server")
	LookPath(t, "redis-cli")
	var lastErr error
	for try := 0; try < 3; try++ { // free ports may be taken between the check and the bind
		s := &Sentinel{t: t, dir: t.TempDir()}
		if lastErr = s.start(server); lastErr == nil {
			t.Cleanup(func() {
				s.stop()
				if t.Failed() {
					s.logLogs()
				}
			})
			return s
		}
		s.stop()
	}
	t.Fatalf("testenv: no Redis Sentinel setup: %v", lastErr)
	return nil
}

func (s *Sentinel) start(server string) error {
	ports, err := freePorts(6)
	if err != nil {
		return err
	}
	// A replica syncs at once, not after the default 5 s a master waits
	// for more replicas to share one transfer; any of them may become the
	// master.
	noDelay := []string{"--repl-diskless-sync-delay", "0"}
	master, err := startNode(server, filepath.Join(s.dir, strconv.Itoa(ports[0])), ports[0], noDelay...)
	if err != nil {
		return err
	}
	s.servers = append(s.servers, master)
	for _, p := range ports[1:3] {
		n, err := startNode(server, filepath.Join(s.dir, strconv.Itoa(p)), p, append(noDelay, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port))...)
		if err != nil {
			return err
		}
		s.servers = append(s.servers, n)
	}
	if err := waitFor(30*time.Second, func() error {
		out, err := Cli(master, "info", "replication")
		if err != nil {
			return err
		}
		if n := infoField(out, "connected_slaves"); n != "2" {
			return fmt.Errorf("master has %s replicas connected", n)
		}
		for _, r := range s.servers[1:] {
			out, err := Cli(r, "info", "replication")
			if err != nil {
				return err
			}
			if st := infoField(out, "master_link_status"); st != "up" {
				return fmt.Errorf("%s: master_link_status:%s", r.Addr, st)
			}
		}
		return nil
	}); err != nil {
		return err
	}
	for _, p := range ports[3:] {
		dir := filepath.Join(s.dir, "sentinel-"+strconv.Itoa(p))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		conf := filepath.Join(dir, "sentinel.conf") // Sentinel rewrites it: its own file
		body := fmt.Sprintf(`port %d
bind 127.0.0.1
dir %s
logfile %s
sentinel monitor %s 127.0.0.1 %d 2
sentinel down-after-milliseconds %s %d
sentinel failover-timeout %s 3000
sentinel parallel-syncs %s 2
`, p, dir, filepath.Join(dir, "sentinel.log"), SentinelMaster, master.Port,
			SentinelMaster, SentinelDownAfter.Milliseconds(), SentinelMaster, SentinelMaster)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			return err
		}
		n, err := startProcess(server, p, []string{conf, "--sentinel"})
		if err != nil {
			return err
		}
		s.sentinels = append(s.sentinels, n)
	}
	// A Sentinel that does not know the others cannot be elected to fail
	// over; they find each other through the master every 2 s.
	return waitFor(30*time.Second, func() error {
		for _, sn := range s.sentinels {
			out, err := Cli(sn, "sentinel", "master", SentinelMaster)
			if err != nil {
				return err
			}
			f := pairs(out)
			if f["num-slaves"] != "2" || f["num-other-sentinels"] != "2" {
				return fmt.Errorf("sentinel %s knows %s replicas and %s other sentinels", sn.Addr, f["num-slaves"], f["num-other-sentinels"])
			}
		}
		return nil
	})
}

// URL returns a redis:// URL naming the three Sentinels (the first as the
// host, the others as addr query parameters) and the master_name, as
// REDIS_URL reads it.
func (s *Sentinel) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := "redis://" + s.sentinels[0].Addr + "?master_name=" + SentinelMaster
	for _, n := range s.sentinels[1:] {
		u += "&addr=" + n.Addr
	}
	return u
}

// Master returns the master as every Sentinel reports it now, or an
// error when they do not agree or it does not say it is a master.
func (s *Sentinel) Master() (*Node, error) {
	var addr string
	for _, sn := range s.sentinelNodes() {
		out, err := Cli(sn, "sentinel", "get-master-addr-by-name", SentinelMaster)
		if err != nil {
			return nil, err
		}
		f := strings.Fields(out)
		if len(f) != 2 {
			return nil, fmt.Errorf("sentinel %s: get-master-addr-by-name: %q", sn.Addr, out)
		}
		a := f[0] + ":" + f[1]
		if addr != "" && a != addr {
			return nil, fmt.Errorf("sentinels disagree: %s and %s", addr, a)
		}
		addr = a
	}
	n := s.server(addr)
	if n == nil {
		return nil, fmt.Errorf("sentinels name %s, not one of the servers", addr)
	}
	out, err := Cli(n, "info", "replication")
	if err != nil {
		return nil, err
	}
	if role := infoField(out, "role"); role != "master" {
		return nil, fmt.Errorf("%s, the sentinels' master, says role:%s", addr, role)
	}
	return n, nil
}

// Kill sends SIGKILL to n and waits until it is gone.
func (s *Sentinel) Kill(n *Node) {
	s.t.Helper()
	n.kill(syscall.SIGKILL)
}

// WaitFailover waits until every Sentinel reports a master other than
// old, and that server says it is the master; it returns it.
func (s *Sentinel) WaitFailover(old *Node, within time.Duration) (*Node, error) {
	var m *Node
	err := waitFor(within, func() error {
		n, err := s.Master()
		if err != nil {
			return err
		}
		if n == old {
			return fmt.Errorf("the sentinels still name %s", old.Addr)
		}
		m = n
		return nil
	})
	return m, err
}

func (s *Sentinel) server(addr string) *Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.servers {
		if n.Addr == addr {
			return n
		}
	}
	return nil
}

func (s *Sentinel) sentinelNodes() []*Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Node(nil), s.sentinels...)
}

func (s *Sentinel) stop() {
	s.mu.Lock()
	nodes := append(append([]*Node(nil), s.sentinels...), s.servers...)
	s.mu.Unlock()
	for _, n := range nodes {
		n.kill(syscall.SIGKILL)
	}
}

// logLogs logs every server's and Sentinel's log file, for a test that
// failed: what the Sentinels decided, and when.
func (s *Sentinel) logLogs() {
	files, _ := filepath.Glob(filepath.Join(s.dir, "*", "*.log"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err == nil {
			s.t.Logf("%s:\n%s", filepath.Base(filepath.Dir(f)), b)
		}
	}
}

// waitFor calls f every 50 ms until it returns nil, or returns its last
// error once within has passed.
func waitFor(within time.Duration, f func() error) error {
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %v", within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pairs reads redis-cli's printing of a flat name/value list, one item a
// line.
func pairs(out string) map[string]string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	m := map[string]string{}
	for i := 0; i+1 < len(lines); i += 2 {
		m[strings.TrimSpace(lines[i])] = strings.TrimSpace(lines[i+1])
	}
	return m
}
