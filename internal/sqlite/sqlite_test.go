package sqlite

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/storetest"
)

// openMigrated returns a migrated Store on a new file, closed when t ends.
func openMigrated(t testing.TB) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "authd.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(s.Close)
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return s
}

// rawStore gives the contract suite a way to insert rows as given (case
// variants): test-only, so the Store itself has no such door.
type rawStore struct{ *Store }

var _ storetest.RawInserter = rawStore{}

func (s rawStore) InsertRaw(ctx context.Context, u authd.User) error {
	var lastVerified sql.NullString
	if !u.LastVerifiedAt.IsZero() {
		lastVerified = sql.NullString{String: formatTime(u.LastVerifiedAt), Valid: true}
	}
	_, err := s.db.ExecContext(ctx,
		"INSERT INTO auth_users (id, email, created_at, last_verified_at) VALUES (?, ?, ?, ?)",
		u.ID, u.Email, formatTime(u.CreatedAt), lastVerified)
	return err
}

func TestUserStore(t *testing.T) {
	storetest.UserStore(t, func(t *testing.T) authd.UserStore {
		return rawStore{openMigrated(t)}
	})
}

func TestOpenCreatesParentAndWAL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "authd.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the database file was not created: %v", err)
	}
	pragmas := []struct{ name, want string }{
		{"journal_mode", "wal"},
		{"busy_timeout", "10000"},
		{"foreign_keys", "1"},
	}
	for _, p := range pragmas {
		var got string
		if err := s.db.QueryRowContext(t.Context(), "PRAGMA "+p.name).Scan(&got); err != nil || got != p.want {
			t.Errorf("PRAGMA %s = %q (%v), want %q", p.name, got, err, p.want)
		}
	}
}

func TestOpenRejectsPath(t *testing.T) {
	for _, path := range []string{"", ":memory:", "a.db?mode=ro", "file:a.db"} {
		if _, err := Open(t.Context(), path); authd.ErrorCode(err) != authd.EINVALID {
			t.Errorf("Open(%q) = %v, want EINVALID", path, err)
		}
	}
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
	}
}

func TestMigrateTwiceIsNoOp(t *testing.T) {
	ctx := t.Context()
	s := openMigrated(t)
	u, err := s.UpsertVerified(ctx, "keep@example.com", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var first, second strings.Builder
	if err := s.MigrationStatus(ctx, &first); err != nil {
		t.Fatalf("MigrationStatus: %v", err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	if err := s.MigrationStatus(ctx, &second); err != nil {
		t.Fatalf("MigrationStatus: %v", err)
	}
	if first.String() != second.String() || !strings.Contains(first.String(), "00001_auth_users.sql") || !strings.Contains(first.String(), "applied") {
		t.Fatalf("status:\n%s\nthen\n%s\nwant 00001 applied, unchanged", first.String(), second.String())
	}
	if found, err := s.FindByEmail(ctx, "keep@example.com"); err != nil || found.ID != u.ID {
		t.Fatalf("after the second Migrate FindByEmail = %v, %v; want id %s", found.ID, err, u.ID)
	}
}

func TestMigrateConcurrentProcesses(t *testing.T) {
	// Stores on one file stand for processes sharing it: SQLite's file lock
	// and the busy timeout must queue them, not fail them.
	path := filepath.Join(t.TempDir(), "authd.db")
	const n = 5
	stores := make([]*Store, n)
	for i := range stores {
		s, err := Open(t.Context(), path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		stores[i] = s
	}
	var (
		wg   sync.WaitGroup
		errs = make([]error, n)
	)
	for i, s := range stores {
		wg.Go(func() { errs[i] = s.Migrate(t.Context()) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Migrate %d: %v", i, err)
		}
	}
	// Writers from every "process" at once.
	ids := make([]string, n)
	for i, s := range stores {
		wg.Go(func() {
			u, err := s.UpsertVerified(t.Context(), "shared@example.com", time.Now())
			errs[i], ids[i] = err, u.ID
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || ids[i] != ids[0] {
			t.Errorf("UpsertVerified %d = %s, %v; want %s", i, ids[i], errs[i], ids[0])
		}
	}
}

func TestMigrationStatusPending(t *testing.T) {
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "authd.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var b strings.Builder
	if err := s.MigrationStatus(t.Context(), &b); err != nil {
		t.Fatalf("MigrationStatus: %v", err)
	}
	if !strings.Contains(b.String(), "00001_auth_users.sql") || !strings.Contains(b.String(), "pending") {
		t.Fatalf("status of a new database does not show 00001 pending:\n%s", b.String())
	}
}

func TestDefaultCreatedAtSorts(t *testing.T) {
	// A row inserted by hand gets the column default, in milliseconds: it
	// must still read back and sort among the microsecond ones.
	ctx := t.Context()
	s := openMigrated(t)
	if _, err := s.db.ExecContext(ctx, "INSERT INTO auth_users (id, email) VALUES ('5d000000-0000-4000-8000-000000000001', 'hand@example.com')"); err != nil {
		t.Fatal(err)
	}
	u, err := s.FindByEmail(ctx, "hand@example.com")
	if err != nil {
		t.Fatalf("FindByEmail: %v", err)
	}
	if d := time.Since(u.CreatedAt); d < 0 || d > time.Minute || !u.LastVerifiedAt.IsZero() {
		t.Fatalf("hand-made row read as %+v", u)
	}
}

func TestCollector(t *testing.T) {
	s := openMigrated(t)
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.Collector())
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == "go_sql_max_open_connections" && f.GetMetric()[0].GetGauge().GetValue() == 1 {
			return
		}
	}
	t.Fatalf("no go_sql_max_open_connections of 1 among %d series", len(fams))
}
