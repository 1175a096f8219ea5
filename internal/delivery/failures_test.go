package delivery_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/delivery"
	"github.com/authd/authd/internal/mailer"
	"github.com/authd/authd/internal/smtptest"
)

// How the worker meets failures: retries bounded when the server answers,
// outages waited out, session failures made visible. Against the real SMTP
// sender and server.

// watchSender passes sends to the real sender and reports each result.
type watchSender struct {
	authd.Sender
	results chan error
}

func watch(s authd.Sender) *watchSender {
	return &watchSender{Sender: s, results: make(chan error, 1000)}
}

func (w *watchSender) Send(ctx context.Context, m authd.Message) error {
	err := w.Sender.Send(ctx, m)
	select {
	case w.results <- err:
	default: // nobody is counting any more
	}
	return err
}

// next returns the result of the next send, or fails t after timeout.
func (w *watchSender) next(t *testing.T, timeout time.Duration) error {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case err := <-w.results:
		return err
	case <-timer.C:
		t.Fatalf("no send within %v", timeout)
		return nil
	}
}

// senderTo is the real SMTP transport to host:port, plain SMTP unless edit
// says otherwise.
func senderTo(t *testing.T, host string, port int, edit func(*mailer.Config)) *mailer.SMTPSender {
	t.Helper()
	cfg := mailer.Config{Host: host, Port: port, From: "info@example.com", Timeout: 5 * time.Second, HELO: "authd.test"}
	if edit != nil {
		edit(&cfg)
	}
	s, err := mailer.NewSMTPSender(cfg)
	if err != nil {
		t.Fatalf("NewSMTPSender: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// metric returns the value of the series name{outcome} (outcome "" for a
// series without labels) the worker's collector reports.
func metric(t *testing.T, w *delivery.Worker, name, outcome string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(w.Collector())
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			var label string
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" {
					label = l.GetValue()
				}
			}
			if label != outcome {
				continue
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no series %s{outcome=%q}", name, outcome)
	return 0
}

func closeWorker(t *testing.T, w *delivery.Worker) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// TestWorkerGivesUpAfterMaxAttempts: a recipient whose server answers 451
// every time is tried MaxAttempts times, then given up (failed, counted,
// one WARN line), not retried until its code expires.
func TestWorkerGivesUpAfterMaxAttempts(t *testing.T) {
	srv := smtptest.Start(t, smtptest.WithCommandReply(smtptest.CmdRcpt, func(int, string) *smtp.SMTPError { return reply(451) }))
	r := newRig(t)
	w := r.worker(t, srv, func(o *delivery.WorkerOptions) {
		o.MaxAttempts, o.Workers = 3, 1
		o.Backoff, o.MaxBackoff = 5*time.Millisecond, 10*time.Millisecond
	})
	job := r.issue(t, "busy@example.com", "313131", time.Hour)
	r.logs.waitFor(t, "mail given up", 1, 10*time.Second)
	// Close waits for the worker's goroutines: whatever it would still
	// send would have been sent, and the counts below are final.
	closeWorker(t, w)

	if n := srv.Commands(smtptest.CmdRcpt); n != 3 {
		t.Errorf("%d RCPT TO, want 3 (MaxAttempts)", n)
	}
	d, err := r.store.Delivery(context.Background(), job.DeliveryID, time.Now())
	if err != nil || d.Status != authd.DeliveryFailed || d.Attempts != 3 {
		t.Errorf("delivery %+v %v, want failed after 3 attempts", d, err)
	}
	st := w.Stats()
	if st.FailedAttempts != 1 || st.FailedPermanent != 0 || st.DroppedExpired != 0 || st.Retried != 2 || st.Held != 0 {
		t.Errorf("stats %+v", st)
	}
	if r.store.QueueLen() != 0 {
		t.Error("the job given up is still queued")
	}
	if v := metric(t, w, "authd_mail_jobs_total", "failed_attempts"); v != 1 {
		t.Errorf(`authd_mail_jobs_total{outcome="failed_attempts"} = %v, want 1`, v)
	}
	logs := r.logs.String()
	if n := strings.Count(logs, "level=WARN msg=\"mail given up"); n != 1 {
		t.Errorf("%d WARN lines for the mail given up, want 1:\n%s", n, logs)
	}
	if w.Degraded() || strings.Contains(logs, "level=ERROR") {
		t.Errorf("a recipient's 451 made mail degraded:\n%s", logs)
	}
	if strings.Contains(logs, "313131") || strings.Contains(logs, "busy@") {
		t.Errorf("the log holds the code or the address:\n%s", logs)
	}
}

// TestWorkerOutageDoesNotUseAttempts: while the server is down (nothing
// listens on its port) attempts are not refusals: the mail is retried past
// MaxAttempts and delivered once the server is back on the same port. The
// outage makes mail degraded, with one ERROR line; the delivery clears it,
// with one INFO line.
func TestWorkerOutageDoesNotUseAttempts(t *testing.T) {
	first := smtptest.Start(t)
	addr, host, port := first.Addr(), first.Host(), first.Port()
	first.Close()
	sender := watch(senderTo(t, host, port, nil))
	r := newRig(t)
	w := r.workerWith(t, sender, func(o *delivery.WorkerOptions) {
		o.MaxAttempts, o.Workers = 2, 1
		o.Backoff, o.MaxBackoff = 5*time.Millisecond, 20*time.Millisecond
	})
	job := r.issue(t, "wait@example.com", "474747", time.Hour)
	// Seven refused connections: far past MaxAttempts, and (the worker
	// settles each before its next try) six settled, past DegradedAfter.
	for i := range 7 {
		err := sender.next(t, 10*time.Second)
		var se *authd.SendError
		if !errors.As(err, &se) || !se.Temporary || se.Reply || !se.Session {
			t.Fatalf("attempt %d: %v (%+v), want temporary, unanswered, the session's", i+1, err, se)
		}
	}
	if !w.Degraded() {
		t.Error("not degraded after six refused connections")
	}
	if err := w.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "SMTP_HOST") {
		t.Errorf("Check = %v, want an error naming SMTP_HOST", err)
	}

	back := smtptest.Start(t, smtptest.WithAddr(addr))
	if m := back.Wait(t, 1, 10*time.Second)[0]; smtptest.CodeFrom(m) != "474747" {
		t.Errorf("delivered code %q", smtptest.CodeFrom(m))
	}
	r.logs.waitFor(t, "mail sent", 1, 5*time.Second)
	closeWorker(t, w)

	d, err := r.store.Delivery(context.Background(), job.DeliveryID, time.Now())
	if err != nil || d.Status != authd.DeliverySent || d.Attempts < 8 {
		t.Errorf("delivery %+v %v, want sent after 8 or more attempts", d, err)
	}
	if st := w.Stats(); st.Sent != 1 || st.FailedAttempts != 0 || st.DroppedExpired != 0 {
		t.Errorf("stats %+v", st)
	}
	if w.Degraded() || w.Check(context.Background()) != nil {
		t.Error("still degraded after a delivery")
	}
	logs := r.logs.String()
	if n := strings.Count(logs, "level=ERROR msg=\"mail delivery failing: "); n != 1 {
		t.Errorf("%d ERROR lines for the outage, want 1:\n%s", n, logs)
	}
	if !strings.Contains(logs, "connection refused; check SMTP_HOST, SMTP_PORT") {
		t.Errorf("the ERROR line does not name the cause and the settings:\n%s", logs)
	}
	if n := strings.Count(logs, "level=INFO msg=\"mail delivery works again\""); n != 1 {
		t.Errorf("%d recovery lines, want 1:\n%s", n, logs)
	}
}

// TestWorkerSTARTTLSMismatchDegraded: SMTP_TLS=true against a server
// without STARTTLS refuses every mail for good. That is degraded (after
// DegradedAfter of them), said once at ERROR with the setting to check,
// and readiness fails, though no failure was temporary.
func TestWorkerSTARTTLSMismatchDegraded(t *testing.T) {
	srv := smtptest.Start(t) // plain SMTP only
	r := newRig(t)
	w := r.workerWith(t, senderTo(t, srv.Host(), srv.Port(), func(c *mailer.Config) { c.TLS = true }),
		func(o *delivery.WorkerOptions) { o.Workers = 1 })
	for i := range 8 {
		r.issue(t, fmt.Sprintf("tls%d@example.com", i), fmt.Sprintf("90000%d", i), time.Hour)
	}
	r.logs.waitFor(t, "mail refused for good", 8, 10*time.Second)

	if !w.Degraded() {
		t.Fatal("not degraded after 8 mails refused at STARTTLS")
	}
	if err := w.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "check SMTP_TLS") {
		t.Errorf("Check = %v, want an error naming SMTP_TLS", err)
	}
	if v := metric(t, w, "authd_mail_degraded", ""); v != 1 {
		t.Errorf("authd_mail_degraded = %v, want 1", v)
	}
	if st := w.Stats(); st.FailedPermanent != 8 || st.Sent != 0 || st.Retried != 0 {
		t.Errorf("stats %+v", st)
	}
	if n := srv.Commands(smtptest.CmdMail); n != 0 {
		t.Errorf("%d MAIL FROM in plain text", n)
	}
	logs := r.logs.String()
	errorLines := 0
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "level=ERROR") {
			errorLines++
			if !strings.Contains(line, "mail delivery failing: ") || !strings.Contains(line, "STARTTLS") || !strings.Contains(line, "; check SMTP_TLS") {
				t.Errorf("the ERROR line does not name the cause and SMTP_TLS: %s", line)
			}
		}
	}
	if errorLines != 1 {
		t.Errorf("%d ERROR lines, want 1:\n%s", errorLines, logs)
	}
	for i := range 8 {
		if strings.Contains(logs, fmt.Sprintf("tls%d@", i)) || strings.Contains(logs, fmt.Sprintf("90000%d", i)) {
			t.Errorf("the log holds an address or a code:\n%s", logs)
		}
	}
}

