package sqlite

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/authd/authd/internal/storetest"
)

// Each instance opens the file on its own, as separate processes would.
func TestKeyStore(t *testing.T) {
	storetest.KeyStore(t, func(t *testing.T, n int) []storetest.Keys {
		path := filepath.Join(t.TempDir(), "authd.db")
		var out []storetest.Keys
		for i := range n {
			s, err := Open(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.Close)
			if i == 0 {
				if err := s.Migrate(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			out = append(out, s)
		}
		return out
	})
}
