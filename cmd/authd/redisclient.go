package main

import (
	"fmt"
	"net/url"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// newRedisClient makes the one client type the code store takes for a
// single Redis, Sentinel (a `master_name` query parameter, as go-redis
// reads it) or Cluster (REDIS_CLUSTER=true; more nodes as `addr` query
// parameters).
func newRedisClient(rawURL string, cluster bool) (goredis.UniversalClient, error) {
	// A down Redis must answer 503 fast: one retry, short backoffs.
	const (
		timeout    = 2 * time.Second
		retries    = 1
		minBackoff = 8 * time.Millisecond
		maxBackoff = 64 * time.Millisecond
	)
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("config: REDIS_URL: not a URL")
	}
	switch {
	case cluster:
		o, err := goredis.ParseClusterURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("config: REDIS_URL: %v", err)
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = timeout, timeout, timeout
		o.MaxRetries, o.MinRetryBackoff, o.MaxRetryBackoff = retries, minBackoff, maxBackoff
		o.DialerRetries, o.DialerRetryTimeout = 1, 20*time.Millisecond
		return goredis.NewClusterClient(o), nil
	case u.Query().Has("master_name"):
		o, err := goredis.ParseFailoverURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("config: REDIS_URL: %v", err)
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = timeout, timeout, timeout
		o.MaxRetries, o.MinRetryBackoff, o.MaxRetryBackoff = retries, minBackoff, maxBackoff
		o.DialerRetries, o.DialerRetryTimeout = 1, 20*time.Millisecond
		return goredis.NewFailoverClient(o), nil
	}
	o, err := goredis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("config: REDIS_URL: %v", err)
	}
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout = timeout, timeout, timeout
	o.MaxRetries, o.MinRetryBackoff, o.MaxRetryBackoff = retries, minBackoff, maxBackoff
	o.DialerRetries, o.DialerRetryTimeout = 1, 20*time.Millisecond
	return goredis.NewClient(o), nil
}
