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
	closed sync.Once

	// For the metrics: scripts sent, the round trips they went in, and
	// those not sent because their callers had given up or had no time.
	scripts, trips, dropped atomic.Int64
	// rtt: the recent round trips' time (ns): the slowest of late, its
	// memory fading as quicker ones come.
	rtt atomic.Int64
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
	select {
	case <-c.stop:
		return nil, errClosed
	default:
	}
	p := pendings.Get().(*pending)
	p.ctx, p.call = ctx, call
	select {
	case c.queue <- p:
	case <-ctx.Done():
		p.ctx, p.call = nil, scriptCall{}
		pendings.Put(p)
		return nil, ctx.Err()
	case <-c.stop:
		return nil, errClosed
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
	rtt := time.Duration(c.rtt.Load())
	live := batch[:0]
	for _, p := range batch {
		err := p.ctx.Err()
		if d, ok := p.ctx.Deadline(); ok && err == nil && d.Sub(start) < rtt {
			// Its answer would come too late: refused now, unsent, rather
			// than at its deadline with the script perhaps run.
			err = errNoTime
		}
		if err != nil {
			p.err = err
			p.done <- struct{}{}
			continue
		}
		live = append(live, p)
	}
	defer func() {
		if len(live) > 0 {
			// Up at once to a slower round trip; down by a quarter of the
			// way to a quicker one.
			d := time.Since(start)
			c.rtt.Store(int64(max(d, rtt+(d-rtt)/4)))
		}
	}()
	c.dropped.Add(int64(len(batch) - len(live)))
	if len(live) == 0 {
		return
	}
	c.scripts.Add(int64(len(live)))
	c.trips.Add(1)
	if len(live) == 1 {
		p := live[0]
		p.v, p.err = p.call.script.Run(p.ctx, c.client, p.call.keys, p.call.args...).Result()
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

// latest is a context that ends at the latest of batch's deadlines, or
// never (the client's timeouts bound the pipeline) when one has none.
func latest(batch []*pending) (context.Context, context.CancelFunc) {
	var last time.Time
	for _, p := range batch {
		d, ok := p.ctx.Deadline()
		if !ok {
			return context.Background(), func() {}
		}
		if d.After(last) {
			last = d
		}
	}
	return context.WithDeadline(context.Background(), last)
}

// close stops the lanes once they have sent what they hold; a caller
// still queued gets errClosed.
func (c *coalescer) close() {
	c.closed.Do(func() { close(c.stop) })
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
