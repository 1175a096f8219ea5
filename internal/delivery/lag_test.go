package delivery_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/delivery"
	"github.com/authd/authd/internal/mailer"
	"github.com/authd/authd/internal/smtptest"
)

// The mail lag (Worker.Lag, Behind): what would hold up a new code's mail
// counts, a recipient's own refusal does not. The backlog of a slow
// server is shown end to end (cmd/authd's TestMailBackpressure).

// A greylisting server answers 451 to one recipient's RCPT TO for as long
// as the test lasts: the queue's age (the metric) grows with that mail's
// retries, the lag does not, and send-code is never held back for it.
func TestLagLeavesOutRecipientRefusals(t *testing.T) {
	srv := smtptest.Start(t, smtptest.WithCommandReply(smtptest.CmdRcpt, func(_ int, to string) *smtp.SMTPError {
		if strings.HasPrefix(to, "grey@") {
			return reply(451)
		}
		return nil
	}))
	r := newRig(t)
	w := r.worker(t, srv, func(o *delivery.WorkerOptions) { o.MaxLag, o.MaxAttempts = 300*time.Millisecond, 1000 })
	r.issue(t, "grey@example.com", "111111", time.Minute)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if w.Behind() > 0 || w.Lag() > 300*time.Millisecond {
			t.Fatalf("lag %v (behind by %v) for one greylisted mail, retried %d times", w.Lag(), w.Behind(), srv.Commands(smtptest.CmdRcpt))
		}
		age, err := w.QueueAge(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if age > 1500*time.Millisecond && srv.Commands(smtptest.CmdRcpt) >= 5 {
			break // the metric's age is well past MaxLag
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue age %v after %d tries", age, srv.Commands(smtptest.CmdRcpt))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Mail for anyone else goes out as ever, and the lag stays low.
	other := r.issue(t, "ana@example.com", "222222", time.Minute)
	r.wantStatus(t, other.DeliveryID, "sent", 5*time.Second)
	if w.Behind() > 0 {
		t.Fatalf("behind by %v", w.Behind())
	}
	if logs := r.logs.String(); strings.Contains(logs, "mail delivery is behind") {
		t.Errorf("the greylisted mail was logged as a lag:\n%s", logs)
	}
}

// A relay that stalls at RCPT TO for one recipient (a callout to a tarpit)
// past the sender's network timeout: that mail's retries do not count in
// the lag once its first attempt has failed, so one address cannot make
// everyone's send-code 503; the attempt in flight counts only while it
// lasts, under the send timeout. Mail for others goes out meanwhile.
func TestLagLeavesOutRecipientStalls(t *testing.T) {
	srv := smtptest.Start(t, smtptest.WithCommandReply(smtptest.CmdRcpt, func(_ int, to string) *smtp.SMTPError {
		if strings.HasPrefix(to, "tarpit@") {
			time.Sleep(900 * time.Millisecond)
		}
		return nil
	}))
	r := newRig(t)
	const maxLag = 600 * time.Millisecond
	w := r.workerWith(t, newSender(t, srv, func(c *mailer.Config) { c.Timeout = 300 * time.Millisecond }), func(o *delivery.WorkerOptions) {
		o.MaxLag, o.MaxAttempts, o.SendTimeout = maxLag, 1000, 400*time.Millisecond
	})
	r.issue(t, "tarpit@example.com", "333333", time.Minute)
	other := r.issue(t, "ana@example.com", "444444", time.Minute)
	r.wantStatus(t, other.DeliveryID, "sent", 5*time.Second)
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if w.Behind() > 0 {
			t.Fatalf("behind by %v for one recipient's stalls (%d tries at RCPT)", w.Behind(), srv.Commands(smtptest.CmdRcpt))
		}
	}
	if n := srv.Commands(smtptest.CmdRcpt); n < 4 {
		t.Fatalf("%d tries at RCPT TO in 3 s: the stalled mail was not retried", n)
	}
	if w.Check(context.Background()) != nil {
		t.Error("one recipient's stalls made mail degraded")
	}
}

// An SMTP server that refuses connections: the mail waiting for it ages,
// the lag with it, and once over MaxLag the worker is Behind and logs one
// WARN line — again only after a minute; the server back, the mail goes,
// the lag falls to 0 and one INFO line says so.
func TestLagOfAnOutage(t *testing.T) {
	down := smtptest.Start(t)
	addr := down.Addr()
	r := newRig(t)
	sender := newSender(t, down, nil)
	down.Close() // connections refused from now on
	var skew atomic.Int64
	w := r.workerWith(t, sender, func(o *delivery.WorkerOptions) {
		o.MaxLag = 500 * time.Millisecond
		o.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	})
	job := r.issue(t, "bo@example.com", "333333", 5*time.Minute)
	r.logs.waitFor(t, "mail delivery is behind", 1, 10*time.Second)
	if w.Lag() <= 500*time.Millisecond || w.Behind() <= 0 {
		t.Fatalf("lag %v, behind %v: want over MaxLag", w.Lag(), w.Behind())
	}
	time.Sleep(600 * time.Millisecond) // measured twice more, still over
	if n := strings.Count(r.logs.String(), "mail delivery is behind"); n != 1 {
		t.Fatalf("%d WARN lines within a second, want 1", n)
	}
	skew.Store(int64(61 * time.Second)) // a minute later, still behind
	r.logs.waitFor(t, "mail delivery is behind", 2, 5*time.Second)

	up := smtptest.Start(t, smtptest.WithAddr(addr))
	r.wantStatus(t, job.DeliveryID, "sent", 30*time.Second)
	r.logs.waitFor(t, "mail delivery caught up", 1, 5*time.Second)
	if w.Lag() != 0 || w.Behind() != 0 {
		t.Errorf("lag %v, behind %v once the mail is sent: want 0", w.Lag(), w.Behind())
	}
	if len(up.Messages()) != 1 {
		t.Errorf("%d messages, want 1", len(up.Messages()))
	}
}

// askedQueue counts what the worker asks the queue.
type askedQueue struct {
	authd.MailQueue
	asked atomic.Int64
}

func (q *askedQueue) OldestQueued(ctx context.Context) (time.Time, error) {
	q.asked.Add(1)
	return q.MailQueue.OldestQueued(ctx)
}

func (q *askedQueue) Delivery(ctx context.Context, id string, now time.Time) (authd.Delivery, error) {
	q.asked.Add(1)
	return q.MailQueue.Delivery(ctx, id, now)
}

// send-code asks Behind every time: it is read from memory, and asks the
// queue nothing, however often.
func TestLagAsksTheQueueNothing(t *testing.T) {
	srv := smtptest.Start(t, smtptest.WithDelay(300*time.Millisecond))
	r := newRig(t)
	q := &askedQueue{MailQueue: r.store}
	w := delivery.NewWorker(q, r.store.IsCurrent, r.sealer, newSender(t, srv, nil),
		delivery.WorkerOptions{Workers: 1, MaxLag: 100 * time.Millisecond, PollInterval: 10 * time.Millisecond})
	w.Start()
	t.Cleanup(func() { w.Close(context.Background()) })
	r.issue(t, "ana@example.com", "111111", time.Minute)
	deadline := time.Now().Add(5 * time.Second)
	for w.Behind() == 0 { // in flight 300 ms, over 100 ms: behind
		if time.Now().After(deadline) {
			t.Fatalf("never behind; lag %v", w.Lag())
		}
		time.Sleep(10 * time.Millisecond)
	}
	before := q.asked.Load()
	for range 10000 {
		w.Behind()
	}
	if n := q.asked.Load() - before; n != 0 {
		t.Errorf("10000 reads of the lag asked the queue %d times, want 0", n)
	}
}
