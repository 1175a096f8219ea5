package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/authd/authd"
)

//go:embed migrations/*.sql
var migrations embed.FS

// migrationLockID is the PostgreSQL advisory lock authd's migrations run
// under (advisory locks are per database). It is authd's own rather than
// goose's default so that another goose-migrated application sharing the
// database neither waits for authd nor makes it wait.
const migrationLockID int64 = 0x61757468_64000001 // "authd", 1

// Migrate applies the pending migrations: on an empty database it creates
// auth_users; on the original service's database it adopts the table as it
// is. It holds a PostgreSQL advisory lock while it runs, so instances
// starting together apply each migration once and all return nil.
//
// Errors: EUNAVAILABLE when PostgreSQL does not answer, EINTERNAL when a
// migration fails.
func (s *Store) Migrate(ctx context.Context) error {
	return s.withProvider(ctx, func(p *goose.Provider) error {
		results, err := p.Up(ctx)
		for _, r := range results {
			if r.Error == nil {
				s.logger.Info("postgres migration applied", "migration", r.Source.Path, "duration", r.Duration)
			}
		}
		return err
	})
}

// MigrationStatus writes one line per migration to w: its file, whether it
// is applied, and when. On a database never migrated it creates goose's
// version table, empty.
//
// Errors: EUNAVAILABLE, EINTERNAL.
func (s *Store) MigrationStatus(ctx context.Context, w io.Writer) error {
	var status []*goose.MigrationStatus
	err := s.withProvider(ctx, func(p *goose.Provider) (err error) {
		status, err = p.Status(ctx)
		return err
	})
	if err != nil {
		return err
	}
	return writeStatus(w, status)
}

// withProvider runs fn with a goose Provider on the pool, holding the
// migration lock.
//
// The lock is a session-level advisory lock taken on a connection of its own,
// outside the pool, for the whole of fn. goose's SessionLocker would lock
// only around the migrations themselves: Provider.Up first checks for
// pending migrations unlocked, and that check creates goose's version table,
// so instances starting together on a fresh database race to create it and
// the losers retry after a second. pg_advisory_lock blocks until the holder
// unlocks or its session ends (PostgreSQL then releases the lock), or until
// ctx is done; a connection of its own keeps a pool of one connection from
// deadlocking.
func (s *Store) withProvider(ctx context.Context, fn func(*goose.Provider) error) error {
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return &authd.Error{Code: authd.EINTERNAL, Message: "cannot load the migrations", Err: err}
	}
	db := stdlib.OpenDBFromPool(s.pool) // closing db leaves the pool open
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return &authd.Error{Code: authd.EINTERNAL, Message: "cannot load the migrations", Err: err}
	}

	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return unavailable(err)
	}
	// Closing the session releases the lock even when the unlock below
	// could not be sent.
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrationLockID); err != nil {
		return unavailable(err)
	}
	err = fn(p)
	if _, uerr := conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrationLockID); uerr != nil {
		s.logger.Warn("postgres migration lock: unlock failed; closing the session releases it", "err", uerr)
	}
	if err != nil {
		return migrationError(ctx, err)
	}
	return nil
}

// migrationError tells a database that cannot be reached (or a caller that
// gave up) from a migration that PostgreSQL refused.
func migrationError(ctx context.Context, err error) error {
	var pgErr *pgconn.PgError
	if ctx.Err() == nil && errors.As(err, &pgErr) {
		return &authd.Error{Code: authd.EINTERNAL, Message: "a database migration failed", Err: err}
	}
	return unavailable(err)
}

func writeStatus(w io.Writer, status []*goose.MigrationStatus) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MIGRATION\tSTATE\tAPPLIED AT (UTC)")
	for _, st := range status {
		applied := "-"
		if st.State == goose.StateApplied {
			applied = st.AppliedAt.UTC().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", st.Source.Path, st.State, applied)
	}
	return tw.Flush()
}
