// Package delivery delivers the verification mails of the durable queue
// the code store keeps (authd.MailQueue): Worker claims the jobs, opens
// them (Sealer, which also seals them for the flow), drops those whose
// code is no longer live, sends the rest through an authd.Sender
// (internal/mailer) and retries temporary failures, a bounded number of
// times when the server answers them; it reports itself degraded while
// deliveries fail at the session level. It is a flow of its own beside the
// transport it uses.
package delivery

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/authd/authd"
)

// CurrentFunc reports whether the code named id is still the live code of
// (address, project): authd.CodeStore.IsCurrent.
type CurrentFunc func(ctx context.Context, address authd.Address, project, id string, now time.Time) (bool, error)

// WorkerOptions configure a Worker. Zero values take the defaults.
type WorkerOptions struct {
	// Workers is how many mails are sent at once (MAIL_WORKERS, default
	// 16): sized for the SMTP server, not the CPU.
	Workers int
	// ClaimTimeout is how long a claimed job stays invisible to other
	// instances without being renewed (MAIL_CLAIM_TIMEOUT, default 30s).
	// The worker renews its claims every third of it, during long sends
	// and waits before retries alike, so it is the time another instance
	// waits before taking over from one that died.
	ClaimTimeout time.Duration
	// PollInterval is the wait between two looks at an empty queue
	// (default 50ms): the delay a new mail may wait for a worker.
	PollInterval time.Duration
	// Backoff is the delay before the first retry (default 2s), doubled
	// for each further retry up to MaxBackoff (default 30s); each delay is
	// drawn uniformly from its upper half, so that the mails of one outage
	// do not all come back at once.
	Backoff    time.Duration
	MaxBackoff time.Duration
	// SendTimeout bounds one send attempt (default 20s: under MAIL_MAX_LAG's
	// default, so that one recipient's stalled attempt, which counts in the
	// lag while it lasts, has failed before it alone could push the lag
	// over).
	SendTimeout time.Duration
	// MaxAttempts is how many times the server may refuse a mail
	// temporarily (a 4xx reply: SendError Temporary and Reply) before it
	// is given up (MAIL_RETRY_MAX_ATTEMPTS, default 10): a recipient whose
	// mailbox answers 451 for hours is not worth an attempt a minute until
	// its code expires. Attempts the server does not answer (refused
	// connections, timeouts: an outage) do not count: such mail is retried
	// until its code expires, so that a short outage loses no code still
	// valid.
	MaxAttempts int
	// DegradedAfter is how many deliveries in a row failing at the
	// session level (SendError.Session: connecting, TLS, AUTH, MAIL FROM,
	// DATA; temporary or permanent alike) make Degraded report true
	// (default 5); a delivery sent clears it. A recipient's own refusal
	// neither counts nor clears (see health).
	DegradedAfter int
	// MaxLag is the mail lag (Lag) a new code's mail must not wait past
	// (MAIL_MAX_LAG): Behind reports how far over it the lag is, and the
	// worker logs it — one WARN line a minute at most while over, one INFO
	// line once back under. Zero: no bound (the lag is still measured).
	MaxLag time.Duration
	// Consumer names this instance in the queue (default: host name and
	// random bits, unique per Worker).
	Consumer string

	Logger *slog.Logger     // default slog.Default()
	Now    func() time.Time // default time.Now
}

// WorkerStats counts outcomes since the Worker started.
type WorkerStats struct {
	Claimed           int64         // jobs taken from the queue (a job taken over from a dead instance counts again)
	Sent              int64         // delivered
	Retried           int64         // attempts after the first
	DroppedSuperseded int64         // not sent: a newer code replaced the job's, or it was used
	DroppedExpired    int64         // not sent: the code expired before a send could succeed
	FailedPermanent   int64         // refused for good (5xx, or a set-up a retry cannot fix)
	FailedAttempts    int64         // given up: refused temporarily (4xx) MaxAttempts times
	FailedUnreadable  int64         // the job was unreadable (no delivery id): dropped
	LeftUnopened      int64         // the job did not open under this instance's master keys: left for another
	Held              int           // jobs this instance holds now: in flight or waiting to retry
	QueueAgeMax       time.Duration // the longest wait in the queue of a job claimed (QueueAge is the backlog's)
}

