package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/storetest"
	"github.com/authd/authd/internal/testenv"
)

// scratchURL returns AUTHD_TEST_DATABASE_URL pointed at a new, empty schema
// (through search_path), dropped when t ends, so that tests and packages
// sharing the database never see each other's tables. It skips without the
// database.
func scratchURL(t testing.TB) string {
	t.Helper()
	base := testenv.DatabaseURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to AUTHD_TEST_DATABASE_URL: %v", err)
	}
	defer admin.Close(ctx)

	b := make([]byte, 8)
	rand.Read(b)
	schema := "authd_test_" + hex.EncodeToString(b)
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create scratch schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("drop scratch schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop scratch schema %s: %v", schema, err)
		}
	})

	if strings.HasPrefix(base, "postgres://") || strings.HasPrefix(base, "postgresql://") {
		u, err := url.Parse(base)
		if err != nil {
			t.Fatalf("parse AUTHD_TEST_DATABASE_URL: %v", err)
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return base + " search_path=" + schema // key=value form
}

// openScratch returns a Store on a new schema, not migrated, closed when t
// ends.
func openScratch(t testing.TB) (*Store, string) {
	t.Helper()
	u := scratchURL(t)
	s, err := Open(context.Background(), u, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(s.Close)
	return s, u
}

// openMigrated returns a migrated Store on a new schema.
func openMigrated(t testing.TB) *Store {
	t.Helper()
	s, _ := openScratch(t)
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return s
}

// rawStore gives the contract suite a way to insert the rows the original
// service made: test-only, so the Store itself has no such door.
type rawStore struct{ *Store }

var _ storetest.RawInserter = rawStore{}

func (s rawStore) InsertRaw(ctx context.Context, u authd.User) error {
	var lastVerified *time.Time
	if !u.LastVerifiedAt.IsZero() {
		t := u.LastVerifiedAt.UTC()
		lastVerified = &t
	}
	_, err := s.pool.Exec(ctx,
		"INSERT INTO auth_users (id, email, created_at, last_verified_at) VALUES ($1, $2, $3, $4)",
		u.ID, u.Email, u.CreatedAt.UTC(), lastVerified)
	return err
}

func TestUserStore(t *testing.T) {
	testenv.DatabaseURL(t)
	storetest.UserStore(t, func(t *testing.T) authd.UserStore {
		return rawStore{openMigrated(t)}
	})
}

func TestClosedStoreUnavailable(t *testing.T) {
	s := openMigrated(t)
	s.Close()
	ctx := t.Context()
	checks := []struct {
		name string
		err  error
	}{
		{"UpsertVerified", func() error { _, err := s.UpsertVerified(ctx, "a@example.com", time.Now()); return err }()},
		{"FindByEmail", func() error { _, err := s.FindByEmail(ctx, "a@example.com"); return err }()},
		{"CaseDuplicates", func() error { _, err := s.CaseDuplicates(ctx); return err }()},
		{"Ping", s.Ping(ctx)},
	}
	for _, c := range checks {
		if code := authd.ErrorCode(c.err); code != authd.EUNAVAILABLE {
			t.Errorf("%s on a closed store: %v (code %q), want EUNAVAILABLE", c.name, c.err, code)
		}
		if e, ok := c.err.(*authd.Error); ok && e.Message != "user store unavailable" {
			t.Errorf("%s: message %q, want the generic one", c.name, e.Message)
		}
	}
}

func TestOpenBadURL(t *testing.T) {
	_, err := Open(t.Context(), "postgres://u:s3cret@127.0.0.1:notaport/db", nil)
	if code := authd.ErrorCode(err); code != authd.EINVALID {
		t.Fatalf("Open(bad URL) = %v, want EINVALID", err)
	}
	if strings.Contains(err.(*authd.Error).Message, "s3cret") {
		t.Fatalf("Open(bad URL) message repeats the password: %q", err.(*authd.Error).Message)
	}
}

// The pool's series, read at scrape time: a query shows in the counters.
func TestCollector(t *testing.T) {
	s := openMigrated(t)
	if _, err := s.UpsertVerified(t.Context(), "pool@example.com", time.Now()); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.Collector())
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		m := f.GetMetric()[0]
		got[f.GetName()] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
	}
	if len(got) != 7 || got["authd_pgx_pool_acquires_total"] < 1 || got["authd_pgx_pool_max_conns"] < 1 || got["authd_pgx_pool_total_conns"] < 1 {
		t.Fatalf("pool series: %v", got)
	}
}
