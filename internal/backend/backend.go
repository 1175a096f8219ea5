// Package backend opens the stores the configuration names — the
// database (PostgreSQL or SQLite) and the code store (Redis or in
// memory) — with the readiness checks and metrics each brings: what
// cmd/authd's commands and server share.
package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/config"
	"github.com/authd/authd/internal/httpapi"
	"github.com/authd/authd/internal/inmem"
	"github.com/authd/authd/internal/postgres"
	"github.com/authd/authd/internal/redis"
	"github.com/authd/authd/internal/sqlite"
)

// Database is what a user backend gives the wiring: users, the token
// signing keys and the wrapped data key live in one database, which authd
// migrates. Both internal/postgres and internal/sqlite are one.
type Database interface {
	authd.UserStore
	authd.KeyStore
	authd.DataKeyStore
	Migrate(ctx context.Context) error
	MigrationStatus(ctx context.Context, w io.Writer) error
	Collector() prometheus.Collector
	Close()
}

var (
	_ Database = (*postgres.Store)(nil)
	_ Database = (*sqlite.Store)(nil)
)

// OpenDatabase opens the database the configuration names: PostgreSQL,
// or SQLite in AUTHD_DATA_DIR.
func OpenDatabase(ctx context.Context, cfg config.Config, log *slog.Logger) (Database, error) {
	if cfg.DatabaseURL != "" {
		s, err := postgres.OpenPool(ctx, cfg.DatabaseURL, cfg.PostgresPoolSize, log)
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

// Codes is the code store the configuration names, with what the
// readiness probe and the metrics ask of it.
type Codes struct {
	authd.CodeStore
	// SignIns keeps the hosted sign-ins, beside the codes.
	SignIns    authd.SignInStore
	Checks     []httpapi.Check
	Collectors []prometheus.Collector
	Close      func()
}

// OpenCodes opens the code store the configuration names: Redis (single,
// Sentinel or Cluster), or the in-memory store. A Redis that does not
// answer yet does not stop it: readiness says so until it does.
func OpenCodes(ctx context.Context, cfg config.Config, log *slog.Logger) (Codes, error) {
	if cfg.RedisURL == "" {
		codes := inmem.NewCodeStore()
		return Codes{CodeStore: codes, SignIns: inmem.NewSignInStore(codes), Close: func() {}}, nil
	}
	redis.SetLogger(log)
	s, err := redis.Open(cfg.RedisURL, redis.Options{Prefix: cfg.RedisPrefix, Cluster: cfg.RedisCluster, PoolSize: cfg.RedisPoolSize,
		WaitReplicas: cfg.RedisWaitReplicas, WaitTimeout: cfg.RedisWaitTimeout})
	if err != nil {
		return Codes{}, fmt.Errorf("config: REDIS_URL: %v", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	switch err := evictionProblem(cctx, s); {
	case errors.Is(err, httpapi.ErrUnknown):
		log.Warn("Redis is not usable yet: not ready until it is", "err", err)
	case err != nil:
		log.Warn("Redis may evict keys: limits and queued mail can vanish", "err", err)
	}
	return Codes{CodeStore: s, SignIns: s, Checks: RedisChecks(s), Collectors: []prometheus.Collector{s.Collector()},
		Close: func() { s.Close() }}, nil
}

// RedisHealth is what readiness asks of Redis.
type RedisHealth interface {
	Ping(ctx context.Context) error
	CheckEviction(ctx context.Context) (policy string, ok bool, err error)
}

// RedisChecks: Redis answers (or authd is not ready); it does not evict
// (DESIGN.md §3: serving goes on, the policy may be changed live, but
// readiness says so on every probe).
func RedisChecks(r RedisHealth) []httpapi.Check {
	return []httpapi.Check{{Name: "redis", Check: r.Ping}, {Name: "redis_eviction", Optional: true,
		Check: func(ctx context.Context) error { return evictionProblem(ctx, r) }}}
}

// evictionProblem says what is wrong with Redis's eviction policy, for the
// start-up line and the readiness check alike: nil for noeviction, or a
// managed Redis that will not say (CONFIG and INFO refused: the start-up
// line asks to make sure); ErrUnknown when Redis does not answer (the
// "redis" check says it is down).
func evictionProblem(ctx context.Context, r RedisHealth) error {
	switch policy, ok, err := r.CheckEviction(ctx); {
	case err != nil:
		return fmt.Errorf("%w: %w", httpapi.ErrUnknown, err)
	case policy != "" && !ok:
		return fmt.Errorf("maxmemory-policy is %s: limits and queued mail may be evicted; set noeviction", policy)
	}
	return nil
}
