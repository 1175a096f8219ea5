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
	"runtime/debug"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/httpapi"
	"github.com/authd/authd/internal/inmem"
	"github.com/authd/authd/internal/mailer"
	"github.com/authd/authd/internal/postgres"
	"github.com/authd/authd/internal/proof"
	"github.com/authd/authd/internal/redis"
	"github.com/authd/authd/internal/sqlite"
	"github.com/authd/authd/verify"
)

// usageError is a bad command line: exit code 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// Exit codes: 0 success, 1 failure (configuration, a dependency, a
// command's work), 2 bad usage.
func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}

const usage = `authd: email one-time-code authentication

Usage:
  authd [serve]              run the HTTP server (migrates the database first)
  authd migrate [up|status]  apply the database migrations, or list them
  authd users unlock EMAIL   clear an address's failure and send budgets
  authd users show EMAIL     print the user of an address
  authd users delete EMAIL   erase an address: user rows, codes, cooldowns, budgets
  authd users duplicates     list the rows whose emails differ only in letter case
  authd healthcheck          ask the server at HOST:PORT for readiness (exit 0 ready, 1 not)
  authd proof verify [--audience P] [--max-age D] [--jwks URL]
                             check a v1 proof (JSON) or a v2 token read on stdin
  authd keys list            list the token signing keys
  authd keys rotate [--delay D]  publish a new signing key, sign with it after D
  authd version              print the version

Configuration comes from the environment and an optional .env file; see README.md.
Exit codes: 0 success, 1 failure (or not ready, an invalid proof, a user
not found), 2 bad usage. Every command takes --help.
`

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "dev"
}

// run is authd: main only calls it, the end-to-end tests too.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	for _, a := range args {
		if a == "-h" || a == "--help" || a == "help" {
			fmt.Fprint(stdout, usage)
			return nil
		}
	}
	switch cmd {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	case "version", "--version":
		fmt.Fprintln(stdout, "authd", buildVersion())
		return nil
	case "serve", "migrate", "users", "keys", "healthcheck", "proof":
	default:
		return usageError{fmt.Sprintf("authd: unknown command %q\n\n%s", cmd, usage)}
	}

	e, err := newEnv(getenv, ".env")
	if err != nil {
		return err
	}
	if cmd == "healthcheck" {
		return runHealthcheck(ctx, e, stdout) // HOST and PORT only (cli.go)
	}
	cfg, err := loadConfig(e)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	routeLibraryLogs(log) // before any store is opened: their first lines too

	switch cmd {
	case "migrate":
		sub := "up"
		if len(args) > 0 {
			sub = args[0]
		}
		if sub != "up" && sub != "status" {
			return usageError{"authd migrate: want up or status\n\n" + usage}
		}
		users, err := openUsers(ctx, cfg, log)
		if err != nil {
			return err
		}
		defer users.Close()
		if sub == "status" {
			return users.MigrationStatus(ctx, stdout)
		}
		if err := users.Migrate(ctx); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "migrations applied")
		return nil
	case "users":
		if len(args) == 0 || args[0] != "unlock" {
			return runUsers(ctx, args, cfg, log, stdout) // cli.go
		}
		if len(args) != 2 || args[0] != "unlock" {
			return usageError{"authd users: want unlock EMAIL\n\n" + usage}
		}
		if cfg.RedisURL == "" {
			return errors.New("authd users unlock: no Redis configured: the embedded mode keeps budgets in the server's memory; restarting it clears them")
		}
		codes, closeCodes, err := openCodes(ctx, cfg, log)
		if err != nil {
			return err
		}
		defer closeCodes()
		keys, err := authd.DeriveKeys(cfg.MasterKey)
		if err != nil {
			return err
		}
		svc := &authd.Service{Codes: codes, Keys: keys, Logger: log}
		if err := svc.Unlock(ctx, args[1]); err != nil {
			return fmt.Errorf("authd users unlock: %w", err)
		}
		fmt.Fprintln(stdout, "unlocked")
		return nil
	}
	if cmd == "proof" {
		return runProof(ctx, args, cfg, stdout) // cli.go
	}
	if cmd == "keys" {
		return runKeys(ctx, args, cfg, log, stdout)
	}
	return serve(ctx, cfg, log)
}

func newLogger(cfg Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	// Lines logged inside a request carry its X-Request-ID (httpapi).
	if cfg.LogFormat == "text" {
		return slog.New(httpapi.WithRequestID(slog.NewTextHandler(w, opts)))
	}
	return slog.New(httpapi.WithRequestID(slog.NewJSONHandler(w, opts)))
}

// userStore is what run needs of a user backend beyond authd.UserStore.
type userStore interface {
	authd.UserStore
	Migrate(ctx context.Context) error
	MigrationStatus(ctx context.Context, w io.Writer) error
	Close()
}

