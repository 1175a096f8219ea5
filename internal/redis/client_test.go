package redis_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/redis"
	"github.com/authd/authd/internal/testenv"
)

func redisURL(t testing.TB) string { return testenv.RedisURL(t) }

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestOpen: Open makes its own client from a URL: a single Redis that
// works; a Cluster client with Options.Cluster and a Sentinel client with
// master_name (the test server is neither, so they fail, fast, as such).
func TestOpen(t *testing.T) {
	ctx := context.Background()
	c := newClient(t)
	s, err := redis.Open(redisURL(t), redis.Options{Prefix: newPrefix(t, c)})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if _, err := s.IssueCode(ctx, authd.IssueRequest{Address: addrOf("a"), Project: "shop", Now: now,
		Record: authd.CodeRecord{ID: "id", Hash: []byte("h"), ExpiresAt: now.Add(time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	if cur, err := s.IsCurrent(ctx, addrOf("a"), "shop", "id", now); err != nil || !cur {
		t.Fatalf("IsCurrent = %v, %v", cur, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); authd.ErrorCode(err) != authd.EUNAVAILABLE {
		t.Errorf("Ping after Close: %v, want %s", err, authd.EUNAVAILABLE)
	}

	redis.SetLogger(discardLogger())
	for _, tc := range []struct {
		name  string
		url   string
		opts  redis.Options
		cause string
	}{
		{"cluster", redisURL(t), redis.Options{Cluster: true}, "cluster"},
		{"sentinel", redisURL(t) + "?master_name=mymaster", redis.Options{}, "sentinel"},
	} {
		s, err := redis.Open(tc.url, tc.opts)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		start := time.Now()
		err = s.Ping(ctx)
		if authd.ErrorCode(err) != authd.EUNAVAILABLE || !strings.Contains(strings.ToLower(err.Error()), tc.cause) {
			t.Errorf("%s: Ping = %v, want %s about %s", tc.name, err, authd.EUNAVAILABLE, tc.cause)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("%s: Ping took %v", tc.name, took)
		}
		s.Close()
	}
	if _, err := redis.Open("redis://%zz", redis.Options{}); err == nil {
		t.Error("Open of a bad URL: no error")
	}
	// Reads from replicas would miss what authd has just written.
	for _, tc := range []struct {
		query string
		opts  redis.Options
	}{
		{"read_only=true", redis.Options{Cluster: true}},
		{"route_by_latency=true", redis.Options{Cluster: true}},
		{"route_randomly=true", redis.Options{Cluster: true}},
		{"master_name=m&replica_only=true", redis.Options{}},
		{"master_name=m&route_by_latency=true", redis.Options{}},
		{"master_name=m&route_randomly=true", redis.Options{}},
	} {
		s, err := redis.Open("redis://127.0.0.1:1?"+tc.query, tc.opts)
		if err == nil || !strings.Contains(err.Error(), "replicas") {
			t.Errorf("Open with %s: %v, want a refusal of replica reads", tc.query, err)
		}
		if s != nil {
			s.Close()
		}
	}
}

// TestOpenCluster: with Options.Cluster, Open connects to a real Redis
// Cluster from a URL naming its nodes (REDIS_URL with REDIS_CLUSTER=true)
// and the store works across its nodes.
func TestOpenCluster(t *testing.T) {
	ctx := context.Background()
	s, err := redis.Open(cluster.Get(t).URL(), redis.Options{Cluster: true, Prefix: "authdtest:" + rand.Text() + ":"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	// An address in every partition: every master takes codes.
	seen := map[int]bool{}
	for i := 0; len(seen) < authd.Partitions; i++ {
		a := fmt.Sprintf("open%d", i)
		if seen[authd.Partition(a)] {
			continue
		}
		seen[authd.Partition(a)] = true
		if _, err := s.IssueCode(ctx, authd.IssueRequest{Address: addrOf(a), Project: "shop", ClientIP: "192.0.2.1", Now: now,
			Record: authd.CodeRecord{ID: a, Hash: []byte("h"), ExpiresAt: now.Add(time.Minute)}}); err != nil {
			t.Fatal(err)
		}
		if cur, err := s.IsCurrent(ctx, addrOf(a), "shop", a, now); err != nil || !cur {
			t.Fatalf("IsCurrent(%s) = %v, %v", a, cur, err)
		}
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestCollector: the pool's series, with the names and help texts
// dashboards know.
func TestCollector(t *testing.T) {
	s, err := redis.Open(redisURL(t), redis.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		help string
		typ  string
	}{
		"authd_redis_pool_total_conns":    {"Redis connections open.", "GAUGE"},
		"authd_redis_pool_idle_conns":     {"Redis connections idle.", "GAUGE"},
		"authd_redis_pool_hits_total":     {"Redis connections reused from the pool.", "COUNTER"},
		"authd_redis_pool_misses_total":   {"Redis connections dialled because the pool had none.", "COUNTER"},
		"authd_redis_pool_timeouts_total": {"Waits for a Redis connection that timed out.", "COUNTER"},
		"authd_redis_wait_short_total":    {"Codes stored but answered 503 because fewer replicas than REDIS_WAIT_REPLICAS acknowledged them within REDIS_WAIT_TIMEOUT.", "COUNTER"},
	}
	if len(mfs) != len(want) {
		t.Errorf("%d series, want %d", len(mfs), len(want))
	}
	for _, mf := range mfs {
		w, ok := want[mf.GetName()]
		switch {
		case !ok:
			t.Errorf("unexpected series %s", mf.GetName())
		case mf.GetHelp() != w.help || mf.GetType().String() != w.typ:
			t.Errorf("%s: help %q type %v, want %q %v", mf.GetName(), mf.GetHelp(), mf.GetType(), w.help, w.typ)
		}
		if mf.GetName() == "authd_redis_pool_total_conns" && mf.GetMetric()[0].GetGauge().GetValue() < 1 {
			t.Errorf("total conns %v after a Ping, want at least 1", mf.GetMetric()[0].GetGauge().GetValue())
		}
		if mf.GetName() == "authd_redis_pool_misses_total" && mf.GetMetric()[0].GetCounter().GetValue() < 1 {
			t.Errorf("misses %v after the first dial, want at least 1", mf.GetMetric()[0].GetCounter().GetValue())
		}
	}
}

// TestSetLogger: go-redis's own lines (here, failed dials) reach the
// logger given, as warnings of component go-redis.
func TestSetLogger(t *testing.T) {
	var buf syncBuffer
	redis.SetLogger(slog.New(slog.NewTextHandler(&buf, nil)))
	t.Cleanup(func() { redis.SetLogger(discardLogger()) })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s, err := redis.Open("redis://"+addr+"/0", redis.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_ = s.Ping(context.Background())
	if out := buf.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "component=go-redis") || !strings.Contains(out, addr) {
		t.Errorf("log = %q, want a go-redis warning about %s", out, addr)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