// TestWorkerMadeUpRecipientsNotDegraded: recipients refused by the server,
// for good (550) or again and again (451), say nothing of the session:
// however many, mail is not degraded.
func TestWorkerMadeUpRecipientsNotDegraded(t *testing.T) {
	srv := smtptest.Start(t, smtptest.WithCommandReply(smtptest.CmdRcpt, func(_ int, to string) *smtp.SMTPError {
		if strings.HasPrefix(to, "later") {
			return reply(451)
		}
		return reply(550)
	}))
	r := newRig(t)
	w := r.worker(t, srv, func(o *delivery.WorkerOptions) {
		o.MaxAttempts, o.DegradedAfter = 2, 3
		o.Backoff, o.MaxBackoff = 5*time.Millisecond, 10*time.Millisecond
	})
	for i := range 12 {
		r.issue(t, fmt.Sprintf("nobody%d@example.com", i), fmt.Sprintf("1200%02d", i), time.Hour)
	}
	for i := range 4 {
		r.issue(t, fmt.Sprintf("later%d@example.com", i), fmt.Sprintf("4500%02d", i), time.Hour)
	}
	r.logs.waitFor(t, "mail refused for good", 12, 10*time.Second)
	r.logs.waitFor(t, "mail given up", 4, 10*time.Second)
	closeWorker(t, w)

	if w.Degraded() || w.Check(context.Background()) != nil {
		t.Error("made-up recipients made mail degraded")
	}
	if v := metric(t, w, "authd_mail_degraded", ""); v != 0 {
		t.Errorf("authd_mail_degraded = %v, want 0", v)
	}
	if st := w.Stats(); st.FailedPermanent != 12 || st.FailedAttempts != 4 {
		t.Errorf("stats %+v", st)
	}
	if logs := r.logs.String(); strings.Contains(logs, "level=ERROR") {
		t.Errorf("an ERROR line for refused recipients:\n%s", logs)
	}
}

