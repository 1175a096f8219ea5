package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	goredis "github.com/redis/go-redis/v9"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/httpapi"
	"github.com/authd/authd/internal/mailer"
	"github.com/authd/authd/internal/postgres"
)

// What an operator needs around the flow: readiness, start-up that waits
// for its dependencies, metrics, library logs routed into authd's own.

// opsConfig is the part of Config about running in production.
type opsConfig struct {
	MetricsAddr     string        // METRICS_ADDR: "" = /metrics on the main port
	ShutdownTimeout time.Duration // SHUTDOWN_TIMEOUT: bound on in-flight requests at shutdown
	ShutdownDelay   time.Duration // SHUTDOWN_DELAY: readiness 503 before the listener closes

	noObserve bool // benchmarks only: no access log, no metrics
}

func loadOpsConfig(e env) (opsConfig, error) {
	var c opsConfig
	c.MetricsAddr = strings.TrimSpace(e.get("METRICS_ADDR"))
	var err error
	if c.ShutdownTimeout, err = durationVar(e, "SHUTDOWN_TIMEOUT", 15*time.Second); err != nil {
		return c, err
	}
	if c.ShutdownDelay, err = durationVar(e, "SHUTDOWN_DELAY", 0); err != nil {
		return c, err
	}
	return c, nil
}

// durationVar reads seconds ("15") or a Go duration ("15s", "500ms").
func durationVar(e env, key string, def time.Duration) (time.Duration, error) {
	v := strings.TrimSpace(e.get(key))
	if v == "" {
		return def, nil
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || d > time.Hour {
		return 0, configError(key, fmt.Sprintf("want seconds or a duration such as 15s, got %q", v))
	}
	return d, nil
}

type pgxStat = *pgxpool.Stat

// pinger is what the readiness probe asks of a store; authd.CodeStore does
// not require it (the in-memory store has nothing to check).
type pinger interface {
	Ping(ctx context.Context) error
}

// newReadiness checks the user store, the code store when it can be asked,
// and the mail worker as an Optional check (degraded, still ready).
func newReadiness(users authd.UserStore, codes authd.CodeStore, mail degrader) *httpapi.Readiness {
	r := &httpapi.Readiness{Timeout: time.Second}
	r.Checks = append(r.Checks, httpapi.Check{Name: "database", Check: users.Ping})
	if p, ok := codes.(pinger); ok {
		r.Checks = append(r.Checks, httpapi.Check{Name: "redis", Check: p.Ping})
	}
	if ev, ok := codes.(evictionChecker); ok {
		// DESIGN.md §3: Redis must not evict. Serving goes on (the policy
		// may be changed live), but readiness says so on every probe.
		r.Checks = append(r.Checks, httpapi.Check{Name: "redis_eviction", Optional: true, Check: func(ctx context.Context) error {
			policy, ok, err := ev.CheckEviction(ctx)
			switch {
			case err != nil:
				return err
			case policy != "" && !ok:
				return fmt.Errorf("maxmemory-policy is %s: limits and queued mail may be evicted; set noeviction", policy)
			}
			return nil // noeviction, or a managed Redis that does not say
		}})
	}
	if mail != nil {
		r.Checks = append(r.Checks, httpapi.Check{Name: "mail", Optional: true, Check: func(context.Context) error {
			if mail.Degraded() {
				return errors.New("the mail worker is failing to deliver")
			}
			return nil
		}})
	}
	return r
}

// evictionChecker reads Redis's maxmemory-policy (internal/redis).
type evictionChecker interface {
	CheckEviction(ctx context.Context) (policy string, ok bool, err error)
}

// degrader is the mail worker's health signal: degraded mail leaves authd
// ready (codes are stored, mail follows), the check says "degraded".
type degrader interface{ Degraded() bool }

// migrator is what start-up asks of a user store.
type migrator interface {
	Migrate(ctx context.Context) error
}

// startMigrations migrates now if the database answers. If it does not
// (containers start in any order), authd starts anyway, not ready, and
// retries in the background until ctx ends; the auth endpoints answer 503
// until the migrations have run. A migration that fails for another reason
// stops start-up: retrying would not help.
func startMigrations(ctx context.Context, users migrator, log *slog.Logger, ready *httpapi.Readiness) error {
	const attempt = 10 * time.Second
	try := func() error {
		actx, cancel := context.WithTimeout(ctx, attempt)
		defer cancel()
		return users.Migrate(actx)
	}
	err := try()
	if err == nil {
		ready.MarkStarted()
		return nil
	}
	if authd.ErrorCode(err) != authd.EUNAVAILABLE {
		return fmt.Errorf("migrate: %w", err)
	}
	log.Warn("database not reachable: starting not ready, migrations will run once it answers", "err", err)
	go func() {
		backoff := 250 * time.Millisecond
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			err := try()
			switch {
			case err == nil:
				log.Info("database reachable: migrations applied, ready")
				ready.MarkStarted()
				return
			case ctx.Err() != nil:
				return
			case authd.ErrorCode(err) != authd.EUNAVAILABLE:
				// Not a wait-and-see failure: stay not ready, say why.
				log.Error("migrations failed: staying not ready", "err", err)
				return
			}
			log.Debug("database still not reachable", "err", err)
			backoff = min(backoff*2, 5*time.Second)
		}
	}()
	return nil
}

