package redis

import (
	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"
)

// PoolStats reports the client's connection pool.
func (s *Store) PoolStats() *goredis.PoolStats { return s.client.PoolStats() }

// PoolSize is the client's pool size (per node of a cluster); 0 for a
// client of another kind.
func (s *Store) PoolSize() int {
	switch c := s.client.(type) {
	case *goredis.Client:
		return c.Options().PoolSize
	case *goredis.ClusterClient:
		return c.Options().PoolSize
	}
	return 0
}

// Collector exposes the client's connection pool to Prometheus, read at
// scrape time, and the writes WAIT found short (wait.go).
func (s *Store) Collector() prometheus.Collector { return poolCollector{s} }

var (
	poolTotalDesc    = prometheus.NewDesc("authd_redis_pool_total_conns", "Redis connections open.", nil, nil)
	poolIdleDesc     = prometheus.NewDesc("authd_redis_pool_idle_conns", "Redis connections idle.", nil, nil)
	poolHitsDesc     = prometheus.NewDesc("authd_redis_pool_hits_total", "Redis connections reused from the pool.", nil, nil)
	poolMissesDesc   = prometheus.NewDesc("authd_redis_pool_misses_total", "Redis connections dialled because the pool had none.", nil, nil)
	poolTimeoutsDesc = prometheus.NewDesc("authd_redis_pool_timeouts_total", "Waits for a Redis connection that timed out.", nil, nil)
	waitShortDesc    = prometheus.NewDesc("authd_redis_wait_short_total",
		"Codes stored but answered 503 because fewer replicas than REDIS_WAIT_REPLICAS acknowledged them within REDIS_WAIT_TIMEOUT.", nil, nil)
)

type poolCollector struct{ s *Store }

func (c poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{poolTotalDesc, poolIdleDesc, poolHitsDesc, poolMissesDesc, poolTimeoutsDesc, waitShortDesc} {
		ch <- d
	}
}

func (c poolCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.PoolStats()
	ch <- prometheus.MustNewConstMetric(poolTotalDesc, prometheus.GaugeValue, float64(st.TotalConns))
	ch <- prometheus.MustNewConstMetric(poolIdleDesc, prometheus.GaugeValue, float64(st.IdleConns))
	ch <- prometheus.MustNewConstMetric(poolHitsDesc, prometheus.CounterValue, float64(st.Hits))
	ch <- prometheus.MustNewConstMetric(poolMissesDesc, prometheus.CounterValue, float64(st.Misses))
	ch <- prometheus.MustNewConstMetric(poolTimeoutsDesc, prometheus.CounterValue, float64(st.Timeouts))
	ch <- prometheus.MustNewConstMetric(waitShortDesc, prometheus.CounterValue, float64(c.s.waitShort.Load()))
}
