package mailer

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/authd/authd"
)

// PoolOptions configures a Pool. Zero values take the defaults.
type PoolOptions struct {
	QueueSize int // messages waiting for a worker; default 10000
	Workers   int // concurrent deliveries; default 16

	// MaxAttempts bounds the sends of one message (default 4). Only
	// temporary failures are retried, and never past the code's expiry.
	MaxAttempts int
	// Backoff is the wait before the first retry (default 500ms), doubled
	// for each further retry up to MaxBackoff (default 8s); each wait is
	// drawn uniformly from its upper half so retries of many messages
	// after one outage spread out.
	Backoff    time.Duration
	MaxBackoff time.Duration
	// SendTimeout bounds one send attempt (default 30s).
	SendTimeout time.Duration

	// Current, when set, is asked before every attempt made at or after
	// m.ReplaceableAt whether m's code is still the live one; false drops
	// the message unsent (the code was replaced, used or has expired). An
	// error counts as a temporary failure: the check is retried like a send.
	Current func(ctx context.Context, m authd.Message) (bool, error)

	Logger *slog.Logger // default slog.Default()
	Now    func() time.Time
}

// Stats counts outcomes since the pool was made.
type Stats struct {
	Enqueued          int64 // accepted by Enqueue
	Sent              int64 // delivered
	DroppedSuperseded int64 // not sent: Current said the code is no longer live
	DroppedExpired    int64 // not sent: the code had expired before its turn
	FailedPermanent   int64 // refused by the server (5xx) or unsendable
	FailedTemporary   int64 // temporary failures until the attempts or the code's lifetime ran out, or shutdown
	Retried           int64 // attempts after the first
	Queued            int   // waiting now
}

// Pool is the in-memory mail queue: Enqueue hands a message to a bounded
// queue and returns; Workers goroutines deliver with the Sender, retrying
// temporary failures. Messages still queued when the process dies are
// lost; the user asks for a new code after the resend cooldown.
//
// Its lifecycle is http.Server's: Run serves until the pool stops; Close
// stops it gracefully (no new messages, the queue drained, in-flight sends
// finished) within its ctx, then cuts what is left.
type Pool struct {
	sender authd.Sender
	opts   PoolOptions
	log    *slog.Logger

	queue chan authd.Message

	// accept guards the queue's closing: Enqueue holds it shared while it
	// may send on the queue, so the queue is closed only when no sender is
	// left; stopping wakes the Enqueues blocked on a full queue.
	accept    sync.RWMutex
	closed    bool
	stopping  chan struct{}
	closeOnce sync.Once

	mu        sync.Mutex
	runCalled bool
	cancel    context.CancelFunc // cuts in-flight sends; set once the workers run
	done      chan struct{}      // closed when the workers are gone

	enqueued, sent, superseded, expired, failedPerm, failedTemp, retried atomic.Int64
}

var _ authd.Outbox = (*Pool)(nil)

// NewPool returns a Pool delivering with sender; call Run to start it.
func NewPool(sender authd.Sender, opts PoolOptions) *Pool {
	if opts.QueueSize <= 0 {
		opts.QueueSize = 10000
	}
	if opts.Workers <= 0 {
		opts.Workers = 16
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 4
	}
	if opts.Backoff <= 0 {
		opts.Backoff = 500 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 8 * time.Second
	}
	if opts.MaxBackoff < opts.Backoff {
		opts.MaxBackoff = opts.Backoff
	}
	if opts.SendTimeout <= 0 {
		opts.SendTimeout = 30 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	return &Pool{
		sender:   sender,
		opts:     opts,
		log:      logger,
		queue:    make(chan authd.Message, opts.QueueSize),
		stopping: make(chan struct{}),
		done:     make(chan struct{}),
	}
}

// Enqueue queues m for delivery, waiting for room while the queue is full.
//
// Errors: EUNAVAILABLE when ctx ends before there is room, or the pool is
// closing.
func (p *Pool) Enqueue(ctx context.Context, m authd.Message) error {
	p.accept.RLock()
	defer p.accept.RUnlock()
	if p.closed {
		return authd.Unavailable("mail queue", errPoolClosed)
	}
	select {
	case p.queue <- m:
		p.enqueued.Add(1)
		return nil
	case <-ctx.Done():
		return authd.Unavailable("mail queue", context.Cause(ctx))
	case <-p.stopping:
		return authd.Unavailable("mail queue", errPoolClosed)
	}
}

var errPoolClosed = errors.New("mail pool closed")

// Run starts the workers and blocks until the pool has stopped: after
// Close has drained it, or when ctx ends, which abandons queued and
// in-flight mail (so give Run a ctx that outlives shutdown, and stop with
// Close). It returns nil, or an error when called twice.
func (p *Pool) Run(ctx context.Context) error {
	p.mu.Lock()
	if p.runCalled {
		p.mu.Unlock()
		return errors.New("mailer: Pool.Run called twice")
	}
	p.runCalled = true
	p.startLocked(ctx)
	p.mu.Unlock()
	<-p.done
	return nil
}

// Close stops accepting messages, lets the workers deliver what is queued
// and in flight, and returns when they are done or ctx ends; then it
// cancels the remaining sends, waits for the workers to return, and
// returns ctx's error. When Run has not started the workers yet, Close
// starts them to drain the queue, so no accepted message is left behind
// by a Close racing a Run. Safe to call more than once.
func (p *Pool) Close(ctx context.Context) error {
	p.stopAccepting()
	p.mu.Lock()
	p.startLocked(context.Background())
	cancel := p.cancel
	p.mu.Unlock()
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		cancel()
		<-p.done
		return ctx.Err()
	}
}

