package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/config"
	"github.com/authd/authd/internal/delivery"
	"github.com/authd/authd/internal/httpapi"
	"github.com/authd/authd/internal/inmem"
	"github.com/authd/authd/internal/jwt"
	"github.com/authd/authd/internal/mailer"
	"github.com/authd/authd/internal/postgres"
	"github.com/authd/authd/internal/proof"
	"github.com/authd/authd/internal/redis"
	"github.com/authd/authd/internal/sqlite"
	"github.com/authd/authd/verify"
)

// database is what a user backend gives the wiring: users and the token
// signing keys live in one database, which authd migrates. Both
// internal/postgres and internal/sqlite are one.
type database interface {
	authd.UserStore
	authd.KeyStore
	Migrate(ctx context.Context) error
	MigrationStatus(ctx context.Context, w io.Writer) error
	Collector() prometheus.Collector
	Close()
}

var (
	_ database = (*postgres.Store)(nil)
	_ database = (*sqlite.Store)(nil)
)

func openDatabase(ctx context.Context, cfg config.Config, log *slog.Logger) (database, error) {
	if cfg.DatabaseURL != "" {
		s, err := postgres.Open(ctx, cfg.DatabaseURL, log)
		if err != nil {
			return nil, fmt.Errorf("postgres: %w", err)
		}
		return s, nil
	}
	path := filepath.Join(cfg.DataDir, "authd.db")
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	return s, nil
}

// codeStore is the code store the configuration names, with what the
// readiness probe and the metrics ask of it.
type codeStore struct {
	authd.CodeStore
	checks     []httpapi.Check
	collectors []prometheus.Collector
	close      func()
}