// newMetrics is authd's Prometheus registry: the HTTP and flow series,
// build info, Go and process collectors, and the pools' gauges.
func newMetrics(users authd.UserStore, codes authd.CodeStore, mail mailWorker) *httpapi.Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "authd_build_info", Help: "1, labelled with the build's version and Go version.",
	}, []string{"version", "goversion"})
	info.WithLabelValues(buildVersion(), runtime.Version()).Set(1)
	reg.MustRegister(info)

	if pg, ok := users.(*postgres.Store); ok {
		stat := func(f func(s pgxStat) float64) func() float64 {
			return func() float64 { return f(pg.PoolStats()) }
		}
		reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "authd_pgx_pool_acquired_conns", Help: "PostgreSQL connections in use."}, stat(func(s pgxStat) float64 { return float64(s.AcquiredConns()) })),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "authd_pgx_pool_idle_conns", Help: "PostgreSQL connections idle."}, stat(func(s pgxStat) float64 { return float64(s.IdleConns()) })),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "authd_pgx_pool_total_conns", Help: "PostgreSQL connections open."}, stat(func(s pgxStat) float64 { return float64(s.TotalConns()) })),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "authd_pgx_pool_max_conns", Help: "PostgreSQL pool size."}, stat(func(s pgxStat) float64 { return float64(s.MaxConns()) })),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "authd_pgx_pool_acquires_total", Help: "PostgreSQL connection acquisitions."}, stat(func(s pgxStat) float64 { return float64(s.AcquireCount()) })),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "authd_pgx_pool_empty_acquires_total", Help: "Acquisitions that waited for a connection."}, stat(func(s pgxStat) float64 { return float64(s.EmptyAcquireCount()) })),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "authd_pgx_pool_acquire_wait_seconds_total", Help: "Time spent waiting for a connection."}, stat(func(s pgxStat) float64 { return s.AcquireDuration().Seconds() })),
		)
	}
	if rs, ok := codes.(interface{ PoolStats() *goredis.PoolStats }); ok {
		stat := func(f func(s *goredis.PoolStats) float64) func() float64 {
			return func() float64 { return f(rs.PoolStats()) }
		}
		reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "authd_redis_pool_total_conns", Help: "Redis connections open."}, stat(func(s *goredis.PoolStats) float64 { return float64(s.TotalConns) })),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "authd_redis_pool_idle_conns", Help: "Redis connections idle."}, stat(func(s *goredis.PoolStats) float64 { return float64(s.IdleConns) })),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "authd_redis_pool_hits_total", Help: "Redis connections reused from the pool."}, stat(func(s *goredis.PoolStats) float64 { return float64(s.Hits) })),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "authd_redis_pool_misses_total", Help: "Redis connections dialled because the pool had none."}, stat(func(s *goredis.PoolStats) float64 { return float64(s.Misses) })),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "authd_redis_pool_timeouts_total", Help: "Waits for a Redis connection that timed out."}, stat(func(s *goredis.PoolStats) float64 { return float64(s.Timeouts) })),
		)
	}
	if mail != nil {
		reg.MustRegister(mailCollector{w: mail})
	}
	return httpapi.NewMetrics(reg, reg)
}