// Worker delivers the mail jobs of an authd.MailQueue: it claims jobs,
// opens them, drops those whose code is no longer live, sends the rest,
// retries temporary failures with backoff (never past the code's expiry;
// at most MaxAttempts times when the server answers them), and finishes
// each job (status recorded, job deleted). Every instance of authd runs
// one; the queue's claims keep them from sending a mail twice.
//
// The bound on attempts is held by the instance that holds the job: a job
// taken over from another instance (it died, or released the job at
// shutdown) starts its count again.
//
// Start starts it; Close stops it gracefully.
type Worker struct {
	queue   authd.MailQueue
	current CurrentFunc
	sealer  authd.JobSealer
	sender  authd.Sender
	opts    WorkerOptions
	log     *slog.Logger

	ready    chan *heldJob
	stop     chan struct{} // closed by Close: no new jobs, no new attempts
	stopOnce sync.Once
	sendCtx  context.Context // cancelled when Close's ctx ends: cuts sends in flight
	cutSends context.CancelFunc
	wg       sync.WaitGroup // workers, fetcher and keeper
	active   atomic.Int64   // jobs handed to the workers, ready or being attempted
	wake     chan struct{}  // an attempt ended: the fetcher claims at once

	mu   sync.Mutex
	held map[string]*heldJob // by Ref

	health    *health
	finishing *finisher

	lag      atomic.Int64 // Lag, in nanoseconds, as watchLag last measured it
	lagging  bool         // watchLag's: over MaxLag at its last look
	lagWarnt time.Time    // watchLag's: when it last logged the lag over MaxLag

	ageMu  sync.Mutex // QueueAge's last answer, and when it was asked
	ageAt  time.Time
	age    time.Duration
	ageErr error

	claimed, sent, retried, superseded, expired, failedPerm, failedAttempts, unreadable, unopened atomic.Int64
	ageMax                                                                                        atomic.Int64
}

// heldJob is a job this instance has claimed, with its attempts so far.
type heldJob struct {
	job      authd.ClaimedJob
	attempts int // send attempts made
	refusals int // of which the server refused temporarily (4xx): MaxAttempts bounds them
	// ownWait is set once an attempt fails by its recipient's own refusal
	// (RCPT TO, not the session), until one fails otherwise: the job's
	// wait, its retries included, says nothing of the mail behind it, so
	// Lag leaves it out.
	ownWait atomic.Bool
	// taken is set once a worker has taken the job: one claimed ahead and
	// waiting for a worker is in the backlog, as if still queued, and Lag
	// leaves it out until then.
	taken atomic.Bool
	// claimedAt is the time the Claim that took the job was made at:
	// what Claim found of its code (Checked) is that old. A job whose
	// first attempt starts more than heldTooLong after it is checked
	// against the store, as a retry is (it may have been replaced or
	// erased meanwhile).
	claimedAt time.Time
}

// heldTooLong is how long a job claimed ahead may wait for a worker and
// still be sent without asking the store whether its code lives: about
// the time a job waited unclaimed in the queue before claims ran ahead,
// so that erasing an address stops its mail as it did then.
const heldTooLong = 20 * time.Millisecond

