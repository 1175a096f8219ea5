package delivery_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/delivery"
	"github.com/authd/authd/internal/smtptest"
)

// issueCooled is issue with a resend cooldown: the worker's first attempt
// skips the currency check until it ends, as send-code's mails do.
func (r *rig) issueCooled(t *testing.T, to, code string, ttl, cooldown time.Duration) *authd.MailJob {
	t.Helper()
	now := time.Now()
	m := message(to, code)
	m.ExpiresAt = now.Add(ttl)
	job := &authd.MailJob{
		DeliveryID: newID(), Address: authd.Address{Key: "k:" + to, Mailbox: "k:" + to}, Project: "shop", CodeID: newID(),
		ExpiresAt: m.ExpiresAt, ReplaceableAt: now.Add(cooldown),
	}
	var err error
	if job.Sealed, err = r.sealer.Seal(job.DeliveryID, m); err != nil {
		t.Fatal(err)
	}
	_, err = r.store.IssueCode(context.Background(), authd.IssueRequest{
		Address: job.Address, Project: "shop", ClientIP: "192.0.2.1", Now: now,
		Record: authd.CodeRecord{ID: job.CodeID, Hash: []byte("h"), ExpiresAt: job.ExpiresAt}, Job: job,
		ResendCooldown: cooldown,
	})
	if err != nil {
		t.Fatal(err)
	}
	return job
}

// TestWorkerErasedAddressNotMailed: a mail queued before its address is
// erased is not sent after, though its resend cooldown (which spares the
// worker the code check) still runs.
func TestWorkerErasedAddressNotMailed(t *testing.T) {
	srv := smtptest.Start(t)
	r := newRig(t)
	erased := r.issueCooled(t, "er@example.com", "121212", time.Minute, time.Minute)
	if _, err := r.store.EraseAddress(context.Background(), erased.Address); err != nil {
		t.Fatal(err)
	}
	if _, err := r.store.Delivery(context.Background(), erased.DeliveryID, time.Now()); authd.ErrorCode(err) != authd.ENOTFOUND {
		t.Fatalf("the erased mail's status: %v, want ENOTFOUND", err)
	}
	// One worker takes jobs in queue order: once the later mail is sent,
	// the erased one would have been too.
	w := r.worker(t, srv, func(o *delivery.WorkerOptions) { o.Workers = 1 })
	later := r.issueCooled(t, "kept@example.com", "343434", time.Minute, time.Minute)
	r.wantStatus(t, later.DeliveryID, authd.DeliverySent, 5*time.Second)
	msgs := srv.Messages()
	if len(msgs) != 1 || smtptest.CodeFrom(msgs[0]) != "343434" {
		t.Fatalf("%d messages, want only the kept address's", len(msgs))
	}
	if st := w.Stats(); st.Claimed != 1 {
		t.Errorf("stats %+v: the erased job was claimed", st)
	}
}

// TestWorkerRetryAfterEraseNotSent: a mail the worker already holds,
// waiting to retry, when its address is erased is not retried: retries
// check the code even within the resend cooldown.
func TestWorkerRetryAfterEraseNotSent(t *testing.T) {
	r := newRig(t)
	var job atomic.Pointer[authd.MailJob]
	srv := smtptest.Start(t, smtptest.WithReply(func(n int) *smtp.SMTPError {
		if n == 1 {
			// The erasure lands while the first attempt is under way.
			if _, err := r.store.EraseAddress(context.Background(), job.Load().Address); err != nil {
				t.Error(err)
			}
			return reply(451)
		}
		return nil
	}))
	w := r.worker(t, srv, nil)
	job.Store(r.issueCooled(t, "re@example.com", "565656", time.Minute, time.Minute))
	for deadline := time.Now().Add(5 * time.Second); w.Stats().DroppedSuperseded+w.Stats().Sent == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the erased mail was neither dropped nor sent: %+v, %d attempts", w.Stats(), srv.Attempts())
		}
	}
	if n := len(srv.Messages()); n != 0 || srv.Attempts() != 1 {
		t.Fatalf("%d messages after %d attempts, want none after 1", n, srv.Attempts())
	}
	if r.store.QueueLen() != 0 {
		t.Errorf("%d jobs left in the queue", r.store.QueueLen())
	}
}

// TestWorkerQueueAge: the queue age is the wait of the oldest job not yet
// delivered, asked at the time: it grows while no worker claims anything,
// and drops to 0 once the queue is empty.
func TestWorkerQueueAge(t *testing.T) {
	srv := smtptest.Start(t)
	r := newRig(t)
	ctx := context.Background()
	var clock atomic.Int64 // offset from the wall clock
	now := func() time.Time { return time.Now().Add(time.Duration(clock.Load())) }
	w := delivery.NewWorker(r.store, r.store.IsCurrent, r.sealer, newSender(t, srv, nil), delivery.WorkerOptions{
		Workers: 1, PollInterval: 10 * time.Millisecond, Now: now,
	})
	t.Cleanup(func() { w.Close(context.Background()) })
	if age, err := w.QueueAge(ctx); err != nil || age != 0 {
		t.Fatalf("empty queue: age %v %v, want 0", age, err)
	}
	job := r.issue(t, "ag@example.com", "787878", time.Hour)
	clock.Store(int64(5 * time.Minute))
	a1, err := w.QueueAge(ctx)
	if err != nil || a1 < 5*time.Minute || a1 > 5*time.Minute+5*time.Second {
		t.Fatalf("age %v %v, want about 5m", a1, err)
	}
	clock.Store(int64(9 * time.Minute))
	if a2, err := w.QueueAge(ctx); err != nil || a2 < a1+4*time.Minute {
		t.Fatalf("age %v %v after 4 more minutes, was %v: it must grow while nothing is claimed", a2, err, a1)
	}
	clock.Store(0)
	w.Start()
	r.wantStatus(t, job.DeliveryID, authd.DeliverySent, 5*time.Second)
	if age, err := w.QueueAge(ctx); err != nil || age != 0 {
		t.Fatalf("after delivery: age %v %v, want 0", age, err)
	}
}
