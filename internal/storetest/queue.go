package storetest

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/authd/authd"
)

// QueueStore is a code store with its mail queue: IssueCode enqueues,
// EraseAddress removes an address's queued jobs with their statuses.
type QueueStore interface {
	authd.CodeStore
}

// MailQueue runs the authd.MailQueue contract against the stores open
// returns, each subtest on its own store. Claims age by the callers'
// clock (the now of Claim and Extend), so every test runs on a fake
// clock far from the real one: nothing here sleeps.
func MailQueue(t *testing.T, open func(t *testing.T) QueueStore) {
	tests := []struct {
		name string
		run  func(t *testing.T, s QueueStore)
	}{
		{"IssueQueuesJob", testQueueIssueQueuesJob},
		{"RefusedIssueQueuesNothing", testQueueRefusedIssueQueuesNothing},
		{"NoJobNoQueue", testQueueNoJobNoQueue},
		{"ClaimIsExclusive", testQueueClaimIsExclusive},
		{"ClaimChecksLive", testQueueClaimChecksLive},
		{"ClaimManyOfOneStream", testQueueClaimManyOfOneStream},
		{"LapsedClaimTakenOver", testQueueLapsedClaimTakenOver},
		{"NewBeforeLapsed", testQueueNewBeforeLapsed},
		{"ExtendKeepsClaim", testQueueExtendKeepsClaim},
		{"Release", testQueueRelease},
		{"Retrying", testQueueRetrying},
		{"FinishRemoves", testQueueFinishRemoves},
		{"FinishedStatusStays", testQueueFinishedStatusStays},
		{"FinishAll", testQueueFinishAll},
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

// newDeliveryID returns a delivery id for a mail to address, as the flow
// makes them: it names the address's partition.
func newDeliveryID(t *testing.T, address string) string {
	t.Helper()
	id, err := authd.NewDeliveryID(rand.Reader, authd.Partition(address))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// issueWithJob issues a code for a fresh address with a job; cooldown 0.
func issueWithJob(t *testing.T, s QueueStore, now time.Time) *authd.MailJob {
	t.Helper()
	return issueFor(t, s, newCodeAddress(t), now, 0)
}

func issueFor(t *testing.T, s QueueStore, address string, now time.Time, cooldown time.Duration) *authd.MailJob {
	t.Helper()
	codeID := newCodeID(t)
	job := &authd.MailJob{
		DeliveryID: newDeliveryID(t, address), Address: addr(address), Project: "shop", CodeID: codeID,
		ExpiresAt: now.Add(codeTTL), ReplaceableAt: now.Add(cooldown),
		// Binary, with the bytes a careless encoding would mangle.
		Sealed: []byte("\x00\xff\r\n sealed " + codeID),
	}
	_, err := s.IssueCode(context.Background(), authd.IssueRequest{
		Address: addr(address), Project: "shop", ClientIP: codeClientIP, Now: now,
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

// claimUntilEmpty claims until nothing is left (claim timeout a minute):
// a store split over shards claims a few a partition at a time.
func claimUntilEmpty(t *testing.T, s QueueStore, consumer string, now time.Time) []authd.ClaimedJob {
	t.Helper()
	var all []authd.ClaimedJob
	for more := claimAll(t, s, consumer, time.Minute, now); len(more) > 0; more = claimAll(t, s, consumer, time.Minute, now) {
		all = append(all, more...)
	}
	return all
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
	job.DeliveryID = newDeliveryID(t, address)
	_, err := s.IssueCode(context.Background(), authd.IssueRequest{
		Address: addr(address), Project: "shop", ClientIP: codeClientIP, Now: now.Add(time.Second),
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
		Address: addr(newCodeAddress(t)), Project: "shop", ClientIP: codeClientIP, Now: codeT0,
		Record: authd.CodeRecord{ID: "x", Hash: []byte("h"), ExpiresAt: codeT0.Add(codeTTL)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := claimAll(t, s, "a", time.Minute, codeT0); len(got) != 0 {
		t.Fatalf("claimed %d jobs from a code issued without one", len(got))
	}
}

// Claim looks up the codes its cooldown no longer protects: live,
// replaced, used, expired; the others it leaves unchecked.
func testQueueClaimChecksLive(t *testing.T, s QueueStore) {
	now := codeT0
	replaced := issueWithJob(t, s, now)
	replacing := issueFor(t, s, replaced.Address.Key, now, 0)
	protected := issueFor(t, s, newCodeAddress(t), now, time.Minute)
	live := issueWithJob(t, s, now)
	used := issueWithJob(t, s, now)
	mustConsumeCode(t, s, authd.ConsumeRequest{Address: used.Address, Project: "shop", ClientIP: codeClientIP, Now: now,
		Hash: []byte("h" + used.CodeID)})
	want := map[string]struct{ checked, live bool }{
		replaced.DeliveryID: {true, false}, replacing.DeliveryID: {true, true}, protected.DeliveryID: {false, false},
		live.DeliveryID: {true, true}, used.DeliveryID: {true, false},
	}
	got := claimUntilEmpty(t, s, "a", now)
	if len(got) != len(want) {
		t.Fatalf("claimed %d jobs, want %d", len(got), len(want))
	}
	for _, j := range got {
		if w := want[j.DeliveryID]; j.Checked != w.checked || j.Live != w.live {
			t.Errorf("job %s: Checked %v, Live %v; want %v, %v", j.CodeID, j.Checked, j.Live, w.checked, w.live)
		}
	}
	// Expired by the time it is claimed (lapsed claims taken over late).
	lapsed := claimUntilEmpty(t, s, "b", now.Add(codeTTL+time.Minute))
	if len(lapsed) != len(want) {
		t.Fatalf("took over %d lapsed jobs, want %d", len(lapsed), len(want))
	}
	for _, j := range lapsed {
		if !j.Checked || j.Live {
			t.Errorf("job %s: Checked %v, Live %v after its code expired; want checked, not live", j.CodeID, j.Checked, j.Live)
		}
	}
}

// More jobs of one address (one stream) than one write of their claim
// times takes: every one is claimed once, and every claim is recorded, so
// that all of them lapse and are taken over.
func testQueueClaimManyOfOneStream(t *testing.T, s QueueStore) {
	now := codeT0
	address := newCodeAddress(t)
	const n = 1100
	for range n {
		issueFor(t, s, address, now, 0)
	}
	jobs, err := s.Claim(context.Background(), "a", 2*n, time.Minute, now)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	jobs = append(jobs, claimUntilEmpty(t, s, "a", now)...)
	refs := map[string]bool{}
	for _, j := range jobs {
		refs[j.Ref] = true
	}
	if len(jobs) != n || len(refs) != n {
		t.Fatalf("claimed %d jobs (%d distinct), want %d", len(jobs), len(refs), n)
	}
	if lapsed := claimUntilEmpty(t, s, "b", now.Add(time.Minute)); len(lapsed) != n {
		t.Fatalf("took over %d lapsed claims, want %d", len(lapsed), n)
	}
}

func testQueueClaimIsExclusive(t *testing.T, s QueueStore) {
	now := codeT0
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

// testQueueLapsedClaimTakenOver: a claim lapses claimTimeout after it was
// made or last renewed, by the callers' clock, not a microsecond before.
func testQueueLapsedClaimTakenOver(t *testing.T, s QueueStore) {
	const timeout = time.Minute
	now := codeT0
	job := issueWithJob(t, s, now)
	if got := claimAll(t, s, "a", timeout, now); len(got) != 1 {
		t.Fatalf("a claimed %d jobs", len(got))
	}
	if got := claimAll(t, s, "b", timeout, now.Add(timeout-time.Microsecond)); len(got) != 0 {
		t.Fatalf("b claimed %+v before a's claim lapsed", got)
	}
	now = now.Add(timeout)
	got := claimAll(t, s, "b", timeout, now)
	if len(got) != 1 || got[0].DeliveryID != job.DeliveryID {
		t.Fatalf("b claimed %+v after a's claim lapsed, want the job", got)
	}
	// b holds it now: a's renewal must not steal it back.
	if err := s.Extend(context.Background(), "a", got, now); err != nil {
		t.Fatal(err)
	}
	now = now.Add(timeout / 2)
	if err := s.Extend(context.Background(), "b", got, now); err != nil {
		t.Fatal(err)
	}
	if again := claimAll(t, s, "c", timeout, now.Add(timeout/2)); len(again) != 0 {
		t.Fatalf("c took over a job b had renewed: %+v", again)
	}
	// b's renewal counts from when it was made.
	again := claimAll(t, s, "c", timeout, now.Add(timeout))
	if len(again) != 1 || again[0].DeliveryID != job.DeliveryID {
		t.Fatalf("c claimed %+v once b's renewal lapsed, want the job", again)
	}
}

// testQueueNewBeforeLapsed: Claim hands out jobs never claimed before
// lapsed claims.
func testQueueNewBeforeLapsed(t *testing.T, s QueueStore) {
	const timeout = time.Minute
	now := codeT0
	lapsed := issueWithJob(t, s, now)
	if got := claimAll(t, s, "a", timeout, now); len(got) != 1 {
		t.Fatalf("a claimed %d jobs", len(got))
	}
	now = now.Add(2 * timeout)
	fresh := issueWithJob(t, s, now)
	// Redis on a cluster claims up to n per partition: more may come,
	// but the new one first.
	got, err := s.Claim(context.Background(), "b", 1, timeout, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 || got[0].DeliveryID != fresh.DeliveryID {
		t.Fatalf("b claimed %+v, want the new job first", got)
	}
	seen := map[string]bool{}
	for _, j := range append(got, claimAll(t, s, "b", timeout, now)...) {
		seen[j.DeliveryID] = true
	}
	if len(seen) != 2 || !seen[lapsed.DeliveryID] {
		t.Fatalf("b claimed %v, want the lapsed job too", seen)
	}
}

func testQueueExtendKeepsClaim(t *testing.T, s QueueStore) {
	const timeout = time.Minute
	now := codeT0
	issueWithJob(t, s, now)
	held := claimAll(t, s, "a", timeout, now)
	if len(held) != 1 {
		t.Fatalf("a claimed %d jobs", len(held))
	}
	for range 4 { // 96 s in all, longer than the timeout
		now = now.Add(timeout * 2 / 5)
		if err := s.Extend(context.Background(), "a", held, now); err != nil {
			t.Fatal(err)
		}
		if got := claimAll(t, s, "b", timeout, now.Add(timeout-time.Microsecond)); len(got) != 0 {
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
		now := codeT0
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
		if got := claimAll(t, s, "b", time.Millisecond, now.Add(time.Minute)); len(got) != 0 {
			t.Fatalf("%s: a finished job was claimed again: %+v", status, got)
		}
	}
}

// testQueueFinishAll: jobs of several partitions finished in one call,
// each with its own status and attempts, are all gone; finishing them
// again (a retried call) changes nothing; an empty call is no error.
func testQueueFinishAll(t *testing.T, s QueueStore) {
	ctx := context.Background()
	now := codeT0
	statuses := []string{authd.DeliverySent, authd.DeliveryFailed, authd.DeliverySuperseded, authd.DeliverySent, authd.DeliverySent}
	ids := map[string]int{} // delivery id -> its index in statuses
	for i := range statuses {
		ids[issueWithJob(t, s, now).DeliveryID] = i
	}
	held := claimAll(t, s, "a", time.Minute, now)
	if len(held) != len(statuses) {
		t.Fatalf("claimed %d jobs, want %d", len(held), len(statuses))
	}
	var done []authd.FinishedJob
	for _, j := range held {
		i := ids[j.DeliveryID]
		done = append(done, authd.FinishedJob{Job: j, Status: statuses[i], Attempts: i + 1})
	}
	if err := s.FinishAll(ctx, done, now); err != nil {
		t.Fatal(err)
	}
	if err := s.FinishAll(ctx, done, now.Add(time.Second)); err != nil {
		t.Fatalf("FinishAll again: %v", err)
	}
	if err := s.FinishAll(ctx, nil, now); err != nil {
		t.Fatalf("FinishAll of nothing: %v", err)
	}
	for id, i := range ids {
		wantDelivery(t, s, id, now, statuses[i], i+1)
	}
	if got := claimAll(t, s, "b", time.Millisecond, now.Add(time.Minute)); len(got) != 0 {
		t.Fatalf("finished jobs were claimed again: %+v", got)
	}
}

// testQueueFinishedStatusStays: a consumer whose lapsed claim another one
// took over and finished does not overwrite the final status.
func testQueueFinishedStatusStays(t *testing.T, s QueueStore) {
	ctx := context.Background()
	now := codeT0
	job := issueWithJob(t, s, now)
	slow := claimAll(t, s, "a", time.Minute, now)
	if len(slow) != 1 {
		t.Fatalf("a claimed %d jobs", len(slow))
	}
	now = now.Add(time.Minute)
	fast := claimAll(t, s, "b", time.Minute, now)
	if len(fast) != 1 {
		t.Fatalf("b claimed %d jobs after a's claim lapsed", len(fast))
	}
	if err := s.Finish(ctx, fast[0], authd.DeliverySent, 1, now); err != nil {
		t.Fatal(err)
	}
	if err := s.Retrying(ctx, slow[0], 1, now.Add(time.Second), now); err != nil {
		t.Fatal(err)
	}
	wantDelivery(t, s, job.DeliveryID, now, authd.DeliverySent, 1)
	if err := s.Finish(ctx, slow[0], authd.DeliveryFailed, 2, now); err != nil {
		t.Fatal(err)
	}
	wantDelivery(t, s, job.DeliveryID, now, authd.DeliverySent, 1)
}

func testQueueStatusLivesWithCode(t *testing.T, s QueueStore) {
	now := codeT0
	job := issueWithJob(t, s, now)
	wantDelivery(t, s, job.DeliveryID, job.ExpiresAt.Add(-time.Microsecond), authd.DeliveryQueued, 0)
	wantNoDelivery(t, s, job.DeliveryID, job.ExpiresAt)
}

func testQueueUnknownDelivery(t *testing.T, s QueueStore) {
	wantNoDelivery(t, s, newDeliveryID(t, newCodeAddress(t)), codeT0)
	// Not a delivery id at all.
	for _, id := range []string{"", "x", "0123456789ABCDEF0123456789ABCDEF", "0123456789abcdef0123456789abcdef0"} {
		wantNoDelivery(t, s, id, codeT0)
	}
}

func testQueueManyJobsEachOnce(t *testing.T, s QueueStore) {
	now := codeT0
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
	now := codeT0
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
// finished was queued, claimed or not, by the caller's clock at issue;
// zero once the queue is empty.
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
	now := codeT0
	first := issueWithJob(t, s, now)
	if at := oldest(); !at.Equal(now) {
		t.Fatalf("OldestQueued = %v, want %v", at, now)
	}
	later := now.Add(time.Second)
	issueWithJob(t, s, later)
	// Claimed (in flight, or waiting to retry) is not finished.
	held := claimAll(t, s, "a", time.Minute, later)
	if len(held) != 2 {
		t.Fatalf("claimed %d jobs, want 2", len(held))
	}
	for _, j := range held {
		if !j.QueuedAt.Equal(now) && !j.QueuedAt.Equal(later) {
			t.Errorf("QueuedAt = %v, want %v or %v", j.QueuedAt, now, later)
		}
	}
	if at := oldest(); !at.Equal(now) {
		t.Fatalf("with both claimed: OldestQueued = %v, want still %v", at, now)
	}
	if held[0].DeliveryID != first.DeliveryID {
		held[0], held[1] = held[1], held[0]
	}
	if err := s.Finish(ctx, held[0], authd.DeliverySent, 1, later); err != nil {
		t.Fatal(err)
	}
	if at := oldest(); !at.Equal(later) {
		t.Fatalf("one job left: OldestQueued = %v, want its time %v", at, later)
	}
	if err := s.Finish(ctx, held[1], authd.DeliverySent, 1, later); err != nil {
		t.Fatal(err)
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
	now := codeT0
	a := newCodeAddress(t)
	claimed := issueFor(t, s, a, now, 0)
	held := claimAll(t, s, "a", time.Minute, now)
	if len(held) != 1 {
		t.Fatalf("claimed %d jobs, want 1", len(held))
	}
	waiting := issueFor(t, s, a, now, time.Minute) // replaces the first code
	other := issueWithJob(t, s, now)
	if _, err := s.EraseAddress(ctx, addr(a)); err != nil {
		t.Fatalf("EraseAddress: %v", err)
	}
	wantNoDelivery(t, s, claimed.DeliveryID, now)
	wantNoDelivery(t, s, waiting.DeliveryID, now)
	wantDelivery(t, s, other.DeliveryID, now, authd.DeliveryQueued, 0)
	wantCodeCurrent(t, s, a, "shop", waiting.CodeID, now, false)
	// a, still holding the erased job, does not bring its status back.
	if err := s.Retrying(ctx, held[0], 1, now.Add(time.Second), now); err != nil {
		t.Fatalf("Retrying an erased job: %v", err)
	}
	wantNoDelivery(t, s, claimed.DeliveryID, now)
	if err := s.Finish(ctx, held[0], authd.DeliverySent, 1, now); err != nil {
		t.Fatalf("Finish of an erased job: %v", err)
	}
	wantNoDelivery(t, s, claimed.DeliveryID, now)
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
	if _, err := s.EraseAddress(ctx, addr(a)); err != nil {
		t.Fatalf("EraseAddress again: %v", err)
	}
}
