package redis_test

import (
	"context"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/redis"
	"github.com/authd/authd/internal/testenv"
)

func TestCheckEviction(t *testing.T) {
	ctx := context.Background()
	c := newClient(t)
	s := redis.New(c, redis.Options{})
	want, err := c.ConfigGet(ctx, "maxmemory-policy").Result()
	if err != nil {
		t.Fatal(err)
	}
	policy, ok, err := s.CheckEviction(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if policy != want["maxmemory-policy"] || ok != (policy == "noeviction") {
		t.Errorf("CheckEviction = %q, %v; the server says %q", policy, ok, want["maxmemory-policy"])
	}

	// Managed Redis services often refuse CONFIG: INFO still tells.
	for _, refusal := range []string{"ERR unknown command 'config'", "NOPERM this user has no permissions to run the 'config|get' command"} {
		noConfig := goredis.NewClient(c.Options())
		defer noConfig.Close()
		noConfig.AddHook(refuse{names: []string{"config"}, reply: refusal})
		got, gotOK, err := redis.New(noConfig, redis.Options{}).CheckEviction(ctx)
		if err != nil || got != policy || gotOK != ok {
			t.Errorf("CONFIG refused (%s): CheckEviction = %q, %v, %v; want %q, %v", refusal, got, gotOK, err, policy, ok)
		}
	}
	// And if INFO is refused too, the policy is unknown, not an error.
	noInfo := goredis.NewClient(c.Options())
	defer noInfo.Close()
	noInfo.AddHook(refuse{names: []string{"config", "info"}})
	got, gotOK, err := redis.New(noInfo, redis.Options{}).CheckEviction(ctx)
	if err != nil || got != "" || gotOK {
		t.Errorf("without CONFIG and INFO: CheckEviction = %q, %v, %v; want \"\", false, nil", got, gotOK, err)
	}
}

// TestHealthNamesTheCause: a Redis that cannot be used at all is
// EUNAVAILABLE for Ping and CheckEviction, carrying the server's reply or
// the network's error, never taken for a refusal of CONFIG.
func TestHealthNamesTheCause(t *testing.T) {
	ctx := context.Background()
	u, err := url.Parse(redisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	badDB := *u
	badDB.Path = "/99" // the default server has 16 databases
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := *u
	closed.Host = l.Addr().String()
	l.Close()
	redis.SetLogger(discardLogger()) // each failed dial would be logged

	for _, tc := range []struct{ name, url, cause string }{
		{"database index out of range", badDB.String(), "DB index is out of range"},
		{"nothing listening", closed.String(), "connection refused"},
	} {
		s, err := redis.Open(tc.url, redis.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		_, _, evErr := s.CheckEviction(ctx)
		for what, err := range map[string]error{"Ping": s.Ping(ctx), "CheckEviction": evErr} {
			if authd.ErrorCode(err) != authd.EUNAVAILABLE || !strings.Contains(err.Error(), tc.cause) {
				t.Errorf("%s: %s = %v, want %s naming %q", tc.name, what, err, authd.EUNAVAILABLE, tc.cause)
			}
		}
	}
}

// refuse makes the server seem to have the named commands disabled: it
// answers them with reply (default: unknown command).
type refuse struct {
	names []string
	reply string
}

func (r refuse) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (r refuse) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		for _, name := range r.names {
			if cmd.Name() == name {
				reply := r.reply
				if reply == "" {
					reply = "ERR unknown command '" + name + "'"
				}
				err := serverError(reply)
				cmd.SetErr(err)
				return err
			}
		}
		return next(ctx, cmd)
	}
}

func (r refuse) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return next
}

// serverError is an error reply, as the server would send it.
type serverError string

func (e serverError) Error() string { return string(e) }
func (serverError) RedisError()     {}

// TestCheckEvictionCluster: on a Redis Cluster every master is asked;
// through the cluster client one node at random would answer. A master
// refusing CONFIG is read from INFO, as on a single Redis.
func TestCheckEvictionCluster(t *testing.T) {
	ctx := context.Background()
	c := cluster.Get(t)
	s := redis.New(newClusterClient(t), redis.Options{})
	if policy, ok, err := s.CheckEviction(ctx); err != nil || !ok || policy != "noeviction" {
		t.Fatalf("CheckEviction = %q, %v, %v; want noeviction on every master", policy, ok, err)
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
	// maxmemory stays 0: the policy is never applied, the other tests on
	// the cluster are not concerned.
	if _, err := testenv.Cli(master, "config", "set", "maxmemory-policy", "allkeys-lru"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testenv.Cli(master, "config", "set", "maxmemory-policy", "noeviction") })
	noConfig := newClusterClient(t)
	noConfig.OnNewNode(func(node *goredis.Client) { node.AddHook(refuse{names: []string{"config"}}) })
	for i := range 5 { // one node at random would miss it two times in three
		for name, s := range map[string]*redis.Store{"": s, " (CONFIG refused)": redis.New(noConfig, redis.Options{})} {
			if policy, ok, err := s.CheckEviction(ctx); err != nil || ok || policy != "allkeys-lru" {
				t.Fatalf("try %d%s: CheckEviction = %q, %v, %v; want the master's allkeys-lru", i, name, policy, ok, err)
			}
		}
	}
}

// TestPingClusterAnyMaster: on a Redis Cluster, Redis answers readiness
// while any master does. A master that stops answering costs its own
// slots; were every instance unready for it, a load balancer would pull
// them all. With every master silent, Ping fails.
func TestPingClusterAnyMaster(t *testing.T) {
	c := testenv.StartCluster(t)
	cc := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: c.Addrs(), ReadTimeout: 300 * time.Millisecond})
	t.Cleanup(func() { cc.Close() })
	s := redis.New(cc, redis.Options{})
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping with every master up: %v", err)
	}
	masters, err := c.Masters()
	if err != nil {
		t.Fatal(err)
	}
	var paused []*testenv.Node
	for m := range masters {
		if err := m.Pause(); err != nil {
			t.Fatal(err)
		}
		paused = append(paused, m)
		t.Cleanup(m.Resume)
		if len(paused) == 1 {
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			err := s.Ping(ctx)
			cancel()
			if err != nil {
				t.Fatalf("Ping with one master of three silent: %v, want nil", err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if err := s.Ping(ctx); authd.ErrorCode(err) != authd.EUNAVAILABLE {
		t.Fatalf("Ping with every master silent: %v, want EUNAVAILABLE", err)
	}
	for _, m := range paused {
		m.Resume()
	}
}
