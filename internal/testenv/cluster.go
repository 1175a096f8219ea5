package testenv

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// NodeTimeout is the cluster-node-timeout of the clusters started here: a
// replica is promoted about this long after its master stops answering.
const NodeTimeout = 2000 * time.Millisecond

// A Cluster is a Redis Cluster of real redis-server processes on loopback:
// three masters and a replica for each, started by StartCluster for one
// test and stopped at its end, or by a SharedCluster for a whole test
// binary.
type Cluster struct {
	dir     string
	tempDir bool // dir is the cluster's own, removed by Stop
	mu      sync.Mutex
	nodes   []*Node
}

// A Node is one redis-server of a Cluster (or of a Sentinel setup).
type Node struct {
	Addr string // 127.0.0.1:port
	Port int
	cmd  *exec.Cmd
	done chan struct{}
}

// StartCluster starts a 3-master + 3-replica Redis Cluster on free
// loopback ports with a short cluster-node-timeout (NodeTimeout), waits
// until every node reports cluster_state:ok, and stops it when t ends.
// It skips (or fails, under AUTHD_TEST_REQUIRE_ALL=1) when redis-server or
// redis-cli is not on PATH.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	server := LookPath(t, "redis-server")
	LookPath(t, "redis-cli")
	c, err := startCluster(server, func() (string, bool) { return t.TempDir(), false })
	if err != nil {
		t.Fatalf("testenv: no Redis Cluster: %v", err)
	}
	t.Cleanup(c.Stop)
	return c
}

// startCluster starts a cluster with its files in a directory from
// tempDir (own: Stop removes it), trying again on other ports if one was
// taken between the check and the bind.
func startCluster(server string, tempDir func() (dir string, own bool)) (*Cluster, error) {
	var lastErr error
	for try := 0; try < 3; try++ {
		c := &Cluster{}
		c.dir, c.tempDir = tempDir()
		if lastErr = c.start(server); lastErr == nil {
			return c, nil
		}
		c.Stop()
	}
	return nil, lastErr
}

// A SharedCluster is one Cluster for a whole test binary, so that a
// package's tests do not start one each (about 3 s apiece): the first Get
// starts it, and TestMain stops it after m.Run. Tests share it through
// key prefixes of their own; a test that kills or pauses nodes for longer
// than a moment starts its own with StartCluster instead.
type SharedCluster struct {
	once sync.Once
	c    *Cluster
	err  error
}

// Get returns the shared cluster, starting it on first use. It skips (or
// fails, under AUTHD_TEST_REQUIRE_ALL=1) when redis-server or redis-cli is
// not on PATH, and fails t when the cluster cannot be started.
func (s *SharedCluster) Get(t testing.TB) *Cluster {
	t.Helper()
	server := LookPath(t, "redis-server")
	LookPath(t, "redis-cli")
	s.once.Do(func() {
		s.c, s.err = startCluster(server, func() (string, bool) {
			dir, err := os.MkdirTemp("", "authd-cluster-")
			if err != nil {
				return os.TempDir(), false
			}
			return dir, true
		})
	})
	if s.err != nil {
		t.Fatalf("testenv: no Redis Cluster: %v", s.err)
	}
	return s.c
}

// Stop stops the shared cluster if it was started. Call it from TestMain
// after m.Run: the nodes would die with the test binary anyway
// (Pdeathsig), but their files would stay.
func (s *SharedCluster) Stop() {
	if s.c != nil {
		s.c.Stop()
	}
}

