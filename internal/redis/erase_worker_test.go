package redis_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/delivery"
	"github.com/authd/authd/internal/mailer"
	"github.com/authd/authd/internal/redis"
	"github.com/authd/authd/internal/smtptest"
)

// TestEraseAddressStopsQueuedMail: a mail queued before its address is
// erased is not sent after, though its resend cooldown (which spares the
// worker the code check) still runs; the streams' consumer group does not
// exist yet when the erasure comes (no worker has read them).
func TestEraseAddressStopsQueuedMail(t *testing.T) {
	for _, m := range allModes {
		t.Run(m.name, func(t *testing.T) { testEraseAddressStopsQueuedMail(t, m) })
	}
}

func testEraseAddressStopsQueuedMail(t *testing.T, m mode) {
	ctx := context.Background()
	s, _ := m.store(t, redis.Options{})
	sealer, err := delivery.NewSealer([]byte("0123456789abcdef0123456789abcdef"), nil)
	if err != nil {
		t.Fatal(err)
	}
	issue := func(address, to, code string) *authd.MailJob {
		t.Helper()
		now := time.Now()
		job := &authd.MailJob{
			DeliveryID: newDeliveryID(t, address), Address: addrOf(address), Project: "shop",
			CodeID: "c-" + address, ExpiresAt: now.Add(time.Minute), ReplaceableAt: now.Add(time.Minute),
		}
		job.Sealed, err = sealer.Seal(job.DeliveryID, authd.Message{To: to, Code: code, ExpiresAt: job.ExpiresAt})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.IssueCode(ctx, authd.IssueRequest{
			Address: addrOf(address), Project: "shop", ClientIP: "192.0.2.1", Now: now,
			Record: authd.CodeRecord{ID: job.CodeID, Hash: []byte("h"), ExpiresAt: job.ExpiresAt}, Job: job,
			ResendCooldown: time.Minute,
		}); err != nil {
			t.Fatal(err)
		}
		return job
	}
	erased := issue("addrE", "er@example.com", "121212")
	if _, err := s.EraseAddress(ctx, addrOf("addrE")); err != nil {
		t.Fatal(err)
	}
	srv := smtptest.Start(t)
	sender, err := mailer.NewSMTPSender(mailer.Config{Host: srv.Host(), Port: srv.Port(), From: "authd@example.com", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sender.Close() })
	w := delivery.NewWorker(s, s.IsCurrent, sealer, sender, delivery.WorkerOptions{
		Workers: 1, PollInterval: 10 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	w.Start()
	t.Cleanup(func() { w.Close(context.Background()) })
	kept := issue("addrK", "kept@example.com", "343434")
	// A job leaves the queue once finished (the streams are not read in
	// queue order): once it is empty, the erased mail would have been
	// sent too.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		at, err := s.OldestQueued(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if at.IsZero() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("jobs still queued: %+v", w.Stats())
		}
	}
	if d, err := s.Delivery(ctx, kept.DeliveryID, time.Now()); err != nil || d.Status != authd.DeliverySent {
		t.Fatalf("the kept address's mail: %+v %v", d, err)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 || smtptest.CodeFrom(msgs[0]) != "343434" {
		t.Fatalf("%d messages, want only the kept address's", len(msgs))
	}
	if st := w.Stats(); st.Claimed != 1 {
		t.Errorf("stats %+v: the erased job was claimed", st)
	}
	if _, err := s.Delivery(ctx, erased.DeliveryID, time.Now()); authd.ErrorCode(err) != authd.ENOTFOUND {
		t.Errorf("the erased mail's status: %v, want ENOTFOUND", err)
	}
}