func openCodes(ctx context.Context, cfg config.Config, log *slog.Logger) (codeStore, error) {
	if cfg.RedisURL == "" {
		return codeStore{CodeStore: inmem.NewCodeStore(), close: func() {}}, nil
	}
	redis.SetLogger(log)
	s, err := redis.Open(cfg.RedisURL, redis.Options{Prefix: cfg.RedisPrefix, Cluster: cfg.RedisCluster})
	if err != nil {
		return codeStore{}, fmt.Errorf("config: REDIS_URL: %v", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if policy, ok, err := s.CheckEviction(cctx); err != nil || policy == "" {
		log.Warn("could not read Redis maxmemory-policy: make sure it is noeviction", "err", err)
	} else if !ok {
		log.Warn("Redis may evict keys: limits and queued mail can vanish; set maxmemory-policy noeviction", "maxmemory_policy", policy)
	}
	return codeStore{CodeStore: s, checks: redisChecks(s), collectors: []prometheus.Collector{s.Collector()}, close: func() { s.Close() }}, nil
}

// redisHealth is what readiness asks of Redis.
type redisHealth interface {
	Ping(ctx context.Context) error
	CheckEviction(ctx context.Context) (policy string, ok bool, err error)
}

// redisChecks: Redis answers (or authd is not ready); it does not evict
// (DESIGN.md §3: serving goes on, the policy may be changed live, but
// readiness says so on every probe).
func redisChecks(r redisHealth) []httpapi.Check {
	return []httpapi.Check{{Name: "redis", Check: r.Ping}, {Name: "redis_eviction", Optional: true, Check: func(ctx context.Context) error {
		switch policy, ok, err := r.CheckEviction(ctx); {
		case err != nil:
			return err
		case policy != "" && !ok:
			return fmt.Errorf("maxmemory-policy is %s: limits and queued mail may be evicted; set noeviction", policy)
		}
		return nil // noeviction, or a managed Redis that does not say
	}}}
}

// app is authd wired from its configuration: what serve runs, and what the
// benchmarks drive in-process.
type app struct {
	handler http.Handler
	worker  *delivery.Worker // delivers the code store's mail queue
	closers []func()
	ready   *httpapi.Readiness // readiness, start-up and shutdown state
	metrics *httpapi.Metrics   // nil without observation
}

func (a *app) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
}

// overrides are what tests and benchmarks replace in newApp's wiring.
type overrides struct {
	sender    authd.Sender // nil: the one the configuration names
	noObserve bool         // no access log, no metrics
}

// newApp opens the stores, migrates, and wires the flow and the HTTP layer.
func newApp(ctx context.Context, cfg config.Config, log *slog.Logger, o overrides) (_ *app, err error) {
	a := &app{ready: &httpapi.Readiness{Timeout: time.Second}}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	keys, err := authd.DeriveKeys(cfg.MasterKey)
	if err != nil {
		return nil, err
	}
	db, err := openDatabase(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, db.Close)
	// A database not up yet does not stop start-up.
	mctx, stopMigrations := context.WithCancel(ctx)
	a.closers = append(a.closers, stopMigrations)
	if err := startMigrations(mctx, db, log, a.ready); err != nil {
		return nil, err
	}
	codes, err := openCodes(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, codes.close)
	sender := o.sender
	if sender == nil {
		var closeSender func()
		if sender, closeSender, err = newSender(cfg, log); err != nil {
			return nil, err
		}
		a.closers = append(a.closers, closeSender)
	}
	sealer, err := delivery.NewSealer(keys.Mail, nil)
	if err != nil {
		return nil, err
	}
	a.worker = delivery.NewWorker(codes, codes.IsCurrent, sealer, sender, delivery.WorkerOptions{
		Workers: cfg.MailWorkers, ClaimTimeout: cfg.MailClaimTimeout, Logger: log,
		Backoff: cfg.MailRetryBackoff, MaxBackoff: cfg.MailRetryMax,
	})
	// The first start on an empty database makes the first key. A database
	// that does not answer yet leaves the set empty, and not ready, until
	// it does.
	var src jwt.Source = &jwt.StoreSource{Store: db, Key: keys.Token}
	switch {
	case cfg.TokenAlg == verify.HS256:
		src = jwt.Secret(cfg.HS256Secret)
	case cfg.TokenKeyFile != "":
		src = jwt.FileSource{Path: cfg.TokenKeyFile}
	}
	tokens, stopTokens, err := jwt.Start(ctx, src, jwt.Options{Issuer: cfg.Issuer, Alg: cfg.TokenAlg, TTL: cfg.TokenTTL, CacheMaxAge: cfg.JWKSMaxAge, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("token keys: %w", err)
	}
	a.closers = append(a.closers, stopTokens)
	svc := &authd.Service{
		Codes: codes, Users: db, Sealer: sealer, Signer: proof.NewHMAC(cfg.SecretKey), Tokens: tokens,
		Policy: cfg.Policy, Keys: keys, Logger: log, Projects: cfg.Projects,
		ProjectName: func(string) string { return cfg.ProjectName },
	}
	a.ready.Checks = append([]httpapi.Check{{Name: "database", Check: db.Ping}}, codes.checks...)
	a.ready.Checks = append(a.ready.Checks,
		httpapi.Check{Name: "mail", Optional: true, Check: func(context.Context) error {
			if a.worker.Degraded() {
				return errors.New("the mail worker is failing to deliver")
			}
			return nil
		}},
		httpapi.Check{Name: "token_keys", Check: tokens.Ready})
	var observe *httpapi.Observer
	if !o.noObserve {
		a.metrics = newMetrics(append(codes.collectors, db.Collector(), a.worker.Collector())...)
		observe = &httpapi.Observer{Log: log, Metrics: a.metrics}
	}
	a.handler = httpapi.New(httpapi.Options{ProjectName: cfg.ProjectName, Version: buildVersion(), Flow: svc, Logger: log,
		TrustedProxies: cfg.TrustedProxies, Projects: cfg.Projects, Readiness: a.ready, Observe: observe,
		ServeMetrics: cfg.MetricsAddr == "", Tokens: tokens, Proofs: verify.NewProofVerifier(cfg.SecretKey, httpapi.DefaultProofMaxAge)})
	return a, nil
}

func newSender(cfg config.Config, log *slog.Logger) (authd.Sender, func(), error) {
	templates, err := mailer.LoadTemplates(cfg.TemplatesDir)
	if err != nil {
		return nil, nil, fmt.Errorf("config: EMAIL_TEMPLATES_DIR: %v", err)
	}
	if cfg.MailBackend == "log" {
		return mailer.NewLogSender(log, templates), func() {}, nil
	}
	s, err := mailer.NewSMTPSender(mailer.Config{
		Host: cfg.SMTPHost, Port: cfg.SMTPPort, Username: cfg.SMTPUser, Password: cfg.SMTPPassword,
		TLS: cfg.SMTPTLS, From: cfg.FromEmail, FromName: cfg.FromName, Timeout: 10 * time.Second,
		MaxIdle: cfg.MailWorkers, Templates: templates,
	})
	if err != nil {
		return nil, nil, err
	}
	return s, func() { s.Close() }, nil
}

// startMigrations migrates now if the database answers. If it does not
// (containers start in any order), authd starts anyway, not ready, and
// retries in the background until ctx ends; the auth endpoints answer 503
// until the migrations have run. A migration that fails for another reason
// stops start-up: retrying would not help.
func startMigrations(ctx context.Context, db database, log *slog.Logger, ready *httpapi.Readiness) error {
	try := func() error {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return db.Migrate(actx)
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
		for backoff := 250 * time.Millisecond; ; backoff = min(backoff*2, 5*time.Second) {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			switch err := try(); {
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
			default:
				log.Debug("database still not reachable", "err", err)
			}
		}
	}()
	return nil
}

// newMetrics is authd's Prometheus registry: the HTTP and flow series,
// build info, Go and process collectors, and the backends' own.
func newMetrics(cs ...prometheus.Collector) *httpapi.Metrics {
	reg := prometheus.NewRegistry()
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "authd_build_info", Help: "1, labelled with the build's version and Go version.",
	}, []string{"version", "goversion"})
	info.WithLabelValues(buildVersion(), runtime.Version()).Set(1)
	reg.MustRegister(append(cs, info, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))...)
	return httpapi.NewMetrics(reg, reg)
}

