package postgres

import (
	"strconv"
	"testing"
	"time"
)

// BenchmarkUpsertVerified measures a first verification: each iteration a
// new address, so every call takes the insert path.
func BenchmarkUpsertVerified(b *testing.B) {
	s := openMigrated(b)
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := s.UpsertVerified(b.Context(), "user"+strconv.Itoa(i)+"@example.com", at); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
