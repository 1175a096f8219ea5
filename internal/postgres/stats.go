package postgres

import (
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// MaxConns is the pool's size.
func (s *Store) MaxConns() int { return int(s.pool.Config().MaxConns) }

// Collector returns the connection pool's metrics, read at scrape time.
func (s *Store) Collector() prometheus.Collector { return poolCollector{s.pool} }

type poolCollector struct{ pool *pgxpool.Pool }

var poolSeries = []struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(*pgxpool.Stat) float64
}{
	{prometheus.NewDesc("authd_pgx_pool_acquired_conns", "PostgreSQL connections in use.", nil, nil), prometheus.GaugeValue,
		func(s *pgxpool.Stat) float64 { return float64(s.AcquiredConns()) }},
	{prometheus.NewDesc("authd_pgx_pool_idle_conns", "PostgreSQL connections idle.", nil, nil), prometheus.GaugeValue,
		func(s *pgxpool.Stat) float64 { return float64(s.IdleConns()) }},
	{prometheus.NewDesc("authd_pgx_pool_total_conns", "PostgreSQL connections open.", nil, nil), prometheus.GaugeValue,
		func(s *pgxpool.Stat) float64 { return float64(s.TotalConns()) }},
	{prometheus.NewDesc("authd_pgx_pool_max_conns", "PostgreSQL pool size.", nil, nil), prometheus.GaugeValue,
		func(s *pgxpool.Stat) float64 { return float64(s.MaxConns()) }},
	{prometheus.NewDesc("authd_pgx_pool_acquires_total", "PostgreSQL connection acquisitions.", nil, nil), prometheus.CounterValue,
		func(s *pgxpool.Stat) float64 { return float64(s.AcquireCount()) }},
	{prometheus.NewDesc("authd_pgx_pool_empty_acquires_total", "Acquisitions that waited for a connection.", nil, nil), prometheus.CounterValue,
		func(s *pgxpool.Stat) float64 { return float64(s.EmptyAcquireCount()) }},
	{prometheus.NewDesc("authd_pgx_pool_acquire_wait_seconds_total", "Time spent waiting for a connection.", nil, nil), prometheus.CounterValue,
		func(s *pgxpool.Stat) float64 { return s.AcquireDuration().Seconds() }},
}

func (c poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, s := range poolSeries {
		ch <- s.desc
	}
}

func (c poolCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.pool.Stat()
	for _, s := range poolSeries {
		ch <- prometheus.MustNewConstMetric(s.desc, s.kind, s.value(st))
	}
}