// NewWorker returns a Worker; call Start.
func NewWorker(queue authd.MailQueue, current CurrentFunc, sealer authd.JobSealer, sender authd.Sender, opts WorkerOptions) *Worker {
	if opts.Workers <= 0 {
		opts.Workers = 16
	}
	if opts.ClaimTimeout <= 0 {
		opts.ClaimTimeout = 30 * time.Second
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 50 * time.Millisecond
	}
	if opts.Backoff <= 0 {
		opts.Backoff = 2 * time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	opts.MaxBackoff = max(opts.MaxBackoff, opts.Backoff)
	if opts.SendTimeout <= 0 {
		opts.SendTimeout = 20 * time.Second
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 10
	}
	if opts.DegradedAfter <= 0 {
		opts.DegradedAfter = 5
	}
	if opts.Consumer == "" {
		host, _ := os.Hostname()
		var b [6]byte
		rand.Read(b[:])
		opts.Consumer = host + "-" + hex.EncodeToString(b[:])
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	sendCtx, cut := context.WithCancel(context.Background())
	w := &Worker{
		queue: queue, current: current, sealer: sealer, sender: sender, opts: opts, log: logger,
		ready: make(chan *heldJob, opts.Workers), stop: make(chan struct{}), wake: make(chan struct{}, 1),
		sendCtx: sendCtx, cutSends: cut, held: make(map[string]*heldJob),
		health: &health{after: opts.DegradedAfter, log: logger},
	}
	w.finishing = &finisher{write: w.finishAll, spawn: w.wg.Go}
	return w
}

// Start starts the workers, the fetcher that claims jobs for them, and the
// keeper that renews the claims held. It returns at once.
func (w *Worker) Start() {
	for range w.opts.Workers {
		w.wg.Go(w.work)
	}
	w.wg.Go(w.fetch)
	w.wg.Go(w.keep)
	w.wg.Go(w.watchLag)
}

// Close stops claiming jobs and starting attempts, waits for the sends in
// flight to end, and returns; if ctx ends first it cuts them and returns
// ctx's error. Jobs not finished (waiting to retry, or cut) stay in the
// queue, released: another instance takes them over at once.
func (w *Worker) Close(ctx context.Context) error {
	w.stopOnce.Do(func() { close(w.stop) })
	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		w.cutSends()
		<-done
		err = ctx.Err()
	}
	w.cutSends()
	// What is left (waiting to retry, or cut mid-send) goes back to the
	// queue at once rather than after the claim timeout: the next instance
	// need not wait. If the queue does not answer, the claims lapse anyway.
	w.mu.Lock()
	left := make([]authd.ClaimedJob, 0, len(w.held))
	for _, h := range w.held {
		left = append(left, h.job)
	}
	w.mu.Unlock()
	if len(left) > 0 {
		rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if rerr := w.queue.Release(rctx, w.opts.Consumer, left); rerr != nil {
			w.log.Warn("mail queue: releasing claims failed; they lapse after the claim timeout", slog.Any("err", rerr))
		}
		cancel()
		w.log.Info("mail worker stopped; jobs left for another instance", slog.Int("jobs", len(left)))
	}
	return err
}

// Degraded reports whether DegradedAfter deliveries in a row have failed
// at the session level, temporarily or for good: the SMTP server is down,
// or authd's settings are wrong for it (a STARTTLS mismatch refuses every
// mail for good). A delivery sent clears it; recipients refusing their own
// mail (RCPT TO) neither set nor clear it. For the readiness endpoint and
// authd_mail_degraded.
func (w *Worker) Degraded() bool { return w.health.degraded.Load() }

// Check is Degraded as a readiness check: an error while degraded, naming
// the setting to check.
func (w *Worker) Check(context.Context) error { return w.health.check() }

// Stats returns the outcome counters.
func (w *Worker) Stats() WorkerStats {
	w.mu.Lock()
	held := len(w.held)
	w.mu.Unlock()
	return WorkerStats{
		Claimed: w.claimed.Load(), Sent: w.sent.Load(), Retried: w.retried.Load(),
		DroppedSuperseded: w.superseded.Load(), DroppedExpired: w.expired.Load(),
		FailedPermanent: w.failedPerm.Load(), FailedAttempts: w.failedAttempts.Load(), FailedUnreadable: w.unreadable.Load(), LeftUnopened: w.unopened.Load(),
		Held: held, QueueAgeMax: time.Duration(w.ageMax.Load()),
	}
}

// QueueAge returns how long the oldest job still in the queue (waiting, in
// flight or waiting to retry: not yet finished) has waited, by the
// worker's clock; 0 when the queue is empty. It asks the queue, so it
// shows a backlog even while no instance claims anything (all of them
// stopped, or their claims failing), which the wait of the last job
// claimed could not. The answer is kept for a second: however often it is
// asked (a scrape, each send-code), the queue is asked at most once a
// second, and a scrape costs no Redis command of its own.
//
// Errors: the queue's (EUNAVAILABLE).
func (w *Worker) QueueAge(ctx context.Context) (time.Duration, error) {
	w.ageMu.Lock()
	defer w.ageMu.Unlock()
	now := w.opts.Now()
	if d := now.Sub(w.ageAt); d >= 0 && d < queueAgeFor && !w.ageAt.IsZero() {
		return w.age, w.ageErr
	}
	at, err := w.queue.OldestQueued(ctx)
	w.ageAt, w.age, w.ageErr = now, 0, err
	if err == nil && !at.IsZero() {
		w.age = max(now.Sub(at), 0)
	}
	return w.age, w.ageErr
}

// queueAgeFor is how long QueueAge keeps its answer.
const queueAgeFor = time.Second

// Lag returns the mail lag, as last measured (every lagEvery): how long
// the oldest job this instance holds has waited since it was queued —
// in flight, or waiting for a retry after a failure of the session (the
// server down or slow, a setting wrong for it) or of the code store —
// leaving out the jobs waiting for a retry after their recipient's own
// refusal (a greylisting server answers 451 to RCPT TO for minutes: that
// delays its one mail, not the others). It is what a new code's mail
// would meet: a backlog shows as the age of the jobs being claimed and
// sent, a slow or hung server as the age of those in flight, an outage as
// the age of those it fails. It costs no store command: the jobs held are
// in memory, and the instances that hold the backlog between them each
// see it.
//
// QueueAge (the metric) is the age of the oldest job not yet finished,
// every one counted: a greylisted recipient keeps it high for as long as
// its mail is retried, so it cannot tell when to refuse new codes.
func (w *Worker) Lag() time.Duration { return time.Duration(w.lag.Load()) }

// Behind returns how far Lag is over MaxLag; 0 while it is not, or
// without a bound (authd.MailBacklog).
func (w *Worker) Behind() time.Duration {
	if w.opts.MaxLag <= 0 {
		return 0
	}
	return max(w.Lag()-w.opts.MaxLag, 0)
}

// lagEvery is how often watchLag measures the lag.
const lagEvery = 250 * time.Millisecond

// watchLag measures the lag every lagEvery until Close, and logs it when
// it goes over MaxLag (WARN, again at most once a minute while it stays
// over) and when it comes back under (INFO).
func (w *Worker) watchLag() {
	for w.sleep(lagEvery) {
		w.measureLag()
	}
}

func (w *Worker) measureLag() {
	now := w.opts.Now()
	var lag time.Duration
	w.mu.Lock()
	for _, h := range w.held {
		if h.taken.Load() && !h.ownWait.Load() && !h.job.QueuedAt.IsZero() {
			lag = max(lag, now.Sub(h.job.QueuedAt))
		}
	}
	w.mu.Unlock()
	w.lag.Store(int64(lag))
	if w.opts.MaxLag <= 0 {
		return
	}
	switch over := lag > w.opts.MaxLag; {
	case over && (!w.lagging || now.Sub(w.lagWarnt) >= time.Minute):
		w.log.Warn("mail delivery is behind: send-code answers 503 until it catches up",
			slog.Duration("lag", lag.Round(100*time.Millisecond)), slog.Duration("max_lag", w.opts.MaxLag), slog.String("setting", "MAIL_MAX_LAG"))
		w.lagging, w.lagWarnt = true, now
	case !over && w.lagging:
		w.log.Info("mail delivery caught up: send-code accepted again", slog.Duration("lag", lag.Round(100*time.Millisecond)))
		w.lagging = false
	}
}

func (w *Worker) stopping() bool {
	select {
	case <-w.stop:
		return true
	default:
		return false
	}
}

// sleep waits d or until Close; false means Close.
func (w *Worker) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-w.stop:
		return false
	}
}

