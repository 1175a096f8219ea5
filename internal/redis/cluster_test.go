package redis_test

import (
	"context"
	"crypto/rand"
	"os"
	"slices"
	"sync"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/authd/authd/internal/redis"
	"github.com/authd/authd/internal/testenv"
)

// cluster is the package's real Redis Cluster (3 masters, 3 replicas),
// started by the first test that asks for it and shared by all: one
// cluster start (about 3 s) per test binary, not one per test. Tests keep
// apart by key prefix; nothing is cleaned up, the cluster goes with the
// binary.
var cluster testenv.SharedCluster

func TestMain(m *testing.M) {
	code := m.Run()
	cluster.Stop()
	os.Exit(code)
}

// newClusterClient is a cluster client of the test's own on the package's
// cluster, with go-redis's defaults.
func newClusterClient(t testing.TB) *goredis.ClusterClient {
	t.Helper()
	c := cluster.Get(t)
	cc := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: c.Addrs()})
	t.Cleanup(func() { cc.Close() })
	if err := cc.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("cluster: %v", err)
	}
	return cc
}

// A mode is a kind of Redis the store runs on: a single Redis with one
// script per call, the Redis Cluster path forced on a single Redis
// (Options.Split), and a real Redis Cluster through a ClusterClient, which
// takes the cluster path by itself.
type mode struct {
	name    string
	split   bool // Options.Split
	cluster bool
}

var (
	single    = mode{name: "OneScript"}
	split     = mode{name: "Split", split: true}
	onCluster = mode{name: "Cluster", cluster: true}
	allModes  = []mode{single, split, onCluster}
	// clusterPaths are the modes that take the Redis Cluster path.
	clusterPaths = []mode{split, onCluster}
)

// clusterPath reports whether the store takes the Redis Cluster path.
func (m mode) clusterPath() bool { return m.split || m.cluster }

// client returns a client of m's kind: AUTHD_TEST_REDIS_URL's, or one on
// the package's cluster.
func (m mode) client(t testing.TB) goredis.UniversalClient {
	t.Helper()
	if m.cluster {
		return newClusterClient(t)
	}
	return newClient(t)
}

// prefix returns a key prefix of t's own on c; on a single Redis its keys
// are deleted when t ends (tests share it with other packages).
func prefix(t testing.TB, c goredis.UniversalClient) string {
	t.Helper()
	if one, ok := c.(*goredis.Client); ok {
		return newPrefix(t, one)
	}
	return "authdtest:" + rand.Text() + ":"
}

// store returns a store of m's kind under a prefix of t's own, and the
// client it runs on (for looking at its keys).
func (m mode) store(t testing.TB, opts redis.Options) (*redis.Store, goredis.UniversalClient) {
	t.Helper()
	c := m.client(t)
	if opts.Prefix == "" {
		opts.Prefix = prefix(t, c)
	}
	opts.Split = m.split
	return redis.New(c, opts), c
}

// allKeys returns every key matching pattern: on a cluster, every
// master's. (KEYS through a cluster client asks one node at random.)
func allKeys(t testing.TB, c goredis.UniversalClient, pattern string) []string {
	t.Helper()
	ctx := context.Background()
	cc, ok := c.(*goredis.ClusterClient)
	if !ok {
		keys, err := c.Keys(ctx, pattern).Result()
		if err != nil {
			t.Fatal(err)
		}
		return keys
	}
	var mu sync.Mutex
	var keys []string
	err := cc.ForEachMaster(ctx, func(ctx context.Context, m *goredis.Client) error {
		k, err := m.Keys(ctx, pattern).Result()
		mu.Lock()
		keys = append(keys, k...)
		mu.Unlock()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	return keys
}

// hooked returns a client of c's kind, on the same server(s), with count
// and more added as hooks: at the cluster's level on a cluster, where a
// pipeline over several nodes is one call (one round trip in time). count
// also sees a node's own calls, those that do not come through the
// cluster: WAIT, on the node that took a write, pipelined with it.
func hooked(t testing.TB, c goredis.UniversalClient, count goredis.Hook, more ...goredis.Hook) goredis.UniversalClient {
	t.Helper()
	switch c := c.(type) {
	case *goredis.Client:
		h := goredis.NewClient(c.Options())
		t.Cleanup(func() { h.Close() })
		for _, hook := range append([]goredis.Hook{count}, more...) {
			h.AddHook(hook)
		}
		return h
	case *goredis.ClusterClient:
		h := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: c.Options().Addrs})
		t.Cleanup(func() { h.Close() })
		for _, hook := range append([]goredis.Hook{throughCluster{}, count}, more...) {
			h.AddHook(hook)
		}
		h.OnNewNode(func(node *goredis.Client) { node.AddHook(nodeOnly{count}) })
		return h
	}
	t.Fatalf("hooked: %T", c)
	return nil
}

// throughCluster marks the calls a cluster client passes on to its nodes,
// so that nodeOnly tells them from a node's own.
type throughCluster struct{}

type viaCluster struct{}

func (throughCluster) DialHook(next goredis.DialHook) goredis.DialHook { return next }
func (throughCluster) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		return next(context.WithValue(ctx, viaCluster{}, true), cmd)
	}
}
func (throughCluster) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		return next(context.WithValue(ctx, viaCluster{}, true), cmds)
	}
}

// nodeOnly runs its hook for a node's own calls only.
type nodeOnly struct{ h goredis.Hook }

func (n nodeOnly) DialHook(next goredis.DialHook) goredis.DialHook { return next }
func (n nodeOnly) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	hooked := n.h.ProcessHook(next)
	return func(ctx context.Context, cmd goredis.Cmder) error {
		if ctx.Value(viaCluster{}) != nil {
			return next(ctx, cmd)
		}
		return hooked(ctx, cmd)
	}
}
func (n nodeOnly) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	hooked := n.h.ProcessPipelineHook(next)
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		if ctx.Value(viaCluster{}) != nil {
			return next(ctx, cmds)
		}
		return hooked(ctx, cmds)
	}
}
