package postgres

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// originalSchema is the table and index the original service's SQLAlchemy
// model made.
const originalSchema = `
CREATE TABLE auth_users (
    id UUID PRIMARY KEY,
    email VARCHAR NOT NULL,
    created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL DEFAULT (now() at time zone 'utc'),
    last_verified_at TIMESTAMP WITHOUT TIME ZONE
);
CREATE UNIQUE INDEX ix_auth_users_email ON auth_users (email);
`

func TestMigrateAdoptsOriginal(t *testing.T) {
	ctx := t.Context()
	s, u := openScratch(t)
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, originalSchema); err != nil {
		t.Fatalf("build the original schema: %v", err)
	}
	// The original's rows: case variants (the older one mixed-case), a
	// never-verified row, a row made with the column default.
	if _, err := conn.Exec(ctx, `
INSERT INTO auth_users (id, email, created_at, last_verified_at) VALUES
    ('11111111-1111-4111-8111-111111111111', 'Case@Example.COM', '2024-01-01 10:00:00', '2024-01-02 10:00:00'),
    ('22222222-2222-4222-8222-222222222222', 'case@example.com', '2024-02-01 10:00:00', '2024-02-01 10:00:00'),
    ('33333333-3333-4333-8333-333333333333', 'plain@example.com', '2024-03-01 10:00:00', NULL);
INSERT INTO auth_users (id, email) VALUES ('44444444-4444-4444-8444-444444444444', 'default@example.com');
`); err != nil {
		t.Fatalf("insert the original's rows: %v", err)
	}
	before := dumpUsers(t, conn)

	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("Migrate on the original's database: %v", err)
	}
	if after := dumpUsers(t, conn); after != before {
		t.Fatalf("Migrate changed the rows:\nbefore %s\nafter  %s", before, after)
	}
	// The original's unique index is the arbiter: no second one was made.
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_index WHERE indrelid = 'auth_users'::regclass AND indisunique AND NOT indisprimary`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("%d unique indexes besides the primary key, want the original's one", n)
	}

	tests := []struct {
		email, wantID string
	}{
		{"case@example.com", "11111111-1111-4111-8111-111111111111"},
		{"plain@example.com", "33333333-3333-4333-8333-333333333333"},
		{"default@example.com", "44444444-4444-4444-8444-444444444444"},
	}
	for _, tt := range tests {
		found, err := s.FindByEmail(ctx, tt.email)
		if err != nil || found.ID != tt.wantID {
			t.Errorf("FindByEmail(%q) = %v, %v; want id %s", tt.email, found.ID, err, tt.wantID)
		}
		at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
		u, err := s.UpsertVerified(ctx, tt.email, at)
		if err != nil || u.ID != tt.wantID || !u.LastVerifiedAt.Equal(at) {
			t.Errorf("UpsertVerified(%q) = %+v, %v; want id %s verified %v", tt.email, u, err, tt.wantID, at)
		}
	}
	var rows int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM auth_users").Scan(&rows); err != nil || rows != 4 {
		t.Fatalf("auth_users holds %d rows (%v), want the original 4", rows, err)
	}
	plain, _ := s.FindByEmail(ctx, "plain@example.com")
	if want := time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC); !plain.CreatedAt.Equal(want) || plain.CreatedAt.Location() != time.UTC {
		t.Errorf("created_at read as %v, want the naive UTC %v", plain.CreatedAt, want)
	}
	groups, err := s.CaseDuplicates(ctx)
	if err != nil || len(groups) != 1 || len(groups[0]) != 2 || groups[0][0].ID != "11111111-1111-4111-8111-111111111111" {
		t.Fatalf("CaseDuplicates = %+v, %v; want the Case@ group, oldest first", groups, err)
	}
}

func TestMigrateOriginalWithoutUniqueIndex(t *testing.T) {
	// A table whose unique index was lost (or made under another name)
	// still gets one, so UpsertVerified's ON CONFLICT has an arbiter.
	ctx := t.Context()
	s, u := openScratch(t)
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, strings.Replace(originalSchema, "CREATE UNIQUE INDEX", "CREATE INDEX", 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	if _, err := s.UpsertVerified(ctx, "a@example.com", time.Now()); err != nil {
		t.Fatalf("UpsertVerified: %v", err)
	}
}

func TestMigrateTwiceIsNoOp(t *testing.T) {
	ctx := t.Context()
	s := openMigrated(t)
	u, err := s.UpsertVerified(ctx, "keep@example.com", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var first strings.Builder
	if err := s.MigrationStatus(ctx, &first); err != nil {
		t.Fatalf("MigrationStatus: %v", err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	var second strings.Builder
	if err := s.MigrationStatus(ctx, &second); err != nil {
		t.Fatalf("MigrationStatus: %v", err)
	}
	if first.String() != second.String() {
		t.Fatalf("status changed:\n%s\nthen\n%s", first.String(), second.String())
	}
	if !strings.Contains(first.String(), "00001_auth_users.sql") || !strings.Contains(first.String(), "applied") {
		t.Fatalf("status does not show 00001 applied:\n%s", first.String())
	}
	var versions int
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM goose_db_version WHERE version_id > 0").Scan(&versions); err != nil || versions != migrationCount(t) {
		t.Fatalf("goose_db_version has %d applied rows (%v), want %d", versions, err, migrationCount(t))
	}
	if found, err := s.FindByEmail(ctx, "keep@example.com"); err != nil || found.ID != u.ID {
		t.Fatalf("after the second Migrate FindByEmail = %v, %v; want id %s", found.ID, err, u.ID)
	}
}

func TestMigrationStatusPending(t *testing.T) {
	s, _ := openScratch(t)
	var b strings.Builder
	if err := s.MigrationStatus(t.Context(), &b); err != nil {
		t.Fatalf("MigrationStatus: %v", err)
	}
	if !strings.Contains(b.String(), "00001_auth_users.sql") || !strings.Contains(b.String(), "pending") {
		t.Fatalf("status of a fresh database does not show 00001 pending:\n%s", b.String())
	}
}

func TestMigrateConcurrent(t *testing.T) {
	// Instances starting together: each has its own pool, all migrate the
	// same fresh schema at once.
	u := scratchURL(t)
	const n = 5
	stores := make([]*Store, n)
	for i := range stores {
		s, err := Open(t.Context(), u, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		stores[i] = s
	}
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make([]error, n)
	)
	for i, s := range stores {
		wg.Go(func() {
			<-start
			errs[i] = s.Migrate(t.Context())
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Migrate %d: %v", i, err)
		}
	}
	var versions int
	if err := stores[0].pool.QueryRow(t.Context(), "SELECT count(*) FROM goose_db_version WHERE version_id > 0").Scan(&versions); err != nil || versions != migrationCount(t) {
		t.Fatalf("goose_db_version has %d applied rows (%v), want %d", versions, err, migrationCount(t))
	}
}

func TestMigrateCanceled(t *testing.T) {
	s, _ := openScratch(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Migrate(ctx); err == nil {
		t.Fatal("Migrate with a canceled context succeeded")
	}
}

// dumpUsers renders every row of auth_users, in id order.
func dumpUsers(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	var s string
	err := conn.QueryRow(t.Context(), `SELECT coalesce(string_agg(concat_ws('|', id, email, created_at, last_verified_at), ';' ORDER BY id), '') FROM auth_users`).Scan(&s)
	if err != nil {
		t.Fatalf("dump auth_users: %v", err)
	}
	return s
}
