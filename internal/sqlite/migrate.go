package sqlite

import (
	"context"
	"embed"
	"fmt"
	"io"
	"io/fs"
	"text/tabwriter"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/authd/authd"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate applies the pending migrations. Calls on one Store queue on its
// single connection; processes sharing the file queue on SQLite's write
// lock (each migration is one IMMEDIATE transaction, the busy timeout waits),
// and every migration is written to apply harmlessly twice.
//
// Errors: EUNAVAILABLE, EINTERNAL when a migration fails.
func (s *Store) Migrate(ctx context.Context) error {
	p, err := s.provider()
	if err != nil {
		return err
	}
	if _, err := p.Up(ctx); err != nil {
		return migrationError(ctx, err)
	}
	return nil
}

// MigrationStatus writes one line per migration to w: its file, whether it
// is applied, and when.
//
// Errors: EUNAVAILABLE, EINTERNAL.
func (s *Store) MigrationStatus(ctx context.Context, w io.Writer) error {
	p, err := s.provider()
	if err != nil {
		return err
	}
	status, err := p.Status(ctx)
	if err != nil {
		return migrationError(ctx, err)
	}
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

// provider returns a goose Provider on the Store's database. It is not
// closed: closing it would close the database.
func (s *Store) provider() (*goose.Provider, error) {
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, &authd.Error{Code: authd.EINTERNAL, Message: "cannot load the migrations", Err: err}
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, s.db, fsys, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return nil, &authd.Error{Code: authd.EINTERNAL, Message: "cannot load the migrations", Err: err}
	}
	return p, nil
}

// migrationError sorts a failed migration: a caller that gave up or a
// database that cannot be used is EUNAVAILABLE, anything else EINTERNAL.
func migrationError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return unavailable(err)
	}
	return &authd.Error{Code: authd.EINTERNAL, Message: "a database migration failed", Err: err}
}