// sleepOrWake is sleep, cut short when an attempt ends.
func (w *Worker) sleepOrWake(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-w.wake:
	case <-w.stop:
		return false
	}
	return true
}

// fetch claims jobs for the workers and hands them over: one for each
// worker and one more ready for each (a worker that ends a send takes its
// next job at once, not after a claim's round trip), counting those
// handed and not yet attempted to the end. Under load it claims once half
// of them are free, not after each send: one claim's round trip (and on a
// single Redis one script reading the 64 streams) serves Workers mails.
func (w *Worker) fetch() {
	var failing time.Duration // the wait after a failed claim; 0 while the queue answers
	for !w.stopping() {
		n := 2*w.opts.Workers - int(w.active.Load())
		if n < w.opts.Workers {
			// Until an attempt ends: a job is claimed in its place at
			// once, not at the next look.
			if !w.sleepOrWake(w.opts.PollInterval / 5) {
				return
			}
			continue
		}
		cctx, cancel := context.WithTimeout(w.sendCtx, 5*time.Second)
		claimedAt := w.opts.Now()
		jobs, err := w.queue.Claim(cctx, w.opts.Consumer, n, w.opts.ClaimTimeout, claimedAt)
		cancel()
		if err != nil {
			// Once per outage, and no faster than every second after the
			// first: a down Redis must not flood the log.
			if failing == 0 {
				w.log.Warn("mail queue: claim failed; retrying", slog.Any("err", err))
			}
			failing = min(max(2*failing, w.opts.PollInterval), time.Second)
			if !w.sleep(failing) {
				return
			}
			continue
		}
		if failing > 0 {
			w.log.Info("mail queue: claims work again")
			failing = 0
		}
		var fresh []*heldJob
		w.mu.Lock()
		for _, j := range jobs {
			if _, dup := w.held[j.Ref]; dup {
				continue // a lapsed claim of our own, still being worked on
			}
			h := &heldJob{job: j, claimedAt: claimedAt}
			w.held[j.Ref] = h
			fresh = append(fresh, h)
		}
		w.mu.Unlock()
		now := w.opts.Now()
		for _, h := range fresh {
			w.claimed.Add(1)
			if !h.job.QueuedAt.IsZero() {
				age := max(now.Sub(h.job.QueuedAt), 0)
				for {
					old := w.ageMax.Load()
					if int64(age) <= old || w.ageMax.CompareAndSwap(old, int64(age)) {
						break
					}
				}
			}
			if !w.hand(h) {
				return
			}
		}
		if len(jobs) == 0 && !w.sleep(w.opts.PollInterval) {
			return
		}
	}
}

