package delivery_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/delivery"
	"github.com/authd/authd/internal/inmem"
	"github.com/authd/authd/internal/mailer"
	"github.com/authd/authd/internal/smtptest"
)

// The Worker against the in-memory queue (the Redis one passes the same
// contract suite, and cmd/authd's delivery tests run it end to end) and a
// real SMTP server.

// message returns a verification mail for to with code.
func message(to, code string) authd.Message {
	return authd.Message{To: to, ProjectID: "shop", ProjectName: "Example Shop", Code: code, TTL: 5 * time.Minute,
		ExpiresAt: time.Now().Add(5 * time.Minute), Address: authd.Address{Key: "k:" + to, Mailbox: "k:" + to}, CodeID: "id-" + code}
}

// newSender is the real SMTP transport to srv, plain SMTP.
func newSender(t testing.TB, srv *smtptest.Server, edit func(*mailer.Config)) *mailer.SMTPSender {
	t.Helper()
	cfg := mailer.Config{Host: srv.Host(), Port: srv.Port(), From: "info@example.com", Timeout: 5 * time.Second, HELO: "authd.test"}
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

func reply(code int) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{code / 100, 0, 0}, Message: "scripted reply"}
}

var mailKey = []byte("0123456789abcdef0123456789abcdef")

func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// rig is a code store with its queue, a sealer, and a way to issue codes
// with their jobs as the service does.
type rig struct {
	store  *inmem.CodeStore
	sealer *delivery.Sealer
	logs   *lockedBuffer
}

// lockedBuffer is the worker's log. Its lines are the test's events:
// waitFor blocks on a notification of each write, not on a polling loop.
type lockedBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{} // closed and replaced at each write
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.changed != nil {
		close(l.changed)
	}
	l.changed = make(chan struct{})
	return l.b.Write(p)
}

// waitFor blocks until the log holds n lines containing s, or fails t
// after timeout.
func (l *lockedBuffer) waitFor(t *testing.T, s string, n int, timeout time.Duration) {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		l.mu.Lock()
		got := strings.Count(l.b.String(), s)
		if l.changed == nil {
			l.changed = make(chan struct{})
		}
		changed := l.changed
		l.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-changed:
		case <-timer.C:
			t.Fatalf("%d of %d log lines with %q within %v; log:\n%s", got, n, s, timeout, l.String())
		}
	}
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newRig(t *testing.T) *rig {
	s, err := delivery.NewSealer(mailKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &rig{store: inmem.NewCodeStore(), sealer: s, logs: &lockedBuffer{}}
}

// issue stores a code for to with its job (no cooldown: the currency check
// runs before every attempt) and returns the job.
func (r *rig) issue(t *testing.T, to, code string, ttl time.Duration) *authd.MailJob {
	t.Helper()
	now := time.Now()
	m := message(to, code)
	m.ExpiresAt = now.Add(ttl)
	job := &authd.MailJob{
		DeliveryID: newID(), Address: authd.Address{Key: "k:" + to, Mailbox: "k:" + to}, Project: "shop", CodeID: newID(),
		ExpiresAt: m.ExpiresAt, ReplaceableAt: now,
	}
	var err error
	if job.Sealed, err = r.sealer.Seal(job.DeliveryID, m); err != nil {
		t.Fatal(err)
	}
	_, err = r.store.IssueCode(context.Background(), authd.IssueRequest{
		Address: job.Address, Project: "shop", ClientIP: "192.0.2.1", Now: now,
		Record: authd.CodeRecord{ID: job.CodeID, Hash: []byte("h"), ExpiresAt: job.ExpiresAt}, Job: job,
	})
	if err != nil {
		t.Fatal(err)
	}
	return job
}

func (r *rig) worker(t *testing.T, srv *smtptest.Server, edit func(*delivery.WorkerOptions)) *delivery.Worker {
	t.Helper()
	return r.workerWith(t, newSender(t, srv, nil), edit)
}

// workerWith is worker with the given sender.
func (r *rig) workerWith(t *testing.T, sender authd.Sender, edit func(*delivery.WorkerOptions)) *delivery.Worker {
	t.Helper()
	opts := delivery.WorkerOptions{
		Workers: 4, ClaimTimeout: 3 * time.Second, PollInterval: 10 * time.Millisecond,
		Backoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(r.logs, nil)),
	}
	if edit != nil {
		edit(&opts)
	}
	w := delivery.NewWorker(r.store, r.store.IsCurrent, r.sealer, sender, opts)
	w.Start()
	t.Cleanup(func() { w.Close(context.Background()) })
	return w
}

