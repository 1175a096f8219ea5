package backend_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/authd/authd/internal/backend"
	"github.com/authd/authd/internal/config"
	"github.com/authd/authd/internal/postgres"
	"github.com/authd/authd/internal/redis"
	"github.com/authd/authd/internal/testenv"
)

// TestPoolSizes: the pools get POSTGRES_POOL_SIZE and REDIS_POOL_SIZE,
// their defaults when unset, and a size the URL sets wins over both.
func TestPoolSizes(t *testing.T) {
	db, rdb := testenv.DatabaseURL(t), testenv.RedisURL(t)
	withQuery := func(u, q string) string {
		if strings.Contains(u, "?") {
			return u + "&" + q
		}
		return u + "?" + q
	}
	for _, tc := range []struct {
		name            string
		env             map[string]string
		wantPG, wantRed int
	}{
		{"defaults", nil, 16, 64},
		{"set", map[string]string{"POSTGRES_POOL_SIZE": "7", "REDIS_POOL_SIZE": "9"}, 7, 9},
		{"the URL wins", map[string]string{"POSTGRES_POOL_SIZE": "7", "REDIS_POOL_SIZE": "9",
			"DATABASE_URL": withQuery(db, "pool_max_conns=5"), "REDIS_URL": withQuery(rdb, "pool_size=6")}, 5, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"DATABASE_URL": db, "REDIS_URL": rdb, "MAIL_BACKEND": "log"}
			for k, v := range tc.env {
				env[k] = v
			}
			cfg, err := config.Load(func(k string) string { return env[k] }, "", config.Database|config.Redis)
			if err != nil {
				t.Fatal(err)
			}
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			users, err := backend.OpenDatabase(context.Background(), cfg, log)
			if err != nil {
				t.Fatal(err)
			}
			defer users.Close()
			codes, err := backend.OpenCodes(context.Background(), cfg, log)
			if err != nil {
				t.Fatal(err)
			}
			defer codes.Close()
			if got := users.(*postgres.Store).MaxConns(); got != tc.wantPG {
				t.Errorf("PostgreSQL pool of %d, want %d", got, tc.wantPG)
			}
			if got := codes.CodeStore.(*redis.Store).PoolSize(); got != tc.wantRed {
				t.Errorf("Redis pool of %d, want %d", got, tc.wantRed)
			}
		})
	}
}
