package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/authd/authd"
)

// QueueStore is a code store with its mail queue: IssueCode enqueues.
type QueueStore interface {
	authd.CodeStore
	authd.MailQueue
	// EraseAddress deletes what the store keeps of an address key, its
	// queued jobs and their statuses included (`authd users delete`).
	EraseAddress(ctx context.Context, address string) (int, error)
}

// MailQueue runs the authd.MailQueue contract against the stores open
// returns, each subtest on its own store. Claims age by the store's clock
// (Redis ages them by its own), so the few tests of claim timeouts use the
// wall clock and sleep a little; everything else runs on the fake clock.
func MailQueue(t *testing.T, open func(t *testing.T) QueueStore) {
	tests := []struct {
		name string
		run  func(t *testing.T, s QueueStore)
	}{
		{"IssueQueuesJob", testQueueIssueQueuesJob},
		{"RefusedIssueQueuesNothing", testQueueRefusedIssueQueuesNothing},
		{"NoJobNoQueue", testQueueNoJobNoQueue},
		{"ClaimIsExclusive", testQueueClaimIsExclusive},
		{"LapsedClaimTakenOver", testQueueLapsedClaimTakenOver},
		{"ExtendKeepsClaim", testQueueExtendKeepsClaim},
		{"Release", testQueueRelease},
		{"Retrying", testQueueRetrying},
		{"FinishRemoves", testQueueFinishRemoves},
		{"StatusLivesWithCode", testQueueStatusLivesWithCode},
		{"UnknownDelivery", testQueueUnknownDelivery},
		{"ManyJobsEachOnce", testQueueManyJobsEachOnce},
		{"OldestQueued", testQueueOldestQueued},
		{"EraseRemovesJobs", testQueueEraseRemovesJobs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, open(t))
		})
	}
}

func newDeliveryID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// issueWithJob issues a code for a fresh address with a job; cooldown 0.
func issueWithJob(t *testing.T, s QueueStore, now time.Time) *authd.MailJob {
	t.Helper()
	return issueFor(t, s, newCodeAddress(t), now, 0)
}

func issueFor(t *testing.T, s QueueStore, address string, now time.Time, cooldown time.Duration) *authd.MailJob {
	t.Helper()
	codeID := newDeliveryID()
	job := &authd.MailJob{
		DeliveryID: newDeliveryID(), Address: address, Project: "shop", CodeID: codeID,
		ExpiresAt: now.Add(codeTTL), ReplaceableAt: now.Add(cooldown),
		// Binary, with the bytes a careless encoding would mangle.
		Sealed: []byte("\x00\xff\r\n sealed " + codeID),
	}
	_, err := s.IssueCode(context.Background(), authd.IssueRequest{
		Address: address, Project: "shop", ClientIP: codeClientIP, Now: now,
		Record:         authd.CodeRecord{ID: codeID, Hash: []byte("h" + codeID), ExpiresAt: job.ExpiresAt},
		ResendCooldown: cooldown, Job: job,
	})
	if err != nil {
		t.Fatalf("IssueCode: %v", err)
	}
	return job
}

func claimAll(t *testing.T, s QueueStore, consumer string, timeout time.Duration, now time.Time) []authd.ClaimedJob {
	t.Helper()
	jobs, err := s.Claim(context.Background(), consumer, 100, timeout, now)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	return jobs
}

func wantDelivery(t *testing.T, s QueueStore, id string, now time.Time, status string, attempts int) authd.Delivery {
	t.Helper()
	d, err := s.Delivery(context.Background(), id, now)
	if err != nil {
		t.Fatalf("Delivery: %v", err)
	}
	if d.Status != status || d.Attempts != attempts {
		t.Fatalf("Delivery = %+v, want status %s, %d attempts", d, status, attempts)
	}
	return d
}

func wantNoDelivery(t *testing.T, s QueueStore, id string, now time.Time) {
	t.Helper()
	_, err := s.Delivery(context.Background(), id, now)
	if authd.ErrorCode(err) != authd.ENOTFOUND {
		t.Fatalf("Delivery: %v, want ENOTFOUND", err)
	}
}

