package postgres

import (
	"context"
	"io/fs"
	"testing"

	"github.com/authd/authd/internal/storetest"
	"github.com/authd/authd/internal/testenv"
)

// Each instance has its own pool on one scratch schema, as separate
// processes would.
func TestKeyStore(t *testing.T) {
	testenv.DatabaseURL(t)
	storetest.KeyStore(t, func(t *testing.T, n int) []storetest.Keys {
		first, u := openScratch(t)
		if err := first.Migrate(context.Background()); err != nil {
			t.Fatalf("Migrate: %v", err)
		}
		out := []storetest.Keys{first}
		for range n - 1 {
			s, err := Open(context.Background(), u, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.Close)
			out = append(out, s)
		}
		return out
	})
}

// migrationCount is the number of embedded migrations: what a migrated
// database has applied.
func migrationCount(t testing.TB) int {
	t.Helper()
	entries, err := fs.ReadDir(migrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}