func (c *Cluster) start(server string) error {
	ports, err := freePorts(6)
	if err != nil {
		return err
	}
	for _, p := range ports {
		n, err := startNode(server, filepath.Join(c.dir, strconv.Itoa(p)), p,
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.Itoa(int(NodeTimeout/time.Millisecond)),
			// A replica may take over however long ago it last heard from
			// its master: a test's cluster is seconds old, and a failover
			// test must see a promotion every time.
			"--cluster-replica-validity-factor", "0",
			// A replica's first sync at once, not after the default 5 s
			// wait for other replicas to share it: until it has synced it
			// acknowledges nothing (WAIT counts it out).
			"--repl-diskless-sync-delay", "0")
		if err != nil {
			return err
		}
		c.nodes = append(c.nodes, n)
	}
	args := []string{"--cluster", "create"}
	for _, n := range c.nodes {
		args = append(args, n.Addr)
	}
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	out, err := exec.Command("redis-cli", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("redis-cli --cluster create: %v: %s", err, out)
	}
	if err := c.WaitOK(30 * time.Second); err != nil {
		return err
	}
	// Every node sees the three replicas as replicas, so that a failover
	// test's kill is answered by a promotion.
	deadline := time.Now().Add(30 * time.Second)
	for _, n := range c.nodes {
		for {
			out, err := c.cli(n, "cluster", "nodes")
			if err == nil && strings.Count(out, "slave") == 3 {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s does not see three replicas: %v %s", n.Addr, err, out)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// And every replica has synced: a master counts it among those that
	// acknowledge writes.
	masters, err := c.Masters()
	if err != nil {
		return err
	}
	for m := range masters {
		for {
			out, err := c.cli(m, "info", "replication")
			if err == nil && infoField(out, "connected_slaves") == "1" && strings.Contains(out, "state=online") {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: its replica has not synced: %v %s", m.Addr, err, out)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// Addrs returns every node's address, masters and replicas alike, for a
// cluster client's seed list.
func (c *Cluster) Addrs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var a []string
	for _, n := range c.nodes {
		a = append(a, n.Addr)
	}
	return a
}

// URL returns a redis:// URL naming every node (the first as the host,
// the rest as addr query parameters), as REDIS_URL with REDIS_CLUSTER=true
// reads it.
func (c *Cluster) URL() string {
	a := c.Addrs()
	u := "redis://" + a[0]
	for i, addr := range a[1:] {
		if i == 0 {
			u += "?"
		} else {
			u += "&"
		}
		u += "addr=" + addr
	}
	return u
}

// Masters returns the nodes that serve slots now, as a live node reports
// them, with the slot ranges each serves ("0-5460").
func (c *Cluster) Masters() (map[*Node][]string, error) {
	out, err := c.cli(c.live(), "cluster", "nodes")
	if err != nil {
		return nil, err
	}
	m := map[*Node][]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 9 || !strings.Contains(f[2], "master") {
			continue
		}
		if n := c.node(nodeAddr(f[1])); n != nil {
			m[n] = f[8:]
		}
	}
	return m, nil
}

// MasterFor returns the node that is master now for the slot of key.
func (c *Cluster) MasterFor(key string) (*Node, error) {
	out, err := c.cli(c.live(), "cluster", "keyslot", key)
	if err != nil {
		return nil, err
	}
	slot, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		return nil, fmt.Errorf("cluster keyslot: %q", out)
	}
	masters, err := c.Masters()
	if err != nil {
		return nil, err
	}
	for n, ranges := range masters {
		for _, r := range ranges {
			lo, hi, _ := strings.Cut(r, "-")
			a, err1 := strconv.Atoi(lo)
			b, err2 := strconv.Atoi(hi)
			if hi == "" {
				b, err2 = a, nil
			}
			if err1 == nil && err2 == nil && a <= slot && slot <= b {
				return n, nil
			}
		}
	}
	return nil, fmt.Errorf("no master serves slot %d", slot)
}

// Kill sends SIGKILL to n and waits until it is gone: a master lost with
// whatever it had not yet replicated.
func (c *Cluster) Kill(n *Node) {
	n.kill(syscall.SIGKILL)
}

// ReplicasOf returns the nodes that replicate master now, as a live node
// reports them.
func (c *Cluster) ReplicasOf(master *Node) ([]*Node, error) {
	out, err := c.cli(c.live(), "cluster", "nodes")
	if err != nil {
		return nil, err
	}
	var masterID string
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, line := range lines {
		if f := strings.Fields(line); len(f) >= 4 && nodeAddr(f[1]) == master.Addr {
			masterID = f[0]
		}
	}
	if masterID == "" {
		return nil, fmt.Errorf("%s is not in the cluster", master.Addr)
	}
	var replicas []*Node
	for _, line := range lines {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.Contains(f[2], "slave") || f[3] != masterID {
			continue
		}
		if n := c.node(nodeAddr(f[1])); n != nil {
			replicas = append(replicas, n)
		}
	}
	return replicas, nil
}

// MoveSlot moves the slot of key, with its keys, to the master to (a
// resharding of one slot, as redis-cli --cluster reshard does it), and
// returns the master it left. Clients that cached the old owner are told
// MOVED.
func (c *Cluster) MoveSlot(key string, to *Node) (*Node, error) {
	from, err := c.MasterFor(key)
	if err != nil {
		return nil, err
	}
	if from == to {
		return from, nil
	}
	out, err := c.cli(from, "cluster", "keyslot", key)
	if err != nil {
		return nil, err
	}
	slot := strings.TrimSpace(out)
	fromID, err := c.cli(from, "cluster", "myid")
	if err != nil {
		return nil, err
	}
	toID, err := c.cli(to, "cluster", "myid")
	if err != nil {
		return nil, err
	}
	fromID, toID = strings.TrimSpace(fromID), strings.TrimSpace(toID)
	steps := [][]string{
		{to.Addr, "cluster", "setslot", slot, "importing", fromID},
		{from.Addr, "cluster", "setslot", slot, "migrating", toID},
	}
	for _, st := range steps {
		if _, err := c.cli(c.node(st[0]), st[1:]...); err != nil {
			return nil, err
		}
	}
	for {
		out, err := c.cli(from, "cluster", "getkeysinslot", slot, "100")
		if err != nil {
			return nil, err
		}
		keys := strings.Fields(out)
		if len(keys) == 0 {
			break
		}
		args := append([]string{"migrate", "127.0.0.1", strconv.Itoa(to.Port), "", "0", "5000", "keys"}, keys...)
		if out, err := c.cli(from, args...); err != nil || !strings.Contains(out, "OK") {
			return nil, fmt.Errorf("migrate: %v %s", err, out)
		}
	}
	masters, err := c.Masters()
	if err != nil {
		return nil, err
	}
	for m := range masters {
		if _, err := c.cli(m, "cluster", "setslot", slot, "node", toID); err != nil {
			return nil, err
		}
	}
	return from, nil
}

// nodeAddr is the host:port of a CLUSTER NODES address (host:port@bus).
func nodeAddr(a string) string {
	if i := strings.IndexByte(a, '@'); i >= 0 {
		return a[:i]
	}
	return a
}

// State returns the cluster_state a live node reports ("ok" or "fail").
func (c *Cluster) State() (string, error) {
	out, err := c.cli(c.live(), "cluster", "info")
	if err != nil {
		return "", err
	}
	return infoField(out, "cluster_state"), nil
}

// WaitOK waits until every live node reports cluster_state:ok and agrees
// that every slot is served by a live master.
func (c *Cluster) WaitOK(within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		err := c.ok()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster not ok after %v: %v", within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Cluster) ok() error {
	for _, n := range c.liveNodes() {
		out, err := c.cli(n, "cluster", "info")
		if err != nil {
			return err
		}
		if s := infoField(out, "cluster_state"); s != "ok" {
			return fmt.Errorf("%s: cluster_state:%s", n.Addr, s)
		}
		if s := infoField(out, "cluster_slots_ok"); s != "16384" {
			return fmt.Errorf("%s: cluster_slots_ok:%s", n.Addr, s)
		}
	}
	masters, err := c.Masters()
	if err != nil {
		return err
	}
	for m := range masters {
		if !m.alive() {
			return fmt.Errorf("slots still assigned to %s, which is down", m.Addr)
		}
	}
	return nil
}

func (c *Cluster) node(addr string) *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		if n.Addr == addr {
			return n
		}
	}
	return nil
}

func (c *Cluster) liveNodes() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var live []*Node
	for _, n := range c.nodes {
		if n.alive() {
			live = append(live, n)
		}
	}
	return live
}

func (c *Cluster) live() *Node {
	if l := c.liveNodes(); len(l) > 0 {
		return l[0]
	}
	return nil
}

func (c *Cluster) cli(n *Node, args ...string) (string, error) { return Cli(n, args...) }

// Cli runs redis-cli against n and returns what it printed.
func Cli(n *Node, args ...string) (string, error) {
	if n == nil {
		return "", fmt.Errorf("no live node")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "redis-cli", append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(n.Port)}, args...)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("redis-cli %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Stop kills every node (StartCluster's clusters stop with their test).
func (c *Cluster) Stop() {
	c.mu.Lock()
	nodes := c.nodes
	c.mu.Unlock()
	for _, n := range nodes {
		n.Resume() // a stopped process would not die of SIGKILL until it runs
		n.kill(syscall.SIGKILL)
	}
	if c.tempDir {
		os.RemoveAll(c.dir)
	}
}

// startNode starts redis-server on port with its files in dir, nothing
// saved to disk, and waits until it answers PING.
func startNode(server, dir string, port int, extra ...string) (*Node, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "no", "--logfile", filepath.Join(dir, "redis.log")}, extra...)
	return startProcess(server, port, args)
}