func testQueueIssueQueuesJob(t *testing.T, s QueueStore) {
	now := codeT0
	job := issueFor(t, s, newCodeAddress(t), now, time.Minute)
	d := wantDelivery(t, s, job.DeliveryID, now, authd.DeliveryQueued, 0)
	if !d.ExpiresAt.Equal(job.ExpiresAt) {
		t.Errorf("Delivery.ExpiresAt = %v, want the code's %v", d.ExpiresAt, job.ExpiresAt)
	}
	got := claimAll(t, s, "a", time.Minute, now)
	if len(got) != 1 {
		t.Fatalf("Claim returned %d jobs, want 1", len(got))
	}
	g := got[0]
	if g.DeliveryID != job.DeliveryID || g.Address != job.Address || g.Project != job.Project ||
		g.CodeID != job.CodeID || !g.ExpiresAt.Equal(job.ExpiresAt) ||
		!g.ReplaceableAt.Equal(job.ReplaceableAt) || string(g.Sealed) != string(job.Sealed) || g.Ref == "" {
		t.Errorf("claimed %+v, want %+v", g, *job)
	}
}

func testQueueRefusedIssueQueuesNothing(t *testing.T, s QueueStore) {
	now := codeT0
	address := newCodeAddress(t)
	first := issueFor(t, s, address, now, time.Minute)
	job := *first
	job.DeliveryID = newDeliveryID()
	_, err := s.IssueCode(context.Background(), authd.IssueRequest{
		Address: address, Project: "shop", ClientIP: codeClientIP, Now: now.Add(time.Second),
		Record:         authd.CodeRecord{ID: "second", Hash: []byte("h2"), ExpiresAt: now.Add(codeTTL)},
		ResendCooldown: time.Minute, Job: &job,
	})
	if authd.ErrorCode(err) != authd.ERATELIMITED {
		t.Fatalf("second IssueCode within the cooldown: %v, want ERATELIMITED", err)
	}
	wantNoDelivery(t, s, job.DeliveryID, now)
	got := claimAll(t, s, "a", time.Minute, now)
	if len(got) != 1 || got[0].DeliveryID != first.DeliveryID {
		t.Fatalf("claimed %+v, want only the first job", got)
	}
}

