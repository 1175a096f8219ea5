package postgres

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/authd/authd"
)

// queued runs each call in its own goroutine while every statement turn
// is taken, waits until all of them are queued, then ends the turns: the
// queue goes as one batch. It returns the calls' results in order.
func queued(t *testing.T, s *Store, calls []func() (authd.User, error)) ([]authd.User, []error) {
	t.Helper()
	s.batch.mu.Lock()
	s.batch.running = maxStatements
	s.batch.mu.Unlock()
	users, errs := make([]authd.User, len(calls)), make([]error, len(calls))
	var wg sync.WaitGroup
	for i, call := range calls {
		wg.Go(func() { users[i], errs[i] = call() })
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		s.batch.mu.Lock()
		n := len(s.batch.pending)
		s.batch.mu.Unlock()
		if n == len(calls) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d upserts queued", n, len(calls))
		}
	}
	for range maxStatements {
		s.statementDone()
	}
	wg.Wait()
	return users, errs
}

func upsertCall(s *Store, email string, at time.Time) func() (authd.User, error) {
	return func() (authd.User, error) { return s.UpsertVerified(context.Background(), email, at) }
}

// TestUpsertBatch: one statement for a queue holding an address twice
// (two projects at once: one row, its latest time, the same user for
// both), a row the original made in mixed case (found, kept as it is),
// and new addresses; each caller gets its own address's user.
func TestUpsertBatch(t *testing.T) {
	s := openMigrated(t)
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	oldID := uuid.NewString()
	if err := (rawStore{s}).InsertRaw(ctx, authd.User{ID: oldID, Email: "Old@Example.com", CreatedAt: t0.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	users, errs := queued(t, s, []func() (authd.User, error){
		upsertCall(s, "twice@example.com", t0),
		upsertCall(s, "old@example.com", t0),
		upsertCall(s, "TWICE@example.com", t0.Add(time.Second)),
		upsertCall(s, "new@example.com", t0),
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("upsert %d: %v", i, err)
		}
	}
	if n := s.batch.shared.Load(); n != 1 {
		t.Fatalf("%d shared statements, want 1", n)
	}
	if users[0].ID != users[2].ID || users[0].Email != "twice@example.com" {
		t.Errorf("one address twice: %+v and %+v, want one user", users[0], users[2])
	}
	if users[1].ID != oldID || users[1].Email != "Old@Example.com" {
		t.Errorf("the original's row: got %+v, want id %s as it was", users[1], oldID)
	}
	if users[3].Email != "new@example.com" || users[3].ID == users[0].ID || users[3].ID == oldID {
		t.Errorf("a new address: %+v", users[3])
	}
	if !users[0].LastVerifiedAt.Equal(t0.Add(time.Second)) || !users[1].LastVerifiedAt.Equal(t0) {
		t.Errorf("last verified %v and %v, want the latest of each address's times", users[0].LastVerifiedAt, users[1].LastVerifiedAt)
	}
	var rows int
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM auth_users").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 3 {
		t.Errorf("%d rows, want 3", rows)
	}
	// Once more, all known now: the same users, updated.
	again, errs := queued(t, s, []func() (authd.User, error){
		upsertCall(s, "new@example.com", t0.Add(time.Minute)),
		upsertCall(s, "twice@example.com", t0.Add(time.Minute)),
	})
	if errs[0] != nil || errs[1] != nil || again[0].ID != users[3].ID || again[1].ID != users[0].ID {
		t.Errorf("a second batch: %+v %v, %+v %v", again[0], errs[0], again[1], errs[1])
	}
}

// TestUpsertBatchOneBadRow: a row PostgreSQL refuses fails the batch's
// statement; every address is then tried alone: the others are recorded,
// the bad one alone answers EUNAVAILABLE.
func TestUpsertBatchOneBadRow(t *testing.T) {
	s := openMigrated(t)
	now := time.Now()
	users, errs := queued(t, s, []func() (authd.User, error){
		upsertCall(s, "good1@example.com", now),
		upsertCall(s, "bad\x00@example.com", now), // text may not hold NUL
		upsertCall(s, "good2@example.com", now),
	})
	if authd.ErrorCode(errs[1]) != authd.EUNAVAILABLE {
		t.Errorf("the bad row: %v, want EUNAVAILABLE", errs[1])
	}
	if n := s.batch.shared.Load(); n != 0 {
		t.Errorf("%d shared statements succeeded beside a bad row", n)
	}
	for _, i := range []int{0, 2} {
		if errs[i] != nil || users[i].ID == "" {
			t.Errorf("upsert %d beside the bad row: %+v %v", i, users[i], errs[i])
		}
		if u, err := s.FindByEmail(context.Background(), users[i].Email); err != nil || u.ID != users[i].ID {
			t.Errorf("upsert %d not recorded: %+v %v", i, u, err)
		}
	}
}

// TestUpsertBatchFails: with the table gone every caller of a batch gets
// EUNAVAILABLE (each then gives its code back: authd.Service); once it is
// back, the same calls succeed.
func TestUpsertBatchFails(t *testing.T) {
	s := openMigrated(t)
	ctx := context.Background()
	now := time.Now()
	calls := []func() (authd.User, error){
		upsertCall(s, "a@example.com", now), upsertCall(s, "b@example.com", now), upsertCall(s, "c@example.com", now),
	}
	if _, err := s.pool.Exec(ctx, "ALTER TABLE auth_users RENAME TO auth_users_gone"); err != nil {
		t.Fatal(err)
	}
	_, errs := queued(t, s, calls)
	for i, err := range errs {
		if authd.ErrorCode(err) != authd.EUNAVAILABLE {
			t.Errorf("upsert %d with the table gone: %v, want EUNAVAILABLE", i, err)
		}
	}
	if _, err := s.pool.Exec(ctx, "ALTER TABLE auth_users_gone RENAME TO auth_users"); err != nil {
		t.Fatal(err)
	}
	users, errs := queued(t, s, calls)
	for i, err := range errs {
		if err != nil || users[i].ID == "" {
			t.Errorf("upsert %d once the table is back: %+v %v", i, users[i], err)
		}
	}
}

// TestUpsertAloneAtLowLoad: with a statement turn free, an upsert runs at
// once on its own, queueing nothing; a caller whose context ends while
// queued leaves the queue.
func TestUpsertAloneAtLowLoad(t *testing.T) {
	s := openMigrated(t)
	if _, err := s.UpsertVerified(context.Background(), "solo@example.com", time.Now()); err != nil {
		t.Fatal(err)
	}
	s.batch.mu.Lock()
	running, pending := s.batch.running, len(s.batch.pending)
	s.batch.mu.Unlock()
	if running != 0 || pending != 0 {
		t.Fatalf("after a lone upsert: %d running, %d queued", running, pending)
	}

	s.batch.mu.Lock()
	s.batch.running = maxStatements
	s.batch.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.UpsertVerified(ctx, "late@example.com", time.Now()); authd.ErrorCode(err) != authd.EUNAVAILABLE {
		t.Fatalf("an upsert whose deadline passed in the queue: %v, want EUNAVAILABLE", err)
	}
	s.batch.mu.Lock()
	pending = len(s.batch.pending)
	s.batch.running = 0
	s.batch.mu.Unlock()
	if pending != 0 {
		t.Fatalf("%d upserts left queued", pending)
	}
	if _, err := s.FindByEmail(context.Background(), "late@example.com"); authd.ErrorCode(err) != authd.ENOTFOUND {
		t.Fatalf("the upsert that left the queue was written: %v", err)
	}
}
