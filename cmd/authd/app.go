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
	"time"

	"github.com/prometheus/client_golang/prometheus"

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
	switch err := evictionProblem(cctx, s); {
	case errors.Is(err, httpapi.ErrUnknown):
		log.Warn("Redis is not usable yet: not ready until it is", "err", err)
	case err != nil:
		log.Warn("Redis may evict keys: limits and queued mail can vanish", "err", err)
	}
	return codeStore{CodeStore: s, checks: redisChecks(s), collectors: []prometheus.Collector{s.Collector()},
		close: func() { s.Close() }}, nil
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
	return []httpapi.Check{{Name: "redis", Check: r.Ping}, {Name: "redis_eviction", Optional: true,
		Check: func(ctx context.Context) error { return evictionProblem(ctx, r) }}}
}

// evictionProblem says what is wrong with Redis's eviction policy, for the
// start-up line and the readiness check alike: nil for noeviction, or a
// managed Redis that will not say (CONFIG and INFO refused: the start-up
// line asks to make sure); ErrUnknown when Redis does not answer (the
// "redis" check says it is down).
func evictionProblem(ctx context.Context, r redisHealth) error {
	switch policy, ok, err := r.CheckEviction(ctx); {
	case err != nil:
		return fmt.Errorf("%w: %w", httpapi.ErrUnknown, err)
	case policy != "" && !ok:
		return fmt.Errorf("maxmemory-policy is %s: limits and queued mail may be evicted; set noeviction", policy)
	}
	return nil
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
	if err := a.ready.Start(mctx, db.Migrate, log); err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
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
		Workers: cfg.MailWorkers, ClaimTimeout: cfg.MailClaimTimeout, Logger: log, MaxLag: cfg.MailMaxLag,
		Backoff: cfg.MailRetryBackoff, MaxBackoff: cfg.MailRetryMax, MaxAttempts: cfg.MailRetryMaxAttempts,
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
	tokens, stopTokens, err := jwt.Start(ctx, src, jwt.Options{Issuer: cfg.Issuer, Alg: cfg.TokenAlg, TTL: cfg.TokenTTL,
		CacheMaxAge: cfg.JWKSMaxAge, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("token keys: %w", err)
	}
	a.closers = append(a.closers, stopTokens)
	svc := &authd.Service{
		Codes: codes, Users: db, Sealer: sealer, Signer: proof.NewHMAC(cfg.SecretKey), Tokens: tokens,
		Policy: cfg.Policy, Keys: keys, Logger: log, Projects: cfg.Projects, Mail: a.worker,
		ProjectName: func(string) string { return cfg.ProjectName },
	}
	a.ready.Checks = append([]httpapi.Check{{Name: "database", Check: db.Ping}}, codes.checks...)
	a.ready.Checks = append(a.ready.Checks, httpapi.Check{Name: "mail", Optional: true, Check: a.worker.Check},
		httpapi.Check{Name: "token_keys", Check: tokens.Ready})
	a.ready.Mail = a.worker
	var observe *httpapi.Observer
	if !o.noObserve {
		budget := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "authd_mail_budget_remaining",
			Help: "Mails left under LIMIT_MAILS_TOTAL, as this instance last saw the shared budget (refilled since at its rate)."},
			func() float64 { r, _ := svc.MailBudget(); return float64(r) })
		a.metrics = httpapi.NewRegistry(buildVersion(), append(codes.collectors, db.Collector(), a.worker.Collector(), budget)...)
		a.metrics.MergeFailures = cfg.MetricsPublic()
		observe = &httpapi.Observer{Log: log, Metrics: a.metrics}
	}
	a.handler = httpapi.New(httpapi.Options{ProjectName: cfg.ProjectName, Flow: svc, Logger: log,
		TrustedProxies: cfg.TrustedProxies, Projects: cfg.Projects, Readiness: a.ready, Observe: observe,
		ServeMetrics: cfg.MetricsPublic(), Tokens: tokens, Proofs: verify.NewProofVerifier(cfg.SecretKey, httpapi.DefaultProofMaxAge),
		MaxInflight: cfg.MaxInflight, RequestTimeout: cfg.RequestTimeout})
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

func serve(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	for _, w := range cfg.Warnings() {
		log.Warn(w)
	}
	a, err := newApp(ctx, cfg, log, overrides{})
	if err != nil {
		return err
	}
	defer a.close()
	ln, err := net.Listen("tcp", cfg.Addr())
	if err != nil {
		return err
	}
	if !cfg.MetricsPublic() && a.metrics != nil {
		stop, err := httpapi.ServeMetrics(cfg.MetricsAddr, a.metrics, log)
		if err != nil {
			ln.Close()
			return fmt.Errorf("config: METRICS_ADDR: %v", err)
		}
		defer stop()
	}
	users, codes := cfg.Backends()
	log.Info("authd listening", "addr", "http://"+ln.Addr().String(), "version", buildVersion(),
		"users", users, "codes", codes, "mail", cfg.MailBackend)
	// The worker outlives the server: it keeps sending while requests in
	// flight at shutdown finish; then it stops taking jobs, and what it has
	// not done stays queued for the next instance.
	a.worker.Start()
	srv := httpapi.Server{Handler: a.handler, Readiness: a.ready, Logger: log,
		ShutdownDelay: cfg.ShutdownDelay, ShutdownTimeout: cfg.ShutdownTimeout}
	return srv.Serve(ctx, ln, func(ctx context.Context) { a.worker.Close(ctx) })
}
