package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Open returns a Store on a client of its own for rawURL: a single Redis
// (redis:// or rediss://), Sentinel (a master_name query parameter, as
// go-redis reads it) or, with opts.Cluster, a Redis Cluster (more nodes as
// addr query parameters). The client fails fast, so that a down Redis is
// answered 503 in milliseconds: one retry, one dial, short backoffs; a
// request's deadline (REQUEST_TIMEOUT) cuts a read already on the wire. A
// cluster client also reloads its slot map when a node fails
// (topology.go), so that a promoted replica is used as soon as the cluster
// has promoted it. Close closes it.
func Open(rawURL string, opts Options) (*Store, error) {
	const (
		timeout    = 2 * time.Second
		retries    = 1
		minBackoff = 8 * time.Millisecond
		maxBackoff = 64 * time.Millisecond
		dials      = 1
		dialWait   = 20 * time.Millisecond
	)
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("redis: not a URL")
	}
	// The URL's own pool_size wins; go-redis has read it.
	poolSize := opts.PoolSize
	if u.Query().Has("pool_size") {
		poolSize = 0
	}
	var client goredis.UniversalClient
	switch {
	case opts.Cluster:
		o, err := goredis.ParseClusterURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("redis: %v", err)
		}
		if o.ReadOnly || o.RouteByLatency || o.RouteRandomly {
			return nil, errReplicaReads
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.ContextTimeoutEnabled = timeout, timeout, timeout, true
		// The cluster client retries itself (MaxRedirects, 3: the same
		// node once, then the slot's node as its map names it), with
		// these backoffs; node clients retrying too would double every
		// try and every CLUSTERDOWN's wait.
		o.MaxRetries, o.MinRetryBackoff, o.MaxRetryBackoff = -1, minBackoff, maxBackoff
		o.DialerRetries, o.DialerRetryTimeout = dials, dialWait
		if poolSize > 0 {
			o.PoolSize = poolSize
		}
		cc := goredis.NewClusterClient(o)
		hook := newReloadHook(cc) // a dead master's slots move (topology.go)
		cc.AddHook(hook)
		st := New(cc, opts)
		st.onFault = hook.fault
		return st, nil
	case u.Query().Has("master_name"):
		o, err := goredis.ParseFailoverURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("redis: %v", err)
		}
		if o.ReplicaOnly || o.RouteByLatency || o.RouteRandomly {
			return nil, errReplicaReads
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.ContextTimeoutEnabled = timeout, timeout, timeout, true
		o.MaxRetries, o.MinRetryBackoff, o.MaxRetryBackoff = retries, minBackoff, maxBackoff
		o.DialerRetries, o.DialerRetryTimeout = dials, dialWait
		if poolSize > 0 {
			o.PoolSize = poolSize
		}
		client = goredis.NewFailoverClient(o)
	default:
		o, err := goredis.ParseURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("redis: %v", err)
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.ContextTimeoutEnabled = timeout, timeout, timeout, true
		o.MaxRetries, o.MinRetryBackoff, o.MaxRetryBackoff = retries, minBackoff, maxBackoff
		o.DialerRetries, o.DialerRetryTimeout = dials, dialWait
		if poolSize > 0 {
			o.PoolSize = poolSize
		}
		client = goredis.NewClient(o)
	}
	return New(client, opts), nil
}

// errReplicaReads refuses the URL options that send commands to replicas
// (read_only, route_by_latency, route_randomly, replica_only): authd reads
// what it has just written — whether a code is still the current one
// before its mail goes out, a delivery's status — and a replica may not
// have it yet; a mail would be dropped as superseded. (With Sentinel,
// go-redis panics on two of them.)
var errReplicaReads = errors.New("redis: read_only, route_by_latency, route_randomly and replica_only send reads to replicas, which may not have what authd has just written: authd reads from masters only")

// Close closes the store's client: Open's, or the one given to New.
func (s *Store) Close() error { return s.client.Close() }

// SetLogger sends go-redis's own log lines (reconnects, pool problems)
// through log, as warnings, so that a JSON log stays one object a line.
// go-redis has one logger per process: the last call wins.
func SetLogger(log *slog.Logger) { goredis.SetLogger(slogLogger{log}) }

type slogLogger struct{ log *slog.Logger }

func (l slogLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}