func testQueueNoJobNoQueue(t *testing.T, s QueueStore) {
	_, err := s.IssueCode(context.Background(), authd.IssueRequest{
		Address: newCodeAddress(t), Project: "shop", ClientIP: codeClientIP, Now: codeT0,
		Record: authd.CodeRecord{ID: "x", Hash: []byte("h"), ExpiresAt: codeT0.Add(codeTTL)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := claimAll(t, s, "a", time.Minute, codeT0); len(got) != 0 {
		t.Fatalf("claimed %d jobs from a code issued without one", len(got))
	}
}

func testQueueClaimIsExclusive(t *testing.T, s QueueStore) {
	now := time.Now()
	job := issueWithJob(t, s, now)
	if got := claimAll(t, s, "a", time.Minute, now); len(got) != 1 || got[0].DeliveryID != job.DeliveryID {
		t.Fatalf("a claimed %+v", got)
	}
	for _, c := range []string{"b", "a"} {
		if got := claimAll(t, s, c, time.Minute, now.Add(time.Second)); len(got) != 0 {
			t.Fatalf("%s claimed a job held by a: %+v", c, got)
		}
	}
}

func testQueueLapsedClaimTakenOver(t *testing.T, s QueueStore) {
	const timeout = 50 * time.Millisecond
	job := issueWithJob(t, s, time.Now())
	if got := claimAll(t, s, "a", timeout, time.Now()); len(got) != 1 {
		t.Fatalf("a claimed %d jobs", len(got))
	}
	time.Sleep(2 * timeout)
	got := claimAll(t, s, "b", timeout, time.Now())
	if len(got) != 1 || got[0].DeliveryID != job.DeliveryID {
		t.Fatalf("b claimed %+v after a's claim lapsed, want the job", got)
	}
	// b holds it now: a's renewal must not steal it back.
	if err := s.Extend(context.Background(), "a", got, time.Now()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(timeout / 2)
	if err := s.Extend(context.Background(), "b", got, time.Now()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(timeout / 2)
	if again := claimAll(t, s, "c", timeout, time.Now()); len(again) != 0 {
		t.Fatalf("c took over a job b had renewed: %+v", again)
	}
}

func testQueueExtendKeepsClaim(t *testing.T, s QueueStore) {
	const timeout = 150 * time.Millisecond
	issueWithJob(t, s, time.Now())
	held := claimAll(t, s, "a", timeout, time.Now())
	if len(held) != 1 {
		t.Fatalf("a claimed %d jobs", len(held))
	}
	for range 4 { // 240 ms in all, longer than the timeout
		time.Sleep(timeout * 2 / 5)
		if err := s.Extend(context.Background(), "a", held, time.Now()); err != nil {
			t.Fatal(err)
		}
		if got := claimAll(t, s, "b", timeout, time.Now()); len(got) != 0 {
			t.Fatalf("b took over a claim a kept renewing: %+v", got)
		}
	}
}

func testQueueRetrying(t *testing.T, s QueueStore) {
	now := codeT0
	job := issueWithJob(t, s, now)
	held := claimAll(t, s, "a", time.Minute, now)
	if len(held) != 1 {
		t.Fatalf("claimed %d jobs", len(held))
	}
	next := now.Add(1500 * time.Millisecond)
	if err := s.Retrying(context.Background(), held[0], 2, next, now); err != nil {
		t.Fatal(err)
	}
	d := wantDelivery(t, s, job.DeliveryID, now, authd.DeliveryRetrying, 2)
	if !d.NextAttempt.Equal(next) {
		t.Errorf("NextAttempt = %v, want %v", d.NextAttempt, next)
	}
	if got := claimAll(t, s, "b", time.Minute, now); len(got) != 0 {
		t.Fatalf("a retrying job was claimed by another consumer: %+v", got)
	}
}

func testQueueFinishRemoves(t *testing.T, s QueueStore) {
	for _, status := range []string{authd.DeliverySent, authd.DeliveryFailed, authd.DeliverySuperseded} {
		now := time.Now()
		job := issueWithJob(t, s, now)
		held := claimAll(t, s, "a", time.Minute, now)
		if len(held) != 1 {
			t.Fatalf("claimed %d jobs", len(held))
		}
		if err := s.Finish(context.Background(), held[0], status, 1, now); err != nil {
			t.Fatal(err)
		}
		d := wantDelivery(t, s, job.DeliveryID, now, status, 1)
		if !d.NextAttempt.IsZero() {
			t.Errorf("%s: NextAttempt = %v, want none", status, d.NextAttempt)
		}
		// Gone for good: not even a consumer taking every claim over finds it.
		time.Sleep(20 * time.Millisecond)
		if got := claimAll(t, s, "b", time.Millisecond, time.Now()); len(got) != 0 {
			t.Fatalf("%s: a finished job was claimed again: %+v", status, got)
		}
	}
}

func testQueueStatusLivesWithCode(t *testing.T, s QueueStore) {
	now := codeT0
	job := issueWithJob(t, s, now)
	wantDelivery(t, s, job.DeliveryID, job.ExpiresAt.Add(-time.Microsecond), authd.DeliveryQueued, 0)
	wantNoDelivery(t, s, job.DeliveryID, job.ExpiresAt)
}

func testQueueUnknownDelivery(t *testing.T, s QueueStore) {
	wantNoDelivery(t, s, newDeliveryID(), codeT0)
}

func testQueueManyJobsEachOnce(t *testing.T, s QueueStore) {
	now := time.Now()
	want := map[string]bool{}
	for range 100 {
		want[issueWithJob(t, s, now).DeliveryID] = true
	}
	seen := map[string]bool{}
	for round := 0; len(seen) < len(want); round++ {
		if round > 200 {
			t.Fatalf("claimed %d of %d jobs", len(seen), len(want))
		}
		jobs, err := s.Claim(context.Background(), fmt.Sprint("c", round%3), 7, time.Minute, now)
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range jobs {
			if seen[j.DeliveryID] {
				t.Fatalf("job %s claimed twice", j.DeliveryID)
			}
			seen[j.DeliveryID] = true
			if !want[j.DeliveryID] {
				t.Fatalf("claimed an unknown job %s", j.DeliveryID)
			}
		}
	}
}

func testQueueRelease(t *testing.T, s QueueStore) {
	now := time.Now()
	job := issueWithJob(t, s, now)
	held := claimAll(t, s, "a", time.Minute, now)
	if len(held) != 1 {
		t.Fatalf("a claimed %d jobs", len(held))
	}
	// Only the holder can release.
	if err := s.Release(context.Background(), "b", held); err != nil {
		t.Fatal(err)
	}
	if got := claimAll(t, s, "c", time.Minute, now); len(got) != 0 {
		t.Fatalf("a release by another consumer freed the claim: %+v", got)
	}
	if err := s.Release(context.Background(), "a", held); err != nil {
		t.Fatal(err)
	}
	got := claimAll(t, s, "b", time.Minute, now)
	if len(got) != 1 || got[0].DeliveryID != job.DeliveryID {
		t.Fatalf("b claimed %+v after a released it, want the job at once", got)
	}
	if again := claimAll(t, s, "c", time.Minute, now); len(again) != 0 {
		t.Fatalf("the released job was claimed twice: %+v", again)
	}
}

// testQueueOldestQueued: OldestQueued is when the oldest job not yet
// finished was queued, claimed or not, by the store's clock (Redis: its
// own, hence the wall clock here); zero once the queue is empty.
func testQueueOldestQueued(t *testing.T, s QueueStore) {
	ctx := context.Background()
	oldest := func() time.Time {
		t.Helper()
		at, err := s.OldestQueued(ctx)
		if err != nil {
			t.Fatalf("OldestQueued: %v", err)
		}
		return at
	}
	if at := oldest(); !at.IsZero() {
		t.Fatalf("empty queue: OldestQueued = %v, want zero", at)
	}
	now := time.Now()
	issueWithJob(t, s, now)
	first := oldest()
	if d := first.Sub(now); d < -2*time.Second || d > 2*time.Second {
		t.Fatalf("OldestQueued = %v, want about %v", first, now)
	}
	issueWithJob(t, s, now)
	// Claimed (in flight, or waiting to retry) is not finished.
	held := claimAll(t, s, "a", time.Minute, now)
	if len(held) != 2 {
		t.Fatalf("claimed %d jobs, want 2", len(held))
	}
	if at := oldest(); !at.Equal(first) {
		t.Fatalf("with both claimed: OldestQueued = %v, want still %v", at, first)
	}
	for i, j := range held {
		if err := s.Finish(ctx, j, authd.DeliverySent, 1, now); err != nil {
			t.Fatal(err)
		}
		if at := oldest(); i == 0 && (at.IsZero() || at.Before(first)) {
			t.Fatalf("one job left: OldestQueued = %v, want its time, not before %v", at, first)
		}
	}
	if at := oldest(); !at.IsZero() {
		t.Fatalf("all finished: OldestQueued = %v, want zero", at)
	}
}

// testQueueEraseRemovesJobs: erasing an address removes its jobs, claimed
// or not, with their statuses, so that no worker sends them after; other
// addresses' jobs stay.
func testQueueEraseRemovesJobs(t *testing.T, s QueueStore) {
	ctx := context.Background()
	now := time.Now()
	addr := newCodeAddress(t)
	claimed := issueFor(t, s, addr, now, 0)
	held := claimAll(t, s, "a", time.Minute, now)
	if len(held) != 1 {
		t.Fatalf("claimed %d jobs, want 1", len(held))
	}
	waiting := issueFor(t, s, addr, now, time.Minute) // replaces the first code
	other := issueWithJob(t, s, now)
	if _, err := s.EraseAddress(ctx, addr); err != nil {
		t.Fatalf("EraseAddress: %v", err)
	}
	wantNoDelivery(t, s, claimed.DeliveryID, now)
	wantNoDelivery(t, s, waiting.DeliveryID, now)
	wantDelivery(t, s, other.DeliveryID, now, authd.DeliveryQueued, 0)
	wantCodeCurrent(t, s, addr, "shop", waiting.CodeID, now, false)
	// a gives its claim up: nothing of addr comes back, to anyone.
	if err := s.Release(ctx, "a", held); err != nil {
		t.Fatal(err)
	}
	got := claimAll(t, s, "b", time.Minute, now)
	if len(got) != 1 || got[0].DeliveryID != other.DeliveryID {
		t.Fatalf("after the erasure b claimed %+v, want only the other address's job", got)
	}
	if err := s.Finish(ctx, got[0], authd.DeliverySent, 1, now); err != nil {
		t.Fatal(err)
	}
	if at, err := s.OldestQueued(ctx); err != nil || !at.IsZero() {
		t.Fatalf("OldestQueued = %v %v, want an empty queue", at, err)
	}
	// Erasing again, or an address with nothing queued, is no error.
	if _, err := s.EraseAddress(ctx, addr); err != nil {
		t.Fatalf("EraseAddress again: %v", err)
	}
}