func (r *rig) wantStatus(t *testing.T, id, status string, timeout time.Duration) authd.Delivery {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		d, err := r.store.Delivery(context.Background(), id, time.Now())
		if err == nil && d.Status == status {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("delivery %s: %+v %v, want %s", id, d, err, status)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWorkerSendsAndCounts(t *testing.T) {
	srv := smtptest.Start(t)
	r := newRig(t)
	w := r.worker(t, srv, nil)
	job := r.issue(t, "ana@example.com", "424242", time.Minute)
	m := srv.Wait(t, 1, 5*time.Second)[0]
	if smtptest.CodeFrom(m) != "424242" {
		t.Errorf("mail code %q", smtptest.CodeFrom(m))
	}
	r.wantStatus(t, job.DeliveryID, authd.DeliverySent, 2*time.Second)
	st := w.Stats()
	if st.Claimed != 1 || st.Sent != 1 || st.Held != 0 {
		t.Errorf("stats %+v", st)
	}
	if r.store.QueueLen() != 0 {
		t.Errorf("the sent job is still queued")
	}
	if logs := r.logs.String(); strings.Contains(logs, "424242") || strings.Contains(logs, "ana@") {
		t.Errorf("the log holds the code or the address:\n%s", logs)
	}
}

func TestWorkerPermanentFailureCounted(t *testing.T) {
	srv := smtptest.Start(t, smtptest.WithReply(func(int) *smtp.SMTPError { return reply(550) }))
	r := newRig(t)
	w := r.worker(t, srv, nil)
	job := r.issue(t, "bo@example.com", "111111", time.Minute)
	d := r.wantStatus(t, job.DeliveryID, authd.DeliveryFailed, 5*time.Second)
	time.Sleep(300 * time.Millisecond) // more than a retry would wait
	if d.Attempts != 1 || srv.Attempts() != 1 {
		t.Errorf("%d attempts recorded, %d made; want 1", d.Attempts, srv.Attempts())
	}
	if st := w.Stats(); st.FailedPermanent != 1 || st.Retried != 0 || st.Sent != 0 {
		t.Errorf("stats %+v", st)
	}
	if w.Degraded() {
		t.Error("one refused recipient makes SMTP degraded")
	}
}

func TestWorkerRetriesThenSends(t *testing.T) {
	srv := smtptest.Start(t, smtptest.WithReply(func(n int) *smtp.SMTPError {
		if n <= 2 {
			return reply(451)
		}
		return nil
	}))
	r := newRig(t)
	w := r.worker(t, srv, nil)
	job := r.issue(t, "cy@example.com", "222222", time.Minute)
	d := r.wantStatus(t, job.DeliveryID, authd.DeliverySent, 5*time.Second)
	if d.Attempts != 3 || len(srv.Messages()) != 1 {
		t.Errorf("%d attempts, %d messages; want 3 and 1", d.Attempts, len(srv.Messages()))
	}
	if st := w.Stats(); st.Retried != 2 || st.Sent != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestWorkerDropsReplacedCode(t *testing.T) {
	srv := smtptest.Start(t)
	r := newRig(t)
	old := r.issue(t, "di@example.com", "333333", time.Minute)
	newer := r.issue(t, "di@example.com", "444444", time.Minute) // replaces old
	w := r.worker(t, srv, nil)
	r.wantStatus(t, newer.DeliveryID, authd.DeliverySent, 5*time.Second)
	r.wantStatus(t, old.DeliveryID, authd.DeliverySuperseded, 5*time.Second)
	msgs := srv.Messages()
	if len(msgs) != 1 || smtptest.CodeFrom(msgs[0]) != "444444" {
		t.Fatalf("%d messages (want only the newer code's)", len(msgs))
	}
	if st := w.Stats(); st.DroppedSuperseded != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestWorkerNoRetryPastExpiry(t *testing.T) {
	srv := smtptest.Start(t, smtptest.WithReply(func(int) *smtp.SMTPError { return reply(421) }))
	r := newRig(t)
	w := r.worker(t, srv, func(o *delivery.WorkerOptions) {
		o.Backoff, o.MaxBackoff = 100*time.Millisecond, 100*time.Millisecond
	})
	r.issue(t, "ed@example.com", "555555", 400*time.Millisecond)
	// Its status goes with the code: the counter tells.
	for deadline := time.Now().Add(2 * time.Second); w.Stats().DroppedExpired == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not given up: %+v", w.Stats())
		}
	}
	made := srv.Attempts()
	time.Sleep(300 * time.Millisecond)
	// At least 50 ms apart within 400 ms: 9 at most.
	if srv.Attempts() != made || made > 9 {
		t.Errorf("%d attempts, then %d: retried past the code's expiry", made, srv.Attempts())
	}
	if st := w.Stats(); st.DroppedExpired != 1 || st.Sent != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestWorkerDegraded(t *testing.T) {
	srv := smtptest.Start(t, smtptest.WithReply(func(n int) *smtp.SMTPError {
		if n <= 6 {
			return reply(421)
		}
		return nil
	}))
	r := newRig(t)
	w := r.worker(t, srv, func(o *delivery.WorkerOptions) { o.DegradedAfter = 3; o.Workers = 1 })
	if w.Degraded() {
		t.Fatal("degraded before any send")
	}
	job := r.issue(t, "fa@example.com", "666666", time.Minute)
	for deadline := time.Now().Add(5 * time.Second); !w.Degraded(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not degraded after %d failed attempts", srv.Attempts())
		}
	}
	r.wantStatus(t, job.DeliveryID, authd.DeliverySent, 5*time.Second)
	if w.Degraded() {
		t.Error("still degraded after a success")
	}
}

// TestWorkerLongSendKeepsClaim: a send longer than the claim timeout is
// not taken over by another worker: its claim is renewed.
func TestWorkerLongSendKeepsClaim(t *testing.T) {
	srv := smtptest.Start(t, smtptest.WithDelay(time.Second))
	r := newRig(t)
	short := func(o *delivery.WorkerOptions) { o.ClaimTimeout = 300 * time.Millisecond }
	r.worker(t, srv, short)
	job := r.issue(t, "gu@example.com", "777777", time.Minute)
	time.Sleep(100 * time.Millisecond)
	r.worker(t, srv, short) // a second instance, looking for lapsed claims
	r.wantStatus(t, job.DeliveryID, authd.DeliverySent, 5*time.Second)
	time.Sleep(300 * time.Millisecond)
	if a := srv.Attempts(); a != 1 {
		t.Fatalf("%d sends of one mail, want 1", a)
	}
}

// TestWorkerCloseLeavesJobs: Close finishes the send in flight, and a job
// waiting for its retry stays queued, released for the next instance.
func TestWorkerCloseLeavesJobs(t *testing.T) {
	slow := smtptest.Start(t, smtptest.WithDelay(300*time.Millisecond))
	r := newRig(t)
	w := r.worker(t, slow, nil)
	inflight := r.issue(t, "ha@example.com", "888888", time.Minute)
	for deadline := time.Now().Add(5 * time.Second); slow.Attempts() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the send never started")
		}
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.wantStatus(t, inflight.DeliveryID, authd.DeliverySent, time.Second)

	down := smtptest.Start(t, smtptest.WithReply(func(int) *smtp.SMTPError { return reply(451) }))
	r2 := &rig{store: r.store, sealer: r.sealer, logs: r.logs}
	w2 := r2.worker(t, down, func(o *delivery.WorkerOptions) { o.Backoff, o.MaxBackoff = time.Minute, time.Minute })
	waiting := r.issue(t, "io@example.com", "999999", 5*time.Minute)
	r.wantStatus(t, waiting.DeliveryID, authd.DeliveryRetrying, 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := w2.Close(ctx); err != nil {
		t.Fatalf("Close with a job waiting to retry: %v", err)
	}
	if r.store.QueueLen() != 1 {
		t.Fatalf("queue holds %d jobs after Close, want the one left to retry", r.store.QueueLen())
	}
	// Close released it: the next instance takes it over at once, not
	// after its (long) claim timeout.
	up := smtptest.Start(t)
	r.worker(t, up, func(o *delivery.WorkerOptions) { o.ClaimTimeout = time.Minute })
	r.wantStatus(t, waiting.DeliveryID, authd.DeliverySent, 2*time.Second)
}

func TestSealer(t *testing.T) {
	s, _ := delivery.NewSealer(mailKey, nil)
	m := message("ana@example.com", "123456")
	id := newID()
	sealed, err := s.Seal(id, m)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("123456")) || bytes.Contains(sealed, []byte("ana@")) {
		t.Fatal("sealed job holds the code or the address")
	}
	got, err := s.Open(id, sealed)
	if err != nil || got.To != m.To || got.Code != m.Code || got.ProjectName != m.ProjectName || got.TTL != m.TTL {
		t.Fatalf("Open = %+v, %v", got, err)
	}
	other, _ := delivery.NewSealer([]byte("another key, 32 bytes long......"), nil)
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	for name, open := range map[string]func() (authd.Message, error){
		"another id":  func() (authd.Message, error) { return s.Open(newID(), sealed) },
		"another key": func() (authd.Message, error) { return other.Open(id, sealed) },
		"tampered":    func() (authd.Message, error) { return s.Open(id, tampered) },
		"truncated":   func() (authd.Message, error) { return s.Open(id, sealed[:10]) },
	} {
		if _, err := open(); authd.ErrorCode(err) != authd.EINTERNAL {
			t.Errorf("%s: %v, want EINTERNAL", name, err)
		}
	}
	if _, err := delivery.NewSealer([]byte("short"), nil); err == nil {
		t.Error("a short key was accepted")
	}
}

// TestSealerRotation: after a master-key rotation, jobs sealed under the
// old key still open, new ones are sealed under the new key, and a Sealer
// that no longer knows the old key opens only the new ones.
func TestSealerRotation(t *testing.T) {
	oldKey, newKey := []byte("the old mail key, 32 bytes long."), []byte("the new mail key, 32 bytes long.")
	before, _ := delivery.NewSealer(oldKey, nil)
	during, err := delivery.NewSealer(newKey, nil, oldKey)
	if err != nil {
		t.Fatal(err)
	}
	after, _ := delivery.NewSealer(newKey, nil)
	m := message("ana@example.com", "123456")
	id := newID()
	queued, _ := before.Seal(id, m)
	if got, err := during.Open(id, queued); err != nil || got.Code != m.Code {
		t.Fatalf("a job queued before the rotation: %+v, %v; want it opened", got, err)
	}
	fresh, _ := during.Seal(id, m)
	if _, err := before.Open(id, fresh); err == nil {
		t.Fatal("a job sealed during the rotation opens under the old key: it was not sealed under the new one")
	}
	if got, err := after.Open(id, fresh); err != nil || got.Code != m.Code {
		t.Fatalf("a job sealed during the rotation, opened with the new key alone: %+v, %v", got, err)
	}
	if _, err := after.Open(id, queued); authd.ErrorCode(err) != authd.EINTERNAL {
		t.Fatalf("an old job with the old key gone: %v, want EINTERNAL", err)
	}
	if _, err := delivery.NewSealer(newKey, nil, []byte("short")); err == nil {
		t.Fatal("a short old key was accepted")
	}
}

// During a rolling master-key rotation an instance without the new key
// may claim a job sealed under it: it does not drop the job (the user was
// told 200) but lets it go, and an instance with the key sends it once the
// claim has lapsed.
func TestWorkerLeavesJobItCannotOpen(t *testing.T) {
	srv := smtptest.Start(t)
	r := newRig(t)
	oldOnly, _ := delivery.NewSealer([]byte("the old mail key, 32 bytes long."), nil)
	opts := delivery.WorkerOptions{
		Workers: 1, ClaimTimeout: 300 * time.Millisecond, PollInterval: 10 * time.Millisecond, Consumer: "behind",
		Logger: slog.New(slog.NewTextHandler(r.logs, nil)),
	}
	behind := delivery.NewWorker(r.store, r.store.IsCurrent, oldOnly, newSender(t, srv, nil), opts)
	behind.Start()
	job := r.issue(t, "ana@example.com", "515151", time.Minute)
	r.logs.waitFor(t, "does not open under this instance's master keys", 1, 5*time.Second)
	if st := behind.Stats(); st.LeftUnopened < 1 || st.FailedUnreadable != 0 || st.Held != 0 {
		t.Fatalf("stats of the instance without the key: %+v", st)
	}
	if d, err := r.store.Delivery(context.Background(), job.DeliveryID, time.Now()); err != nil || d.Status != authd.DeliveryQueued {
		t.Fatalf("status after the instance without the key let it go: %+v %v, want still queued", d, err)
	}
	behind.Close(context.Background())
	if n := len(srv.Messages()); n != 0 {
		t.Fatalf("%d messages sent by an instance that could not open the job", n)
	}
	r.worker(t, srv, func(o *delivery.WorkerOptions) { o.Consumer, o.ClaimTimeout = "ahead", 300*time.Millisecond })
	if m := srv.Wait(t, 1, 5*time.Second)[0]; smtptest.CodeFrom(m) != "515151" {
		t.Fatalf("mail code %q", smtptest.CodeFrom(m))
	}
	r.wantStatus(t, job.DeliveryID, authd.DeliverySent, 2*time.Second)
}

// uncheckedQueue is a queue whose Claim could not look the codes up.
type uncheckedQueue struct{ *inmem.CodeStore }

func (q uncheckedQueue) Claim(ctx context.Context, consumer string, n int, timeout time.Duration, now time.Time) ([]authd.ClaimedJob, error) {
	jobs, err := q.CodeStore.Claim(ctx, consumer, n, timeout, now)
	for i := range jobs {
		jobs[i].Checked, jobs[i].Live = false, false
	}
	return jobs, err
}

// The codes past their cooldown are looked up by Claim, all of a claim at
// once: the worker asks the store per mail only for what Claim could not
// check, and drops a replaced code's mail either way.
func TestWorkerUsesClaimsCheck(t *testing.T) {
	for _, tc := range []struct {
		name      string
		unchecked bool
	}{{"checked by Claim", false}, {"Claim could not check", true}} {
		t.Run(tc.name, func(t *testing.T) {
			srv := smtptest.Start(t)
			r := newRig(t)
			old := r.issue(t, "fa@example.com", "555555", time.Minute)
			newer := r.issue(t, "fa@example.com", "666666", time.Minute) // replaces old
			other := r.issue(t, "gu@example.com", "777777", time.Minute)
			var mu sync.Mutex
			asked := 0
			current := func(ctx context.Context, a authd.Address, project, id string, now time.Time) (bool, error) {
				mu.Lock()
				asked++
				mu.Unlock()
				return r.store.IsCurrent(ctx, a, project, id, now)
			}
			var q authd.MailQueue = r.store
			if tc.unchecked {
				q = uncheckedQueue{r.store}
			}
			w := delivery.NewWorker(q, current, r.sealer, newSender(t, srv, nil), delivery.WorkerOptions{
				Workers: 4, ClaimTimeout: 3 * time.Second, PollInterval: 10 * time.Millisecond,
				Logger: slog.New(slog.NewTextHandler(r.logs, nil)),
			})
			w.Start()
			t.Cleanup(func() { w.Close(context.Background()) })
			r.wantStatus(t, newer.DeliveryID, authd.DeliverySent, 5*time.Second)
			r.wantStatus(t, other.DeliveryID, authd.DeliverySent, 5*time.Second)
			r.wantStatus(t, old.DeliveryID, authd.DeliverySuperseded, 5*time.Second)
			if msgs := srv.Messages(); len(msgs) != 2 {
				t.Errorf("%d messages, want 2 (not the replaced code's)", len(msgs))
			}
			mu.Lock()
			defer mu.Unlock()
			if want := map[bool]int{false: 0, true: 3}[tc.unchecked]; asked != want {
				t.Errorf("the worker asked the store %d times, want %d", asked, want)
			}
		})
	}
}

// What Claim found of a code is trusted only just after the claim: a job
// whose first look at the store failed is retried seconds later, and a
// code replaced meanwhile is then looked up again, its mail dropped.
func TestWorkerClaimsCheckGoesStale(t *testing.T) {
	srv := smtptest.Start(t, smtptest.WithDelay(60*time.Millisecond))
	r := newRig(t)
	first := r.issue(t, "ha@example.com", "111111", time.Minute)
	old := r.issue(t, "io@example.com", "222222", time.Minute)
	failed := make(chan struct{})
	var once sync.Once
	current := func(ctx context.Context, a authd.Address, project, id string, now time.Time) (bool, error) {
		if id == old.CodeID {
			fail := false
			once.Do(func() { fail = true })
			if fail {
				defer close(failed)
				return false, authd.Errorf(authd.EUNAVAILABLE, "code store down")
			}
		}
		return r.store.IsCurrent(ctx, a, project, id, now)
	}
	// One worker: the second job waits a send (60 ms) for it, past the
	// claim's freshness, so its first attempt asks the store, and fails.
	w := delivery.NewWorker(r.store, current, r.sealer, newSender(t, srv, nil), delivery.WorkerOptions{
		Workers: 1, ClaimTimeout: 3 * time.Second, PollInterval: 10 * time.Millisecond,
		Backoff: 200 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(r.logs, nil)),
	})
	w.Start()
	t.Cleanup(func() { w.Close(context.Background()) })
	select {
	case <-failed:
	case <-time.After(5 * time.Second):
		t.Fatal("the second job's store lookup never came")
	}
	newer := r.issue(t, "io@example.com", "333333", time.Minute) // during the backoff
	r.wantStatus(t, first.DeliveryID, authd.DeliverySent, 5*time.Second)
	r.wantStatus(t, newer.DeliveryID, authd.DeliverySent, 5*time.Second)
	r.wantStatus(t, old.DeliveryID, authd.DeliverySuperseded, 5*time.Second)
	for _, m := range srv.Messages() {
		if smtptest.CodeFrom(m) == "222222" {
			t.Error("the replaced code's mail was sent on the claim's stale look")
		}
	}
}
