package redis

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Concurrent single scripts share round trips (auto-pipelining): a
// request's one script (a send-code's issue.lua, a verify-code's
// consume.lua, a mail's status) goes to a queue that a few lanes empty,
// each lane sending what has come meanwhile, up to maxBatch scripts, as
// one pipeline and handing each caller its own reply. Under load, one
// write and one read carry many requests, on authd's side and on Redis's
// (a single-threaded server spends much of its time in those calls); at
// low load a lane finds one script and sends it at once: nothing waits
// for company.
//
// Each caller keeps its own deadline: it returns when its context ends,
// whatever its lane is doing. A script whose caller has given up before
// its lane took it is not sent (it changes nothing, as a request refused
// at once), nor one whose caller's deadline is nearer than the recent
// round trips took (Redis slow: its answer would come too late, and the
// request is answered 503 at once instead of at its deadline with its
// script run); one already sent may have run, as a request cut after its
// write always could. A pipeline's failure is each of its scripts'
// (unavailable). A pipeline runs until the latest of its callers'
// deadlines, and within the client's own timeouts.

// maxBatch bounds one pipeline: Redis runs it in one go, so a larger one
// makes the scripts behind it wait longer.
const maxBatch = 64

type coalescer struct {
	client goredis.UniversalClient
	queue  chan *pending
	stop   chan struct{}
	lanes  sync.WaitGroup

	// mu orders run's enqueue before close: once close has it, nothing
	// more is queued that its drain would miss.
	mu     sync.RWMutex
	closed bool

	// For the metrics: scripts sent, the round trips they went in, and
	// those not sent because their callers had given up or had no time.
	scripts, trips, dropped atomic.Int64
	// trip is the recent round trips' time: the slowest of late, halved
	// for every rttHalfLife since, learnt from round trips that
	// succeeded only (a timeout says nothing of how long an answer
	// takes).
	tripMu sync.Mutex
	trip   time.Duration
	tripAt time.Time
}

// rttHalfLife is how fast a slow round trip is forgotten: Redis slow a
// second ago says little now, and a refusal must not outlive the
// slowness that caused it.
const rttHalfLife = 100 * time.Millisecond

// recentTrip is what a round trip takes now, as far as the recent ones
// tell.
func (c *coalescer) recentTrip(now time.Time) time.Duration {
	c.tripMu.Lock()
	defer c.tripMu.Unlock()
	return decayed(c.trip, now.Sub(c.tripAt))
}

// learn records a round trip that succeeded, of d, ending at now.
func (c *coalescer) learn(d time.Duration, now time.Time) {
	c.tripMu.Lock()
	c.trip, c.tripAt = max(d, decayed(c.trip, now.Sub(c.tripAt))), now
	c.tripMu.Unlock()
}

// decayed is d halved for every rttHalfLife in since.
func decayed(d, since time.Duration) time.Duration {
	if n := since / rttHalfLife; n >= 30 {
		return 0
	} else if n > 0 {
		d >>= n
	}
	return d
}

// pending is one caller's script, and its reply once done is signalled.
type pending struct {
	ctx  context.Context
	call scriptCall
	v    any
	err  error
	done chan struct{} // 1 buffered: the lane never waits for the caller
}

var pendings = sync.Pool{New: func() any { return &pending{done: make(chan struct{}, 1)} }}

var (
	errClosed = errors.New("redis: the store is closed")
	errNoTime = errors.New("redis: the request's deadline is nearer than Redis's round trips take now")
)

// newCoalescer starts lanes lanes over client; close stops them.
func newCoalescer(client goredis.UniversalClient, lanes int) *coalescer {
	c := &coalescer{client: client, queue: make(chan *pending, lanes*maxBatch), stop: make(chan struct{})}
	for range lanes {
		c.lanes.Go(c.lane)
	}
	return c
}

// lanesFor is how many lanes a pool of size connections gets: one per 8
// connections, from 1 to 8. Each lane holds one connection while its
// pipeline is out; the rest are for the calls that pipeline on their own
// (a worker's batch of jobs, WAIT).
func lanesFor(size int) int { return min(max(size/8, 1), 8) }