func openUsers(ctx context.Context, cfg Config, log *slog.Logger) (userStore, error) {
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

func openCodes(ctx context.Context, cfg Config, log *slog.Logger) (authd.CodeStore, func(), error) {
	if cfg.RedisURL == "" {
		return inmem.NewCodeStore(), func() {}, nil
	}
	client, err := newRedisClient(cfg.RedisURL, cfg.RedisCluster)
	if err != nil {
		return nil, nil, err
	}
	store := redis.New(client, redis.Options{Prefix: cfg.RedisPrefix})
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if policy, ok, err := store.CheckEviction(cctx); err != nil || policy == "" {
		log.Warn("could not read Redis maxmemory-policy: make sure it is noeviction", "err", err)
	} else if !ok {
		log.Warn("Redis may evict keys: limits and queued mail can vanish; set maxmemory-policy noeviction", "maxmemory_policy", policy)
	}
	return store, func() { client.Close() }, nil
}

// app is authd wired from its configuration: what serve runs, and what the
// benchmarks drive in-process.
type app struct {
	handler http.Handler
	worker  *mailer.Worker // delivers the code store's mail queue
	closers []func()
	ready   *httpapi.Readiness // readiness, start-up and shutdown state (ops.go)
	metrics *httpapi.Metrics   // nil when cfg.noObserve
}

func (a *app) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
}

// newApp opens the stores, migrates, and wires the flow and the HTTP layer.
// sender nil means the one the configuration names.
func newApp(ctx context.Context, cfg Config, log *slog.Logger, sender authd.Sender) (_ *app, err error) {
	a := &app{}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	keys, err := authd.DeriveKeys(cfg.MasterKey)
	if err != nil {
		return nil, err
	}
	users, err := openUsers(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, users.Close)
	// A database not up yet does not stop start-up (ops.go).
	a.ready = &httpapi.Readiness{}
	mctx, stopMigrations := context.WithCancel(ctx)
	a.closers = append(a.closers, stopMigrations)
	if err := startMigrations(mctx, users, log, a.ready); err != nil {
		return nil, err
	}
	codes, closeCodes, err := openCodes(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, closeCodes)

	templates, err := mailer.LoadTemplates(cfg.TemplatesDir)
	if err != nil {
		return nil, fmt.Errorf("config: EMAIL_TEMPLATES_DIR: %w", err)
	}
	if sender == nil {
		if sender, err = newSender(cfg, log, templates); err != nil {
			return nil, err
		}
	}
	if c, ok := sender.(interface{ Close() error }); ok {
		a.closers = append(a.closers, func() { c.Close() })
	}
	sealer, err := mailer.NewSealer(keys.Mail, nil)
	if err != nil {
		return nil, err
	}
	a.worker = mailer.NewWorker(codes, codes.IsCurrent, sealer, sender, mailer.WorkerOptions{
		Workers: cfg.MailWorkers, ClaimTimeout: cfg.MailClaimTimeout, Logger: log,
		Backoff: cfg.MailRetryBackoff, MaxBackoff: cfg.MailRetryMax,
	})
	tokens, stopTokens, err := startTokens(ctx, cfg, keys, users, log)
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, stopTokens)
	svc := &authd.Service{
		Tokens: tokens,
		Codes:  codes, Users: users, Sealer: sealer, Signer: proof.NewHMAC(cfg.SecretKey),
		Policy: cfg.Policy, Keys: keys, Logger: log,
		ProjectName: func(string) string { return cfg.ProjectName },
		Projects:    cfg.Projects,
	}
	a.ready.Checks = newReadiness(users, codes, a.worker).Checks
	a.ready.Checks = append(a.ready.Checks, httpapi.Check{Name: "token_keys", Check: tokens.Ready})
	var observe *httpapi.Observer
	if !cfg.noObserve {
		a.metrics = newMetrics(users, codes, mailStats(a))
		observe = &httpapi.Observer{Log: log, Metrics: a.metrics}
	}
	a.handler = httpapi.New(httpapi.Options{ProjectName: cfg.ProjectName, Version: buildVersion(), Flow: svc, Logger: log, TrustedProxies: cfg.TrustedProxies, Projects: cfg.Projects,
		Readiness: a.ready, Observe: observe, ServeMetrics: cfg.MetricsAddr == "",
		Tokens: tokens, Proofs: verify.NewProofVerifier(cfg.SecretKey, httpapi.DefaultProofMaxAge)})
	return a, nil
}

func serve(ctx context.Context, cfg Config, log *slog.Logger) error {
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
	a, err := newApp(ctx, cfg, log, nil)
	if err != nil {
		return err
	}
	defer a.close()

	srv := &http.Server{
		Handler:           a.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	ln, err := net.Listen("tcp", cfg.Addr())
	if err != nil {
		return err
	}
	stopMetrics, err := serveMetrics(cfg, a, log)
	if err != nil {
		ln.Close()
		return err
	}
	defer stopMetrics()
	log.Info("authd listening", "addr", "http://"+ln.Addr().String(), "version", buildVersion(),
		"users", backendName(cfg.DatabaseURL != "", "postgres", "sqlite"),
		"codes", backendName(cfg.RedisURL != "", "redis", "memory"), "mail", cfg.MailBackend)

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

func backendName(cond bool, yes, no string) string {
	if cond {
		return yes
	}
	return no
}

func newSender(cfg Config, log *slog.Logger, t *mailer.Templates) (authd.Sender, error) {
	if cfg.MailBackend == "log" {
		return mailer.NewLogSender(log, t), nil
	}
	return mailer.NewSMTPSender(mailer.Config{
		Host: cfg.SMTPHost, Port: cfg.SMTPPort, Username: cfg.SMTPUser, Password: cfg.SMTPPassword,
		TLS: cfg.SMTPTLS, From: cfg.FromEmail, FromName: cfg.FromName, Timeout: 10 * time.Second,
		MaxIdle: cfg.MailWorkers, Templates: t,
	})
}
