package main

// TEMPORARY: until internal/redis opens its own client (redis.Open).

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"

	"github.com/authd/authd/internal/redis"
)

type shimStore struct {
	*redis.Store
	c goredis.UniversalClient
}

func (s shimStore) Close() error { return s.c.Close() }

func redisOpen(rawURL, prefix string, cluster bool) (shimStore, error) {
	c, err := newRedisClient(rawURL, cluster)
	if err != nil {
		return shimStore{}, err
	}
	return shimStore{redis.New(c, redis.Options{Prefix: prefix}), c}, nil
}

type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}

func redisSetLogger(log *slog.Logger) { goredis.SetLogger(redisLogger{log}) }

func redisCollector(s shimStore) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "authd_redis_pool_total_conns", Help: "Redis connections open."}, func() float64 { return float64(s.PoolStats().TotalConns) })
}

func newRedisClient(rawURL string, cluster bool) (goredis.UniversalClient, error) {
	const (
		timeout    = 2 * time.Second
		retries    = 1
		minBackoff = 8 * time.Millisecond
		maxBackoff = 64 * time.Millisecond
	)
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("not a URL")
	}
	switch {
	case cluster:
		o, err := goredis.ParseClusterURL(rawURL)
		if err != nil {
			return nil, err
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = timeout, timeout, timeout
		o.MaxRetries, o.MinRetryBackoff, o.MaxRetryBackoff = retries, minBackoff, maxBackoff
		o.DialerRetries, o.DialerRetryTimeout = 1, 20*time.Millisecond
		return goredis.NewClusterClient(o), nil
	case u.Query().Has("master_name"):
		o, err := goredis.ParseFailoverURL(rawURL)
		if err != nil {
			return nil, err
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = timeout, timeout, timeout
		o.MaxRetries, o.MinRetryBackoff, o.MaxRetryBackoff = retries, minBackoff, maxBackoff
		o.DialerRetries, o.DialerRetryTimeout = 1, 20*time.Millisecond
		return goredis.NewFailoverClient(o), nil
	}
	o, err := goredis.ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout = timeout, timeout, timeout
	o.MaxRetries, o.MinRetryBackoff, o.MaxRetryBackoff = retries, minBackoff, maxBackoff
	o.DialerRetries, o.DialerRetryTimeout = 1, 20*time.Millisecond
	return goredis.NewClient(o), nil
}