// hand gives h to a worker; false when Close came first (h stays claimed).
func (w *Worker) hand(h *heldJob) bool {
	// The channel holds jobs ready for busy workers: after Close none
	// goes in, where no worker would take it and Close would not see it.
	if w.stopping() {
		return false
	}
	w.active.Add(1)
	select {
	case w.ready <- h:
		return true
	case <-w.stop:
		w.active.Add(-1)
		return false
	}
}

// keep renews the claims of every held job, three times per claim
// timeout, so that neither a long send nor a wait before a retry lets
// another instance take a job over.
func (w *Worker) keep() {
	for w.sleep(w.opts.ClaimTimeout / 3) {
		w.mu.Lock()
		jobs := make([]authd.ClaimedJob, 0, len(w.held))
		for _, h := range w.held {
			jobs = append(jobs, h.job)
		}
		w.mu.Unlock()
		if len(jobs) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), w.opts.ClaimTimeout/3)
		if err := w.queue.Extend(ctx, w.opts.Consumer, jobs, w.opts.Now()); err != nil {
			w.log.Warn("mail queue: renewing claims failed", slog.Any("err", err))
		}
		cancel()
	}
}

func (w *Worker) work() {
	for {
		select {
		case h := <-w.ready:
			h.taken.Store(true)
			w.attempt(h)
			w.active.Add(-1)
			select {
			case w.wake <- struct{}{}:
			default: // the fetcher has been woken already
			}
		case <-w.stop:
			return
		}
	}
}