func serve(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	if cfg.Dev {
		log.Warn("DEVELOPMENT MODE: nothing external configured. Users in SQLite under " + cfg.DataDir +
			", codes and limits in memory (lost on restart), mail WRITTEN TO THIS LOG instead of sent. " +
			"Set POSTGRES_SERVER, REDIS_HOST and SMTP_HOST for production.")
	}
	if cfg.WeakSecret {
		log.Warn("SECRET_KEY is shorter than 32 bytes (accepted by ALLOW_WEAK_SECRET_KEY): anyone who guesses it can forge v1 proofs")
	}
	if cfg.MailBackend == "smtp" && !cfg.SMTPTLS {
		log.Warn("SMTP_TLS=false: mail, codes included, travels to the SMTP server unencrypted")
		if cfg.SMTPUser != "" {
			log.Warn("SMTP_USER is set with SMTP_TLS=false: the SMTP password travels in clear")
		}
	}
	if cfg.MailBackend == "log" && !cfg.Dev {
		log.Warn("MAIL_BACKEND=log: codes are written to the log, not mailed")
	}
	a, err := newApp(ctx, cfg, log, overrides{})
	if err != nil {
		return err
	}
	defer a.close()
	errorLog := slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	srv := &http.Server{
		Handler: a.handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 64 << 10, ErrorLog: errorLog,
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	ln, err := net.Listen("tcp", cfg.Addr())
	if err != nil {
		return err
	}
	if cfg.MetricsAddr != "" && a.metrics != nil {
		mln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("config: METRICS_ADDR: %v", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", a.metrics.Handler())
		msrv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second, ErrorLog: errorLog}
		go msrv.Serve(mln)
		defer msrv.Close()
		log.Info("metrics listening", "addr", "http://"+mln.Addr().String()+"/metrics")
	}
	users, codes := "sqlite", "memory"
	if cfg.DatabaseURL != "" {
		users = "postgres"
	}
	if cfg.RedisURL != "" {
		codes = "redis"
	}
	log.Info("authd listening", "addr", "http://"+ln.Addr().String(), "version", buildVersion(), "users", users, "codes", codes, "mail", cfg.MailBackend)

	// The worker outlives the server: it keeps sending while requests in
	// flight at shutdown finish; then it stops taking jobs.
	a.worker.Start()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		a.worker.Close(context.Background())
		return err
	case <-ctx.Done():
	}
	// Readiness answers 503 first, so load balancers stop sending; the
	// listener stays open for SHUTDOWN_DELAY, then in-flight requests get
	// SHUTDOWN_TIMEOUT to finish.
	log.Info("shutting down", "delay", cfg.ShutdownDelay.String(), "timeout", cfg.ShutdownTimeout.String())
	a.ready.MarkDraining()
	time.Sleep(cfg.ShutdownDelay)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	err = srv.Shutdown(sctx)
	// Sends in flight finish within the same bound; jobs not done stay in
	// the queue for the next instance.
	a.worker.Close(sctx)
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
