// Package sqlite keeps authd's users in a SQLite file (modernc.org/sqlite,
// no cgo): the embedded default when no PostgreSQL is configured. It has the
// same auth_users table and the same semantics as internal/postgres.
package sqlite

import (
	"context"
	"database/sql"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/authd/authd"
)

// Store is a SQLite database holding authd's tables. It is safe for
// concurrent use.
type Store struct {
	// db has a single connection: SQLite lets one writer in at a time
	// anyway, and one connection queues the writers in Go instead of
	// making them collide on the file lock with SQLITE_BUSY.
	db *sql.DB
}

var _ authd.UserStore = (*Store)(nil)

// Open opens (creating it and its parent directory when absent) the SQLite
// database at path, in WAL mode with a busy timeout (for other processes on
// the same file) and foreign keys on. It does not migrate: call Migrate.
//
// Errors: EINVALID for a path SQLite cannot take, EUNAVAILABLE when the file
// cannot be created or opened.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" || strings.ContainsAny(path, "?#") || strings.HasPrefix(path, "file:") || path == ":memory:" {
		// The driver reads '?' as the start of its parameters, and an
		// in-memory database would vanish with its connection.
		return nil, &authd.Error{Code: authd.EINVALID, Field: "path", Message: "the SQLite path must be a file path without '?' or '#'"}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, authd.Unavailable("SQLite", err)
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)") // WAL + NORMAL: durable across crashes of authd, not of the machine's power
	q.Add("_pragma", "foreign_keys(1)")
	// Transactions take the write lock at BEGIN, so that one of two
	// processes does not fail with SQLITE_BUSY on upgrading its read lock.
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", path+"?"+q.Encode())
	if err != nil {
		return nil, authd.Unavailable("SQLite", err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxIdleTime(0)
	db.SetConnMaxLifetime(0)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, authd.Unavailable("SQLite", err)
	}
	return &Store{db: db}, nil
}

// Close closes the database. Like postgres.Store's, it reports nothing: at
// shutdown there is nothing left to do about a failure, and SQLite's WAL
// makes an unclean close safe.
func (s *Store) Close() { s.db.Close() }

// Ping checks that the database answers.
//
// Errors: EUNAVAILABLE.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return unavailable(err)
	}
	return nil
}

// unavailable wraps a driver error: callers see a stable message, the cause
// stays in Err for the log.
func unavailable(err error) error { return authd.Unavailable("user store", err) }

// Collector returns database/sql's connection statistics (go_sql_*,
// db_name "authd"), read at scrape time.
func (s *Store) Collector() prometheus.Collector {
	return collectors.NewDBStatsCollector(s.db, "authd")
}
