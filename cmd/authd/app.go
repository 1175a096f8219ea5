package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/backend"
	"github.com/authd/authd/internal/config"
	"github.com/authd/authd/internal/delivery"
	"github.com/authd/authd/internal/httpapi"
	"github.com/authd/authd/internal/jwt"
	"github.com/authd/authd/internal/mailer"
	"github.com/authd/authd/internal/proof"
	"github.com/authd/authd/verify"
)

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
	a := &app{ready: &httpapi.Readiness{Timeout: time.Second, CacheFor: time.Second}}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	db, err := backend.OpenDatabase(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, db.Close)
	mail, token := authd.SealKeys(cfg.MasterKeys())
	// The first start on an empty database makes the first key. A database
	// that does not answer yet leaves the set empty, and not ready, until
	// it does.
	// With a client in the registry the hosted sign-in is on, and OIDC
	// Discovery wants RS256 among its ID token algorithms: an RSA key is
	// kept beside the Ed25519 ones, sealed, rotated and published alike,
	// whether or not a client asks for RS256 yet.
	clients := slices.ContainsFunc(cfg.Projects.All(), func(p authd.Project) bool { return len(p.RedirectURIs) > 0 })
	var src jwt.Source = &jwt.StoreSource{Store: db, Key: token[0], Old: token[1:], RS256: clients}
	switch {
	case cfg.TokenAlg == verify.HS256:
		src = jwt.Secret(cfg.HS256Secret)
	case cfg.TokenKeyFile != "":
		src = jwt.FileSource{Path: cfg.TokenKeyFile}
	}
	// A database not up yet does not stop start-up; a master key that opens
	// nothing stored does, before it is trusted with anything.
	keyring := &authd.Keyring{Masters: cfg.MasterKeys()}
	mctx, stopMigrations := context.WithCancel(ctx)
	a.closers = append(a.closers, stopMigrations)
	if err := a.ready.Start(mctx, func(ctx context.Context) error { return startDatabase(ctx, db, src, keyring, log) }, log); err != nil {
		return nil, err
	}
	codes, err := backend.OpenCodes(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, codes.Close)
	sender := o.sender
	if sender == nil {
		var closeSender func()
		if sender, closeSender, err = newSender(cfg, log); err != nil {
			return nil, err
		}
		a.closers = append(a.closers, closeSender)
	}
	sealer, err := delivery.NewSealer(mail[0], nil, mail[1:]...)
	if err != nil {
		return nil, err
	}
	a.worker = delivery.NewWorker(codes, codes.IsCurrent, sealer, sender, delivery.WorkerOptions{
		Workers: cfg.MailWorkers, ClaimTimeout: cfg.MailClaimTimeout, Logger: log, MaxLag: cfg.MailMaxLag,
		Backoff: cfg.MailRetryBackoff, MaxBackoff: cfg.MailRetryMax, MaxAttempts: cfg.MailRetryMaxAttempts,
	})
	tokens, stopTokens, err := jwt.Start(ctx, src, jwt.Options{Issuer: cfg.Issuer, Alg: cfg.TokenAlg, TTL: cfg.TokenTTL,
		CacheMaxAge: cfg.JWKSMaxAge, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("token keys: %w", err)
	}
	a.closers = append(a.closers, stopTokens)
	svc := &authd.Service{
		Codes: codes, Users: db, Sealer: sealer, Signer: proof.NewHMAC(cfg.SecretKey), Tokens: tokens,
		Policy: cfg.Policy, Keys: keyring, Logger: log, Projects: cfg.Projects, Mail: a.worker,
		ProjectName: func(string) string { return cfg.ProjectName },
		SignIns:     codes.SignIns, Issuer: cfg.Issuer, AccessTTL: cfg.TokenTTL,
	}
	a.ready.Checks = append([]httpapi.Check{{Name: "database", Check: db.Ping}}, codes.Checks...)
	a.ready.Checks = append(a.ready.Checks, httpapi.Check{Name: "mail", Optional: true, Check: a.worker.Check},
		httpapi.Check{Name: "token_keys", Check: tokens.Ready})
	a.ready.Mail = a.worker
	var observe *httpapi.Observer
	if !o.noObserve {
		budget := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "authd_mail_budget_remaining",
			Help: "Mails left under LIMIT_MAILS_TOTAL, as this instance last saw the shared budget (refilled since at its rate)."},
			func() float64 { r, _ := svc.MailBudget(); return float64(r) })
		a.metrics = httpapi.NewRegistry(buildVersion(), append(codes.Collectors, db.Collector(), a.worker.Collector(), budget)...)
		a.metrics.MergeFailures = cfg.MetricsPublic()
		observe = &httpapi.Observer{Log: log, Metrics: a.metrics}
	}
	a.handler = httpapi.New(httpapi.Options{ProjectName: cfg.ProjectName, Flow: svc, Logger: log,
		TrustedProxies: cfg.TrustedProxies, Projects: cfg.Projects, Readiness: a.ready, Observe: observe,
		ServeMetrics: cfg.MetricsPublic(), Tokens: tokens, Proofs: verify.NewProofVerifier(cfg.SecretKey, httpapi.DefaultProofMaxAge),
		MaxInflight: cfg.MaxInflight, RequestTimeout: cfg.RequestTimeout, SignIn: svc})
	return a, nil
}

// startDatabase is the start-up's database step, run again until the
// database answers: migrate, check that the master keys open the stored
// signing keys, then load the data key.
func startDatabase(ctx context.Context, db backend.Database, src jwt.Source, keyring *authd.Keyring, log *slog.Logger) error {
	if err := db.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	first := -1 // the master key in use until now, if the signing keys tell
	if s, ok := src.(*jwt.StoreSource); ok {
		var err error
		if first, err = s.Check(ctx); err != nil {
			return err
		}
	}
	if err := keyring.Load(ctx, db, first); err != nil {
		return err
	}
	switch {
	case keyring.WrappedUnder() > 0 || first > 0:
		log.Warn("keys are still sealed under an AUTHD_MASTER_KEY_PREVIOUS key: run `authd keys reseal` once every instance has the new AUTHD_MASTER_KEY")
	case len(keyring.Masters) > 1:
		log.Warn("AUTHD_MASTER_KEY_PREVIOUS is set, but the data key and the signing keys are under AUTHD_MASTER_KEY: remove it once the mail queued before the rotation has expired (`authd keys reseal` says when)")
	}
	return nil
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