func startProcess(server string, port int, args []string) (*Node, error) {
	cmd := exec.Command(server, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test binary
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	n := &Node{Addr: "127.0.0.1:" + strconv.Itoa(port), Port: port, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(n.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if out, err := Cli(n, "ping"); err == nil && strings.TrimSpace(out) == "PONG" {
			return n, nil
		}
		if !n.alive() {
			return nil, fmt.Errorf("%s on port %d exited at start", filepath.Base(server), port)
		}
		if time.Now().After(deadline) {
			n.kill(syscall.SIGKILL)
			return nil, fmt.Errorf("%s on port %d does not answer PING", filepath.Base(server), port)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (n *Node) alive() bool {
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

func (n *Node) kill(sig syscall.Signal) {
	if n.cmd.Process != nil && n.alive() {
		n.cmd.Process.Signal(sig)
	}
	select {
	case <-n.done:
	case <-time.After(10 * time.Second):
	}
}

// Alive reports whether n's process is still running.
func (n *Node) Alive() bool { return n.alive() }

// Pause stops n's process (SIGSTOP) without killing it: a node that
// neither answers nor acknowledges replication until Resume, as a node
// stalled by the machine. Paused longer than NodeTimeout, the cluster
// marks it failed (a paused master is then failed over).
func (n *Node) Pause() error {
	if n.cmd.Process == nil || !n.alive() {
		return fmt.Errorf("%s is not running", n.Addr)
	}
	return n.cmd.Process.Signal(syscall.SIGSTOP)
}

// Resume lets a paused node run again (SIGCONT); a node that runs is
// left alone.
func (n *Node) Resume() {
	if n.cmd.Process != nil && n.alive() {
		n.cmd.Process.Signal(syscall.SIGCONT)
	}
}

// freePorts returns n loopback ports below 55536 that are free now, each
// with its cluster bus port (port+10000) free too.
func freePorts(n int) ([]int, error) {
	var ports []int
	seen := map[int]bool{}
	for tries := 0; len(ports) < n && tries < 1000; tries++ {
		p := 20000 + rand.IntN(35000)
		if seen[p] || seen[p+10000] || seen[p-10000] || !free(p) || !free(p+10000) {
			continue
		}
		seen[p] = true
		ports = append(ports, p)
	}
	if len(ports) < n {
		return nil, fmt.Errorf("no %d free loopback ports", n)
	}
	return ports, nil
}

func free(port int) bool {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func infoField(info, name string) string {
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), name+":"); ok {
			return v
		}
	}
	return ""
}