// attempt makes one attempt at h's mail and settles what follows: finish,
// or schedule the next attempt.
func (w *Worker) attempt(h *heldJob) {
	// A worker may take a job after Close (select picks at random between
	// a ready job and stop): no new attempt then. The job stays held, and
	// Close releases it for another instance.
	if w.stopping() {
		return
	}
	j := h.job
	logger := jobLog{log: w.log, attrs: []slog.Attr{slog.String("delivery_id", j.DeliveryID), slog.String("project", j.Project)}}
	now := w.opts.Now()
	if j.DeliveryID == "" {
		w.unreadable.Add(1)
		logger.Error("mail job unreadable: dropped")
		w.finish(h, authd.DeliveryFailed)
		return
	}
	if !now.Before(j.ExpiresAt) {
		w.expired.Add(1)
		logger.Warn("mail dropped: the code expired before it could be sent", slog.Int("attempts", h.attempts))
		w.finish(h, authd.DeliveryFailed)
		return
	}
	m, err := w.sealer.Open(j.DeliveryID, j.Sealed)
	if err != nil {
		// Sealed under a master key this instance lacks: another instance,
		// further along a rotation, may have it. The job is let go without
		// a word to the queue: its claim lapses after the claim timeout and
		// any instance may take it; it is dropped once its code expires.
		w.unopened.Add(1)
		logger.Warn("mail job does not open under this instance's master keys: left for another instance "+
			"(do all instances have the same AUTHD_MASTER_KEY and AUTHD_MASTER_KEY_PREVIOUS? README, \"Rotating the master key\")", slog.Any("err", err))
		w.mu.Lock()
		delete(w.held, h.job.Ref)
		w.mu.Unlock()
		return
	}
	m.ProjectID, m.Address, m.CodeID = j.Project, j.Address, j.CodeID
	m.ExpiresAt, m.ReplaceableAt = j.ExpiresAt, j.ReplaceableAt
	logger = logger.with(slog.String("to", authd.MaskEmail(m.To)))

	ctx, cancel := context.WithTimeout(w.sendCtx, w.opts.SendTimeout)
	defer cancel()
	// Before ReplaceableAt the resend cooldown guarantees no newer code:
	// a first attempt soon after the claim skips the store's round trip;
	// past it, Claim has looked (Checked), for all the jobs of a claim at
	// once. Any other attempt asks the store: a retry (rare; after a
	// failure of the store's own, attempts is still 0, but the claim is
	// then seconds old), a job claimed ahead that waited for a worker
	// longer than heldTooLong, and one Claim could not check; the code
	// may have been replaced, used or erased since the claim
	// (EraseAddress deletes the queued job, but not from this worker's
	// hands).
	first := h.attempts == 0 && now.Sub(h.claimedAt) <= heldTooLong
	live := true
	switch {
	case first && j.Checked:
		live = j.Live
	case w.current == nil, first && now.Before(j.ReplaceableAt):
	default:
		ok, err := w.current(ctx, j.Address, j.Project, j.CodeID, now)
		if err != nil {
			h.ownWait.Store(false) // the store fails every mail alike
			w.retry(h, logger, slog.String("error", "code store: "+err.Error()))
			return
		}
		live = ok
	}
	if !live {
		w.superseded.Add(1)
		logger.Info("mail dropped unsent: its code was replaced or used")
		w.finish(h, authd.DeliverySuperseded)
		return
	}
	if w.stopping() {
		return // Close came during the check: as above
	}
	h.attempts++
	err = w.sender.Send(ctx, m)
	if err == nil {
		w.health.succeeded()
		w.sent.Add(1)
		logger.Info("mail sent", slog.Int("attempts", h.attempts))
		w.finish(h, authd.DeliverySent)
		return
	}
	text := authd.Redact(err.Error(), m.Code, m.To)
	reason := slog.String("error", text)
	var se *authd.SendError
	if !errors.As(err, &se) {
		// A sender outside its contract: taken as an outage, retried and
		// counted, rather than as a verdict on this mail.
		se = &authd.SendError{Temporary: true, Session: true, Err: err}
	}
	// A send Close cut short says nothing of the server.
	if se.Session && w.sendCtx.Err() == nil {
		cause := text
		if se.Err != nil {
			cause = authd.Redact(se.Err.Error(), m.Code, m.To) // without "send mail: "
		}
		w.health.failed(cause, se.Setting)
	}
	if !se.Temporary {
		w.failedPerm.Add(1)
		logger.Warn("mail refused for good: not retried", slog.Int("attempts", h.attempts), reason)
		w.finish(h, authd.DeliveryFailed)
		return
	}
	// The recipient's own refusal holds up its mail only.
	h.ownWait.Store(!se.Session)
	if se.Reply {
		h.refusals++
		if h.refusals >= w.opts.MaxAttempts {
			w.failedAttempts.Add(1)
			logger.Warn("mail given up: the server refused it temporarily too many times",
				slog.Int("attempts", h.attempts), slog.Int("max_attempts", w.opts.MaxAttempts), reason)
			w.finish(h, authd.DeliveryFailed)
			return
		}
	}
	w.retry(h, logger, reason)
}