// mailCollector exposes the delivery worker's counters, read at scrape
// time. Jobs queued are authd_codes_sent_total: each issued code writes
// its mail job in the same atomic step.
type mailCollector struct{ w mailWorker }

// mailWorker is what the metrics read of the delivery worker.
type mailWorker interface {
	Stats() mailer.WorkerStats
	QueueAge(ctx context.Context) (time.Duration, error)
	Degraded() bool
}

var (
	mailJobsDesc = prometheus.NewDesc("authd_mail_jobs_total", "Mail jobs by outcome: claimed, sent, retried, dropped_superseded, dropped_expired, failed_permanent, failed_unreadable.", []string{"outcome"}, nil)
	mailHeldDesc = prometheus.NewDesc("authd_mail_jobs_held", "Mail jobs this instance holds: in flight or waiting to retry.", nil, nil)
	mailAgeDesc  = prometheus.NewDesc("authd_mail_queue_age_seconds", "How long the oldest mail job not yet delivered (waiting, in flight or waiting to retry) has been in the queue, at scrape time; 0 when the queue is empty. Absent from a scrape when the queue does not answer.", nil, nil)
	mailAgeMax   = prometheus.NewDesc("authd_mail_queue_age_max_seconds", "The longest wait in the queue of a job claimed since start.", nil, nil)
	mailDegraded = prometheus.NewDesc("authd_mail_degraded", "1 while the mail worker fails to deliver (readiness says mail: degraded).", nil, nil)
)

func (c mailCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{mailJobsDesc, mailHeldDesc, mailAgeDesc, mailAgeMax, mailDegraded} {
		ch <- d
	}
}

func (c mailCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.w.Stats()
	for outcome, n := range map[string]int64{
		"claimed": st.Claimed, "sent": st.Sent, "retried": st.Retried,
		"dropped_superseded": st.DroppedSuperseded, "dropped_expired": st.DroppedExpired,
		"failed_permanent": st.FailedPermanent, "failed_unreadable": st.FailedUnreadable,
	} {
		ch <- prometheus.MustNewConstMetric(mailJobsDesc, prometheus.CounterValue, float64(n), outcome)
	}
	ch <- prometheus.MustNewConstMetric(mailHeldDesc, prometheus.GaugeValue, float64(st.Held))
	// Asked of the queue at each scrape: it grows while nothing is claimed.
	// A queue that does not answer leaves the series out rather than
	// showing a made-up 0 (authd_mail_degraded and readiness say more).
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	if age, err := c.w.QueueAge(ctx); err == nil {
		ch <- prometheus.MustNewConstMetric(mailAgeDesc, prometheus.GaugeValue, age.Seconds())
	}
	cancel()
	ch <- prometheus.MustNewConstMetric(mailAgeMax, prometheus.GaugeValue, st.QueueAgeMax.Seconds())
	degraded := 0.0
	if c.w.Degraded() {
		degraded = 1
	}
	ch <- prometheus.MustNewConstMetric(mailDegraded, prometheus.GaugeValue, degraded)
}

// redisLogger sends go-redis's own log lines (reconnects, pool
// problems) through authd's logger, so JSON mode stays one object a line.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}

// routeLibraryLogs sends the libraries' own logs through log. net/http's
// error log is set on each http.Server; goose runs without a logger of its
// own (the stores log migrations through slog). go-redis's logger is
// process-wide: the last serve to start wins, which in a process runs one.
func routeLibraryLogs(log *slog.Logger) {
	goredis.SetLogger(redisLogger{log})
}

// mailStats is the delivery worker for the metrics; nil when the app has
// none.
func mailStats(a *app) mailWorker {
	if a.worker == nil {
		return nil
	}
	return a.worker
}

// serveMetrics starts the private metrics listener when METRICS_ADDR is
// set (without it, /metrics is on the main port); the func it returns
// stops it.
func serveMetrics(cfg Config, a *app, log *slog.Logger) (func(), error) {
	if cfg.MetricsAddr == "" || a.metrics == nil {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", cfg.MetricsAddr)
	if err != nil {
		return nil, configError("METRICS_ADDR", err.Error())
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", a.metrics.Handler())
	srv := &http.Server{
		Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	go srv.Serve(ln)
	log.Info("metrics listening", "addr", "http://"+ln.Addr().String()+"/metrics")
	return func() { srv.Close() }, nil
}