// TestWorkerSessionRefusalsDegradeAndRecover: a server refusing MAIL FROM
// (451) for a while makes mail degraded, though each mail would go out
// in the end; the first delivery clears it.
func TestWorkerSessionRefusalsDegradeAndRecover(t *testing.T) {
	srv := smtptest.Start(t, smtptest.WithCommandReply(smtptest.CmdMail, func(n int, _ string) *smtp.SMTPError {
		if n <= 4 {
			return reply(451)
		}
		return nil
	}))
	r := newRig(t)
	w := r.worker(t, srv, func(o *delivery.WorkerOptions) {
		o.DegradedAfter, o.Workers = 3, 1
		o.Backoff, o.MaxBackoff = 5*time.Millisecond, 10*time.Millisecond
	})
	r.issue(t, "back@example.com", "616161", time.Hour)
	r.logs.waitFor(t, "mail delivery failing", 1, 10*time.Second)
	r.logs.waitFor(t, "mail sent", 1, 10*time.Second)
	closeWorker(t, w)

	if w.Degraded() {
		t.Error("still degraded after a delivery")
	}
	logs := r.logs.String()
	if n := strings.Count(logs, "mail delivery failing"); n != 1 {
		t.Errorf("%d ERROR lines, want 1:\n%s", n, logs)
	}
	if n := strings.Count(logs, "mail delivery works again"); n != 1 {
		t.Errorf("%d recovery lines, want 1:\n%s", n, logs)
	}
	if i, j := strings.Index(logs, "mail delivery failing"), strings.Index(logs, "mail delivery works again"); i > j {
		t.Errorf("recovery logged before the failure:\n%s", logs)
	}
	if n := len(srv.Messages()); n != 1 {
		t.Errorf("%d messages, want 1", n)
	}
}