// retry schedules the next attempt at h after a temporary failure, unless
// Close has come or the code would expire first.
func (w *Worker) retry(h *heldJob, logger jobLog, reason slog.Attr) {
	now := w.opts.Now()
	wait := backoff(w.opts.Backoff, w.opts.MaxBackoff, max(h.attempts, 1))
	next := now.Add(wait)
	if !next.Before(h.job.ExpiresAt) {
		w.expired.Add(1)
		logger.Warn("mail failed: the code expires before the next try", slog.Int("attempts", h.attempts), reason)
		w.finish(h, authd.DeliveryFailed)
		return
	}
	if w.stopping() {
		// Left claimed: the next instance takes it over.
		logger.Info("mail not sent at shutdown; left for another instance", slog.Int("attempts", h.attempts), reason)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := w.queue.Retrying(ctx, h.job, h.attempts, next, now); err != nil {
		logger.Warn("mail queue: recording the retry failed", slog.Any("err", err))
	}
	cancel()
	logger.Info("mail failed, will retry", slog.Int("attempts", h.attempts), slog.Duration("retry_in", wait), reason)
	// The job stays claimed (the keeper renews it) and comes back to a
	// worker when its time has come; no worker waits for it meanwhile.
	time.AfterFunc(wait, func() {
		if w.hand(h) {
			w.retried.Add(1)
		}
	})
}

// finish records the job's final status and deletes it from the queue:
// the finisher does, with the other jobs finished meanwhile
// (finishing.go), and the job is held until then. Tried a few times: a
// job not finished is sent again by another instance after the claim
// timeout.
func (w *Worker) finish(h *heldJob, status string) {
	w.finishing.finish(authd.FinishedJob{Job: h.job, Status: status, Attempts: h.attempts}, func(err error) {
		if err != nil {
			w.log.Error("mail queue: finishing a job failed; it may be sent again", slog.String("delivery_id", h.job.DeliveryID), slog.Any("err", err))
		}
		w.mu.Lock()
		delete(w.held, h.job.Ref)
		w.mu.Unlock()
	})
}

// finishAll writes jobs' final statuses, tried a few times.
func (w *Worker) finishAll(jobs []authd.FinishedJob) error {
	var err error
	for try := 0; try < 3; try++ {
		if try > 0 && !w.sleep(200*time.Millisecond) {
			break
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = w.queue.FinishAll(ctx, jobs, w.opts.Now())
		cancel()
		if err == nil {
			break
		}
	}
	return err
}

// jobLog writes a job's lines with its attributes first, as a logger
// made With them would, without making a handler for every job.
type jobLog struct {
	log   *slog.Logger
	attrs []slog.Attr
}

func (l jobLog) with(a slog.Attr) jobLog {
	return jobLog{log: l.log, attrs: append(l.attrs[:len(l.attrs):len(l.attrs)], a)}
}

func (l jobLog) Info(msg string, attrs ...slog.Attr)  { l.emit(slog.LevelInfo, msg, attrs) }
func (l jobLog) Warn(msg string, attrs ...slog.Attr)  { l.emit(slog.LevelWarn, msg, attrs) }
func (l jobLog) Error(msg string, attrs ...slog.Attr) { l.emit(slog.LevelError, msg, attrs) }

func (l jobLog) emit(level slog.Level, msg string, attrs []slog.Attr) {
	ctx := context.Background()
	if !l.log.Enabled(ctx, level) {
		return
	}
	l.log.LogAttrs(ctx, level, msg, append(l.attrs[:len(l.attrs):len(l.attrs)], attrs...)...)
}

// backoff is the wait after the given failed attempt: base doubled per
// attempt, capped, uniform in its upper half.
func backoff(base, maxWait time.Duration, attempt int) time.Duration {
	d := base
	for i := 1; i < attempt && d < maxWait; i++ {
		d *= 2
	}
	d = min(d, maxWait)
	half := d / 2
	return half + mrand.N(d-half+1)
}
