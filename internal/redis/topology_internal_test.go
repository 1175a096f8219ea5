package redis

import (
	"context"
	"net"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/authd/authd/internal/testenv"
)

// TestTopologyFault holds the classification to the errors a real server
// and a real network give: what a failover makes commands meet asks for a
// reload, what is about the command or the caller does not.
func TestTopologyFault(t *testing.T) {
	opts, err := goredis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	c := goredis.NewClient(opts)
	defer c.Close()
	ctx := context.Background()
	reply := func(msg string) error {
		return c.Eval(ctx, "return redis.error_reply(ARGV[1])", nil, msg).Err()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	refused := goredis.NewClient(&goredis.Options{Addr: closed, MaxRetries: -1, DialerRetries: 1})
	defer refused.Close()
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	key := "authd-topology-test:" + time.Now().Format(time.RFC3339Nano)
	c.Set(ctx, key, "v", time.Minute)

	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"refused dial", refused.Ping(ctx).Err(), true},
		{"CLUSTERDOWN", reply("CLUSTERDOWN The cluster is down"), true},
		{"TRYAGAIN", reply("TRYAGAIN Multiple keys request during rehashing of slot"), true},
		{"MASTERDOWN", reply("MASTERDOWN Link with MASTER is down"), true},
		{"no error", c.Ping(ctx).Err(), false},
		{"missing key", c.Get(ctx, key+":missing").Err(), false},
		{"NOSCRIPT", c.EvalSha(ctx, "0000000000000000000000000000000000000000", nil).Err(), false},
		{"WRONGTYPE", c.LPush(ctx, key, "x").Err(), false},
		{"script error", reply("ERR refused by the script"), false},
		{"caller gave up", c.Ping(canceled).Err(), false},
	} {
		if tc.err == nil && tc.want {
			t.Fatalf("%s: no error to classify", tc.name)
		}
		if got := topologyFault(tc.err); got != tc.want {
			t.Errorf("%s (%v): topologyFault = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

// TestReloadHookRate: faults ask for a reload at once, then at most once
// per interval however many commands fail.
func TestReloadHookRate(t *testing.T) {
	now := time.Unix(1000, 0)
	reloads := 0
	h := &reloadHook{reload: func() { reloads++ }, every: reloadEvery, now: func() time.Time { return now }}
	fail := func(ctx context.Context, cmd goredis.Cmder) error { return goredis.ErrClosed }
	down := func(ctx context.Context, cmd goredis.Cmder) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: &net.AddrError{Err: "connection refused"}}
	}
	ctx := context.Background()
	cmd := goredis.NewCmd(ctx, "ping")
	h.ProcessHook(fail)(ctx, cmd)
	if reloads != 0 {
		t.Fatalf("a closed client asked for %d reloads", reloads)
	}
	for range 100 {
		h.ProcessHook(down)(ctx, cmd)
	}
	if reloads != 1 {
		t.Fatalf("100 faults at one instant: %d reloads, want 1", reloads)
	}
	now = now.Add(reloadEvery - time.Millisecond)
	h.ProcessHook(down)(ctx, cmd)
	if reloads != 1 {
		t.Fatalf("a fault within %v of the last reload: %d reloads, want 1", reloadEvery, reloads)
	}
	now = now.Add(time.Millisecond)
	// In a pipeline, the fault of any command counts, not only the first's.
	ok := goredis.NewCmd(ctx, "ping")
	bad := goredis.NewCmd(ctx, "ping")
	bad.SetErr(&net.OpError{Op: "read", Net: "tcp", Err: &net.AddrError{Err: "connection reset"}})
	pipe := func(ctx context.Context, cmds []goredis.Cmder) error { return goredis.Nil }
	h.ProcessPipelineHook(pipe)(ctx, []goredis.Cmder{ok, bad})
	if reloads != 2 {
		t.Fatalf("a pipeline with a failed command %v after the last reload: %d reloads, want 2", reloadEvery, reloads)
	}
}
