package delivery

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/inmem"
)

// countingSender counts the sends started; they all succeed.
type countingSender struct{ n atomic.Int32 }

func (c *countingSender) Send(ctx context.Context, m authd.Message) error {
	c.n.Add(1)
	return nil
}

// stopRig is a worker, not started, holding one claimed job, as a worker
// goroutine would hold it when it takes it from the fetcher.
func stopRig(t *testing.T, current CurrentFunc) (*Worker, *inmem.CodeStore, *countingSender, *heldJob) {
	t.Helper()
	store := inmem.NewCodeStore()
	sealer, err := NewSealer([]byte("0123456789abcdef0123456789abcdef"), nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	job := &authd.MailJob{
		DeliveryID: "0123456789abcdef0123456789abcdef", Address: authd.Address{Key: "k:st", Mailbox: "k:st"}, Project: "shop", CodeID: "c1",
		ExpiresAt: now.Add(time.Minute), ReplaceableAt: now, // checked: current is called
	}
	job.Sealed, err = sealer.Seal(job.DeliveryID, authd.Message{To: "st@example.com", Code: "246810", ExpiresAt: job.ExpiresAt})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := store.IssueCode(ctx, authd.IssueRequest{
		Address: job.Address, Project: "shop", ClientIP: "192.0.2.1", Now: now,
		Record: authd.CodeRecord{ID: job.CodeID, Hash: []byte("h"), ExpiresAt: job.ExpiresAt}, Job: job,
	}); err != nil {
		t.Fatal(err)
	}
	sender := &countingSender{}
	if current == nil {
		current = store.IsCurrent
	}
	w := NewWorker(store, current, sealer, sender, WorkerOptions{
		Workers: 1, ClaimTimeout: time.Hour, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	jobs, err := store.Claim(ctx, w.opts.Consumer, 1, time.Hour, now)
	if err != nil || len(jobs) != 1 {
		t.Fatalf("claim: %v %v", jobs, err)
	}
	h := &heldJob{job: jobs[0]}
	w.held[h.job.Ref] = h
	return w, store, sender, h
}

// afterClose checks that no send started, and that Close released the job
// still held: another instance takes it at once, not after the (hour-long)
// claim timeout.
func afterClose(t *testing.T, w *Worker, store *inmem.CodeStore, sender *countingSender, h *heldJob) {
	t.Helper()
	if n := sender.n.Load(); n != 0 {
		t.Fatalf("%d sends started after Close", n)
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if d, err := store.Delivery(ctx, h.job.DeliveryID, time.Now()); err != nil || d.Status != authd.DeliveryQueued {
		t.Fatalf("status %+v %v, want still queued", d, err)
	}
	jobs, err := store.Claim(ctx, "next-instance", 1, time.Hour, time.Now())
	if err != nil || len(jobs) != 1 || jobs[0].DeliveryID != h.job.DeliveryID {
		t.Fatalf("the next instance claims %v %v, want the released job", jobs, err)
	}
}

// TestAttemptAfterCloseStartsNothing: a worker that takes a job after
// Close (its select may pick the ready job over stop, for a retry handed
// back by its timer) makes no attempt.
func TestAttemptAfterCloseStartsNothing(t *testing.T) {
	w, store, sender, h := stopRig(t, nil)
	w.stopOnce.Do(func() { close(w.stop) }) // Close's first step
	w.attempt(h)
	afterClose(t, w, store, sender, h)
}

// TestCloseDuringCheckStartsNoSend: Close coming while the worker checks
// the code's currency stops the attempt before its send starts.
func TestCloseDuringCheckStartsNoSend(t *testing.T) {
	var w *Worker
	current := func(ctx context.Context, address authd.Address, project, id string, now time.Time) (bool, error) {
		w.stopOnce.Do(func() { close(w.stop) }) // Close's first step, meanwhile
		return true, nil
	}
	w, store, sender, h := stopRig(t, current)
	w.attempt(h)
	afterClose(t, w, store, sender, h)
}

func TestBackoff(t *testing.T) {
	for _, tc := range []struct {
		attempt  int
		min, max time.Duration
	}{
		{1, 50 * time.Millisecond, 100 * time.Millisecond},
		{2, 100 * time.Millisecond, 200 * time.Millisecond},
		{3, 200 * time.Millisecond, 400 * time.Millisecond},
		{5, 500 * time.Millisecond, time.Second},
		{40, 500 * time.Millisecond, time.Second},
	} {
		// The defaults: the first retry within 2 s, no wait over 30 s.
		if d := backoff(2*time.Second, 30*time.Second, 1); d > 2*time.Second {
			t.Fatalf("first retry after %v", d)
		}
		if d := backoff(2*time.Second, 30*time.Second, 50); d > 30*time.Second {
			t.Fatalf("retry after %v", d)
		}
		for range 100 {
			if d := backoff(100*time.Millisecond, time.Second, tc.attempt); d < tc.min || d > tc.max {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v]", tc.attempt, d, tc.min, tc.max)
			}
		}
	}
}