// startLocked starts the workers unless they run already; p.mu is held.
func (p *Pool) startLocked(ctx context.Context) {
	if p.cancel != nil {
		return
	}
	wctx, cancel := context.WithCancel(ctx)
	p.cancel = cancel
	var wg sync.WaitGroup
	for range p.opts.Workers {
		wg.Go(func() { p.work(wctx) })
	}
	go func() {
		wg.Wait()
		cancel()
		p.stopAccepting()
		if n := len(p.queue); n > 0 {
			p.log.Warn("mail pool stopped with messages unsent", slog.Int("abandoned", n))
		}
		close(p.done)
	}()
}

func (p *Pool) stopAccepting() {
	p.closeOnce.Do(func() {
		close(p.stopping)
		p.accept.Lock()
		p.closed = true
		close(p.queue) // workers drain it and return
		p.accept.Unlock()
	})
}

// Stats returns the outcome counters.
func (p *Pool) Stats() Stats {
	return Stats{
		Enqueued:          p.enqueued.Load(),
		Sent:              p.sent.Load(),
		DroppedSuperseded: p.superseded.Load(),
		DroppedExpired:    p.expired.Load(),
		FailedPermanent:   p.failedPerm.Load(),
		FailedTemporary:   p.failedTemp.Load(),
		Retried:           p.retried.Load(),
		Queued:            len(p.queue),
	}
}

func (p *Pool) work(ctx context.Context) {
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-p.queue:
			if !ok {
				return
			}
			p.deliver(ctx, m)
		}
	}
}

// deliver sends m, retrying temporary failures, and logs the outcome with
// the address masked and never the code.
func (p *Pool) deliver(ctx context.Context, m authd.Message) {
	to := MaskEmail(m.To)
	logger := p.log.With(slog.String("to", to), slog.String("project", m.ProjectID))
	for attempt := 1; ; attempt++ {
		if !m.ExpiresAt.IsZero() && !p.opts.Now().Before(m.ExpiresAt) {
			p.expired.Add(1)
			logger.Info("mail dropped: code expired before sending", slog.Int("attempt", attempt))
			return
		}
		err := p.attempt(ctx, m)
		if errors.Is(err, errSuperseded) {
			p.superseded.Add(1)
			logger.Info("mail dropped: code no longer current", slog.Int("attempt", attempt))
			return
		}
		if err == nil {
			p.sent.Add(1)
			logger.Info("mail sent", slog.Int("attempt", attempt))
			return
		}
		reason := slog.String("error", redact(err.Error(), []string{m.To}, m.Code))
		var se *authd.SendError
		if errors.As(err, &se) && !se.Temporary {
			p.failedPerm.Add(1)
			logger.Warn("mail failed permanently", slog.Int("attempt", attempt), reason)
			return
		}
		if ctx.Err() != nil {
			p.failedTemp.Add(1)
			logger.Warn("mail abandoned at shutdown", slog.Int("attempt", attempt), reason)
			return
		}
		if attempt >= p.opts.MaxAttempts {
			p.failedTemp.Add(1)
			logger.Warn("mail failed: retries exhausted", slog.Int("attempt", attempt), reason)
			return
		}
		wait := p.backoff(attempt)
		if !m.ExpiresAt.IsZero() && !p.opts.Now().Add(wait).Before(m.ExpiresAt) {
			p.failedTemp.Add(1)
			logger.Warn("mail failed: the code expires before the next try", slog.Int("attempt", attempt), reason)
			return
		}
		logger.Info("mail failed, will retry", slog.Int("attempt", attempt), slog.Duration("retry_in", wait), reason)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			p.failedTemp.Add(1)
			logger.Warn("mail abandoned at shutdown", slog.Int("attempt", attempt), reason)
			return
		}
		p.retried.Add(1)
	}
}

var errSuperseded = errors.New("code superseded")

// attempt checks that m's code is current and sends m once.
func (p *Pool) attempt(ctx context.Context, m authd.Message) error {
	ctx, cancel := context.WithTimeout(ctx, p.opts.SendTimeout)
	defer cancel()
	// Before ReplaceableAt the resend cooldown guarantees no newer code:
	// skip the store's round trip.
	if p.opts.Current != nil && !p.opts.Now().Before(m.ReplaceableAt) {
		ok, err := p.opts.Current(ctx, m)
		if err != nil {
			return &authd.SendError{Temporary: true, Err: err}
		}
		if !ok {
			return errSuperseded
		}
	}
	return p.sender.Send(ctx, m)
}

// backoff is the wait after the given failed attempt: Backoff doubled per
// attempt, capped, uniform in its upper half.
func (p *Pool) backoff(attempt int) time.Duration {
	d := p.opts.Backoff
	for i := 1; i < attempt && d < p.opts.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, p.opts.MaxBackoff)
	half := d / 2
	return half + rand.N(d-half+1)
}