// run runs call with the others waiting and returns its reply.
func (c *coalescer) run(ctx context.Context, call scriptCall) (any, error) {
	p := pendings.Get().(*pending)
	p.ctx, p.call = ctx, call
	c.mu.RLock()
	queued := false
	var err error
	if c.closed {
		err = errClosed
	} else {
		// The lanes run while mu is read-held (close waits for it), so a
		// full queue drains.
		select {
		case c.queue <- p:
			queued = true
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	c.mu.RUnlock()
	if !queued {
		p.ctx, p.call = nil, scriptCall{}
		pendings.Put(p)
		return nil, err
	}
	select {
	case <-p.done:
		return p.reply()
	case <-ctx.Done():
		select {
		case <-p.done: // the reply came as the deadline did: it is the answer
			return p.reply()
		default:
		}
		// The lane finishes with p on its own; p is not reused.
		return nil, ctx.Err()
	}
}

// reply returns p's reply and puts p back for another call.
func (p *pending) reply() (any, error) {
	v, err := p.v, p.err
	*p = pending{done: p.done}
	pendings.Put(p)
	return v, err
}

// lane sends what the queue holds, in turn, until close.
func (c *coalescer) lane() {
	batch := make([]*pending, 0, maxBatch)
	cmds := make([]*goredis.Cmd, maxBatch)
	for {
		select {
		case p := <-c.queue:
			batch = append(batch[:0], p)
		case <-c.stop:
			return
		}
	fill:
		for len(batch) < maxBatch {
			select {
			case p := <-c.queue:
				batch = append(batch, p)
			default:
				break fill
			}
		}
		c.send(batch, cmds)
		clear(batch)
		clear(cmds)
	}
}

// send runs batch's scripts, those whose callers still wait, as one
// pipeline (each by EVALSHA, and alone by EVAL when Redis had not cached
// it), and signals each its reply.
func (c *coalescer) send(batch []*pending, cmds []*goredis.Cmd) {
	start := time.Now()
	trip := c.recentTrip(start)
	live := batch[:0]
	for _, p := range batch {
		err := p.ctx.Err()
		if d, ok := p.ctx.Deadline(); ok && err == nil && d.Sub(start) < trip+trip/4 {
			// Its answer would likely come too late (a margin of a
			// quarter of a round trip): refused now, unsent, rather than
			// at its deadline with the script perhaps run.
			err = errNoTime
		}
		if err != nil {
			p.err = err
			p.done <- struct{}{}
			continue
		}
		live = append(live, p)
	}
	c.dropped.Add(int64(len(batch) - len(live)))
	if len(live) == 0 {
		return
	}
	c.scripts.Add(int64(len(live)))
	c.trips.Add(1)
	if len(live) == 1 {
		p := live[0]
		p.v, p.err = p.call.script.Run(p.ctx, c.client, p.call.keys, p.call.args...).Result()
		if p.err == nil || goredis.HasErrorPrefix(p.err, "") {
			c.learn(time.Since(start), time.Now()) // Redis answered
		}
		p.done <- struct{}{}
		return
	}
	ctx, cancel := latest(live)
	defer cancel()
	// Each script's error is read below; Exec's is the first of them.
	_, _ = c.client.Pipelined(ctx, func(pl goredis.Pipeliner) error {
		for i, p := range live {
			cmds[i] = p.call.script.EvalSha(ctx, pl, p.call.keys, p.call.args...)
		}
		return nil
	})
	if answered(cmds[:len(live)]) {
		c.learn(time.Since(start), time.Now())
	}
	for i, p := range live {
		v, err := cmds[i].Result()
		if goredis.HasErrorPrefix(err, "NOSCRIPT") {
			// Not run: run it alone, loading it.
			v, err = p.call.script.Run(p.ctx, c.client, p.call.keys, p.call.args...).Result()
		}
		p.v, p.err = v, err
		p.done <- struct{}{}
	}
}

// answered reports whether Redis answered every command (a reply, or
// an error reply such as NOSCRIPT), none cut by a timeout or a broken
// connection.
func answered(cmds []*goredis.Cmd) bool {
	for _, cmd := range cmds {
		if err := cmd.Err(); err != nil && !goredis.HasErrorPrefix(err, "") {
			return false
		}
	}
	return true
}

// latest is a context with the first caller's values that ends at the
// latest of batch's deadlines, or not before the client's own timeouts
// when one has none: no caller's going cuts the others' pipeline.
func latest(batch []*pending) (context.Context, context.CancelFunc) {
	base := context.WithoutCancel(batch[0].ctx)
	var last time.Time
	for _, p := range batch {
		d, ok := p.ctx.Deadline()
		if !ok {
			return base, func() {}
		}
		if d.After(last) {
			last = d
		}
	}
	return context.WithDeadline(base, last)
}

// close stops the lanes once they have sent what they hold; a caller
// still queued gets errClosed.
func (c *coalescer) close() {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.stop)
	}
	c.mu.Unlock()
	c.lanes.Wait()
	for {
		select {
		case p := <-c.queue:
			p.err = errClosed
			p.done <- struct{}{}
		default:
			return
		}
	}
}
